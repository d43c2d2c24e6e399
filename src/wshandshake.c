#include "wshandshake.h"

#include <string.h>

static int invalid(mk_ws_reply *r, const char *why) {
  r->why = why;
  return MK_WSH_INVALID;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

static int ows(char c) { return c == ' ' || c == '\t'; }

/* 1 when s[0..n) is the lower-case literal `lit`, in any ASCII case. */
static int ieq(const char *s, size_t n, const char *lit) {
  size_t i;
  for (i = 0; i < n; i++)
    if (lit[i] == '\0' || lower((unsigned char)s[i]) != lit[i]) return 0;
  return lit[n] == '\0';
}

/* 1 when the comma-separated list v[0..n) holds the token `lit`, in any case
 * (`Connection: keep-alive, Upgrade` names upgrade). */
static int has_token(const char *v, size_t n, const char *lit) {
  size_t i = 0;
  while (i < n) {
    size_t a, b;
    while (i < n && (ows(v[i]) || v[i] == ',')) i++;
    a = i;
    while (i < n && v[i] != ',') i++;
    b = i;
    while (b > a && ows(v[b - 1])) b--;
    if (b > a && ieq(v + a, b - a, lit)) return 1;
  }
  return 0;
}

/* Bytes up to and including the first CRLF CRLF of p[0..n), or 0 when there is none. */
static size_t head_end(const char *p, size_t n) {
  const char *s = p, *end = p + n;
  while ((s = memchr(s, '\r', (size_t)(end - s))) != NULL) {
    if (end - s < 4) return 0;
    if (memcmp(s, "\r\n\r\n", 4) == 0) return (size_t)(s - p) + 4;
    s++;
  }
  return 0;
}

static int digit(char c) { return c >= '0' && c <= '9'; }

/* "HTTP/1.x NNN[ reason]": the status, or -1. */
static long status_of(const char *line, size_t n) {
  if (n < 12 || memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') || line[8] != ' ')
    return -1;
  if (!digit(line[9]) || !digit(line[10]) || !digit(line[11]) || (n > 12 && line[12] != ' ')) return -1;
  return (line[9] - '0') * 100L + (line[10] - '0') * 10L + (line[11] - '0');
}

int mk_ws_reply_parse(const char *p, size_t n, const char *accept, mk_ws_reply *r) {
  size_t scan = n < MK_WS_HEAD_MAX ? n : MK_WS_HEAD_MAX, len, accept_len = strlen(accept);
  const char *line, *eol, *end;
  int upgrade = 0, connection = 0, accepts = 0, accept_ok = 0;
  r->status = 0;
  r->head_len = 0;
  r->why = NULL;
  if (n == 0) return MK_WSH_MORE;
  len = head_end(p, scan);
  /* No header may hold a NUL: C string functions would stop short of the line's end. */
  if (memchr(p, '\0', len ? len : scan)) return invalid(r, "websocket upgrade reply contains a NUL byte");
  if (len == 0) return n >= MK_WS_HEAD_MAX ? invalid(r, "websocket upgrade reply too long") : MK_WSH_MORE;
  end = p + len; /* every line below ends with '\n' before `end` */

  eol = memchr(p, '\n', len);
  r->status = status_of(p, (size_t)(eol - p) - (eol > p && eol[-1] == '\r'));
  if (r->status < 0) {
    r->status = 0;
    return invalid(r, "websocket upgrade reply is not HTTP/1.x");
  }
  r->head_len = len;
  if (r->status != 101) return MK_WSH_REFUSED;

  for (line = eol + 1; line < end; line = eol + 1) {
    size_t n_line, name_len, value_len;
    const char *colon, *value;
    eol = memchr(line, '\n', (size_t)(end - line));
    n_line = (size_t)(eol - line) - (eol > line && eol[-1] == '\r');
    if (n_line == 0) break; /* the blank line that ends the head */
    if (ows(line[0])) return invalid(r, "websocket upgrade reply folds a header line");
    colon = memchr(line, ':', n_line);
    if (colon == NULL || colon == line) return invalid(r, "websocket upgrade reply has a malformed header line");
    name_len = (size_t)(colon - line);
    value = colon + 1;
    value_len = n_line - name_len - 1;
    while (value_len > 0 && ows(value[0])) value++, value_len--;
    while (value_len > 0 && ows(value[value_len - 1])) value_len--;
    if (ieq(line, name_len, "upgrade")) {
      upgrade |= has_token(value, value_len, "websocket");
    } else if (ieq(line, name_len, "connection")) {
      connection |= has_token(value, value_len, "upgrade");
    } else if (ieq(line, name_len, "sec-websocket-accept")) {
      accepts++;
      accept_ok = value_len == accept_len && memcmp(value, accept, accept_len) == 0;
    } else if (ieq(line, name_len, "sec-websocket-extensions") && value_len > 0) {
      return invalid(r, "websocket upgrade reply names an extension the client did not offer");
    } else if (ieq(line, name_len, "sec-websocket-protocol")) {
      return invalid(r, "websocket upgrade reply names a subprotocol the client did not offer");
    }
  }
  if (!upgrade) return invalid(r, "websocket upgrade reply has no Upgrade: websocket");
  if (!connection) return invalid(r, "websocket upgrade reply has no Connection: upgrade");
  if (accepts != 1 || !accept_ok) return invalid(r, "websocket upgrade reply has a wrong or missing Sec-WebSocket-Accept");
  return MK_WSH_OPEN;
}
