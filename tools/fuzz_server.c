/* libFuzzer target for the webhook listener's request head parser (src/server.c): arbitrary
 * bytes, cut at their first blank line as read_head cuts them, go through parse_head in a
 * Lua 5.4 state. It must either accept the head ("head", request with string fields, a table
 * of lower-case header names and a length within max_body) or refuse it with one of the
 * statuses the listener answers; ASan/UBSan catch any out-of-bounds access. server.c is
 * included whole, so its static functions are reachable; linked against liblua5.4 for the
 * fuzzer only.
 *   make fuzz            (FUZZ_SECONDS=20 by default, for each target) */
#include "../src/server.c"

#include <stdint.h>
#include <stdio.h>

#include <lualib.h>

#define FUZZ_HEAD 16384
#define FUZZ_BODY (1024 * 1024)

/* The request table is at base + 2 ("head" at base + 1). */
static void check_head(lua_State *L, int base) {
  size_t n, i;
  const char *name;
  lua_Integer length;
  if (lua_type(L, base + 2) != LUA_TTABLE) abort();
  lua_getfield(L, base + 2, "method");
  lua_getfield(L, base + 2, "target");
  lua_getfield(L, base + 2, "version");
  if (!lua_isstring(L, -1) || !lua_isstring(L, -2) || !lua_isstring(L, -3)) abort();
  lua_pop(L, 3);
  lua_getfield(L, base + 2, "length");
  length = lua_tointeger(L, -1);
  if (length < 0 || length > FUZZ_BODY) abort();
  lua_pop(L, 1);
  lua_getfield(L, base + 2, "headers");
  if (lua_type(L, -1) != LUA_TTABLE) abort();
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) abort();
    name = lua_tolstring(L, -2, &n);
    if (n == 0) abort();
    for (i = 0; i < n; i++)
      if (!is_tchar((unsigned char)name[i]) || (name[i] >= 'A' && name[i] <= 'Z')) abort();
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static lua_State *L;
  mk_hconn c;
  char *blank;
  int base, first, results, status;
  if (!L) L = luaL_newstate();
  if (size > FUZZ_HEAD) return 0;
  memset(&c, 0, sizeof c);
  c.fd = -1;
  c.max_head = FUZZ_HEAD;
  c.max_body = FUZZ_BODY;
  if (mk_buf_append(&c.in, data, size) != 0) return 0;
  blank = c.in.data ? memmem(c.in.data, c.in.len, "\r\n\r\n", 4) : NULL;
  if (blank) {
    c.head_len = (size_t)(blank - c.in.data) + 4;
    base = lua_gettop(L);
    results = parse_head(L, &c);
    /* A C function's results are its top `results` values: a refusal half-way through the
     * headers leaves what it had built below them. */
    first = lua_gettop(L) - results;
    if (results == 2) {
      if (first != base || strcmp(lua_tostring(L, base + 1), "head") != 0) abort();
      check_head(L, base);
    } else if (results == 3) {
      status = (int)lua_tointeger(L, first + 2);
      if (lua_type(L, first + 1) != LUA_TBOOLEAN || lua_toboolean(L, first + 1) || !lua_isstring(L, first + 3) ||
          (status != 400 && status != 411 && status != 413 && status != 417 && status != 431 && status != 505))
        abort();
    } else {
      abort();
    }
    lua_settop(L, base);
  }
  mk_buf_free(&c.in);
  return 0;
}
