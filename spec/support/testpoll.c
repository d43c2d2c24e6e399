/* testpoll: poll(2) for specs on Lua versions without Debian's luaposix
 * (Debian 12 ships lua-posix and lua-socket for 5.1-5.3 only).
 * testpoll.poll({ [fd] = "r" | "w" | "rw" }, timeout_ms) -> { [fd] = "r" | "w" | "rw" | "e" } */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

static int tp_poll(lua_State *L) {
  struct pollfd fds[256];
  nfds_t n = 0, i;
  int rc, timeout = (int)luaL_optinteger(L, 2, -1);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 1) && n < 256) {
    const char *ev = luaL_checkstring(L, -1);
    fds[n].fd = (int)lua_tointeger(L, -2);
    fds[n].events = (short)((strchr(ev, 'r') ? POLLIN : 0) | (strchr(ev, 'w') ? POLLOUT : 0));
    fds[n].revents = 0;
    n++;
    lua_pop(L, 1);
  }
  rc = poll(fds, n, timeout);
  if (rc < 0) return luaL_error(L, "poll failed");
  lua_newtable(L);
  for (i = 0; i < n; i++) {
    const char *s = NULL;
    short r = fds[i].revents;
    if (r & (POLLERR | POLLHUP | POLLNVAL)) s = "e";
    else if ((r & POLLIN) && (r & POLLOUT)) s = "rw";
    else if (r & POLLIN) s = "r";
    else if (r & POLLOUT) s = "w";
    if (s) {
      lua_pushstring(L, s);
      lua_rawseti(L, -2, fds[i].fd);
    }
  }
  return 1;
}

__attribute__((visibility("default"))) int luaopen_testpoll(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, tp_poll);
  lua_setfield(L, -2, "poll");
  return 1;
}
