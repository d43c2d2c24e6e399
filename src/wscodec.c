/* core.ws_codec: the WebSocket client's protocol without the I/O, for a host that moves
 * the bytes itself (nginx's cosockets: misskey.ngx.websocket). The same pure parts as
 * ws.c (wsframe.c, wshandshake.c): the upgrade reply check, frames parsed and messages
 * assembled under max_message, masked client frames. No socket, no engine, no Lua
 * called back: the caller feeds what it read and sends what it is told to. */
#include "wscodec.h"

#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include <lauxlib.h>

#include "compat.h"
#include "random.h"
#include "ws.h"
#include "wsframe.h"
#include "wshandshake.h"

#define MK_CODEC_MT "misskey.WsCodec"

/* As in ws.c: 16 MiB by default, clamped so sizes never overflow. */
#define MAX_MESSAGE_DEFAULT (16u * 1024 * 1024)
#define MAX_MESSAGE_CAP ((size_t)-1 / 2)
/* Buffers up to this size stay allocated between messages; bigger ones go back. */
#define KEEP 1024
/* The collector hears of C buffers in steps of this size (see ws.c's account()). */
#define ACCOUNT_STEP (1024 * 1024)

enum { CODEC_HANDSHAKE, CODEC_OPEN, CODEC_CLOSED };

typedef struct mk_codec {
  int state;
  char key[32], accept[32]; /* the Sec-WebSocket-Key sent and the accept value it calls for */
  int keyed;                /* key() was called: upgrade() has something to check against */
  mk_buf in;                /* the upgrade reply so far, then the frame a feed ended inside */
  mk_ws_message msg;        /* a fragmented message being assembled */
  size_t max_message;
  size_t reported;          /* buffer bytes the collector was last told about */
} mk_codec;

static mk_codec *to_codec(lua_State *L, int i) { return (mk_codec *)luaL_checkudata(L, i, MK_CODEC_MT); }

static void release(mk_codec *c) {
  mk_buf_free(&c->in);
  mk_buf_free(&c->msg.data);
  c->msg.opcode = 0;
}

static int codec_gc(lua_State *L) {
  release(to_codec(L, 1));
  return 0;
}

/* A drained buffer goes back; a big one holding a small tail shrinks to KEEP. */
static void shrink(mk_buf *b) {
  char *d;
  if (b->len == 0 && b->cap > KEEP) {
    mk_buf_free(b);
    return;
  }
  if (b->cap <= KEEP || b->len >= KEEP) return;
  d = realloc(b->data, KEEP);
  if (d == NULL) return;
  b->data = d;
  b->cap = KEEP;
  b->data[b->len] = '\0';
}

static void account(lua_State *L, mk_codec *c) {
  size_t held = c->in.cap + c->msg.data.cap;
  if (held >= c->reported + ACCOUNT_STEP) {
    lua_gc(L, LUA_GCSTEP, (int)((held - c->reported) / 1024));
    c->reported = held;
  } else if (held < c->reported) {
    c->reported = held;
  }
}

/* core.ws_codec([max_message]) -> codec. max_message: the largest message in bytes
 * (default 16 MiB; anything larger is clamped). */
int mk_l_ws_codec(lua_State *L) {
  mk_codec *c;
  size_t max = MAX_MESSAGE_DEFAULT;
  if (!lua_isnoneornil(L, 1)) {
    lua_Number n = luaL_checknumber(L, 1);
    if (!(n >= 1)) return luaL_argerror(L, 1, "max_message must be a number of bytes >= 1");
    max = n >= (lua_Number)MAX_MESSAGE_CAP ? MAX_MESSAGE_CAP : (size_t)n;
  }
  c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->state = CODEC_HANDSHAKE;
  c->max_message = max;
  c->msg.max_size = max;
  luaL_getmetatable(L, MK_CODEC_MT);
  lua_setmetatable(L, -2);
  return 1;
}

/* codec:key() -> the Sec-WebSocket-Key to send (fresh randomness; the accept value it calls
 * for is kept for upgrade()) | nil, why when the kernel's random source fails. */
static int codec_key(lua_State *L) {
  mk_codec *c = to_codec(L, 1);
  if (mk_ws_make_key(c->key, c->accept) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "websocket: the kernel's random source failed (%s)", strerror(errno));
    return 2;
  }
  c->keyed = 1;
  lua_pushstring(L, c->key);
  return 1;
}

/* codec:upgrade(bytes) -> "more" | "open", rest | "refused", status, head | "invalid", why
 * Feeds the bytes of the upgrade reply as they are read: "open" hands back what followed the
 * head (frames already), "refused" the head of a reply with another status. A head not ended
 * within 64 KiB is "invalid", so this holds at most that and the caller's last read. */
static int codec_upgrade(lua_State *L) {
  mk_codec *c = to_codec(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  mk_ws_reply r;
  int rc;
  if (!c->keyed) return luaL_error(L, "codec:upgrade before codec:key");
  if (c->state != CODEC_HANDSHAKE) return luaL_error(L, "codec:upgrade after the upgrade");
  if (mk_buf_append(&c->in, s, n) != 0) return luaL_error(L, "out of memory");
  rc = mk_ws_reply_parse(c->in.data, c->in.len, c->accept, &r);
  switch (rc) {
  case MK_WSH_MORE:
    lua_pushliteral(L, "more");
    return 1;
  case MK_WSH_INVALID:
    c->state = CODEC_CLOSED;
    release(c);
    lua_pushliteral(L, "invalid");
    lua_pushstring(L, r.why);
    return 2;
  case MK_WSH_REFUSED:
    c->state = CODEC_CLOSED;
    lua_pushliteral(L, "refused");
    lua_pushinteger(L, (lua_Integer)r.status);
    lua_pushlstring(L, c->in.data, r.head_len);
    release(c);
    return 3;
  default:
    c->state = CODEC_OPEN;
    lua_pushliteral(L, "open");
    lua_pushlstring(L, c->in.data + r.head_len, c->in.len - r.head_len);
    mk_buf_reset(&c->in);
    shrink(&c->in);
    return 2;
  }
}

/* What one feed hands back: messages into queue[tail + 1 ...], everything else as events. */
typedef struct {
  lua_State *L;
  int queue, events; /* stack indexes; events is 0 until the first event */
  lua_Integer tail;
} feed_out;

/* events[#events + 1] = { name, text, num } */
static void push_event(feed_out *o, const char *name, const char *s, size_t len, lua_Integer num) {
  lua_State *L = o->L;
  if (o->events == 0) {
    lua_newtable(L);
    lua_replace(L, 5); /* the slot codec_feed keeps for it */
    o->events = 5;
  }
  lua_createtable(L, 3, 0);
  lua_pushstring(L, name);
  lua_rawseti(L, -2, 1);
  if (s) {
    lua_pushlstring(L, s, len);
    lua_rawseti(L, -2, 2);
  }
  if (num) {
    lua_pushinteger(L, num);
    lua_rawseti(L, -2, 3);
  }
  lua_rawseti(L, o->events, (int)mk_rawlen(L, o->events) + 1);
}

/* The server broke the protocol: one "error" event with the close code to answer with. */
static void fail(feed_out *o, mk_codec *c, int code, const char *why) {
  push_event(o, "error", why, strlen(why), code);
  c->state = CODEC_CLOSED;
}

/* Parses every whole frame in p[*off..n): messages to the queue, control frames to events. */
static void frames(feed_out *o, mk_codec *c, const uint8_t *p, size_t n, size_t *off) {
  lua_State *L = o->L;
  while (c->state == CODEC_OPEN) {
    mk_frame f;
    int opcode = 0, r;
    const uint8_t *data = NULL;
    size_t len = 0;
    long used = mk_ws_parse(p + *off, n - *off, c->max_message, &f);
    if (used == 0) return;
    if (used < 0) {
      fail(o, c, (int)-used, -used == MK_WS_TOO_BIG ? "message too big" : "protocol error");
      return;
    }
    *off += (size_t)used;
    switch (f.opcode) {
    case MK_WS_PING:
      push_event(o, "ping", (const char *)f.payload, f.len, 0);
      break;
    case MK_WS_PONG:
      push_event(o, "pong", (const char *)f.payload, f.len, 0);
      break;
    case MK_WS_CLOSE: {
      int code = f.len >= 2 ? (f.payload[0] << 8) | f.payload[1] : 1005;
      if (f.len == 1 || (f.len >= 2 && !mk_ws_close_code_ok(code))) {
        fail(o, c, MK_WS_PROTOCOL_ERROR, "invalid close code");
        return;
      }
      if (f.len > 2 && !mk_utf8_valid(f.payload + 2, f.len - 2)) {
        fail(o, c, MK_WS_PROTOCOL_ERROR, "invalid close frame");
        return;
      }
      push_event(o, "close", f.len > 2 ? (const char *)f.payload + 2 : "", f.len > 2 ? f.len - 2 : 0, code);
      c->state = CODEC_CLOSED;
      return;
    }
    default:
      r = mk_ws_feed_view(&c->msg, &f, &opcode, &data, &len);
      if (r < 0) {
        fail(o, c, r == -1 ? 1011 : -r,
             r == -MK_WS_INVALID_DATA ? "invalid UTF-8 in a text message"
             : r == -MK_WS_TOO_BIG    ? "message too big"
                                      : "protocol error");
        return;
      }
      if (r == 1) {
        lua_pushlstring(L, (const char *)data, len);
        lua_rawseti(L, o->queue, (int)++o->tail);
        mk_buf_reset(&c->msg.data);
      }
    }
  }
}

/* The frames in `in`, then its unparsed rest moved to the front. */
static void frames_in(feed_out *o, mk_codec *c) {
  size_t off = 0;
  frames(o, c, (const uint8_t *)c->in.data, c->in.len, &off);
  if (off > 0) {
    memmove(c->in.data, c->in.data + off, c->in.len - off);
    c->in.len -= off;
    c->in.data[c->in.len] = '\0';
  }
}

/* codec:feed(bytes, queue, tail) -> tail, events
 * Every whole message in what was read (with what earlier feeds left) becomes a string at
 * queue[tail + 1], ...; the new tail is returned. `events` is nil or, in order:
 * { "ping", payload }, { "pong", payload }, { "close", reason, code } (the server's close:
 * echo it), { "error", why, close_code } (the server broke the protocol: close with that code).
 * After a close or an error the codec is closed and takes no more bytes. A frame cut off at
 * the end waits for the next feed; it never holds more than max_message and a header. */
static int codec_feed(lua_State *L) {
  mk_codec *c = to_codec(L, 1);
  size_t n, off = 0;
  const uint8_t *p = (const uint8_t *)luaL_checklstring(L, 2, &n);
  feed_out o;
  luaL_checktype(L, 3, LUA_TTABLE);
  o.L = L;
  o.queue = 3;
  o.events = 0;
  o.tail = luaL_checkinteger(L, 4);
  lua_settop(L, 4);
  lua_pushnil(L); /* 5: the event list, made on the first event */
  if (c->state == CODEC_HANDSHAKE) return luaL_error(L, "codec:feed before the upgrade");
  /* The frame waiting in `in` first, completed with just the bytes it lacks. */
  while (n - off > 0 && c->in.len > 0 && c->state == CODEC_OPEN) {
    size_t have = c->in.len, size = mk_ws_frame_size((const uint8_t *)c->in.data, have);
    size_t take = size > have ? size - have : n - off;
    if (take > n - off) take = n - off;
    if (mk_buf_append(&c->in, p + off, take) != 0) return luaL_error(L, "out of memory");
    off += take;
    frames_in(&o, c);
  }
  if (n - off > 0 && c->state == CODEC_OPEN) {
    frames(&o, c, p, n, &off);
    if (n - off > 0 && c->state == CODEC_OPEN && mk_buf_append(&c->in, p + off, n - off) != 0)
      return luaL_error(L, "out of memory");
  }
  if (c->state == CODEC_CLOSED) {
    release(c);
  } else {
    shrink(&c->in);
    if (c->msg.opcode == 0) shrink(&c->msg.data);
  }
  account(L, c);
  lua_pushinteger(L, o.tail);
  lua_pushvalue(L, 5);
  return 2;
}

/* One masked frame with a fresh mask (RFC 6455 5.3), as a string. */
static int push_frame(lua_State *L, int opcode, const void *payload, size_t len) {
  uint8_t mask[4];
  mk_buf b = {NULL, 0, 0};
  if (mk_random(mask, sizeof mask) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "websocket: the kernel's random source failed (%s)", strerror(errno));
    return 2;
  }
  if (mk_ws_encode(&b, opcode, payload, len, mask) != 0) return luaL_error(L, "out of memory");
  lua_pushlstring(L, b.data, b.len);
  mk_buf_free(&b);
  return 1;
}

/* codec:encode(data [, "text" | "binary" | "ping" | "pong"]) -> frame | nil, why */
static int codec_encode(lua_State *L) {
  static const char *const kinds[] = {"text", "binary", "ping", "pong", NULL};
  static const int opcodes[] = {MK_WS_TEXT, MK_WS_BINARY, MK_WS_PING, MK_WS_PONG};
  size_t n;
  const char *s;
  int kind;
  to_codec(L, 1);
  s = luaL_checklstring(L, 2, &n);
  kind = luaL_checkoption(L, 3, "text", kinds);
  if (kind >= 2 && n > 125) return luaL_argerror(L, 2, "a ping or pong carries at most 125 bytes");
  return push_frame(L, opcodes[kind], s, n);
}

/* codec:close_frame([code [, reason]]) -> frame | nil, why. code: 1000-1003, 1007-1014 or
 * 3000-4999; reason: UTF-8, at most 123 bytes. Without a code, a close frame with no body
 * (the echo of a server's close that had none). */
static int codec_close_frame(lua_State *L) {
  lua_Integer code;
  size_t rn = 0;
  const char *reason = luaL_optlstring(L, 3, NULL, &rn);
  char body[125];
  to_codec(L, 1);
  if (lua_isnoneornil(L, 2)) return push_frame(L, MK_WS_CLOSE, body, 0);
  code = luaL_checkinteger(L, 2);
  if (code < 1000 || code > 4999 || !mk_ws_close_code_ok((long)code))
    return luaL_argerror(L, 1, "a close code is 1000-1003, 1007-1014 or 3000-4999");
  if (reason && (rn > 123 || !mk_utf8_valid((const uint8_t *)reason, rn) || memchr(reason, '\0', rn)))
    return luaL_argerror(L, 2, "a close reason is UTF-8 text of at most 123 bytes");
  body[0] = (char)(code >> 8);
  body[1] = (char)code;
  if (rn) memcpy(body + 2, reason, rn);
  return push_frame(L, MK_WS_CLOSE, body, 2 + rn);
}

/* codec:state() -> "handshake" | "open" | "closed" */
static int codec_state(lua_State *L) {
  static const char *const names[] = {"handshake", "open", "closed"};
  lua_pushstring(L, names[to_codec(L, 1)->state]);
  return 1;
}

/* codec:memory() -> bytes of C buffers the codec holds (for specs). */
static int codec_memory(lua_State *L) {
  mk_codec *c = to_codec(L, 1);
  lua_pushinteger(L, (lua_Integer)(c->in.cap + c->msg.data.cap));
  return 1;
}

void mk_wscodec_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"key", codec_key},       {"upgrade", codec_upgrade},
                                     {"feed", codec_feed},     {"encode", codec_encode},
                                     {"close_frame", codec_close_frame}, {"state", codec_state},
                                     {"memory", codec_memory}, {NULL, NULL}};
  luaL_newmetatable(L, MK_CODEC_MT);
  lua_pushcfunction(L, codec_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, MK_CODEC_MT);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  mk_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
