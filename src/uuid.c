/* UUID v4 from libuuid: uuid_generate_random reads the kernel's random source. */
#include "uuid.h"

#include <uuid/uuid.h>

void mk_uuid4(char out[37]) {
  uuid_t u;
  uuid_generate_random(u);
  uuid_unparse_lower(u, out);
}

int mk_l_uuid(lua_State *L) {
  char s[37];
  mk_uuid4(s);
  lua_pushlstring(L, s, 36);
  return 1;
}
