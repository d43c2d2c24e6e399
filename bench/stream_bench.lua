-- Streaming throughput: note events decoded and dispatched per second.
--
--   lua5.4 bench/stream_bench.lua URL [--n N]
--   lua5.4 bench/stream_bench.lua URL --memory N
--   lua5.4 bench/stream_bench.lua URL --quick K [--summary FILE]
--
-- URL is bench/stream_server.py (http://127.0.0.1:PORT), which sends every client that
-- joins homeTimeline its N note events (~2.4 KB each; N is the server's --n) and a last
-- note {"id":"END"}. Needs build/<v>/misskey/core.so (`make`, `make LUA=luajit`).
-- Prints figures only; asserts nothing about speed.
--
--   stream   misskey.new{ host = URL, token = "t" }:stream{ backfill = false } with a
--            homeTimeline handler counting notes (it reads note.id); the stream is closed
--            on END. Events/s and MB/s of frame payload, from stream:run() to END
--            (the connect included: ~1 ms).
--   parts    the same frames taken apart, each part timed alone (core.now):
--              receive   the WebSocket alone (transport.websocket + ws:receive: libcurl,
--                        C framing, the message queue), no decoding
--              decode    misskey.json.decode of a note frame
--              cjson     cjson.decode of the same frame, for comparison
--              spawn_now loop.spawn_now of a no-op handler per event: what the stream's
--                        fire() costs per handler that returns without waiting
--              inline    ws:receive_value (each frame decoded by the socket, as the stream
--                        reads them), one loop: the stream without its dispatch
--            and dispatch = stream - inline: what the stream adds per event (routing the
--            frame to its channel, the id ring, fire and spawn_now).
--   --memory N  the stream alone over N events (the server must send N): Lua heap
--            (collectgarbage "count") and VmRSS every 100,000 frames read, and once the
--            handlers ran; stops once the heap passes --max-heap-mb (2048).
--
--   --quick K  the stream alone, K times (after a warm-up on LuaJIT): one line of events/s and
--            CPU time per event (os.clock: the process's user + system time, which a busy
--            machine disturbs far less than wall time) per run, then the medians; for
--            interleaved rounds (bench/run.sh) and comparisons of two trees.
--
-- --summary FILE (with --quick) appends "lua events/s cpu-us/event runqueue-%" (tab-separated)
-- per run for bench/run.sh; runqueue-% is the share of the run the process was runnable but
-- waiting for a CPU (/proc/self/schedstat; -1 without it): time other jobs took.

local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local root = script_dir .. "/.."
local jit = rawget(_G, "jit")
local LUA = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. LUA .. "/?.so;" .. package.cpath

local misskey = require "misskey"
local core = require "misskey.core"
local json = require "misskey.json"
local loop = require "misskey.loop"
local cjson = require "cjson"

local common = dofile(script_dir .. "/common.lua")
local opts = common.args(arg, {}, "stream_bench.lua URL [--n N] | URL --memory N | URL --quick K [--summary FILE]")
opts.memory = opts.memory and assert(tonumber(opts.memory), "--memory")
opts.quick = opts.quick and assert(tonumber(opts.quick), "--quick")

local SAMPLE = 1024 -- frames kept for the decode parts (64 variants on the server)

local function vmrss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return 0 end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local function fail(what, msg)
  io.stderr:write("stream_bench: ", what, ": ", tostring(msg), "\n")
  os.exit(1)
end

-- Nanoseconds this process (its main thread) has spent runnable but waiting for a CPU
-- (the second field of /proc/self/schedstat), or nil where there is none: the share of a run
-- that the machine's other jobs took, as opposed to waiting for the server.
local function runqueue_ns()
  local f = io.open("/proc/self/schedstat", "r")
  if not f then return nil end
  local s = f:read("*l")
  f:close()
  return tonumber(s and s:match("^%d+%s+(%d+)"))
end

-- The stream: counts notes until END; `every`/`report` for the memory mode.
local function run_stream(every, report)
  local client = misskey.new { host = opts.url, token = "t" }
  local stream = client:stream { backfill = false, reconnect = false }
  local count, t_end = 0, nil
  stream:channel("homeTimeline"):on("note", function(note)
    local id = note.id
    if id == "END" then
      t_end = core.now()
      stream:close()
      return
    end
    count = count + 1
    if every and count % every == 0 then report(count) end
  end)
  local t0, c0, q0 = core.now(), os.clock(), runqueue_ns()
  local ok, msg = stream:run()
  local cpu = os.clock() - c0
  local q1 = runqueue_ns()
  local queued = q0 and q1 and (q1 - q0) / 1e9
  if not ok then fail("stream", msg) end
  if not t_end then fail("stream", "closed before END after " .. count .. " notes") end
  return count, t_end - t0, cpu, queued
end

-- The WebSocket alone: receive every frame, keep a sample and the byte count; `decoded`:
-- each frame as its value (ws:receive_value), no sample.
local function run_receive(decoded)
  local transport = require("misskey.transport.curl").new()
  local url = opts.url:gsub("^http", "ws") .. "/streaming?i=t"
  local sample, bytes, count = {}, 0, 0
  local elapsed
  loop.run(function()
    local ws, msg = transport.websocket { url = url, timeout = 30 }
    if not ws then fail("websocket", msg) end
    ws:send('{"type":"connect","body":{"channel":"homeTimeline","id":"1","pong":true}}')
    local t0
    while decoded do -- as the stream reads: each frame decoded by the socket
      local dm, m = ws:receive_value(30)
      if dm == nil then fail("receive", m) end
      local ch = type(dm) == "table" and dm.type == "channel" and dm.body
      if ch and ch.type == "note" then
        if ch.body.id == "END" then break end
        if count == 0 then t0 = core.now() end
        count = count + 1
      end
    end
    while not decoded do
      local text, m = ws:receive(30)
      if not text then fail("receive", m) end
      if #text < 256 then -- the short ones: "connected" and the END note (every note is ~2.4 KB)
        if text:find('"body":{"id":"END"}', 1, true) then break end
      else
        if count == 0 then t0 = core.now() end
        count = count + 1
        bytes = bytes + #text
        if count <= SAMPLE then sample[count] = text end
      end
    end
    elapsed = core.now() - t0
    ws:close(1000)
  end)
  return count, bytes, elapsed, sample
end

-- Seconds for n calls of decode over the sample, cycling.
local function time_decode(decode, sample, n)
  local k = #sample
  local t0 = core.now()
  for i = 1, n do
    local msg = decode(sample[(i - 1) % k + 1])
    if msg.body.body.id == nil then error("no id") end
  end
  return core.now() - t0
end

local function time_spawn_now(n)
  local seen = 0
  local function handler(note) if note then seen = seen + 1 end end
  local t0 = core.now()
  loop.run(function()
    for i = 1, n do loop.spawn_now(handler, i) end
  end)
  assert(seen == n)
  return core.now() - t0
end

local engine = LUA == "luajit" and jit.version or _VERSION
if opts.memory then
  print(("stream memory, %s: %d events"):format(engine, opts.memory))
  -- Frames are counted where the stream's reader takes them decoded from its socket
  -- (ws:receive_value, wrapped on each socket websocket.connect makes), handler calls where
  -- they run: the two differ when events pile up before dispatch.
  local limit = (tonumber(opts["max-heap-mb"]) or 2048) * 1024
  print("  read = frames decoded by the stream's reader, handled = handler calls")
  print("      read   handled    heap KB   VmRSS KB")
  collectgarbage("collect")
  local read, handled = 0, 0
  local function row()
    print(("%10d %9d %10.0f %10d"):format(read, handled, collectgarbage("count"), vmrss_kb()))
    io.stdout:flush()
  end
  row()
  local function note_read()
    read = read + 1
    if read % 100000 == 0 then
      row()
      if collectgarbage("count") > limit then
        print(("  stopped: the Lua heap passed %d MB after %d frames (%d handled): not flat"):format(
          math.floor(limit / 1024), read, handled))
        os.exit(0)
      end
    end
  end
  local websocket = require "misskey.transport.websocket"
  local connect = websocket.connect
  websocket.connect = function(...)
    local ws, msg, err = connect(...)
    if ws then
      local receive_value = ws.receive_value
      ws.receive_value = function(self, timeout)
        local value, why, e = receive_value(self, timeout)
        if value ~= nil then note_read() end
        return value, why, e
      end
    end
    return ws, msg, err
  end
  local count, secs = run_stream(100000, function(c)
    handled = c
    if c >= read - 1 then row() end
  end)
  row()
  print(("  %d events in %.1f s (%.0f/s)"):format(count, secs, count / secs))
  os.exit(0)
end

if opts.quick then
  if LUA == "luajit" then run_stream() end
  local rates, cpus = {}, {}
  for i = 1, opts.quick do
    local count, secs, cpu, queued = run_stream()
    rates[i], cpus[i] = count / secs, cpu / count * 1e6
    local waited = queued and queued / secs * 100 or -1
    print(("stream, %s: %9.0f events/s  %6.2f us CPU/event  %3.0f%% of the time waiting for a CPU"):format(engine,
      rates[i], cpus[i], waited))
    if opts.summary then
      local f = assert(io.open(opts.summary, "a"))
      f:write(("%s\t%.0f\t%.2f\t%.1f\n"):format(LUA, rates[i], cpus[i], waited))
      f:close()
    end
    collectgarbage("collect")
  end
  print(("stream, %s: median %9.0f events/s, %.2f us CPU/event over %d runs"):format(engine,
    common.median(rates), common.median(cpus), #rates))
  os.exit(0)
end

-- On LuaJIT a warm-up stream (traces), not reported; then the measured one.
local count, secs = run_stream()
if LUA == "luajit" then count, secs = run_stream() end
collectgarbage("collect")
local rcount, bytes, rsecs, sample = run_receive()
local icount, _, isecs = run_receive(true)
if rcount ~= count then fail("receive", ("got %d frames, the stream %d"):format(rcount, count)) end
local n = tonumber(opts.n) or count
local t_cjson = time_decode(cjson.decode, sample, n)
local t_json = time_decode(json.decode, sample, n)
local t_spawn = time_spawn_now(n)
local rate = count / secs
local mb = bytes / count * rate / 1e6

print(("stream, %s: %d note events, %.0f bytes each"):format(engine, count, bytes / count))
print(("  stream      %9.0f events/s  %6.1f MB/s  (%.2f s)"):format(rate, mb, secs))
print(("  cjson       %9.0f decodes/s %6.1f MB/s  (the floor: cjson.decode alone)"):format(n / t_cjson,
  bytes / count * n / t_cjson / 1e6))
print(("  stream/cjson %8.2f"):format(rate / (n / t_cjson)))
local us = function(t, k) return t / k * 1e6 end
local per = us(secs, count)
local r, d, c, s = us(rsecs, rcount), us(t_json, n), us(t_cjson, n), us(t_spawn, n)
local inl = us(isecs, icount)
print(("  inline      %9.0f events/s  (ws:receive_value: each frame decoded by the socket, one loop)"):format(
  icount / isecs))
print(("  per event   %6.2f us: inline %.2f (receive %.2f, json.decode %.2f alone; cjson %.2f), dispatch %.2f"
  .. " (spawn_now alone %.2f)"):format(per, inl, r, d, c, per - inl, s))

