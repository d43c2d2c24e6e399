/* The Engine: one curl multi handle plus the sockets and deadline it asks us to watch.
 * Transfers (http.c) run on an engine; engine.c owns polling and completion. */
#ifndef MK_ENGINE_H
#define MK_ENGINE_H

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include <stdlib.h>

#include "buf.h"
#include "urlcache.h"

#define MK_ENGINE_MT "misskey.Engine"
#define MK_TRANSFER_MT "misskey.Transfer"
#define MK_PREPARED_MT "misskey.Prepared"

/* A socket curl wants watched, with the events it asked for (CURL_POLL_IN/OUT/INOUT). */
typedef struct mk_watch {
  curl_socket_t fd;
  int what;
} mk_watch;

typedef struct mk_transfer mk_transfer;

/* What an easy handle was last set up with (http.c, configure): a request of the common
 * kind (a POST with a body or none, no parts, no progress, no ca_file, not insecure) that
 * would set the very same options keeps them on a pooled handle, with no curl_easy_reset and
 * no setopt of the options that do not change (about 4,500 instructions a call). */
typedef struct mk_easy_setup {
  int used;                /* the handle served a request: reset it unless `valid` matches */
  int valid;               /* it was set up for a common request that finished well, with: */
  double connect_timeout;
  char *user_agent;        /* a copy (malloc), or NULL for none */
  int direct;              /* CURLOPT_NOPROXY "*" (a prepared request's: see mk_prepared) */
} mk_easy_setup;

/* A finished easy handle kept by the engine, with its setup and its error buffer (set as its
 * CURLOPT_ERRORBUFFER; NULL when the last transfer kept it for its message). */
typedef struct mk_pooled {
  CURL *easy;
  mk_easy_setup setup;
  char *errbuf;
} mk_pooled;

/* What does not change from one API call of a client to the next (core.prepare): the header
 * list, built once and shared by every transfer made from it (curl only reads it), and the
 * options. Reference-counted: the Lua object holds one reference, each transfer one more. */
typedef struct mk_prepared {
  int refs;
  char *user_agent;            /* malloc'd copies, or NULL */
  char *ca_file;
  double connect_timeout, low_speed_time, low_speed_limit, max_size;
  int insecure;
  struct curl_slist *headers;  /* "Expect:" included, and the User-Agent when ua_in_headers */
  /* No proxy variable was set when it was made (http.c, proxy_in_env): its calls go straight
   * to the server (CURLOPT_NOPROXY "*"), so libcurl does not look for proxy variables in the
   * environment on every call (about 2,000 instructions), and the User-Agent goes in `headers`
   * rather than CURLOPT_USERAGENT, which libcurl prints into a header of its own and then again
   * into the request (about 5,000); only a proxy's CONNECT needs CURLOPT_USERAGENT. */
  int direct, ua_in_headers;
  /* libcurl's Accept-Encoding (every encoding it decodes), learnt from the head of the first
   * request it sent for this one (http.c, on_debug) and then added to `headers`: given that
   * header, libcurl does not print its own into a header and again into the request on every
   * call (about 3,300 instructions). MK_AE_*; `accept_encoding` is malloc'd. */
  int ae_state;
  char *accept_encoding;
  mk_url_cache urls;           /* the URLs its calls went to, parsed (urlcache.h) */
} mk_prepared;

/* What a prepared request knows of libcurl's Accept-Encoding header (mk_prepared.ae_state). */
#define MK_AE_UNKNOWN 0  /* not learnt yet: the next call reads it */
#define MK_AE_PROBING 1  /* a call in flight reads it */
#define MK_AE_ADDED 2    /* among `headers` */
#define MK_AE_NONE 3     /* nothing to learn (the headers have one, or libcurl sent none) */

/* A timer of the engine's min-heap, ordered by `at` (monotonic seconds). */
typedef struct mk_timer {
  double at;
  lua_Integer id;
} mk_timer;

typedef struct mk_engine {
  CURLM *multi;            /* NULL once closed */
  mk_watch *watches;       /* curl's sockets, kept by the socket callback */
  size_t nwatches, capwatches;
  int has_deadline;        /* curl's timer is armed */
  double deadline;         /* monotonic seconds at which curl's timer fires */
  mk_transfer *live;       /* transfers added to the multi handle (pinned in the registry) */
  int nlive;
  mk_transfer *due_first, *due_last; /* transfers with a total timeout, by deadline (see http.c) */
  int nslow;               /* live transfers with a low-speed limit ... */
  double slow_next;        /* ... and when step() next checks them (0 = none to check) */
  int oom;                 /* a socket callback could not grow the watch list */
  mk_watch *foreign;       /* sockets registered from Lua (WebSockets), what = CURL_POLL_* */
  size_t nforeign, capforeign;
  mk_timer *timers;        /* min-heap of timers */
  size_t ntimers, captimers;
  lua_Integer next_timer_id;
  int epfd;                /* epoll set mirroring every socket above: one fd for host loops */
  mk_pooled *pool;         /* finished easy handles kept for the next requests (see mk_easy_setup); */
  int npool, cappool;      /* it grows to the most transfers in flight at once, up to MK_POOL_MAX */
  struct mk_ws *websockets; /* WebSockets whose easy handle is in `multi` (ws.c): closed with it */
  char *ws_scratch;        /* what those WebSockets recv into, one read at a time (ws.c): one */
  int ws_busy;             /* buffer per engine, not one per socket; busy while a poll uses it */
} mk_engine;

typedef enum { MK_IDLE, MK_RUNNING, MK_DONE, MK_CANCELLED } mk_state;

/* CURLINFO_PRIVATE of an easy handle points at one of these; `kind` comes first in both. */
#define MK_KIND_TRANSFER 0
#define MK_KIND_WS 1

struct mk_transfer {
  int kind;                    /* MK_KIND_TRANSFER */
  CURL *easy;
  mk_easy_setup setup;         /* what `easy` is set up with */
  mk_engine *engine;           /* set while running */
  mk_transfer *prev, *next;    /* engine->live list */
  double deadline;             /* monotonic seconds of the total timeout; 0 = none */
  double timeout;              /* that timeout, in seconds (for the message) */
  mk_transfer *due_prev, *due_next; /* engine->due_first list, ordered by deadline */
  int due_listed;
  /* The low-speed abort, kept by the engine (engine.c, check_slow): fewer than slow_bytes a
   * second for slow_time seconds (0 = off) ends the transfer. */
  double slow_bytes, slow_time;
  double slow_added;           /* when it was added to the engine */
  double slow_mark;            /* when the bytes were last counted (0 = not sending yet) */
  double slow_since;           /* start of the current slow stretch (0 = not slow) */
  curl_off_t slow_count;       /* bytes moved at slow_mark */
  curl_off_t head_bytes;       /* header bytes received, every response's (for that count) */
  int self_ref, engine_ref;    /* registry pins while running */
  mk_state state;
  struct curl_slist *headers;  /* its own header list, or NULL with `prepared` */
  mk_prepared *prepared;       /* what it was made from (a reference), or NULL */
  mk_url *url;                 /* its URL parsed, set as CURLOPT_CURLU (a reference), or NULL */
  int probe;                   /* it reads libcurl's Accept-Encoding for `prepared` (on_debug) */
  curl_mime *mime;
  mk_buf body;                 /* response body, until it is read or decoded (see "Memory" in http.c) */
  mk_buf head;                 /* raw response header block of the last response */
  int body_taken;              /* 0, or MK_BODY_READ / MK_BODY_DECODED once handed over and freed */
  size_t max_size;             /* 0 = no cap */
  int too_large;               /* a callback refused the reply: MK_TOO_LARGE_BODY or _HEAD */
  long status;
  CURLcode code;
  double total_time;
  long connects;               /* new connections this transfer opened (0 = reused) */
  curl_off_t upload_now, upload_total;
  char *errbuf;                /* CURL_ERROR_SIZE bytes of malloc while running; kept after a
                                  failure for its message, freed after a success */
};

/* The upvalues every method of the engine carries (mk_engine_open): step's shared empty list,
 * and the metatables of the engine, of transfers and of prepared requests, so that a method
 * checks its arguments' types by comparing metatables (mk_method_udata) rather than by
 * looking the expected one up by name, as luaL_checkudata does (~400 instructions a check on
 * Lua 5.4, six checks a call). A transfer's methods carry its metatable as upvalue 1. */
#define MK_UP_EMPTY 1
#define MK_UP_ENGINE_MT 2
#define MK_UP_TRANSFER_MT 3
#define MK_UP_PREPARED_MT 4

/* The userdata at index i when its metatable is the one at upvalue `up` of the running
 * method, else NULL (the caller then raises through luaL_checkudata, for its message). */
static inline void *mk_method_udata(lua_State *L, int i, int up) {
  void *p = lua_touserdata(L, i);
  if (p != NULL && lua_getmetatable(L, i)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(up));
    lua_pop(L, 1);
    if (same) return p;
  }
  return NULL;
}

double mk_now(void);                              /* monotonic seconds */
mk_engine *mk_check_engine(lua_State *L, int i);   /* open engine or raise */
mk_engine *mk_method_engine(lua_State *L);         /* the same for argument 1 of an engine method */
void mk_engine_open(lua_State *L);                  /* metatable; pushes nothing */
void mk_http_open(lua_State *L);                    /* metatable; pushes nothing */
int mk_engine_new(lua_State *L);                    /* core.engine() */
int mk_http_request(lua_State *L);                  /* engine:request(opts) */
int mk_http_post(lua_State *L);                     /* engine:post(prepared, url, body, timeout) */
int mk_l_prepare(lua_State *L);                     /* core.prepare(opts) */

/* http.c hands a configured transfer (at stack index ti) to the engine e (at stack index ei,
 * checked open by the caller). */
int mk_engine_add(lua_State *L, mk_engine *e, int ei, int ti, mk_transfer *t);
/* Takes a transfer off its engine (unpins it); used on completion, cancel and gc. */
void mk_engine_detach(lua_State *L, mk_transfer *t);
/* Fills result fields from the easy handle once curl reports it finished; a failed
 * transfer's body and headers are freed at once (nothing can read them). Returns the KB of
 * C memory the finished transfer still holds that Lua's collector should hear about. */
int mk_transfer_finish(mk_transfer *t, CURLcode code);
/* Frees what a transfer that can no longer finish holds (engine:close). */
void mk_transfer_drop(mk_transfer *t);
/* Easy handles kept at most: a batch at concurrency 100 reuses all of its own. */
#define MK_POOL_MAX 256

/* Hands a detached transfer's easy handle back to its engine's pool (or frees it). */
void mk_transfer_release(mk_transfer *t, mk_engine *e);
/* An easy handle from the pool (as it was left: *setup says how; http.c resets it unless the
 * setup matches) with its error buffer (*errbuf, NULL if it has none), or a new one; NULL
 * when out of memory. */
CURL *mk_engine_easy(mk_engine *e, mk_easy_setup *setup, char **errbuf);
/* Drops one reference to a prepared request (NULL: nothing), freeing it with the last. */
void mk_prepared_unref(mk_prepared *p);
/* Frees the setup record (not the handle). */
void mk_easy_setup_free(mk_easy_setup *s);
#define MK_TOO_LARGE_BODY 1
#define MK_TOO_LARGE_HEAD 2
#define MK_BODY_READ 1
#define MK_BODY_DECODED 2

/* The body of the finished, successful transfer at stack index i, in place (a NUL follows
 * its *len bytes); raises for anything else, and once the body was handed over (read by
 * body() or result(), or decoded in place). Inline, so that json.c (decode_body) needs
 * nothing from http.c at link time: its fuzzer builds it alone. */
static inline const char *mk_transfer_body(lua_State *L, int i, size_t *len) {
  mk_transfer *t = (mk_transfer *)luaL_checkudata(L, i, MK_TRANSFER_MT);
  if (t->state != MK_DONE || t->code != CURLE_OK)
    luaL_error(L, "transfer has no body: it %s", t->state == MK_CANCELLED ? "was cancelled"
                                                 : t->state == MK_DONE   ? "failed"
                                                                         : "is still running");
  if (t->body_taken)
    luaL_error(L, "transfer has no body: it was %s", t->body_taken == MK_BODY_READ ? "read already"
                                                                                   : "decoded in place");
  *len = t->body.len;
  return t->body.data ? t->body.data : "";
}

/* Frees the body of transfer t once it was handed over (how: MK_BODY_*): nothing reads
 * libcurl's buffer again, and Lua's collector would not see it. */
static inline void mk_transfer_body_taken(mk_transfer *t, int how) {
  free(t->body.data);
  t->body.data = NULL;
  t->body.len = t->body.cap = 0;
  t->body_taken = how;
}

#endif
