/* curl_loop: the raw libcurl baseline of bench/request_bench.lua.
 *
 *   curl_loop URL COUNT BODY USER_AGENT [MAX_SECONDS]
 *
 * One easy handle, set up once and reused, POSTs BODY (application/json, the
 * headers misskey's client sends) to URL: one warm-up request, then COUNT
 * requests one after the other on the kept-alive connection, stopping early
 * after MAX_SECONDS (default 30). Each reply's headers and body are kept in
 * growable buffers, as the Lua client's engine does. Prints one line:
 *
 *   requests=N seconds=S rate=R bytes=B connects=C cpu=U
 *
 * (B: body bytes of the last reply; C: new connections opened after the
 * warm-up, 0 when keep-alive works; U: CPU seconds, user + system, of the timed requests.) Exits 1 on any failure or non-2xx status.
 *
 * Built with -DWITH_DECODE (bench/run.sh makes it curl_loop_decode, linked with
 * src/json.c and Lua 5.4), it also decodes each reply into Lua tables with
 * misskey's own C decoder, in place as the client does (json._decode_body): the
 * fastest a client that returns decoded replies could be, with no Lua code, no
 * engine and no scheduler. Exits 1 if a reply does not decode to a table. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#ifdef WITH_DECODE
#include "decode_ceiling.h"

/* Decodes a reply with the decoder at stack index 1; the value becomes garbage at once,
 * as a reply a script has finished with. */
static int decode(lua_State *L, const char *data, size_t len) {
  int rc = decode_reply(L, 1, data, len);
  lua_pop(L, 1);
  return rc;
}
#endif

typedef struct {
  char *data;
  size_t len, cap;
} buf;

static size_t on_data(char *p, size_t size, size_t n, void *ud) {
  buf *b = ud;
  size_t len = size * n;
  if (b->len + len + 1 > b->cap) { /* + 1: a NUL after the bytes, which the decoder stops on */
    size_t cap = b->cap ? b->cap : 4096;
    char *d;
    while (cap < b->len + len + 1) cap *= 2;
    d = realloc(b->data, cap);
    if (d == NULL) return 0;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, len);
  b->len += len;
  b->data[b->len] = '\0';
  return len;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One request; returns 0 on a 2xx reply. */
static int perform(CURL *c, buf *head, buf *body, long *connects) {
  long status = 0, n = 0;
  CURLcode rc;
  head->len = body->len = 0;
  rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    fprintf(stderr, "curl_loop: %s\n", curl_easy_strerror(rc));
    return -1;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &n);
  *connects += n;
  if (status < 200 || status > 299) {
    fprintf(stderr, "curl_loop: HTTP %ld\n", status);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *url, *body, *ua;
  long count, i, connects = 0;
  double max_seconds = 30, t0, dt, cpu0;
  buf head = {NULL, 0, 0}, data = {NULL, 0, 0};
  struct curl_slist *headers = NULL;
  CURL *c;
  int status = 0;
#ifdef WITH_DECODE
  lua_State *L = luaL_newstate();
  if (L == NULL) return 1;
  push_decoder(L); /* 1: the decoder */
#endif

  if (argc < 5 || argc > 6) {
    fprintf(stderr, "usage: curl_loop URL COUNT BODY USER_AGENT [MAX_SECONDS]\n");
    return 2;
  }
  url = argv[1];
  count = strtol(argv[2], NULL, 10);
  body = argv[3];
  ua = argv[4];
  if (argc == 6) max_seconds = strtod(argv[5], NULL);
  if (count < 1) count = 1;

  curl_global_init(CURL_GLOBAL_DEFAULT);
  c = curl_easy_init();
  if (c == NULL) return 1;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &data);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &head);

  if (perform(c, &head, &data, &connects) != 0) { /* warm-up: connects */
    status = 1;
    goto done;
  }
#ifdef WITH_DECODE
  if (decode(L, data.data, data.len) != 0) {
    fprintf(stderr, "curl_loop: the reply is not a JSON object or array\n");
    status = 1;
    goto done;
  }
#endif
  connects = 0;
  cpu0 = (double)clock() / CLOCKS_PER_SEC;
  t0 = now();
  for (i = 0; i < count; i++) {
    if (perform(c, &head, &data, &connects) != 0) {
      status = 1;
      goto done;
    }
#ifdef WITH_DECODE
    if (decode(L, data.data, data.len) != 0) {
      status = 1;
      goto done;
    }
#endif
    if ((i & 63) == 63 && now() - t0 > max_seconds) {
      i++;
      break;
    }
  }
  dt = now() - t0;
  printf("requests=%ld seconds=%.6f rate=%.1f bytes=%lu connects=%ld cpu=%.6f\n", i, dt, (double)i / dt,
         (unsigned long)data.len, connects, (double)clock() / CLOCKS_PER_SEC - cpu0);

done:
  curl_easy_cleanup(c);
  curl_slist_free_all(headers);
  curl_global_cleanup();
  free(head.data);
  free(data.data);
#ifdef WITH_DECODE
  lua_close(L);
#endif
  return status;
}
