/* The private-file writer: a temporary file made with O_EXCL and mode 0600 next to the
 * target, written, fsync'ed, renamed over the old file, then the directory fsync'ed, so a
 * reader sees the old file or the new one, never a torn one. */
#define _POSIX_C_SOURCE 200809L
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "hash.h"
#include "random.h"

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

static int fail(lua_State *L, const char *what, const char *path, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: %s", what, path, strerror(err));
  return 2;
}

/* Makes `dir` and its missing parents with mode 0700; tightens `dir` itself to 0700
 * (it is ours: misskey/ under the config directory). 0 or -1 with errno. */
static int make_private_dir(char *dir) {
  struct stat st;
  char *slash;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      errno = ENOTDIR;
      return -1;
    }
    if ((st.st_mode & 077) != 0 && chmod(dir, 0700) != 0) return -1;
    return 0;
  }
  if (errno != ENOENT) return -1;
  slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    if (stat(dir, &st) != 0) {
      int r = make_private_dir(dir);
      *slash = '/';
      if (r != 0) return -1;
    } else {
      *slash = '/';
    }
  }
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) return -1;
  return chmod(dir, 0700);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int mk_l_write_private(lua_State *L) {
  size_t plen, n;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *data = luaL_checklstring(L, 2, &n);
  int fail_before_rename = 0, fd, dfd, err;
  char *dir, *tmp, *slash;
  unsigned char rnd[8];
  char hex[17];
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "fail_before_rename");
    fail_before_rename = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  luaL_argcheck(L, plen > 0 && path[plen - 1] != '/', 1, "a file path expected");
  /* Both buffers are Lua userdata, so an error anywhere below frees them. */
  dir = lua_newuserdata(L, plen + 3);
  tmp = lua_newuserdata(L, plen + 32);
  memcpy(dir, path, plen + 1);
  slash = strrchr(dir, '/');
  if (slash == dir) dir[1] = '\0';
  else if (slash) *slash = '\0';
  else strcpy(dir, ".");
  if (make_private_dir(dir) != 0) return fail(L, "cannot make the private directory", dir, errno);
  if (mk_random(rnd, sizeof rnd) != 0) return fail(L, "getrandom for", path, errno);
  mk_hex(rnd, sizeof rnd, hex);
  snprintf(tmp, plen + 32, "%s.tmp-%s", path, hex);
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return fail(L, "cannot create", tmp, errno);
  /* The umask can only narrow 0600; fchmod makes it exact. */
  if (fchmod(fd, 0600) != 0 || write_all(fd, data, n) != 0 || fsync(fd) != 0) {
    err = errno;
    close(fd);
    unlink(tmp);
    return fail(L, "cannot write", tmp, err);
  }
  if (close(fd) != 0) {
    err = errno;
    unlink(tmp);
    return fail(L, "cannot write", tmp, err);
  }
  if (fail_before_rename) { /* test hook: a crash between write and rename */
    unlink(tmp);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot replace %s: failure injected before rename", path);
    return 2;
  }
  if (rename(tmp, path) != 0) {
    err = errno;
    unlink(tmp);
    return fail(L, "cannot replace", path, err);
  }
  dfd = open(dir, O_RDONLY | O_CLOEXEC);
  if (dfd >= 0) {
    err = fsync(dfd) != 0 ? errno : 0;
    close(dfd);
    if (err != 0 && err != EINVAL) return fail(L, "cannot fsync the directory", dir, err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

int mk_l_read_private(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  luaL_Buffer b;
  int fd = open(path, O_RDONLY | O_CLOEXEC), err;
  if (fd < 0) {
    err = errno;
    fail(L, "cannot open", path, err);
    lua_pushstring(L, err == ENOENT ? "missing" : "io");
    return 3;
  }
  if (fstat(fd, &st) != 0) {
    err = errno;
    close(fd);
    fail(L, "cannot stat", path, err);
    lua_pushstring(L, "io");
    return 3;
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    close(fd);
    snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
    lua_pushnil(L);
    lua_pushfstring(L, "%s is accessible by group or others (mode %s); fix it with: chmod 600 %s", path, mode,
                    path);
    lua_pushstring(L, "mode");
    return 3;
  }
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    ssize_t r = read(fd, p, LUAL_BUFFERSIZE);
    if (r < 0) {
      if (errno == EINTR) continue;
      err = errno;
      close(fd);
      luaL_pushresult(&b);
      fail(L, "cannot read", path, err);
      lua_pushstring(L, "io");
      return 3;
    }
    if (r == 0) break;
    luaL_addsize(&b, (size_t)r);
  }
  close(fd);
  luaL_pushresult(&b);
  return 1;
}

int mk_l_file_mode(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) return fail(L, "cannot stat", path, errno);
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  return 1;
}
