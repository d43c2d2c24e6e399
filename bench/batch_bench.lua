-- Concurrent throughput: client:batch against a raw libcurl multi C program.
--
--   lua5.4 bench/batch_bench.lua URL [--n 20000] [--concurrency 100] [--runs 3] [--multi PATH]
--
-- URL is the bench nginx of bench/run.sh. N `meta` calls at the given
-- concurrency through client:batch (tasks on the scheduler, one engine, JSON
-- encode and decode included) next to build/bench/curl_multi doing the same N
-- POSTs with the same concurrency on one curl multi handle; one warm-up each,
-- then interleaved runs (C, Lua, C, Lua, ...), medians and the ratio Lua/C. With
-- build/bench/curl_multi_decode (the same C program decoding each reply with misskey's C
-- decoder and keeping the results, as client:batch does) in the same runs: the ceiling of
-- any batch that returns decoded results, as a ratio to the C program.
-- Prints figures only; asserts nothing about speed.
local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local root = script_dir .. "/.."
local LUA = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. LUA .. "/?.so;" .. package.cpath

local misskey = require "misskey"
local core = require "misskey.core"

local TOKEN = "bench0123456789abcdefghijklmnopq"
local common = dofile(script_dir .. "/common.lua")
local opts = common.args(arg, { n = 20000, concurrency = 100, runs = 3, multi = root .. "/build/bench/curl_multi",
  multi_decode = root .. "/build/bench/curl_multi_decode" },
  "batch_bench.lua URL [--n N] [--concurrency C] [--runs R] [--multi PATH] [--multi_decode PATH]")
local url = opts.url
local n, conc, runs = tonumber(opts.n), tonumber(opts.concurrency), tonumber(opts.runs)

local client = misskey.new{ host = url, token = TOKEN, timeout = 30 }
local ua = client._user_agent

local function c_rate(program)
  local cmd = ("%q %q %d %d %q %q 60"):format(program or opts.multi, url .. "/api/meta", n, conc,
    '{"i":"' .. TOKEN .. '"}', ua)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return assert(tonumber(out:match("rate=([%d.]+)")), "curl_multi failed: " .. out)
end

local calls = {}
for i = 1, n do calls[i] = { "meta" } end

local function lua_rate(count)
  local list = calls
  if count ~= n then
    list = {}
    for i = 1, count do list[i] = calls[i] end
  end
  local t0 = core.now()
  local results, errs = client:batch(list, { concurrency = conc })
  local t = core.now() - t0
  local _, e = next(errs)
  assert(e == nil, e and e.message)
  assert(results.n == count and results[count].version, "a batch result is missing")
  return count / t
end

local median = common.median

local f = io.open(opts.multi_decode, "rb")
local decoding = f and opts.multi_decode
if f then f:close() end

lua_rate(conc) -- warm-up: opens the connections
local cs, ds, ls = {}, {}, {}
for _ = 1, runs do
  cs[#cs + 1] = c_rate()
  if decoding then ds[#ds + 1] = c_rate(decoding) end
  ls[#ls + 1] = lua_rate(n)
  collectgarbage()
end
local c, l = median(cs), median(ls)
print(("%-7s batch: %d meta calls at concurrency %d: C multi %.0f req/s, client:batch %.0f req/s, Lua/C %.2f")
  :format(LUA, n, conc, c, l, l / c))
if decoding then
  local d = median(ds)
  print(("%-7s        C multi + misskey's C decoder, results kept %.0f req/s: ceiling/C %.2f, Lua/ceiling %.2f")
    :format(LUA, d, d / c, l / d))
end
