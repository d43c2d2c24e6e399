/* MiAuth URL building, percent-encoding and permission checks: pure functions, no I/O.
 * The list of valid permissions is an argument (Lua keeps the generated list). */
#include "miauth.h"

#include <string.h>

#include <lauxlib.h>

#include "compat.h"

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

static void add_encoded(luaL_Buffer *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c)) {
      luaL_addchar(b, (char)c);
    } else {
      luaL_addchar(b, '%');
      luaL_addchar(b, hex[c >> 4]);
      luaL_addchar(b, hex[c & 15]);
    }
  }
}

int mk_l_urlencode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  add_encoded(&b, s, n);
  luaL_pushresult(&b);
  return 1;
}

/* Permission names are "read:account", "write:admin:meta", ...: letters, digits and ":_-."
 * only, so they go into a URL unescaped and a ',' can never split one in two. */
static int permission_shaped(const char *s, size_t n) {
  size_t i;
  if (n == 0 || n > 128) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(unreserved(c) || c == ':') || c == '~') return 0;
  }
  return 1;
}

/* Checks the list at index `names` against the list at `allowed` (nil when not strict).
 * Pushes a new list without duplicates, in the given order. Raises on a bad name. */
static void check_permissions(lua_State *L, int names, int allowed, int strict, const char *what) {
  int i, n, out, seen, set, unknown, nunknown = 0, count = 0;
  luaL_checktype(L, names, LUA_TTABLE);
  n = (int)mk_rawlen(L, names);
  lua_newtable(L); /* the allowed set */
  set = lua_gettop(L);
  if (strict) {
    int m;
    if (lua_type(L, allowed) != LUA_TTABLE)
      luaL_error(L, "%s: no list of known permissions to check against (give one, or strict = false)", what);
    m = (int)mk_rawlen(L, allowed);
    for (i = 1; i <= m; i++) {
      lua_rawgeti(L, allowed, i);
      lua_pushboolean(L, 1);
      lua_rawset(L, set);
    }
  }
  lua_newtable(L);
  seen = lua_gettop(L);
  lua_newtable(L);
  unknown = lua_gettop(L);
  lua_newtable(L);
  out = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, names, i);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: permission[%d] must be a string", what, i);
    s = lua_tolstring(L, -1, &len);
    if (!permission_shaped(s, len)) luaL_error(L, "%s: permission[%d] is not a permission name: '%s'", what, i, s);
    lua_pushvalue(L, -1);
    lua_rawget(L, seen);
    if (!lua_isnil(L, -1)) {
      lua_pop(L, 2); /* a duplicate: Misskey's gen-token refuses them (uniqueItems) */
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);
    if (strict) {
      lua_pushvalue(L, -1);
      lua_rawget(L, set);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, unknown, ++nunknown);
      } else {
        lua_pop(L, 1);
      }
    }
    lua_rawseti(L, out, ++count);
  }
  if (nunknown > 0) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (i = 1; i <= nunknown; i++) {
      if (i > 1) luaL_addlstring(&b, ", ", 2);
      lua_rawgeti(L, unknown, i);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    luaL_error(L, "%s: unknown permission%s: %s (not in Misskey's list; strict = false lets a fork's own through)",
               what, nunknown > 1 ? "s" : "", lua_tostring(L, -1));
  }
  lua_replace(L, set); /* the result takes the first slot; drop the helpers */
  lua_settop(L, set);
}

int mk_l_check_permissions(lua_State *L) {
  int strict = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
  luaL_checktype(L, 1, LUA_TTABLE);
  check_permissions(L, 1, 2, strict, "permission");
  return 1;
}

static const char *const URL_FIELDS[] = {"base", "session", "name", "icon", "callback",
                                          "permission", "allowed", "strict", NULL};

/* An optional string field: NULL when absent or empty (empty parameters are left out). */
static const char *opt_field(lua_State *L, int t, const char *key, size_t *len) {
  const char *s;
  lua_getfield(L, t, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "miauth_url: field '%s' must be a string", key);
  s = lua_tolstring(L, -1, len);
  lua_pop(L, 1); /* still referenced by the table */
  return *len ? s : NULL;
}

int mk_l_miauth_url(lua_State *L) {
  size_t baselen, seslen, len[3];
  const char *base, *session, *param[3];
  static const char *const keys[3] = {"name", "icon", "callback"};
  int i, strict, perms = 0, sep = '?';
  luaL_Buffer b;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int j, ok = 0;
    for (j = 0; k && URL_FIELDS[j]; j++) ok |= strcmp(k, URL_FIELDS[j]) == 0;
    if (!ok) luaL_error(L, "miauth_url: unknown field '%s'", k ? k : luaL_typename(L, -2));
    lua_pop(L, 1);
  }
  base = opt_field(L, 1, "base", &baselen);
  session = opt_field(L, 1, "session", &seslen);
  if (!base || !(strncmp(base, "https://", 8) == 0 || strncmp(base, "http://", 7) == 0))
    return luaL_error(L, "miauth_url: field 'base' must be an http(s):// base URL");
  if (!session) return luaL_error(L, "miauth_url: field 'session' must be a non-empty string");
  while (baselen > 0 && base[baselen - 1] == '/') baselen--;
  for (i = 0; i < 3; i++) param[i] = opt_field(L, 1, keys[i], &len[i]);
  lua_getfield(L, 1, "strict");
  strict = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
  lua_getfield(L, 1, "allowed"); /* 3 */
  lua_getfield(L, 1, "permission"); /* 4 */
  if (!lua_isnil(L, 4)) {
    if (!lua_istable(L, 4)) return luaL_error(L, "miauth_url: field 'permission' must be a list of names");
    check_permissions(L, 4, 3, strict, "miauth_url");
    perms = lua_gettop(L);
  }
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, base, baselen);
  luaL_addlstring(&b, "/miauth/", 8);
  add_encoded(&b, session, seslen);
  for (i = 0; i < 3; i++) {
    if (!param[i]) continue;
    luaL_addchar(&b, (char)sep);
    luaL_addstring(&b, keys[i]);
    luaL_addchar(&b, '=');
    add_encoded(&b, param[i], len[i]);
    sep = '&';
  }
  if (perms && mk_rawlen(L, perms) > 0) {
    int n = (int)mk_rawlen(L, perms);
    luaL_addchar(&b, (char)sep);
    luaL_addlstring(&b, "permission=", 11);
    for (i = 1; i <= n; i++) {
      if (i > 1) luaL_addchar(&b, ',');
      lua_rawgeti(L, perms, i);
      luaL_addvalue(&b);
    }
  }
  luaL_pushresult(&b);
  return 1;
}
