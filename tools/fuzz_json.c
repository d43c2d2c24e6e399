/* libFuzzer target for the JSON decoder and encoder (src/json.c): arbitrary bytes go
 * through core.json_decoder's closure in a fresh Lua 5.4 state. It must never raise on a
 * string and must return either a value or nil and a message; ASan/UBSan catch any
 * out-of-bounds read (the scans rely on the NUL Lua keeps after every string). A decoded
 * value is then encoded by the C path (core.json_encoder) and by misskey.json's Lua
 * encoder (lua/misskey/json.lua, loaded with a stand-in for misskey.core): the Lua
 * encoder must accept it, the C text, when there is one, must be the Lua text, and that
 * text must decode again. A value must also come out the same when decoded again (the
 * key cache warm) and when decoded by a decoder without a key cache.
 * Linked against liblua5.4 for the fuzzer only (the module never links liblua); run from
 * the repository root.
 *   make fuzz            (FUZZ_SECONDS=20 by default, for each target) */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "json.h"

/* The parts of misskey.core that json.lua uses. */
static int fake_core(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, mk_l_json_decoder);
  lua_setfield(L, -2, "json_decoder");
  lua_pushcfunction(L, mk_l_json_encoder);
  lua_setfield(L, -2, "json_encoder");
  return 1;
}

/* (json, text): decode, then both encoders; raises on a disagreement. Whatever decodes
 * must encode (numbers out of a double's range are refused, strings come out as
 * well-formed UTF-8), and decoding with { null = "nil" } accepts exactly the same texts. */
static const char check_encoders[] =
    "local json, text = ...\n"
    "local v = json.decode(text)\n"
    "local w = json.decode(text, { null = 'nil' })\n"
    "if (v == nil) ~= (w == nil) then error('null = \"nil\" decodes another set of texts') end\n"
    "if v == nil then return end\n"
    "local c = json._encode_c(v)\n"
    "local ok, l = pcall(json._encode_lua, v)\n"
    "if not ok then error('a decoded value does not encode: ' .. tostring(l)) end\n"
    "if c ~= nil and c ~= l then error('the C and Lua encoders differ: ' .. tostring(c) .. ' vs ' .. tostring(l)) end\n"
    "if json.decode(l) == nil then error('the encoded text does not decode: ' .. l) end\n"
    "json._encode_lua(w)\n";

static void fail(lua_State *L, const char *what) {
  fprintf(stderr, "fuzz_json: %s: %s\n", what, lua_tostring(L, -1));
  abort();
}

static void compare_encoders(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return;
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, fake_core);
  lua_setfield(L, -2, "misskey.core");
  lua_settop(L, 0);
  if (luaL_loadfile(L, "lua/misskey/json.lua") != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
    fail(L, "loading lua/misskey/json.lua (run from the repository root)");
  if (luaL_loadbuffer(L, check_encoders, sizeof check_encoders - 1, "=check") != LUA_OK) fail(L, "check");
  lua_insert(L, 1);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) fail(L, "encoders");
  lua_close(L);
}

/* (a, b): true if two decoded values are the same: types (integer or float too), values,
 * signs of zero, metatables, and every key of every table. */
static const char same_values[] =
    "local math_type = math.type\n"
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) ~= 'table' then\n"
    "    if a ~= b or math_type(a) ~= math_type(b) then return false end\n"
    "    return a ~= 0 or 1 / a == 1 / b\n"
    "  end\n"
    "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "return same(...)\n";

/* The decoder's key cache and size hints must not change a value: the text decoded again by
 * the cached decoder at 1 (its cache now warm) and by a decoder without a cache (at 2) gives
 * what the first decode gave (at the top). */
static void compare_uncached(lua_State *L, const uint8_t *data, size_t size) {
  int first = lua_gettop(L), i;
  const char *text;
  lua_pushlstring(L, (const char *)data, size); /* kept alive below the calls */
  text = lua_tostring(L, -1);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) abort();
  lua_pushvalue(L, 2);
  lua_pushlightuserdata(L, (void *)text);
  lua_pushinteger(L, (lua_Integer)size);
  lua_pushboolean(L, 0);
  if (lua_pcall(L, 3, 1, 0) != LUA_OK) abort();
  for (i = 0; i < 2; i++) {
    if (luaL_loadbuffer(L, same_values, sizeof same_values - 1, "=same") != LUA_OK) abort();
    lua_pushvalue(L, first);
    lua_pushvalue(L, first + 2 + i);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) abort();
    if (!lua_toboolean(L, -1)) {
      fprintf(stderr, "fuzz_json: the %s decode differs from the first\n", i == 0 ? "second cached" : "uncached");
      abort();
    }
    lua_pop(L, 1);
  }
  lua_settop(L, first);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return 0;
  luaL_openlibs(L);
  lua_newtable(L); /* the array marker */
  lua_pushcfunction(L, mk_l_json_decoder);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  lua_insert(L, 1);                              /* 1: the decoder, with its key cache */
  lua_pushcclosure(L, mk_json_view_decode, 1); /* 2: the same marker, no key cache */
  lua_pushvalue(L, 1);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) abort(); /* bad input must not raise */
  if (lua_isnil(L, -2) && lua_type(L, -1) != LUA_TSTRING) abort();
  if (!lua_isnil(L, -2) && !lua_isnil(L, -1)) abort();
  if (!lua_isnil(L, -2)) {
    lua_pop(L, 1);
    compare_uncached(L, data, size);
    lua_pushnil(L);
  }
  /* the same text padded with whitespace decodes the same way */
  if (size < 4096) {
    int ok = !lua_isnil(L, -2);
    lua_settop(L, 2);
    lua_pushliteral(L, " \n");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushliteral(L, "\t\r ");
    lua_concat(L, 3);
    lua_pushvalue(L, 1);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK) abort();
    if (ok != !lua_isnil(L, -2)) abort();
    if (ok) compare_encoders(data, size);
  }
  lua_close(L);
  return 0;
}
