/* The credential store's lock: flock(2) on a lock file beside the store, so processes that add
 * or remove accounts at the same time take turns at load-modify-save instead of losing writes. */
#ifndef MK_LOCK_H
#define MK_LOCK_H

#include <lua.h>

/* core.lock_private(path [, timeout = 10]) -> lock | nil, message, reason
 * Opens (or makes, 0600) the lock file `path` with the checks of a private file (file.h) and
 * takes an exclusive lock, waiting at most `timeout` seconds (0 to 3600; reason "timeout" when it
 * runs out). lock:unlock() releases it (also on garbage collection and <close>). */
int mk_l_lock_private(lua_State *L);
void mk_lock_open(lua_State *L);

#endif
