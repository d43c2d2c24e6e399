--- misskey.auth.redirect: the loopback listener of an OAuth login (`misskey
-- login --method oauth` with a redirect URI on 127.0.0.1 or localhost). It
-- waits for the browser's redirect to the app's redirect URI, which carries
-- the authorization code, on the engine (misskey.httpserver): the wait goes
-- through the scheduler like every other, so a task waiting here lets the
-- others run, and a plain script blocks only in the scheduler's own wait.
--
--   local l = assert(redirect.listen(port))         -- 127.0.0.1:port only
--   local target = l:accept(300, { path = "/cb", state = state })   -- "/cb?code=...&state=..."
--   l:close()
--
-- Only a GET to `path` whose query carries `state` (the one given) and a
-- `code` or an `error` ends the wait. Anything else (a preconnect that never
-- speaks, a port scan, a wrong state from another local process) is answered
-- 400 or dropped, and the wait goes on. One overall deadline bounds
-- everything; up to MAX_CONNECTIONS connections are read at once (one more
-- drops the oldest), each head capped, so idle or slow ones cannot hold the
-- real redirect back.
local argcheck = require "misskey.argcheck"
local core = require "misskey.core"
local httpserver = require "misskey.httpserver"
local loop = require "misskey.loop"

local redirect = {}

--- Connections read at once.
redirect.MAX_CONNECTIONS = 16
--- The cap on a request head, in bytes.
redirect.MAX_HEAD = 8192
--- The longest wait accept() takes, in seconds (a day: longer is a mistake).
redirect.MAX_WAIT = 86400

local OK_HEADERS = { ["Content-Type"] = "text/html; charset=utf-8", ["Cache-Control"] = "no-store" }
local OK_PAGE = "<!doctype html><title>misskey</title>"
  .. "<p>Received. You can close this window and go back to the terminal.</p>"
local BAD_HEADERS = { ["Content-Type"] = "text/plain; charset=utf-8" }
local BAD_PAGE = "Not the expected redirect.\n"

local Listener = { __name = "misskey.auth.RedirectListener" }
Listener.__index = Listener

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Is `target` the redirect we wait for: `path` (when given), and a query with
-- `state` equal to the one given (any non-empty one when none is) and a
-- non-empty `code` or `error`?
local function is_redirect(target, path, state)
  local p, query = target:match("^(/[^?#]*)%?([^#]*)")
  if not p or (path and p ~= path) then return false end
  local has_state, has_answer = false, false
  for key, value in query:gmatch("([^&=]*)=([^&]*)") do
    if key == "state" then
      has_state = value ~= "" and (state == nil or unescape(value) == state)
    elseif (key == "code" or key == "error") and value ~= "" then
      has_answer = true
    end
  end
  return has_state and has_answer
end

--- redirect.listen(port) -> listener | nil, message: binds 127.0.0.1:port
-- (an OAuth redirect URI names that exact port; 1 to 65535). Nothing is read
-- before listener:accept.
---@param port integer
---@return table|nil listener
---@return string|nil message
function redirect.listen(port)
  if type(port) ~= "number" or port % 1 ~= 0 or port < 1 or port > 65535 then
    argcheck.argerror(1, "listen", "port must be 1-65535, got " .. tostring(port))
  end
  local server, msg = httpserver.new{ host = "127.0.0.1", port = port, loopback_only = true, backlog = 16,
    max_head = redirect.MAX_HEAD, max_body = 1, max_connections = redirect.MAX_CONNECTIONS }
  if not server then return nil, msg end
  return setmetatable({ server = server, port = server.port }, Listener)
end

-- One connection: the redirect is answered 200 and ends the wait; anything
-- else is answered 400 (or, gone or past the deadline, nothing).
local function serve(wait, conn)
  local kind, req = conn:read()
  if kind == false and (req == 0 or req == 408) then return end
  if kind == "head" and req.method == "GET" and not wait.target and is_redirect(req.target, wait.path, wait.state) then
    wait.target = req.target
    local sent = conn:answer(200, OK_HEADERS, OK_PAGE)
    loop.signal(wait)
    if sent then conn:finish() end
    return
  end
  if conn:answer(400, BAD_HEADERS, BAD_PAGE) then conn:finish() end
end

--- listener:accept([timeout[, { path = "/cb", state = "..." }]]) -> request target
-- | nil, "timeout": waits at most `timeout` seconds (300; a negative one is 0,
-- more than a day is a day, NaN raises) for the redirect, through the
-- scheduler. `path` must start with '/', `state` be a non-empty string; each,
-- when given, must match.
---@param timeout? number
---@param opts? { path?: string, state?: string }
---@return string|nil target
---@return string|nil why
function Listener:accept(timeout, opts)
  argcheck.self(self, Listener, "listener", "accept")
  if self.closed then error("listener:accept: the listener is closed", 2) end
  if timeout == nil then timeout = 300 end
  if type(timeout) ~= "number" or timeout ~= timeout then
    argcheck.argerror(1, "accept", "timeout must be a number of seconds, not " .. tostring(timeout))
  end
  timeout = math.min(math.max(timeout, 0), redirect.MAX_WAIT)
  opts = opts or {}
  if type(opts) ~= "table" then argcheck.argerror(2, "accept", "options table expected") end
  if opts.path ~= nil and (type(opts.path) ~= "string" or opts.path:sub(1, 1) ~= "/") then
    argcheck.opterror("path", "a string starting with '/' expected", 1, "accept")
  end
  if opts.state ~= nil and (type(opts.state) ~= "string" or opts.state == "") then
    argcheck.opterror("state", "a non-empty string expected", 1, "accept")
  end
  local deadline = core.now() + timeout
  local wait = { path = opts.path, state = opts.state }
  self.server:start(function(conn) serve(wait, conn) end, function() return deadline end)
  while not wait.target do
    local left = deadline - core.now()
    if left <= 0 then break end
    loop.wait_event(wait, left)
  end
  self.server:stop()
  if wait.target then return wait.target end
  return nil, "timeout"
end

--- listener:close(): stops listening (the port is free again).
function Listener:close()
  if self.closed then return end
  self.closed = true
  self.server:close()
end

return redirect
