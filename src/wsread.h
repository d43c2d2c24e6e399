/* The read side of the WebSocket client, shared by ws.c (libcurl, ws:poll) and wscodec.c
 * (core.ws_codec, fed by nginx): bytes read become frames, frames become messages (assembled
 * under max_message) and control events, protocol failures get their close code and text.
 * What a message, ping, pong, close or failure does is each owner's, through hooks: the
 * socket answers pings itself and decodes JSON in place, the codec reports them to Lua. */
#ifndef MK_WSREAD_H
#define MK_WSREAD_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buf.h"
#include "wsframe.h"

/* max_message when none is given, and the most it is clamped to (sizes never overflow). */
#define MK_WSREAD_MAX_MESSAGE_DEFAULT (16u * 1024 * 1024)
#define MK_WSREAD_MAX_MESSAGE_CAP ((size_t)-1 / 2)

/* What a reader keeps between reads. An idle one holds no more than KEEP bytes a buffer. */
typedef struct mk_wsread {
  mk_buf in;         /* bytes not parsed yet: the frame a read ended inside (ws.c keeps
                        the upgrade reply here first) */
  size_t in_off;     /* parsed prefix of `in` */
  mk_ws_message msg; /* a fragmented message being assembled; msg.max_size is max_message */
  size_t reported;   /* buffer bytes Lua's collector was last told about */
  int cut_short;     /* set by the owner while it hands a read to the hooks: still set after,
                        an error raised in Lua unwound it and the rest of those bytes is lost */
} mk_wsread;

/* What the owner does with each thing read; ctx is the owner's, passed back untouched.
 * The reader stops after close or fail, and before each frame when reading() is 0 (a
 * hook, or anything run from one, may have closed the owner). */
typedef struct mk_wsread_hooks {
  int (*reading)(void *ctx);
  /* A whole text or binary message; data lies in the bytes fed, in `in` or in msg.data,
   * and the byte after it may be written until the hook returns (see ws.c's push_decoded). */
  void (*message)(void *ctx, int opcode, const uint8_t *data, size_t len);
  void (*ping)(void *ctx, const uint8_t *payload, size_t len); /* payloads <= 125 bytes */
  void (*pong)(void *ctx, const uint8_t *payload, size_t len);
  /* A valid close frame: code 1005 when it had none (1005 is never sent), reason UTF-8. */
  void (*close)(void *ctx, int code, const uint8_t *reason, size_t len);
  /* The server broke the protocol: the close code to answer with, and why. */
  void (*fail)(void *ctx, int code, const char *why);
} mk_wsread_hooks;

void mk_wsread_init(mk_wsread *r, size_t max_message);
void mk_wsread_free(mk_wsread *r); /* every buffer back; a message being assembled is dropped */

/* Handles bytes just read, p[0..n): the frame waiting in `in` is completed first with just
 * the bytes it lacks, the frames after it are parsed where they lie, a frame cut off at the
 * end is copied to `in`. 0, or -1 out of memory. */
int mk_wsread_feed(mk_wsread *r, const mk_wsread_hooks *h, void *ctx, const uint8_t *p, size_t n);

/* The frames in `in` from in_off (bytes that came with the upgrade reply), then its rest
 * moved to the front. */
void mk_wsread_buffered(mk_wsread *r, const mk_wsread_hooks *h, void *ctx);

/* When a read was cut short (cut_short above): the stream lost bytes, so the hooks hear of a
 * failure (1011); returns 1 then, else 0. */
int mk_wsread_lost(mk_wsread *r, const mk_wsread_hooks *h, void *ctx);

/* A drained buffer goes back, a big one holding a small tail shrinks: a burst or one big
 * message must not pin its size for the connection's life. */
void mk_wsread_shrink(mk_buf *b);
void mk_wsread_trim(mk_wsread *r); /* shrinks `in`, and msg.data between messages */

/* Bytes of C buffers the reader holds. */
size_t mk_wsread_memory(const mk_wsread *r);

/* Lua's collector sees the owner as a small userdata: each time its C buffers (the reader's
 * plus `other` bytes of the owner's) grew by another step, a collection step of that size
 * lets an unreachable one go as soon as its size deserves. */
void mk_wsread_account(lua_State *L, mk_wsread *r, size_t other);

/* What one read hands to Lua: messages into queue[tail + 1 ...], everything else as event
 * tables in a list made on the first event (most reads have none), kept at stack index slot. */
typedef struct mk_wsout {
  lua_State *L;
  int queue;  /* stack index of the message queue */
  int slot;   /* stack index the owner keeps for the event list */
  int events; /* slot once the list is made, 0 before */
  lua_Integer tail;
} mk_wsout;

/* events[#events + 1] = { name, text, num }: text only when s is given, num only when not 0. */
void mk_wsout_event(mk_wsout *o, const char *name, const char *s, size_t len, lua_Integer num);

/* queue[tail + 1] = the message as a string. */
void mk_wsout_string(mk_wsout *o, const uint8_t *data, size_t len);

#endif
