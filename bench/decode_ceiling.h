/* The decoding half of the ceiling programs (curl_loop.c and curl_multi.c built with
 * -DWITH_DECODE, linked with src/json.c and Lua 5.4): misskey's C decoder run on each
 * reply where it lies, as the client's json._decode_body does. */
#ifndef BENCH_DECODE_CEILING_H
#define BENCH_DECODE_CEILING_H

#include <lauxlib.h>
#include <lua.h>

#include "json.h"

/* decode(text, len) -> value | nil, message (upvalue 1: the array marker metatable, 2 and 3 the key cache). */
static int decode_in_place(lua_State *L) {
  const char *text = lua_touserdata(L, 1);
  size_t len = (size_t)lua_tointeger(L, 2);
  return mk_json_decode_text(L, text, len);
}

/* Pushes the decoder, with a key cache as the client's has. */
static void push_decoder(lua_State *L) {
  lua_newtable(L); /* the array marker metatable */
  mk_json_push_key_cache(L);
  lua_pushcclosure(L, decode_in_place, 3);
}

/* Decodes len bytes at data (a NUL after them) with the decoder at stack index
 * `decoder` (an absolute index) and pushes the value; returns -1 if it is not a table. */
static int decode_reply(lua_State *L, int decoder, const char *data, size_t len) {
  lua_pushvalue(L, decoder);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)len);
  lua_call(L, 2, 1);
  return lua_istable(L, -1) ? 0 : -1;
}

#endif
