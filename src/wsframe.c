#include "wsframe.h"

#include <string.h>

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#endif

long mk_ws_parse(const uint8_t *p, size_t n, size_t max_payload, mk_frame *f) {
  size_t head = 2;
  uint64_t len;
  int opcode;
  if (n < 2) return 0;
  opcode = p[0] & 0x0F;
  if (p[0] & 0x70) return -MK_WS_PROTOCOL_ERROR;         /* RSV1-3: no extension was negotiated */
  if (p[1] & 0x80) return -MK_WS_PROTOCOL_ERROR;         /* a server must not mask */
  if (!(opcode <= MK_WS_BINARY || (opcode >= MK_WS_CLOSE && opcode <= MK_WS_PONG))) return -MK_WS_PROTOCOL_ERROR;
  len = p[1] & 0x7F;
  if (opcode >= MK_WS_CLOSE && (!(p[0] & 0x80) || len > 125)) return -MK_WS_PROTOCOL_ERROR;
  if (len == 126) {
    if (n < 4) return 0;
    len = ((uint64_t)p[2] << 8) | p[3];
    if (len < 126) return -MK_WS_PROTOCOL_ERROR;         /* not the minimal encoding */
    head = 4;
  } else if (len == 127) {
    int i;
    if (n < 10) return 0;
    if (p[2] & 0x80) return -MK_WS_PROTOCOL_ERROR;       /* the most significant bit must be 0 */
    for (len = 0, i = 2; i < 10; i++) len = (len << 8) | p[i];
    if (len <= 0xFFFF) return -MK_WS_PROTOCOL_ERROR;
    head = 10;
  }
  if (len > max_payload) return -MK_WS_TOO_BIG;
  if (n - head < len) return 0;
  f->fin = (p[0] & 0x80) != 0;
  f->opcode = opcode;
  f->payload = p + head;
  f->len = (size_t)len;
  return (long)(head + (size_t)len);
}

size_t mk_ws_frame_size(const uint8_t *p, size_t n) {
  uint64_t len;
  size_t head, i;
  if (n < 2) return 2;
  len = p[1] & 0x7F;
  if (len < 126) return 2 + (size_t)len;
  head = len == 126 ? 4 : 10;
  if (n < head) return head;
  for (len = 0, i = 2; i < head; i++) len = (len << 8) | p[i];
  if (len > (uint64_t)(SIZE_MAX - head)) return SIZE_MAX;
  return head + (size_t)len;
}

int mk_ws_encode(mk_buf *b, int opcode, const void *payload, size_t len, const uint8_t mask[4]) {
  uint8_t head[14];
  size_t h = 2, i, start;
  const uint8_t *src = payload;
  head[0] = (uint8_t)(0x80 | (opcode & 0x0F));
  if (len < 126) {
    head[1] = (uint8_t)(0x80 | len);
  } else if (len <= 0xFFFF) {
    head[1] = 0x80 | 126;
    head[2] = (uint8_t)(len >> 8);
    head[3] = (uint8_t)len;
    h = 4;
  } else {
    head[1] = 0x80 | 127;
    for (i = 0; i < 8; i++) head[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    h = 10;
  }
  memcpy(head + h, mask, 4);
  h += 4;
  if (mk_buf_append(b, head, h) != 0) return -1;
  start = b->len;
  if (mk_buf_append(b, payload, len) != 0) return -1;
  for (i = 0; i < len; i++) b->data[start + i] = (char)(src[i] ^ mask[i & 3]);
  return 0;
}

int mk_ws_close_code_ok(long code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/* Index of the first byte with its high bit set in an 8-byte word that has one. */
static size_t first_high(uint64_t high) {
#if defined(__GNUC__)
  uint64_t one = 1;
  if (*(const uint8_t *)&one) return (size_t)__builtin_ctzll(high) >> 3; /* little-endian */
  return (size_t)__builtin_clzll(high) >> 3;
#else
  size_t k = 0;
  uint8_t b[8];
  memcpy(b, &high, 8);
  while (!b[k]) k++;
  return k;
#endif
}

/* The well-formed byte sequences of Unicode's table 3-7: no overlongs, surrogates or
 * code points past U+10FFFF. ASCII (most of a JSON message) goes eight bytes at a time. */
int mk_utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  for (;;) {
    uint64_t v;
#if defined(__SSE2__) && defined(__GNUC__)
    /* SSE2 (every x86-64): 32 bytes per test, and the first high byte found at once */
    while (n - i >= 32) {
      __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
      __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
      unsigned ha = (unsigned)_mm_movemask_epi8(a), hb = (unsigned)_mm_movemask_epi8(b);
      if (ha | hb) {
        i += ha ? (size_t)__builtin_ctz(ha) : 16 + (size_t)__builtin_ctz(hb);
        goto multi;
      }
      i += 32;
    }
#else
    while (n - i >= 32) { /* four words per test: fewer branches on long ASCII runs */
      uint64_t w[4];
      memcpy(w, s + i, 32);
      if ((w[0] | w[1] | w[2] | w[3]) & 0x8080808080808080u) break;
      i += 32;
    }
#endif
    while (n - i >= 8) {
      memcpy(&v, s + i, 8);
      v &= 0x8080808080808080u;
      if (v) {
        i += first_high(v);
        goto multi;
      }
      i += 8;
    }
    while (i < n && s[i] < 0x80) i++;
    if (i >= n) return 1;
  multi:
    for (;;) { /* s[i] >= 0x80: one sequence after another while they come */
      uint8_t c = s[i], b1;
      if ((c & 0xF0) == 0xE0) { /* 3 bytes (CJK text) first, with one test for both continuations */
        unsigned x, top;
        if (n - i < 3) return 0;
        x = (unsigned)s[i + 1] | (unsigned)s[i + 2] << 8;
        if ((x & 0xC0C0u) != 0x8080u) return 0;
        top = (c & 0x0Fu) << 6 | (x & 0x3Fu); /* the code point's top 10 bits */
        if (top < 0x20u || top - 0x360u < 0x20u) return 0; /* overlong (< U+0800), or U+D800..U+DFFF */
        i += 3;
        if (i >= n) return 1;
        continue;
      }
      if (c < 0x80) break;
      if (c < 0xC2) return 0;
      if (c < 0xE0) {
        if (n - i < 2 || (s[i + 1] & 0xC0) != 0x80) return 0;
        i += 2;
      } else if (c < 0xF0) {
        if (n - i < 3) return 0;
        b1 = s[i + 1];
        if ((b1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
        if ((c == 0xE0 && b1 < 0xA0) || (c == 0xED && b1 > 0x9F)) return 0;
        i += 3;
      } else if (c < 0xF5) {
        if (n - i < 4) return 0;
        b1 = s[i + 1];
        if ((b1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80) return 0;
        if ((c == 0xF0 && b1 < 0x90) || (c == 0xF4 && b1 > 0x8F)) return 0;
        i += 4;
      } else {
        return 0;
      }
      if (i >= n) return 1;
    }
  }
}

int mk_ws_feed(mk_ws_message *m, const mk_frame *f, int *opcode) {
  if (f->opcode == MK_WS_CONT) {
    if (m->opcode == 0) return -MK_WS_PROTOCOL_ERROR;    /* nothing to continue */
  } else {
    if (m->opcode != 0) return -MK_WS_PROTOCOL_ERROR;    /* a new message inside a fragmented one */
    m->opcode = f->opcode;
    mk_buf_reset(&m->data);
  }
  if (m->max_size && f->len > m->max_size - m->data.len) return -MK_WS_TOO_BIG;
  if (mk_buf_append(&m->data, f->payload, f->len) != 0) return -1;
  if (!f->fin) return 0;
  *opcode = m->opcode;
  m->opcode = 0;
  if (*opcode == MK_WS_TEXT && !mk_utf8_valid((const uint8_t *)m->data.data, m->data.len))
    return -MK_WS_INVALID_DATA;
  return 1;
}

int mk_ws_feed_view(mk_ws_message *m, const mk_frame *f, int *opcode, const uint8_t **data, size_t *len) {
  int r;
  if (f->fin && f->opcode != MK_WS_CONT && m->opcode == 0) { /* a whole message in one frame */
    if (m->max_size && f->len > m->max_size) return -MK_WS_TOO_BIG;
    if (f->opcode == MK_WS_TEXT && !mk_utf8_valid(f->payload, f->len)) return -MK_WS_INVALID_DATA;
    *opcode = f->opcode;
    *data = f->payload;
    *len = f->len;
    return 1;
  }
  r = mk_ws_feed(m, f, opcode);
  if (r == 1) {
    *data = (const uint8_t *)m->data.data;
    *len = m->data.len;
  }
  return r;
}
