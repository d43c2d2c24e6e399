/* testpoll: poll(2) and a plain TCP socket for specs on Lua versions without Debian's luaposix
 * (Debian 12 ships lua-posix and lua-socket for 5.1-5.3 only).
 * testpoll.poll({ [fd] = "r" | "w" | "rw" }, timeout_ms) -> { [fd] = "r" | "w" | "rw" | "e" } */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
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

/* testpoll.connect(port) -> fd: a blocking TCP connection to 127.0.0.1:port. */
static int tp_connect(lua_State *L) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)luaL_checkinteger(L, 1));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    if (fd >= 0) close(fd);
    return luaL_error(L, "connect failed");
  }
  lua_pushinteger(L, fd);
  return 1;
}

static int tp_write(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  lua_pushinteger(L, (lua_Integer)write((int)luaL_checkinteger(L, 1), s, n));
  return 1;
}

static int tp_read(lua_State *L) {
  char buf[4096];
  ssize_t n = read((int)luaL_checkinteger(L, 1), buf, sizeof buf);
  if (n < 0) return 0;
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

static int tp_close(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

__attribute__((visibility("default"))) int luaopen_testpoll(lua_State *L) {
  static const luaL_Reg f[] = {{"poll", tp_poll},   {"connect", tp_connect}, {"write", tp_write},
                               {"read", tp_read},   {"close", tp_close},     {NULL, NULL}};
  const luaL_Reg *r;
  lua_newtable(L);
  for (r = f; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  return 1;
}
