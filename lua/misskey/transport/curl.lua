--- The default transport: HTTP through the C engine (libcurl multi).
-- `transport.request(req)` starts a transfer and waits for it through the
-- scheduler (loop.await_transfer: yields in a task, blocks outside one).
-- `transport.prepare(req)` and `transport.post(prepared, url, body, timeout)`
-- are the client's cheaper way to make its API calls: what every call sends
-- (headers, user agent, limits, TLS options) is checked and built once.
local core = require "misskey.core"
local engines = require "misskey.engine"
local errors = require "misskey.errors"
local loop = require "misskey.loop"

local curl = {}

--- The process's default engine, made on first use.
curl.default_engine = engines.default

-- Calls req.progress(sent, total) when the upload moved since the last call.
-- It runs here, between engine steps: never inside a libcurl callback. Not before
-- libcurl knows the upload's size, which it learns when the request starts (a first
-- call of (0, 0) broke every `sent * 100 // total`); a size it never learns (a pipe)
-- is reported once, as (sent, sent), when the transfer is done.
local function report_progress(transfer, req, last)
  local info = transfer:info()
  local sent, total = info.upload_now, info.upload_total
  if total == 0 then
    if sent == 0 or not transfer:done() then return end
    total = sent
  end
  if sent ~= last.sent or total ~= last.total then
    last.sent, last.total = sent, total
    local ok, err = pcall(req.progress, sent, total)
    if not ok then
      transfer:cancel() -- a raising progress function must not leave the upload running
      error(err, 0)
    end
  end
end

-- Waits until `transfer` is done, through the scheduler (`own`: the engine of
-- a client that has its own, which the scheduler then steps; nil for the
-- default engine). With a progress function, wakes every 0.1 s to report.
local function wait(own, transfer, req)
  local last = req.progress and { sent = -1, total = -1 }
  local tick = last and 0.1 or nil
  while not transfer:done() do
    loop.await_transfer(transfer, tick, own)
    if last then report_progress(transfer, req, last) end
  end
end

-- res.headers and res.body are made on first use: a successful API call reads neither
-- (the client decodes the body in place through res._transfer; only errors, rate limits
-- in "pace" mode and client:http read them).
local LAZY = {
  __index = function(res, key)
    local transfer = rawget(res, "_transfer")
    local value
    if key == "headers" then
      value = transfer:headers()
    elseif key == "body" then
      value = transfer:body()
    else
      return nil
    end
    rawset(res, key, value)
    return value
  end,
}

local function to_response(transfer, timeout)
  local status, headers, body, curl_code = transfer:result(true, true)
  if status then
    return setmetatable({ status = status, _transfer = transfer }, LAZY)
  end
  local message, reason = headers, body
  -- A reply over max_size arrived whole from the server's side: it is an HTTP
  -- problem (err.reason = "too_large"), not a broken network.
  local kind = reason == "timeout" and "timeout" or reason == "too_large" and "http" or "network"
  -- Only the total timeout is "timed out after N s"; a connect timeout or a
  -- low-speed abort keeps curl's own words.
  if reason == "timeout" and timeout and message:find("^Operation timed out") then
    message = ("timed out after %g s (%s)"):format(timeout, message)
  end
  local got = transfer:info().status -- 0 when no status line arrived
  return errors.fail(kind, message, { curl_code = curl_code, reason = reason, status = got ~= 0 and got or nil })
end

--- Makes a transport on `engine` (default: the process's default engine).
-- Its `request(req)` returns `res` or `nil, message, err` (err.kind "network"/"timeout").
function curl.new(engine)
  engine = engine or curl.default_engine()
  local own = engine ~= curl.default_engine() and engine or nil
  local transport = { engine = engine }
  function transport.request(req)
    local transfer = engine:request(req)
    wait(own, transfer, req)
    return to_response(transfer, req.timeout)
  end
  --- transport.prepare(req) -> prepared: req's headers, user_agent, connect_timeout,
  -- low_speed_time/low_speed_limit, max_size, ca_file and insecure, checked and built
  -- once (core.prepare), for transport.post.
  ---@param req table
  ---@return userdata
  function transport.prepare(req)
    return core.prepare(req)
  end
  --- transport.post(prepared, url, body[, timeout]) -> res | nil, message, err: what
  -- transport.request{ method = "POST", url = url, body = body, timeout = timeout, ... }
  -- gives with the rest of the request table from `prepared`.
  ---@param prepared userdata from transport.prepare
  ---@param url string
  ---@param body string
  ---@param timeout? number seconds
  ---@return table|nil res
  ---@return string|nil message
  ---@return table|nil err
  function transport.post(prepared, url, body, timeout)
    local transfer = engine:post(prepared, url, body, timeout)
    loop.await_transfer(transfer, nil, own) -- returns at once when it is done already
    return to_response(transfer, timeout)
  end
  --- transport.websocket(req) -> ws | nil, msg, err (see misskey.transport.websocket)
  function transport.websocket(req)
    local ws, msg, err = require("misskey.transport.websocket").connect(engine, req) -- no tail call: argcheck's levels
    return ws, msg, err
  end
  return transport
end

return curl
