/* core.listen(port) -> listener; listener:accept(timeout [, { path, state }]) -> request target
 * Listens on 127.0.0.1:port only (an OAuth redirect_uri names that exact port) and waits, under
 * one overall deadline, for the browser's redirect: a GET to `path` whose query carries `state`
 * (equal to the one given) and a `code` or an `error`. Anything else (a preconnect that never
 * speaks, a port scan, a wrong state from another local process) is answered 400 or dropped, and
 * the wait goes on. Up to MAX_CONNS connections are read at once, each into a bounded buffer, so
 * an idle or slow one cannot hold the real redirect back. Blocking by design: the CLI waits here. */
#define _POSIX_C_SOURCE 200809L
#define _GNU_SOURCE /* accept4 */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>

#include "compat.h"
#include "engine.h"

#define MK_LISTENER_MT "misskey.Listener"
#define HEAD_MAX 8192
#define MAX_CONNS 16
#define WAIT_MAX 86400.0 /* a day: longer is a mistake, and keeps the milliseconds in an int */

typedef struct mk_conn {
  int fd; /* -1: a free slot */
  unsigned long order; /* accept order: the oldest is dropped when every slot is taken */
  size_t n;
  char head[HEAD_MAX + 1];
} mk_conn;

typedef struct mk_listener {
  int fd; /* -1 once closed */
  unsigned long accepted;
  mk_conn conns[MAX_CONNS];
} mk_listener;

static const char PAGE_OK[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    "<!doctype html><title>misskey</title><p>Received. You can close this window and go back to the terminal.</p>";
static const char PAGE_BAD[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
    "Not the expected redirect.\n";

static mk_listener *to_listener(lua_State *L, int i) {
  return (mk_listener *)luaL_checkudata(L, i, MK_LISTENER_MT);
}

static void drop(mk_conn *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->n = 0;
}

/* A short answer; the socket is non-blocking and MSG_NOSIGNAL keeps a peer that left from
 * raising SIGPIPE. A peer that does not read gets what fits in the socket buffer. */
static void answer(mk_conn *c, const char *page, size_t len) {
  if (send(c->fd, page, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* the peer left: nothing to do */ }
  drop(c);
}

int mk_l_listen(lua_State *L) {
  lua_Integer port = luaL_checkinteger(L, 1);
  struct sockaddr_in a;
  int one = 1, i;
  mk_listener *l;
  if (port < 1 || port > 65535) return luaL_argerror(L, 1, "port must be 1-65535");
  l = lua_newuserdata(L, sizeof *l);
  l->fd = -1;
  l->accepted = 0;
  for (i = 0; i < MAX_CONNS; i++) {
    l->conns[i].fd = -1;
    l->conns[i].n = 0;
  }
  luaL_getmetatable(L, MK_LISTENER_MT);
  lua_setmetatable(L, -2);
  l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (l->fd < 0) return luaL_error(L, "socket: %s", strerror(errno));
  setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(l->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(l->fd, 16) != 0) {
    int err = errno;
    close(l->fd);
    l->fd = -1;
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on 127.0.0.1:%d: %s", (int)port, strerror(err));
    return 2;
  }
  return 1;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Does the query value v[0..n) (percent-encoded, '+' for space) decode to `want`? */
static int value_is(const char *v, size_t n, const char *want) {
  size_t i = 0;
  while (i < n) {
    int c = (unsigned char)v[i];
    if (c == '+') {
      c = ' ';
      i++;
    } else if (c == '%' && i + 2 < n && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
      c = hexval(v[i + 1]) * 16 + hexval(v[i + 2]);
      i += 3;
    } else {
      i++;
    }
    if (*want == '\0' || (unsigned char)*want != c) return 0;
    want++;
  }
  return *want == '\0';
}

/* Is `t[0..n)` the redirect we wait for? `path` and `state` may be NULL (anything goes). */
static int is_redirect(const char *t, size_t n, const char *path, const char *state) {
  const char *q = memchr(t, '?', n), *end = t + n, *p;
  int has_state = 0, has_answer = 0;
  size_t plen = q ? (size_t)(q - t) : n;
  if (plen == 0 || t[0] != '/') return 0;
  if (path && (strlen(path) != plen || memcmp(t, path, plen) != 0)) return 0;
  if (!q) return 0;
  for (p = q + 1; p < end;) {
    const char *amp = memchr(p, '&', (size_t)(end - p)), *stop = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(stop - p));
    if (eq) {
      size_t klen = (size_t)(eq - p), vlen = (size_t)(stop - eq - 1);
      if (klen == 5 && memcmp(p, "state", 5) == 0) has_state = state ? value_is(eq + 1, vlen, state) : vlen > 0;
      else if ((klen == 4 && memcmp(p, "code", 4) == 0) || (klen == 5 && memcmp(p, "error", 5) == 0)) {
        if (vlen > 0) has_answer = 1;
      }
    }
    p = stop + 1;
  }
  return has_state && has_answer;
}

/* The request target of a complete "GET target HTTP/1.x" head that is the redirect, else NULL. */
static const char *redirect_target(mk_conn *c, const char *path, const char *state, size_t *len) {
  const char *t, *sp, *eol = memmem(c->head, c->n, "\r\n", 2);
  if (!eol || strncmp(c->head, "GET ", 4) != 0) return NULL;
  t = c->head + 4;
  sp = memchr(t, ' ', (size_t)(eol - t));
  if (!sp || strncmp(sp, " HTTP/1.", 8) != 0) return NULL;
  if (!is_redirect(t, (size_t)(sp - t), path, state)) return NULL;
  *len = (size_t)(sp - t);
  return t;
}

/* Takes the pending connections (non-blocking), dropping the oldest when every slot is taken.
 * 0, or -1 when accept fails for another reason than "none left" (out of descriptors, say). */
static int take_new(mk_listener *l) {
  int round;
  for (round = 0; round < MAX_CONNS; round++) {
    int i, slot = -1, fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) ? 0 : -1;
    }
    for (i = 0; i < MAX_CONNS; i++) {
      if (l->conns[i].fd < 0) {
        slot = i;
        break;
      }
      if (slot < 0 || l->conns[i].order < l->conns[slot].order) slot = i;
    }
    drop(&l->conns[slot]);
    l->conns[slot].fd = fd;
    l->conns[slot].order = ++l->accepted;
  }
  return 0;
}

/* listener:accept([timeout [, { path = "/cb", state = "..." }]]) -> target
 *   | nil, "timeout" | nil, "interrupted" | nil, message */
static int listener_accept(lua_State *L) {
  mk_listener *l = to_listener(L, 1);
  double timeout = luaL_optnumber(L, 2, 300), deadline, resume = 0;
  const char *path = NULL, *state = NULL;
  struct pollfd p[1 + MAX_CONNS];
  int which[1 + MAX_CONNS];
  if (l->fd < 0) return luaL_error(L, "attempt to use a closed listener");
  luaL_argcheck(L, timeout == timeout, 2, "timeout must be a number of seconds, not NaN");
  if (timeout < 0) timeout = 0;
  if (timeout > WAIT_MAX) timeout = WAIT_MAX;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "path");
    lua_getfield(L, 3, "state");
    if (!lua_isnil(L, -2)) {
      path = lua_tostring(L, -2);
      luaL_argcheck(L, lua_type(L, -2) == LUA_TSTRING && path[0] == '/', 3, "path must be a string starting with '/'");
    }
    if (!lua_isnil(L, -1)) {
      state = lua_tostring(L, -1);
      luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING && state[0] != '\0', 3, "state must be a non-empty string");
    }
    /* Both strings stay on the stack (referenced by option table) while we wait. */
  }
  deadline = mk_now() + timeout;
  for (;;) {
    int n = 0, i, rc;
    double now = mk_now(), left = deadline - now;
    if (left < 0) left = 0;
    /* After a failed accept the listening socket stays readable: leave it out for a moment
     * rather than spin on it. */
    if (now < resume && resume - now < left) left = resume - now;
    p[n].fd = now < resume ? -1 : l->fd;
    p[n].events = POLLIN;
    p[n].revents = 0;
    which[n++] = -1;
    for (i = 0; i < MAX_CONNS; i++) {
      if (l->conns[i].fd < 0) continue;
      p[n].fd = l->conns[i].fd;
      p[n].events = POLLIN;
      which[n++] = i;
    }
    rc = poll(p, (nfds_t)n, (int)(left * 1000.0 + 0.999));
    if (rc < 0) {
      lua_pushnil(L);
      if (errno == EINTR) lua_pushliteral(L, "interrupted"); /* Ctrl-C: let Lua's hook see it */
      else lua_pushstring(L, strerror(errno));
      return 2;
    }
    if (rc == 0) {
      if (mk_now() < deadline) continue; /* woke a hair early */
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    for (i = 1; i < n; i++) {
      mk_conn *c = &l->conns[which[i]];
      ssize_t got;
      const char *target;
      size_t tlen = 0;
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      got = recv(c->fd, c->head + c->n, HEAD_MAX - c->n, 0);
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      if (got <= 0) {
        drop(c);
        continue;
      }
      c->n += (size_t)got;
      c->head[c->n] = '\0';
      /* memmem, not strstr: a NUL from the peer must not hide the end of the head. */
      if (!memmem(c->head, c->n, "\r\n\r\n", 4) && c->n < HEAD_MAX) continue; /* not all of the head yet */
      target = redirect_target(c, path, state, &tlen);
      if (!target) {
        answer(c, PAGE_BAD, sizeof PAGE_BAD - 1);
        continue;
      }
      lua_pushlstring(L, target, tlen);
      answer(c, PAGE_OK, sizeof PAGE_OK - 1);
      return 1;
    }
    if ((p[0].revents & POLLIN) && take_new(l) != 0) resume = mk_now() + 0.1;
  }
}

static int listener_close(lua_State *L) {
  mk_listener *l = to_listener(L, 1);
  int i;
  for (i = 0; i < MAX_CONNS; i++) drop(&l->conns[i]);
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
