/* UUID v4 session ids (libuuid). */
#ifndef MK_UUID_H
#define MK_UUID_H

#include <lua.h>

/* Writes a random (version 4) UUID as 36 lower-case characters plus NUL; 0, or -1 with
 * errno set when the kernel's random source fails (nothing weaker is used). */
int mk_uuid4(char out[37]);

/* core.uuid() -> "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" */
int mk_l_uuid(lua_State *L);

#endif
