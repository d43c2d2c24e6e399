/* LD_PRELOAD shim for spec/hostile_http_spec.lua: the kernel's random source fails.
 * FAILRANDOM=<errno name> (EINTR, ENOSYS, EPERM) makes every getrandom(2) fail with that
 * errno and every open of /dev/urandom or /dev/random fail with ENOENT (libuuid's fallback);
 * unset, both pass through. Test-only: nothing in the library reads FAILRANDOM.
 *   cc -shared -fPIC -o failrandom.so spec/support/failrandom.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

static int failing(void) {
  const char *how = getenv("FAILRANDOM");
  if (how == NULL || *how == '\0') return 0;
  if (strcmp(how, "EINTR") == 0) return EINTR;
  if (strcmp(how, "ENOSYS") == 0) return ENOSYS;
  return EPERM;
}

ssize_t getrandom(void *buf, size_t n, unsigned int flags) {
  ssize_t (*real)(void *, size_t, unsigned int);
  int e = failing();
  if (e) {
    errno = e;
    return -1;
  }
  *(void **)&real = dlsym(RTLD_NEXT, "getrandom");
  return real(buf, n, flags);
}

int open(const char *path, int flags, ...) {
  int (*real)(const char *, int, ...);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = (mode_t)va_arg(ap, int);
    va_end(ap);
  }
  if (failing() && (strcmp(path, "/dev/urandom") == 0 || strcmp(path, "/dev/random") == 0)) {
    errno = ENOENT;
    return -1;
  }
  *(void **)&real = dlsym(RTLD_NEXT, "open");
  return real(path, flags, mode);
}
