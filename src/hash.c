/* SHA-256 and SHA-1 (FIPS 180-4), written from the standard's pseudo-code.
 * Pure functions: no I/O, no global mutable state (the round constants are const). */
#include "hash.h"

#include <string.h>

#include <lauxlib.h>


static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }
static uint32_t rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

static uint32_t load_be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void store_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static void store_be64(unsigned char *p, uint64_t v) {
  store_be32(p, (uint32_t)(v >> 32));
  store_be32(p + 4, (uint32_t)v);
}

/* ---- the part both hashes share: 64-byte blocks, 0x80 padding, a big-endian bit count ---- */

typedef void (*block_fn)(uint32_t *h, const unsigned char *p);

static void md_update(uint32_t *h, unsigned char block[64], size_t *used, uint64_t *bits, block_fn compress,
                      const void *data, size_t n) {
  const unsigned char *p = data;
  *bits += (uint64_t)n * 8;
  while (n > 0) {
    size_t take = 64 - *used;
    if (take > n) take = n;
    memcpy(block + *used, p, take);
    *used += take, p += take, n -= take;
    if (*used == 64) {
      compress(h, block);
      *used = 0;
    }
  }
}

static void md_final(uint32_t *h, unsigned char block[64], size_t used, uint64_t bits, block_fn compress,
                     unsigned char *out, int words) {
  int i;
  block[used++] = 0x80; /* used < 64 on entry: md_update compresses every full block */
  if (used > 56) {
    if (used < 64) memset(block + used, 0, 64 - used);
    compress(h, block);
    used = 0;
  }
  memset(block + used, 0, 56 - used);
  store_be64(block + 56, bits);
  compress(h, block);
  for (i = 0; i < words; i++) store_be32(out + 4 * i, h[i]);
}

/* ---- SHA-256 ---- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static void sha256_block(uint32_t h[8], const unsigned char *p) {
  uint32_t w[64], a, b, c, d, e, f, g, k;
  int t;
  for (t = 0; t < 16; t++) w[t] = load_be32(p + 4 * t);
  for (t = 16; t < 64; t++) {
    uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
    uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
  }
  a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (t = 0; t < 64; t++) {
    uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[t] + w[t];
    uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void mk_sha256_init(mk_sha256_ctx *c) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, iv, sizeof iv);
  c->bits = 0;
  c->used = 0;
}

void mk_sha256_update(mk_sha256_ctx *c, const void *data, size_t n) {
  md_update(c->h, c->block, &c->used, &c->bits, sha256_block, data, n);
}

void mk_sha256_final(mk_sha256_ctx *c, unsigned char out[32]) {
  md_final(c->h, c->block, c->used, c->bits, sha256_block, out, 8);
}

void mk_sha256(const void *p, size_t n, unsigned char out[32]) {
  mk_sha256_ctx c;
  mk_sha256_init(&c);
  mk_sha256_update(&c, p, n);
  mk_sha256_final(&c, out);
}

/* ---- SHA-1 ---- */

static void sha1_block(uint32_t h[5], const unsigned char *p) {
  uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  int t;
  for (t = 0; t < 16; t++) w[t] = load_be32(p + 4 * t);
  for (t = 16; t < 80; t++) w[t] = rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
  for (t = 0; t < 80; t++) {
    uint32_t f, k;
    if (t < 20) f = (b & c) | (~b & d), k = 0x5a827999;
    else if (t < 40) f = b ^ c ^ d, k = 0x6ed9eba1;
    else if (t < 60) f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
    else f = b ^ c ^ d, k = 0xca62c1d6;
    uint32_t tmp = rotl(a, 5) + f + e + k + w[t];
    e = d, d = c, c = rotl(b, 30), b = a, a = tmp;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

void mk_sha1_init(mk_sha1_ctx *c) {
  static const uint32_t iv[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
  memcpy(c->h, iv, sizeof iv);
  c->bits = 0;
  c->used = 0;
}

void mk_sha1_update(mk_sha1_ctx *c, const void *data, size_t n) {
  md_update(c->h, c->block, &c->used, &c->bits, sha1_block, data, n);
}

void mk_sha1_final(mk_sha1_ctx *c, unsigned char out[20]) {
  md_final(c->h, c->block, c->used, c->bits, sha1_block, out, 5);
}

void mk_sha1(const void *p, size_t n, unsigned char out[20]) {
  mk_sha1_ctx c;
  mk_sha1_init(&c);
  mk_sha1_update(&c, p, n);
  mk_sha1_final(&c, out);
}

void mk_hex(const unsigned char *p, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
}

/* ---- Lua ---- */

static int push_digest(lua_State *L, const unsigned char *d, size_t n) {
  const char *form = luaL_optstring(L, 2, "raw");
  if (strcmp(form, "hex") == 0) {
    char hex[65];
    mk_hex(d, n, hex);
    lua_pushlstring(L, hex, 2 * n);
  } else if (strcmp(form, "raw") == 0) {
    lua_pushlstring(L, (const char *)d, n);
  } else {
    return luaL_argerror(L, 2, "\"hex\" or \"raw\" expected");
  }
  return 1;
}

int mk_l_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char d[32];
  mk_sha256(s, n, d);
  return push_digest(L, d, sizeof d);
}

int mk_l_sha1(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char d[20];
  mk_sha1(s, n, d);
  return push_digest(L, d, sizeof d);
}

/* RFC 4648 section 5 alphabet, no padding (PKCE's code_challenge, RFC 7636 appendix A). */
int mk_l_base64url(lua_State *L) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t n, i;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (i = 0; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    luaL_addchar(&b, abc[v >> 18 & 63]);
    luaL_addchar(&b, abc[v >> 12 & 63]);
    luaL_addchar(&b, abc[v >> 6 & 63]);
    luaL_addchar(&b, abc[v & 63]);
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)p[i] << 16;
    luaL_addchar(&b, abc[v >> 18 & 63]);
    luaL_addchar(&b, abc[v >> 12 & 63]);
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
    luaL_addchar(&b, abc[v >> 18 & 63]);
    luaL_addchar(&b, abc[v >> 12 & 63]);
    luaL_addchar(&b, abc[v >> 6 & 63]);
  }
  luaL_pushresult(&b);
  return 1;
}
