/* SHA-256 (legacy app token, PKCE challenge) and SHA-1 (WebSocket accept key),
 * as pure functions over bytes (FIPS 180-4), plus base64url and hex. */
#ifndef MK_HASH_H
#define MK_HASH_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

typedef struct mk_sha256_ctx {
  uint32_t h[8];
  uint64_t bits;
  unsigned char block[64];
  size_t used;
} mk_sha256_ctx;

typedef struct mk_sha1_ctx {
  uint32_t h[5];
  uint64_t bits;
  unsigned char block[64];
  size_t used;
} mk_sha1_ctx;

void mk_sha256_init(mk_sha256_ctx *c);
void mk_sha256_update(mk_sha256_ctx *c, const void *p, size_t n);
void mk_sha256_final(mk_sha256_ctx *c, unsigned char out[32]);
void mk_sha256(const void *p, size_t n, unsigned char out[32]);

void mk_sha1_init(mk_sha1_ctx *c);
void mk_sha1_update(mk_sha1_ctx *c, const void *p, size_t n);
void mk_sha1_final(mk_sha1_ctx *c, unsigned char out[20]);
void mk_sha1(const void *p, size_t n, unsigned char out[20]);

/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void mk_hex(const unsigned char *p, size_t n, char *out);

/* core.sha256(s [, "hex"]), core.sha1(s [, "hex"]), core.base64url(s) */
int mk_l_sha256(lua_State *L);
int mk_l_sha1(lua_State *L);
int mk_l_base64url(lua_State *L);

#endif
