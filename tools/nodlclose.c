/* Preloaded under AddressSanitizer: Lua dlcloses C modules at exit, which
 * makes LeakSanitizer report leaks without symbols. Keeping them mapped keeps
 * the stacks readable. Test-only; never linked into the module. */
int dlclose(void *handle) {
  (void)handle;
  return 0;
}
