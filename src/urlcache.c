#include "urlcache.h"

#include <stdlib.h>
#include <string.h>

/* The flags libcurl 7.x parses CURLOPT_URL with (without CURLOPT_PATH_AS_IS and
 * CURLOPT_DISALLOW_USERNAME_IN_URL, which the engine never sets), so that a URL means the same
 * whichever way it is given. */
#define MK_URL_FLAGS (CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME)

static mk_url *parse(const char *url, size_t len) {
  mk_url *u = malloc(sizeof *u + len + 1);
  if (u == NULL) return NULL;
  u->handle = curl_url();
  if (u->handle == NULL || curl_url_set(u->handle, CURLUPART_URL, url, MK_URL_FLAGS) != CURLUE_OK) {
    curl_url_cleanup(u->handle);
    free(u);
    return NULL;
  }
  u->refs = 1;
  u->len = len;
  memcpy(u->text, url, len + 1);
  return u;
}

mk_url *mk_url_get(mk_url_cache *c, const char *url, size_t len) {
  unsigned i;
  mk_url *u;
  for (i = 0; i < MK_URL_CACHE; i++) {
    u = c->slot[i];
    if (u && u->len == len && memcmp(u->text, url, len) == 0) {
      u->refs++;
      return u;
    }
  }
  if ((u = parse(url, len)) == NULL) return NULL;
  i = c->next;
  c->next = (i + 1) % MK_URL_CACHE;
  mk_url_unref(c->slot[i]); /* a transfer still using it keeps it alive */
  c->slot[i] = u;
  u->refs++;
  return u;
}

void mk_url_unref(mk_url *u) {
  if (u == NULL || --u->refs > 0) return;
  curl_url_cleanup(u->handle);
  free(u);
}

void mk_url_cache_free(mk_url_cache *c) {
  unsigned i;
  for (i = 0; i < MK_URL_CACHE; i++) {
    mk_url_unref(c->slot[i]);
    c->slot[i] = NULL;
  }
}
