/* WebSocket framing (RFC 6455) as pure functions: no I/O, no Lua, so the codec
 * gets unit vectors and a fuzz target of its own (tools/fuzz_wsframe.c). */
#ifndef MK_WSFRAME_H
#define MK_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum {
  MK_WS_CONT = 0x0, MK_WS_TEXT = 0x1, MK_WS_BINARY = 0x2,
  MK_WS_CLOSE = 0x8, MK_WS_PING = 0x9, MK_WS_PONG = 0xA
};

/* Close codes the client sends when the server breaks the protocol. */
enum { MK_WS_PROTOCOL_ERROR = 1002, MK_WS_INVALID_DATA = 1007, MK_WS_TOO_BIG = 1009 };

typedef struct mk_frame {
  int fin, opcode;
  const uint8_t *payload; /* points into the parsed input */
  size_t len;
} mk_frame;

/* Parses one server frame from p[0..n). Returns the bytes it spans (> 0) and
 * fills f; 0 when more bytes are needed; or -code (1002 protocol error: reserved
 * bits, unknown opcode, a masked frame, a fragmented or long control frame;
 * 1009: a payload over max_payload) when the frame is invalid. */
long mk_ws_parse(const uint8_t *p, size_t n, size_t max_payload, mk_frame *f);

/* The bytes the frame starting at p[0..n) spans (header and payload) once its header is
 * there; before that, the header bytes known to be needed (2, 4 or 10). SIZE_MAX when the
 * length does not fit a size_t. It judges nothing: mk_ws_parse does. */
size_t mk_ws_frame_size(const uint8_t *p, size_t n);

/* Appends one masked client frame (fin set) to b; 0 on success, -1 out of memory. */
int mk_ws_encode(mk_buf *b, int opcode, const void *payload, size_t len, const uint8_t mask[4]);

/* 1 when a close frame may carry `code` (RFC 6455 7.4): 1000-1003, 1007-1014
 * and 3000-4999. 1004-1006 and 1015 are never sent; the rest is reserved or unused. */
int mk_ws_close_code_ok(long code);

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int mk_utf8_valid(const uint8_t *s, size_t n);

/* Message assembly across fragments, with control frames allowed between them. */
typedef struct mk_ws_message {
  int opcode;         /* MK_WS_TEXT or MK_WS_BINARY while a message is being assembled, else 0 */
  mk_buf data;
  size_t max_size;
} mk_ws_message;

/* Feeds a data frame (TEXT, BINARY or CONT). Returns 1 when a whole message is
 * in m->data (opcode in *opcode; the caller resets m->data after use), 0 when
 * more fragments are due, or -code (1002 a continuation out of place or a new
 * message inside one, 1007 invalid UTF-8 in text, 1009 over max_size, -1 no memory). */
int mk_ws_feed(mk_ws_message *m, const mk_frame *f, int *opcode);

/* mk_ws_feed without the copy when a message is one frame: on 1, *data and *len
 * give the message, in the frame's payload (unfragmented) or in m->data (the
 * caller resets m->data after use either way). Same results as mk_ws_feed. */
int mk_ws_feed_view(mk_ws_message *m, const mk_frame *f, int *opcode, const uint8_t **data, size_t *len);

#endif
