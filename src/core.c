/* luaopen_misskey_core: the only exported symbol of the C core. */
#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "compat.h"
#include "engine.h"

/* core.curl_version() -> "7.88.1", { ssl = "OpenSSL/3.0.x", features... }
 * curl_version_info, not curl_version: the latter makes LDAP/SASL leak under valgrind. */
static int core_curl_version(lua_State *L) {
  const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  lua_pushstring(L, v->version);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, v->ssl_version ? v->ssl_version : "");
  lua_setfield(L, -2, "ssl");
  lua_pushboolean(L, (v->features & CURL_VERSION_LIBZ) != 0);
  lua_setfield(L, -2, "libz");
  lua_pushboolean(L, (v->features & CURL_VERSION_HTTP2) != 0);
  lua_setfield(L, -2, "http2");
  lua_pushboolean(L, (v->features & CURL_VERSION_BROTLI) != 0);
  lua_setfield(L, -2, "brotli");
  return 2;
}

/* core.now() -> monotonic seconds (the engine's clock; for timing, not dates). */
static int core_now(lua_State *L) {
  lua_pushnumber(L, mk_now());
  return 1;
}

MK_EXPORT int luaopen_misskey_core(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"engine", mk_engine_new}, {"curl_version", core_curl_version}, {"now", core_now}, {NULL, NULL}};
  /* Reference-counted in libcurl: safe to call once per state that loads us. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return luaL_error(L, "curl_global_init failed");
  mk_engine_open(L);
  mk_http_open(L);
  lua_newtable(L);
  mk_setfuncs(L, funcs);
  return 1;
}
