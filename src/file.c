/* Private files. The directory is opened once with O_NOFOLLOW and checked on its descriptor;
 * everything after that goes through the descriptor (openat, renameat), so a directory swapped
 * for a symbolic link between the check and the write changes nothing. A file is replaced by a
 * temporary file made with O_EXCL and mode 0600 next to it, written, fsync'ed, renamed over the
 * old one, then the directory fsync'ed: a reader sees the old file or the new one, never a torn
 * one. */
#define _POSIX_C_SOURCE 200809L
#include "file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
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

#define PATH_LIMIT 4096
#define READ_DEFAULT_MAX (16 * 1024 * 1024)

static int push_fail(lua_State *L, const char *reason, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushstring(L, reason);
  return 3;
}

static int push_errno(lua_State *L, const char *what, const char *path, int err) {
  return push_fail(L, err == ENOENT ? "missing" : "io", "%s %s: %s", what, path, strerror(err));
}

void mk_private_split(lua_State *L, int arg, const char *path, size_t len, char **dir, const char **base) {
  char *d, *slash;
  luaL_argcheck(L, len > 0 && len < PATH_LIMIT && strlen(path) == len, arg, "a file path expected");
  d = lua_newuserdata(L, len + 2);
  memcpy(d, path, len + 1);
  slash = strrchr(d, '/');
  if (slash == NULL) {
    *base = path;
    strcpy(d, ".");
  } else {
    *base = path + (slash - d) + 1;
    if (slash == d) d[1] = '\0';
    else *slash = '\0';
  }
  luaL_argcheck(L, **base != '\0' && strcmp(*base, ".") != 0 && strcmp(*base, "..") != 0, arg,
                "a file path expected");
  *dir = d;
}

/* mkdir -p of the parents of `dir` (not `dir` itself), mode 0700, iteratively: a path is at
 * most PATH_LIMIT long, but recursion per component is still a needless stack cost. */
static int make_parents(char *dir) {
  char *p, *last = strrchr(dir, '/');
  struct stat st;
  if (last == NULL || last == dir) return 0;
  for (p = strchr(dir + 1, '/'); p != NULL && p <= last; p = strchr(p + 1, '/')) {
    *p = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST && stat(dir, &st) != 0) {
      *p = '/';
      return -1;
    }
    *p = '/';
  }
  return 0;
}

static int refuse_symlink(lua_State *L, const char *path, const char *what) {
  return push_fail(L, "symlink", "%s is a symbolic link: refusing to follow it (the %s must be a real one)", path,
                   what);
}

int mk_private_dir_open(lua_State *L, const char *dir, int create, int writing) {
  struct stat st;
  int fd, err, created = 0;
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    char *copy = lua_newuserdata(L, strlen(dir) + 1);
    strcpy(copy, dir);
    if (make_parents(copy) != 0) {
      err = errno;
      lua_pop(L, 1);
      push_errno(L, "cannot make the parent directories of", dir, err);
      return -1;
    }
    lua_pop(L, 1);
    if (mkdir(dir, 0700) == 0) created = 1;
    else if (errno != EEXIST) {
      push_errno(L, "cannot make the private directory", dir, errno);
      return -1;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) {
    err = errno;
    if ((err == ELOOP || err == ENOTDIR) && lstat(dir, &st) == 0) {
      if (S_ISLNK(st.st_mode)) refuse_symlink(L, dir, "directory");
      else push_fail(L, "type", "%s is not a directory", dir);
      return -1;
    }
    push_errno(L, "cannot open the directory", dir, err);
    return -1;
  }
  if (fstat(fd, &st) != 0) {
    err = errno;
    close(fd);
    push_errno(L, "cannot stat", dir, err);
    return -1;
  }
  if (st.st_uid != geteuid()) {
    close(fd);
    push_fail(L, "owner", "%s belongs to uid %d, not to the current user (uid %d): refusing to use it", dir,
              (int)st.st_uid, (int)geteuid());
    return -1;
  }
  if (created) {
    /* Only a directory made here is set to 0700 (exactly, whatever the umask); an existing one
     * is the user's to arrange. */
    if (fchmod(fd, 0700) != 0) {
      err = errno;
      close(fd);
      push_errno(L, "cannot set the mode of", dir, err);
      return -1;
    }
  } else if (writing && (st.st_mode & 022) != 0) {
    char mode[8];
    close(fd);
    snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
    push_fail(L, "mode", "%s is writable by group or others (mode %s): another user could replace the files in it; "
              "fix it with: chmod 700 %s", dir, mode, dir);
    return -1;
  }
  return fd;
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

/* Removes "<base>.tmp-*" left in the directory by writes that were killed between creating
 * their temporary file and renaming it (each one holds a whole copy of the secrets). */
static void sweep_temps(int dfd, const char *base) {
  size_t blen = strlen(base);
  struct dirent *e;
  DIR *dp;
  int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  dp = fdopendir(fd);
  if (dp == NULL) {
    close(fd);
    return;
  }
  while ((e = readdir(dp)) != NULL) {
    if (strncmp(e->d_name, base, blen) == 0 && strncmp(e->d_name + blen, ".tmp-", 5) == 0) {
      unlinkat(dfd, e->d_name, 0);
    }
  }
  closedir(dp);
}

static int opt_flag(lua_State *L, const char *name) {
  int v;
  lua_getfield(L, 3, name);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Writes, fsyncs and closes fd; on failure removes `name` from the directory. 0 or an errno. */
static int finish_file(int dfd, int fd, const char *name, const char *data, size_t n) {
  int err = 0;
  /* The umask can only narrow 0600; fchmod makes it exact. */
  if (fchmod(fd, 0600) != 0 || write_all(fd, data, n) != 0 || fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && err == 0) err = errno;
  if (err != 0) unlinkat(dfd, name, 0);
  return err;
}

static int sync_dir(lua_State *L, int dfd, const char *dir) {
  int err = fsync(dfd) != 0 ? errno : 0;
  close(dfd);
  if (err != 0 && err != EINVAL) return push_errno(L, "cannot fsync the directory", dir, err);
  lua_pushboolean(L, 1);
  return 1;
}

int mk_l_write_private(lua_State *L) {
  size_t plen, n, tlen;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *data = luaL_checklstring(L, 2, &n);
  const char *base;
  int fail_before_rename = 0, sweep = 0, probe = 0, exclusive = 0, fd, dfd, err;
  char *dir, *tmp;
  unsigned char rnd[8];
  char hex[17];
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    fail_before_rename = opt_flag(L, "fail_before_rename");
    sweep = opt_flag(L, "sweep");
    probe = opt_flag(L, "probe");
    exclusive = opt_flag(L, "exclusive");
  }
  mk_private_split(L, 1, path, plen, &dir, &base);
  dfd = mk_private_dir_open(L, dir, !exclusive, 1);
  if (dfd < 0) return 3;
  if (exclusive) {
    fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      err = errno;
      close(dfd);
      if (err == EEXIST) return push_fail(L, "exists", "%s exists already", path);
      return push_errno(L, "cannot create", path, err);
    }
    err = finish_file(dfd, fd, base, data, n);
    if (err != 0) {
      close(dfd);
      return push_errno(L, "cannot write", path, err);
    }
    return sync_dir(L, dfd, dir);
  }
  if (sweep) sweep_temps(dfd, base);
  if (mk_random(rnd, sizeof rnd) != 0) {
    err = errno;
    close(dfd);
    return push_errno(L, "getrandom for", path, err);
  }
  mk_hex(rnd, sizeof rnd, hex);
  tlen = strlen(base) + 32;
  tmp = lua_newuserdata(L, tlen); /* freed with the frame, whatever happens below */
  snprintf(tmp, tlen, "%s.tmp-%s", base, hex);
  fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    err = errno;
    close(dfd);
    return push_errno(L, "cannot create a temporary file in", dir, err);
  }
  if (probe) {
    close(fd);
    unlinkat(dfd, tmp, 0);
    close(dfd);
    lua_pushboolean(L, 1);
    return 1;
  }
  err = finish_file(dfd, fd, tmp, data, n);
  if (err != 0) {
    close(dfd);
    return push_errno(L, "cannot write a temporary file in", dir, err);
  }
  if (fail_before_rename) { /* test hook: a failure between write and rename */
    unlinkat(dfd, tmp, 0);
    close(dfd);
    return push_fail(L, "io", "cannot replace %s: failure injected before rename", path);
  }
  if (renameat(dfd, tmp, dfd, base) != 0) {
    err = errno;
    unlinkat(dfd, tmp, 0);
    close(dfd);
    return push_errno(L, "cannot replace", path, err);
  }
  return sync_dir(L, dfd, dir);
}

int mk_l_read_private(lua_State *L) {
  size_t plen, got = 0;
  const char *path = luaL_checklstring(L, 1, &plen);
  lua_Integer max = luaL_optinteger(L, 2, READ_DEFAULT_MAX);
  const char *base;
  char *dir;
  struct stat st;
  luaL_Buffer b;
  int fd, dfd, err;
  luaL_argcheck(L, max >= 0 && max <= 0x40000000, 2, "a size of 0 to 1 GiB expected");
  mk_private_split(L, 1, path, plen, &dir, &base);
  dfd = mk_private_dir_open(L, dir, 0, 0);
  if (dfd < 0) return 3;
  /* O_NONBLOCK: opening a FIFO planted at the path must not wait for a writer. */
  fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  err = errno;
  close(dfd);
  if (fd < 0) {
    if (err == ELOOP) return refuse_symlink(L, path, "file");
    if (err == ENXIO) return push_fail(L, "type", "%s is not a regular file", path);
    return push_errno(L, "cannot open", path, err);
  }
  if (fstat(fd, &st) != 0) {
    err = errno;
    close(fd);
    return push_errno(L, "cannot stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return push_fail(L, "type", "%s is not a regular file", path);
  }
  if (st.st_uid != geteuid()) {
    close(fd);
    return push_fail(L, "owner", "%s belongs to uid %d, not to the current user (uid %d): refusing to read it", path,
                     (int)st.st_uid, (int)geteuid());
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    close(fd);
    snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
    return push_fail(L, "mode", "%s is accessible by group or others (mode %s); fix it with: chmod 600 %s", path,
                     mode, path);
  }
  if (st.st_size > max) {
    close(fd);
    return push_fail(L, "size", "%s is larger than %d bytes", path, (int)max);
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
      return push_errno(L, "cannot read", path, err);
    }
    if (r == 0) break;
    got += (size_t)r;
    if (got > (size_t)max) { /* it grew while being read */
      close(fd);
      luaL_pushresult(&b);
      return push_fail(L, "size", "%s is larger than %d bytes", path, (int)max);
    }
    luaL_addsize(&b, (size_t)r);
  }
  close(fd);
  luaL_pushresult(&b);
  return 1;
}

int mk_l_file_mode(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) return push_errno(L, "cannot stat", path, errno);
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  return 1;
}
