-- Request throughput of misskey's client against a raw libcurl C loop.
--
--   lua5.4 bench/request_bench.lua URL [--n N] [--runs R] [--summary FILE] [--placement NAME] [--loop PATH]
--
-- URL is the bench nginx that bench/run.sh starts (`make bench`), http://127.0.0.1:PORT.
-- Needs build/<v>/misskey/core.so and build/bench/curl_loop (bench/run.sh builds them).
-- Prints figures only; asserts nothing about speed.
--
--   (a) meta: N sequential keep-alive `client:request("meta")` calls against the C loop
--       (N POSTs on one reused easy handle) and against `transport.request` (the same
--       fetch without JSON); a warm-up, then R interleaved runs (C, Lua, fetch, C, ...);
--       medians and the ratios to C. With build/bench/curl_loop_decode (the C loop that
--       also decodes each reply with misskey's C decoder) in the same runs: the ceiling
--       of any client that returns decoded replies, as a ratio to the C loop. With the
--       peer (bench/luacurl_loop.lua on LuaJIT: Debian's lua-curl + lua-cjson, the loop a
--       user writes by hand) in the same runs: ours/peer next to ours/C.
--       Then one call taken apart, each part timed alone.
--   (b) timeline: fetch+decode of a 100-note, ~230 KB timeline through client:request,
--       per second and MB/s; the same fetch without decoding; the C loop's fetch rate; the
--       peer's fetch + cjson.decode.
--   (c) `require "misskey"` CPU time (median over fresh interpreters) and the peak RSS
--       (VmHWM) of a fresh script doing 20,000 sequential meta calls, then 50 timeline fetches.
--
-- Modes run in fresh interpreters: `--child require`, `--child require_core`, `--child rss`,
-- and `--child part --part NAME --n N` (N calls of one part of the breakdown; `bash
-- bench/run.sh --profile` counts their instructions under callgrind).

local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local root = script_dir .. "/.."
local jit = rawget(_G, "jit")
local LUA = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. LUA .. "/?.so;" .. package.cpath

local TOKEN = "bench0123456789abcdefghijklmnopq"

-- ---------------------------------------------------------------- arguments

local common = dofile(script_dir .. "/common.lua")
local opts = common.args(arg, {
  loop = root .. "/build/bench/curl_loop", loop_decode = root .. "/build/bench/curl_loop_decode",
  peer = root .. "/bench/luacurl_loop.lua", peer_lua = "luajit", placement = "-",
  n = 5000, runs = 5, tl_n = 200, max_seconds = 10 },
  "request_bench.lua URL [--n N] [--runs R] [--summary FILE] [--placement NAME] [--loop PATH]"
  .. " [--loop_decode PATH] [--peer PATH] [--peer_lua INTERPRETER]")
for _, k in ipairs { "n", "runs", "tl_n", "max_seconds" } do opts[k] = assert(tonumber(opts[k]), k) end

local function read_status(field)
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

-- ---------------------------------------------------------------- children: start-up, memory

if opts.child == "require" then
  -- CPU time of `require "misskey"`, then of the first client.
  local t0 = os.clock()
  local misskey = require "misskey"
  local t1 = os.clock()
  misskey.new { host = opts.url, token = TOKEN }
  local t2 = os.clock()
  print(("%.6f %.6f"):format(t1 - t0, t2 - t1))
  os.exit(0)
elseif opts.child == "require_core" then
  -- The C core alone: dlopen of core.so, libcurl and its libraries, curl_global_init.
  local t0 = os.clock()
  require "misskey.core"
  print(("%.6f"):format(os.clock() - t0))
  os.exit(0)
elseif opts.child == "rss" then
  local base = read_status("VmHWM")
  local misskey = require "misskey"
  local client = misskey.new { host = opts.url, token = TOKEN }
  local loaded = read_status("VmHWM")
  for _ = 1, 20000 do assert(client:request("meta")) end
  local calls = read_status("VmHWM")
  for _ = 1, 50 do assert(client:request("notes/timeline", { limit = 100 })) end
  print(("%d %d %d %d %d"):format(base or 0, loaded or 0, calls or 0, read_status("VmHWM") or 0,
    read_status("VmRSS") or 0))
  os.exit(0)
end

-- ---------------------------------------------------------------- set-up

local misskey = require "misskey"
local json = require "misskey.json"
local core = require "misskey.core"
local cjson = require "cjson"

local client = misskey.new { host = opts.url, token = TOKEN }
local UA = rawget(client, "_user_agent") or ("lua-misskey/%s libcurl/%s"):format(misskey._VERSION,
  (core.curl_version()))
local META_BODY = json.encode({ i = TOKEN }, "params")
local TL_PARAMS = { limit = 100 }
local TL_BODY = json.encode({ limit = 100, i = TOKEN }, "params")
local MAX_SIZE = rawget(client, "_max_size") or 64 * 1024 * 1024

local function req_for(path, body)
  return function()
    return {
      method = "POST", url = opts.url .. path,
      headers = { ["Content-Type"] = "application/json", Accept = "application/json" },
      body = body, user_agent = UA, max_size = MAX_SIZE,
    }
  end
end
local meta_req, tl_req = req_for("/api/meta", META_BODY), req_for("/api/notes/timeline", TL_BODY)

-- The client's transport (an internal: the bench says n/a if it moved).
local transport = type(rawget(client, "_transport")) == "table" and client._transport or nil
local interpret = type(client._interpret) == "function" and client._interpret or nil
-- A private engine: the C core and libcurl without the scheduler.
local private = core.engine()
local own_client = misskey.new { host = opts.url, token = TOKEN, engine = core.engine() }

local meta_reply = assert(client:request("meta"))
assert(type(meta_reply) == "table" and meta_reply.version, "unexpected meta reply")
local meta_res = transport and assert(transport.request(meta_req()))
local meta_text = meta_res and meta_res.body or json.encode(meta_reply)

-- One call of each part of client:request("meta"); each returns a true value.
local connects = 0
local PARTS = {
  client = function() return client:request("meta") end,
  own_engine = function() return own_client:request("meta") end,
  encode = function()
    local body = {}
    for k, v in pairs({}) do body[k] = v end
    body.i = TOKEN
    return json.encode(body, "params")
  end,
  transport = transport and function() return transport.request(meta_req()) end,
  engine = function()
    local tr = private:request(meta_req())
    while not tr:done() do private:step(1) end
    connects = connects + tr:info().connects
    return tr:result()
  end,
  interpret = interpret and meta_res and function() return interpret(client, "meta", meta_res) end,
  decode = function() return json.decode(meta_text) end,
  cjson = function() return cjson.decode(meta_text) end,
  none = function() return true end,
}

if opts.child == "part" then
  local f = assert(PARTS[opts.part], "unknown part")
  f()
  for _ = 1, opts.n do assert(f()) end
  os.exit(0)
end

-- ---------------------------------------------------------------- helpers

local now = core.now

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local median = common.median

local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

local function list(t)
  local out = {}
  for i, v in ipairs(t) do out[i] = ("%.0f"):format(v) end
  return table.concat(out, " ")
end

-- The C loop (or `program`, a shell command): `count` POSTs of `body` to `path`; requests per
-- second and its figures.
local function run_c(path, count, body, program)
  local line = capture(("%s %s %d %s %s %g"):format(program or quote(opts.loop), quote(opts.url .. path), count,
    quote(body), quote(UA), opts.max_seconds))
  local rate = tonumber(line:match("rate=([%d.]+)"))
  if not rate then error("curl_loop failed: " .. line) end
  local requests, cpu = tonumber(line:match("requests=(%d+)")), tonumber(line:match("cpu=([%d.]+)"))
  return rate, {
    requests = requests, bytes = tonumber(line:match("bytes=(%d+)")),
    connects = tonumber(line:match("connects=(%d+)")), cpu_us = cpu and cpu / requests * 1e6,
  }
end

-- `count` calls of f (each must return a true value), bounded by max_seconds; calls per second,
-- and CPU µs per call (os.clock: this process's user + system time).
local function run_lua(count, f)
  local max = opts.max_seconds
  local i = 0
  local c0, t0 = os.clock(), now()
  while i < count do
    local r, msg = f()
    if not r then error(msg) end
    i = i + 1
    if i % 64 == 0 and now() - t0 > max then break end
  end
  return i / (now() - t0), (os.clock() - c0) / i * 1e6
end

local curl_version = core.curl_version()
print(("request_bench on %s, libcurl %s, %s"):format(jit and jit.version or _VERSION, curl_version, opts.url))

-- ---------------------------------------------------------------- (a) meta

local meta_call, fetch_call = PARTS.client, PARTS.transport

-- Warm-up: connections, caches, LuaJIT traces.
local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
local decode_loop = exists(opts.loop_decode) and quote(opts.loop_decode) or nil
-- The peer runs only where its interpreter has lua-curl, lua-cjson and luaposix (its clock).
local peer = exists(opts.peer) and os.execute(("%s -e 'require \"curl\" require \"cjson\" require \"posix.time\"'"
  .. " >/dev/null 2>&1"):format(quote(opts.peer_lua)))
peer = (peer == true or peer == 0) and (quote(opts.peer_lua) .. " " .. quote(opts.peer)) or nil
run_c("/api/meta", 500, META_BODY)
if decode_loop then run_c("/api/meta", 500, META_BODY, decode_loop) end
if peer then run_c("/api/meta", 500, META_BODY, peer) end
run_lua(500, meta_call)
if fetch_call then run_lua(500, fetch_call) end

local c_rates, cd_rates, peer_rates, lua_rates, fetch_rates, c_info = {}, {}, {}, {}, {}, nil
local c_cpu, peer_cpu, lua_cpu = {}, {}, {}
for r = 1, opts.runs do
  local info
  c_rates[r], c_info = run_c("/api/meta", opts.n, META_BODY)
  c_cpu[r] = c_info.cpu_us
  if decode_loop then cd_rates[r] = run_c("/api/meta", opts.n, META_BODY, decode_loop) end
  if peer then
    peer_rates[r], info = run_c("/api/meta", opts.n, META_BODY, peer)
    peer_cpu[r] = info.cpu_us
  end
  lua_rates[r], lua_cpu[r] = run_lua(opts.n, meta_call)
  if fetch_call then fetch_rates[r] = run_lua(opts.n, fetch_call) end
end
local c_rate, lua_rate, fetch_rate = median(c_rates), median(lua_rates), median(fetch_rates)
local cd_rate = decode_loop and median(cd_rates)
local peer_rate = peer and median(peer_rates)
-- CPU per call: robust where wall time is not (a wake-up across CPUs, another job on the server's CPU).
local cpu = { c = median(c_cpu), peer = peer and median(peer_cpu), lua = median(lua_cpu) }
local ratio = lua_rate / c_rate

print()
print(("(a) meta, %d sequential keep-alive requests per run, %d interleaved runs, reply %d bytes (medians)")
  :format(opts.n, opts.runs, c_info.bytes))
print(("    C loop (one reused easy handle)   %8.0f /s   runs: %s  (new connections: %d)")
  :format(c_rate, list(c_rates), c_info.connects))
print(("    CPU per call (client process, user + system, medians): C loop %.1f us, %sours %.1f us")
  :format(cpu.c or 0, cpu.peer and ("peer %.1f us, "):format(cpu.peer) or "", cpu.lua))
if cd_rate then
  print(("    C loop + misskey's C decoder       %8.0f /s   runs: %s   ceiling/C %.2f (decoding, no Lua)")
    :format(cd_rate, list(cd_rates), cd_rate / c_rate))
end
if peer_rate then
  print(("    peer: lua-curl + cjson (%s)     %8.0f /s   runs: %s   peer/C %.2f")
    :format(opts.peer_lua, peer_rate, list(peer_rates), peer_rate / c_rate))
end
print(("    client:request(\"meta\")            %8.0f /s   runs: %s   Lua/C %.2f%s%s")
  :format(lua_rate, list(lua_rates), ratio, peer_rate and (", Lua/peer %.2f"):format(lua_rate / peer_rate) or "",
    cd_rate and (", Lua/ceiling %.2f"):format(lua_rate / cd_rate) or ""))
if fetch_rate then
  print(("    transport.request (fetch, no JSON) %7.0f /s   runs: %s   fetch/C %.2f")
    :format(fetch_rate, list(fetch_rates), fetch_rate / c_rate))
end

-- One call taken apart: each part alone, 5 rounds of BN calls, median wall time per call.
local BN = math.min(opts.n, 2000)
local ORDER = { "client", "own_engine", "encode", "transport", "engine", "interpret", "decode", "cjson" }
local samples = {}
PARTS.engine()
connects = 0
for _ = 1, 5 do
  for _, name in ipairs(ORDER) do
    local f = PARTS[name]
    if f then
      f()
      local t0 = now()
      for _ = 1, BN do f() end
      local t = samples[name] or {}
      t[#t + 1] = (now() - t0) / BN
      samples[name] = t
    end
  end
end
local us = {}
for _, name in ipairs(ORDER) do us[name] = samples[name] and median(samples[name]) * 1e6 end
us.c = 1e6 / c_rate
local function show(label, v, note)
  print(("      %-36s %s%s"):format(label, v and ("%7.1f us"):format(v) or "    n/a   ", note or ""))
end
local function minus(a, ...)
  if not a then return nil end
  for _, b in ipairs { ... } do
    if not b then return nil end
    a = a - b
  end
  return a
end
print()
print(("    one meta call, each part alone (%d calls x 5 rounds, median wall time per call):"):format(BN))
show("client:request", us.client)
show("  params copy + json.encode", us.encode)
show("  transport.request", us.transport)
show("    engine:request+step+result", us.engine, "  (C core + libcurl, a private engine)")
show("    transport wrapper + scheduler", minus(us.transport, us.engine), "  (transport - engine)")
show("  _interpret", us.interpret)
show("    json.decode", us.decode, us.cjson and ("  (cjson.decode alone %.1f us)"):format(us.cjson))
show("  client glue", minus(us.client, us.encode, us.transport, us.interpret),
  "  (checks, tables: the rest)")
show("client:request, client's own engine", us.own_engine, "  (no scheduler)")
show("C loop, per request", us.c, ("  (engine - C loop: %s; engine's new connections: %d)")
  :format(us.engine and ("%.1f us"):format(us.engine - us.c) or "n/a", connects))

-- ---------------------------------------------------------------- (b) timeline

local tl = assert(client:request("notes/timeline", TL_PARAMS))
assert(type(tl) == "table" and #tl == 100, "unexpected timeline reply")
local tl_call = function() return client:request("notes/timeline", TL_PARAMS) end
local tl_fetch = transport and function() return transport.request(tl_req()) end
local tl_text = tl_fetch and assert(tl_fetch()).body or json.encode(tl)
local mb = #tl_text / 1e6

local tl_c, tl_lua, tl_fetch_rates, tl_peer = {}, {}, {}, {}
for r = 1, 3 do
  tl_c[r] = run_c("/api/notes/timeline", opts.tl_n, TL_BODY)
  if peer then tl_peer[r] = run_c("/api/notes/timeline", opts.tl_n, TL_BODY, peer) end
  tl_lua[r] = run_lua(opts.tl_n, tl_call)
  if tl_fetch then tl_fetch_rates[r] = run_lua(opts.tl_n, tl_fetch) end
end
local tl_c_rate, tl_lua_rate, tl_fetch_rate = median(tl_c), median(tl_lua), median(tl_fetch_rates)
local tl_peer_rate = peer and median(tl_peer)
local decode_rate = run_lua(20, function() return json.decode(tl_text) end)
local function tl_line(label, rate)
  if rate then print(("    %-34s %7.0f /s  %7.1f MB/s"):format(label, rate, rate * mb)) end
end
print()
print(("(b) notes/timeline, 100 notes, %d bytes, %d requests per run, 3 interleaved runs (medians)")
  :format(#tl_text, opts.tl_n))
tl_line("client:request (fetch + decode)", tl_lua_rate)
tl_line("transport.request (fetch only)", tl_fetch_rate)
tl_line("C loop (fetch only)", tl_c_rate)
tl_line("peer (fetch + cjson.decode)", tl_peer_rate)
tl_line("json.decode alone", decode_rate)

-- ---------------------------------------------------------------- (c) require, RSS

local interp = arg[-1] or "lua"
local child = ("%s %s %s --child "):format(quote(interp), quote(arg[0]), quote(opts.url))
local req_times, new_times, core_times = {}, {}, {}
for i = 1, 9 do
  local out = capture(child .. "require")
  local a, b = out:match("([%d.]+) ([%d.]+)")
  req_times[i], new_times[i] = assert(tonumber(a), out), tonumber(b)
  out = capture(child .. "require_core")
  core_times[i] = assert(tonumber(out:match("[%d.]+")), out)
end
local rss_out = capture(child .. "rss")
local kb = {}
for v in rss_out:gmatch("%d+") do kb[#kb + 1] = tonumber(v) / 1024 end
if #kb ~= 5 then error("rss child failed: " .. rss_out) end
local hwm = kb[4]
print()
print("(c) start-up and memory (fresh interpreters)")
print(("    require \"misskey\"                  %7.2f ms CPU  (median of 9; of which misskey.core alone %.2f ms;"
  .. " then the first misskey.new %.2f ms)"):format(median(req_times) * 1e3, median(core_times) * 1e3,
  median(new_times) * 1e3))
print(("    peak RSS, 20,000 meta calls        %7.1f MiB     (VmHWM; the interpreter alone %.1f MiB, after require"
  .. " and misskey.new %.1f MiB)"):format(kb[3], kb[1], kb[2]))
print(("    peak RSS, then 50 timeline fetches %7.1f MiB     (VmRSS at the end %.1f MiB)"):format(hwm, kb[5]))

if opts.summary then
  local function f1(v) return v and ("%.1f"):format(v) or "n/a" end
  local f = assert(io.open(opts.summary, "a"))
  f:write(table.concat({
    LUA, ("%.0f"):format(c_rate), ("%.0f"):format(lua_rate), ("%.2f"):format(ratio),
    fetch_rate and ("%.2f"):format(fetch_rate / c_rate) or "n/a",
    f1(us.c), f1(us.engine), f1(us.client), f1(us.decode),
    ("%.0f"):format(tl_lua_rate), ("%.0f"):format(tl_lua_rate * mb), ("%.0f"):format(tl_c_rate),
    ("%.1f"):format(median(req_times) * 1e3), ("%.1f"):format(kb[3]),
    cd_rate and ("%.2f"):format(cd_rate / c_rate) or "n/a",
    peer_rate and ("%.0f"):format(peer_rate) or "n/a", peer_rate and ("%.2f"):format(lua_rate / peer_rate) or "n/a",
    tl_peer_rate and ("%.0f"):format(tl_peer_rate) or "n/a", opts.placement,
    f1(cpu.c), f1(cpu.peer), f1(cpu.lua),
  }, "\t") .. "\n")
  f:close()
end
