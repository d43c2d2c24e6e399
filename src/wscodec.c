/* core.ws_codec: the WebSocket client's protocol without the I/O, for a host that moves
 * the bytes itself (nginx's cosockets: misskey.ngx.websocket). The same parts as ws.c
 * (wshandshake.c, wsread.c, wsframe.c): the upgrade reply check, frames parsed and messages
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
#include "wsread.h"

#define MK_CODEC_MT "misskey.WsCodec"

enum { CODEC_HANDSHAKE, CODEC_OPEN, CODEC_CLOSED };

typedef struct mk_codec {
  int state;
  char key[32], accept[32]; /* the Sec-WebSocket-Key sent and the accept value it calls for */
  int keyed;                /* key() was called: upgrade() has something to check against */
  mk_wsread rd;             /* the upgrade reply so far (in `in`), then the frame a feed ended
                               inside and the message being assembled */
} mk_codec;

static mk_codec *to_codec(lua_State *L, int i) { return (mk_codec *)luaL_checkudata(L, i, MK_CODEC_MT); }

static void release(mk_codec *c) { mk_wsread_free(&c->rd); }

static int codec_gc(lua_State *L) {
  release(to_codec(L, 1));
  return 0;
}

/* core.ws_codec([max_message]) -> codec. max_message: the largest message in bytes
 * (default 16 MiB; anything larger is clamped). */
int mk_l_ws_codec(lua_State *L) {
  mk_codec *c;
  size_t max = MK_WSREAD_MAX_MESSAGE_DEFAULT;
  if (!lua_isnoneornil(L, 1)) {
    lua_Number n = luaL_checknumber(L, 1);
    if (!(n >= 1)) return luaL_argerror(L, 1, "max_message must be a number of bytes >= 1");
    max = n >= (lua_Number)MK_WSREAD_MAX_MESSAGE_CAP ? MK_WSREAD_MAX_MESSAGE_CAP : (size_t)n;
  }
  c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->state = CODEC_HANDSHAKE;
  mk_wsread_init(&c->rd, max);
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
  if (mk_buf_append(&c->rd.in, s, n) != 0) return luaL_error(L, "out of memory");
  rc = mk_ws_reply_parse(c->rd.in.data, c->rd.in.len, c->accept, &r);
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
    lua_pushlstring(L, c->rd.in.data, r.head_len);
    release(c);
    return 3;
  default:
    c->state = CODEC_OPEN;
    lua_pushliteral(L, "open");
    lua_pushlstring(L, c->rd.in.data + r.head_len, c->rd.in.len - r.head_len);
    mk_buf_reset(&c->rd.in);
    mk_wsread_shrink(&c->rd.in);
    return 2;
  }
}

/* What one feed hands back (wsread.h's mk_wsout), and the codec it reads for. */
typedef struct {
  mk_wsout out;
  mk_codec *c;
} feed_out;

/* ---- the reader's hooks (wsread.h); ctx is the feed_out. Everything is the caller's to
 * do: answer pings, echo a close, close after an error (codec:encode, codec:close_frame). */

static int on_reading(void *ctx) { return ((feed_out *)ctx)->c->state == CODEC_OPEN; }

static void on_message(void *ctx, int opcode, const uint8_t *data, size_t len) {
  (void)opcode;
  mk_wsout_string(&((feed_out *)ctx)->out, data, len);
}

static void on_ping(void *ctx, const uint8_t *payload, size_t len) {
  mk_wsout_event(&((feed_out *)ctx)->out, "ping", (const char *)payload, len, 0);
}

static void on_pong(void *ctx, const uint8_t *payload, size_t len) {
  mk_wsout_event(&((feed_out *)ctx)->out, "pong", (const char *)payload, len, 0);
}

static void on_close(void *ctx, int code, const uint8_t *reason, size_t len) {
  feed_out *o = ctx;
  mk_wsout_event(&o->out, "close", (const char *)reason, len, code);
  o->c->state = CODEC_CLOSED;
}

/* The server broke the protocol: one "error" event with the close code to answer with. */
static void on_fail(void *ctx, int code, const char *why) {
  feed_out *o = ctx;
  mk_wsout_event(&o->out, "error", why, strlen(why), code);
  o->c->state = CODEC_CLOSED;
}

static const mk_wsread_hooks HOOKS = {on_reading, on_message, on_ping, on_pong, on_close, on_fail};

/* codec:feed(bytes, queue, tail) -> tail, events
 * Every whole message in what was read (with what earlier feeds left) becomes a string at
 * queue[tail + 1], ...; the new tail is returned. `events` is nil or, in order:
 * { "ping", payload }, { "pong", payload }, { "close", reason, code } (the server's close:
 * echo it), { "error", why, close_code } (the server broke the protocol: close with that code).
 * After a close or an error the codec is closed and takes no more bytes. A feed that raised
 * (no memory) lost the rest of its bytes: the next one fails with 1011 and reads nothing. A
 * frame cut off at the end waits for the next feed; it never holds more than max_message and
 * a header. */
static int codec_feed(lua_State *L) {
  mk_codec *c = to_codec(L, 1);
  size_t n;
  const uint8_t *p = (const uint8_t *)luaL_checklstring(L, 2, &n);
  feed_out o;
  luaL_checktype(L, 3, LUA_TTABLE);
  o.c = c;
  o.out.L = L;
  o.out.queue = 3;
  o.out.slot = 5;
  o.out.events = 0;
  o.out.tail = luaL_checkinteger(L, 4);
  lua_settop(L, 4);
  lua_pushnil(L); /* 5: the event list, made on the first event */
  if (c->state == CODEC_HANDSHAKE) return luaL_error(L, "codec:feed before the upgrade");
  if (c->state == CODEC_OPEN) mk_wsread_lost(&c->rd, &HOOKS, &o);
  /* Until the bytes are handled: an error raised in Lua (or no memory) would lose their rest,
   * and the next feed says so instead of reading on as if nothing was missing. */
  c->rd.cut_short = 1;
  if (mk_wsread_feed(&c->rd, &HOOKS, &o, p, n) != 0) /* (nothing once closed) */
    return luaL_error(L, "out of memory");
  c->rd.cut_short = 0;
  if (c->state == CODEC_CLOSED) release(c);
  else mk_wsread_trim(&c->rd);
  mk_wsread_account(L, &c->rd, 0);
  lua_pushinteger(L, o.out.tail);
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
  mk_ws_check_close(L, 2, code, reason, rn);
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
  lua_pushinteger(L, (lua_Integer)mk_wsread_memory(&c->rd));
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
