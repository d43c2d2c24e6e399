/* getrandom(2): blocks only until the kernel pool is first initialised, never after. */
#include "random.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include <lauxlib.h>

int mk_random(void *p, size_t n) {
  unsigned char *out = p;
  while (n > 0) {
    ssize_t got = getrandom(out, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    out += got;
    n -= (size_t)got;
  }
  return 0;
}

int mk_l_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char buf[4096];
  luaL_argcheck(L, n >= 1 && n <= (lua_Integer)sizeof buf, 1, "a byte count from 1 to 4096 expected");
  if (mk_random(buf, (size_t)n) != 0) return luaL_error(L, "getrandom: %s", strerror(errno));
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  return 1;
}
