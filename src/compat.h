/* Lua 5.1 / LuaJIT / 5.2+ differences used by the core, in one place. */
#ifndef MK_COMPAT_H
#define MK_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
/* luaL_setfuncs with no upvalues is all we need. */
static inline void mk_setfuncs(lua_State *L, const luaL_Reg *l) {
  for (; l->name; l++) {
    lua_pushcfunction(L, l->func);
    lua_setfield(L, -2, l->name);
  }
}
#define mk_rawlen(L, i) lua_objlen(L, (i))
/* luaL_setfuncs with `nup` upvalues (on the stack above the table; popped). */
static inline void mk_setfuncs_up(lua_State *L, const luaL_Reg *l, int nup) {
  for (; l->name; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
static inline void *mk_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}
#else
#define mk_setfuncs(L, l) luaL_setfuncs(L, (l), 0)
#define mk_setfuncs_up(L, l, nup) luaL_setfuncs(L, (l), (nup))
#define mk_rawlen(L, i) lua_rawlen(L, (i))
#define mk_testudata(L, i, t) luaL_testudata(L, (i), (t))
#endif

/* Exported symbol marker: everything else is hidden (-fvisibility=hidden). */
#define MK_EXPORT __attribute__((visibility("default")))

#endif
