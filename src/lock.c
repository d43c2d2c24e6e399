/* flock(2) on a lock file beside the store. flock, not fcntl locks: an fcntl lock is released
 * when the process closes any descriptor of the file, which the store's own reads would do. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* flock */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "compat.h"
#include "engine.h"
#include "file.h"

#define MK_LOCK_MT "misskey.Lock"
#define LOCK_WAIT_MAX 3600.0

typedef struct mk_lock {
  int fd; /* -1 once released */
} mk_lock;

static void release(mk_lock *k) {
  if (k->fd >= 0) {
    flock(k->fd, LOCK_UN);
    close(k->fd);
  }
  k->fd = -1;
}

static int push_fail(lua_State *L, mk_lock *k, const char *reason, const char *msg, const char *path) {
  release(k);
  lua_pushnil(L);
  lua_pushfstring(L, msg, path);
  lua_pushstring(L, reason);
  return 3;
}

/* Sleeps `s` seconds (EINTR shortens it: the caller's loop checks its deadline). */
static void nap(double s) {
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL);
}

int mk_l_lock_private(lua_State *L) {
  size_t plen;
  const char *path = luaL_checklstring(L, 1, &plen);
  double timeout = luaL_optnumber(L, 2, 10), deadline, step = 0.001;
  const char *base;
  char *dir;
  struct stat st;
  int dfd;
  mk_lock *k;
  luaL_argcheck(L, timeout == timeout, 2, "timeout must be a number of seconds, not NaN");
  if (timeout < 0) timeout = 0;
  if (timeout > LOCK_WAIT_MAX) timeout = LOCK_WAIT_MAX;
  mk_private_split(L, 1, path, plen, &dir, &base);
  /* The userdata first, so the descriptor is closed by __gc whatever fails later. */
  k = lua_newuserdata(L, sizeof *k);
  k->fd = -1;
  luaL_getmetatable(L, MK_LOCK_MT);
  lua_setmetatable(L, -2);
  dfd = mk_private_dir_open(L, dir, 1, 1);
  if (dfd < 0) return 3;
  /* O_NONBLOCK: a FIFO planted at the path must not hang the open. */
  k->fd = openat(dfd, base, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  close(dfd);
  if (k->fd < 0) {
    int err = errno;
    lua_pushnil(L);
    if (err == ELOOP) lua_pushfstring(L, "%s is a symbolic link: refusing to follow it", path);
    else lua_pushfstring(L, "cannot open the lock file %s: %s", path, strerror(err));
    lua_pushstring(L, err == ELOOP ? "symlink" : "io");
    return 3;
  }
  if (fstat(k->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return push_fail(L, k, "type", "the lock file %s is not a regular file", path);
  }
  if (st.st_uid != geteuid()) {
    return push_fail(L, k, "owner", "the lock file %s belongs to another user: refusing to use it", path);
  }
  deadline = mk_now() + timeout;
  for (;;) {
    double left;
    if (flock(k->fd, LOCK_EX | LOCK_NB) == 0) break;
    if (errno != EWOULDBLOCK && errno != EINTR) {
      lua_pushfstring(L, "cannot lock %s: %s", path, strerror(errno));
      release(k);
      lua_pushnil(L);
      lua_insert(L, -2);
      lua_pushliteral(L, "io");
      return 3;
    }
    left = deadline - mk_now();
    if (left <= 0) {
      return push_fail(L, k, "timeout", "%s is still locked by another process: gave up waiting", path);
    }
    nap(step < left ? step : left);
    if (step < 0.05) step *= 2; /* short waits at first: most holders finish within milliseconds */
  }
  return 1;
}

static int lock_unlock(lua_State *L) {
  release((mk_lock *)luaL_checkudata(L, 1, MK_LOCK_MT));
  return 0;
}

void mk_lock_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"unlock", lock_unlock}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", lock_unlock}, {"__close", lock_unlock}, {NULL, NULL}};
  luaL_newmetatable(L, MK_LOCK_MT);
  mk_setfuncs(L, meta);
  lua_pushliteral(L, MK_LOCK_MT);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  mk_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
