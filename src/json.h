/* The JSON decoder and the encoder's fast path of misskey.json (json.c): strict
 * RFC 8259, arrays marked with a metatable, integers on Lua 5.3+. */
#ifndef MK_JSON_H
#define MK_JSON_H

#include <lua.h>

/* core.json_decoder(array_mt) -> decode(text): value, or nil and a message.
 * array_mt becomes the closure's upvalue, set on every decoded array.
 * core.json_decoder(array_mt, "body") -> decode_body(transfer, if_empty): the same for the
 * body of a finished transfer, read in place; an empty body gives if_empty. */
int mk_l_json_decoder(lua_State *L);

/* core.json_encoder(array_mt) -> encode(value): compact JSON text, or nil for anything
 * but plain data (misskey.json's Lua encoder then gives the text or the error). Tables
 * whose metatable is array_mt are arrays; any other metatable makes it return nil. */
int mk_l_json_encoder(lua_State *L);

#endif
