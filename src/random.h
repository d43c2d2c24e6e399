/* Cryptographically random bytes from getrandom(2) (PKCE verifier, OAuth state, temp names). */
#ifndef MK_RANDOM_H
#define MK_RANDOM_H

#include <stddef.h>

#include <lua.h>

/* Fills p with n random bytes from the kernel; 0 on success, -1 with errno set (never a
 * weaker source, and never an endless retry). */
int mk_random(void *p, size_t n);

/* core.random(n) -> n random bytes (1 <= n <= 4096) */
int mk_l_random(lua_State *L);

#endif
