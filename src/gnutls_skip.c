/* GnuTLS's implicit initialisation at load, skipped, through the hook GnuTLS provides for
 * this: a definition of _gnutls_global_init_skip returning 1 (GNUTLS_SKIP_GLOBAL_INIT in
 * gnutls.h). libcurl speaks TLS through OpenSSL here; GnuTLS is in the process only because
 * two of libcurl's own dependencies link it (librtmp for rtmp://, libldap for ldap://), yet
 * its constructor set it up anyway: ~640 KiB of its pages and ~100 KiB of heap made
 * resident in every process that loads misskey.core, which never calls it. Both libraries
 * call gnutls_global_init() before they use GnuTLS, as GnuTLS asks of a program that skips
 * the implicit step (so does a libcurl built on GnuTLS).
 *
 * GnuTLS's constructor calls its weak, exported _gnutls_global_init_skip; the dynamic linker
 * binds that call to the first definition in GnuTLS's lookup scope, where misskey.core (the
 * object whose loading brings GnuTLS in) comes before GnuTLS itself. When GnuTLS was in the
 * process before misskey.core, its constructor has run already and this changes nothing.
 * What it changes for others: code loaded later that uses GnuTLS without ever calling
 * gnutls_global_init() gets GNUTLS_E_LIB_IN_ERROR_STATE from it (spec/speed_memory_spec.lua). */
#include "compat.h"

MK_EXPORT int _gnutls_global_init_skip(void);

MK_EXPORT int _gnutls_global_init_skip(void) {
  return 1;
}
