/* core.http_server: the sockets of the webhook listener (lua/misskey/webhook/listen.lua).
 *
 *   server = core.http_server(host, port [, { loopback_only = true, backlog = 64 }])
 *   server:fd(), server:address() -> ip, port, server:close()
 *   conn = server:accept(max_head, max_body)      nil when nobody is waiting
 *   conn:read()  -> nil (wait until readable, then call again)
 *                 | "head", { method, target, version, headers = { [lower-case name] = value }, length }
 *                 | "body", bytes                 (a later call, once Content-Length bytes arrived)
 *                 | false, status, message        (answer `status`, then close; 0: the peer left)
 *   conn:send([bytes]) -> true (all sent) | false (wait until writable, call again) | nil, message
 *   conn:shutdown(), conn:discard() -> true (the peer is done) | false, conn:fd(), conn:close()
 *
 * Every socket is non-blocking and nothing here waits, so one slow peer never holds the
 * scheduler: Lua waits on the fds through the engine (loop.await_socket) and keeps the
 * deadlines. The head is read on its own, capped at max_head, so the caller can check the
 * secret before a single body byte is read; the body is read only when asked for, and never
 * past Content-Length (capped at max_body); chunked bodies are refused (Misskey sends a length).
 * An unauthenticated peer therefore holds at most max_head bytes of C memory. */
#define _POSIX_C_SOURCE 200809L
#define _GNU_SOURCE /* accept4, memmem */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>

#include "buf.h"
#include "compat.h"

#define MK_SERVER_MT "misskey.HttpServer"
#define MK_HCONN_MT "misskey.HttpConnection"
#define MK_HEADERS_MAX 100        /* header lines per request: more is 431 */
#define MK_CAP_MAX (64 * 1024 * 1024) /* the largest max_head / max_body accepted */
#define MK_CHUNK 16384            /* bytes per recv */
#define MK_DISCARD_MAX (64 * 1024) /* bytes thrown away per discard() call */

typedef struct mk_server {
  int fd; /* -1 once closed */
} mk_server;

enum { H_HEAD, H_BODY, H_DONE };

typedef struct mk_hconn {
  int fd; /* -1 once closed */
  int state;
  int expect;          /* the client waits for "100 Continue" before it sends the body */
  size_t max_head, max_body;
  mk_buf in;           /* the head, then the body right after it */
  size_t head_len;     /* bytes of the head, blank line included, once it is complete */
  size_t body_len;     /* Content-Length */
  mk_buf out;          /* the answer, until it is sent */
  size_t out_sent;
} mk_hconn;

static const char CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* ---- the listening socket ---- */

static mk_server *to_server(lua_State *L) {
  mk_server *s = luaL_checkudata(L, 1, MK_SERVER_MT);
  if (s->fd < 0) luaL_error(L, "attempt to use a closed server");
  return s;
}

typedef union mk_addr {
  struct sockaddr sa;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
  struct sockaddr_storage any;
} mk_addr;

/* The numeric address `host` with `port`; 0 when host is not a numeric IPv4/IPv6 address. */
static socklen_t parse_addr(const char *host, int port, mk_addr *a, int *loopback) {
  memset(a, 0, sizeof *a);
  if (inet_pton(AF_INET, host, &a->v4.sin_addr) == 1) {
    a->v4.sin_family = AF_INET;
    a->v4.sin_port = htons((unsigned short)port);
    *loopback = (ntohl(a->v4.sin_addr.s_addr) >> 24) == 127;
    return sizeof a->v4;
  }
  if (inet_pton(AF_INET6, host, &a->v6.sin6_addr) == 1) {
    a->v6.sin6_family = AF_INET6;
    a->v6.sin6_port = htons((unsigned short)port);
    *loopback = IN6_IS_ADDR_LOOPBACK(&a->v6.sin6_addr);
    return sizeof a->v6;
  }
  return 0;
}

static int fail3(lua_State *L, const char *reason, const char *fmt, const char *host, int port, const char *why) {
  lua_pushnil(L);
  lua_pushfstring(L, fmt, host, port, why);
  lua_pushstring(L, reason);
  return 3;
}

int mk_l_http_server(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  int loopback_only = 1, loopback = 0, one = 1, err;
  lua_Integer backlog = 64;
  mk_addr a;
  socklen_t alen;
  mk_server *s;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port must be 0-65535");
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "loopback_only");
    if (!lua_isnil(L, -1)) loopback_only = lua_toboolean(L, -1);
    lua_getfield(L, 3, "backlog");
    if (!lua_isnil(L, -1)) backlog = luaL_checkinteger(L, -1);
    luaL_argcheck(L, backlog >= 1 && backlog <= 4096, 3, "backlog must be 1-4096");
    lua_pop(L, 2);
  }
  alen = parse_addr(host, (int)port, &a, &loopback);
  if (alen == 0) return fail3(L, "address", "cannot listen on %s:%d: %s", host, (int)port, "not a numeric IP address");
  if (loopback_only && !loopback) return fail3(L, "remote", "%s:%d is %s", host, (int)port, "not a loopback address");
  s = lua_newuserdata(L, sizeof *s);
  s->fd = -1;
  luaL_getmetatable(L, MK_SERVER_MT);
  lua_setmetatable(L, -2);
  s->fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) return fail3(L, "socket", "cannot listen on %s:%d: %s", host, (int)port, strerror(errno));
  setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (a.sa.sa_family == AF_INET6) setsockopt(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(s->fd, &a.sa, alen) != 0 || listen(s->fd, (int)backlog) != 0) {
    err = errno;
    close(s->fd);
    s->fd = -1;
    return fail3(L, "bind", "cannot listen on %s:%d: %s", host, (int)port, strerror(err));
  }
  return 1;
}

static int server_fd(lua_State *L) {
  lua_pushinteger(L, to_server(L)->fd);
  return 1;
}

/* server:address() -> ip, port (the port the kernel chose when asked for 0) */
static int server_address(lua_State *L) {
  mk_server *s = to_server(L);
  mk_addr a;
  socklen_t alen = sizeof a;
  char ip[INET6_ADDRSTRLEN];
  if (getsockname(s->fd, &a.sa, &alen) != 0) return luaL_error(L, "getsockname: %s", strerror(errno));
  if (a.sa.sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &a.v6.sin6_addr, ip, sizeof ip);
    lua_pushstring(L, ip);
    lua_pushinteger(L, ntohs(a.v6.sin6_port));
  } else {
    inet_ntop(AF_INET, &a.v4.sin_addr, ip, sizeof ip);
    lua_pushstring(L, ip);
    lua_pushinteger(L, ntohs(a.v4.sin_port));
  }
  return 2;
}

static size_t check_cap(lua_State *L, int i) {
  lua_Integer n = luaL_checkinteger(L, i);
  luaL_argcheck(L, n >= 1 && n <= MK_CAP_MAX, i, "a byte count from 1 to 64 MiB expected");
  return (size_t)n;
}

/* server:accept(max_head, max_body) -> conn | nil (nobody waiting) | nil, message */
static int server_accept(lua_State *L) {
  mk_server *s = to_server(L);
  size_t max_head = check_cap(L, 2), max_body = check_cap(L, 3);
  mk_hconn *c;
  int fd;
  /* The userdata first: were it made after accept4, running out of memory there would
   * leak the accepted descriptor. */
  c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->fd = -1;
  luaL_getmetatable(L, MK_HCONN_MT);
  lua_setmetatable(L, -2);
  fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    lua_pushnil(L);
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED) return 1;
    lua_pushstring(L, strerror(err)); /* out of descriptors, say: the caller pauses */
    return 2;
  }
  c->fd = fd;
  c->state = H_HEAD;
  c->max_head = max_head;
  c->max_body = max_body;
  return 1;
}

static int server_close(lua_State *L) {
  mk_server *s = luaL_checkudata(L, 1, MK_SERVER_MT);
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  return 0;
}

/* ---- one connection ---- */

static mk_hconn *to_conn(lua_State *L) {
  mk_hconn *c = luaL_checkudata(L, 1, MK_HCONN_MT);
  if (c->fd < 0) luaL_error(L, "attempt to use a closed connection");
  return c;
}

/* false, status, message: the request cannot be served; the caller answers and closes. */
static int refuse(lua_State *L, mk_hconn *c, int status, const char *message) {
  c->state = H_DONE;
  mk_buf_free(&c->in);
  lua_pushboolean(L, 0);
  lua_pushinteger(L, status);
  lua_pushstring(L, message);
  return 3;
}

/* RFC 9110 tchar: the characters of a method or a header name. */
static int is_tchar(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) return 1;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A header value's bytes: visible, space, tab, or obs-text (>= 0x80); no other controls. */
static int is_value_char(unsigned char ch) {
  return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static int ci_equal(const char *a, size_t n, const char *lower) {
  size_t i;
  if (strlen(lower) != n) return 0;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)a[i];
    if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch - 'A' + 'a');
    if (ch != (unsigned char)lower[i]) return 0;
  }
  return 1;
}

/* Content-Length: digits only; more than max is "too large" (1), not a parse error. */
static int parse_length(const char *v, size_t n, size_t max, size_t *out) {
  size_t i, len = 0;
  if (n == 0) return -1;
  for (i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return -1;
    if (len > max) continue; /* keep checking the digits, stop counting */
    len = len * 10 + (size_t)(v[i] - '0');
  }
  if (len > max) return 1;
  *out = len;
  return 0;
}

/* Parses the complete head in c->in.data[0..c->head_len) and pushes "head", request; or
 * refuses it. Names are lower-cased in place; a repeated header's values are joined with
 * ", " (so a second secret header makes the secret wrong, not ignored). */
static int parse_head(lua_State *L, mk_hconn *c) {
  char *p = c->in.data, *end = c->in.data + c->head_len - 2; /* the final CRLF */
  char *eol = memmem(p, (size_t)(end - p), "\r\n", 2), *sp1, *sp2;
  int nheaders = 0, has_length = 0;
  size_t length = 0;
  if (!eol) return refuse(L, c, 400, "malformed request line");
  sp1 = memchr(p, ' ', (size_t)(eol - p));
  sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
  if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1) return refuse(L, c, 400, "malformed request line");
  {
    char *q;
    for (q = p; q < sp1; q++)
      if (!is_tchar((unsigned char)*q)) return refuse(L, c, 400, "malformed request line");
    for (q = sp1 + 1; q < sp2; q++)
      if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) return refuse(L, c, 400, "malformed request line");
    if (eol - sp2 - 1 != 8 || (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 && memcmp(sp2 + 1, "HTTP/1.0", 8) != 0))
      return refuse(L, c, 505, "only HTTP/1.0 and HTTP/1.1 are served");
  }
  lua_pushliteral(L, "head");
  lua_createtable(L, 0, 5);
  lua_pushlstring(L, p, (size_t)(sp1 - p));
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, sp1 + 1, (size_t)(sp2 - sp1 - 1));
  lua_setfield(L, -2, "target");
  lua_pushlstring(L, sp2 + 1, 8);
  lua_setfield(L, -2, "version");
  lua_createtable(L, 0, 8);
  for (p = eol + 2; p < end; p = eol + 2) {
    char *colon, *v, *vend, *q;
    eol = memmem(p, (size_t)(end - p), "\r\n", 2); /* every line's CRLF lies before `end` */
    if (!eol) return refuse(L, c, 400, "malformed header line");
    colon = memchr(p, ':', (size_t)(eol - p));
    if (!colon || colon == p) return refuse(L, c, 400, "malformed header line");
    if (++nheaders > MK_HEADERS_MAX) return refuse(L, c, 431, "too many header lines");
    for (q = p; q < colon; q++) {
      if (!is_tchar((unsigned char)*q)) return refuse(L, c, 400, "malformed header name");
      if (*q >= 'A' && *q <= 'Z') *q = (char)(*q - 'A' + 'a');
    }
    for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++) {}
    for (vend = eol; vend > v && (vend[-1] == ' ' || vend[-1] == '\t'); vend--) {}
    for (q = v; q < vend; q++)
      if (!is_value_char((unsigned char)*q)) return refuse(L, c, 400, "malformed header value");
    if (ci_equal(p, (size_t)(colon - p), "content-length")) {
      size_t n = 0;
      int r = parse_length(v, (size_t)(vend - v), c->max_body, &n);
      if (r < 0 || (has_length && n != length)) return refuse(L, c, 400, "malformed content-length");
      if (r > 0) return refuse(L, c, 413, "request body too large");
      has_length = 1;
      length = n;
    } else if (ci_equal(p, (size_t)(colon - p), "transfer-encoding")) {
      return refuse(L, c, 411, "a content-length is required (chunked bodies are not accepted)");
    } else if (ci_equal(p, (size_t)(colon - p), "expect")) {
      if (!ci_equal(v, (size_t)(vend - v), "100-continue")) return refuse(L, c, 417, "unknown expectation");
      c->expect = 1;
    }
    lua_pushlstring(L, p, (size_t)(colon - p));
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, v, (size_t)(vend - v));
    } else {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, v, (size_t)(vend - v));
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
  lua_pushinteger(L, (lua_Integer)length);
  lua_setfield(L, -2, "length");
  c->body_len = length;
  c->state = H_BODY;
  return 2;
}

/* recv into c->in, at most `want` bytes: >0 bytes read, 0 peer closed, -1 would block, -2 error. */
static ssize_t take(mk_hconn *c, size_t want, int *err) {
  char chunk[MK_CHUNK];
  ssize_t got;
  if (want > sizeof chunk) want = sizeof chunk;
  do got = recv(c->fd, chunk, want, 0);
  while (got < 0 && errno == EINTR);
  if (got < 0) {
    *err = errno;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : -2;
  }
  if (got > 0 && mk_buf_append(&c->in, chunk, (size_t)got) != 0) {
    *err = ENOMEM;
    return -2;
  }
  return got;
}

static int read_head(lua_State *L, mk_hconn *c) {
  for (;;) {
    size_t before = c->in.len, from = before > 3 ? before - 3 : 0;
    int err = 0;
    ssize_t got = take(c, c->max_head - c->in.len, &err);
    char *blank;
    if (got == -1) return 0;
    if (got == -2) return refuse(L, c, 0, strerror(err));
    if (got == 0) return refuse(L, c, 0, "closed before the request was complete");
    /* memmem, not strstr: a NUL from the peer must not hide the end of the head. */
    blank = memmem(c->in.data + from, c->in.len - from, "\r\n\r\n", 4);
    if (blank) {
      c->head_len = (size_t)(blank - c->in.data) + 4;
      return parse_head(L, c);
    }
    if (c->in.len >= c->max_head) return refuse(L, c, 431, "request head too large");
  }
}

static int read_body(lua_State *L, mk_hconn *c) {
  size_t have = c->in.len - c->head_len;
  if (have < c->body_len && c->in.cap < c->head_len + c->body_len + 1) {
    /* The exact size once, rather than doubling past it: the body is asked for only
     * after the caller checked the head (the secret), and is at most max_body. */
    char *d = realloc(c->in.data, c->head_len + c->body_len + 1);
    if (d == NULL) return refuse(L, c, 0, "out of memory");
    c->in.data = d;
    c->in.cap = c->head_len + c->body_len + 1;
  }
  if (c->expect && have < c->body_len) {
    /* 25 bytes into an empty socket buffer; should they not fit, the client sends the
     * body after its own wait anyway. */
    if (send(c->fd, CONTINUE, sizeof CONTINUE - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* it left: recv says so */ }
    c->expect = 0;
  }
  while (have < c->body_len) {
    int err = 0;
    ssize_t got = take(c, c->body_len - have, &err);
    if (got == -1) return 0;
    if (got == -2) return refuse(L, c, 0, strerror(err));
    if (got == 0) return refuse(L, c, 0, "closed before the request body was complete");
    have += (size_t)got;
  }
  lua_pushliteral(L, "body");
  /* Bytes past Content-Length (a pipelined request) are not ours: the answer closes. */
  lua_pushlstring(L, c->in.data ? c->in.data + c->head_len : "", c->body_len);
  c->state = H_DONE;
  mk_buf_free(&c->in);
  return 2;
}

static int conn_read(lua_State *L) {
  mk_hconn *c = to_conn(L);
  if (c->state == H_HEAD) return read_head(L, c);
  if (c->state == H_BODY) return read_body(L, c);
  return luaL_error(L, "the request was read already");
}

/* conn:send([bytes]) -> true | false | nil, message */
static int conn_send(lua_State *L) {
  mk_hconn *c = to_conn(L);
  size_t n = 0;
  const char *p = luaL_optlstring(L, 2, NULL, &n);
  if (p && n > 0 && mk_buf_append(&c->out, p, n) != 0) return luaL_error(L, "out of memory");
  while (c->out_sent < c->out.len) {
    ssize_t sent = send(c->fd, c->out.data + c->out_sent, c->out.len - c->out_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        lua_pushboolean(L, 0);
        return 1;
      }
      lua_pushnil(L);
      lua_pushstring(L, strerror(errno));
      return 2;
    }
    c->out_sent += (size_t)sent;
  }
  mk_buf_free(&c->out);
  c->out_sent = 0;
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:shutdown(): no more bytes from us (the peer reads the answer to its end). */
static int conn_shutdown(lua_State *L) {
  shutdown(to_conn(L)->fd, SHUT_WR);
  return 0;
}

/* conn:discard() -> true once the peer is done (end of stream or an error), false when it
 * would block. Reading what the peer still sends before closing keeps the kernel from
 * answering it with a reset that could destroy our answer in flight (a 413 sent while the
 * client is still sending its body). Bounded per call; the caller bounds the time. */
static int conn_discard(lua_State *L) {
  mk_hconn *c = to_conn(L);
  char chunk[MK_CHUNK];
  size_t total = 0;
  while (total < MK_DISCARD_MAX) {
    ssize_t got = recv(c->fd, chunk, sizeof chunk, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (got <= 0) {
      lua_pushboolean(L, 1);
      return 1;
    }
    total += (size_t)got;
  }
  lua_pushboolean(L, 0);
  return 1;
}

static int conn_fd(lua_State *L) {
  lua_pushinteger(L, to_conn(L)->fd);
  return 1;
}

static int conn_close(lua_State *L) {
  mk_hconn *c = luaL_checkudata(L, 1, MK_HCONN_MT);
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  mk_buf_free(&c->in);
  mk_buf_free(&c->out);
  return 0;
}

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction close_fn) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, close_fn);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, close_fn);
  lua_setfield(L, -2, "__close");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  mk_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void mk_server_open(lua_State *L) {
  static const luaL_Reg server_methods[] = {{"fd", server_fd},         {"address", server_address},
                                            {"accept", server_accept}, {"close", server_close},
                                            {NULL, NULL}};
  static const luaL_Reg conn_methods[] = {{"read", conn_read},         {"send", conn_send},
                                          {"shutdown", conn_shutdown}, {"discard", conn_discard},
                                          {"fd", conn_fd},             {"close", conn_close},
                                          {NULL, NULL}};
  new_class(L, MK_SERVER_MT, server_methods, server_close);
  new_class(L, MK_HCONN_MT, conn_methods, conn_close);
}
