#!/usr/bin/env bash
# What `make bench` runs once misskey.core is built for every Lua version.
#
#   bash bench/run.sh             for each CPU placement (below): request_bench.lua (with the C loop
#                                 and the lua-curl + cjson peer) and batch_bench.lua on every Lua;
#                                 then json_bench.lua; a summary table per placement; then the
#                                 streaming stages: stream_bench.lua against misskey-js, and
#                                 streams_bench.lua (10, 100 and 1,000 streams in one process)
#                                 (STREAM=0 skips them; STREAM=vs runs only the stream against
#                                 misskey-js; REQUESTS=0 skips all before the streaming stages)
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
# CPU placements, each measured in turn (BENCH_PLACEMENTS, default both):
#   split  the clients on CPU 0, nginx and the stream servers on CPU 1: the client's CPU time is
#          its own, and every request pays a wake-up across CPUs (on a small VM more than the
#          request itself);
#   one    everything on CPU 0: both sides pay for every request in CPU time, no cross-CPU wake-up.
# Pinned, figures repeat; left to the scheduler they jump 2-5x. BENCH_CPU=none (or no taskset)
# measures once, unpinned.
BENCH_PLACEMENTS=${BENCH_PLACEMENTS:-"split one"}
STREAM_ROUNDS=${STREAM_ROUNDS:-5} # interleaved rounds of the stream against misskey-js, per placement
# How bench/stream_server.py paces its frames: full (default: the socket kept full, so the
# figures are the client's) or drain (sessions 5-6: the client waits on the server; comparison).
STREAM_PACE=${STREAM_PACE:-full}
if [ "${BENCH_CPU:-}" = none ] || ! command -v taskset >/dev/null || [ "$(nproc)" -lt 2 ]; then
  BENCH_PLACEMENTS=none
fi
PIN=()        # the clients' pinning, set by place()
SERVER_CPU=   # the servers' CPU, set by place()
# place NAME: pins the clients (PIN) and moves nginx (when running) for this placement.
place() {
  case "$1" in
    split) PIN=(taskset -c 0); SERVER_CPU=1 ;;
    one) PIN=(taskset -c 0); SERVER_CPU=0 ;;
    *) PIN=(); SERVER_CPU= ;;
  esac
  if [ -n "$SERVER_CPU" ] && [ -n "${NGINX_PID:-}" ]; then taskset -pc "$SERVER_CPU" "$NGINX_PID" >/dev/null; fi
}
server_pin() { if [ -n "$SERVER_CPU" ]; then echo taskset -c "$SERVER_CPU"; fi; }

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
  $CC -O2 -std=c99 -Wall -Wextra -DWITH_DECODE -Isrc -o "$OUT/${prog}_decode" "bench/$prog.c" src/json.c src/wsframe.c src/buf.c \
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
  place "${BENCH_PLACEMENTS%% *}"
  # shellcheck disable=SC2046
  $(server_pin) "$NGINX" -p "$TMP/" -e "$TMP/error.log" -c "$TMP/nginx.conf" >"$TMP/nginx.out" 2>&1 &
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
  "placements: $BENCH_PLACEMENTS"
if [ "${REQUESTS:-1}" != 0 ]; then # REQUESTS=0: the streaming stages only
  SUMMARY="$TMP/summary.tsv"
  for pl in $BENCH_PLACEMENTS; do
    place "$pl"
    echo
    echo "==== placement $pl: clients ${PIN[*]:-unpinned}, nginx ${SERVER_CPU:+on CPU $SERVER_CPU}"
    for v in $LUAS; do
      echo
      stage 200 "${PIN[@]}" "$(lua_bin "$v")" bench/request_bench.lua "$URL" --summary "$SUMMARY" --placement "$pl"
    done
    if [ -f bench/batch_bench.lua ] && [ -x "$OUT/curl_multi" ]; then
      echo
      for v in $LUAS; do
        stage 150 "${PIN[@]}" "$(lua_bin "$v")" bench/batch_bench.lua "$URL" >"$TMP/batch.out"
        sed "s/^/$pl /" "$TMP/batch.out" | tee -a "$TMP/batch.txt"
      done
    fi
  done
  place "${BENCH_PLACEMENTS%% *}"
  for v in $LUAS; do
    echo
    stage 60 "${PIN[@]}" "$(lua_bin "$v")" bench/json_bench.lua
  done

  echo
  echo "summary (req/s: more is better; CPU us per meta call of the client process, ms, MiB: less is better;"
  echo "         peer = Debian's lua-curl + lua-cjson loop on LuaJIT, bench/luacurl_loop.lua; medians)"
  awk -F '\t' '
    BEGIN {
      printf "%-6s %-7s %9s %9s %9s | %6s %9s %7s %6s | %6s %6s %6s | %6s %7s %6s | %7s %8s\n", "place", "lua",
        "meta C", "peer", "ours", "ours/C", "ours/peer", "fetch/C", "ceil/C", "CPU C", "peer", "ours",
        "tl ours", "tl peer", "tl C", "require", "RSS 20k"
    }
    {
      printf "%-6s %-7s %7s/s %7s/s %7s/s | %6s %9s %7s %6s | %6s %6s %6s | %4s/s %5s/s %4s/s | %4s ms %5s MiB\n",
        $19, $1, $2, $16, $3, $4, $17, $5, $15, $20, $21, $22, $10, $18, $12, $13, $14
    }' "$SUMMARY"
  echo "(ceil/C: the C loop that also decodes each reply with misskey's C decoder, against the plain C loop:"
  echo " a client that returns decoded replies with no Lua, engine or scheduler at all)"
  if [ -s "$TMP/batch.txt" ]; then echo; echo "batch: client:batch against curl_multi (one multi handle)"; cat "$TMP/batch.txt"; fi
fi

# ---- streaming: bench/stream_server.py floods homeTimeline notes (~2.4 KB each) to
# stream_bench.lua on 5.4 and LuaJIT and to misskey-js's Stream (installed from npm into the
# ignored bench/node_modules), in each placement (the server where nginx was); then a
# 1,000,000-event memory run on 5.4; then streams_bench.lua: 10, 100 and 1,000 streams in one
# process against a server that feeds each 5 events as it joins, then 200 at once.
start_stream_server() { # n -> sets SPORT
  # shellcheck disable=SC2046
  $(server_pin) /usr/bin/python3 bench/stream_server.py --n "$1" --pace "$STREAM_PACE" >"$TMP/stream.$1.out" 2>&1 &
  STREAM_PIDS="$STREAM_PIDS $!"
  SPORT=
  for _ in $(seq 1 50); do
    SPORT=$(awk '/^PORT/ { print $2 }' "$TMP/stream.$1.out")
    [ -n "$SPORT" ] && break
    sleep 0.1
  done
  if [ -z "$SPORT" ]; then echo "bench: stream_server.py did not start" >&2; cat "$TMP/stream.$1.out" >&2; exit 1; fi
}
# server_busy ENGINE OUT FILE COUNT: once the server has logged more than COUNT floods (it
# logs one when the client closes, which may come just after the client exits; waits up to
# 2 s), appends "ENGINE<TAB>busy %" of the last one (the measured run) to FILE.
server_busy() {
  for _ in $(seq 1 40); do
    [ "$(grep -c '^FLOOD' "$2" || true)" -gt "$4" ] && break
    sleep 0.05
  done
  awk -v e="$1" '/^FLOOD/ { split($3, w, "="); split($4, c, "="); last = 100 * c[2] / w[2] }
    END { if (last != "") printf "%s\t%.1f\n", e, last }' "$2" >>"$3"
}
floods() { grep -c '^FLOOD' "$1" || true; }
stop_stream_servers() {
  for pid in $STREAM_PIDS; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  STREAM_PIDS=
}
if [ "${STREAM:-1}" != 0 ]; then
  if command -v node >/dev/null && { [ ! -d bench/node_modules/misskey-js ] || [ ! -d bench/node_modules/ws ]; }; then
    stage 120 npm install --prefix bench --no-package-lock --no-audit --no-fund >/dev/null || true
  fi
  for pl in $BENCH_PLACEMENTS; do
    place "$pl"
    echo
    echo "==== streaming, placement $pl: clients ${PIN[*]:-unpinned}, server ${SERVER_CPU:+on CPU $SERVER_CPU}"
    start_stream_server 100000
    SURL="http://127.0.0.1:$SPORT"
    SSUM="$TMP/stream.$pl.tsv"
    for v in 5.4 luajit; do # the parts of an event, once
      stage 60 "${PIN[@]}" "$(lua_bin "$v")" bench/stream_bench.lua "$SURL" || echo "stream_bench.lua failed on $v"
    done
    # Then STREAM_ROUNDS interleaved rounds (5.4, LuaJIT, misskey-js), so that a slow spell hits all.
    SOUT="$TMP/stream.100000.out"
    SBUSY="$TMP/stream.$pl.server.tsv"
    for _ in $(seq "$STREAM_ROUNDS"); do
      for v in 5.4 luajit; do
        f=$(floods "$SOUT")
        stage 60 "${PIN[@]}" "$(lua_bin "$v")" bench/stream_bench.lua "$SURL" --quick 1 --summary "$SSUM" >/dev/null ||
          echo "stream_bench.lua --quick failed on $v"
        server_busy "$v" "$SOUT" "$SBUSY" "$f"
      done
      if [ -d bench/node_modules/misskey-js ]; then
        f=$(floods "$SOUT")
        stage 60 "${PIN[@]}" node bench/stream_misskeyjs.mjs "$SURL" --summary "$SSUM" >/dev/null ||
          echo "stream_misskeyjs.mjs failed"
        server_busy misskey-js "$SOUT" "$SBUSY" "$f"
      fi
    done
    stop_stream_servers
  done
  echo
  echo "stream: note events/s (more is better) and client CPU per event (less is better), medians of $STREAM_ROUNDS rounds;"
  echo "  busy = CPU time / wall time over the run, of the client and of the server (--pace $STREAM_PACE);"
  echo "  waiting for a CPU = the client runnable while other jobs held its CPU (/proc/self/schedstat)"
  for pl in $BENCH_PLACEMENTS; do
    [ -s "$TMP/stream.$pl.tsv" ] || continue
    awk -F '\t' -v pl="$pl" -v sbusy="$TMP/stream.$pl.server.tsv" '
      BEGIN { while ((getline line < sbusy) > 0) { split(line, f, "\t"); srv[f[1]] = srv[f[1]] " " f[2] } }
      { busy[$1] = busy[$1] " " ($2 * $3 / 1e4); rq[$1] = rq[$1] " " ($4 == "" ? -1 : $4) }
      function median(list,   a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      { if (!($1 in rates)) order[++k] = $1; rates[$1] = rates[$1] " " $2; cpus[$1] = cpus[$1] " " $3 }
      END {
        if ("misskey-js" in rates) { js = median(rates["misskey-js"]); jscpu = median(cpus["misskey-js"]) }
        for (i = 1; i <= k; i++) {
          e = order[i]; r = median(rates[e]); c = median(cpus[e])
          printf "  %-6s %-10s %8d/s %7.2f us CPU/event  busy: client %3.0f%% (+%2.0f%% waiting for a CPU), server %3.0f%%",
            pl, e, r, c, median(busy[e]), median(rq[e]), (e in srv) ? median(srv[e]) : -1
          if (js && e != "misskey-js") printf "   ours/misskey-js: %.2f by events/s, %.2f by CPU", r / js, jscpu / c
          printf "\n"
        }
      }' "$TMP/stream.$pl.tsv"
  done
  if [ "${STREAM:-1}" != vs ]; then # STREAM=vs: the stream against misskey-js only
    place "${BENCH_PLACEMENTS%% *}"
    echo
    start_stream_server 1000000
    stage 90 "${PIN[@]}" lua5.4 bench/stream_bench.lua "http://127.0.0.1:$SPORT" --memory 1000000 || echo "memory run stopped"
    stop_stream_servers

    # 1,000 sockets in one process need more descriptors than the usual soft limit of 1,024.
    if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt 4096 ]; then
      ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || echo "bench: ulimit -n is $(ulimit -Sn): 1,000 streams may fail"
    fi
    STSUM="$TMP/streams.tsv"
    for pl in $BENCH_PLACEMENTS; do
      place "$pl"
      echo
      start_stream_server 5
      for v in 5.4 luajit; do
        stage 300 "${PIN[@]}" "$(lua_bin "$v")" bench/streams_bench.lua "http://127.0.0.1:$SPORT" --summary "$STSUM" \
          --placement "$pl" || echo "streams_bench.lua failed on $v"
      done
      stop_stream_servers
    done
    echo
    echo "many streams in one process: RSS per idle stream (after connecting; after a burst) and events/s in total"
    awk -F '\t' '{ printf "  %-6s %-7s %5d streams  %6.1f KiB/stream idle  %6.1f KiB/stream after the burst  %8d events/s  (Lua heap %.1f KiB/stream)\n",
      $1, $2, $3, $4, $5, $6, $7 }' "$STSUM"
  fi
fi
