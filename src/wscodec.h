/* core.ws_codec: the WebSocket client's framing and upgrade check without I/O (wscodec.c). */
#ifndef MK_WSCODEC_H
#define MK_WSCODEC_H

#include <lua.h>

int mk_l_ws_codec(lua_State *L);   /* core.ws_codec([max_message]) */
void mk_wscodec_open(lua_State *L); /* metatable */

#endif
