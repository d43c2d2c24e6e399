# misskey: build the C core (misskey.core) for one Lua version, test on all of them.
#
#   make                 build build/5.4/misskey/core.so   (LUA=5.1 or LUA=luajit for the others);
#                        builds only: it installs nothing (a missing library is named, with `make deps`)
#   make test            busted on Lua 5.4, 5.1 and LuaJIT (TAP; CI counts it); runs `make deps` first;
#                        the LuaJIT pass also runs the library inside nginx (spec/nginx_*_spec.lua)
#   make demo            run examples/quickstart.lua (fake server, or MISSKEY_HOST/MISSKEY_TOKEN); `make deps` first
#   make lint            luacheck + the C warnings
#   make asan|valgrind   the suite under AddressSanitizer/UBSan, or valgrind
#   make deps            install missing Debian packages (idempotent)
#   make endpoints       regenerate lua/misskey/endpoints.lua, types/misskey-*.lua, docs/endpoints.md
#   make docs            LDoc of every module into docs/api/ (fails on warnings)
#   make bench           request, stream and JSON benchmarks against local servers (docs/benchmarks.md)
#   make install         bin/misskey, the modules and misskey.core under PREFIX (default /usr/local)

LUA      ?= 5.4
LUAS     := 5.4 5.1 luajit
CC       ?= cc
CFLAGS   ?= -O2 -g
WFLAGS   := -std=c99 -Wall -Wextra -Werror -fPIC -fvisibility=hidden
BUILD    := build/$(LUA)
MODULE   := $(BUILD)/misskey/core.so

ifeq ($(LUA),luajit)
  LUA_PC  := luajit
  LUA_BIN := luajit
else
  LUA_PC  := lua$(LUA)
  LUA_BIN := lua$(LUA)
endif

SOURCES  := $(wildcard src/*.c)
HEADERS  := $(wildcard src/*.h)

# nginx with its Lua module, for the specs that run the library inside nginx (spec/nginx_spec.lua,
# LuaJIT pass). Installing nginx starts Debian's default site on a systemd machine: the specs
# run their own nginx, so that one is stopped and disabled.
NGINX_DEBS := nginx libnginx-mod-http-lua lua-resty-core lua-resty-lrucache
# LuaJIT is OpenResty's branch (Debian's luajit2): nginx's Lua module needs it, and it conflicts with
# Debian's plain luajit, which apt removes when it installs it.
DEBS := lua5.1 lua5.4 luajit2 liblua5.1-0-dev liblua5.4-dev libluajit2-5.1-dev lua-cjson \
        libcurl4-openssl-dev uuid-dev luarocks clang lua-busted lua-check pkg-config python3-aiohttp \
        lua-posix lua-socket lua-luv lua-cqueues lua-copas curl ca-certificates openssl \
        cppcheck valgrind lua-ldoc $(NGINX_DEBS)
DEPS_STAMP := build/.deps

.PHONY: all deps test test-one lint asan valgrind demo rock fuzz clean clean-module

all: $(MODULE)

# Installs only what dpkg does not already list as installed; a second run costs one dpkg-query.
# The stamp is older than a Makefile that lists a new package, so that one is installed too.
deps: $(DEPS_STAMP)
$(DEPS_STAMP): Makefile
	@missing=$$(for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing $$(echo $$missing | tr '\n' ' ')"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  if echo "$$missing" | grep -qx nginx && command -v systemctl >/dev/null && systemctl is-active -q nginx 2>/dev/null; then \
	    $$SUDO systemctl disable --now -q nginx; fi; \
	fi
	@mkdir -p build && touch $@

# A plain build installs nothing: what is missing is named, with the way to get it.
BUILD_PCS := $(LUA_PC) libcurl uuid
$(MODULE): $(SOURCES) $(HEADERS)
	@command -v pkg-config >/dev/null || { echo "make: pkg-config is missing (Debian: make deps)" >&2; exit 1; }
	@for pc in $(BUILD_PCS); do pkg-config --exists $$pc || { \
	  echo "make: the development files of $$pc are missing (Debian: make deps; elsewhere: install $$pc's -dev package)" >&2; \
	  exit 1; }; done
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WFLAGS) $(EXTRA_CFLAGS) \
	  $$(pkg-config --cflags $(LUA_PC) libcurl uuid) -shared -o $@ $(SOURCES) \
	  $$(pkg-config --libs libcurl uuid) $(EXTRA_LDFLAGS)

# poll(2) for specs on Lua versions without Debian's luaposix (5.4).
TESTPOLL := $(BUILD)/testpoll.so
$(TESTPOLL): spec/support/testpoll.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WFLAGS) $$(pkg-config --cflags $(LUA_PC)) -shared -o $@ $<

# One busted run on one Lua version, TAP output (the form .ci/run counts).
BUSTED_FLAGS ?=
test-one: $(MODULE) $(TESTPOLL)
	busted --lua=$(LUA_BIN) -o TAP $(BUSTED_FLAGS)

test: | $(DEPS_STAMP)
	@status=0; for v in $(LUAS); do \
	  echo "# busted on Lua $$v"; \
	  $(MAKE) --no-print-directory test-one LUA=$$v || status=1; \
	done; exit $$status

lint: | $(DEPS_STAMP)
	luacheck -q lua spec examples bench tools bin
	cppcheck --error-exitcode=1 --enable=warning,portability,performance --std=c99 -q \
	  -I src -D__GNUC__ --suppress=missingIncludeSystem src spec/support/testpoll.c
	$(MAKE) --no-print-directory clean-module LUA=$(LUA)
	$(MAKE) --no-print-directory $(MODULE) CFLAGS="-O2 -g -Wshadow -Wconversion -Wno-sign-conversion"

clean-module:
	rm -f $(MODULE)

demo: $(DEPS_STAMP) $(MODULE)
	$(LUA_BIN) -e 'package.path="./lua/?.lua;./lua/?/init.lua;"..package.path; package.cpath="./$(BUILD)/?.so;"..package.cpath' examples/quickstart.lua

# Sanitizer build in its own folder; Lua dlcloses modules at exit, which hides
# leak stacks, so a tiny preload keeps dlclose from unloading anything. UBSan's
# float-cast-overflow (a double out of an integer's range) is not in gcc's "undefined".
ASAN_BUILD := build/asan-$(LUA)
UBSAN    := undefined,float-cast-overflow
asan: $(DEPS_STAMP) $(TESTPOLL)
	@mkdir -p $(ASAN_BUILD)/misskey
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=address,$(UBSAN) -fno-sanitize-recover=$(UBSAN) \
	  $(WFLAGS) $$(pkg-config --cflags $(LUA_PC) libcurl uuid) -shared -o $(ASAN_BUILD)/misskey/core.so \
	  $(SOURCES) $$(pkg-config --libs libcurl uuid)
	$(CC) -shared -fPIC -o $(ASAN_BUILD)/nodlclose.so tools/nodlclose.c
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so) $(CURDIR)/$(ASAN_BUILD)/nodlclose.so" \
	  ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp \
	  $(LUA_BIN) /usr/bin/busted --cpath="./$(ASAN_BUILD)/?.so;./$(BUILD)/?.so" -o TAP $(BUSTED_FLAGS)

valgrind: $(DEPS_STAMP) $(MODULE) $(TESTPOLL)
	valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	  --suppressions=tools/valgrind.supp -q \
	  $(LUA_BIN) /usr/bin/busted -o TAP $(BUSTED_FLAGS)

# libFuzzer on the WebSocket codec and on the upgrade reply check (the whole handshake:
# status line, headers, accept key, frames after the head), time-bounded (CI runs it
# briefly), then on the read side both WebSocket clients share (bytes fed whole and in
# pieces must read the same), on the JSON decoder and encoder and on the webhook listener's request head
# parser (which need a lua_State: linked against liblua5.4 for the fuzzer only).
FUZZ_SECONDS ?= 20
fuzz: | $(DEPS_STAMP)
	@mkdir -p build/fuzz/corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -o build/fuzz/wsframe tools/fuzz_wsframe.c src/wsframe.c src/buf.c
	printf '\201\005Hello' > build/fuzz/corpus/text
	printf '\001\003Hel\211\000\200\002lo' > build/fuzz/corpus/fragments
	build/fuzz/wsframe -max_total_time=$(FUZZ_SECONDS) -max_len=70000 build/fuzz/corpus
	@mkdir -p build/fuzz/handshake_corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -o build/fuzz/wshandshake tools/fuzz_wshandshake.c \
	  src/wshandshake.c src/wsframe.c src/buf.c
	printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\201\005Hello\210\002\003\350' \
	  > build/fuzz/handshake_corpus/open
	printf 'HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, Upgrade\r\nsec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo= \r\nSec-WebSocket-Extensions:\r\n\r\n' \
	  > build/fuzz/handshake_corpus/lists
	printf 'HTTP/1.1 302 Found\r\nLocation: https://h/streaming?i=x\r\n\r\n<a>' > build/fuzz/handshake_corpus/refused
	printf 'HTTP/1.1 101 x\r\nX-A: a\000b\r\n folded\r\nno colon\r\n\r\n' > build/fuzz/handshake_corpus/broken
	build/fuzz/wshandshake -max_total_time=$(FUZZ_SECONDS) -max_len=70000 build/fuzz/handshake_corpus
	@mkdir -p build/fuzz/wsread_corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc $$(pkg-config --cflags lua5.4) -o build/fuzz/wsread \
	  tools/fuzz_wsread.c src/wsread.c src/wsframe.c src/buf.c $$(pkg-config --libs lua5.4)
	printf '\006\001\003Hel\211\002hi\200\002lo\202\000\212\001x\210\002\003\350' > build/fuzz/wsread_corpus/mixed
	build/fuzz/wsread -max_total_time=$(FUZZ_SECONDS) -max_len=70000 build/fuzz/wsread_corpus
	@mkdir -p build/fuzz/json_corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc $$(pkg-config --cflags lua5.4) -o build/fuzz/json \
	  tools/fuzz_json.c src/json.c src/wsframe.c src/buf.c $$(pkg-config --libs lua5.4)
	printf '{"a":[1,-2.5e-3,"x\\u00e9\\ud83d\\ude00",true,null,[]],"b":{}}' > build/fuzz/json_corpus/doc
	printf '[9223372036854775807,1e400,0.1,"\\ud800"]' > build/fuzz/json_corpus/numbers
	printf '[524749.17431640625,-0.0,1e21,5e-324,{"k\\u0001/":[[],{}]}]' > build/fuzz/json_corpus/encode
	printf '{"a":null,"b":[null,-0],"\\udc00\355\240\200":"\300\257\364\220\200\200","a":1}' > build/fuzz/json_corpus/edges
	build/fuzz/json -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build/fuzz/json_corpus
	@mkdir -p build/fuzz/server_corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc $$(pkg-config --cflags lua5.4) -o build/fuzz/server \
	  tools/fuzz_server.c src/buf.c $$(pkg-config --libs lua5.4)
	printf 'POST /hook HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nX-Misskey-Hook-Secret: s\r\nContent-Length: 2\r\n\r\n{}' \
	  > build/fuzz/server_corpus/delivery
	printf 'POST / HTTP/1.1\r\nA: 1\r\na: 2\r\nContent-Length: 5\r\ncontent-length: 5\r\nExpect: 100-continue\r\nTransfer-Encoding: x\r\n\r\n' \
	  > build/fuzz/server_corpus/repeats
	build/fuzz/server -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build/fuzz/server_corpus

# The rock builds and loads with luarocks itself (offline: Debian's lua-cjson is
# invisible to luarocks, hence --deps-mode=none), on 5.1 and 5.4, into a temporary tree;
# the LuaLS annotations land in the rock's directory (README "Editor support").
rock: | $(DEPS_STAMP)
	@set -e; for v in 5.1 5.4; do \
	  tree=$$(mktemp -d); \
	  luarocks --lua-version=$$v --tree=$$tree make --deps-mode=none misskey-scm-1.rockspec >/dev/null; \
	  lua$$v -e "package.path='$$tree/share/lua/$$v/?.lua;$$tree/share/lua/$$v/?/init.lua;'..package.path; \
	    package.cpath='$$tree/lib/lua/$$v/?.so;'..package.cpath; local m = require 'misskey'; \
	    assert(require('misskey.core').engine()); print('luarocks make on Lua $$v: misskey ' .. m._VERSION)"; \
	  types=$$(luarocks --lua-version=$$v --tree=$$tree show --rock-dir misskey 2>/dev/null)/types; \
	  for f in types/*.lua; do cmp -s $$f $$types/$${f#types/} || { echo "rock: $$f is not in $$types"; exit 1; }; done; \
	  echo "luarocks make on Lua $$v: LuaLS annotations in $$types"; \
	  rm -rf $$tree; \
	done; rm -rf misskey

# Benchmarks (docs/benchmarks.md): misskey.core for every Lua, then bench/run.sh (nginx on a
# free 127.0.0.1 port, stopped at the end). Figures only. Installing nginx starts Debian's
# default site on a systemd machine: the bench does not use it, so it is stopped and disabled.
BENCH_DEBS := nginx valgrind lua-curl
.PHONY: bench
bench: | $(DEPS_STAMP)
	@missing=$$(for p in $(BENCH_DEBS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make bench: installing$$(echo $$missing | tr '\n' ' ')"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  if command -v systemctl >/dev/null && systemctl is-active -q nginx 2>/dev/null; then \
	    $$SUDO systemctl disable --now -q nginx; fi; \
	fi
	@for v in $(LUAS); do $(MAKE) --no-print-directory all LUA=$$v || exit 1; done
	LUAS="$(LUAS)" CC="$(CC)" bash bench/run.sh

# The endpoint catalogue, its LuaLS annotations and docs/endpoints.md, from Misskey's
# own data (a tool input only: the build and the tests never read it).
MISSKEY_DATA ?= ../shared/misskey
.PHONY: endpoints docs
endpoints:
	lua5.4 tools/gen-endpoints.lua $(MISSKEY_DATA)/api.json $(MISSKEY_DATA)/endpoints.json

# The reference of every module with LDoc into docs/api/ (config.ld), failing on any
# warning (CI runs it); docs/endpoints.md comes from `make endpoints`.
docs: | $(DEPS_STAMP)
	ldoc -c config.ld --fatalwarnings .

# Installs bin/misskey, the Lua modules and misskey.core for one Lua version under PREFIX
# (LuaJIT shares 5.1's paths). The launcher's shebang names that interpreter.
#   make install LUA=5.4 PREFIX=$$HOME/.local      (DESTDIR for staging)
PREFIX   ?= /usr/local
LUA_ABI  := $(if $(filter luajit,$(LUA)),5.1,$(LUA))
LMOD_DIR := $(DESTDIR)$(PREFIX)/share/lua/$(LUA_ABI)
CMOD_DIR := $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_ABI)
.PHONY: install
install: $(MODULE)
	@set -e; for f in $$(cd lua && find misskey -name '*.lua'); do \
	  install -D -m 644 lua/$$f $(LMOD_DIR)/$$f; done
	install -D -m 755 $(MODULE) $(CMOD_DIR)/misskey/core.so
	@mkdir -p $(DESTDIR)$(PREFIX)/bin
	sed '1s|.*|#!/usr/bin/env $(LUA_BIN)|' bin/misskey > $(DESTDIR)$(PREFIX)/bin/misskey
	chmod 755 $(DESTDIR)$(PREFIX)/bin/misskey

clean:
	rm -rf build
