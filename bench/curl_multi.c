/* curl_multi: the raw libcurl baseline of bench/batch_bench.lua.
 *
 *   curl_multi URL COUNT CONCURRENCY BODY USER_AGENT [MAX_SECONDS]
 *
 * Keeps CONCURRENCY easy handles in flight on one multi handle, each POSTing
 * BODY (application/json, the headers misskey's client sends) to URL; when one
 * finishes it is re-added until COUNT requests are done (or MAX_SECONDS pass,
 * default 60). Bodies are kept in growable buffers, as misskey's engine does.
 * One warm-up round of CONCURRENCY requests opens the connections first.
 * Prints: requests=N seconds=S rate=R
 * Exits 1 on any failure or non-2xx status.
 *
 * Built with -DWITH_DECODE (bench/run.sh makes it curl_multi_decode, linked with
 * src/json.c and Lua 5.4), it also decodes each reply into Lua tables with
 * misskey's C decoder, in place as the client does, and keeps every result in
 * one Lua table until the run ends, as client:batch returns them: the fastest a
 * batch of decoded results could be, with no Lua code, no engine and no scheduler. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct {
  CURL *easy;
  char *data;
  size_t len, cap;
} slot;

static size_t on_data(char *p, size_t size, size_t n, void *ud) {
  slot *s = ud;
  size_t len = size * n;
  if (s->len + len + 1 > s->cap) { /* + 1: a NUL after the bytes, which the decoder stops on */
    size_t cap = s->cap ? s->cap * 2 : 4096;
    while (cap < s->len + len + 1) cap *= 2;
    char *d = realloc(s->data, cap);
    if (!d) return 0;
    s->data = d;
    s->cap = cap;
  }
  memcpy(s->data + s->len, p, len);
  s->len += len;
  s->data[s->len] = '\0';
  return len;
}

#ifdef WITH_DECODE
#include "decode_ceiling.h"

/* The stack of ctx (a lua_State): 1 the results table, 2 the decoder. Decodes the
 * reply of s and keeps it as results[k]; -1 if it is not a table. */
static int keep(void *ctx, const slot *s, long k) {
  lua_State *L = ctx;
  if (decode_reply(L, 2, s->data ? s->data : "", s->len) != 0) return -1;
  lua_rawseti(L, 1, (int)k);
  return 0;
}
#else
static int keep(void *ctx, const slot *s, long k) {
  (void)ctx, (void)s, (void)k;
  return 0;
}
#endif

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs `count` requests with `conc` in flight; returns how many succeeded, -1 on failure. */
static long run(CURLM *multi, slot *slots, int conc, long count, double deadline, void *ctx) {
  long started = 0, done = 0;
  int i, running = 0;
  for (i = 0; i < conc && started < count; i++, started++) {
    slots[i].len = 0;
    curl_multi_add_handle(multi, slots[i].easy);
  }
  while (done < started) {
    CURLMsg *m;
    int left;
    curl_multi_perform(multi, &running);
    while ((m = curl_multi_info_read(multi, &left)) != NULL) {
      long status = 0;
      slot *s = NULL;
      if (m->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      if (m->data.result != CURLE_OK || status < 200 || status >= 300) {
        fprintf(stderr, "curl_multi: %s (status %ld)\n", curl_easy_strerror(m->data.result), status);
        return -1;
      }
      curl_multi_remove_handle(multi, m->easy_handle);
      done++;
      if (keep(ctx, s, done) != 0) {
        fprintf(stderr, "curl_multi: a reply is not a JSON object or array\n");
        return -1;
      }
      if (started < count && now() < deadline) {
        s->len = 0;
        curl_multi_add_handle(multi, s->easy);
        started++;
      }
    }
    if (done < started) curl_multi_poll(multi, NULL, 0, 1000, NULL);
  }
  return done;
}

int main(int argc, char **argv) {
  long count;
  int conc, i;
  double max_seconds, t0, t;
  struct curl_slist *headers = NULL;
  CURLM *multi;
  slot *slots;
  long done;
  void *ctx = NULL;
#ifdef WITH_DECODE
  lua_State *L = luaL_newstate();
  if (L == NULL) return 1;
  lua_newtable(L); /* 1: results */
  push_decoder(L); /* 2: the decoder */
  ctx = L;
#endif

  if (argc < 6) {
    fprintf(stderr, "usage: curl_multi URL COUNT CONCURRENCY BODY USER_AGENT [MAX_SECONDS]\n");
    return 2;
  }
  count = atol(argv[2]);
  conc = atoi(argv[3]);
  max_seconds = argc > 6 ? atof(argv[6]) : 60;
  if (count < 1 || conc < 1) return 2;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Expect:");
  multi = curl_multi_init();
  slots = calloc((size_t)conc, sizeof *slots);
  for (i = 0; i < conc; i++) {
    CURL *c = curl_easy_init();
    slots[i].easy = c;
    curl_easy_setopt(c, CURLOPT_URL, argv[1]);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, argv[4]);
    curl_easy_setopt(c, CURLOPT_USERAGENT, argv[5]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &slots[i]);
    curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)&slots[i]);
  }
  if (run(multi, slots, conc, conc, now() + max_seconds, ctx) < 0) return 1; /* warm-up */
#ifdef WITH_DECODE
  lua_newtable(L); /* the timed run keeps its results in a fresh table */
  lua_replace(L, 1);
#endif
  t0 = now();
  done = run(multi, slots, conc, count, t0 + max_seconds, ctx);
  t = now() - t0;
  if (done < 0) return 1;
  printf("requests=%ld seconds=%.4f rate=%.1f\n", done, t, (double)done / t);
  for (i = 0; i < conc; i++) {
    curl_easy_cleanup(slots[i].easy);
    free(slots[i].data);
  }
  free(slots);
  curl_multi_cleanup(multi);
  curl_slist_free_all(headers);
  curl_global_cleanup();
#ifdef WITH_DECODE
  lua_close(L);
#endif
  return 0;
}
