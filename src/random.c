/* getrandom(2): blocks only until the kernel pool is first initialised, never after. */
#include "random.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include <lauxlib.h>

/* A call interrupted by a signal is made again, but not forever: a process flooded with
 * signals (or a sandbox that answers every getrandom with EINTR) gets an error instead of
 * spinning. A healthy kernel answers 4096 bytes in one call. */
#define MK_RANDOM_TRIES 64

int mk_random(void *p, size_t n) {
  unsigned char *out = p;
  int tries;
  for (tries = 0; n > 0; tries++) {
    ssize_t got;
    if (tries == MK_RANDOM_TRIES) {
      errno = EINTR; /* the last failure, or a kernel giving a byte at a time */
      return -1;
    }
    got = getrandom(out, n, 0);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    out += got;
    n -= (size_t)got;
  }
  return 0;
}

int mk_l_random(lua_State *L) {
  lua_Number n = luaL_checknumber(L, 1); /* checked before any cast: 1e300 is no integer */
  unsigned char buf[4096];
  luaL_argcheck(L, n >= 1 && n <= (lua_Number)sizeof buf && n == (lua_Number)(size_t)n, 1,
                "a byte count from 1 to 4096 expected");
  if (mk_random(buf, (size_t)n) != 0) return luaL_error(L, "getrandom: %s", strerror(errno));
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  return 1;
}
