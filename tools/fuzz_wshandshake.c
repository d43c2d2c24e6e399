/* libFuzzer target for the WebSocket upgrade reply check (src/wshandshake.c): the
 * input is what a server sends after our upgrade request: status line, headers, the
 * accept key, then (when the head is a valid 101) frames, which go through the codec
 * as ws.c feeds them. The input is exactly `size` bytes with no NUL after them, so
 * ASan catches any read past the end; the checks below abort on a result that
 * contradicts itself.
 *   make fuzz            (FUZZ_SECONDS=20 by default, for each target) */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"
#include "wshandshake.h"

/* RFC 6455 1.3: the accept key for "dGhlIHNhbXBsZSBub25jZQ==" (the seed corpus uses it). */
static const char ACCEPT[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static void frames(const uint8_t *p, size_t n) {
  mk_ws_message msg;
  memset(&msg, 0, sizeof msg);
  msg.max_size = 1 << 20;
  while (n > 0) {
    mk_frame f;
    int opcode, r;
    const uint8_t *m;
    size_t mlen;
    long used = mk_ws_parse(p, n, 1 << 20, &f);
    if (used <= 0) break;
    p += used;
    n -= (size_t)used;
    if (f.opcode == MK_WS_CLOSE && f.len >= 2) mk_ws_close_code_ok((f.payload[0] << 8) | f.payload[1]);
    if (f.opcode >= MK_WS_CLOSE) continue;
    r = mk_ws_feed_view(&msg, &f, &opcode, &m, &mlen);
    if (r < 0) break;
    if (r == 1) mk_buf_reset(&msg.data);
  }
  mk_buf_free(&msg.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  mk_ws_reply r, again;
  int rc = mk_ws_reply_parse(p, size, ACCEPT, &r), rc2;
  if (rc == MK_WSH_INVALID && r.why == NULL) abort();
  if (rc == MK_WSH_OPEN || rc == MK_WSH_REFUSED) {
    if (r.head_len < 4 || r.head_len > size || r.head_len > MK_WS_HEAD_MAX) abort();
    if (memcmp(p + r.head_len - 4, "\r\n\r\n", 4) != 0) abort();
    if (memchr(p, '\0', r.head_len) != NULL) abort();
    /* The head alone, as if the frames had not come yet, reads the same. */
    rc2 = mk_ws_reply_parse(p, r.head_len, ACCEPT, &again);
    if (rc2 != rc || again.head_len != r.head_len || again.status != r.status) abort();
  }
  if (rc == MK_WSH_OPEN) {
    if (r.status != 101) abort();
    frames(data + r.head_len, size - r.head_len);
  }
  /* Bytes arriving in two reads: the first part never ends a head past its own end. */
  rc2 = mk_ws_reply_parse(p, size / 2, ACCEPT, &again);
  if ((rc2 == MK_WSH_OPEN || rc2 == MK_WSH_REFUSED) && again.head_len > size / 2) abort();
  if (rc == MK_WSH_MORE && rc2 != MK_WSH_MORE) abort();
  return 0;
}
