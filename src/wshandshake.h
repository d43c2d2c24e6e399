/* The WebSocket upgrade reply (RFC 6455 4.1) as a pure function: no I/O, no Lua,
 * so the whole handshake check gets unit vectors and a fuzz target of its own
 * (tools/fuzz_wshandshake.c). */
#ifndef MK_WSHANDSHAKE_H
#define MK_WSHANDSHAKE_H

#include <stddef.h>

/* Replies longer than this without an end of head are refused. */
#define MK_WS_HEAD_MAX (64 * 1024)

enum {
  MK_WSH_INVALID = -1, /* not a reply we accept: r->why says why */
  MK_WSH_MORE = 0,     /* the head is not complete yet */
  MK_WSH_OPEN = 1,     /* a valid 101: what follows the head are frames */
  MK_WSH_REFUSED = 2   /* a well-formed HTTP reply with another status */
};

typedef struct mk_ws_reply {
  long status;     /* the status code, for MK_WSH_OPEN and MK_WSH_REFUSED */
  size_t head_len; /* bytes of the head, its blank line included */
  const char *why; /* MK_WSH_INVALID: a static, one-line reason */
} mk_ws_reply;

/* Checks the bytes p[0..n) received so far against the upgrade we sent, whose
 * expected Sec-WebSocket-Accept value is `accept` (NUL-terminated). Never reads
 * past p + n, and never past MK_WS_HEAD_MAX bytes. A head with a NUL byte, a
 * status line that is not HTTP/1.x, or a 101 without `Upgrade: websocket`,
 * `Connection: upgrade` (token lists, any case) and the right accept key, or with
 * an extension or subprotocol we did not offer, is MK_WSH_INVALID. */
int mk_ws_reply_parse(const char *p, size_t n, const char *accept, mk_ws_reply *r);

#endif
