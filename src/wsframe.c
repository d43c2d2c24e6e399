#include "wsframe.h"

#include <string.h>

long mk_ws_parse(const uint8_t *p, size_t n, size_t max_payload, mk_frame *f) {
  size_t head = 2;
  uint64_t len;
  int opcode;
  if (n < 2) return 0;
  opcode = p[0] & 0x0F;
  if (p[0] & 0x70) return -MK_WS_PROTOCOL_ERROR;         /* RSV1-3: no extension was negotiated */
  if (p[1] & 0x80) return -MK_WS_PROTOCOL_ERROR;         /* a server must not mask */
  if (!(opcode <= MK_WS_BINARY || (opcode >= MK_WS_CLOSE && opcode <= MK_WS_PONG))) return -MK_WS_PROTOCOL_ERROR;
  len = p[1] & 0x7F;
  if (opcode >= MK_WS_CLOSE && (!(p[0] & 0x80) || len > 125)) return -MK_WS_PROTOCOL_ERROR;
  if (len == 126) {
    if (n < 4) return 0;
    len = ((uint64_t)p[2] << 8) | p[3];
    if (len < 126) return -MK_WS_PROTOCOL_ERROR;         /* not the minimal encoding */
    head = 4;
  } else if (len == 127) {
    int i;
    if (n < 10) return 0;
    if (p[2] & 0x80) return -MK_WS_PROTOCOL_ERROR;       /* the most significant bit must be 0 */
    for (len = 0, i = 2; i < 10; i++) len = (len << 8) | p[i];
    if (len <= 0xFFFF) return -MK_WS_PROTOCOL_ERROR;
    head = 10;
  }
  if (len > max_payload) return -MK_WS_TOO_BIG;
  if (n - head < len) return 0;
  f->fin = (p[0] & 0x80) != 0;
  f->opcode = opcode;
  f->payload = p + head;
  f->len = (size_t)len;
  return (long)(head + (size_t)len);
}

int mk_ws_encode(mk_buf *b, int opcode, const void *payload, size_t len, const uint8_t mask[4]) {
  uint8_t head[14];
  size_t h = 2, i, start;
  const uint8_t *src = payload;
  head[0] = (uint8_t)(0x80 | (opcode & 0x0F));
  if (len < 126) {
    head[1] = (uint8_t)(0x80 | len);
  } else if (len <= 0xFFFF) {
    head[1] = 0x80 | 126;
    head[2] = (uint8_t)(len >> 8);
    head[3] = (uint8_t)len;
    h = 4;
  } else {
    head[1] = 0x80 | 127;
    for (i = 0; i < 8; i++) head[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    h = 10;
  }
  memcpy(head + h, mask, 4);
  h += 4;
  if (mk_buf_append(b, head, h) != 0) return -1;
  start = b->len;
  if (mk_buf_append(b, payload, len) != 0) return -1;
  for (i = 0; i < len; i++) b->data[start + i] = (char)(src[i] ^ mask[i & 3]);
  return 0;
}

int mk_utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    uint32_t cp;
    size_t k, need;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
    else return 0;
    if (n - i <= need) return 0;
    for (k = 1; k <= need; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += need + 1;
  }
  return 1;
}

int mk_ws_feed(mk_ws_message *m, const mk_frame *f, int *opcode) {
  if (f->opcode == MK_WS_CONT) {
    if (m->opcode == 0) return -MK_WS_PROTOCOL_ERROR;    /* nothing to continue */
  } else {
    if (m->opcode != 0) return -MK_WS_PROTOCOL_ERROR;    /* a new message inside a fragmented one */
    m->opcode = f->opcode;
    mk_buf_reset(&m->data);
  }
  if (m->max_size && f->len > m->max_size - m->data.len) return -MK_WS_TOO_BIG;
  if (mk_buf_append(&m->data, f->payload, f->len) != 0) return -1;
  if (!f->fin) return 0;
  *opcode = m->opcode;
  m->opcode = 0;
  if (*opcode == MK_WS_TEXT && !mk_utf8_valid((const uint8_t *)m->data.data, m->data.len))
    return -MK_WS_INVALID_DATA;
  return 1;
}
