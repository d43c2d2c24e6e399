/* Bytes read from a WebSocket server turned into messages and events, once for both
 * clients (ws.c, wscodec.c): see wsread.h. */
#include "wsread.h"

#include <stdlib.h>
#include <string.h>

#include "compat.h"

/* Buffers up to KEEP bytes stay allocated (the next frame would allocate them again at
 * once); with many streams, most of them idle, buffers sized for the largest message were
 * most of the memory. */
#define KEEP 1024

/* The collector hears of C buffers in steps of this size. */
#define ACCOUNT_STEP (1024 * 1024)

void mk_wsread_init(mk_wsread *r, size_t max_message) {
  memset(r, 0, sizeof *r);
  r->msg.max_size = max_message;
}

void mk_wsread_free(mk_wsread *r) {
  mk_buf_free(&r->in);
  r->in_off = 0;
  mk_buf_free(&r->msg.data);
  r->msg.opcode = 0;
  r->reported = 0;
}

/* Parses every whole frame in p[*off..n): messages and control frames go to the hooks.
 * *off moves past each frame before its hook runs. */
static void frames(mk_wsread *r, const mk_wsread_hooks *h, void *ctx, const uint8_t *p, size_t n, size_t *off) {
  while (h->reading(ctx)) {
    mk_frame f;
    int opcode = 0, rc;
    const uint8_t *data = NULL;
    size_t len = 0;
    long used = mk_ws_parse(p + *off, n - *off, r->msg.max_size, &f);
    if (used == 0) return;
    if (used < 0) {
      h->fail(ctx, (int)-used, -used == MK_WS_TOO_BIG ? "message too big" : "protocol error");
      return;
    }
    *off += (size_t)used;
    switch (f.opcode) {
    case MK_WS_PING: /* control payloads are at most 125 bytes (mk_ws_parse) */
      h->ping(ctx, f.payload, f.len);
      break;
    case MK_WS_PONG:
      h->pong(ctx, f.payload, f.len);
      break;
    case MK_WS_CLOSE: {
      int code = f.len >= 2 ? (f.payload[0] << 8) | f.payload[1] : 1005;
      if (f.len == 1 || (f.len >= 2 && !mk_ws_close_code_ok(code))) {
        h->fail(ctx, MK_WS_PROTOCOL_ERROR, "invalid close code");
        return;
      }
      if (f.len > 2 && !mk_utf8_valid(f.payload + 2, f.len - 2)) {
        h->fail(ctx, MK_WS_PROTOCOL_ERROR, "invalid close frame");
        return;
      }
      h->close(ctx, code, f.len > 2 ? f.payload + 2 : (const uint8_t *)"", f.len > 2 ? f.len - 2 : 0);
      return;
    }
    default:
      rc = mk_ws_feed_view(&r->msg, &f, &opcode, &data, &len);
      if (rc < 0) {
        h->fail(ctx, rc == -1 ? 1011 : -rc,
                rc == -MK_WS_INVALID_DATA ? "invalid UTF-8 in a text message"
                : rc == -MK_WS_TOO_BIG    ? "message too big"
                                          : "protocol error");
        return;
      }
      if (rc == 1) {
        h->message(ctx, opcode, data, len);
        mk_buf_reset(&r->msg.data);
      }
    }
  }
}

void mk_wsread_buffered(mk_wsread *r, const mk_wsread_hooks *h, void *ctx) {
  frames(r, h, ctx, (const uint8_t *)r->in.data, r->in.len, &r->in_off);
  if (r->in_off > 0) {
    memmove(r->in.data, r->in.data + r->in_off, r->in.len - r->in_off);
    r->in.len -= r->in_off;
    r->in_off = 0;
    if (r->in.data) r->in.data[r->in.len] = '\0';
  }
}

int mk_wsread_feed(mk_wsread *r, const mk_wsread_hooks *h, void *ctx, const uint8_t *p, size_t n) {
  size_t off = 0;
  while (n - off > 0 && r->in.len > 0 && h->reading(ctx)) {
    size_t have = r->in.len, size = mk_ws_frame_size((const uint8_t *)r->in.data, have);
    size_t take = size > have ? size - have : n - off; /* (size <= have: frames() has judged it) */
    if (take > n - off) take = n - off;
    if (mk_buf_append(&r->in, p + off, take) != 0) return -1;
    off += take;
    mk_wsread_buffered(r, h, ctx);
  }
  if (n - off > 0 && h->reading(ctx)) {
    frames(r, h, ctx, p, n, &off);
    if (n - off > 0 && h->reading(ctx) && mk_buf_append(&r->in, p + off, n - off) != 0) return -1;
  }
  return 0;
}

int mk_wsread_lost(mk_wsread *r, const mk_wsread_hooks *h, void *ctx) {
  if (!r->cut_short) return 0;
  r->cut_short = 0;
  h->fail(ctx, 1011, "a read was cut short by a memory error");
  return 1;
}

void mk_wsread_shrink(mk_buf *b) {
  char *d;
  if (b->len == 0 && b->cap > KEEP) {
    mk_buf_free(b);
    return;
  }
  if (b->cap <= KEEP || b->len >= KEEP) return;
  d = realloc(b->data, KEEP);
  if (d == NULL) return; /* keeping the bigger block is fine */
  b->data = d;
  b->cap = KEEP;
  b->data[b->len] = '\0';
}

void mk_wsread_trim(mk_wsread *r) {
  mk_wsread_shrink(&r->in);
  if (r->msg.opcode == 0) mk_wsread_shrink(&r->msg.data);
}

size_t mk_wsread_memory(const mk_wsread *r) { return r->in.cap + r->msg.data.cap; }

void mk_wsread_account(lua_State *L, mk_wsread *r, size_t other) {
  size_t held = mk_wsread_memory(r) + other;
  if (held >= r->reported + ACCOUNT_STEP) {
    lua_gc(L, LUA_GCSTEP, (int)((held - r->reported) / 1024));
    r->reported = held;
  } else if (held < r->reported) {
    r->reported = held;
  }
}

void mk_wsout_event(mk_wsout *o, const char *name, const char *s, size_t len, lua_Integer num) {
  lua_State *L = o->L;
  if (o->events == 0) {
    lua_newtable(L);
    lua_replace(L, o->slot);
    o->events = o->slot;
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

void mk_wsout_string(mk_wsout *o, const uint8_t *data, size_t len) {
  lua_pushlstring(o->L, (const char *)data, len);
  lua_rawseti(o->L, o->queue, (int)++o->tail);
}
