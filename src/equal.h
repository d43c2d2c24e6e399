/* Constant-time comparison of secrets (the webhook secret). */
#ifndef MK_EQUAL_H
#define MK_EQUAL_H

#include <stddef.h>

#include <lua.h>

/* 1 when a[0..alen) equals b[0..blen), else 0; the time never depends on where the bytes
 * differ (both are hashed, the digests compared without an early exit). */
int mk_equal_ct(const void *a, size_t alen, const void *b, size_t blen);

/* core.equal_ct(a, b) -> boolean */
int mk_l_equal_ct(lua_State *L);

#endif
