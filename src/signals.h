/* Signals as a readable fd (signalfd), for a clean stop on SIGTERM/SIGINT. */
#ifndef MK_SIGNAL_H
#define MK_SIGNAL_H

#include <lua.h>

int mk_l_signals(lua_State *L); /* core.signals{ "TERM", "INT", ... } -> Signals */
void mk_signal_open(lua_State *L);

#endif
