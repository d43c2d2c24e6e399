/* The WebSocket client (ws.c) on an engine. */
#ifndef MK_WS_H
#define MK_WS_H

#include "engine.h"

typedef struct mk_ws mk_ws;

int mk_ws_new(lua_State *L);   /* engine:websocket(opts) */
void mk_ws_open(lua_State *L); /* metatable */
/* The engine saw the connect phase end: records it and unpins the object
 * (its caller has pushed it onto the finished list already). */
void mk_ws_connected(lua_State *L, mk_ws *w, CURLcode code);
int mk_ws_pin(lua_State *L, mk_ws *w); /* pushes the pinned object */
/* engine:close(): releases every WebSocket on e (socket, curl state, buffers). */
void mk_ws_engine_closing(lua_State *L, mk_engine *e);
/* A fresh Sec-WebSocket-Key and the Sec-WebSocket-Accept it calls for (NUL-terminated);
 * 0, or -1 with errno when the kernel's random source fails. */
int mk_ws_make_key(char key[32], char accept[32]);
/* ws:close's and codec:close_frame's arguments: the close code at stack index arg (1000-1003,
 * 1007-1014 or 3000-4999) and the reason at arg + 1 (UTF-8, at most 123 bytes, no NUL; NULL:
 * none). Raises an error naming the bad argument. */
void mk_ws_check_close(lua_State *L, int arg, lua_Integer code, const char *reason, size_t rn);
int mk_l_ws_reply(lua_State *L);  /* core._ws_reply: the upgrade reply check, for unit vectors */
int mk_l_ws_parse(lua_State *L);  /* core._ws_parse: the codec, for unit vectors */
int mk_l_ws_encode(lua_State *L); /* core._ws_encode */
int mk_l_utf8_valid(lua_State *L); /* core._utf8_valid */

#endif
