-- Many streams in one process: RSS per idle stream, and events per second in total.
--
--   lua5.4 bench/streams_bench.lua URL [--counts 10,100,1000] [--events K] [--summary FILE]
--                                      [--placement NAME]
--
-- URL is bench/stream_server.py started with `--n 5`: a stream that joins homeTimeline gets
-- 5 note events (~2.4 KB each) and a note {"id":"END"} at once; a channel message `flood`
-- with { n = K } asks the server for K more and another END. Needs build/<v>/misskey/core.so.
-- Prints figures only; asserts nothing about speed. Every wait has a deadline.
--
-- Each count N runs in a fresh interpreter (`--child N`), so one count's memory does not
-- blur the next:
--   base   VmRSS once misskey is loaded and one stream was opened, fed and closed (libcurl,
--          the scheduler and the decoder are warm: what any process with a stream pays once);
--   idle   N streams (client:stream{ backfill = false, reconnect = false }, a homeTimeline
--          channel each, a note handler that counts), each fed its 5 events and END; then a
--          full collection. (VmRSS - base) / N is the RSS per idle stream; the Lua heap and
--          the C buffers of the sockets (ws:_memory(), while reachable) are shown per stream;
--   flood  every channel asks for K events at once: events per second in total until every
--          stream saw its END (every stream must get all of its events);
--   after  the idle figures again after the flood: what a burst leaves behind.
-- A process with 1,000 streams needs more than 1,024 descriptors: bench/run.sh raises the
-- soft limit (`ulimit -n`) to the hard one before it runs this.

local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local root = script_dir .. "/.."
local jit = rawget(_G, "jit")
local LUA = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. LUA .. "/?.so;" .. package.cpath

local common = dofile(script_dir .. "/common.lua")
local opts = common.args(arg, { counts = "10,100,1000", events = 200, placement = "-" },
  "streams_bench.lua URL [--counts 10,100,1000] [--events K] [--summary FILE] [--placement NAME]")
local EVENTS = assert(tonumber(opts.events), "--events")
local INITIAL = 5        -- events the server sends each stream as it joins (stream_server.py --n 5)
local DEADLINE = 120     -- seconds any one phase may take

local function status_kb(field)
  local f = io.open("/proc/self/status", "r")
  if not f then return 0 end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)")) or 0
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

if opts.child then
  local misskey = require "misskey"
  local core = require "misskey.core"
  local loop = require "misskey.loop"
  local n = assert(tonumber(opts.child), "--child")
  local client = misskey.new { host = opts.url, token = "t" }
  local DONE = {} -- the key the last END signals

  -- Streams with a counting note handler; ends[i] counts the END notes of stream i.
  local streams, channels, got, ends, total_ends, want_ends = {}, {}, {}, {}, 0, 0
  local function open(i)
    local st = client:stream { backfill = false, reconnect = false }
    local ch = st:channel("homeTimeline")
    got[i], ends[i] = 0, 0
    ch:on("note", function(note)
      if note.id == "END" then
        ends[i] = ends[i] + 1
        total_ends = total_ends + 1
        if total_ends == want_ends then loop.signal(DONE) end
      else
        got[i] = got[i] + 1
      end
    end)
    st:start()
    streams[i], channels[i] = st, ch
  end
  local function wait_ends(target)
    want_ends = target
    local t0 = core.now()
    while total_ends < target do
      if core.now() - t0 > DEADLINE then
        error(("%d of %d END notes after %d s"):format(total_ends, target, DEADLINE))
      end
      loop.wait_event(DONE, 1)
    end
  end
  -- C buffers of the sockets, through the stream's WebSocket (internals: nil if they moved).
  local function c_buffers()
    local sum = 0
    for i = 1, #streams do
      local ws = rawget(streams[i], "_ws")
      local raw = type(ws) == "table" and rawget(ws, "_ws")
      if not (raw and raw._memory) then return nil end
      sum = sum + raw:_memory()
    end
    return sum
  end
  local function settle()
    collectgarbage("collect")
    collectgarbage("collect")
    return status_kb("VmRSS"), collectgarbage("count"), c_buffers()
  end

  local out
  local ok, err = pcall(loop.run, function()
    -- Warm-up: one stream through the whole cycle, then closed.
    total_ends = 0
    open(1)
    wait_ends(1)
    streams[1]:close()
    streams, channels, got, ends, total_ends = {}, {}, {}, {}, 0
    local base_rss, base_heap = settle()

    for i = 1, n do open(i) end
    wait_ends(n)
    local idle_rss, idle_heap, idle_c = settle()

    local t0 = core.now()
    for i = 1, n do assert(channels[i]:send("flood", { n = EVENTS })) end
    wait_ends(2 * n)
    local secs = core.now() - t0
    for i = 1, n do
      if got[i] ~= INITIAL + EVENTS then
        error(("stream %d got %d events, not %d"):format(i, got[i], INITIAL + EVENTS))
      end
    end
    local after_rss, after_heap, after_c = settle()
    out = ("%d %d %d %d %.0f %.0f %.0f %s %s %d %.6f"):format(n, base_rss, idle_rss, after_rss, base_heap, idle_heap,
      after_heap, idle_c or "-", after_c or "-", n * EVENTS, secs)
    for i = 1, n do streams[i]:close() end
  end)
  if not ok then
    io.stderr:write("streams_bench: ", tostring(err), "\n")
    os.exit(1)
  end
  print(out)
  os.exit(0)
end

-- ---------------------------------------------------------------- the parent: one child per count

local interp = arg[-1] or "lua"
local engine = jit and jit.version or _VERSION
print(("streams, %s: N streams in one process, each fed %d events at connect, then %d each at once"
  .. " (server: %s)"):format(engine, INITIAL, EVENTS, opts.url))
print("       N  RSS/idle stream  heap/stream  C buf/stream | events/s total |  after the flood: RSS/stream"
  .. "  heap/stream  C buf/stream")
for count in opts.counts:gmatch("%d+") do
  local p = assert(io.popen(("%s %s %s --child %s --events %d 2>&1"):format(quote(interp), quote(arg[0]),
    quote(opts.url), count, EVENTS)))
  local line = p:read("*a")
  p:close()
  local v = {}
  for w in line:gmatch("%S+") do v[#v + 1] = w end
  if #v ~= 11 or not tonumber(v[1]) then
    print(("  %6s  failed: %s"):format(count, line:gsub("\n", " ")))
  else
    local n = tonumber(v[1])
    local base, idle, after = tonumber(v[2]), tonumber(v[3]), tonumber(v[4])
    local bh, ih, ah = tonumber(v[5]), tonumber(v[6]), tonumber(v[7])
    local ic, ac = tonumber(v[8]), tonumber(v[9])
    local rate = tonumber(v[10]) / tonumber(v[11])
    local function kb(x) return x and ("%8.1f KiB"):format(x) or "      n/a   " end
    print(("  %6d  %s     %s  %s | %12.0f/s |              %s  %s  %s"):format(n, kb((idle - base) / n),
      kb((ih - bh) / n), kb(ic and ic / 1024 / n), rate, kb((after - base) / n), kb((ah - bh) / n),
      kb(ac and ac / 1024 / n)))
    if opts.summary then
      local f = assert(io.open(opts.summary, "a"))
      f:write(("%s\t%s\t%d\t%.1f\t%.1f\t%.0f\t%.1f\n"):format(opts.placement, LUA, n, (idle - base) / n,
        (after - base) / n, rate, (ih - bh) / n))
      f:close()
    end
  end
end
