/* The JSON decoder and the encoder's fast path of misskey.json (json.c): strict
 * RFC 8259, arrays marked with a metatable, integers on Lua 5.3+. */
#ifndef MK_JSON_H
#define MK_JSON_H

#include <lua.h>

/* core.json_decoder(array_mt) -> decode(text): value, or nil and a message.
 * array_mt becomes the closure's upvalue 1, set on every decoded array; upvalues 2 and 3
 * are its key cache (mk_json_push_key_cache).
 * core.json_decoder(array_mt, "body") -> decode_body(transfer, if_empty): the same for the
 * body of a finished transfer, read in place; an empty body gives if_empty.
 * A third argument, a decoder made here, gives a decoder sharing its marker and key cache. */
int mk_l_json_decoder(lua_State *L);

/* Pushes a new key cache: the two values that are upvalues 2 and 3 of a decoding C
 * function (upvalue 1 the array metatable); without them a decoder works uncached. */
void mk_json_push_key_cache(lua_State *L);

/* If the value at idx is a decoder made by core.json_decoder, pushes mk_json_view_decode
 * as a closure sharing its array metatable and key cache, and returns 1; else returns 0. */
int mk_json_push_view_decoder(lua_State *L, int idx);

/* The decoder itself, for a C function whose upvalue 1 is the array metatable (2 and 3
 * its key cache, if it has one): decodes
 * text (len bytes, a NUL after them) kept alive by the value at stack slot 1; slot 2 and
 * up are cleared (slot 2 becomes the scratch buffer). Pushes the value and returns 1, or
 * nil and "invalid JSON at character N: why" and returns 2. */
int mk_json_decode_text(lua_State *L, const char *text, size_t len);

/* The same as a C function for lua_call, with upvalue 1 the array metatable (2 and 3
 * optionally a key cache):
 * (light userdata text, length, utf8_known) -> value | nil, message. text must have a NUL
 * after its length; a true utf8_known skips the UTF-8 check of a text known to pass it.
 * Only for C callers (ws.c): Lua code must never get it, as a light userdata may point anywhere. */
int mk_json_view_decode(lua_State *L);

/* core.json_encoder(array_mt) -> encode(value): compact JSON text, or nil for anything
 * but plain data (misskey.json's Lua encoder then gives the text or the error). Tables
 * whose metatable is array_mt are arrays; any other metatable makes it return nil. */
int mk_l_json_encoder(lua_State *L);

#endif
