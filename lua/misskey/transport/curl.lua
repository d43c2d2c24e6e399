--- The default transport: HTTP through the C engine (libcurl multi).
-- `transport.request(req)` blocks outside a scheduler task by stepping the
-- engine until its own transfer finishes.
local core = require "misskey.core"
local errors = require "misskey.errors"

local curl = {}

local default_engine

--- The process's default engine, made on first use.
function curl.default_engine()
  if not default_engine then default_engine = core.engine() end
  return default_engine
end

-- Steps the engine until `transfer` is done. Other transfers finishing meanwhile
-- are left for their owners, who look at their own transfer:done().
local function wait(engine, transfer)
  while not transfer:done() do
    engine:step(1)
  end
end

local function to_response(transfer, req)
  local status, headers, body, curl_code = transfer:result()
  if status then
    return { status = status, headers = headers, body = body }
  end
  local message, reason = headers, body
  local kind = reason == "timeout" and "timeout" or "network"
  if reason == "timeout" and req.timeout then
    message = ("timed out after %g s (%s)"):format(req.timeout, message)
  end
  return errors.fail(kind, message, { curl_code = curl_code, reason = reason })
end

--- Makes a transport on `engine` (default: the process's default engine).
-- Its `request(req)` returns `res` or `nil, message, err` (err.kind "network"/"timeout").
function curl.new(engine)
  engine = engine or curl.default_engine()
  local transport = { engine = engine }
  function transport.request(req)
    local transfer = engine:request(req)
    wait(engine, transfer)
    return to_response(transfer, req)
  end
  return transport
end

return curl
