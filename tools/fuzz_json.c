/* libFuzzer target for the JSON decoder (src/json.c): arbitrary bytes go through
 * core.json_decoder's closure in a fresh Lua 5.4 state. It must never raise on a
 * string and must return either a value or nil and a message; ASan/UBSan catch any
 * out-of-bounds read (the scans rely on the NUL Lua keeps after every string).
 * Linked against liblua5.4 for the fuzzer only (the module never links liblua).
 *   make fuzz            (FUZZ_SECONDS=20 by default, for each target) */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return 0;
  lua_pushcfunction(L, mk_l_json_decoder);
  lua_newtable(L); /* the array marker */
  lua_call(L, 1, 1);
  lua_pushvalue(L, -1);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) abort(); /* bad input must not raise */
  if (lua_isnil(L, -2) && lua_type(L, -1) != LUA_TSTRING) abort();
  if (!lua_isnil(L, -2) && !lua_isnil(L, -1)) abort();
  /* the same text padded with whitespace decodes the same way */
  if (size < 4096) {
    int ok = !lua_isnil(L, -2);
    lua_settop(L, 1);
    lua_pushliteral(L, " \n");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushliteral(L, "\t\r ");
    lua_concat(L, 3);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK) abort();
    if (ok != !lua_isnil(L, -2)) abort();
  }
  lua_close(L);
  return 0;
}
