/* core.listen(port) -> listener; listener:accept(timeout) -> request target
 * Listens on 127.0.0.1:port only (an OAuth redirect_uri names that exact port),
 * takes one HTTP request, answers a short page, and returns the request target
 * ("/callback?code=...&state=..."). Blocking by design: the CLI waits here. */
#define _POSIX_C_SOURCE 200809L
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>

#include "compat.h"

#define MK_LISTENER_MT "misskey.Listener"
#define HEAD_MAX 8192

typedef struct mk_listener {
  int fd; /* -1 once closed */
} mk_listener;

static mk_listener *to_listener(lua_State *L, int i) {
  return (mk_listener *)luaL_checkudata(L, i, MK_LISTENER_MT);
}

int mk_l_listen(lua_State *L) {
  lua_Integer port = luaL_checkinteger(L, 1);
  struct sockaddr_in a;
  int one = 1;
  mk_listener *l;
  if (port < 1 || port > 65535) return luaL_argerror(L, 1, "port must be 1-65535");
  l = lua_newuserdata(L, sizeof *l);
  l->fd = -1;
  luaL_getmetatable(L, MK_LISTENER_MT);
  lua_setmetatable(L, -2);
  l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l->fd < 0) return luaL_error(L, "socket: %s", strerror(errno));
  setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(l->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(l->fd, 4) != 0) {
    int err = errno;
    close(l->fd);
    l->fd = -1;
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on 127.0.0.1:%d: %s", (int)port, strerror(err));
    return 2;
  }
  return 1;
}

/* listener:accept([timeout]) -> target | nil, "timeout" | nil, message */
static int listener_accept(lua_State *L) {
  mk_listener *l = to_listener(L, 1);
  double timeout = luaL_optnumber(L, 2, 300);
  struct pollfd p;
  char head[HEAD_MAX + 1];
  size_t n = 0;
  int c, rc;
  const char *sp1, *sp2;
  static const char page[] =
      "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nConnection: close\r\n\r\n"
      "<!doctype html><title>misskey</title><p>Signed in. You can close this window.</p>";
  if (l->fd < 0) return luaL_error(L, "attempt to use a closed listener");
  p.fd = l->fd;
  p.events = POLLIN;
  rc = poll(&p, 1, (int)(timeout * 1000));
  if (rc == 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  c = accept(l->fd, NULL, NULL);
  if (c < 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  /* Read the request head (bounded, with the same timeout per read). */
  while (n < HEAD_MAX) {
    ssize_t got;
    p.fd = c;
    if (poll(&p, 1, (int)(timeout * 1000)) <= 0) break;
    got = read(c, head + n, HEAD_MAX - n);
    if (got <= 0) break;
    n += (size_t)got;
    head[n] = '\0';
    if (strstr(head, "\r\n\r\n")) break;
  }
  head[n] = '\0';
  if (write(c, page, sizeof page - 1) < 0) { /* the browser left: the target still counts */ }
  close(c);
  sp1 = strchr(head, ' ');
  sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp1 || !sp2) {
    lua_pushnil(L);
    lua_pushliteral(L, "not an HTTP request");
    return 2;
  }
  lua_pushlstring(L, sp1 + 1, (size_t)(sp2 - sp1 - 1));
  return 1;
}

static int listener_close(lua_State *L) {
  mk_listener *l = to_listener(L, 1);
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
  return 0;
}

void mk_listen_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"accept", listener_accept}, {"close", listener_close}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", listener_close}, {"__close", listener_close}, {NULL, NULL}};
  luaL_newmetatable(L, MK_LISTENER_MT);
  mk_setfuncs(L, meta);
  lua_pushliteral(L, MK_LISTENER_MT);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  mk_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
