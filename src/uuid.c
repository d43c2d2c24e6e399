/* UUID v4 from libuuid. libuuid quietly falls back to a weak generator (rand and the clock)
 * when the kernel's random source fails. A MiAuth session id is a credential until it is
 * approved, so the kernel's source is read here first: if it fails, the call fails. Its bytes
 * are also mixed into libuuid's, so the id is as strong as they are even if libuuid fell
 * back at that very moment. */
#include "uuid.h"

#include <errno.h>
#include <string.h>

#include <lauxlib.h>
#include <uuid/uuid.h>

#include "random.h"

int mk_uuid4(char out[37]) {
  unsigned char kernel[sizeof(uuid_t)];
  uuid_t u;
  size_t i;
  if (mk_random(kernel, sizeof kernel) != 0) return -1;
  uuid_generate_random(u);
  for (i = 0; i < sizeof kernel; i++) u[i] ^= kernel[i];
  u[6] = (unsigned char)((u[6] & 0x0F) | 0x40); /* version 4 */
  u[8] = (unsigned char)((u[8] & 0x3F) | 0x80); /* RFC 4122 variant */
  uuid_unparse_lower(u, out);
  return 0;
}

int mk_l_uuid(lua_State *L) {
  char s[37];
  if (mk_uuid4(s) != 0)
    return luaL_error(L, "uuid: the kernel's random source failed (getrandom: %s); refusing a weaker one",
                      strerror(errno));
  lua_pushlstring(L, s, 36);
  return 1;
}
