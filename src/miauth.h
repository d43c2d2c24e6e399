/* MiAuth: percent-encoding, the authorisation URL, permission checks. */
#ifndef MK_MIAUTH_H
#define MK_MIAUTH_H

#include <lua.h>

/* core.urlencode(s) -> s with every byte but RFC 3986's unreserved as %XX */
int mk_l_urlencode(lua_State *L);
/* core.check_permissions(names, allowed [, strict = true]) -> names without duplicates;
 * raises listing the names not in `allowed` (strict) or not shaped like a permission. */
int mk_l_check_permissions(lua_State *L);
/* core.miauth_url{ base, session, name, icon, callback, permission, allowed, strict } -> url */
int mk_l_miauth_url(lua_State *L);

#endif
