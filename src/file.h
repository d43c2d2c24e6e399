/* Private files (the credential store): 0600 in a 0700 directory, replaced atomically. */
#ifndef MK_FILE_H
#define MK_FILE_H

#include <lua.h>

/* core.write_private(path, data [, { fail_before_rename = true }]) -> true | nil, message */
int mk_l_write_private(lua_State *L);
/* core.read_private(path) -> data | nil, message, why ("missing", "mode" or "io");
 * "mode" when the file is readable or writable by group or others. */
int mk_l_read_private(lua_State *L);
/* core.file_mode(path) -> permission bits (e.g. 384 for 0600) | nil, message */
int mk_l_file_mode(lua_State *L);

#endif
