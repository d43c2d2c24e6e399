/* core.equal_ct(a, b): are two secrets equal, in a time that depends on neither content?
 * Both are hashed (SHA-256) and the digests compared byte by byte without an early exit, so
 * the time says nothing about where they differ, and of the expected secret's length no more
 * than its count of 64-byte blocks (a plain compare stops at the first difference, and a
 * length check first leaks the exact length). */
#include "equal.h"

#include <lauxlib.h>

#include "hash.h"

int mk_equal_ct(const void *a, size_t alen, const void *b, size_t blen) {
  unsigned char da[32], db[32];
  unsigned diff = 0;
  size_t i;
  mk_sha256(a, alen, da);
  mk_sha256(b, blen, db);
  for (i = 0; i < sizeof da; i++) diff |= (unsigned)(da[i] ^ db[i]);
  return diff == 0;
}

int mk_l_equal_ct(lua_State *L) {
  size_t alen, blen;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);
  lua_pushboolean(L, mk_equal_ct(a, alen, b, blen));
  return 1;
}
