/* A one-shot loopback HTTP listener for the OAuth redirect (misskey login). */
#ifndef MK_LISTEN_H
#define MK_LISTEN_H

#include <lua.h>

int mk_l_listen(lua_State *L); /* core.listen(port) -> listener */
void mk_listen_open(lua_State *L);

#endif
