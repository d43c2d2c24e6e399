/* WebSocket client over libcurl's CONNECT_ONLY (Debian's libcurl 7.88 has no
 * WebSocket support of its own). The connect (TCP, TLS) runs on the engine's
 * multi handle like any transfer; the easy handle then stays in the multi
 * handle, because removing it closes a CONNECT_ONLY connection. After that,
 * ws:poll(queue, tail) does all the I/O without blocking (curl_easy_send/recv):
 * the upgrade request and reply, frames in and out; every message it reads is
 * stored straight into the caller's queue as a string. The socket is watched by the
 * scheduler (engine:watch), never by curl. No Lua runs inside libcurl. */
#define _DEFAULT_SOURCE
#include "ws.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <lauxlib.h>

#include "compat.h"
#include "hash.h"
#include "wsframe.h"

#define MK_WS_MT "misskey.WebSocket"
#define HANDSHAKE_MAX (64 * 1024)
static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

typedef enum { WS_CONNECTING, WS_HANDSHAKE, WS_OPEN, WS_CLOSING, WS_CLOSED } ws_state;
static const char *const STATE_NAMES[] = {"connecting", "handshake", "open", "closing", "closed"};

struct mk_ws {
  int kind;                 /* MK_KIND_WS: tells it from a transfer in CURLINFO_PRIVATE */
  CURL *easy;
  mk_engine *engine;        /* the engine whose multi handle holds easy */
  int self_ref, engine_ref; /* self: pinned while connecting; engine: while easy is in it */
  ws_state state;
  CURLcode connect_code;
  curl_socket_t fd;
  mk_buf out;               /* bytes waiting to be sent */
  mk_buf in;                /* bytes received and not parsed yet */
  size_t in_off;            /* parsed prefix of `in` */
  mk_ws_message msg;
  size_t max_message;
  char key[32];             /* Sec-WebSocket-Key sent */
  int close_sent;
  long status;              /* HTTP status of the upgrade reply */
  char errbuf[CURL_ERROR_SIZE];
};

static void fill_random(void *p, size_t n) {
  uint8_t *b = p;
  while (n > 0) {
    ssize_t got = getrandom(b, n, 0);
    if (got <= 0) continue; /* EINTR; the entropy pool is initialised long before us */
    b += got;
    n -= (size_t)got;
  }
}

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

/* ---- object plumbing ---- */

static mk_ws *to_ws(lua_State *L, int i) { return (mk_ws *)luaL_checkudata(L, i, MK_WS_MT); }

static void release(lua_State *L, mk_ws *w) {
  if (w->self_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, w->self_ref);
  w->self_ref = LUA_NOREF;
  if (w->easy && w->engine && w->engine->multi) curl_multi_remove_handle(w->engine->multi, w->easy);
  if (w->easy) curl_easy_cleanup(w->easy);
  w->easy = NULL;
  w->engine = NULL;
  if (w->engine_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, w->engine_ref);
  w->engine_ref = LUA_NOREF;
  w->fd = CURL_SOCKET_BAD;
  w->state = WS_CLOSED;
}

static int ws_gc(lua_State *L) {
  mk_ws *w = to_ws(L, 1);
  release(L, w);
  mk_buf_free(&w->out);
  mk_buf_free(&w->in);
  mk_buf_free(&w->msg.data);
  return 0;
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

/* engine:websocket{ url, headers = {}, ca_file, insecure, connect_timeout, max_message } -> ws */
int mk_ws_new(lua_State *L) {
  mk_engine *e = mk_check_engine(L, 1);
  const char *url, *scheme = NULL, *rest = NULL, *slash;
  mk_ws *w;
  uint8_t nonce[16];
  luaL_Buffer req;
  CURLMcode mc;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "url");
  url = lua_tostring(L, -1);
  if (url == NULL) return luaL_error(L, "websocket option 'url' must be a string");
  split_url(L, url, &scheme, &rest);

  w = lua_newuserdata(L, sizeof *w);
  memset(w, 0, sizeof *w);
  w->kind = MK_KIND_WS;
  w->self_ref = w->engine_ref = LUA_NOREF;
  w->fd = CURL_SOCKET_BAD;
  w->state = WS_CLOSED;
  luaL_getmetatable(L, MK_WS_MT);
  lua_setmetatable(L, -2);
  w->easy = curl_easy_init();
  if (w->easy == NULL) return luaL_error(L, "curl_easy_init failed");

  lua_getfield(L, 2, "max_message");
  w->max_message = lua_isnumber(L, -1) ? (size_t)lua_tonumber(L, -1) : 16u * 1024 * 1024;
  w->msg.max_size = w->max_message;
  lua_pop(L, 1);

  /* The upgrade request, sent once connected: GET <path?query> HTTP/1.1. */
  slash = strchr(rest, '/');
  fill_random(nonce, sizeof nonce);
  base64(nonce, sizeof nonce, w->key);
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
  lua_getfield(L, 2, "connect_timeout");
  if (lua_isnumber(L, -1)) curl_easy_setopt(w->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(lua_tonumber(L, -1) * 1000));
  lua_pop(L, 1);

  mc = curl_multi_add_handle(e->multi, w->easy);
  if (mc != CURLM_OK) return luaL_error(L, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
  w->engine = e;
  lua_pushvalue(L, 1);
  w->engine_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  w->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  w->state = WS_CONNECTING;
  return 1;
}

/* ---- I/O ---- */

/* Sends what is queued; partial sends and CURLE_AGAIN leave the rest for later. */
static CURLcode flush(mk_ws *w) {
  while (w->out.len > 0) {
    size_t sent = 0;
    CURLcode rc = curl_easy_send(w->easy, w->out.data, w->out.len, &sent);
    if (rc == CURLE_AGAIN) return CURLE_OK;
    if (rc != CURLE_OK) return rc;
    memmove(w->out.data, w->out.data + sent, w->out.len - sent);
    w->out.len -= sent;
  }
  return CURLE_OK;
}

static int queue_frame(mk_ws *w, int opcode, const void *p, size_t n) {
  uint8_t mask[4];
  fill_random(mask, sizeof mask); /* a fresh mask per frame (RFC 6455 5.3) */
  return mk_ws_encode(&w->out, opcode, p, n, mask);
}

static void queue_close(mk_ws *w, int code, const char *reason) {
  char body[125];
  size_t n = 0;
  if (w->close_sent) return;
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
 * cannot grow `in` without bound, and the caller gives way between batches. */
#define READ_CHUNK (64 * 1024)
#define READ_BATCH (256 * 1024)

/* Room for n more bytes at the end of b (the buffer type has no reserve of its own). */
static int reserve(mk_buf *b, size_t n) {
  size_t cap;
  char *d;
  if (b->cap - b->len >= n) return 0;
  cap = b->cap ? b->cap : 4096;
  while (cap - b->len < n) cap *= 2;
  d = realloc(b->data, cap);
  if (d == NULL) return -1;
  b->data = d;
  b->cap = cap;
  return 0;
}

/* Reads what is available now, straight into `in`, until CURLE_AGAIN (TLS may hold
 * bytes poll cannot see) or READ_BATCH bytes (then *more = 1). */
static CURLcode drain(mk_ws *w, int *eof, int *more) {
  size_t got = 0;
  for (;;) {
    size_t n = 0;
    CURLcode rc;
    if (got >= READ_BATCH) { *more = 1; return CURLE_OK; }
    if (reserve(&w->in, READ_CHUNK) != 0) return CURLE_OUT_OF_MEMORY;
    rc = curl_easy_recv(w->easy, w->in.data + w->in.len, READ_CHUNK, &n);
    if (rc == CURLE_AGAIN) return CURLE_OK;
    if (rc != CURLE_OK) return rc;
    if (n == 0) { *eof = 1; return CURLE_OK; }
    w->in.len += n;
    got += n;
  }
}

/* What one poll hands to Lua: messages go into queue[tail + 1 ...]; everything else
 * becomes an event table, in a list made on the first event (most polls have none). */
typedef struct {
  lua_State *L;
  int queue;   /* stack index of the message queue */
  int events;  /* stack index of the event list, 0 until one is made */
  lua_Integer tail;
} poll_out;

/* events[#events+1] = { name, a, b } */
static void push_event(poll_out *o, const char *name, const char *a, size_t alen, lua_Integer num) {
  lua_State *L = o->L;
  if (o->events == 0) {
    lua_newtable(L);
    lua_replace(L, 4); /* the slot ws_poll keeps for it */
    o->events = 4;
  }
  lua_createtable(L, 3, 0);
  lua_pushstring(L, name);
  lua_rawseti(L, -2, 1);
  if (a) {
    lua_pushlstring(L, a, alen);
    lua_rawseti(L, -2, 2);
  }
  if (num) {
    lua_pushinteger(L, num);
    lua_rawseti(L, -2, 3);
  }
  lua_rawseti(L, o->events, (int)mk_rawlen(L, o->events) + 1);
}

static void fail(poll_out *o, mk_ws *w, int code, const char *why) {
  if (code > 0 && w->state == WS_OPEN) {
    queue_close(w, code, why);
    flush(w);
  }
  push_event(o, "error", why, strlen(why), code);
  w->state = WS_CLOSED;
}

/* Finds the end of the upgrade reply and checks it: 101 and the right accept key. */
static int handshake(poll_out *o, mk_ws *w) {
  const char *head = w->in.data, *end = NULL, *p;
  size_t i;
  char expect[64], line[256];
  uint8_t digest[20];
  /* A NUL after the bytes (not counted) makes the head safe for sscanf and strchr. */
  if (mk_buf_append(&w->in, "", 1) != 0) return 0;
  w->in.len--;
  head = w->in.data;
  for (i = 3; i < w->in.len; i++)
    if (memcmp(head + i - 3, "\r\n\r\n", 4) == 0) { end = head + i + 1; break; }
  if (end == NULL) {
    if (w->in.len > HANDSHAKE_MAX) fail(o, w, 0, "websocket upgrade reply too long");
    return 0;
  }
  if (sscanf(head, "HTTP/1.1 %ld", &w->status) != 1 && sscanf(head, "HTTP/1.0 %ld", &w->status) != 1) {
    fail(o, w, 0, "websocket upgrade reply is not HTTP");
    return 0;
  }
  if (w->status != 101) {
    push_event(o, "refused", head, (size_t)(end - head), w->status);
    w->state = WS_CLOSED;
    return 0;
  }
  /* Sec-WebSocket-Accept = base64(sha1(key + GUID)) */
  {
    char kg[96];
    size_t kn = (size_t)snprintf(kg, sizeof kg, "%s%s", w->key, WS_GUID);
    mk_sha1(kg, kn, digest);
    base64(digest, sizeof digest, expect);
  }
  for (p = head; p < end; p = strchr(p, '\n') + 1) {
    size_t len = (size_t)(strchr(p, '\n') - p), k;
    if (len >= sizeof line) continue;
    for (k = 0; k < len; k++) line[k] = (char)tolower((unsigned char)p[k]);
    line[len] = '\0';
    if (strncmp(line, "sec-websocket-accept:", 21) == 0) {
      char got[64];
      const char *v = p + 21;
      size_t gn = 0;
      while (*v == ' ' || *v == '\t') v++;
      while (v < p + len && *v != '\r' && gn < sizeof got - 1) got[gn++] = *v++;
      got[gn] = '\0';
      if (strcmp(got, expect) == 0) {
        w->in_off = (size_t)(end - head); /* bytes after the head are frames already */
        w->state = WS_OPEN;
        push_event(o, "open", NULL, 0, 0);
        return 1;
      }
    }
  }
  fail(o, w, 0, "websocket upgrade reply has a wrong or missing Sec-WebSocket-Accept");
  return 0;
}

/* Parses every complete frame in `in`: messages go to the queue, control frames
 * become events; pings are answered. */
static void frames(poll_out *o, mk_ws *w) {
  lua_State *L = o->L;
  while (w->state == WS_OPEN || w->state == WS_CLOSING) {
    mk_frame f;
    int opcode = 0, r;
    const uint8_t *data = NULL;
    size_t len = 0;
    long used = mk_ws_parse((const uint8_t *)w->in.data + w->in_off, w->in.len - w->in_off, w->max_message, &f);
    if (used == 0) break;
    if (used < 0) {
      fail(o, w, (int)-used, -used == MK_WS_TOO_BIG ? "message too big" : "protocol error");
      return;
    }
    w->in_off += (size_t)used;
    switch (f.opcode) {
    case MK_WS_PING:
      queue_frame(w, MK_WS_PONG, f.payload, f.len);
      push_event(o, "ping", (const char *)f.payload, f.len, 0);
      break;
    case MK_WS_PONG:
      push_event(o, "pong", (const char *)f.payload, f.len, 0);
      break;
    case MK_WS_CLOSE: {
      int code = f.len >= 2 ? (f.payload[0] << 8) | f.payload[1] : 1005;
      if (f.len == 1 || (f.len > 2 && !mk_utf8_valid(f.payload + 2, f.len - 2))) {
        fail(o, w, MK_WS_PROTOCOL_ERROR, "invalid close frame");
        return;
      }
      queue_close(w, f.len >= 2 ? code : 0, NULL); /* echo it, as the closing handshake asks */
      push_event(o, "close", f.len > 2 ? (const char *)f.payload + 2 : "", f.len > 2 ? f.len - 2 : 0, code);
      w->state = WS_CLOSED;
      return;
    }
    default:
      r = mk_ws_feed_view(&w->msg, &f, &opcode, &data, &len);
      if (r < 0) {
        fail(o, w, r == -1 ? 1011 : -r,
             r == -MK_WS_INVALID_DATA ? "invalid UTF-8 in a text message"
             : r == -MK_WS_TOO_BIG    ? "message too big"
                                      : "protocol error");
        return;
      }
      if (r == 1) { /* a whole message (text or binary): a string in the queue */
        lua_pushlstring(L, (const char *)data, len);
        lua_rawseti(L, o->queue, (int)++o->tail);
        mk_buf_reset(&w->msg.data);
      }
    }
  }
  /* Keep only the unparsed tail. */
  if (w->in_off > 0) {
    memmove(w->in.data, w->in.data + w->in_off, w->in.len - w->in_off);
    w->in.len -= w->in_off;
    w->in_off = 0;
  }
}

/* ws:poll(queue, tail) -> tail, want, events, more
 * Moves every byte it can without blocking (reading at most READ_BATCH bytes).
 * Every whole message, text or binary, becomes a string at queue[tail + 1],
 * queue[tail + 2], ...; the new tail is returned. `events` is nil, or what else
 * happened, in order: { "open" }, { "ping", data }, { "pong", data },
 * { "close", reason, code }, { "refused", reply_head, status },
 * { "error", message, close_code }, { "eof" }. `want` is what to wait for next on
 * ws:fd(): "r", "rw" (bytes still to send) or nil once closed. `more` is true when
 * the read stopped at READ_BATCH: bytes may be waiting (in TLS too, where the fd
 * does not show them), so poll again without waiting on the fd. */
static int ws_poll(lua_State *L) {
  mk_ws *w = to_ws(L, 1);
  int eof = 0, more = 0;
  CURLcode rc;
  poll_out o;
  luaL_checktype(L, 2, LUA_TTABLE);
  o.L = L;
  o.queue = 2;
  o.tail = luaL_checkinteger(L, 3);
  o.events = 0;
  lua_settop(L, 3);
  lua_pushnil(L); /* 4: the event list, made on the first event */
  if (w->state == WS_CONNECTING) {
    lua_pushinteger(L, o.tail);
    lua_pushliteral(L, "connecting");
    return 2;
  }
  if (w->state == WS_CLOSED && w->easy && w->connect_code != CURLE_OK) {
    const char *m = w->errbuf[0] ? w->errbuf : curl_easy_strerror(w->connect_code);
    push_event(&o, "error", m, strlen(m), 0);
    release(L, w);
  }
  if (w->state == WS_HANDSHAKE || w->state == WS_OPEN || w->state == WS_CLOSING) {
    rc = flush(w);
    if (rc == CURLE_OK) rc = drain(w, &eof, &more);
    if (rc != CURLE_OK) {
      const char *m = curl_easy_strerror(rc);
      push_event(&o, "error", m, strlen(m), 0);
      w->state = WS_CLOSED;
    } else {
      if (w->state == WS_HANDSHAKE) handshake(&o, w);
      frames(&o, w);
      if (flush(w) != CURLE_OK) w->state = WS_CLOSED;
      if (eof && w->state != WS_CLOSED) {
        push_event(&o, "eof", NULL, 0, 0);
        w->state = WS_CLOSED;
      }
    }
  }
  lua_pushinteger(L, o.tail);
  if (w->state == WS_CLOSED) {
    release(L, w);
    lua_pushnil(L);
  } else if (w->out.len > 0) {
    lua_pushliteral(L, "rw");
  } else {
    lua_pushliteral(L, "r");
  }
  lua_pushvalue(L, 4);
  lua_pushboolean(L, more && w->state != WS_CLOSED);
  return 4;
}

/* ws:send(data [, "text" | "binary" | "ping"]) -> true | nil, message */
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
  if (queue_frame(w, opcode, s, n) != 0) return luaL_error(L, "out of memory");
  if (flush(w) != CURLE_OK) {
    w->state = WS_CLOSED;
    lua_pushnil(L);
    lua_pushliteral(L, "websocket send failed");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ws:close([code [, reason]]): starts the closing handshake (or drops a socket not open yet). */
static int ws_close(lua_State *L) {
  mk_ws *w = to_ws(L, 1);
  int code = (int)luaL_optinteger(L, 2, 1000);
  const char *reason = luaL_optstring(L, 3, NULL);
  if (w->state == WS_OPEN) {
    queue_close(w, code, reason);
    flush(w);
    w->state = WS_CLOSING;
  } else if (w->state != WS_CLOSING) {
    release(L, w);
  }
  return 0;
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

int mk_l_utf8_valid(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushboolean(L, mk_utf8_valid((const uint8_t *)s, n));
  return 1;
}

void mk_ws_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"poll", ws_poll},   {"send", ws_send},   {"close", ws_close},
                                     {"fd", ws_fd},       {"state", ws_state_name}, {"done", ws_done},
                                     {"cancel", ws_cancel}, {NULL, NULL}};
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
