--- webhook.listen: the built-in listener, for scripts and development.
--
-- It runs on the engine, beside streams and API calls: one task accepts (it
-- waits on the listening socket through the scheduler) and one task per
-- connection reads, answers and closes, waiting on its socket the same way.
-- Sockets are non-blocking (src/server.c), so nothing here holds the scheduler.
--
-- Bounds, so that a slow, idle or hostile peer cannot hold a real delivery back:
-- * one overall deadline per connection (`timeout`, 10 s: Misskey itself gives
--   up after 5), covering the head, the body, the answer and the close;
-- * the head is capped (`max_head`, 16 KiB; 100 lines) and checked (method,
--   secret) before any of the body is read; the body is capped (`max_size`,
--   1 MiB) and only ever read up to its Content-Length;
-- * at most `max_connections` (64) at once: one more drops the oldest, so
--   connections that never finish cannot keep a new one out;
-- * one request per connection (the answer says `Connection: close`).
-- It binds loopback only unless told otherwise: deliveries carry the secret in
-- clear.
local argcheck = require "misskey.argcheck"
local core = require "misskey.core"
local errors = require "misskey.errors"
local handler = require "misskey.webhook.handler"
local httpserver = require "misskey.httpserver"
local loop = require "misskey.loop"

local listen = {}

--- Defaults of the listener's bounds.
listen.TIMEOUT = 10
listen.MAX_HEAD = 16 * 1024
listen.MAX_CONNECTIONS = 64

---@class misskey.webhook.ListenOptions: misskey.webhook.HandlerOptions
---@field host? string a numeric address or "localhost" (default "127.0.0.1")
---@field port? integer 0 (the default): a free port, see listener.port
---@field allow_remote? boolean bind an address that is not loopback
---@field path? string answer 404 to any other path
---@field timeout? number seconds per connection, everything included (10)
---@field max_head? integer the cap on a request head, in bytes (16 KiB)
---@field max_connections? integer connections at once; one more drops the oldest (64)
local BACKLOG = 128
local MAX_CAP = 64 * 1024 * 1024 -- the largest body src/server.c accepts to read

local TEXT = { ["Content-Type"] = "text/plain; charset=utf-8" }

--- The built-in listener (webhook.listen{...}).
---@class misskey.webhook.Listener
---@field host string the address it is bound to
---@field port integer the port it is bound to (a free one for port 0)
---@field url string where Misskey should deliver ("http://127.0.0.1:8080/hook")
local Listener = { __name = "misskey.webhook.Listener" }
Listener.__index = Listener

-- Raises naming the option; `level` 3 (the default) blames listen.new's caller.
local function opterror(name, what, level)
  argcheck.opterror(name, what, (level or 3) - 1, "listen")
end

local function check_integer(opts, name, default, min, max)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v % 1 ~= 0 or v < min or v > max then
    opterror(name, ("an integer from %d to %d expected, got %s"):format(min, max, tostring(v)), 4)
  end
  return v
end

local function path_of(target)
  return (target:match("^[^?#]*"))
end

-- A request that could not be read: counted, and answered unless the peer left.
local function unreadable(self, conn, status, message)
  if status == 0 then return end -- the peer left: nobody to answer
  if status ~= 408 then self.refused = self.refused + 1 end
  if conn:answer(status, TEXT, message .. "\n") then conn:finish() end
end

-- One connection: read the head, check it, read the body, answer.
local function serve(self, conn)
  local kind, req, msg = conn:read()
  if kind == false then return unreadable(self, conn, req, msg) end
  local status, headers, body
  if self.path and path_of(req.target) ~= self.path then
    self.refused = self.refused + 1
    status, headers, body = 404, TEXT, "not a webhook path\n"
  else
    status, headers, body = self.receiver:head(req.method, req.headers)
  end
  if not status then
    kind, body, msg = conn:read()
    if kind == false then return unreadable(self, conn, body, msg) end
    status, headers, body = self.receiver:handle(req.method, req.headers, body)
  end
  if conn:answer(status, headers, body) then conn:finish() end
end

local function numeric_host(host)
  if host == "localhost" then return "127.0.0.1" end
  return host
end

--- webhook.listen{ secret = …, on = { … }[, host = "127.0.0.1", port = 0, …] } -> listener | nil, message, err
-- Listens for deliveries on host:port (port 0: a free one; `listener.port`
-- says which) and answers them as webhook.handler does, on the engine: it
-- returns at once, and runs while the scheduler runs (misskey.run, another
-- task's wait, or `listener:run()`). Options besides the handler's (`secret`,
-- `on`, `store`, `remember`, `max_size`, `null`, `spawn`): `host` (a numeric
-- address or "localhost"; not loopback only with `allow_remote = true`),
-- `port`, `path` (answer 404 elsewhere), `timeout` (seconds per connection,
-- 10), `max_head` (16 KiB), `max_connections` (64). A port that cannot be
-- bound is `nil, message, err` (kind "network").
---@param opts misskey.webhook.ListenOptions
---@return misskey.webhook.Listener|nil listener
---@return string|nil message
---@return misskey.Error|nil err
function listen.new(opts)
  local receiver = handler.receiver(opts, "listen", 2)
  if receiver.max_size > MAX_CAP then
    opterror("max_size", ("at most %d bytes for the listener, got %s"):format(MAX_CAP, tostring(opts.max_size)))
  end
  local host = opts.host
  if host == nil then host = "127.0.0.1" end
  if type(host) ~= "string" then opterror("host", "a numeric IP address expected, got " .. type(host)) end
  local port = check_integer(opts, "port", 0, 0, 65535)
  local timeout = opts.timeout
  if timeout == nil then timeout = listen.TIMEOUT end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 or timeout > 86400 then
    opterror("timeout", "a number of seconds > 0 expected, got " .. tostring(timeout))
  end
  local max_head = check_integer(opts, "max_head", listen.MAX_HEAD, 256, 1024 * 1024)
  local max_connections = check_integer(opts, "max_connections", listen.MAX_CONNECTIONS, 1, 4096)
  local path = opts.path
  if path ~= nil and (type(path) ~= "string" or path:sub(1, 1) ~= "/" or path:find("[?#%s]")) then
    opterror("path", "a path starting with '/' (no query) expected, got " .. tostring(path))
  end
  if opts.allow_remote ~= nil and type(opts.allow_remote) ~= "boolean" then
    opterror("allow_remote", "a boolean expected, got " .. type(opts.allow_remote))
  end
  local server, msg, reason = httpserver.new{ host = numeric_host(host), port = port,
    loopback_only = not opts.allow_remote, backlog = BACKLOG, max_head = max_head, max_body = receiver.max_size,
    max_connections = max_connections }
  if not server then
    if reason == "remote" then
      opterror("host", host .. " is not a loopback address: deliveries carry the webhook's secret in clear,"
        .. " so the listener binds loopback only unless allow_remote = true (behind TLS, or on a network you trust)")
    elseif reason == "address" then
      opterror("host", "a numeric IP address or \"localhost\" expected, got " .. host)
    end
    return errors.fail("network", "webhook listener: " .. msg, { reason = reason })
  end
  local ip, bound = server.host, server.port
  local self = setmetatable({
    receiver = receiver, server = server, path = path, timeout = timeout, closed = false, refused = 0,
    host = ip, port = bound,
    url = ("http://%s:%d%s"):format(ip:find(":", 1, true) and ("[" .. ip .. "]") or ip, bound, path or "/"),
  }, Listener)
  server:start(function(conn) serve(self, conn) end, function() return core.now() + timeout end)
  return self
end

--- listener:stats() -> { connections, accepted, dropped, timed_out, accept_errors,
-- handled, replayed, refused }: counts since it started (connections: open now;
-- refused: answered 4xx, a 408 counted as timed_out instead).
---@return table
function Listener:stats()
  local r = self.receiver.stats
  local s = self.server.counts
  return {
    connections = self.server:connections(), accepted = s.accepted, dropped = s.dropped, timed_out = s.timed_out,
    accept_errors = s.accept_errors, handled = r.handled, replayed = r.replayed, refused = r.refused + self.refused,
  }
end

--- listener:rekey(secret): deliveries must carry `secret` from now on (a
-- rotated secret; a bot that learns its secret once its listener is bound).
---@param secret string
function Listener:rekey(secret)
  if type(secret) ~= "string" or secret == "" then
    argcheck.argerror(1, "rekey", "the webhook's secret, a non-empty string, expected")
  end
  self.receiver.secret = secret
end

--- listener:close() -> true (false when closed already): stops accepting and
-- closes every connection at once. Handlers already started go on.
---@return boolean
function Listener:close()
  if self.closed then return false end
  self.closed = true
  self.server:close()
  loop.signal(self)
  return true
end

--- listener:run() -> true: runs the scheduler (in a plain script) or waits (in a
-- task) until the listener is closed, e.g. by a handler calling listener:close().
---@return boolean
function Listener:run()
  while not self.closed do loop.wait_event(self) end
  return true
end

function Listener:__tostring()
  return ("misskey.webhook.Listener (%s%s)"):format(self.url, self.closed and ", closed" or "")
end

return listen
