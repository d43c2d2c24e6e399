/* Engine: a curl multi handle driven through the socket API, so that the
 * sockets and the deadline curl cares about can be listed (fds, timeout) and
 * waited on by anyone: step() here, or a host's event loop.
 *
 * libcurl callbacks only record what curl asks for; no Lua runs inside them. */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "compat.h"
#include "ws.h"

double mk_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Mirrors one socket's interest (CURL_POLL_*; 0 = none) into the epoll set, so
 * that engine:pollfd() is readable whenever any socket of the engine is ready.
 * A socket already closed by curl is simply gone from the set (EBADF/ENOENT). */
static void mirror(mk_engine *e, int fd, int what) {
  struct epoll_event ev;
  if (e->epfd < 0) return;
  memset(&ev, 0, sizeof ev);
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
  ev.data.fd = fd;
  if (what == 0 || what == CURL_POLL_REMOVE) {
    epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, &ev);
  } else if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT) {
    epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev);
  }
}

/* ---- curl callbacks: bookkeeping only ---- */

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  mk_engine *e = userp;
  size_t i;
  (void)easy;
  (void)socketp;
  for (i = 0; i < e->nwatches; i++)
    if (e->watches[i].fd == fd) break;
  mirror(e, fd, what);
  if (what == CURL_POLL_REMOVE) {
    if (i < e->nwatches) e->watches[i] = e->watches[--e->nwatches];
    return 0;
  }
  if (i == e->nwatches) {
    if (e->nwatches == e->capwatches) {
      size_t cap = e->capwatches ? e->capwatches * 2 : 8;
      mk_watch *w = realloc(e->watches, cap * sizeof *w);
      if (w == NULL) {
        e->oom = 1;
        return -1; /* curl fails the transfers on this socket */
      }
      e->watches = w;
      e->capwatches = cap;
    }
    e->watches[e->nwatches++].fd = fd;
  }
  e->watches[i].what = what;
  return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
  mk_engine *e = userp;
  (void)multi;
  if (timeout_ms < 0) {
    e->has_deadline = 0;
  } else {
    e->has_deadline = 1;
    e->deadline = mk_now() + (double)timeout_ms / 1000.0;
  }
  return 0;
}

/* ---- timers: a binary min-heap on `at` ---- */

static void heap_swap(mk_timer *h, size_t a, size_t b) {
  mk_timer t = h[a];
  h[a] = h[b];
  h[b] = t;
}

static void heap_up(mk_timer *h, size_t i) {
  while (i > 0 && h[(i - 1) / 2].at > h[i].at) {
    heap_swap(h, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static void heap_down(mk_timer *h, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && h[l].at < h[m].at) m = l;
    if (r < n && h[r].at < h[m].at) m = r;
    if (m == i) return;
    heap_swap(h, i, m);
    i = m;
  }
}

static void heap_remove(mk_engine *e, size_t i) {
  e->timers[i] = e->timers[--e->ntimers];
  if (i < e->ntimers) {
    heap_down(e->timers, e->ntimers, i);
    heap_up(e->timers, i);
  }
}

/* ---- object plumbing (after liolib: typed accessor, closed check) ---- */

static mk_engine *to_engine(lua_State *L, int i) {
  return (mk_engine *)luaL_checkudata(L, i, MK_ENGINE_MT);
}

mk_engine *mk_check_engine(lua_State *L, int i) {
  mk_engine *e = to_engine(L, i);
  if (e->multi == NULL) luaL_error(L, "attempt to use a closed engine");
  return e;
}

mk_engine *mk_method_engine(lua_State *L) {
  mk_engine *e = (mk_engine *)mk_method_udata(L, 1, MK_UP_ENGINE_MT);
  return e != NULL && e->multi != NULL ? e : mk_check_engine(L, 1); /* (raises) */
}

int mk_engine_new(lua_State *L) {
  mk_engine *e = lua_newuserdata(L, sizeof *e);
  memset(e, 0, sizeof *e); /* closed state first, so a failure below leaves it consistent */
  e->epfd = -1;
  luaL_getmetatable(L, MK_ENGINE_MT);
  lua_setmetatable(L, -2);
  /* The epoll set is made on the first engine:pollfd(): until a host loop asks
   * for it, mirroring would only cost syscalls on every socket change. */
  e->multi = curl_multi_init();
  if (e->multi == NULL) return luaL_error(L, "curl_multi_init failed");
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
  return 1;
}

/* The total timeout is kept here, not by libcurl: CURLOPT_TIMEOUT_MS cost ~7,000 instructions
 * a request in curl's expire timers and callbacks; this list costs a few dozen. Calls of one
 * client share a timeout, so a new deadline is nearly always the latest: insert from the end. */
static void due_insert(mk_engine *e, mk_transfer *t) {
  mk_transfer *after = e->due_last;
  while (after && after->deadline > t->deadline) after = after->due_prev;
  t->due_prev = after;
  t->due_next = after ? after->due_next : e->due_first;
  if (t->due_next) t->due_next->due_prev = t;
  else e->due_last = t;
  if (after) after->due_next = t;
  else e->due_first = t;
  t->due_listed = 1;
}

static void due_remove(mk_engine *e, mk_transfer *t) {
  if (!t->due_listed) return;
  if (t->due_prev) t->due_prev->due_next = t->due_next;
  else e->due_first = t->due_next;
  if (t->due_next) t->due_next->due_prev = t->due_prev;
  else e->due_last = t->due_prev;
  t->due_prev = t->due_next = NULL;
  t->due_listed = 0;
}

int mk_engine_add(lua_State *L, mk_engine *e, int ei, int ti, mk_transfer *t) {
  CURLMcode mc = curl_multi_add_handle(e->multi, t->easy);
  if (mc != CURLM_OK) return luaL_error(L, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
  /* Pin the transfer and its engine while curl holds the easy handle. */
  lua_pushvalue(L, ti);
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, ei);
  t->engine_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->engine = e;
  t->state = MK_RUNNING;
  t->prev = NULL;
  t->next = e->live;
  if (e->live) e->live->prev = t;
  e->live = t;
  e->nlive++;
  if (t->deadline > 0) due_insert(e, t);
  if (t->slow_time > 0) {
    t->slow_added = mk_now();
    t->slow_mark = t->slow_since = 0;
    t->slow_count = 0;
    if (e->nslow++ == 0) e->slow_next = t->slow_added + 1;
  }
  return 0;
}

CURL *mk_engine_easy(mk_engine *e, mk_easy_setup *setup, char **errbuf) {
  if (e->npool > 0) {
    mk_pooled *p = &e->pool[--e->npool];
    *setup = p->setup;
    *errbuf = p->errbuf;
    return p->easy;
  }
  memset(setup, 0, sizeof *setup);
  *errbuf = NULL;
  return curl_easy_init();
}

void mk_easy_setup_free(mk_easy_setup *s) {
  free(s->user_agent);
  memset(s, 0, sizeof *s);
}

void mk_engine_detach(lua_State *L, mk_transfer *t) {
  mk_engine *e = t->engine;
  if (e == NULL) return;
  if (e->multi) curl_multi_remove_handle(e->multi, t->easy);
  due_remove(e, t);
  if (t->slow_time > 0 && --e->nslow == 0) e->slow_next = 0;
  if (t->prev) t->prev->next = t->next;
  else e->live = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  e->nlive--;
  t->engine = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, t->engine_ref);
  t->self_ref = t->engine_ref = LUA_NOREF;
}

/* Ends a transfer whose total timeout passed, as libcurl would have (error 28, its words). */
static void expire(mk_transfer *t, double now) {
  unsigned long received = (unsigned long)t->body.len; /* finishing frees the body */
  mk_transfer_finish(t, CURLE_OPERATION_TIMEDOUT);
  if (t->errbuf == NULL) return; /* never: it lives while the transfer runs */
  snprintf(t->errbuf, CURL_ERROR_SIZE, "Operation timed out after %ld milliseconds with %lu bytes received",
           (long)((now - t->deadline + t->timeout) * 1000.0), received);
}

/* Adds a transfer that ended here to the finished list (made at the first, *n == 0), then
 * takes it off its engine. */
static void finished(lua_State *L, mk_engine *e, mk_transfer *t, int *n) {
  if (*n == 0) lua_newtable(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
  lua_rawseti(L, -2, ++*n);
  mk_engine_detach(L, t); /* takes it off the lists; curl closes its connection */
  mk_transfer_release(t, e);
}

/* The low-speed abort, checked here about once a second rather than by libcurl: curl measures
 * "current speed" as an average over the last 5 seconds, so a reply that stalls right after
 * a burst was aborted up to 6 s after its setting. Here the bytes moved since the last check
 * (body both ways, and headers) are compared with the limit over exactly that interval; the
 * slow stretch starts at the first slow interval and the abort comes once it is slow_time
 * long, within a check (about a second) of it. The clock starts when the request is about to
 * be sent (CURLINFO_PRETRANSFER_TIME): connecting has connect_timeout, and a transfer waiting
 * for a free connection (engine:limit) moves nothing by design. */
static void check_slow(lua_State *L, mk_engine *e, double now, int *n) {
  mk_transfer *t = e->live, *next;
  for (; t; t = next) {
    curl_off_t up = 0, down = 0, pre = 0, count;
    next = t->next;
    if (t->slow_time <= 0) continue;
    if (t->slow_mark == 0 &&
        (curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &pre) != CURLE_OK || pre <= 0))
      continue; /* not sending yet */
    curl_easy_getinfo(t->easy, CURLINFO_SIZE_UPLOAD_T, &up);
    curl_easy_getinfo(t->easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
    count = up + down + t->head_bytes;
    if (t->slow_mark == 0) {
      /* Started since the last check (about a second ago): curl's clock starts when it was
       * added, so the request began `pre` microseconds after that. */
      double began = t->slow_added + (double)pre / 1e6;
      t->slow_mark = began > now - 1 ? (began < now ? began : now) : now - 1;
      t->slow_count = 0;
    }
    if (now > t->slow_mark) {
      if ((double)(count - t->slow_count) < t->slow_bytes * (now - t->slow_mark)) {
        if (t->slow_since == 0) t->slow_since = t->slow_mark;
      } else {
        t->slow_since = 0;
      }
    }
    t->slow_count = count;
    t->slow_mark = now;
    if (t->slow_since > 0 && now - t->slow_since >= t->slow_time) {
      mk_transfer_finish(t, CURLE_OPERATION_TIMEDOUT); /* frees the buffers: nothing held */
      if (t->errbuf)
        snprintf(t->errbuf, CURL_ERROR_SIZE, "Operation too slow. Less than %.0f bytes/sec transferred the last %.0f seconds",
                 t->slow_bytes, t->slow_time);
      finished(L, e, t, n);
    }
  }
}

/* Pushes the list of finished transfers (moved out of curl, past their total timeout at `now`,
 * or too slow), or the shared empty list. Returns the KB of C memory they hold that the
 * collector should hear about (mk_transfer_finish). */
static int collect(lua_State *L, mk_engine *e, double now) {
  CURLMsg *msg;
  int left, n = 0, held = 0;
  while ((msg = curl_multi_info_read(e->multi, &left)) != NULL) {
    mk_transfer *t = NULL;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    if (t == NULL) continue;
    if (t->kind != MK_KIND_WS && t->engine != e) continue;
    if (n == 0) lua_createtable(L, left + 1, 0);
    if (t->kind == MK_KIND_WS) { /* a WebSocket's connect finished: it stays in the multi handle */
      mk_ws_pin(L, (mk_ws *)t);
      lua_rawseti(L, -2, ++n);
      mk_ws_connected(L, (mk_ws *)t, msg->data.result);
      continue;
    }
    held += mk_transfer_finish(t, msg->data.result);
    if (held < 0) held = INT_MAX; /* wrapped */
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    lua_rawseti(L, -2, ++n);
    mk_engine_detach(L, t);
    mk_transfer_release(t, e);
  }
  while (e->due_first && e->due_first->deadline <= now) {
    mk_transfer *t = e->due_first;
    expire(t, now);
    finished(L, e, t, &n);
  }
  if (e->slow_next > 0 && e->slow_next <= now) {
    check_slow(L, e, now, &n);
    if (e->nslow > 0) e->slow_next = now + 1;
  }
  if (n == 0) lua_pushvalue(L, lua_upvalueindex(1));
  return held;
}

/* Seconds until curl's deadline, or -1 when none. */
static double until_curl(const mk_engine *e, double now) {
  double d;
  if (!e->has_deadline) return -1;
  d = e->deadline - now;
  return d > 0 ? d : 0;
}

/* Seconds until the first deadline (curl's, a total timeout, a timer or the low-speed check),
 * or -1 when none. */
static double until_deadline(const mk_engine *e) {
  double now = mk_now(), d = until_curl(e, now);
  if (e->due_first) {
    double t = e->due_first->deadline - now;
    if (t < 0) t = 0;
    if (d < 0 || t < d) d = t;
  }
  if (e->ntimers > 0) {
    double t = e->timers[0].at - now;
    if (t < 0) t = 0;
    if (d < 0 || t < d) d = t;
  }
  if (e->slow_next > 0) {
    double t = e->slow_next - now;
    if (t < 0) t = 0;
    if (d < 0 || t < d) d = t;
  }
  return d;
}

static short poll_events(int what) {
  return (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
}

static const char *interest_name(int what) {
  return what == CURL_POLL_INOUT ? "rw" : what == CURL_POLL_OUT ? "w" : "r";
}

static int action(mk_engine *e, curl_socket_t fd, int ev) {
  int running;
  return curl_multi_socket_action(e->multi, fd, ev, &running) == CURLM_OK ? 0 : -1;
}

/* One step (see engine:step): waits up to `wait` seconds for any socket or the first deadline,
 * then moves every ready curl socket, the expired curl timer and due timers. Pushes the three
 * lists of engine:step (a list with nothing in it is one shared, read-only empty table, its
 * upvalue 1: most steps report nothing, and three new tables per step were most of a call's
 * garbage) and returns whether a signal cut the wait short. A poll with nothing to watch and
 * no time to wait is skipped: it would only ask the kernel for nothing. */
static int step_once(lua_State *L, mk_engine *e, double wait) {
  double due = until_deadline(e), now;
  struct pollfd stackfds[32], *fds = stackfds;
  size_t ncurl = e->nwatches, n = e->nwatches + e->nforeign, i;
  int rc = 0, timeout_ms, interrupted = 0, nt = 0, nready = 0, held;

  if (due >= 0 && due < wait) wait = due;
  if (wait > 86400) wait = 86400;
  timeout_ms = (int)ceil(wait * 1000.0); /* round up: never spin just short of a deadline */

  if (n > sizeof stackfds / sizeof stackfds[0]) {
    fds = malloc(n * sizeof *fds);
    if (fds == NULL) return luaL_error(L, "out of memory");
  }
  for (i = 0; i < n; i++) {
    const mk_watch *w = i < ncurl ? &e->watches[i] : &e->foreign[i - ncurl];
    fds[i].fd = w->fd;
    fds[i].events = poll_events(w->what);
    fds[i].revents = 0;
  }
  if (n > 0 || timeout_ms > 0) rc = poll(fds, (nfds_t)n, timeout_ms);
  if (rc < 0 && errno == EINTR) interrupted = 1;
  /* Socket actions may change e->watches; fds is our own copy. */
  for (i = 0; rc > 0 && i < ncurl; i++) {
    int ev = 0;
    if (fds[i].revents & POLLIN) ev |= CURL_CSELECT_IN;
    if (fds[i].revents & POLLOUT) ev |= CURL_CSELECT_OUT;
    if (fds[i].revents & (POLLERR | POLLHUP | POLLNVAL)) ev |= CURL_CSELECT_ERR;
    if (ev) action(e, fds[i].fd, ev);
  }
  now = mk_now();
  /* curl's timer is one-shot: clear it before the action, which sets a new one if
   * curl wants it. Left armed, the past deadline made every later step poll with a
   * zero timeout (a busy wait until the reply came). */
  if (e->has_deadline && until_curl(e, now) == 0) {
    e->has_deadline = 0;
    action(e, CURL_SOCKET_TIMEOUT, 0);
  }

  held = collect(L, e, now);

  if (e->ntimers > 0 && e->timers[0].at <= now) {
    lua_newtable(L);
    while (e->ntimers > 0 && e->timers[0].at <= now) {
      lua_pushinteger(L, e->timers[0].id);
      lua_rawseti(L, -2, ++nt);
      heap_remove(e, 0);
    }
  } else {
    lua_pushvalue(L, lua_upvalueindex(1));
  }

  for (i = ncurl; rc > 0 && i < n; i++) {
    short r = fds[i].revents;
    const char *s = NULL;
    if (r & (POLLERR | POLLNVAL)) s = "e";
    else if ((r & (POLLIN | POLLHUP)) && (r & POLLOUT)) s = "rw";
    else if (r & (POLLIN | POLLHUP)) s = "r"; /* a hang-up reads as end of stream */
    else if (r & POLLOUT) s = "w";
    if (s) {
      if (nready++ == 0) lua_newtable(L);
      lua_pushstring(L, s);
      lua_rawseti(L, -2, fds[i].fd);
    }
  }
  if (nready == 0) lua_pushvalue(L, lua_upvalueindex(1));
  if (fds != stackfds) free(fds);
  /* Large replies kept in C count towards the collector's pace as if Lua had allocated them,
   * so unread transfers holding them are found (and their memory freed) in time. Last, when
   * the results are on the stack: a step may run finalizers. */
  if (held > 0) lua_gc(L, LUA_GCSTEP, held);
  return interrupted;
}

/* engine:step([timeout]) -> transfers, timers, sockets, interrupted
 * Waits up to timeout seconds (default 0) for any socket (curl's and the
 * watched ones) or the first deadline, then moves every ready curl socket, the
 * expired curl timer and due timers. Returns the transfers that finished
 * (array), the ids of the timers that fired (array, in deadline order), the
 * watched sockets that are ready ({ [fd] = "r" | "w" | "rw" | "e" }) and
 * whether a signal cut the wait short (so Ctrl-C reaches Lua at once). */
static int engine_step(lua_State *L) {
  mk_engine *e = mk_method_engine(L);
  double wait = luaL_optnumber(L, 2, 0);
  int interrupted;
  if (wait != wait || wait < 0) return luaL_argerror(L, 2, "timeout must be a number >= 0");
  interrupted = step_once(L, e, wait);
  lua_pushboolean(L, interrupted);
  return 4;
}

/* engine:finish(transfer [, timeout]) -> "done" | "timeout" | nil (also for a WebSocket)
 * Steps the engine until `transfer` (one of its own) is done, or `timeout` seconds pass: what
 * `repeat engine:step(1) until transfer:done()` does, without a return to Lua per step. Only
 * while the transfer is all the engine serves (no other transfer, WebSocket, timer or watched
 * socket): then a step can report nothing but this transfer, so nothing is lost by not
 * returning the lists. nil, at once when the engine serves more, or when a signal cut a wait
 * short (so that Ctrl-C reaches Lua): the caller then steps the engine itself. */
static int engine_finish(lua_State *L) {
  mk_engine *e = mk_method_engine(L);
  mk_transfer *t = (mk_transfer *)mk_method_udata(L, 2, MK_UP_TRANSFER_MT);
  double timeout = luaL_optnumber(L, 3, -1), deadline = 0;
  int top;
  if (!lua_isnoneornil(L, 3) && !(timeout >= 0)) return luaL_argerror(L, 3, "timeout must be a number >= 0");
  if (t == NULL) { /* anything else the engine waits for (a WebSocket's connect): its steps */
    lua_pushnil(L);
    return 1;
  }
  if (t->state == MK_DONE || t->state == MK_CANCELLED) {
    lua_pushliteral(L, "done");
    return 1;
  }
  if (t->engine != e || e->nlive != 1 || e->nforeign > 0 || e->ntimers > 0 || e->websockets != NULL) {
    lua_pushnil(L);
    return 1;
  }
  if (timeout >= 0) deadline = mk_now() + timeout;
  lua_settop(L, 2);
  top = lua_gettop(L);
  for (;;) {
    double wait = 1;
    int interrupted;
    if (timeout >= 0) {
      wait = deadline - mk_now();
      if (wait <= 0) {
        lua_pushliteral(L, "timeout");
        return 1;
      }
    }
    interrupted = step_once(L, e, wait);
    lua_settop(L, top);
    if (t->state == MK_DONE || t->state == MK_CANCELLED) {
      lua_pushliteral(L, "done");
      return 1;
    }
    if (interrupted) {
      lua_pushnil(L);
      return 1;
    }
  }
}

/* engine:timer(seconds) -> id: a deadline that step() reports once it passes. */
static int engine_timer(lua_State *L) {
  mk_engine *e = mk_check_engine(L, 1);
  double s = luaL_checknumber(L, 2);
  if (s != s || s < 0) return luaL_argerror(L, 2, "seconds must be a number >= 0");
  if (e->ntimers == e->captimers) {
    size_t cap = e->captimers ? e->captimers * 2 : 16;
    mk_timer *t = realloc(e->timers, cap * sizeof *t);
    if (t == NULL) return luaL_error(L, "out of memory");
    e->timers = t;
    e->captimers = cap;
  }
  e->timers[e->ntimers].at = mk_now() + s;
  e->timers[e->ntimers].id = ++e->next_timer_id;
  heap_up(e->timers, e->ntimers++);
  lua_pushinteger(L, e->next_timer_id);
  return 1;
}

/* engine:cancel_timer(id) -> true if it was pending. */
static int engine_cancel_timer(lua_State *L) {
  mk_engine *e = mk_check_engine(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  size_t i;
  for (i = 0; i < e->ntimers; i++) {
    if (e->timers[i].id == id) {
      heap_remove(e, i);
      lua_pushboolean(L, 1);
      return 1;
    }
  }
  lua_pushboolean(L, 0);
  return 1;
}

static int check_fd(lua_State *L, int i) {
  lua_Integer fd = luaL_checkinteger(L, i);
  if (fd < 0 || fd > 0x7fffffff) luaL_argerror(L, i, "not a file descriptor");
  return (int)fd;
}

/* engine:watch(fd, "r" | "w" | "rw"): step() waits on this socket too and
 * reports it when ready. Watching a watched fd changes its interest. */
static int engine_watch(lua_State *L) {
  mk_engine *e = mk_check_engine(L, 1);
  int fd = check_fd(L, 2), what;
  const char *ev = luaL_checkstring(L, 3);
  size_t i;
  if (strcmp(ev, "r") == 0) what = CURL_POLL_IN;
  else if (strcmp(ev, "w") == 0) what = CURL_POLL_OUT;
  else if (strcmp(ev, "rw") == 0) what = CURL_POLL_INOUT;
  else return luaL_argerror(L, 3, "expected \"r\", \"w\" or \"rw\"");
  for (i = 0; i < e->nforeign; i++)
    if (e->foreign[i].fd == fd) break;
  if (i == e->nforeign) {
    if (e->nforeign == e->capforeign) {
      size_t cap = e->capforeign ? e->capforeign * 2 : 8;
      mk_watch *w = realloc(e->foreign, cap * sizeof *w);
      if (w == NULL) return luaL_error(L, "out of memory");
      e->foreign = w;
      e->capforeign = cap;
    }
    e->foreign[e->nforeign++].fd = fd;
  }
  e->foreign[i].what = what;
  mirror(e, fd, what);
  return 0;
}

/* engine:unwatch(fd) -> true if it was watched. */
static int engine_unwatch(lua_State *L) {
  mk_engine *e = mk_check_engine(L, 1);
  int fd = check_fd(L, 2);
  size_t i;
  for (i = 0; i < e->nforeign; i++) {
    if (e->foreign[i].fd == fd) {
      mirror(e, fd, 0);
      e->foreign[i] = e->foreign[--e->nforeign];
      lua_pushboolean(L, 1);
      return 1;
    }
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* engine:fds() -> { [fd] = "r" | "w" | "rw" } for every socket the engine waits on. */
static int engine_fds(lua_State *L) {
  mk_engine *e = mk_check_engine(L, 1);
  size_t i;
  lua_createtable(L, 0, (int)(e->nwatches + e->nforeign));
  for (i = 0; i < e->nwatches; i++) {
    lua_pushstring(L, interest_name(e->watches[i].what));
    lua_rawseti(L, -2, (int)e->watches[i].fd);
  }
  for (i = 0; i < e->nforeign; i++) {
    lua_pushstring(L, interest_name(e->foreign[i].what));
    lua_rawseti(L, -2, e->foreign[i].fd);
  }
  return 1;
}

/* engine:timeout() -> seconds until the engine must be stepped (curl's deadline
 * or the first timer), or nil when only socket activity can move it. */
static int engine_timeout(lua_State *L) {
  mk_engine *e = mk_check_engine(L, 1);
  double d = until_deadline(e);
  if (d < 0) lua_pushnil(L);
  else lua_pushnumber(L, d);
  return 1;
}

/* engine:limit(max_host_connections [, max_total_connections]): caps on the
 * connections curl opens (0 = no cap); transfers over the cap wait in curl. */
static int engine_limit(lua_State *L) {
  mk_engine *e = mk_check_engine(L, 1);
  lua_Integer host = luaL_checkinteger(L, 2), total = luaL_optinteger(L, 3, 0);
  if (host < 0 || total < 0) return luaL_argerror(L, host < 0 ? 2 : 3, "must be >= 0");
  curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)host);
  curl_multi_setopt(e->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)total);
  return 0;
}

/* engine:pollfd() -> one fd that is readable whenever any socket of the engine
 * is ready (an epoll set): a host loop watches it and engine:timeout(). */
static int engine_pollfd(lua_State *L) {
  mk_engine *e = mk_check_engine(L, 1);
  if (e->epfd < 0) {
    size_t i;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->epfd < 0) return luaL_error(L, "epoll_create1 failed");
    for (i = 0; i < e->nwatches; i++) mirror(e, e->watches[i].fd, e->watches[i].what);
    for (i = 0; i < e->nforeign; i++) mirror(e, e->foreign[i].fd, e->foreign[i].what);
  }
  lua_pushinteger(L, e->epfd);
  return 1;
}

/* engine:pending() -> number of transfers in flight. */
static int engine_pending(lua_State *L) {
  lua_pushinteger(L, mk_check_engine(L, 1)->nlive);
  return 1;
}

static int engine_close(lua_State *L) {
  mk_engine *e = to_engine(L, 1);
  if (e->multi == NULL) return 0;
  while (e->live) {
    mk_transfer *t = e->live;
    mk_engine_detach(L, t);
    mk_transfer_drop(t); /* cancelled: its easy handle and buffers go now, not at its __gc */
  }
  mk_ws_engine_closing(L, e); /* before curl_multi_cleanup: each closes its own connection */
  free(e->ws_scratch);
  e->ws_scratch = NULL;
  while (e->npool > 0) {
    mk_pooled *p = &e->pool[--e->npool];
    curl_easy_cleanup(p->easy);
    mk_easy_setup_free(&p->setup);
    free(p->errbuf);
  }
  free(e->pool);
  e->pool = NULL;
  e->cappool = 0;
  curl_multi_cleanup(e->multi);
  e->multi = NULL;
  free(e->watches);
  e->watches = NULL;
  e->nwatches = e->capwatches = 0;
  free(e->foreign);
  e->foreign = NULL;
  e->nforeign = e->capforeign = 0;
  free(e->timers);
  e->timers = NULL;
  e->ntimers = e->captimers = 0;
  if (e->epfd >= 0) close(e->epfd);
  e->epfd = -1;
  return 0;
}

static int engine_tostring(lua_State *L) {
  mk_engine *e = to_engine(L, 1);
  if (e->multi == NULL) lua_pushliteral(L, "misskey.Engine (closed)");
  else lua_pushfstring(L, "misskey.Engine (%p, %d in flight)", (void *)e, e->nlive);
  return 1;
}

static int empty_newindex(lua_State *L) {
  return luaL_error(L, "engine:step's empty lists are shared and read-only");
}

/* After mk_http_open: the methods carry the metatables of transfers and prepared requests. */
void mk_engine_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"request", mk_http_request}, {"post", mk_http_post}, {"fds", engine_fds},
      {"timeout", engine_timeout},  {"pending", engine_pending}, {"close", engine_close},
      {"timer", engine_timer},      {"cancel_timer", engine_cancel_timer},
      {"watch", engine_watch},      {"unwatch", engine_unwatch}, {"limit", engine_limit},
      {"pollfd", engine_pollfd},    {"websocket", mk_ws_new},    {"step", engine_step},
      {"finish", engine_finish},    {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__gc", engine_close}, {"__close", engine_close}, {"__tostring", engine_tostring}, {NULL, NULL}};
  luaL_newmetatable(L, MK_ENGINE_MT);
  mk_setfuncs(L, meta);
  lua_pushliteral(L, MK_ENGINE_MT);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  /* the upvalues, in MK_UP_* order; first step's shared empty list: any write to it raises */
  lua_newtable(L);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, empty_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushliteral(L, "misskey.empty");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -3);
  luaL_getmetatable(L, MK_TRANSFER_MT);
  luaL_getmetatable(L, MK_PREPARED_MT);
  mk_setfuncs_up(L, methods, 4);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
