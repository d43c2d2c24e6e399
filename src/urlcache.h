/* Parsed URLs for a prepared request's calls (engine:post), handed to libcurl as CURLOPT_CURLU.
 * Given a URL string, libcurl parses it for every transfer and then prints it back out of its
 * parts (about 12,700 instructions of a keep-alive call); given a parsed handle it only copies
 * it. An API client posts to a few URLs over and over, so a prepared request keeps the last
 * MK_URL_CACHE of them, parsed once. */
#ifndef MK_URLCACHE_H
#define MK_URLCACHE_H

#include <curl/curl.h>
#include <stddef.h>

#define MK_URL_CACHE 8

/* One parsed URL, shared by the cache and the transfers that use it (libcurl reads the handle
 * while a transfer runs, so each transfer holds a reference until its easy handle lets go). */
typedef struct mk_url {
  int refs;
  CURLU *handle;
  size_t len;
  char text[]; /* the URL as given, NUL-terminated: the cache's key */
} mk_url;

typedef struct mk_url_cache {
  mk_url *slot[MK_URL_CACHE]; /* each holds one reference; NULL when empty */
  unsigned next;              /* the slot a new URL replaces (round robin) */
} mk_url_cache;

/* A new reference to `url` (len bytes, no NUL inside) parsed as libcurl parses CURLOPT_URL,
 * from the cache or parsed now and cached; NULL when libcurl rejects it or memory runs out:
 * the caller then sets CURLOPT_URL, and libcurl reports the problem in its own words. */
mk_url *mk_url_get(mk_url_cache *c, const char *url, size_t len);
/* Drops one reference (NULL: nothing); the last frees the handle. */
void mk_url_unref(mk_url *u);
/* Drops the cache's references. */
void mk_url_cache_free(mk_url_cache *c);

#endif
