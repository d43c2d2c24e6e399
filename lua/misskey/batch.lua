--- client:batch(calls, opts): many requests at once, results in input order.
local argcheck = require "misskey.argcheck"
local loop = require "misskey.loop"

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

-- client:batch -> the batch function -> check -> this wrapper: level 4 (see misskey.argcheck).
local function argerror(n, what)
  argcheck.argerror(n, "batch", what, 4)
end

local function check(calls, opts)
  if type(calls) ~= "table" then argerror(1, "list of { endpoint, params } expected, got " .. type(calls)) end
  for i = 1, #calls do
    local c = calls[i]
    if type(c) ~= "table" or type(c[1]) ~= "string" or (c[2] ~= nil and type(c[2]) ~= "table") then
      argerror(1, ("calls[%d] must be { endpoint, params }"):format(i))
    end
  end
  opts = opts or {}
  if type(opts) ~= "table" then argerror(2, "options table expected") end
  for k in pairs(opts) do
    if k ~= "concurrency" and k ~= "timeout" then argerror(2, ("unknown option '%s'"):format(tostring(k))) end
  end
  local n = opts.concurrency or 8
  if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then
    argerror(2, "option 'concurrency' must be an integer >= 1")
  end
  return opts, n
end

--- Runs `calls` ({ endpoint, params } each) with at most `opts.concurrency`
-- (default 8) in flight; returns results, errs with results[k] (or errs[k])
-- for calls[k] and results.n = #calls. Yields in a task, blocks outside.
return function(client, calls, opts)
  local concurrency
  opts, concurrency = check(calls, opts)
  local results, errs = { n = #calls }, {}
  local call_opts = opts.timeout and { timeout = opts.timeout } or nil
  local next_index = 0
  local function worker()
    while next_index < #calls do
      next_index = next_index + 1
      local k = next_index
      local res, _, err = client:request(calls[k][1], calls[k][2], call_opts)
      if res == nil then errs[k] = err else results[k] = res end
    end
  end
  local workers = {}
  for w = 1, math.min(concurrency, #calls) do workers[w] = loop.spawn(worker) end
  local _, failed = loop.gather(unpack(workers))
  -- A worker only fails on misuse (e.g. a function in params): raise it as request would.
  local _, werr = next(failed)
  if werr then error(werr.error or werr.message, 3) end
  return results, errs
end
