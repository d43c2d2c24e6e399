/* WebSocket client over libcurl's CONNECT_ONLY (Debian's libcurl 7.88 has no
 * WebSocket support of its own). The connect (TCP, TLS) runs on the engine's
 * multi handle like any transfer; the easy handle then stays in the multi
 * handle, because removing it closes a CONNECT_ONLY connection. After that,
 * ws:poll(queue, tail) does all the I/O without blocking (curl_easy_send/recv, or
 * send/recv on the socket itself for a plain ws:// connection without a proxy):
 * the upgrade request and reply, frames in and out; every message it reads is
 * stored straight into the caller's queue as a string. The socket is watched by the
 * scheduler (engine:watch), never by curl. No Lua runs inside libcurl. */
#define _DEFAULT_SOURCE
#include "ws.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <lauxlib.h>

#include "compat.h"
#include "hash.h"
#include "json.h"
#include "random.h"
#include "wsframe.h"
#include "wshandshake.h"
#include "wsread.h"

#define MK_WS_MT "misskey.WebSocket"
static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Outgoing bytes. A server that does not read makes them pile up here (pongs are
 * bounded apart: only the newest is kept). Past SEND_HIGH_WATER the socket is not
 * read, so a peer that sends without reading is slowed by TCP itself; a send while
 * more than SEND_MAX bytes still wait fails the connection with 1008. */
#define SEND_HIGH_WATER (256 * 1024)
#define SEND_MAX (4 * 1024 * 1024)
#define POLICY_VIOLATION 1008

#define CONNECT_TIMEOUT_MS_MAX 2147483647.0 /* a long on every platform (24.8 days) */

typedef enum { WS_CONNECTING, WS_HANDSHAKE, WS_OPEN, WS_CLOSING, WS_CLOSED } ws_state;
static const char *const STATE_NAMES[] = {"connecting", "handshake", "open", "closing", "closed"};

struct mk_ws {
  int kind;                 /* MK_KIND_WS: tells it from a transfer in CURLINFO_PRIVATE */
  CURL *easy;
  mk_engine *engine;        /* the engine whose multi handle holds easy */
  mk_ws *prev, *next;       /* engine->websockets */
  int self_ref, engine_ref; /* self: pinned while connecting; engine: while easy is in it */
  ws_state state;
  CURLcode connect_code;
  curl_socket_t fd;
  mk_buf out;               /* frames to send, whole ones only */
  size_t out_off;           /* sent prefix of `out` */
  uint8_t pong[125];        /* the newest ping's payload, answered once `out` is empty */
  size_t pong_len;
  int pong_due;
  mk_wsread rd;             /* bytes received and not parsed yet (the upgrade reply, then the
                               frame a read ended in the middle of), the message being assembled */
  int plain;                /* ws:// with no proxy in the environment: see plain_connection() */
  int direct;               /* ... and connected: send/recv on fd, not through curl */
  int scratch_held;         /* this socket holds its engine's scratch buffer (engine->ws_busy) */
  char key[32];             /* Sec-WebSocket-Key sent */
  char accept[32];          /* the Sec-WebSocket-Accept it calls for */
  int close_sent;
  int engine_closed;        /* released by engine:close(); the next poll says so */
  long status;              /* HTTP status of the upgrade reply */
  char errbuf[CURL_ERROR_SIZE];
};

static void base64(const uint8_t *src, size_t n, char *dst) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i, o = 0;
  for (i = 0; i + 2 < n; i += 3) {
    uint32_t v = ((uint32_t)src[i] << 16) | ((uint32_t)src[i + 1] << 8) | src[i + 2];
    dst[o++] = tab[v >> 18];
    dst[o++] = tab[(v >> 12) & 63];
    dst[o++] = tab[(v >> 6) & 63];
    dst[o++] = tab[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)src[i] << 16 | (i + 1 < n ? (uint32_t)src[i + 1] << 8 : 0);
    dst[o++] = tab[v >> 18];
    dst[o++] = tab[(v >> 12) & 63];
    dst[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
    dst[o++] = '=';
  }
  dst[o] = '\0';
}

/* A fresh Sec-WebSocket-Key (base64 of 16 random bytes) and the Sec-WebSocket-Accept it
 * calls for, base64(SHA-1(key + GUID)); 0, or -1 with errno when the random source fails. */
int mk_ws_make_key(char key[32], char accept[32]) {
  uint8_t nonce[16], digest[20];
  char kg[96];
  size_t kn;
  if (mk_random(nonce, sizeof nonce) != 0) return -1;
  base64(nonce, sizeof nonce, key);
  kn = (size_t)snprintf(kg, sizeof kg, "%s%s", key, WS_GUID);
  mk_sha1(kg, kn, digest);
  base64(digest, sizeof digest, accept);
  return 0;
}

void mk_ws_check_close(lua_State *L, int arg, lua_Integer code, const char *reason, size_t rn) {
  if (code < 1000 || code > 4999 || !mk_ws_close_code_ok((long)code))
    luaL_argerror(L, arg, "a close code is 1000-1003, 1007-1014 or 3000-4999");
  if (reason && (rn > 123 || !mk_utf8_valid((const uint8_t *)reason, rn) || memchr(reason, '\0', rn)))
    luaL_argerror(L, arg + 1, "a close reason is UTF-8 text of at most 123 bytes");
}

/* ---- object plumbing ---- */

static mk_ws *to_ws(lua_State *L, int i) { return (mk_ws *)luaL_checkudata(L, i, MK_WS_MT); }

static size_t pending(const mk_ws *w) { return w->out.len - w->out_off; }

/* Ends the connection now: the socket and curl's state go back, and so does every
 * buffer (a closed socket that Lua still holds keeps only its small userdata). */
static void release(lua_State *L, mk_ws *w) {
  mk_engine *e = w->engine;
  if (w->scratch_held && e) e->ws_busy = 0; /* an unwound poll held it */
  w->scratch_held = 0;
  if (w->self_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, w->self_ref);
  w->self_ref = LUA_NOREF;
  if (e) {
    if (w->prev) w->prev->next = w->next;
    else if (e->websockets == w) e->websockets = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
    if (w->easy && e->multi) curl_multi_remove_handle(e->multi, w->easy);
  }
  if (w->easy) curl_easy_cleanup(w->easy);
  w->easy = NULL;
  w->engine = NULL;
  if (w->engine_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, w->engine_ref);
  w->engine_ref = LUA_NOREF;
  w->fd = CURL_SOCKET_BAD;
  w->direct = 0;
  w->state = WS_CLOSED;
  mk_buf_free(&w->out);
  w->out_off = 0;
  w->pong_due = 0;
  mk_wsread_free(&w->rd);
}

static int ws_gc(lua_State *L) {
  release(L, to_ws(L, 1));
  return 0;
}

void mk_ws_engine_closing(lua_State *L, mk_engine *e) {
  while (e->websockets) {
    mk_ws *w = e->websockets;
    w->engine_closed = 1;
    release(L, w);
  }
}

/* curl_easy_recv and curl_easy_send find their connection by walking every connection
 * of the multi handle (curl 7.88, Curl_getconnectinfo): with 1,000 streams that walk was
 * a seventh of the reader's time. A ws:// connection with no proxy is a plain TCP socket
 * that curl has only connected (CONNECT_ONLY reads nothing of it), so its bytes can move
 * with send/recv. Anything else keeps going through curl: TLS (wss://, or an https://
 * proxy) must, and a proxy is not worth the guess. The environment is what libcurl reads
 * for an http:// URL (lib/url.c: http_proxy in lower case only, then all_proxy either way). */
static int plain_connection(const char *url) {
  static const char *const vars[] = {"http_proxy", "all_proxy", "ALL_PROXY"};
  size_t i;
  if (strncmp(url, "ws://", 5) != 0) return 0;
  for (i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return 0;
  }
  return 1;
}

/* recv(2) as curl_easy_recv reports it: CURLE_AGAIN when nothing waits, n = 0 at the end. */
static CURLcode sock_recv(mk_ws *w, char *buf, size_t len, size_t *n) {
  for (;;) {
    ssize_t r = recv(w->fd, buf, len, 0);
    if (r >= 0) {
      *n = (size_t)r;
      return CURLE_OK;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? CURLE_AGAIN : CURLE_RECV_ERROR;
  }
}

static CURLcode sock_send(mk_ws *w, const char *buf, size_t len, size_t *n) {
  for (;;) {
    ssize_t r = send(w->fd, buf, len, MSG_NOSIGNAL); /* a peer that left must not kill us */
    if (r >= 0) {
      *n = (size_t)r;
      return CURLE_OK;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? CURLE_AGAIN : CURLE_SEND_ERROR;
  }
}

static CURLcode ws_recv(mk_ws *w, char *buf, size_t len, size_t *n) {
  return w->direct ? sock_recv(w, buf, len, n) : curl_easy_recv(w->easy, buf, len, n);
}

static CURLcode ws_send_bytes(mk_ws *w, const char *buf, size_t len, size_t *n) {
  return w->direct ? sock_send(w, buf, len, n) : curl_easy_send(w->easy, buf, len, n);
}

void mk_ws_connected(lua_State *L, mk_ws *w, CURLcode code) {
  luaL_unref(L, LUA_REGISTRYINDEX, w->self_ref); /* the caller pushed it already */
  w->self_ref = LUA_NOREF;
  w->connect_code = code;
  if (code == CURLE_OK) {
    curl_socket_t fd = CURL_SOCKET_BAD;
    curl_easy_getinfo(w->easy, CURLINFO_ACTIVESOCKET, &fd);
    w->fd = fd;
    w->state = fd == CURL_SOCKET_BAD ? WS_CLOSED : WS_HANDSHAKE;
    w->direct = w->plain && fd != CURL_SOCKET_BAD;
  } else {
    w->state = WS_CLOSED;
  }
}

int mk_ws_pin(lua_State *L, mk_ws *w) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->self_ref);
  return 1;
}

/* ---- building the upgrade request ---- */

/* ws://h/p?q -> http://h/p?q for curl; the request target keeps path and query. */
static void split_url(lua_State *L, const char *url, const char **scheme_http, const char **rest) {
  if (strncmp(url, "ws://", 5) == 0) { *scheme_http = "http://"; *rest = url + 5; }
  else if (strncmp(url, "wss://", 6) == 0) { *scheme_http = "https://"; *rest = url + 6; }
  else luaL_error(L, "websocket url must start with ws:// or wss://");
}

static int header_ok(const char *s) { return strchr(s, '\r') == NULL && strchr(s, '\n') == NULL; }

/* opts.max_message: bytes >= 1; huge values (math.huge) are clamped, never cast out of range. */
static size_t max_message_option(lua_State *L) {
  size_t v = MK_WSREAD_MAX_MESSAGE_DEFAULT;
  lua_getfield(L, 2, "max_message");
  if (!lua_isnil(L, -1)) {
    lua_Number m = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(m >= 1))
      luaL_error(L, "websocket option 'max_message' must be a number of bytes >= 1");
    v = m >= (lua_Number)MK_WSREAD_MAX_MESSAGE_CAP ? MK_WSREAD_MAX_MESSAGE_CAP : (size_t)m;
  }
  lua_pop(L, 1);
  return v;
}

/* opts.connect_timeout: seconds > 0, clamped to [1 ms, CONNECT_TIMEOUT_MS_MAX] (curl
 * reads 0 as its own default of 300 s, and 1e300 s is no long). */
static void connect_timeout_option(lua_State *L, CURL *easy) {
  lua_getfield(L, 2, "connect_timeout");
  if (!lua_isnil(L, -1)) {
    lua_Number t = lua_tonumber(L, -1), ms;
    if (lua_type(L, -1) != LUA_TNUMBER || !(t > 0))
      luaL_error(L, "websocket option 'connect_timeout' must be a number of seconds > 0");
    ms = t * 1000;
    if (ms < 1) ms = 1;
    if (ms > CONNECT_TIMEOUT_MS_MAX) ms = CONNECT_TIMEOUT_MS_MAX;
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)ms);
  }
  lua_pop(L, 1);
}

/* engine:websocket{ url, headers = {}, ca_file, insecure, connect_timeout, max_message } -> ws */
int mk_ws_new(lua_State *L) {
  mk_engine *e = mk_check_engine(L, 1);
  const char *url, *scheme = NULL, *rest = NULL, *slash;
  mk_ws *w;
  int plain;
  char key[32], accept[32];
  luaL_Buffer req;
  CURLMcode mc;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "url");
  url = lua_tostring(L, -1);
  if (url == NULL) return luaL_error(L, "websocket option 'url' must be a string");
  split_url(L, url, &scheme, &rest);
  plain = plain_connection(url);
  /* The key: kernel randomness or no connection (mk_random never spins or weakens). */
  if (mk_ws_make_key(key, accept) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "websocket: the kernel's random source failed (%s)", strerror(errno));
    return 2;
  }

  w = lua_newuserdata(L, sizeof *w);
  memset(w, 0, sizeof *w);
  w->kind = MK_KIND_WS;
  w->plain = plain;
  w->self_ref = w->engine_ref = LUA_NOREF;
  w->fd = CURL_SOCKET_BAD;
  w->state = WS_CLOSED;
  luaL_getmetatable(L, MK_WS_MT);
  lua_setmetatable(L, -2);
  w->easy = curl_easy_init();
  if (w->easy == NULL) return luaL_error(L, "curl_easy_init failed");

  mk_wsread_init(&w->rd, max_message_option(L));

  /* The upgrade request, sent once connected: GET <path?query> HTTP/1.1. */
  slash = strchr(rest, '/');
  memcpy(w->key, key, sizeof key);
  memcpy(w->accept, accept, sizeof accept);
  luaL_buffinit(L, &req);
  luaL_addstring(&req, "GET ");
  luaL_addstring(&req, slash ? slash : "/");
  luaL_addstring(&req, " HTTP/1.1\r\nHost: ");
  luaL_addlstring(&req, rest, slash ? (size_t)(slash - rest) : strlen(rest));
  luaL_addstring(&req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Key: ");
  luaL_addstring(&req, w->key);
  luaL_addstring(&req, "\r\n");
  luaL_pushresult(&req);
  lua_getfield(L, 2, "headers");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING || !header_ok(k) || !header_ok(v))
        return luaL_error(L, "websocket headers must map strings to strings without line breaks");
      lua_pushvalue(L, -4); /* the request so far */
      lua_pushfstring(L, "%s: %s\r\n", k, v);
      lua_concat(L, 2);
      lua_replace(L, -5);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_pushliteral(L, "\r\n");
  lua_concat(L, 2);
  {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (mk_buf_append(&w->out, s, n) != 0) return luaL_error(L, "out of memory");
  }
  lua_pop(L, 1);

  /* The connect, on the multi handle. */
  lua_pushstring(L, scheme);
  lua_pushstring(L, rest);
  lua_concat(L, 2);
  curl_easy_setopt(w->easy, CURLOPT_URL, lua_tostring(L, -1));
  lua_pop(L, 1);
  curl_easy_setopt(w->easy, CURLOPT_CONNECT_ONLY, 1L);
  curl_easy_setopt(w->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1); /* ALPN h2 breaks the upgrade */
  curl_easy_setopt(w->easy, CURLOPT_SSL_ENABLE_ALPN, 0L);
  curl_easy_setopt(w->easy, CURLOPT_NOSIGNAL, 1L);
  /* curl's own receive buffer (16 KiB by default, per handle) is never read through:
   * curl_easy_recv reads into ours. The smallest size curl takes, then. */
  curl_easy_setopt(w->easy, CURLOPT_BUFFERSIZE, 1024L);
  /* Through an http_proxy, tunnel with CONNECT: sent to the proxy as a request,
   * the upgrade would hand it the token in the target, and no proxy upgrades it. */
  curl_easy_setopt(w->easy, CURLOPT_HTTPPROXYTUNNEL, 1L);
  curl_easy_setopt(w->easy, CURLOPT_PRIVATE, (char *)w);
  curl_easy_setopt(w->easy, CURLOPT_ERRORBUFFER, w->errbuf);
  lua_getfield(L, 2, "ca_file");
  if (lua_isstring(L, -1)) curl_easy_setopt(w->easy, CURLOPT_CAINFO, lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, 2, "insecure");
  if (lua_toboolean(L, -1)) {
    curl_easy_setopt(w->easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(w->easy, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  lua_pop(L, 1);
  connect_timeout_option(L, w->easy);

  mc = curl_multi_add_handle(e->multi, w->easy);
  if (mc != CURLM_OK) return luaL_error(L, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
  w->engine = e;
  w->next = e->websockets;
  if (w->next) w->next->prev = w;
  e->websockets = w;
  lua_pushvalue(L, 1);
  w->engine_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  w->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  w->state = WS_CONNECTING;
  return 1;
}

/* ---- I/O ---- */

static int queue_frame(mk_ws *w, int opcode, const void *p, size_t n) {
  uint8_t mask[4];
  /* A fresh mask per frame (RFC 6455 5.3); no randomness, no frame. */
  if (mk_random(mask, sizeof mask) != 0) return -1;
  return mk_ws_encode(&w->out, opcode, p, n, mask);
}

/* Sends what is queued; partial sends and CURLE_AGAIN leave the rest for later.
 * The pong due goes out once every earlier frame has: until then a newer ping
 * replaces it (RFC 6455 5.5.3), so a ping flood costs one pong, not a queue. */
static CURLcode flush(mk_ws *w) {
  for (;;) {
    size_t sent = 0;
    CURLcode rc;
    if (pending(w) == 0) {
      w->out.len = w->out_off = 0;
      if (!w->pong_due) return CURLE_OK;
      w->pong_due = 0;
      if (queue_frame(w, MK_WS_PONG, w->pong, w->pong_len) != 0) return CURLE_OUT_OF_MEMORY;
    }
    rc = ws_send_bytes(w, w->out.data + w->out_off, pending(w), &sent);
    if (rc == CURLE_AGAIN) break;
    if (rc != CURLE_OK) return rc;
    w->out_off += sent;
  }
  /* Slide the unsent tail down once the sent head is the larger part: each byte
   * moves at most about once, whatever the sizes curl takes per send. */
  if (w->out_off > pending(w)) {
    memmove(w->out.data, w->out.data + w->out_off, pending(w));
    w->out.len -= w->out_off;
    w->out_off = 0;
  }
  return CURLE_OK;
}

static void queue_close(mk_ws *w, int code, const char *reason) {
  char body[125];
  size_t n = 0;
  if (w->close_sent) return;
  if (w->pong_due) { /* the answer to a ping the server sent before it: still owed */
    w->pong_due = 0;
    queue_frame(w, MK_WS_PONG, w->pong, w->pong_len);
  }
  if (code > 0) {
    body[0] = (char)(code >> 8);
    body[1] = (char)code;
    n = 2;
    if (reason) {
      size_t r = strlen(reason);
      if (r > sizeof body - 2) r = sizeof body - 2;
      memcpy(body + 2, reason, r);
      n += r;
    }
  }
  queue_frame(w, MK_WS_CLOSE, body, n);
  w->close_sent = 1;
}

/* Bytes read per recv, and per poll: past READ_BATCH a poll stops reading and says
 * "more" (bytes may wait in the socket or in TLS), so a sender faster than the reader
 * cannot grow `in` without bound, and the caller gives way between batches. READ_CHUNK
 * is the size of the engine's scratch buffer. One read per poll: in decode mode every
 * message of a poll is decoded before the first is handled, all alive at once, and a
 * garbage collection meeting them traverses them all (at 256 KiB per poll a note event
 * cost Lua 5.4 ~16% more CPU). */
#define READ_CHUNK (64 * 1024)
#define READ_BATCH READ_CHUNK

/* What an idle socket keeps. Bytes are read into the engine's scratch buffer
 * (engine.h) and parsed there; a socket keeps only the frame it has not got
 * whole yet (its reader's `in`), and gives its buffers back once they are drained
 * (wsread.c): with many streams, most of them idle, per-socket buffers sized for
 * the largest message were most of the memory (~128 KiB each). */
static void trim(mk_ws *w) {
  mk_wsread_trim(&w->rd);
  if (pending(w) == 0) {
    w->out.len = w->out_off = 0;
    mk_wsread_shrink(&w->out);
  }
}

/* What one poll hands to Lua (wsread.h's mk_wsout), and what it needs for that. Pings
 * and pongs are one event each per poll, with the newest payload. */
typedef struct {
  mk_wsout out;
  mk_ws *w;
  int decoder; /* stack index of the JSON decoder (decode mode), 0 when messages stay strings */
  int pinged, ponged;
  size_t ping_len, pong_len;
  char ping[125], pong[125];
} poll_out;

static void fail(poll_out *o, mk_ws *w, int code, const char *why) {
  if (code > 0 && w->state == WS_OPEN) {
    queue_close(w, code, why);
    flush(w);
  }
  mk_wsout_event(&o->out, "error", why, strlen(why), code);
  w->state = WS_CLOSED;
}

/* Checks the upgrade reply once its head is complete (wshandshake.c). */
static void handshake(poll_out *o, mk_ws *w) {
  mk_ws_reply r;
  int rc = mk_ws_reply_parse(w->rd.in.data, w->rd.in.len, w->accept, &r);
  if (rc == MK_WSH_MORE) return;
  if (rc == MK_WSH_INVALID) {
    fail(o, w, 0, r.why);
    return;
  }
  w->status = r.status;
  if (rc == MK_WSH_REFUSED) {
    mk_wsout_event(&o->out, "refused", w->rd.in.data, r.head_len, r.status);
    w->state = WS_CLOSED;
    return;
  }
  w->rd.in_off = r.head_len; /* bytes after the head are frames already */
  w->state = WS_OPEN;
  mk_wsout_event(&o->out, "open", NULL, 0, 0);
}

static int reading(const mk_ws *w) { return w->state == WS_OPEN || w->state == WS_CLOSING; }

/* A message decoded as JSON where it lies (decode mode): no Lua string of it, and no copy.
 * false when it is not JSON, or its decoding failed (Misskey ignores such frames too). The
 * decoder stops on a NUL after the text: the byte after the message is made one while it
 * decodes, then put back. That byte is ours to write: the message lies in the reader's
 * msg.data (reassembled; its NUL), in its `in` (a mk_buf: room for its NUL past every byte it
 * holds), or in the read buffer, which has a spare byte after the most a read puts there
 * (READ_CHUNK + 1). No Lua code runs while the decoder runs (a C function over raw table
 * accesses). A text message is valid UTF-8 already (mk_ws_feed_view). */
static void push_decoded(poll_out *o, int opcode, const uint8_t *data, size_t len) {
  lua_State *L = o->out.L;
  char *after = (char *)(uintptr_t)(data + len), saved;
  int failed;
  if (len == 0) {
    lua_pushboolean(L, 0);
    return;
  }
  lua_pushvalue(L, o->decoder);
  lua_pushlightuserdata(L, (void *)(uintptr_t)data);
  lua_pushinteger(L, (lua_Integer)len);
  lua_pushboolean(L, opcode == MK_WS_TEXT);
  saved = *after;
  *after = '\0';
  failed = lua_pcall(L, 3, 1, 0) != 0;
  *after = saved;
  if (failed || lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 0);
  }
}

/* ---- the reader's hooks (wsread.h); ctx is the poll_out ---- */

static int on_reading(void *ctx) { return reading(((poll_out *)ctx)->w); }

/* A whole message (text or binary): a string in the queue, or its value. */
static void on_message(void *ctx, int opcode, const uint8_t *data, size_t len) {
  poll_out *o = ctx;
  if (o->decoder) {
    push_decoded(o, opcode, data, len);
    lua_rawseti(o->out.L, o->out.queue, (int)++o->out.tail);
  } else {
    mk_wsout_string(&o->out, data, len);
  }
}

/* Answered with a pong once what is queued before it has gone (flush). */
static void on_ping(void *ctx, const uint8_t *payload, size_t len) {
  poll_out *o = ctx;
  mk_ws *w = o->w;
  memcpy(w->pong, payload, len);
  w->pong_len = len;
  w->pong_due = w->state == WS_OPEN;
  memcpy(o->ping, payload, len);
  o->ping_len = len;
  o->pinged = 1;
}

static void on_pong(void *ctx, const uint8_t *payload, size_t len) {
  poll_out *o = ctx;
  memcpy(o->pong, payload, len);
  o->pong_len = len;
  o->ponged = 1;
}

static void on_close(void *ctx, int code, const uint8_t *reason, size_t len) {
  poll_out *o = ctx;
  queue_close(o->w, code == 1005 ? 0 : code, NULL); /* echo it, as the closing handshake asks */
  mk_wsout_event(&o->out, "close", (const char *)reason, len, code);
  o->w->state = WS_CLOSED;
}

static void on_fail(void *ctx, int code, const char *why) {
  poll_out *o = ctx;
  fail(o, o->w, code, why);
}

static const mk_wsread_hooks HOOKS = {on_reading, on_message, on_ping, on_pong, on_close, on_fail};

/* Handles bytes just read (p[0..n), in the scratch buffer): the upgrade reply, or frames
 * (mk_wsread_feed: parsed where they lie, without a copy). Returns 0, or -1 out of memory. */
static int consume(poll_out *o, mk_ws *w, const uint8_t *p, size_t n) {
  if (w->state == WS_HANDSHAKE) { /* the upgrade reply: once, in `in`, as it may come in pieces */
    if (mk_buf_append(&w->rd.in, p, n) != 0) return -1;
    handshake(o, w);
    if (reading(w)) mk_wsread_buffered(&w->rd, &HOOKS, o);
    return 0;
  }
  return mk_wsread_feed(&w->rd, &HOOKS, o, p, n);
}

/* Reads what is available now, a scratch buffer at a time, and handles each read
 * before the next, until CURLE_AGAIN (TLS may hold bytes poll cannot see) or
 * READ_BATCH bytes (then *more = 1). The engine's scratch buffer is shared by its
 * sockets; a poll that finds it taken (one unwound by a memory error, or a finalizer
 * polling from inside another poll) uses a buffer of its own. */
static CURLcode drain(poll_out *o, mk_ws *w, int *eof, int *more) {
  mk_engine *e = w->engine;
  size_t got = 0;
  char *scratch;
  CURLcode rc = CURLE_OK;
  if (!e->ws_busy) {
    /* + 1: the byte push_decoded may make a NUL after a message that ends a full read */
    if (e->ws_scratch == NULL && (e->ws_scratch = malloc(READ_CHUNK + 1)) == NULL) return CURLE_OUT_OF_MEMORY;
    scratch = e->ws_scratch;
    e->ws_busy = 1;
    w->scratch_held = 1;
  } else if ((scratch = malloc(READ_CHUNK + 1)) == NULL) {
    return CURLE_OUT_OF_MEMORY;
  }
  while ((w->state == WS_HANDSHAKE || reading(w)) && !*eof) {
    size_t n = 0;
    if (got >= READ_BATCH) {
      *more = 1;
      break;
    }
    rc = ws_recv(w, scratch, READ_BATCH - got < READ_CHUNK ? READ_BATCH - got : READ_CHUNK, &n);
    if (rc == CURLE_AGAIN) {
      rc = CURLE_OK;
      break;
    }
    if (rc != CURLE_OK) break;
    if (n == 0) {
      *eof = 1;
    } else {
      /* Until the read is handled: a memory error raised in Lua would lose its rest. */
      w->rd.cut_short = 1;
      if (consume(o, w, (const uint8_t *)scratch, n) != 0) rc = CURLE_OUT_OF_MEMORY;
      w->rd.cut_short = 0;
    }
    got += n;
    if (rc != CURLE_OK) break;
  }
  if (w->scratch_held) {
    e->ws_busy = 0;
    w->scratch_held = 0;
  } else {
    free(scratch);
  }
  return rc;
}


/* ws:poll(queue, tail [, array_mt | decoder]) -> tail, want, events, more
 * Moves every byte it can without blocking (reading at most READ_BATCH bytes).
 * Every whole message, text or binary, becomes a string at queue[tail + 1],
 * queue[tail + 2], ...; the new tail is returned. With array_mt (decode mode) each
 * becomes its JSON value instead, decoded as json.decode does with arrays marked by
 * array_mt (false for a message that is not JSON), without a Lua string of it; given a
 * decoder made by core.json_decoder instead, as that decoder does, with its key cache. `events` is nil, or what else
 * happened, in order: { "open" }, { "close", reason, code },
 * { "refused", reply_head, status }, { "error", message, close_code }, { "eof" };
 * then { "ping", data } and { "pong", data } once each, with the newest payload,
 * when any came. `want` is what to wait for next on ws:fd(): "r", "rw" (bytes
 * still to send), "w" (more than SEND_HIGH_WATER bytes to send: nothing is read
 * until they drain) or nil once closed. `more` is true when the read stopped at
 * READ_BATCH: bytes may be waiting (in TLS too, where the fd does not show them),
 * so poll again without waiting on the fd. */
static int ws_poll(lua_State *L) {
  mk_ws *w = to_ws(L, 1);
  int eof = 0, more = 0;
  CURLcode rc;
  poll_out o;
  luaL_checktype(L, 2, LUA_TTABLE);
  memset(&o, 0, offsetof(poll_out, ping)); /* the payload copies are written before use */
  o.w = w;
  o.out.L = L;
  o.out.queue = 2;
  o.out.slot = 4; /* the event list's */
  o.out.tail = luaL_checkinteger(L, 3);
  lua_settop(L, 4);
  if (mk_json_push_view_decoder(L, 4)) { /* 5: the decoder, sharing json.decode's key cache */
    o.decoder = 5;
  } else if (lua_istable(L, 4)) { /* 5: the decoder, its upvalue the array metatable */
    lua_pushvalue(L, 4);
    lua_pushcclosure(L, mk_json_view_decode, 1);
    o.decoder = 5;
  } else {
    if (!lua_isnil(L, 4)) luaL_argerror(L, 4, "array metatable or decoder from core.json_decoder expected");
    lua_pushnil(L);
  }
  lua_pushnil(L);
  lua_replace(L, 4); /* 4: the event list, made on the first event */
  if (w->state == WS_CONNECTING) {
    lua_pushinteger(L, o.out.tail);
    lua_pushliteral(L, "connecting");
    return 2;
  }
  if (w->engine_closed) {
    w->engine_closed = 0;
    static const char why[] = "its engine was closed";
    mk_wsout_event(&o.out, "error", why, sizeof why - 1, 0);
  }
  if (w->state == WS_CLOSED && w->easy && w->connect_code != CURLE_OK) {
    const char *m = w->errbuf[0] ? w->errbuf : curl_easy_strerror(w->connect_code);
    mk_wsout_event(&o.out, "error", m, strlen(m), 0);
    release(L, w);
  }
  if (w->rd.cut_short && w->state != WS_CLOSED) { /* see drain(): the stream lost bytes */
    if (w->scratch_held) w->engine->ws_busy = 0;
    w->scratch_held = 0;
    mk_wsread_lost(&w->rd, &HOOKS, &o);
  }
  if (w->state == WS_HANDSHAKE || w->state == WS_OPEN || w->state == WS_CLOSING) {
    rc = flush(w);
    /* Over the high-water mark, leave the peer's bytes in the socket: a peer
     * that sends without reading our answers is held back by TCP. */
    if (rc == CURLE_OK && pending(w) <= SEND_HIGH_WATER) rc = drain(&o, w, &eof, &more);
    if (rc != CURLE_OK) {
      const char *m = curl_easy_strerror(rc);
      mk_wsout_event(&o.out, "error", m, strlen(m), 0);
      w->state = WS_CLOSED;
    } else {
      if (w->state != WS_CLOSED) trim(w);
      if (o.pinged) mk_wsout_event(&o.out, "ping", o.ping, o.ping_len, 0);
      if (o.ponged) mk_wsout_event(&o.out, "pong", o.pong, o.pong_len, 0);
      if (flush(w) != CURLE_OK) w->state = WS_CLOSED;
      if (eof && w->state != WS_CLOSED) {
        mk_wsout_event(&o.out, "eof", NULL, 0, 0);
        w->state = WS_CLOSED;
      }
      mk_wsread_account(L, &w->rd, w->out.cap);
    }
  }
  lua_pushinteger(L, o.out.tail);
  if (w->state == WS_CLOSED) {
    release(L, w);
    lua_pushnil(L);
  } else if (pending(w) > SEND_HIGH_WATER) {
    lua_pushliteral(L, "w");
  } else if (pending(w) > 0) {
    lua_pushliteral(L, "rw");
  } else {
    lua_pushliteral(L, "r");
  }
  lua_pushvalue(L, 4);
  lua_pushboolean(L, more && w->state != WS_CLOSED);
  return 4;
}

/* ws:send(data [, "text" | "binary" | "ping"]) -> true | nil, message[, close_code]
 * A send while more than SEND_MAX bytes still wait fails the connection (1008). */
static int ws_send(lua_State *L) {
  mk_ws *w = to_ws(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  const char *type = luaL_optstring(L, 3, "text");
  int opcode = strcmp(type, "binary") == 0 ? MK_WS_BINARY : strcmp(type, "ping") == 0 ? MK_WS_PING : MK_WS_TEXT;
  if (w->state != WS_OPEN) {
    lua_pushnil(L);
    lua_pushfstring(L, "websocket is %s", STATE_NAMES[w->state]);
    return 2;
  }
  if (opcode == MK_WS_PING && n > 125) return luaL_argerror(L, 2, "a ping carries at most 125 bytes");
  if (pending(w) > SEND_MAX) {
    queue_close(w, POLICY_VIOLATION, "send buffer full");
    flush(w);
    release(L, w);
    lua_pushnil(L);
    lua_pushfstring(L, "websocket send buffer over %d MiB: the server is not reading", SEND_MAX >> 20);
    lua_pushinteger(L, POLICY_VIOLATION);
    return 3;
  }
  if (queue_frame(w, opcode, s, n) != 0) {
    return luaL_error(L, "websocket send: cannot queue the frame (out of memory, or the kernel's random source failed)");
  }
  if (flush(w) != CURLE_OK) {
    w->state = WS_CLOSED;
    lua_pushnil(L);
    lua_pushliteral(L, "websocket send failed");
    return 2;
  }
  mk_wsread_account(L, &w->rd, w->out.cap);
  lua_pushboolean(L, 1);
  return 1;
}

/* ws:close([code [, reason]]): starts the closing handshake (or drops a socket not
 * open yet). code: 1000-1003, 1007-1014 or 3000-4999; reason: UTF-8, at most 123 bytes. */
static int ws_close(lua_State *L) {
  mk_ws *w = to_ws(L, 1);
  lua_Integer code = luaL_optinteger(L, 2, 1000);
  size_t rn = 0;
  const char *reason = luaL_optlstring(L, 3, NULL, &rn);
  mk_ws_check_close(L, 2, code, reason, rn);
  if (w->state == WS_OPEN) {
    queue_close(w, (int)code, reason);
    flush(w);
    w->state = WS_CLOSING;
  } else if (w->state != WS_CLOSING) {
    release(L, w);
  }
  return 0;
}

/* ws:buffered() -> bytes queued and not yet sent (pongs included). */
static int ws_buffered(lua_State *L) {
  mk_ws *w = to_ws(L, 1);
  lua_pushinteger(L, (lua_Integer)(pending(w) + (w->pong_due ? w->pong_len + 6 : 0)));
  return 1;
}

/* ws:_memory() -> bytes of C buffers this socket holds (for specs). */
static int ws_memory(lua_State *L) {
  mk_ws *w = to_ws(L, 1);
  lua_pushinteger(L, (lua_Integer)(mk_wsread_memory(&w->rd) + w->out.cap));
  return 1;
}

static int ws_fd(lua_State *L) {
  mk_ws *w = to_ws(L, 1);
  if (w->fd == CURL_SOCKET_BAD) return 0;
  lua_pushinteger(L, (lua_Integer)w->fd);
  return 1;
}

static int ws_state_name(lua_State *L) {
  lua_pushstring(L, STATE_NAMES[to_ws(L, 1)->state]);
  return 1;
}

/* ws:done() -> true once the connect phase is over (for the scheduler's waits). */
static int ws_done(lua_State *L) {
  lua_pushboolean(L, to_ws(L, 1)->state != WS_CONNECTING);
  return 1;
}

/* ws:cancel(): like close, for the scheduler's cancel path. */
static int ws_cancel(lua_State *L) {
  release(L, to_ws(L, 1));
  return 0;
}

static int ws_tostring(lua_State *L) {
  mk_ws *w = to_ws(L, 1);
  lua_pushfstring(L, "misskey.WebSocket (%p, %s)", (void *)w, STATE_NAMES[w->state]);
  return 1;
}

/* ---- the codec, for unit vectors in specs (core._ws_parse, core._ws_encode, core._utf8_valid) ---- */

/* core._ws_parse(bytes [, max_payload]) -> used, fin, opcode, payload | 0 (need more) | -close_code */
int mk_l_ws_parse(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  mk_frame f;
  long used = mk_ws_parse((const uint8_t *)s, n, (size_t)luaL_optinteger(L, 2, 16 * 1024 * 1024), &f);
  lua_pushinteger(L, used);
  if (used <= 0) return 1;
  lua_pushboolean(L, f.fin);
  lua_pushinteger(L, f.opcode);
  lua_pushlstring(L, (const char *)f.payload, f.len);
  return 4;
}

/* core._ws_encode(opcode, payload, mask4) -> the masked client frame */
int mk_l_ws_encode(lua_State *L) {
  size_t n, mn;
  int opcode = (int)luaL_checkinteger(L, 1);
  const char *p = luaL_checklstring(L, 2, &n), *mask = luaL_checklstring(L, 3, &mn);
  mk_buf b = {NULL, 0, 0};
  if (mn != 4) return luaL_argerror(L, 3, "a mask is 4 bytes");
  if (mk_ws_encode(&b, opcode, p, n, (const uint8_t *)mask) != 0) return luaL_error(L, "out of memory");
  lua_pushlstring(L, b.data, b.len);
  mk_buf_free(&b);
  return 1;
}

/* core._ws_reply(bytes, accept) -> "more" | "open" | "refused" | "invalid", status, head_len, why */
int mk_l_ws_reply(lua_State *L) {
  static const char *const names[] = {"invalid", "more", "open", "refused"};
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n), *accept = luaL_checkstring(L, 2);
  mk_ws_reply r;
  int rc = mk_ws_reply_parse(s, n, accept, &r);
  lua_pushstring(L, names[rc + 1]);
  lua_pushinteger(L, r.status);
  lua_pushinteger(L, (lua_Integer)r.head_len);
  if (r.why) lua_pushstring(L, r.why);
  else lua_pushnil(L);
  return 4;
}

int mk_l_utf8_valid(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushboolean(L, mk_utf8_valid((const uint8_t *)s, n));
  return 1;
}

void mk_ws_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"poll", ws_poll},   {"send", ws_send},   {"close", ws_close},
                                     {"fd", ws_fd},       {"state", ws_state_name}, {"done", ws_done},
                                     {"cancel", ws_cancel}, {"buffered", ws_buffered},
                                     {"_memory", ws_memory},  {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", ws_gc}, {"__close", ws_cancel}, {"__tostring", ws_tostring}, {NULL, NULL}};
  luaL_newmetatable(L, MK_WS_MT);
  mk_setfuncs(L, meta);
  lua_pushliteral(L, MK_WS_MT);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  mk_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
