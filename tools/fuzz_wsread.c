/* libFuzzer target for the read side both WebSocket clients share (src/wsread.c): the
 * server's bytes are fed whole, then again cut into reads of sizes the input's first byte
 * picks, with the buffers trimmed between reads as ws.c and wscodec.c do. Both must give
 * the same messages, control frames, close and failure, and a reader between reads must
 * hold no more than one frame cut off at a read's end. ASan/UBSan watch every access.
 *   make fuzz            (FUZZ_SECONDS=20 by default) */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wsread.h"

#define MAX_MESSAGE 4096
#define MAX_HEADER 14 /* a server frame's longest header: 2 + 8 length bytes (+ 4 mask, refused) */

typedef struct {
  mk_buf log; /* what the hooks saw, in order: a tag, a number, the bytes */
  int open;
} record;

static void note(record *r, char tag, long num, const void *p, size_t n) {
  char head[1 + sizeof num + sizeof n];
  head[0] = tag;
  memcpy(head + 1, &num, sizeof num);
  memcpy(head + 1 + sizeof num, &n, sizeof n);
  if (mk_buf_append(&r->log, head, sizeof head) != 0 || (n && mk_buf_append(&r->log, p, n) != 0)) __builtin_trap();
}

static int on_reading(void *ctx) { return ((record *)ctx)->open; }
static void on_message(void *ctx, int opcode, const uint8_t *data, size_t len) { note(ctx, 'm', opcode, data, len); }
static void on_ping(void *ctx, const uint8_t *p, size_t n) { note(ctx, 'i', 0, p, n); }
static void on_pong(void *ctx, const uint8_t *p, size_t n) { note(ctx, 'o', 0, p, n); }
static void on_close(void *ctx, int code, const uint8_t *reason, size_t len) {
  note(ctx, 'c', code, reason, len);
  ((record *)ctx)->open = 0;
}
static void on_fail(void *ctx, int code, const char *why) {
  note(ctx, 'f', code, why, strlen(why));
  ((record *)ctx)->open = 0;
}

static const mk_wsread_hooks HOOKS = {on_reading, on_message, on_ping, on_pong, on_close, on_fail};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mk_wsread whole, pieces;
  record a = {{NULL, 0, 0}, 1}, b = {{NULL, 0, 0}, 1};
  size_t off = 0, step;
  if (size < 1) return 0;
  step = (size_t)data[0] + 1; /* reads of 1 to 256 bytes */
  data++;
  size--;
  mk_wsread_init(&whole, MAX_MESSAGE);
  mk_wsread_init(&pieces, MAX_MESSAGE);
  if (mk_wsread_feed(&whole, &HOOKS, &a, data, size) != 0) __builtin_trap();
  while (off < size && b.open) {
    size_t n = size - off < step ? size - off : step;
    if (mk_wsread_feed(&pieces, &HOOKS, &b, data + off, n) != 0) __builtin_trap();
    off += n;
    mk_wsread_trim(&pieces);
    if (pieces.in.len >= MAX_HEADER + MAX_MESSAGE || pieces.msg.data.len > MAX_MESSAGE) __builtin_trap();
  }
  if (a.log.len != b.log.len || (a.log.len && memcmp(a.log.data, b.log.data, a.log.len) != 0)) __builtin_trap();
  mk_wsread_free(&whole);
  mk_wsread_free(&pieces);
  mk_buf_free(&a.log);
  mk_buf_free(&b.log);
  return 0;
}
