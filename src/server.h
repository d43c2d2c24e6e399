/* A small non-blocking HTTP/1.1 server socket for the webhook listener (misskey.webhook.listen):
 * accept, read one bounded request, send one answer. Nothing here waits: the scheduler
 * watches the fds through the engine. */
#ifndef MK_SERVER_H
#define MK_SERVER_H

#include <lua.h>

/* core.http_server(host, port [, { loopback_only, backlog }]) -> server | nil, message, reason */
int mk_l_http_server(lua_State *L);
void mk_server_open(lua_State *L);

#endif
