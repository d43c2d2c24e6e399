/* libFuzzer target for the WebSocket codec (src/wsframe.c): arbitrary server
 * bytes go through the frame parser and the message assembler exactly as
 * ws.c feeds them; ASan/UBSan catch any out-of-bounds read or overflow.
 *   make fuzz            (FUZZ_SECONDS=20 by default) */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wsframe.h"

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mk_ws_message msg;
  size_t off = 0;
  uint8_t mask[4] = {1, 2, 3, 4};
  mk_buf out = {NULL, 0, 0};
  memset(&msg, 0, sizeof msg);
  msg.max_size = 1 << 20;
  while (off < size) {
    mk_frame f;
    int opcode, r;
    const uint8_t *m;
    size_t mlen;
    long used = mk_ws_parse(data + off, size - off, 1 << 20, &f);
    /* ws.c completes a frame cut off at a read's end with the bytes mk_ws_frame_size asks
     * for: a whole frame spans exactly that, and an incomplete one asks for more than it has. */
    size_t need = mk_ws_frame_size(data + off, size - off);
    if (used > 0 && need != (size_t)used) __builtin_trap();
    if (used == 0 && need <= size - off) __builtin_trap();
    if (used <= 0) break;
    off += (size_t)used;
    if (f.opcode >= MK_WS_CLOSE) {
      mk_ws_encode(&out, MK_WS_PONG, f.payload, f.len, mask); /* as ws.c answers a ping */
      continue;
    }
    r = mk_ws_feed_view(&msg, &f, &opcode, &m, &mlen);
    if (r < 0) break;
    if (r == 1) { /* the message as ws.c pushes it, then the buffer reset */
      if (mlen > 0) sink ^= (uint8_t)(m[0] ^ m[mlen - 1]); /* ASan checks the view's bounds */
      mk_buf_reset(&msg.data);
    }
  }
  mk_utf8_valid(data, size);
  mk_buf_free(&msg.data);
  mk_buf_free(&out);
  return 0;
}
