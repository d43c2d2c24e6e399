/* luaopen_misskey_core: the only exported symbol of the C core. */
#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "compat.h"
#include "engine.h"
#include "file.h"
#include "hash.h"
#include "json.h"
#include "miauth.h"
#include "random.h"
#include "uuid.h"
#include "signals.h"
#include "lock.h"
#include "ws.h"
#include "wscodec.h"
#include "server.h"
#include "equal.h"

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

/* core.curl_built_version() -> "7.88.1": the libcurl misskey.core was compiled against, for
 * the default User-Agent. Not curl_version_info: that asks every library libcurl links for
 * its version (zlib, brotli, zstd, libidn2, libssh2, nghttp2, the TLS library), and their
 * first calls and symbol lookups make ~240 KiB of their files resident, in every process. */
static int core_curl_built_version(lua_State *L) {
  lua_pushliteral(L, LIBCURL_VERSION);
  return 1;
}

/* core.now() -> monotonic seconds (the engine's clock; for timing, not dates). */
static int core_now(lua_State *L) {
  lua_pushnumber(L, mk_now());
  return 1;
}

MK_EXPORT int luaopen_misskey_core(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"engine", mk_engine_new}, {"prepare", mk_l_prepare}, {"curl_version", core_curl_version},
      {"curl_built_version", core_curl_built_version}, {"now", core_now},
      /* the WebSocket codec, for unit vectors (ws.c, wsframe.c) */
      {"_ws_parse", mk_l_ws_parse}, {"_ws_encode", mk_l_ws_encode}, {"_utf8_valid", mk_l_utf8_valid},
      {"_ws_reply", mk_l_ws_reply},
      /* the same protocol without I/O, for a host that moves the bytes (wscodec.c: misskey.ngx) */
      {"ws_codec", mk_l_ws_codec},
      /* the listening sockets (webhooks, the OAuth redirect) and the secret check (server.c, equal.c) */
      {"http_server", mk_l_http_server}, {"equal_ct", mk_l_equal_ct},
      /* signals as a readable fd, for a clean stop (signal.c) */
      {"signals", mk_l_signals},
      /* authentication primitives (uuid.c, hash.c, random.c, miauth.c, file.c) */
      {"uuid", mk_l_uuid}, {"sha256", mk_l_sha256}, {"sha1", mk_l_sha1}, {"base64url", mk_l_base64url},
      {"random", mk_l_random}, {"urlencode", mk_l_urlencode}, {"check_permissions", mk_l_check_permissions},
      {"miauth_url", mk_l_miauth_url}, {"write_private", mk_l_write_private},
      {"read_private", mk_l_read_private}, {"file_mode", mk_l_file_mode},
      /* the credential store's lock (lock.c) */
      {"lock_private", mk_l_lock_private},
      /* misskey.json's decoder and encoder (json.c) */
      {"json_decoder", mk_l_json_decoder}, {"json_encoder", mk_l_json_encoder}, {NULL, NULL}};
  /* Reference-counted in libcurl: safe to call once per state that loads us. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return luaL_error(L, "curl_global_init failed");
  mk_http_open(L); /* before the engine's: its methods carry these metatables */
  mk_engine_open(L);
  mk_ws_open(L);
  mk_wscodec_open(L);
  mk_server_open(L);
  mk_signal_open(L);
  mk_lock_open(L);
  lua_newtable(L);
  mk_setfuncs(L, funcs);
  return 1;
}
