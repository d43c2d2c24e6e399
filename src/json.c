/* JSON text to Lua values in one pass, for misskey.json's decode; and, in the second half
 * ("encoding"), Lua values to JSON text, the fast path of misskey.json's encode.
 *
 * Strict RFC 8259 (any top-level value; no NaN, hex, leading zeros or '+', no raw
 * control characters in strings, no trailing commas or garbage). What lua-cjson
 * 2.1 cannot do, and misskey.json needs:
 *   - every array, empty ones included, gets the metatable given to json_decoder
 *     (the closure's upvalue), so `[]` and `{}` stay apart when re-encoded;
 *   - on Lua 5.3+ integers: digits-only literals that fit an int64 are read exactly,
 *     and any other number with an integral value in range becomes an integer too; a
 *     negative zero stays a float, -0.0, on every Lua;
 *   - a number beyond a double's range (1e400) is refused, since no encoder could write
 *     it back;
 *   - strings come out as well-formed UTF-8: a lone UTF-16 surrogate in a \u escape and
 *     every ill-formed raw byte sequence become U+FFFD (one per maximal ill-formed part,
 *     as WHATWG's decoder does), so whatever decodes encodes again;
 *   - optionally (decode(text, { null = "nil" })) an object member that is null is left
 *     out, as if absent; nulls in arrays and a null root stay the null light userdata.
 * Bad input never raises: decode returns nil and "invalid JSON at character N: why".
 *
 * Speed: strings without escapes are pushed straight from the text, object keys from the
 * decoder's key cache when they were seen before (see key_cache); an object's table is
 * made at a hinted size and filled as its members are read; an array's items wait on the
 * Lua stack and go into a table created at its final size (in chunks for big ones, as Lua
 * 5.1 gives a C function 8000 stack slots at most), as do an object's members when the
 * decoder has no key cache. Floats: Clinger's exact fast path, else strtod on a
 * NUL-terminated copy with '.' turned into the locale's decimal point (as Lua's lobject.c
 * does).
 *
 * No global mutable state: the only tables here are const; a decoder's key cache is its
 * upvalues; the scratch buffer for unescaping a long string (and the encoder's output
 * buffer) is a userdata made on first need in the call's stack slot 2. */
#include "json.h"

#include "engine.h"
#include "wsframe.h" /* mk_utf8_valid */

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#endif

#define MAX_DEPTH 1000 /* nested arrays and objects, as lua-cjson's default */
#define CHUNK 64       /* container items kept on the Lua stack before they are moved into the table */
#define SCRATCH_SLOT 2 /* the stack slot of the scratch userdata (nil until needed) */
#define ANCHOR_SLOT 3  /* the stack slot of the caches' anchor table, when the decoder has caches */

#if LUA_VERSION_NUM >= 504
#define new_buffer(L, n) lua_newuserdatauv(L, (n), 0)
#else
#define new_buffer(L, n) lua_newuserdata(L, (n))
#endif

/* Byte classes: S = ends a run of plain string bytes ('"', '\\', < 0x20; NUL is the
 * terminator Lua puts after every string, so scans stop there without a bound check),
 * W = JSON whitespace, T = may not follow a number (alphanumeric, '.', '+', '-'). */
enum { S = 1, W = 2, T = 4 };
static const unsigned char cls[256] = {
    S,     S, S, S, S, S, S, S, S, S | W, S | W, S, S, S | W, S, S, /* 0x00 */
    S,     S, S, S, S, S, S, S, S, S,     S,     S, S, S,     S, S, /* 0x10 */
    W,     0, S, 0, 0, 0, 0, 0, 0, 0,     0,     T, 0, T,     T, 0, /* 0x20  "+-. */
    T,     T, T, T, T, T, T, T, T, T,     0,     0, 0, 0,     0, 0, /* 0x30  0-9 */
    0,     T, T, T, T, T, T, T, T, T,     T,     T, T, T,     T, T, /* 0x40  A-O */
    T,     T, T, T, T, T, T, T, T, T,     T,     0, S, 0,     0, 0, /* 0x50  P-Z \ */
    0,     T, T, T, T, T, T, T, T, T,     T,     T, T, T,     T, T, /* 0x60  a-o */
    T,     T, T, T, T, T, T, T, T, T,     T,     0, 0, 0,     0, 0, /* 0x70  p-z */
};

/* Exact powers of ten for the fast path (every one of them is a double). */
static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                       1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The key cache: a decoder remembers the last KEY_SLOTS object keys it made, by their
 * bytes, and pushes a remembered key again instead of making it anew. Misskey's objects
 * repeat the same few dozen keys in every note, and a short string made anew costs Lua a
 * hash over all its bytes and a search of its string table; the cache costs a hash of two
 * words and a table read. A key's hash picks a set of KEY_WAYS slots, and it may be in
 * any of them (a new key replaces the set's oldest): with one slot per hash, two keys of a
 * note that shared it ("id" and "iconUrl") evicted each other several times per note. A
 * slot's string is kept alive by the anchor table (slot + 1), which is what keeps `s`
 * valid: both are replaced together. Fixed size, so keys a peer makes up only replace one
 * another.
 *
 * Size hints: an object's table is made before its members are read, at the size of the
 * last object read under the same key (the member name holding it, or for an array's
 * items the array's) at the same depth, and each member goes in as soon as it is read.
 * Objects under one key mostly have one shape (a note's "user", "files"), so the size is
 * mostly right; when it is not, Lua grows the table, or some slots go unused. A hint is
 * taken when read (set to 0), so each object's size is used for at most one table: the
 * unused slots never outnumber the members some earlier object had in the text. */
#define KEY_SLOTS 256
#define KEY_WAYS 4 /* slots per set: 64 sets */
#define KEY_MAX 40     /* longer keys are not cached (Lua 5.4 interns strings up to 40 bytes) */
#define NO_KEY KEY_SLOTS /* the "key" of the top-level value, and of a key not cached */
#define HINT_SLOTS 1024
#define HINT_MAX 255

/* The value cache: the same for string values, which repeat less than keys but often enough
 * (a user's name, host and avatar in each of their notes, "public", "image/jpeg", emoji URLs).
 * A value is cached only when it comes a second time while its slot remembers it (seen[]: a
 * fingerprint of the last value that missed there), so values seen once (ids, dates, texts)
 * cost a fingerprint and a store, and never replace a cached one. Short values only (VALUE_MAX
 * bytes): what the cache holds stays under VALUE_SLOTS * VALUE_MAX bytes. Anchored at
 * KEY_SLOTS + slot + 1 of the same table. */
#define VALUE_SLOTS 512
#define VALUE_MAX 96

typedef struct key_slot {
  uint64_t head, tail; /* the key's first and last 8 bytes (all of them, zero-padded, below 8) */
  const char *s;       /* the anchored string's bytes */
  size_t len;          /* 0: an empty slot */
} key_slot;

typedef struct key_cache {
  key_slot slot[KEY_SLOTS];
  unsigned char hint[HINT_SLOTS]; /* member counts, by (key slot, depth) */
  unsigned char next[KEY_SLOTS / KEY_WAYS]; /* per set of slots: the way a new key goes to */
  unsigned char after[KEY_SLOTS + 1]; /* per key slot (and NO_KEY): the slot of the key that came next */
  unsigned char first[KEY_SLOTS + 1]; /* per parent's key slot: the slot of its object's first key */
  key_slot value[VALUE_SLOTS];
  uint32_t seen[VALUE_SLOTS]; /* fingerprints of the last values that missed, by slot */
} key_cache;

typedef struct parser {
  lua_State *L;
  const char *start, *end; /* the text; *end == '\0' */
  char *scratch;           /* unescaping buffer, the text's length + 1 bytes, NULL until needed */
  const char *err_at;      /* where the error is */
  const char *err;         /* what it is (static text) */
  int depth;
  int drop_nulls; /* object members that are null are left out */
  int check_utf8; /* the text is not all well-formed UTF-8: check each string */
  key_cache *cache; /* the decoder's key cache, or NULL */
  int anchors;       /* the stack slot of the table holding the cached strings (ANCHOR_SLOT) */
  int parent;        /* the key slot of the value being read (NO_KEY: none or not cached) */
} parser;

static const char *parse_value(parser *ps, const char *p);
static const char *parse_scalar(parser *ps, const char *p);

static const char *fail(parser *ps, const char *at, const char *why) {
  ps->err_at = at;
  ps->err = why;
  return NULL;
}

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

#define CLS(c) cls[(unsigned char)(c)]
#define IS_DIGIT(c) ((unsigned char)((c) - '0') < 10)

static const char *skip_ws(const char *p) {
  if ((unsigned char)*p > ' ') return p; /* compact JSON has none: one test (every W byte is <= ' ') */
  while (CLS(*p) & W) p++;
  return p;
}

static char *scratch(parser *ps) {
  if (ps->scratch == NULL) {
    ps->scratch = new_buffer(ps->L, (size_t)(ps->end - ps->start) + 1);
    lua_replace(ps->L, SCRATCH_SLOT);
  }
  return ps->scratch;
}

/* ---- strings ---- */

static int hex4(const char *p) { /* the value of 4 hex digits, or -1; stops at the NUL */
  int v = 0, i;
  for (i = 0; i < 4; i++) {
    int c = (unsigned char)p[i], h;
    if (c >= '0' && c <= '9') h = c - '0';
    else if (c >= 'a' && c <= 'f') h = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') h = c - 'A' + 10;
    else return -1;
    v = v << 4 | h;
  }
  return v;
}

static char *put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    *o++ = (char)cp;
  } else if (cp < 0x800) {
    *o++ = (char)(0xC0 | cp >> 6);
    *o++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *o++ = (char)(0xE0 | cp >> 12);
    *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
    *o++ = (char)(0x80 | (cp & 0x3F));
  } else {
    *o++ = (char)(0xF0 | cp >> 18);
    *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
    *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
    *o++ = (char)(0x80 | (cp & 0x3F));
  }
  return o;
}

/* The first byte from q on that is '"', '\\' or below 0x20 (the NUL after the text
 * at the latest). Eight bytes at a time while eight remain: has_stop is nonzero if
 * one of them is such a byte, and its lowest flagged byte is the first of them
 * (a flag can be false only above a true one), so on a little-endian machine the
 * trailing zero count finds it. */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
#define HAS_ZERO(v) (((v) - ONES) & ~(v) & HIGHS)
static uint64_t has_stop(uint64_t w) {
  return HAS_ZERO(w ^ (ONES * '"')) | HAS_ZERO(w ^ (ONES * '\\')) | ((w - ONES * 0x20) & ~w & HIGHS);
}

static const char *scan_plain(const char *q, const char *end) {
#if defined(__SSE2__) && defined(__GNUC__)
  /* Sixteen bytes at a time where SSE2 is there (every x86-64): a byte is a stop if it
   * equals '"' or '\\', or if max(byte, 0x1F) is 0x1F (below 0x20, unsigned). */
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1F);
  for (; end - q >= 16; q += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
    __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
    unsigned bits = (unsigned)_mm_movemask_epi8(stop);
    if (bits != 0) return q + __builtin_ctz(bits);
  }
#endif
  for (; end - q >= 8; q += 8) {
    uint64_t w, t;
    memcpy(&w, q, 8);
    if ((t = has_stop(w)) != 0) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      return q + (__builtin_ctzll(t) >> 3);
#else
      break;
#endif
    }
  }
  while (!(CLS(*q) & S)) q++;
  return q;
}

/* ---- UTF-8 ---- */

/* The length of the well-formed UTF-8 sequence at s (s < end; nothing at or past end is
 * read), or 0 and in *bad the length of its maximal ill-formed part: the bytes that
 * begin a sequence that never completes (at least 1). Well-formed: no overlong forms,
 * no surrogates (U+D800..U+DFFF), nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end, size_t *bad) {
  unsigned c = s[0], lo = 0x80, hi = 0xBF;
  size_t need, i;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;      /* overlong below U+0800 */
    else if (c == 0xED) hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;      /* overlong below U+10000 */
    else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
  } else {
    *bad = 1; /* a continuation byte alone, C0, C1, F5..FF */
    return 0;
  }
  for (i = 1; i <= need; i++) {
    unsigned b;
    if (s + i >= end) break;
    b = s[i];
    if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) break;
  }
  if (i > need) return need + 1;
  *bad = i;
  return 0;
}

/* Pushes s (n bytes) with each maximal ill-formed part replaced by U+FFFD. The result is
 * measured first, then built in a userdata (it may be up to 3 times n: every byte may
 * become 3). */
static void push_repaired(lua_State *L, const char *s, size_t n) {
  static const char fffd[3] = {'\xEF', '\xBF', '\xBD'};
  const unsigned char *end = (const unsigned char *)s + n, *p;
  size_t size = 0, len, bad;
  char *out, *o;
  for (p = (const unsigned char *)s; p < end;) {
    if ((len = utf8_seq(p, end, &bad)) == 0) size += 3, p += bad;
    else size += len, p += len;
  }
  luaL_checkstack(L, 2, "JSON string repair");
  o = out = new_buffer(L, size);
  for (p = (const unsigned char *)s; p < end;) {
    if ((len = utf8_seq(p, end, &bad)) == 0) {
      memcpy(o, fffd, 3);
      o += 3, p += bad;
    } else {
      memcpy(o, p, len);
      o += len, p += len;
    }
  }
  lua_pushlstring(L, out, size);
  lua_remove(L, -2); /* the userdata */
}

/* Pushes a decoded string of a text known to hold ill-formed UTF-8 somewhere
 * (ps->check_utf8): as it is, or repaired if it has some itself. */
static void push_checked(lua_State *L, const char *s, size_t n) {
  if (mk_utf8_valid((const uint8_t *)s, n)) lua_pushlstring(L, s, n);
  else push_repaired(L, s, n);
}

#define PUSH_TEXT(ps, s, n) \
  ((ps)->check_utf8 ? push_checked((ps)->L, (s), (n)) : (void)lua_pushlstring((ps)->L, (s), (n)))

/* A byte that stopped a plain run but is neither '"' nor '\\': the end or a control character. */
static const char *bad_string_byte(parser *ps, const char *open, const char *q) {
  if (q == ps->end) return fail(ps, open, "unterminated string");
  return fail(ps, q, "control character in a string (must be escaped)");
}

/* Makes room for k more bytes at o in parse_escaped: past the end of the stack buffer,
 * what is done moves to the scratch buffer, which holds the whole text (so once there,
 * there is always room). */
#define ROOM(k)                                                                      \
  do {                                                                               \
    if (out == small && (size_t)(lim - o) < (size_t)(k)) {                           \
      char *big = scratch(ps);                                                       \
      memcpy(big, out, (size_t)(o - out));                                           \
      o = big + (o - out), out = big, lim = big + (ps->end - ps->start) + 1;         \
    }                                                                                \
  } while (0)

/* The string from open (its '"') on, q at its first backslash: unescaped into a buffer
 * on the C stack, or the scratch buffer once it outgrows that (the result is never
 * longer than the JSON text of the string). Most escaped strings are short: a scratch
 * buffer the size of the text, made for each of them, cost more than the rest. */
static const char *parse_escaped(parser *ps, const char *open, const char *q) {
  char small[512];
  char *out = ps->scratch ? ps->scratch : small, *o = out;
  char *lim = out == small ? small + sizeof small : out + (ps->end - ps->start) + 1;
  size_t n = (size_t)(q - (open + 1));
  ROOM(n + 4);
  memcpy(o, open + 1, n);
  o += n;
  for (;;) {
    const char *run;
    /* *q is '\\' here; there is room for 4 bytes */
    switch (q[1]) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '/': *o++ = '/'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      int cp = hex4(q + 2);
      if (cp < 0) return fail(ps, q, "invalid \\u escape in a string (needs 4 hex digits)");
      q += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        /* a high surrogate: with a low one after it, one code point; alone, U+FFFD */
        int lo = (q[2] == '\\' && q[3] == 'u') ? hex4(q + 4) : -1;
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          q += 6;
        } else {
          cp = 0xFFFD;
        }
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = 0xFFFD; /* a low surrogate alone */
      }
      o = put_utf8(o, (unsigned)cp);
      break;
    }
    default:
      if (q + 1 == ps->end) return fail(ps, open, "unterminated string");
      return fail(ps, q, "invalid escape in a string");
    }
    q += 2;
    run = q;
    q = scan_plain(q, ps->end);
    n = (size_t)(q - run);
    ROOM(n + 4);
    memcpy(o, run, n);
    o += n;
    if (*q == '"') break;
    if (*q != '\\') return bad_string_byte(ps, open, q);
  }
  PUSH_TEXT(ps, out, (size_t)(o - out)); /* \u escapes give well-formed UTF-8; raw runs may not */
  return q + 1;
}
#undef ROOM

/* p at the opening '"': pushes the string. */
static const char *parse_string(parser *ps, const char *p) {
  const char *q = scan_plain(p + 1, ps->end);
  if (*q == '"') {
    PUSH_TEXT(ps, p + 1, (size_t)(q - (p + 1))); /* no escape: straight from the text */
    return q + 1;
  }
  if (*q == '\\') return parse_escaped(ps, p, q);
  return bad_string_byte(ps, p, q);
}

/* The first and last 8 bytes of s (n bytes, a '"' after them; zero-padded below 8 bytes,
 * byte i at bit 8 * i), and from them and n a 64-bit hash whose top bits pick a slot. */
static ALWAYS_INLINE uint64_t fingerprint(const parser *ps, const char *s, size_t n, uint64_t *head, uint64_t *tail) {
  size_t i;
  *head = *tail = 0;
  if (n >= 8) {
    memcpy(head, s, 8);
    memcpy(tail, s + n - 8, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  } else if (ps->end - s >= 8) { /* 8 bytes readable: one load, the bytes past the string masked off */
    memcpy(head, s, 8);
    *head &= ~UINT64_C(0) >> (64 - 8 * n);
#endif
  } else {
    for (i = 0; i < n; i++) *head |= (uint64_t)(unsigned char)s[i] << (8 * i);
  }
  return ((*head ^ (*tail * UINT64_C(0x9E3779B97F4A7C15)) ^ n) * UINT64_C(0xFF51AFD7ED558CCD));
}

/* head and tail cover every byte of a string up to 16 bytes long */
static ALWAYS_INLINE int same(const key_slot *k, const char *s, size_t n, uint64_t head, uint64_t tail) {
  return k->len == n && k->head == head && k->tail == tail && (n <= 16 || memcmp(k->s + 8, s + 8, n - 16) == 0);
}

/* Pushes s (n bytes) and makes it slot k's string, anchored at index `anchor`. */
static void remember(parser *ps, key_slot *k, int anchor, const char *s, size_t n, uint64_t head, uint64_t tail) {
  lua_pushlstring(ps->L, s, n);
  lua_pushvalue(ps->L, -1);
  lua_rawseti(ps->L, ps->anchors, anchor); /* replaces (and frees to the collector) the old string */
  k->s = lua_tostring(ps->L, -1);
  k->len = n;
  k->head = head;
  k->tail = tail;
}

/* Whether the text at s is slot k's key followed by its closing '"': the bytes are the
 * cached key's, which has no quote, backslash or control byte, so the key is plain. */
static ALWAYS_INLINE int key_at(const parser *ps, const key_slot *k, const char *s) {
  size_t n = k->len;
  uint64_t head = 0, tail = 0;
  if (n == 0 || (size_t)(ps->end - s) <= n || s[n] != '"') return 0; /* empty slot, or not that long */
  if (n >= 8) {
    memcpy(&head, s, 8);
    memcpy(&tail, s + n - 8, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  } else if (ps->end - s >= 8) {
    memcpy(&head, s, 8);
    head &= ~UINT64_C(0) >> (64 - 8 * n);
#endif
  } else {
    return 0; /* near the end of the text: the full lookup reads it */
  }
  return same(k, s, n, head, tail);
}

/* p at the opening '"' of an object key: pushes it, from the key cache when it is there,
 * and sets ps->parent to its slot (NO_KEY if it is not cached). guess: the slot of the key
 * that followed the previous one last time (objects of one kind list their keys in one
 * order), tried first: a hit needs no scan for the closing quote and no hash. */
static const char *parse_key(parser *ps, const char *p, unsigned guess) {
  const char *s = p + 1, *q;
  size_t n;
  uint64_t head, tail;
  unsigned at, set;
  if (guess < KEY_SLOTS && !ps->check_utf8 && key_at(ps, &ps->cache->slot[guess], s)) {
    ps->parent = (int)guess;
    lua_rawgeti(ps->L, ps->anchors, (int)guess + 1);
    return s + ps->cache->slot[guess].len + 1;
  }
  q = scan_plain(s, ps->end);
  n = (size_t)(q - s);
  if (*q != '"' || n == 0 || n > KEY_MAX || ps->check_utf8) {
    ps->parent = NO_KEY;
    return parse_string(ps, p);
  }
  set = (unsigned)(fingerprint(ps, s, n, &head, &tail) >> 58) * KEY_WAYS; /* 64 sets of KEY_WAYS */
  for (at = set; at < set + KEY_WAYS; at++) {
    if (same(&ps->cache->slot[at], s, n, head, tail)) {
      ps->parent = (int)at;
      lua_rawgeti(ps->L, ps->anchors, (int)at + 1);
      return q + 1;
    }
  }
  /* not there: it replaces the set's oldest key */
  at = set + ps->cache->next[set / KEY_WAYS];
  ps->cache->next[set / KEY_WAYS] = (unsigned char)((at - set + 1) % KEY_WAYS);
  ps->parent = (int)at;
  remember(ps, &ps->cache->slot[at], (int)at + 1, s, n, head, tail);
  return q + 1;
}

/* p at the opening '"' of a string value: pushes it, from the value cache when it is there. */
static ALWAYS_INLINE const char *parse_string_value(parser *ps, const char *p) {
  const char *s = p + 1, *q;
  size_t n;
  uint64_t head, tail, h;
  uint32_t fp;
  unsigned at;
  key_slot *k;
  if (ps->cache == NULL || ps->check_utf8) return parse_string(ps, p);
  q = scan_plain(s, ps->end);
  n = (size_t)(q - s);
  if (*q != '"' || n == 0 || n > VALUE_MAX) return parse_string(ps, p);
  h = fingerprint(ps, s, n, &head, &tail);
  at = (unsigned)(h >> 55); /* VALUE_SLOTS == 512 */
  k = &ps->cache->value[at];
  if (same(k, s, n, head, tail)) {
    lua_rawgeti(ps->L, ps->anchors, KEY_SLOTS + (int)at + 1);
    return q + 1;
  }
  fp = (uint32_t)h | 1; /* never 0, an empty slot's */
  if (ps->cache->seen[at] == fp) { /* the second time in a row here: worth keeping */
    ps->cache->seen[at] = 0;
    remember(ps, k, KEY_SLOTS + (int)at + 1, s, n, head, tail);
  } else {
    ps->cache->seen[at] = fp;
    lua_pushlstring(ps->L, s, n);
  }
  return q + 1;
}

/* ---- numbers ---- */

/* The number of [p0, p) (valid JSON grammar) with strtod, correctly rounded. */
static int slow_double(parser *ps, const char *p0, const char *p, double *out) {
  char small[64], *buf, *e, point = localeconv()->decimal_point[0];
  size_t len = (size_t)(p - p0), i;
  buf = len < sizeof small ? small : scratch(ps); /* the scratch buffer holds the whole text */
  for (i = 0; i < len; i++) buf[i] = p0[i] == '.' ? point : p0[i];
  buf[len] = '\0';
  *out = strtod(buf, &e);
  return e == buf + len;
}

static const char *parse_number(parser *ps, const char *p0) {
  lua_State *L = ps->L;
  const char *p = p0;
  uint64_t m = 0;   /* the first 19 significant digits */
  int nd = 0;       /* how many digits m has */
  int dropped = 0;  /* digits beyond those 19, or a huge exponent: strtod decides */
  int integer = 1;  /* no fraction, no exponent */
  long e10 = 0;     /* the value is m * 10^e10 (when nothing was dropped) */
  int neg = 0;
  double d;
  if (*p == '-') neg = 1, p++;
  if (*p == '0') {
    p++;
  } else if (IS_DIGIT(*p)) {
    for (; IS_DIGIT(*p); p++) {
      if (nd < 19) m = m * 10 + (uint64_t)(*p - '0'), nd++;
      else dropped = 1, e10++;
    }
  } else {
    return fail(ps, p0, "invalid number");
  }
  if (*p == '.') {
    integer = 0;
    p++;
    if (!IS_DIGIT(*p)) return fail(ps, p0, "invalid number (a digit must follow '.')");
    for (; IS_DIGIT(*p); p++) {
      if (nd < 19) {
        if (m != 0 || *p != '0') m = m * 10 + (uint64_t)(*p - '0'), nd++;
        e10--;
      } else {
        dropped = 1;
      }
    }
  }
  if (*p == 'e' || *p == 'E') {
    long x = 0;
    int eneg = 0;
    integer = 0;
    p++;
    if (*p == '+' || *p == '-') eneg = *p++ == '-';
    if (!IS_DIGIT(*p)) return fail(ps, p0, "invalid number (a digit must follow the exponent's 'e')");
    for (; IS_DIGIT(*p); p++) {
      if (x < 100000) x = x * 10 + (*p - '0');
      else dropped = 1; /* a huge exponent: strtod reads it (0 or inf, unless the digits say otherwise) */
    }
    e10 += eneg ? -x : x;
  }
  if (CLS(*p) & T) return fail(ps, p0, "invalid number");
#if LUA_VERSION_NUM >= 503
  if (integer && !dropped) { /* digits only, at most 19 of them: exact */
    if (!neg && m <= (uint64_t)INT64_MAX) {
      lua_pushinteger(L, (lua_Integer)m);
      return p;
    }
    if (neg && m != 0 && m <= (uint64_t)INT64_MAX + 1) { /* -0 is no integer: it stays -0.0 below */
      lua_pushinteger(L, m == (uint64_t)INT64_MAX + 1 ? (lua_Integer)INT64_MIN : -(lua_Integer)m);
      return p;
    }
  }
#else
  (void)integer; /* every number is a double */
#endif
  if (dropped) {
    if (!slow_double(ps, p0, p, &d)) return fail(ps, p0, "invalid number");
    neg = 0; /* strtod read the sign */
  } else if (m == 0) {
    d = 0.0;
  } else if (e10 == 0) {
    d = (double)m; /* the conversion rounds correctly */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    /* Clinger: m and 10^|e10| are exact doubles, so one IEEE operation rounds correctly. */
  } else if (m <= (UINT64_C(1) << 53) && e10 >= -22 && e10 <= 22) {
    d = e10 < 0 ? (double)m / pow10_exact[-e10] : (double)m * pow10_exact[e10];
  } else if (m <= (UINT64_C(1) << 53) && e10 > 22 && e10 <= 22 + 15 &&
             m <= (UINT64_C(1) << 53) / (uint64_t)pow10_exact[e10 - 22]) {
    d = (double)(m * (uint64_t)pow10_exact[e10 - 22]) * 1e22; /* 10^(e10-22) folded into m, exactly */
#endif
  } else {
    if (!slow_double(ps, p0, p, &d)) return fail(ps, p0, "invalid number");
    neg = 0;
  }
  if (neg) d = -d;
  /* Only strtod overflows (the exact paths stay far below DBL_MAX). Accepting infinity
   * would hand out a value no encoder writes back. */
  if (!(d >= -DBL_MAX && d <= DBL_MAX)) return fail(ps, p0, "number out of range (a double ends at 1.8e308)");
#if LUA_VERSION_NUM >= 503
  /* 1.0, 1e3, 2.5e2: integers, as Lua's math.tointeger would make them; not digits
   * only that did not fit above (9223372036854775808 stays a float), and not -0.0,
   * whose sign an integer would lose. */
  if (!integer && d >= -0x1p63 && d < 0x1p63 && !(d == 0 && signbit(d))) {
    lua_Integer i = (lua_Integer)d;
    if ((double)i == d) {
      lua_pushinteger(L, i);
      return p;
    }
  }
#endif
  lua_pushnumber(L, (lua_Number)d);
  return p;
}

/* ---- containers ---- */

/* A container's item or member value: a string, the most common value, is read here
 * rather than through a recursive call of parse_value, whose entry and exit (it has the
 * containers inlined, so it saves many registers) cost more than the string's read. */
static ALWAYS_INLINE const char *parse_item(parser *ps, const char *p) {
  if (*p == '"') return parse_string_value(ps, p);
  if (*p == '{' || *p == '[') return parse_value(ps, p);
  return parse_scalar(ps, p); /* a number or a word: a function that saves fewer registers */
}

/* Items kept on the stack per container before they move into its table. Deep
 * levels keep fewer, so that 1000 levels fit Lua 5.1's 8000 slots whatever the
 * shape: 16 * (2*64 + 2) + 48 * (2*8 + 2) + 936 * 3 < 6000. */
static int chunk_for(int depth) { return depth <= 16 ? CHUNK : depth <= 64 ? 8 : 1; }

static const char *enter(parser *ps, const char *p) {
  if (++ps->depth > MAX_DEPTH) return fail(ps, p, "nested too deep (more than 1000 arrays and objects)");
  luaL_checkstack(ps->L, 2 * chunk_for(ps->depth) + 4, "JSON nested too deep");
  return p;
}

/* Moves the n items above the table at base + 1 into it, as items done+1 .. done+n;
 * on the first call the slot holds a placeholder and the table is made there. */
static void flush_array(lua_State *L, int base, int n, int done) {
  int i;
  if (done == 0) { /* the slot at base + 1 still holds the placeholder */
    lua_createtable(L, n, 0);
    lua_replace(L, base + 1);
  }
  for (i = n; i > 0; i--) lua_rawseti(L, base + 1, done + i);
}

static const char *parse_array(parser *ps, const char *p) {
  lua_State *L = ps->L;
  int base = lua_gettop(L), n = 0, done = 0, limit, parent = ps->parent;
  if (!enter(ps, p)) return NULL;
  limit = chunk_for(ps->depth);
  p = skip_ws(p + 1);
  if (*p == ']') {
    lua_createtable(L, 0, 0);
  } else {
    lua_pushnil(L); /* the table's slot */
    for (;;) {
      ps->parent = parent; /* the items' objects are hinted by the array's key */
      if (!(p = parse_item(ps, p))) return NULL;
      n++;
      p = skip_ws(p);
      if (*p == ',') {
        p = skip_ws(p + 1);
        if (n == limit) {
          flush_array(L, base, n, done);
          done += n, n = 0;
        }
      } else if (*p == ']') {
        break;
      } else {
        return fail(ps, p, "expected ',' or ']'");
      }
    }
    flush_array(L, base, n, done);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  ps->depth--;
  return p + 1;
}

/* Moves the n key-value pairs above the table at base + 1 into it, first to last,
 * so that of two equal keys the last wins; the first call makes the table in the
 * placeholder's slot. */
static void flush_object(lua_State *L, int base, int n, int first) {
  int i, at;
  if (first) {
    lua_createtable(L, 0, n);
    lua_replace(L, base + 1);
  }
  for (i = 0, at = base + 2; i < n; i++, at += 2) {
    lua_pushvalue(L, at);
    lua_pushvalue(L, at + 1);
    lua_rawset(L, base + 1);
  }
  lua_settop(L, base + 1);
}

/* parse_object with a key cache: the table made first, at the hinted size (see
 * key_cache), each member set as soon as it is read; p after the '{' and whitespace. */
static const char *parse_object_hinted(parser *ps, const char *p) {
  lua_State *L = ps->L;
  unsigned at = ((unsigned)ps->parent * 31u + (unsigned)ps->depth) % HINT_SLOTS;
  unsigned char *last = &ps->cache->first[ps->parent]; /* where this key's slot is noted for next time */
  int n = 0;
  lua_createtable(L, 0, ps->cache->hint[at]);
  ps->cache->hint[at] = 0;
  for (;;) {
    unsigned key;
    if (*p != '"') return fail(ps, p, n == 0 ? "expected a string key or '}'" : "expected a string key");
    if (!(p = parse_key(ps, p, *last))) return NULL;
    key = (unsigned)ps->parent;
    *last = (unsigned char)key; /* NO_KEY (256) becomes slot 0: only a guess, checked when used */
    last = &ps->cache->after[key];
    p = skip_ws(p);
    if (*p != ':') return fail(ps, p, "expected ':'");
    if (!(p = parse_item(ps, skip_ws(p + 1)))) return NULL;
    if (ps->drop_nulls && lua_type(L, -1) == LUA_TLIGHTUSERDATA) {
      /* nil, not nothing: of two equal keys the last still wins, removing the first */
      lua_pop(L, 1);
      lua_pushnil(L);
    }
    lua_rawset(L, -3);
    n++;
    p = skip_ws(p);
    if (*p == ',') {
      p = skip_ws(p + 1);
    } else if (*p == '}') {
      break;
    } else {
      return fail(ps, p, "expected ',' or '}'");
    }
  }
  ps->cache->hint[at] = (unsigned char)(n < HINT_MAX ? n : HINT_MAX);
  ps->depth--;
  return p + 1;
}

static const char *parse_object(parser *ps, const char *p) {
  lua_State *L = ps->L;
  int base = lua_gettop(L), n = 0, first = 1, limit;
  if (!enter(ps, p)) return NULL;
  limit = chunk_for(ps->depth);
  p = skip_ws(p + 1);
  if (*p == '}') {
    lua_createtable(L, 0, 0);
  } else if (ps->cache) {
    return parse_object_hinted(ps, p);
  } else {
    lua_pushnil(L); /* the table's slot */
    for (;;) {
      if (*p != '"') return fail(ps, p, n == 0 && first ? "expected a string key or '}'" : "expected a string key");
      if (!(p = parse_string(ps, p))) return NULL;
      p = skip_ws(p);
      if (*p != ':') return fail(ps, p, "expected ':'");
      if (!(p = parse_value(ps, skip_ws(p + 1)))) return NULL;
      if (ps->drop_nulls && lua_type(L, -1) == LUA_TLIGHTUSERDATA) {
        /* nil, not nothing: of two equal keys the last still wins, removing the first */
        lua_pop(L, 1);
        lua_pushnil(L);
      }
      n++;
      p = skip_ws(p);
      if (*p == ',') {
        p = skip_ws(p + 1);
        if (n == limit) {
          flush_object(L, base, n, first);
          n = 0, first = 0;
        }
      } else if (*p == '}') {
        break;
      } else {
        return fail(ps, p, "expected ',' or '}'");
      }
    }
    flush_object(L, base, n, first);
  }
  ps->depth--;
  return p + 1;
}

/* ---- values ---- */

/* word: len bytes, its last 4 compared as one word (a call to memcmp cost more than the test) */
static const char *literal(parser *ps, const char *p, const char *word, size_t len) {
  uint32_t a, b;
  if ((size_t)(ps->end - p) >= len) {
    memcpy(&a, p + len - 4, 4);
    memcpy(&b, word + len - 4, 4);
    if (a == b && p[0] == word[0] && !(CLS(p[len]) & T)) return p + len;
  }
  return fail(ps, p, "expected a value (true, false and null are the only words)");
}

/* p at the first byte of the value (whitespace skipped): pushes it. */
static const char *parse_value(parser *ps, const char *p) {
  switch (*p) {
  case '"': return parse_string_value(ps, p);
  case '{': return parse_object(ps, p);
  case '[': return parse_array(ps, p);
  default: return parse_scalar(ps, p);
  }
}

/* p at the first byte of a value that is no string, object or array: pushes it. Not
 * inlined into parse_value, whose register saves it would then pay for each number. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static const char *parse_scalar(parser *ps, const char *p) {
  switch (*p) {
  case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
    return parse_number(ps, p);
  case 't':
    if (!(p = literal(ps, p, "true", 4))) return NULL;
    lua_pushboolean(ps->L, 1);
    return p;
  case 'f':
    if (!(p = literal(ps, p, "false", 5))) return NULL;
    lua_pushboolean(ps->L, 0);
    return p;
  case 'n':
    if (!(p = literal(ps, p, "null", 4))) return NULL;
    lua_pushlightuserdata(ps->L, NULL); /* == cjson.null */
    return p;
  default: return fail(ps, p, "expected a value");
  }
}

/* utf8_known: the caller checked that the whole text is well-formed UTF-8 (a WebSocket text
 * message, which RFC 6455 makes it check): not checked again. */
static int decode_text(lua_State *L, const char *text, size_t len, int drop_nulls, int utf8_known) {
  parser ps;
  const char *p;
  char msg[160];
  lua_settop(L, 1);
  lua_pushnil(L); /* SCRATCH_SLOT */
  ps.L = L;
  ps.start = text;
  ps.end = text + len;
  ps.scratch = NULL;
  ps.err_at = text;
  ps.err = "";
  ps.depth = 0;
  ps.drop_nulls = drop_nulls;
  ps.cache = NULL;
  ps.anchors = 0;
  ps.parent = NO_KEY;
  if (lua_type(L, lua_upvalueindex(2)) == LUA_TUSERDATA && lua_type(L, lua_upvalueindex(3)) == LUA_TTABLE) {
    ps.cache = (key_cache *)lua_touserdata(L, lua_upvalueindex(2));
    lua_pushvalue(L, lua_upvalueindex(3)); /* ANCHOR_SLOT: a stack slot is read faster than an upvalue */
    ps.anchors = ANCHOR_SLOT;
  }
  /* One pass over the whole text: a text that is well-formed UTF-8 has only well-formed
   * strings (their raw bytes are cut from it at ASCII quotes and backslashes, and \u
   * escapes give well-formed UTF-8), so no string need be checked on its own. */
  ps.check_utf8 = !utf8_known && !mk_utf8_valid((const uint8_t *)text, len);
  p = parse_value(&ps, skip_ws(text));
  if (p != NULL) {
    p = skip_ws(p);
    if (p == ps.end) return 1;
    fail(&ps, p, "unexpected text after the value");
  }
  snprintf(msg, sizeof msg, "invalid JSON at character %lu: %s%s", (unsigned long)(ps.err_at - text + 1),
           ps.err_at == ps.end ? "unexpected end of text, " : "", ps.err);
  lua_settop(L, 0);
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

int mk_json_decode_text(lua_State *L, const char *text, size_t len) { return decode_text(L, text, len, 0, 0); }

/* view_decode(pointer, length, utf8_known): for C callers only (ws.c), never handed to Lua code:
 * a light userdata may point anywhere. */
int mk_json_view_decode(lua_State *L) {
  const char *text = (const char *)lua_touserdata(L, 1);
  size_t len = (size_t)lua_tointeger(L, 2);
  return decode_text(L, text, len, 0, lua_toboolean(L, 3));
}

/* Raises "json.decode: <what>" at the caller's position, as error(msg, 2) gives. */
static int decode_error(lua_State *L, const char *what) {
  luaL_where(L, 2);
  lua_pushfstring(L, "json.decode: %s", what);
  lua_concat(L, 2);
  return lua_error(L);
}

/* The options table at idx ({ null = "nil" | "sentinel" }): 1 when nulls are to be dropped. */
static int null_option(lua_State *L, int idx) {
  int drop = 0;
  if (lua_type(L, idx) != LUA_TTABLE) {
    lua_pushfstring(L, "options table expected, got %s", luaL_typename(L, idx));
    return decode_error(L, lua_tostring(L, -1));
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *v;
    if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "null") != 0) {
      lua_pushfstring(L, "unknown option '%s'", lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
      return decode_error(L, lua_tostring(L, -1));
    }
    v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(v, "nil") == 0) drop = 1;
    else if (strcmp(v, "sentinel") != 0) return decode_error(L, "option 'null' must be \"nil\" or \"sentinel\"");
    lua_pop(L, 1);
  }
  return drop;
}

/* decode(text [, { null = "nil" }]) -> value, or nil and "invalid JSON at character N: why" */
static int json_decode(lua_State *L) {
  size_t len;
  const char *text;
  int drop = 0;
  if (lua_type(L, 1) != LUA_TSTRING) {
    lua_pushfstring(L, "expected a string, got %s", luaL_typename(L, 1));
    return decode_error(L, lua_tostring(L, -1));
  }
  if (lua_gettop(L) > 1 && !lua_isnil(L, 2)) drop = null_option(L, 2);
  text = lua_tolstring(L, 1, &len);
  return decode_text(L, text, len, drop, 0);
}

/* decode_body(transfer, if_empty [, drop_nulls]) -> value, or nil and the message: decodes
 * a finished transfer's body where libcurl put it, without making a Lua string of it first
 * (for a call whose decoded result is kept, that string was the larger part of its
 * garbage). An empty body gives if_empty; a true drop_nulls leaves null members out. A
 * successful decode frees libcurl's buffer: the transfer's body is then gone (body() raises). */
static int json_decode_body(lua_State *L) {
  size_t len;
  int drop = lua_toboolean(L, 3);
  const char *text = mk_transfer_body(L, 1, &len);
  int n;
  if (len == 0) {
    lua_settop(L, 2);
    return 1;
  }
  n = decode_text(L, text, len, drop, 0); /* keeps index 1, the transfer */
  /* A failure's caller reads the body for its message: it is freed then (body()). */
  if (n == 1) mk_transfer_body_taken((mk_transfer *)lua_touserdata(L, 1), MK_BODY_DECODED);
  return n;
}

void mk_json_push_key_cache(lua_State *L) {
  key_cache *cache = new_buffer(L, sizeof(key_cache));
  memset(cache, 0, sizeof *cache);
  lua_createtable(L, KEY_SLOTS + VALUE_SLOTS, 0);
}

static int is_decoder(lua_State *L, int idx) {
  lua_CFunction f = lua_tocfunction(L, idx);
  return f == json_decode || f == json_decode_body;
}

int mk_json_push_view_decoder(lua_State *L, int idx) {
  int i;
  if (!is_decoder(L, idx)) return 0;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  for (i = 1; i <= 3; i++) lua_getupvalue(L, idx, i);
  lua_pushcclosure(L, mk_json_view_decode, 3);
  return 1;
}

/* core.json_decoder(array_mt [, "body" [, decoder]]): decode(text), or with "body"
 * decode_body(transfer). Given another decoder made here, the new one shares its array
 * marker and key cache (array_mt is then that decoder's). */
int mk_l_json_decoder(lua_State *L) {
  int body = lua_isstring(L, 2) && strcmp(lua_tostring(L, 2), "body") == 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2) && !body) return luaL_argerror(L, 2, "\"body\" or nothing expected");
  if (!lua_isnoneornil(L, 3) && !is_decoder(L, 3)) return luaL_argerror(L, 3, "a decoder from core.json_decoder expected");
  lua_settop(L, 3);
  if (lua_isnil(L, 3)) {
    lua_pushvalue(L, 1);
    mk_json_push_key_cache(L);
  } else {
    lua_getupvalue(L, 3, 1);
    lua_getupvalue(L, 3, 2);
    lua_getupvalue(L, 3, 3);
  }
  lua_pushcclosure(L, body ? json_decode_body : json_decode, 3);
  return 1;
}

/* ==== encoding ====
 *
 * encode(value) -> text, or nil (no message) when the value is anything but the common
 * case; misskey.json then runs its Lua encoder, which gives the same text for what it
 * accepts here and the error messages with paths for the rest. So this side needs no
 * messages, and its output must be byte for byte the Lua encoder's:
 *   - strings: '"', '\\', \b \f \n \r \t as two-byte escapes, other bytes below 0x20 as
 *     \u00xx (lowercase hex); '/' and bytes from 0x7f on as they are; a string (or key)
 *     that is not well-formed UTF-8 is declined;
 *   - numbers: integers (5.3+) with LUA_INTEGER_FMT; floats: NaN and infinities declined,
 *     -0.0 as -0, other integral ones in (-2^53, 2^53) as integers, others as the shortest of %.14g .. %.17g
 *     that strtod reads back equal, then the locale's decimal point (whatever is not
 *     [0-9+-e]) turned into '.';
 *   - booleans; json.null (the NULL light userdata) and a nil root as null;
 *   - tables without a metatable, and tables whose metatable is the array marker (the
 *     closure's upvalue; it must have no __index or __len): #t > 0 with exactly the keys
 *     1..#t is an array; an empty marked table is []; else only string keys make an object,
 *     in lua_next order (what `next` gives the Lua encoder). Any other metatable, key or
 *     type is declined, as is nesting deeper than MAX_DEPTH tables (cycles end there:
 *     the Lua encoder then names them).
 * Only raw accesses, so no Lua code runs. Small texts are built in a C array; longer ones
 * in userdata buffers kept in the call's stack slot 2 (the Lua collector frees them, also
 * when an allocation raises). A declining path just returns 0 up the recursion, leaving
 * the Lua stack to the closure, which resets it. */

#define BUF_SLOT 2    /* the stack slot of the output buffer once it is a userdata */
#define FIRST_BUF 512 /* bytes of output before the first userdata buffer */
#define NUM_MAX 48    /* room for one number's text (%.17g is at most 24 bytes, plus a long decimal point) */
#define TWO_53 9007199254740992.0 /* 2^53, the Lua encoder's INT_LIMIT */

#if LUA_VERSION_NUM >= 503
typedef lua_Integer mk_rawindex; /* lua_rawgeti's index type */
#else
typedef int mk_rawindex;
#endif
#if LUA_VERSION_NUM >= 502
#define raw_len(L, i) lua_rawlen(L, (i))
#else
#define raw_len(L, i) lua_objlen(L, (i))
#endif

typedef struct encoder {
  lua_State *L;
  char *data; /* the text so far: the C array of the call, then a userdata in BUF_SLOT */
  size_t len, cap;
  int depth; /* tables open */
} encoder;

/* Makes room for n more bytes (a userdata twice as big, or bigger, replaces the buffer). */
static void grow(encoder *e, size_t n) {
  size_t cap = e->cap;
  char *p;
  do {
    if (cap > ((size_t)-1) / 4) luaL_error(e->L, "not enough memory");
    cap *= 2;
  } while (cap - e->len < n);
  p = new_buffer(e->L, cap);
  memcpy(p, e->data, e->len);
  lua_replace(e->L, BUF_SLOT); /* the old userdata, if any, is garbage now */
  e->data = p;
  e->cap = cap;
}

static char *room(encoder *e, size_t n) {
  if (e->cap - e->len < n) grow(e, n);
  return e->data + e->len;
}

static void put(encoder *e, const char *s, size_t n) {
  memcpy(room(e, n), s, n);
  e->len += n;
}

#define PUT_LITERAL(e, s) put((e), "" s, sizeof(s) - 1)

/* The two-byte escapes; other bytes below 0x20 become \u00xx. */
static const char short_escape[32] = {
    0, 0, 0, 0, 0, 0, 0, 0, 'b', 't', 'n', 0, 'f', 'r', 0, 0, /* 0x00: \b \t \n \f \r */
    0, 0, 0, 0, 0, 0, 0, 0, 0,   0,   0,   0, 0,   0,   0, 0, /* 0x10 */
};

/* s has n bytes and a NUL after them (every Lua string has): scan_plain stops there.
 * Returns 0 for a string that is not well-formed UTF-8 (the Lua encoder names it). */
static int put_string(encoder *e, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const char *end = s + n;
  char *o;
  if (!mk_utf8_valid((const uint8_t *)s, n)) return 0;
  o = room(e, n + 2);
  *o = '"';
  e->len++;
  for (;;) {
    const char *q = scan_plain(s, end);
    size_t run = (size_t)(q - s);
    unsigned char c;
    o = room(e, run + 7); /* the run, one escape (6 bytes at most) or the closing quote */
    memcpy(o, s, run);
    o += run;
    if (q == end) {
      *o++ = '"';
      e->len = (size_t)(o - e->data);
      return 1;
    }
    c = (unsigned char)*q;
    *o++ = '\\';
    if (c == '"' || c == '\\') {
      *o++ = (char)c;
    } else if (short_escape[c]) {
      *o++ = short_escape[c];
    } else {
      memcpy(o, "u00", 3);
      o[3] = hex[c >> 4];
      o[4] = hex[c & 15];
      o += 5;
    }
    e->len = (size_t)(o - e->data);
    s = q + 1;
  }
}

/* After the digits are chosen: each run of bytes that are not [0-9+-e] (the locale's
 * decimal point, which may be ',' or several bytes) becomes one '.'; returns the length. */
static size_t dot_point(char *s, size_t n) {
  size_t i = 0, j = 0;
  while (i < n) {
    char c = s[i];
    if (IS_DIGIT(c) || c == '-' || c == '+' || c == 'e') {
      s[j++] = s[i++];
    } else {
      s[j++] = '.';
      while (i < n && !(IS_DIGIT(s[i]) || s[i] == '-' || s[i] == '+' || s[i] == 'e')) i++;
    }
  }
  return j;
}

/* 1 if d (finite, non-zero) lies exactly half-way between the two decimals of p significant
 * digits next to it. Such a tie is where formatters part: libc rounds it to even, LuaJIT's
 * own string.format away from zero, so the encoder leaves it to the Lua encoder (the choice
 * of p is unaffected: both neighbours are as far from d, so both read back as d or neither).
 * With d = m * 2^-k, m odd, the exact decimal of d is m * 5^k / 10^k, whose digits are those
 * of m * 5^k: a tie at p digits is m * 5^k having p + 1 digits (the last one is 5, as m * 5^k
 * is an odd multiple of 5). With k <= 0, d is an integer and never ties at the p chosen:
 * with j = -k, its tie neighbours are 5 * 10^(j-1) or more away, beyond half its ulp (2^(j-1)
 * at most), so they do not read back, and a tie at p = 17 needs an odd m of 18 digits.
 * Reads the IEEE 754 binary64 layout of d. */
static int is_tie(double d, int p) {
  uint64_t bits, m, limit;
  int k, digits;
  memcpy(&bits, &d, sizeof bits);
  m = bits & ((UINT64_C(1) << 52) - 1);
  k = (int)(bits >> 52 & 0x7FF);
  if (k == 0) {
    k = 1074; /* subnormal */
  } else {
    m |= UINT64_C(1) << 52;
    k = 1075 - k;
  }
  if (m == 0) return 0;
  while (!(m & 1)) m >>= 1, k--;
  if (k <= 0) return 0;
  for (; k > 0; k--) {
    if (m >= UINT64_C(200000000000000000)) return 0; /* m * 5 would have 19 digits: p + 1 is 18 at most */
    m *= 5;
  }
  for (digits = 1, limit = 10; limit <= m && digits < 19; limit *= 10) digits++;
  return digits == p + 1;
}

/* Returns 0 for NaN and infinities (and half-way cases, see is_tie). */
static int put_number(encoder *e, int idx) {
  lua_State *L = e->L;
  char *o = room(e, NUM_MAX);
  double d;
  int n;
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, idx)) {
    n = snprintf(o, NUM_MAX, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
    e->len += (size_t)n;
    return 1;
  }
#endif
  d = (double)lua_tonumber(L, idx);
  if (!(d >= -DBL_MAX && d <= DBL_MAX)) return 0; /* NaN, inf, -inf */
  if (d == 0 && signbit(d)) {
    n = 2;
    memcpy(o, "-0", 2); /* the decoder reads it back as -0.0 */
  } else if (d > -TWO_53 && d < TWO_53 && (double)(long long)d == d) {
    n = snprintf(o, NUM_MAX, "%lld", (long long)d); /* as the Lua encoder's format("%d", v) */
  } else {
    int precision;
    for (precision = 14; precision < 17; precision++) {
      n = snprintf(o, NUM_MAX, "%.*g", precision, d);
      if (n > 0 && n < NUM_MAX && strtod(o, NULL) == d) break; /* both in the C locale's terms */
    }
    if (precision == 17) n = snprintf(o, NUM_MAX, "%.17g", d);
    if (n <= 0 || n >= NUM_MAX || is_tie(d, precision)) return 0;
    n = (int)dot_point(o, (size_t)n);
  }
  e->len += (size_t)n;
  return 1;
}

static int put_value(encoder *e, int idx);

/* t at idx, n = #t > 0: an array if its keys are exactly 1..n. */
static int put_array(encoder *e, int idx, size_t n) {
  lua_State *L = e->L;
  size_t count = 0, i;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (++count > n) return 0;
  }
  if (count != n) return 0;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (mk_rawindex)i);
    if (lua_isnil(L, -1)) return 0; /* 1..n are not all there: a key beyond n */
    if (i > 1) PUT_LITERAL(e, ",");
    else PUT_LITERAL(e, "[");
    if (!put_value(e, lua_gettop(L))) return 0;
    lua_pop(L, 1);
  }
  PUT_LITERAL(e, "]");
  return 1;
}

static int put_object(encoder *e, int idx) {
  lua_State *L = e->L;
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t n;
    const char *k;
    if (lua_type(L, -2) != LUA_TSTRING) return 0;
    k = lua_tolstring(L, -2, &n);
    if (first) PUT_LITERAL(e, "{");
    else PUT_LITERAL(e, ",");
    if (!put_string(e, k, n)) return 0;
    PUT_LITERAL(e, ":");
    if (!put_value(e, lua_gettop(L))) return 0;
    lua_pop(L, 1);
    first = 0;
  }
  if (first) PUT_LITERAL(e, "{}");
  else PUT_LITERAL(e, "}");
  return 1;
}

static int put_table(encoder *e, int idx) {
  lua_State *L = e->L;
  int marked = 0, ok;
  size_t n;
  if (e->depth >= MAX_DEPTH || !lua_checkstack(L, 4)) return 0;
  if (lua_getmetatable(L, idx)) {
    marked = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (!marked) return 0; /* another metatable: what it means is the Lua encoder's business */
  }
  n = raw_len(L, idx);
  e->depth++;
  if (n > 0) {
    ok = put_array(e, idx, n);
  } else if (marked) {
    lua_pushnil(L);
    ok = !lua_next(L, idx); /* a marked table with keys but no item 1 */
    if (ok) PUT_LITERAL(e, "[]");
  } else {
    ok = put_object(e, idx);
  }
  e->depth--;
  return ok;
}

static int put_value(encoder *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return put_string(e, s, n);
  }
  case LUA_TNUMBER: return put_number(e, idx);
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) PUT_LITERAL(e, "true");
    else PUT_LITERAL(e, "false");
    return 1;
  case LUA_TTABLE: return put_table(e, idx);
  case LUA_TLIGHTUSERDATA: /* json.null is the NULL one */
  case LUA_TNIL:           /* the root only: tables hold no nil */
    if (lua_touserdata(L, idx) != NULL) return 0;
    PUT_LITERAL(e, "null");
    return 1;
  default: return 0; /* functions, full userdata, threads */
  }
}

/* encode(value) -> text, or nil */
static int json_encode(lua_State *L) {
  char first[FIRST_BUF];
  encoder e;
  lua_settop(L, 1);
  lua_pushnil(L); /* BUF_SLOT */
  e.L = L;
  e.data = first;
  e.len = 0;
  e.cap = sizeof first;
  e.depth = 0;
  if (!put_value(&e, 1)) {
    lua_settop(L, 0);
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, e.data, e.len);
  return 1;
}

int mk_l_json_encoder(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushcclosure(L, json_encode, 1);
  return 1;
}
