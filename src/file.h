/* Private files (the credential store, the schema cache): 0600, owned by the current user, in a
 * directory of the current user's that is not a symbolic link; replaced atomically. */
#ifndef MK_FILE_H
#define MK_FILE_H

#include <lua.h>

/* Failures return nil, message, reason. Reasons: "missing" (no such file or directory),
 * "symlink" (the directory or the file is a symbolic link), "owner" (not the current user's),
 * "mode" (a file readable or writable by group or others; a directory to write in that group or
 * others can write), "type" (not a directory / not a regular file), "size", "exists", "io". */

/* core.write_private(path, data [, opts]) -> true | nil, message, reason
 * opts: sweep = true removes "<name>.tmp-*" files left by interrupted writes (callers hold the
 * store's lock, so none is in use); probe = true only checks that the directory can be written
 * (it makes and removes a temporary file; data is ignored); exclusive = true creates `path`
 * itself, failing if it exists, in a directory that must exist; fail_before_rename = true is a
 * test hook. The directory is made 0700 (with missing parents) when it does not exist; an
 * existing one is never changed. */
int mk_l_write_private(lua_State *L);
/* core.read_private(path [, max_bytes = 16 MiB]) -> data | nil, message, reason
 * Never blocks on a FIFO and never follows a symbolic link. */
int mk_l_read_private(lua_State *L);
/* core.file_mode(path) -> permission bits (e.g. 384 for 0600) | nil, message */
int mk_l_file_mode(lua_State *L);

/* Opens `dir` (O_DIRECTORY | O_NOFOLLOW) and checks it: a real directory owned by the effective
 * user and, when `writing`, not writable by group or others. `create` makes it 0700 (and missing
 * parents) when it does not exist. Returns the descriptor, or -1 with nil, message, reason pushed. */
int mk_private_dir_open(lua_State *L, const char *dir, int create, int writing);

/* Splits `path` into a directory and a final name, both in Lua userdata (freed with the stack
 * frame). Raises an argument error (argument `arg`) for a path with no usable final name. */
void mk_private_split(lua_State *L, int arg, const char *path, size_t len, char **dir, const char **base);

#endif
