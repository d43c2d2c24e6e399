/* HTTP transfers on an engine: one request, its response status, headers and body.
 * Callbacks only copy bytes into C buffers; Lua reads the result after the engine
 * reports the transfer finished. */
#include "engine.h"

#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "compat.h"

/* Memory. Lua's collector paces itself by Lua memory only, so C buffers freed only in __gc
 * pile up while the Lua heap stays small (a gzip bomb per call once took a script from
 * 13 MiB to 2.5 GiB in 40 calls). So C holds a reply only until something takes it:
 *   - a failed or cancelled transfer frees its body and headers at once (nothing reads them);
 *   - json._decode_body frees the body once it decoded it in place;
 *   - body() and result() hand the body over once: the bytes move into a Lua string, which
 *     the collector counts, and the C buffer is freed;
 *   - what a finished transfer still holds beyond the usual (a body of 1 MiB or more, a header
 *     block over 16 KiB) is reported to the collector as if Lua had allocated it, so an
 *     unread transfer is found in time.
 * The header block (kept for headers(), which may be called again) has a cap of its own:
 * curl stops headers at 300 KB but not trailers. */
#define MK_HEAD_MAX (64 * 1024)
#define MK_REPORT_BODY (1024 * 1024)
#define MK_REPORT_HEAD (16 * 1024)

/* ---- curl callbacks ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  mk_transfer *t = ud;
  size_t len = size * n;
  /* The cap applies to decoded bytes, so a compressed bomb or a chunked reply
   * of unknown length stops here (curl's own MAXFILESIZE needs a known length). */
  if (t->max_size && len > t->max_size - t->body.len) {
    t->too_large = MK_TOO_LARGE_BODY;
    return 0;
  }
  return mk_buf_append(&t->body, p, len) == 0 ? len : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  mk_transfer *t = ud;
  size_t len = size * n;
  /* A new status line starts a new response (100 Continue, proxy CONNECT): keep only the last. */
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) mk_buf_reset(&t->head);
  t->head_bytes += (curl_off_t)len; /* bytes that moved, for the low-speed check */
  if (len > MK_HEAD_MAX - t->head.len) {
    t->too_large = MK_TOO_LARGE_HEAD;
    return 0;
  }
  return mk_buf_append(&t->head, p, len) == 0 ? len : 0;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  mk_transfer *t = ud;
  (void)dltotal;
  (void)dlnow;
  t->upload_now = ulnow;
  t->upload_total = ultotal;
  return 0;
}

/* The head of the request a probing transfer sent (CURLINFO_HEADER_OUT): its Accept-Encoding
 * line, which libcurl made of every encoding it decodes, is kept for the prepared request's
 * later calls (mk_http_post adds it to their headers). Only that line is read. */
static int on_debug(CURL *easy, curl_infotype type, char *data, size_t size, void *ud) {
  static const char name[] = "\r\nAccept-Encoding: ";
  mk_transfer *t = ud;
  mk_prepared *p = t->prepared;
  size_t n = sizeof name - 1, i, j;
  (void)easy;
  if (type != CURLINFO_HEADER_OUT || p == NULL || p->ae_state != MK_AE_PROBING) return 0;
  p->ae_state = MK_AE_NONE; /* unless the line is found */
  for (i = 0; i + n <= size; i++) {
    if (memcmp(data + i, name, n) != 0) continue;
    for (j = i + n; j < size && data[j] != '\r' && data[j] != '\n'; j++) {}
    if (j < size && j > i + n && j - (i + n) < 256 && (p->accept_encoding = malloc(j - (i + n) + 1)) != NULL) {
      memcpy(p->accept_encoding, data + i + n, j - (i + n));
      p->accept_encoding[j - (i + n)] = '\0';
      p->ae_state = MK_AE_UNKNOWN; /* learnt: the next mk_http_post adds it */
    }
    break;
  }
  return 0;
}

/* ---- accessors ---- */

static mk_transfer *to_transfer(lua_State *L, int i) {
  return (mk_transfer *)luaL_checkudata(L, i, MK_TRANSFER_MT);
}

/* to_transfer(L, 1) in a transfer's method, which carries the metatable as upvalue 1. */
static mk_transfer *method_transfer(lua_State *L) {
  mk_transfer *t = (mk_transfer *)mk_method_udata(L, 1, 1);
  return t ? t : to_transfer(L, 1);
}

int mk_transfer_finish(mk_transfer *t, CURLcode code) {
  double total = 0;
  long connects = 0;
  size_t held = 0;
  t->state = MK_DONE;
  t->code = code;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
  curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &total);
  curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
  curl_easy_getinfo(t->easy, CURLINFO_SIZE_UPLOAD_T, &t->upload_now);
  curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_UPLOAD_T, &t->upload_total);
  if (t->upload_total < 0) t->upload_total = 0; /* unknown, as the progress callback says it */
  t->total_time = total;
  t->connects = connects;
  if (code != CURLE_OK) {
    mk_buf_free(&t->body);
    mk_buf_free(&t->head);
    return 0;
  }
  if (t->body.cap >= MK_REPORT_BODY) held += t->body.cap;
  if (t->head.cap > MK_REPORT_HEAD) held += t->head.cap;
  held /= 1024;
  return held > INT_MAX ? INT_MAX : (int)held;
}

void mk_transfer_drop(mk_transfer *t) {
  mk_transfer_release(t, NULL);
  mk_buf_free(&t->body);
  mk_buf_free(&t->head);
  t->state = MK_CANCELLED;
}

void mk_transfer_release(mk_transfer *t, mk_engine *e) {
  /* Only a failure's words are read later (result()): its error buffer stays with it. */
  int keep_errbuf = t->errbuf && t->state == MK_DONE && t->code != CURLE_OK;
  /* Reused easy handles skip curl_easy_init's setup; the connection cache lives
   * in the multi handle either way. A cancelled transfer's connection was closed
   * when it left the multi handle. */
  if (t->easy && e && e->multi && e->npool == e->cappool && e->cappool < MK_POOL_MAX) {
    int cap = e->cappool ? e->cappool * 2 : 16;
    mk_pooled *pool = realloc(e->pool, (size_t)cap * sizeof *pool);
    if (pool) {
      e->pool = pool;
      e->cappool = cap;
    }
  }
  /* Only a handle whose request finished well keeps its options for the next: a cancelled
   * or failed transfer may have left curl mid-way. */
  if (!(t->state == MK_DONE && t->code == CURLE_OK)) t->setup.valid = 0;
  if (t->probe) { /* the handle goes back as it was: quiet, and pointing at no transfer */
    if (t->easy) {
      curl_easy_setopt(t->easy, CURLOPT_VERBOSE, 0L);
      curl_easy_setopt(t->easy, CURLOPT_DEBUGFUNCTION, (curl_debug_callback)NULL);
      curl_easy_setopt(t->easy, CURLOPT_DEBUGDATA, (void *)NULL);
    }
    if (t->prepared && t->prepared->ae_state == MK_AE_PROBING) t->prepared->ae_state = MK_AE_UNKNOWN; /* sent nothing */
    t->probe = 0;
  }
  if (t->easy && e && e->multi && e->npool < e->cappool) {
    mk_pooled *p = &e->pool[e->npool++];
    p->easy = t->easy;
    p->setup = t->setup;
    memset(&t->setup, 0, sizeof t->setup);
    /* The handle keeps its error buffer (no malloc for the next request), unless the
     * transfer keeps it. */
    if (keep_errbuf) curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, (char *)NULL);
    p->errbuf = keep_errbuf ? NULL : t->errbuf;
    if (!keep_errbuf) t->errbuf = NULL;
    /* A pooled handle must not point at a parsed URL that may be freed before its next use. */
    if (t->url) curl_easy_setopt(t->easy, CURLOPT_CURLU, (CURLU *)NULL);
  } else if (t->easy) {
    curl_easy_cleanup(t->easy);
  }
  if (t->errbuf && !keep_errbuf) {
    free(t->errbuf);
    t->errbuf = NULL;
  }
  mk_easy_setup_free(&t->setup);
  t->easy = NULL;
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  mk_prepared_unref(t->prepared);
  t->prepared = NULL;
  mk_url_unref(t->url);
  t->url = NULL;
  if (t->mime) curl_mime_free(t->mime);
  t->mime = NULL;
}

/* ---- building a request ---- */

/* A string option, or def when absent. No NUL inside: libcurl takes C strings, so
 * "a\0b" would quietly become "a" (another URL, another file). */
static const char *opt_string(lua_State *L, int opts, const char *key, const char *def) {
  const char *s;
  size_t len;
  lua_getfield(L, opts, key);
  if (lua_isnil(L, -1)) s = def;
  else if (lua_type(L, -1) != LUA_TSTRING) s = (luaL_error(L, "request option '%s' must be a string", key), NULL);
  else if ((s = lua_tolstring(L, -1, &len)), strlen(s) != len)
    luaL_error(L, "request option '%s' must not contain a NUL byte", key);
  lua_pop(L, 1); /* the string stays alive in opts */
  return s;
}

static double opt_number(lua_State *L, int opts, const char *key, double def) {
  double v = def;
  lua_getfield(L, opts, key);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "request option '%s' must be a number", key);
    v = lua_tonumber(L, -1);
    if (v != v || v < 0) luaL_error(L, "request option '%s' must be >= 0", key);
  }
  lua_pop(L, 1);
  return v;
}

/* Numbers from Lua are doubles, and a cast of one out of the target's range is undefined
 * behaviour: opt_number refuses NaN and negatives, these clamp the top. Timeouts stop at
 * MK_MAX_SECONDS (about 31 years, as good as none). */
#define MK_MAX_SECONDS 1e9

static long to_long(double v) {
  return v >= (double)LONG_MAX ? LONG_MAX : (long)v;
}

static size_t to_size(double v) {
  return v >= (double)SIZE_MAX ? SIZE_MAX : (size_t)v;
}

static double at_most(double v, double hi) {
  return v > hi ? hi : v;
}

static int opt_bool(lua_State *L, int opts, const char *key) {
  int v;
  lua_getfield(L, opts, key);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* RFC 9110 tchar: what a method (or a header name) may be made of. */
static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* No line breaks (they would smuggle headers) and no NUL (curl would cut the line there);
 * a name has no ':' and no space either. */
static int valid_header_part(const char *s, size_t len, int is_name) {
  size_t i;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (c == '\r' || c == '\n' || c == '\0') return 0;
    if (is_name && (c == ':' || isspace((unsigned char)c))) return 0;
  }
  return 1;
}

/* Appends "Name: value" (or "Name;", which sends an empty value) to t->headers: built in a
 * stack buffer for the usual short header, in a Lua buffer for a long one. */
static struct curl_slist *append_header(lua_State *L, struct curl_slist *list, const char *name, size_t nlen,
                                        const char *value, size_t vlen) {
  char line[256];
  size_t len = nlen + (vlen ? 2 + vlen : 1);
  if (len < sizeof line) {
    memcpy(line, name, nlen);
    if (vlen) {
      line[nlen] = ':';
      line[nlen + 1] = ' ';
      memcpy(line + nlen + 2, value, vlen);
    } else {
      line[nlen] = ';';
    }
    line[len] = '\0';
    return curl_slist_append(list, line);
  } else {
    struct curl_slist *l;
    lua_pushfstring(L, vlen ? "%s: %s" : "%s;", name, value);
    l = curl_slist_append(list, lua_tostring(L, -1));
    lua_pop(L, 1);
    return l;
  }
}

/* Whether a proxy variable that libcurl reads for a transfer is set (core.prepare: see
 * mk_prepared's `direct`). With one, a prepared request leaves proxies to libcurl, as
 * engine:request does, and keeps CURLOPT_USERAGENT: libcurl sends that to a proxy's CONNECT,
 * which the request's headers do not reach (and a CURLOPT_PROXYHEADER copy would go twice to a
 * proxy that forwards plain http). */
static int proxy_in_env(void) {
  static const char *const names[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                                      "all_proxy", "ALL_PROXY"};
  size_t i;
  for (i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *v = getenv(names[i]);
    if (v && *v) return 1;
  }
  return 0;
}

/* Whether `list` has a header named `lower` (lowercase), in any case. */
static int has_header(const struct curl_slist *list, const char *lower) {
  size_t n = strlen(lower), i;
  for (; list; list = list->next) {
    for (i = 0; i < n && list->data[i] && tolower((unsigned char)list->data[i]) == lower[i]; i++) {}
    if (i == n && (list->data[n] == ':' || list->data[n] == ';')) return 1;
  }
  return 0;
}

/* headers = { ["Name"] = "value" } of the table at `opts`, then "Expect:" (no
 * "Expect: 100-continue" round trip for large bodies), appended to *list (kept there as it
 * grows, so that a raise leaves nothing unowned); names and values may not smuggle line breaks. */
static void set_headers(lua_State *L, int opts, struct curl_slist **list) {
  struct curl_slist *l;
  lua_getfield(L, opts, "headers");
  if (!lua_isnil(L, -1)) {
    int h = lua_gettop(L);
    if (!lua_istable(L, h)) luaL_error(L, "request option 'headers' must be a table");
    lua_pushnil(L);
    while (lua_next(L, h)) {
      const char *name, *value;
      size_t nlen, vlen;
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "request headers must map strings to strings");
      name = lua_tolstring(L, -2, &nlen);
      value = lua_tolstring(L, -1, &vlen);
      if (nlen == 0 || !valid_header_part(name, nlen, 1) || !valid_header_part(value, vlen, 0))
        luaL_error(L, "invalid request header '%s'", name);
      l = append_header(L, *list, name, nlen, value, vlen);
      if (l == NULL) luaL_error(L, "out of memory");
      *list = l;
      lua_pop(L, 1); /* the value; the key stays for lua_next */
    }
  }
  lua_pop(L, 1);
  l = curl_slist_append(*list, "Expect:");
  if (l == NULL) luaL_error(L, "out of memory");
  *list = l;
}

/* A string field of parts[i], or NULL when absent. */
static const char *part_string(lua_State *L, int part, int i, const char *key, size_t *len) {
  const char *s;
  lua_getfield(L, part, key);
  if (lua_isnil(L, -1)) s = NULL;
  else if (lua_type(L, -1) != LUA_TSTRING) s = (luaL_error(L, "request parts[%d].%s must be a string", i, key), NULL);
  else s = lua_tolstring(L, -1, len);
  lua_pop(L, 1); /* the string stays alive in the part table */
  return s;
}

/* A field that libcurl takes as a C string and writes into the part's header: a NUL would cut
 * it short ("a.png\0.exe" went out as "a.png") and a line break would end the header. Quotes
 * and backslashes are escaped (CURLMIMEOPT_FORMESCAPE, set in configure). */
static const char *part_header_string(lua_State *L, int part, int i, const char *key) {
  size_t len = 0;
  const char *s = part_string(L, part, i, key, &len);
  if (s && !valid_header_part(s, len, 0))
    luaL_error(L, "request parts[%d].%s must not contain a line break or a NUL byte", i, key);
  return s;
}

/* parts = { { name, value } | { name, path, filename?, type? } | { name, data, filename?, type? } }
 * -> t->mime, in order. A path is streamed from disk while the request is sent
 * (curl_mime_filedata reads it in small blocks); value and data are copied. */
static void set_parts(lua_State *L, int parts, mk_transfer *t) {
  int i, n = (int)mk_rawlen(L, parts);
  t->mime = curl_mime_init(t->easy); /* freed by __gc, also when we raise below */
  if (t->mime == NULL) luaL_error(L, "out of memory");
  for (i = 1; i <= n; i++) {
    const char *name, *value, *path, *data, *filename, *type;
    size_t value_len = 0, data_len = 0, path_len = 0;
    curl_mimepart *part;
    int p;
    lua_rawgeti(L, parts, i);
    p = lua_gettop(L);
    if (!lua_istable(L, p)) luaL_error(L, "request parts[%d] must be a table", i);
    name = part_header_string(L, p, i, "name");
    value = part_string(L, p, i, "value", &value_len);
    path = part_string(L, p, i, "path", &path_len);
    data = part_string(L, p, i, "data", &data_len);
    filename = part_header_string(L, p, i, "filename");
    type = part_header_string(L, p, i, "type");
    if (path && strlen(path) != path_len) luaL_error(L, "request parts[%d].path must not contain a NUL byte", i);
    /* Without a filename libcurl sends the path's last component as one. */
    if (path && !filename && !valid_header_part(path, path_len, 0))
      luaL_error(L, "request parts[%d].path has a line break: give a filename to send instead", i);
    if (name == NULL || *name == '\0') luaL_error(L, "request parts[%d].name must be a non-empty string", i);
    if ((value != NULL) + (path != NULL) + (data != NULL) != 1)
      luaL_error(L, "request parts[%d] needs exactly one of value, path, data", i);
    part = curl_mime_addpart(t->mime);
    if (part == NULL || curl_mime_name(part, name) != CURLE_OK) luaL_error(L, "out of memory");
    if (path) {
      /* Checks the file is readable and records its size; opened again when sent. */
      CURLcode rc = curl_mime_filedata(part, path);
      if (rc == CURLE_READ_ERROR) luaL_error(L, "request parts[%d]: cannot read file '%s'", i, path);
      if (rc != CURLE_OK) luaL_error(L, "request parts[%d]: %s", i, curl_easy_strerror(rc));
    } else if (curl_mime_data(part, value ? value : data, value ? value_len : data_len) != CURLE_OK) {
      luaL_error(L, "out of memory");
    }
    if (filename && curl_mime_filename(part, filename) != CURLE_OK) luaL_error(L, "out of memory");
    if (type && curl_mime_type(part, type) != CURLE_OK) luaL_error(L, "out of memory");
    lua_pop(L, 1);
  }
}

/* A malloc'd copy of s (strdup is not C99), or NULL out of memory. */
static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* It goes into the request's head: a line break there would add headers of its own. */
static void check_user_agent(lua_State *L, const char *ua) {
  if (ua && !valid_header_part(ua, strlen(ua), 0))
    luaL_error(L, "request option 'user_agent' must not contain a line break");
}

/* What one request asks for: read from a request table (engine:request), or made of a
 * prepared request and one call's URL, body and timeout (engine:post). The strings live
 * in the Lua values they came from (or in the prepared request) while configure runs. */
typedef struct mk_request {
  const char *url, *method, *user_agent, *ca_file, *body;
  size_t body_len;
  double timeout, connect_timeout, low_speed_time, low_speed_limit, max_size;
  int progress, insecure;
  int direct;                  /* no proxy at all (a prepared request's, see mk_prepared) */
  int parts;                   /* stack index of the parts table, 0 for none */
} mk_request;

/* Reads and checks the request table at `opts`, all but its headers and the parts'
 * contents (configure reads those). A parts table is left on the stack (r->parts). */
static void read_request(lua_State *L, int opts, mk_request *r) {
  size_t i;
  r->url = opt_string(L, opts, "url", NULL);
  r->method = opt_string(L, opts, "method", "POST");
  r->user_agent = opt_string(L, opts, "user_agent", NULL);
  r->ca_file = opt_string(L, opts, "ca_file", NULL);
  r->timeout = opt_number(L, opts, "timeout", 0);
  r->connect_timeout = opt_number(L, opts, "connect_timeout", 0);
  r->low_speed_time = opt_number(L, opts, "low_speed_time", 0);
  r->low_speed_limit = r->low_speed_time > 0 ? opt_number(L, opts, "low_speed_limit", 1) : 0;
  r->max_size = opt_number(L, opts, "max_size", 0);
  if (r->url == NULL) luaL_error(L, "request option 'url' is required");
  check_user_agent(L, r->user_agent);
  for (i = 0; r->method[i]; i++)
    if (!is_tchar((unsigned char)r->method[i])) luaL_error(L, "request option 'method' must be an HTTP token");
  if (i == 0) luaL_error(L, "request option 'method' must be an HTTP token");
  lua_getfield(L, opts, "body");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "request option 'body' must be a string");
  r->body = lua_tolstring(L, -1, &r->body_len);
  lua_pop(L, 1); /* the string stays alive in opts */
  r->progress = opt_bool(L, opts, "progress");
  r->insecure = opt_bool(L, opts, "insecure");
  r->direct = 0;
  lua_getfield(L, opts, "parts");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    r->parts = 0;
  } else {
    if (!lua_istable(L, -1)) luaL_error(L, "request option 'parts' must be a table");
    r->parts = lua_gettop(L);
  }
}

/* Sets up t's easy handle for request r. The header list is t->prepared's when t has one,
 * else made from the `headers` of the request table at index `opts`. */
static void configure(lua_State *L, mk_transfer *t, const mk_request *r, int opts) {
  CURL *c = t->easy;
  const char *method = r->method, *ua = r->user_agent;
  double connect_timeout = r->connect_timeout;
  int common, keep;

  /* The common kind of request (see mk_easy_setup in engine.h) on a handle set up for the very
   * same keeps the handle's options; anything else starts from curl_easy_reset. Everything a
   * request sets is covered: the options below are the same or set again for each request. */
  common = r->parts == 0 && strcmp(method, "POST") == 0 && !r->progress && !r->insecure && r->ca_file == NULL;
  keep = common && t->setup.valid && t->setup.connect_timeout == connect_timeout && t->setup.direct == r->direct &&
         (ua ? t->setup.user_agent && strcmp(ua, t->setup.user_agent) == 0 : t->setup.user_agent == NULL);
  if (!keep) {
    if (t->setup.used) curl_easy_reset(c);
    mk_easy_setup_free(&t->setup);
    t->setup.used = 1;
    if (common && (ua == NULL || (t->setup.user_agent = copy_string(ua)) != NULL)) {
      t->setup.valid = 1; /* (not yet: mk_transfer_release keeps it only once the request went well) */
      t->setup.connect_timeout = connect_timeout;
      t->setup.direct = r->direct;
    }
  }

  curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)t);
  /* Outside the userdata, and kept with a pooled handle after a success: Lua's collector,
   * which paces itself by Lua memory, does not count 256 bytes per call of garbage. */
  if (t->errbuf == NULL && (t->errbuf = malloc(CURL_ERROR_SIZE)) == NULL) luaL_error(L, "out of memory");
  t->errbuf[0] = '\0';
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t->errbuf);
  /* Set either way: a pooled handle may carry the other from its last request. libcurl takes
   * the URL from the parsed handle when it has one (and never writes to it). */
  curl_easy_setopt(c, CURLOPT_CURLU, t->url ? t->url->handle : NULL);
  if (t->url == NULL) curl_easy_setopt(c, CURLOPT_URL, r->url);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
  if (!keep) {
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    /* The progress callback runs on every pass of curl's loop: only for callers
     * that report progress (req.progress); the final counts come from getinfo. */
    if (r->progress) {
      curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
      curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
      curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");   /* every encoding this libcurl decodes */
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    if (r->direct) curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (ua) curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
    if (r->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, r->ca_file);
    if (r->insecure) {
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (connect_timeout > 0)
      curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, to_long(at_most(connect_timeout, MK_MAX_SECONDS) * 1000.0 + 0.5));
  }
  if (r->timeout > 0) { /* the engine keeps it (engine.c, due_insert) */
    t->timeout = at_most(r->timeout, MK_MAX_SECONDS);
    t->deadline = mk_now() + t->timeout;
  }
  /* The engine keeps the low-speed abort too (engine.c, check_slow): libcurl's fires late. */
  t->slow_time = at_most(r->low_speed_time, MK_MAX_SECONDS);
  t->slow_bytes = t->slow_time > 0 ? r->low_speed_limit : 0;
  t->max_size = to_size(r->max_size);

  if (r->parts) {
    if (r->body) luaL_error(L, "request options 'body' and 'parts' cannot be combined");
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
      luaL_error(L, "request option 'parts' needs a method with a body, not %s", method);
    set_parts(L, r->parts, t);
    /* Quotes and backslashes in names and file names get a backslash before them, which
     * multipart parsers (busboy, aiohttp) undo. By default libcurl writes a quote as %22 and
     * leaves a backslash alone, so a file name ending in one ended the quoted string early. */
    curl_easy_setopt(c, CURLOPT_MIME_OPTIONS, (long)CURLMIMEOPT_FORMESCAPE);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, t->mime);
    if (strcmp(method, "POST") != 0) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "GET") == 0) {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    if (strcmp(method, "POST") != 0) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (r->body || strcmp(method, "POST") == 0) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
      curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, r->body ? r->body : "");
    }
  }
  if (t->prepared == NULL) set_headers(L, opts, &t->headers);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, t->prepared ? t->prepared->headers : t->headers);
  if (t->probe) { /* the head it sends goes to on_debug (libcurl prints nothing itself then) */
    curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(c, CURLOPT_DEBUGDATA, t);
    curl_easy_setopt(c, CURLOPT_VERBOSE, 1L);
  }
}

/* Pushes a new transfer (idle, empty) with an easy handle of engine e. */
static mk_transfer *new_transfer(lua_State *L, mk_engine *e) {
  mk_transfer *t = lua_newuserdata(L, sizeof *t);
  memset(t, 0, sizeof *t); /* idle and empty before anything is acquired */
  t->self_ref = t->engine_ref = LUA_NOREF;
  luaL_getmetatable(L, MK_TRANSFER_MT);
  lua_setmetatable(L, -2);
  t->easy = mk_engine_easy(e, &t->setup, &t->errbuf);
  if (t->easy == NULL) luaL_error(L, "curl_easy_init failed");
  return t;
}

/* engine:request{ url, method = "POST", headers = {}, body | parts, timeout, connect_timeout,
 *                 low_speed_time, low_speed_limit, max_size, user_agent, ca_file, insecure } -> transfer
 * TLS peer and host verification stay on (libcurl's default) unless insecure is true;
 * proxies come from the environment (http_proxy, https_proxy, no_proxy), read by libcurl. */
int mk_http_request(lua_State *L) {
  mk_request r;
  mk_transfer *t;
  mk_engine *e = mk_check_engine(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  t = new_transfer(L, e); /* 3 */
  read_request(L, 2, &r);  /* a parts table at 4 */
  configure(L, t, &r, 2);
  lua_settop(L, 3);
  mk_engine_add(L, e, 1, 3, t);
  return 1;
}

/* ---- prepared requests ---- */

void mk_prepared_unref(mk_prepared *p) {
  if (p == NULL || --p->refs > 0) return;
  free(p->user_agent);
  free(p->ca_file);
  free(p->accept_encoding);
  curl_slist_free_all(p->headers);
  mk_url_cache_free(&p->urls);
  free(p);
}

static mk_prepared *to_prepared(lua_State *L, int i) {
  mk_prepared **box = (mk_prepared **)luaL_checkudata(L, i, MK_PREPARED_MT);
  if (*box == NULL) luaL_argerror(L, i, "prepared request expected"); /* (never: only after __gc) */
  return *box;
}

/* core.prepare{ headers, user_agent, connect_timeout, low_speed_time, low_speed_limit,
 *               max_size, ca_file, insecure } -> prepared
 * What an API client sends with every call, checked and built once (the header list, copies
 * of the strings) for engine:post. Other fields of the table are not read. */
int mk_l_prepare(lua_State *L) {
  mk_prepared **box, *p;
  const char *ua, *ca_file;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ua = opt_string(L, 1, "user_agent", NULL);
  ca_file = opt_string(L, 1, "ca_file", NULL);
  check_user_agent(L, ua);
  box = (mk_prepared **)lua_newuserdata(L, sizeof *box);
  *box = NULL;
  luaL_getmetatable(L, MK_PREPARED_MT);
  lua_setmetatable(L, -2);
  if ((p = calloc(1, sizeof *p)) == NULL) return luaL_error(L, "out of memory");
  p->refs = 1;
  *box = p; /* freed by __gc from here on, also when a check below raises */
  p->connect_timeout = opt_number(L, 1, "connect_timeout", 0);
  p->low_speed_time = opt_number(L, 1, "low_speed_time", 0);
  p->low_speed_limit = p->low_speed_time > 0 ? opt_number(L, 1, "low_speed_limit", 1) : 0;
  p->max_size = opt_number(L, 1, "max_size", 0);
  p->insecure = opt_bool(L, 1, "insecure");
  if ((ua && (p->user_agent = copy_string(ua)) == NULL) || (ca_file && (p->ca_file = copy_string(ca_file)) == NULL))
    return luaL_error(L, "out of memory");
  set_headers(L, 1, &p->headers);
  p->ae_state = has_header(p->headers, "accept-encoding") ? MK_AE_NONE : MK_AE_UNKNOWN;
  p->direct = !proxy_in_env();
  /* An empty one keeps libcurl's own handling; a User-Agent among the headers wins, as before. */
  if (ua && *ua && !has_header(p->headers, "user-agent") && p->direct) {
    struct curl_slist *l = append_header(L, p->headers, "User-Agent", 10, ua, strlen(ua));
    if (l == NULL) return luaL_error(L, "out of memory");
    p->headers = l;
    p->ua_in_headers = 1;
  }
  return 1;
}

/* engine:post(prepared, url, body [, timeout]) -> transfer: a POST of `body` (a string) to
 * `url` with prepared's headers and options: engine:request{ method = "POST", url = url,
 * body = body, timeout = timeout, <prepared's fields> } without reading a table each call. */
int mk_http_post(lua_State *L) {
  mk_request r;
  mk_transfer *t;
  size_t url_len;
  mk_engine *e = mk_method_engine(L);
  mk_prepared **box = (mk_prepared **)mk_method_udata(L, 2, MK_UP_PREPARED_MT);
  mk_prepared *p = box && *box ? *box : to_prepared(L, 2);
  r.url = luaL_checklstring(L, 3, &url_len);
  if (strlen(r.url) != url_len) luaL_argerror(L, 3, "must not contain a NUL byte");
  r.body = luaL_checklstring(L, 4, &r.body_len);
  r.timeout = luaL_optnumber(L, 5, 0);
  if (!(r.timeout >= 0)) luaL_argerror(L, 5, "must be a number >= 0");
  r.method = "POST";
  r.user_agent = p->ua_in_headers ? NULL : p->user_agent; /* NULL: it is among the headers */
  r.ca_file = p->ca_file;
  r.connect_timeout = p->connect_timeout;
  r.low_speed_time = p->low_speed_time;
  r.low_speed_limit = p->low_speed_limit;
  r.max_size = p->max_size;
  r.progress = 0;
  r.insecure = p->insecure;
  r.direct = p->direct;
  r.parts = 0;
  lua_settop(L, 5);
  t = new_transfer(L, e); /* 6 */
  t->prepared = p;
  p->refs++;
  if (p->ae_state == MK_AE_UNKNOWN) {
    if (p->accept_encoding) { /* learnt by an earlier call: from now on in the headers */
      struct curl_slist *l = append_header(L, p->headers, "Accept-Encoding", 15, p->accept_encoding,
                                           strlen(p->accept_encoding));
      if (l != NULL) p->headers = l; /* (out of memory: libcurl keeps printing its own) */
      p->ae_state = l != NULL ? MK_AE_ADDED : MK_AE_NONE;
    } else {
      p->ae_state = MK_AE_PROBING;
      t->probe = 1;
    }
  }
  t->url = mk_url_get(&p->urls, r.url, url_len); /* NULL: configure sets CURLOPT_URL instead */
  configure(L, t, &r, 0);
  mk_engine_add(L, e, 1, 6, t);
  return 1;
}

static int prepared_gc(lua_State *L) {
  mk_prepared **box = (mk_prepared **)luaL_checkudata(L, 1, MK_PREPARED_MT);
  mk_prepared_unref(*box);
  *box = NULL;
  return 0;
}

/* ---- transfer methods ---- */

/* transfer:done() -> true once finished or cancelled. */
static int transfer_done(lua_State *L) {
  mk_transfer *t = method_transfer(L);
  lua_pushboolean(L, t->state == MK_DONE || t->state == MK_CANCELLED);
  return 1;
}

/* Pushes the header block `p` (size bytes) as { lowercased name = value }; repeats join with ", ". */
static void push_headers(lua_State *L, const char *p, size_t size) {
  const char *end = p ? p + size : NULL; /* no block: no headers */
  lua_createtable(L, 0, 12);
  while (p && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol ? eol : end, *colon, *v, *ve;
    if (line_end > p && line_end[-1] == '\r') line_end--;
    colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon && colon > p && memcmp(p, "HTTP/", 5) != 0) {
      char name[128];
      size_t i, len = (size_t)(colon - p);
      if (len <= sizeof name) {
        for (i = 0; i < len; i++) name[i] = (char)tolower((unsigned char)p[i]);
        lua_pushlstring(L, name, len);
      } else { /* a name that long is odd but legal: the slow path */
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (i = 0; i < len; i++) luaL_addchar(&b, (char)tolower((unsigned char)p[i]));
        luaL_pushresult(&b);
      }
      for (v = colon + 1; v < line_end && (*v == ' ' || *v == '\t'); v++) {}
      for (ve = line_end; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--) {}
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);
      if (lua_isstring(L, -1)) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, -3);
    }
    p = eol ? eol + 1 : end;
  }
}

/* Pushes the body of the finished, successful transfer at index i and frees the C copy:
 * a body is handed over once (a cache in the registry kept every body alive a collection
 * cycle longer, since the transfer has a finalizer). */
static void push_body(lua_State *L, int i) {
  size_t len;
  const char *body = mk_transfer_body(L, i, &len); /* checks that i is a transfer */
  lua_pushlstring(L, body, len);
  mk_transfer_body_taken((mk_transfer *)lua_touserdata(L, i), MK_BODY_READ);
}

/* transfer:headers() -> the last response's headers, as result() gives them (also
 * after result(true) skipped them, for callers that only sometimes need them; any number
 * of times). Raises for a transfer that failed or was cancelled: they were freed with it. */
static int transfer_headers(lua_State *L) {
  mk_transfer *t = to_transfer(L, 1);
  if (t->state == MK_RUNNING || t->state == MK_IDLE) return luaL_error(L, "transfer is still running");
  if (t->state == MK_CANCELLED || t->code != CURLE_OK)
    return luaL_error(L, "transfer has no headers: it %s", t->state == MK_CANCELLED ? "was cancelled" : "failed");
  push_headers(L, t->head.data, t->head.len);
  return 1;
}

/* transfer:body() -> the body of a finished, successful transfer (result(true, true) skips it).
 * Once: the bytes move into the Lua string; a second read raises, as does a read after
 * json._decode_body decoded them in place. */
static int transfer_body(lua_State *L) {
  push_body(L, 1);
  return 1;
}

/* transfer:result([skip_headers [, skip_body]]) -> status, headers (nil when skip_headers),
 *                    body (nil when skip_body)
 *                    | nil, message, reason ("timeout" | "too_large" | "cancelled" | "network"), curl_code,
 *                      status (of a response whose body was cut short, else 0)
 * A curl failure's message ends with "(curl error N)". The body is handed over once (see
 * transfer:body()): ask for it again, or after a decode in place, and result() raises. */
static int transfer_result(lua_State *L) {
  mk_transfer *t = method_transfer(L);
  const char *reason = "network";
  int skip_headers = lua_toboolean(L, 2), skip_body = lua_toboolean(L, 3);
  if (t->state == MK_RUNNING || t->state == MK_IDLE) return luaL_error(L, "transfer is still running");
  if (t->state == MK_CANCELLED) {
    lua_pushnil(L);
    lua_pushliteral(L, "transfer cancelled");
    lua_pushliteral(L, "cancelled");
    lua_pushinteger(L, CURLE_ABORTED_BY_CALLBACK);
    return 4;
  }
  if (t->code == CURLE_OK) {
    lua_pushinteger(L, t->status);
    if (skip_headers) lua_pushnil(L);
    else push_headers(L, t->head.data, t->head.len);
    if (skip_body) lua_pushnil(L);
    else push_body(L, 1);
    return 3;
  }
  lua_pushnil(L);
  if (t->too_large == MK_TOO_LARGE_BODY) {
    char limit[32];
    snprintf(limit, sizeof limit, "%zu", t->max_size); /* lua_pushfstring has no size_t format */
    lua_pushfstring(L, "response body larger than the %s byte limit (max_size; counted after decompression)",
                    limit);
    reason = "too_large";
  } else if (t->too_large == MK_TOO_LARGE_HEAD) {
    lua_pushfstring(L, "response headers larger than the %d byte limit", MK_HEAD_MAX);
    reason = "too_large";
  } else {
    lua_pushfstring(L, "%s (curl error %d)", t->errbuf && t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->code),
                    (int)t->code);
    if (t->code == CURLE_OPERATION_TIMEDOUT) reason = "timeout";
  }
  lua_pushstring(L, reason);
  lua_pushinteger(L, t->code);
  lua_pushinteger(L, t->status);
  return 5;
}

/* transfer:info() -> { total_time, connects, status, upload_now, upload_total } */
static int transfer_info(lua_State *L) {
  mk_transfer *t = to_transfer(L, 1);
  lua_createtable(L, 0, 5);
  lua_pushnumber(L, t->total_time);
  lua_setfield(L, -2, "total_time");
  lua_pushinteger(L, t->connects);
  lua_setfield(L, -2, "connects");
  lua_pushinteger(L, t->status);
  lua_setfield(L, -2, "status");
  lua_pushinteger(L, (lua_Integer)t->upload_now);
  lua_setfield(L, -2, "upload_now");
  lua_pushinteger(L, (lua_Integer)t->upload_total);
  lua_setfield(L, -2, "upload_total");
  return 1;
}

/* transfer:cancel(): stops a running transfer; curl closes its connection. */
static int transfer_cancel(lua_State *L) {
  mk_transfer *t = to_transfer(L, 1);
  if (t->state == MK_RUNNING) {
    mk_engine *e = t->engine;
    mk_engine_detach(L, t);
    mk_transfer_release(t, e);
    mk_buf_free(&t->body);
    mk_buf_free(&t->head);
    t->state = MK_CANCELLED;
  }
  return 0;
}

static int transfer_gc(lua_State *L) {
  mk_transfer *t = to_transfer(L, 1);
  mk_engine_detach(L, t);
  if (t->easy) curl_easy_cleanup(t->easy);
  t->easy = NULL;
  mk_easy_setup_free(&t->setup);
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  mk_prepared_unref(t->prepared);
  t->prepared = NULL;
  mk_url_unref(t->url); /* after its easy handle, which may point at it */
  t->url = NULL;
  if (t->mime) curl_mime_free(t->mime);
  t->mime = NULL;
  mk_buf_free(&t->body);
  mk_buf_free(&t->head);
  free(t->errbuf);
  t->errbuf = NULL;
  if (t->state == MK_RUNNING) t->state = MK_CANCELLED;
  return 0;
}

static int transfer_tostring(lua_State *L) {
  static const char *names[] = {"idle", "running", "done", "cancelled"};
  mk_transfer *t = to_transfer(L, 1);
  lua_pushfstring(L, "misskey.Transfer (%p, %s)", (void *)t, names[t->state]);
  return 1;
}

void mk_http_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"done", transfer_done},       {"result", transfer_result},
                                     {"body", transfer_body},       {"headers", transfer_headers},
                                     {"info", transfer_info},       {"cancel", transfer_cancel},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__gc", transfer_gc}, {"__close", transfer_cancel}, {"__tostring", transfer_tostring}, {NULL, NULL}};
  luaL_newmetatable(L, MK_TRANSFER_MT);
  mk_setfuncs(L, meta);
  lua_pushliteral(L, MK_TRANSFER_MT);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  lua_pushvalue(L, -2); /* upvalue 1 of every method: the metatable (method_transfer) */
  mk_setfuncs_up(L, methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, MK_PREPARED_MT);
  lua_pushcfunction(L, prepared_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, MK_PREPARED_MT);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}
