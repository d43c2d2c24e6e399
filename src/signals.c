/* core.signals{ "TERM", "INT" } -> Signals
 *
 * Blocks those signals in the calling thread (the Lua state's) and hands them out through a
 * signalfd instead: a stop request becomes an fd that turns readable, which the engine
 * watches like any socket, so a bot waiting on the network learns of it at once and no
 * handler runs inside a signal. The Signals object owns everything it changed (no global
 * state): sig:close() (or its __gc) reads what is still pending, closes the fd and unblocks
 * exactly the signals it blocked, leaving ones that were blocked before as they were.
 *
 *   sig:fd()    -> the signalfd (readable while a signal is pending)
 *   sig:read()  -> { "TERM", ... }: the signals received since the last read (standard
 *                  signals are not queued: each pending one once, in signal-number order)
 *   sig:close() -> true (false if already closed)
 *
 * Linux only (signalfd). Threads started while the signals are blocked inherit the mask, as
 * do programs started meanwhile (os.execute, io.popen): they start with those signals blocked. */
#define _GNU_SOURCE
#include "signals.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "compat.h"

#define MK_SIGNALS_MT "misskey.Signals"

#ifdef __linux__
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>

typedef struct mk_signals {
  int fd;         /* -1 once closed */
  sigset_t added; /* the signals this object blocked (not blocked before it) */
} mk_signals;

/* The names a stop request can use; read-only. */
static const struct {
  const char *name;
  int sig;
} names[] = {{"TERM", SIGTERM}, {"INT", SIGINT}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
             {"USR2", SIGUSR2}};
#define NNAMES (sizeof names / sizeof names[0])

static int number_of(const char *name) {
  size_t i;
  if (strncmp(name, "SIG", 3) == 0) name += 3;
  for (i = 0; i < NNAMES; i++)
    if (strcmp(names[i].name, name) == 0) return names[i].sig;
  return 0;
}

static const char *name_of(int sig) {
  size_t i;
  for (i = 0; i < NNAMES; i++)
    if (names[i].sig == sig) return names[i].name;
  return "?";
}

static mk_signals *to_signals(lua_State *L, int i) {
  return (mk_signals *)luaL_checkudata(L, i, MK_SIGNALS_MT);
}

int mk_l_signals(lua_State *L) {
  sigset_t want, old;
  mk_signals *s;
  size_t i, n;
  int err;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = mk_rawlen(L, 1);
  luaL_argcheck(L, n > 0, 1, "a list of signal names expected (TERM, INT, HUP, QUIT, USR1, USR2)");
  sigemptyset(&want);
  for (i = 1; i <= n; i++) {
    const char *name;
    int sig;
    lua_rawgeti(L, 1, (int)i);
    name = lua_tostring(L, -1);
    sig = name ? number_of(name) : 0;
    if (sig == 0)
      return luaL_error(L, "bad argument #1 to 'signals' (unknown signal %s; TERM, INT, HUP, QUIT, USR1 or USR2)",
                        name ? name : luaL_typename(L, -1));
    sigaddset(&want, sig);
    lua_pop(L, 1);
  }
  s = lua_newuserdata(L, sizeof *s);
  s->fd = -1;
  sigemptyset(&s->added);
  luaL_getmetatable(L, MK_SIGNALS_MT);
  lua_setmetatable(L, -2);
  if ((err = pthread_sigmask(SIG_BLOCK, &want, &old)) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "signals: cannot block: %s", strerror(err));
    return 2;
  }
  for (i = 0; i < NNAMES; i++)
    if (sigismember(&want, names[i].sig) == 1 && sigismember(&old, names[i].sig) == 0)
      sigaddset(&s->added, names[i].sig);
  s->fd = signalfd(-1, &want, SFD_NONBLOCK | SFD_CLOEXEC);
  if (s->fd < 0) {
    err = errno;
    pthread_sigmask(SIG_UNBLOCK, &s->added, NULL);
    sigemptyset(&s->added);
    lua_pushnil(L);
    lua_pushfstring(L, "signals: signalfd: %s", strerror(err));
    return 2;
  }
  return 1;
}

static int signals_fd(lua_State *L) {
  mk_signals *s = to_signals(L, 1);
  if (s->fd < 0) return luaL_error(L, "signals: closed");
  lua_pushinteger(L, s->fd);
  return 1;
}

/* Reads every pending signal; pushes their names as a list when `push`. */
static int drain(lua_State *L, mk_signals *s, int push) {
  struct signalfd_siginfo si;
  int n = 0;
  if (push) lua_newtable(L);
  for (;;) {
    ssize_t r = read(s->fd, &si, sizeof si);
    if (r < 0 && errno == EINTR) continue;
    if (r != (ssize_t)sizeof si) break; /* EAGAIN: nothing left */
    if (push) {
      lua_pushstring(L, name_of((int)si.ssi_signo));
      lua_rawseti(L, -2, ++n);
    }
  }
  return n;
}

static int signals_read(lua_State *L) {
  mk_signals *s = to_signals(L, 1);
  if (s->fd < 0) return luaL_error(L, "signals: closed");
  drain(L, s, 1);
  return 1;
}

static int signals_close(lua_State *L) {
  mk_signals *s = to_signals(L, 1);
  if (s->fd < 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  /* What came after the last read is taken here: unblocked, it would end the process. */
  drain(L, s, 0);
  close(s->fd);
  s->fd = -1;
  pthread_sigmask(SIG_UNBLOCK, &s->added, NULL);
  sigemptyset(&s->added);
  lua_pushboolean(L, 1);
  return 1;
}

#else /* not Linux: no signalfd */

int mk_l_signals(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "signals: not supported on this system (needs Linux signalfd)");
  return 2;
}

static int signals_fd(lua_State *L) { return luaL_error(L, "signals: not supported"); }
static int signals_read(lua_State *L) { return luaL_error(L, "signals: not supported"); }
static int signals_close(lua_State *L) {
  lua_pushboolean(L, 0);
  return 1;
}

#endif

void mk_signal_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"fd", signals_fd}, {"read", signals_read}, {"close", signals_close}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", signals_close}, {"__close", signals_close}, {NULL, NULL}};
  luaL_newmetatable(L, MK_SIGNALS_MT);
  mk_setfuncs(L, meta);
  lua_pushliteral(L, MK_SIGNALS_MT);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  mk_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
