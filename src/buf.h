/* A growable byte buffer: the one buffer type of the core. mk_buf_append and mk_buf_reset
 * keep a NUL after the bytes (data[len] == '\0' once it holds memory), so a parser may stop
 * on it without a bound check; code that writes into data directly must put it back. */
#ifndef MK_BUF_H
#define MK_BUF_H

#include <stddef.h>

typedef struct mk_buf {
  char *data;
  size_t len, cap;
} mk_buf;

/* Appends n bytes; returns 0 on success, -1 when memory runs out (buffer unchanged). */
int mk_buf_append(mk_buf *b, const void *p, size_t n);
void mk_buf_reset(mk_buf *b);   /* length 0, memory kept */
void mk_buf_free(mk_buf *b);    /* memory released, buffer reusable */

#endif
