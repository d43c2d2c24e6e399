#include "buf.h"

#include <stdlib.h>
#include <string.h>

int mk_buf_append(mk_buf *b, const void *p, size_t n) {
  if (n == 0) return 0;
  if (n >= (size_t)-1 - b->len) return -1;
  if (b->len + n + 1 > b->cap) { /* + 1: the NUL kept after the bytes */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) {
      if (cap > (size_t)-1 / 2) { cap = b->len + n + 1; break; }
      cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (d == NULL) return -1;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

void mk_buf_reset(mk_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

void mk_buf_free(mk_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
