#!/usr/bin/env bash
# What `make bench` runs once misskey.core is built for every Lua version.
#
#   bash bench/run.sh             request_bench.lua, batch_bench.lua and json_bench.lua on every
#                                 Lua, then a summary table, then the streaming stage
#                                 (stream_bench.lua against misskey-js; STREAM=0 skips it)
#   bash bench/run.sh --profile   callgrind: instructions per meta call, part by part (Lua 5.4)
#
# Builds the C baselines (build/bench/curl_loop, curl_multi), writes the fixtures and
# an nginx config into a temporary folder, starts nginx in the foreground on a free
# 127.0.0.1 port, and stops it and removes the folder at exit, failure or Ctrl-C included.
# Every stage runs under `timeout`. Prints figures; asserts nothing about speed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LUAS=${LUAS:-"5.4 5.1 luajit"}
CC=${CC:-cc}
NGINX=${NGINX:-/usr/sbin/nginx}
OUT=build/bench
MODE=${1:-all}
# nginx and every client run on one CPU: on a small VM a wake-up across CPUs costs more than a
# request, and where the scheduler puts the two processes changes from run to run (figures
# jump 2-5x). BENCH_CPU=none leaves placement to the scheduler.
BENCH_CPU=${BENCH_CPU:-0}
PIN=()
if [ "$BENCH_CPU" != none ] && command -v taskset >/dev/null; then PIN=(taskset -c "$BENCH_CPU"); fi

# The interpreter of a Lua version.
lua_bin() { if [ "$1" = luajit ]; then echo luajit; else echo "lua$1"; fi; }

if [ ! -x "$NGINX" ]; then echo "bench: $NGINX not found (make bench installs Debian's nginx)" >&2; exit 1; fi

# ---- build the C baselines
mkdir -p "$OUT"
for prog in curl_loop curl_multi; do
  if [ -f "bench/$prog.c" ]; then
    # shellcheck disable=SC2046
    $CC -O2 -std=c99 -Wall -Wextra -o "$OUT/$prog" "bench/$prog.c" $(pkg-config --cflags --libs libcurl)
  fi
done
# The same programs decoding each reply with misskey's C decoder (and curl_multi_decode keeping the
# results, as client:batch does): the ceiling of a client that returns decoded replies.
for prog in curl_loop curl_multi; do
  # shellcheck disable=SC2046
  $CC -O2 -std=c99 -Wall -Wextra -DWITH_DECODE -Isrc -o "$OUT/${prog}_decode" "bench/$prog.c" src/json.c \
    $(pkg-config --cflags --libs libcurl lua5.4)
done

# ---- nginx in a temporary folder, stopped at exit
TMP=$(mktemp -d "${TMPDIR:-/tmp}/misskey-bench.XXXXXX")
NGINX_PID=
CHILD=
STREAM_PIDS=
cleanup() {
  for pid in $STREAM_PIDS; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$CHILD" ]; then
    kill "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  if [ -n "$NGINX_PID" ]; then
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a bounded stage in the background and waits for it: `wait` returns at once on
# Ctrl-C or a TERM, so the EXIT trap stops the stage and nginx without delay.
stage() {
  local limit=$1 rc=0
  shift
  timeout "$limit" "$@" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  return "$rc"
}

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PORT=
for attempt in 1 2 3 4 5; do
  port=$(free_port)
  lua5.4 bench/fixtures.lua "$TMP" "$port" >"$TMP/fixtures.out"
  "${PIN[@]}" "$NGINX" -p "$TMP/" -e "$TMP/error.log" -c "$TMP/nginx.conf" >"$TMP/nginx.out" 2>&1 &
  NGINX_PID=$!
  for _ in $(seq 1 50); do
    if ! kill -0 "$NGINX_PID" 2>/dev/null; then break; fi
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --max-time 1 "http://127.0.0.1:$port/api/meta" || true)
    if [ "$code" = 200 ]; then PORT=$port; break; fi
    sleep 0.1
  done
  [ -n "$PORT" ] && break
  echo "bench: nginx did not start on port $port (attempt $attempt):" >&2
  cat "$TMP/nginx.out" "$TMP/error.log" >&2 2>/dev/null || true
  kill "$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=
done
if [ -z "$PORT" ]; then echo "bench: could not start nginx" >&2; exit 1; fi
URL="http://127.0.0.1:$PORT"
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')

if [ "$MODE" = --profile ]; then
  # Instructions per call (callgrind, deterministic): each part of a meta call run
  # 200 and 1200 times in a fresh Lua 5.4, the difference / 1000; the same for the C loop.
  # Then the C functions of client:request counted the same way (inclusive).
  ir() { grep -o 'refs: *[0-9,]*' "$1" | tr -d ', refs:'; }
  cg() { # name n command...
    local name=$1 n=$2; shift 2
    stage 300 valgrind --tool=callgrind --callgrind-out-file="$TMP/$name.$n.cg" "$@" 2>"$TMP/$name.$n.log" \
      >/dev/null || { echo "callgrind failed: $*" >&2; cat "$TMP/$name.$n.log" >&2; exit 1; }
  }
  echo "callgrind, instructions per call (Lua 5.4, nginx $NGINX_VERSION on $URL)"
  for part in none client own_engine encode transport engine interpret decode cjson; do
    for n in 200 1200; do cg "$part" $n lua5.4 bench/request_bench.lua "$URL" --child part --part "$part" --n $n; done
    label=$part; [ "$part" = none ] && label="none (the loop alone: the noise floor)"
    printf '  %-12s %8d\n' "$label" $(( ($(ir "$TMP/$part.1200.log") - $(ir "$TMP/$part.200.log")) / 1000 ))
  done
  for n in 200 1200; do cg c_loop $n "$OUT/curl_loop" "$URL/api/meta" $n '{"i":"bench0123456789abcdefghijklmnopq"}' ua; done
  printf '  %-12s %8d\n' "C loop" $(( ($(ir "$TMP/c_loop.1200.log") - $(ir "$TMP/c_loop.200.log")) / 1000 ))
  echo
  # Per-call inclusive instructions of each function: (run of 1200 - run of 200) / 1000.
  per_function() { # name lines
    local n
    for n in 200 1200; do
      callgrind_annotate --inclusive=yes --threshold=100 "$TMP/$1.$n.cg" 2>/dev/null \
        | awk '/^ *[0-9,]+ +\( *[0-9.]+%\) +[^ ]/ && / \[/ && !/=>|0x[0-9a-f]+|lua_pcallk|below main|libc_start|_dl_/ {
            v = $1; gsub(",", "", v); sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, ""); print v "\t" $0 }' >"$TMP/$1.$n.fn"
    done
    awk -F '\t' 'NR == FNR { a[$2] = $1; next }
      { d = ($1 - a[$2]) / 1000; if (($2 in a) && d >= 1000 && !seen[$2]++) printf "  %8d  %s\n", d, $2 }' \
      "$TMP/$1.200.fn" "$TMP/$1.1200.fn" | sort -rn | head -"$2" | cut -c1-130
  }
  echo "callgrind, client:request: instructions per call inside these functions (inclusive)"
  per_function client 30
  echo
  echo "callgrind, C loop: instructions per request inside these functions (inclusive)"
  per_function c_loop 12
  exit 0
fi

echo "bench: nginx $NGINX_VERSION on $URL ($(cat "$TMP/fixtures.out")); $(nproc) cores;" \
  "${PIN[*]:-no pinning}"
SUMMARY="$TMP/summary.tsv"
for v in $LUAS; do
  echo
  stage 150 "${PIN[@]}" "$(lua_bin "$v")" bench/request_bench.lua "$URL" --summary "$SUMMARY"
done
if [ -f bench/batch_bench.lua ] && [ -x "$OUT/curl_multi" ]; then
  echo
  for v in $LUAS; do
    stage 150 "${PIN[@]}" "$(lua_bin "$v")" bench/batch_bench.lua "$URL" >"$TMP/batch.out"
    tee -a "$TMP/batch.txt" <"$TMP/batch.out"
  done
fi
for v in $LUAS; do
  echo
  stage 60 "${PIN[@]}" "$(lua_bin "$v")" bench/json_bench.lua
done

echo
echo "summary (req/s, MB/s: more is better; us, ms, MB: less is better; us = wall time per meta call)"
awk -F '\t' '
  BEGIN {
    printf "%-7s %9s %9s %6s %7s %6s | %6s %6s %7s %6s | %7s %5s %7s | %7s %8s\n", "lua", "meta C", "meta Lua",
      "Lua/C", "fetch/C", "ceil/C", "C us", "engine", "request", "decode", "tl Lua", "MB/s", "tl C", "require", "peak RSS"
  }
  {
    printf "%-7s %7s/s %7s/s %6s %7s %6s | %6s %6s %7s %6s | %5s/s %5s %5s/s | %4s ms %5s MB\n", $1, $2, $3, $4, $5,
      $15, $6, $7, $8, $9, $10, $11, $12, $13, $14
  }' "$SUMMARY"
echo "(ceil/C: the C loop that also decodes each reply with misskey's C decoder, against the plain C loop:"
echo " a client that returns decoded replies with no Lua, engine or scheduler at all)"
if [ -s "$TMP/batch.txt" ]; then echo; echo "batch: client:batch against curl_multi (one multi handle)"; cat "$TMP/batch.txt"; fi

# ---- streaming: bench/stream_server.py floods homeTimeline notes (~2.4 KB each) to
# stream_bench.lua on 5.4 and LuaJIT and to misskey-js's Stream (installed from npm into the
# ignored bench/node_modules), then a 1,000,000-event memory run on 5.4. Not pinned: the
# server and the client each get a CPU.
start_stream_server() { # n -> sets SPORT
  /usr/bin/python3 bench/stream_server.py --n "$1" >"$TMP/stream.$1.out" 2>&1 &
  STREAM_PIDS="$STREAM_PIDS $!"
  SPORT=
  for _ in $(seq 1 50); do
    SPORT=$(awk '/^PORT/ { print $2 }' "$TMP/stream.$1.out")
    [ -n "$SPORT" ] && break
    sleep 0.1
  done
  if [ -z "$SPORT" ]; then echo "bench: stream_server.py did not start" >&2; cat "$TMP/stream.$1.out" >&2; exit 1; fi
}
if [ "${STREAM:-1}" != 0 ]; then
  echo
  start_stream_server 100000
  SURL="http://127.0.0.1:$SPORT"
  SSUM="$TMP/stream.tsv"
  for v in 5.4 luajit; do
    stage 60 "$(lua_bin "$v")" bench/stream_bench.lua "$SURL" --summary "$SSUM" || echo "stream_bench.lua failed on $v"
  done
  if command -v node >/dev/null; then
    if [ ! -d bench/node_modules/misskey-js ] || [ ! -d bench/node_modules/ws ]; then
      stage 120 npm install --prefix bench --no-package-lock --no-audit --no-fund >/dev/null || true
    fi
    stage 60 node bench/stream_misskeyjs.mjs "$SURL" --summary "$SSUM" || echo "stream_misskeyjs.mjs failed"
  fi
  echo
  echo "stream: note events/s (more is better)"
  awk -F '\t' '$1 == "misskey-js" { js = $2 } $1 != "misskey-js" { n++; lua[n] = $1; rate[n] = $2; cj[n] = $4 }
    END { for (i = 1; i <= n; i++)
      printf "  %-7s %8d/s   cjson.decode alone %8d/s   Lua/misskey-js %s\n", lua[i], rate[i], cj[i],
        js ? sprintf("%.2f", rate[i] / js) : "-"
      if (js) printf "  %-7s %8d/s\n", "misskey-js", js }' "$SSUM"
  echo
  start_stream_server 1000000
  stage 90 lua5.4 bench/stream_bench.lua "http://127.0.0.1:$SPORT" --memory 1000000 || echo "memory run stopped"
fi
