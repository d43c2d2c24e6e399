--- misskey.httpserver: the listening side, on the engine. A small HTTP/1.1
-- server of one request per connection over src/server.c's non-blocking
-- sockets, shared by the webhook listener (misskey.webhook.listen) and the
-- OAuth redirect's loopback listener (misskey.auth.redirect).
--
-- One task accepts and one task per connection serves it; each waits on its
-- socket through the scheduler (loop.await_socket), so the server shares the
-- process with streams, API calls and timers and holds none of them up.
-- Bounds, so that an idle, slow or hostile peer cannot hold a real request back:
-- * every connection has a deadline, set when it is accepted, that bounds each
--   of its waits (the head, the body, the answer, the linger after it);
-- * at `max_connections` one more connection drops the oldest, so connections
--   that never finish cannot keep a new one out;
-- * heads and bodies are capped in C (`max_head`, `max_body`), and a body is
--   read only when the server asks for it, after it checked the head.
local core = require "misskey.core"
local loop = require "misskey.loop"

local httpserver = {}

local ACCEPT_BATCH = 64  -- connections taken per wake of the accepting task
local ACCEPT_PAUSE = 0.1 -- after a failed accept (out of descriptors): the socket stays readable
--- Seconds at most spent reading what a peer still sends after the answer.
httpserver.LINGER = 1

local REASONS = {
  [200] = "OK", [204] = "No Content", [400] = "Bad Request", [401] = "Unauthorized", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [411] = "Length Required",
  [413] = "Content Too Large", [415] = "Unsupported Media Type", [417] = "Expectation Failed",
  [431] = "Request Header Fields Too Large", [505] = "HTTP Version Not Supported",
}

---@class misskey.httpserver.Options
---@field host string a numeric IP address
---@field port integer 0: a free one (server.port says which)
---@field loopback_only boolean refuse an address that is not loopback
---@field backlog? integer the listen queue (128)
---@field max_head integer the cap on a request head, in bytes
---@field max_body integer the cap on a request body, in bytes
---@field max_connections integer connections at once; one more drops the oldest

local Server = { __name = "misskey.httpserver.Server" }
Server.__index = Server

local Conn = { __name = "misskey.httpserver.Connection" }
Conn.__index = Conn

--- httpserver.new(opts) -> server | nil, message, reason: binds and listens
-- (nothing is accepted before server:start). `reason` is core.http_server's:
-- "address" (not a numeric address), "remote" (not loopback, with
-- loopback_only), "socket" or "bind".
---@param opts misskey.httpserver.Options
---@return table|nil server
---@return string|nil message
---@return string|nil reason
function httpserver.new(opts)
  local sock, msg, reason = core.http_server(opts.host, opts.port,
    { loopback_only = opts.loopback_only, backlog = opts.backlog or 128 })
  if not sock then return nil, msg, reason end
  local ip, port = sock:address()
  return setmetatable({
    sock = sock, host = ip, port = port, max_head = opts.max_head, max_body = opts.max_body,
    max_connections = opts.max_connections, conns = {}, nconns = 0, accepted = 0,
    counts = { accepted = 0, dropped = 0, timed_out = 0, accept_errors = 0 },
  }, Server)
end

-- ------------------------------------------------------------------------
-- a connection

-- Waits until the connection's fd is ready for `interest`, at most until `stop`
-- (monotonic seconds); false once that has passed.
local function wait(conn, interest, stop)
  local left = stop - core.now()
  if left <= 0 then return false end
  return loop.await_socket(conn.fd, interest, left) ~= "timeout"
end

--- conn:read() -> "head", request | "body", bytes | false, status, message:
-- src/server.c's read, waiting for the socket until the connection's deadline
-- (then false, 408). status 0: the peer left (nobody to answer).
---@return string|boolean kind
---@return any
---@return string|nil message
function Conn:read()
  while true do
    local kind, a, b = self.sock:read()
    if kind ~= nil then return kind, a, b end
    if not wait(self, "r", self.deadline) then
      self.server.counts.timed_out = self.server.counts.timed_out + 1
      return false, 408, "request timeout"
    end
  end
end

local function response(status, headers, body)
  local out = { ("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "Unknown") }
  for name, value in pairs(headers) do out[#out + 1] = name .. ": " .. value .. "\r\n" end
  -- A 204 has no body and must not announce one.
  if status ~= 204 then out[#out + 1] = "Content-Length: " .. #body .. "\r\n" end
  out[#out + 1] = "Connection: close\r\n\r\n"
  out[#out + 1] = body
  return table.concat(out)
end

--- conn:answer(status, headers, body) -> true once sent | false (the deadline
-- passed, or the peer left). One answer per connection (`Connection: close`).
---@param status integer
---@param headers table<string, string>
---@param body string
---@return boolean
function Conn:answer(status, headers, body)
  local sock = self.sock
  local ok = sock:send(response(status, headers, body))
  while ok == false do
    if not wait(self, "w", self.deadline) then return false end
    ok = sock:send()
  end
  return ok == true
end

--- conn:finish(): after the answer, shuts our side down and reads (and drops)
-- what the peer still sends until it closes, for at most httpserver.LINGER
-- seconds: closing with unread bytes makes the kernel send a reset, which can
-- destroy the answer before the peer reads it (a 413 while it sends its body).
function Conn:finish()
  local sock = self.sock
  sock:shutdown()
  local stop = math.min(self.deadline, core.now() + httpserver.LINGER)
  while not sock:discard() do
    if not wait(self, "r", stop) then return end
  end
end

-- ------------------------------------------------------------------------
-- the server

-- Takes a connection out of the server's set and closes it (once).
local function forget(self, conn)
  if not self.conns[conn] then return end
  self.conns[conn] = nil
  self.nconns = self.nconns - 1
  conn.sock:close()
end

local function run_connection(self, conn, serve)
  serve(conn)
  forget(self, conn)
end

-- Drops the connection accepted first (at the cap: see the bounds above).
local function drop_oldest(self)
  local oldest
  for conn in pairs(self.conns) do
    if not oldest or conn.order < oldest.order then oldest = conn end
  end
  if not oldest then return end
  self.counts.dropped = self.counts.dropped + 1
  oldest.task:cancel() -- first: its wait on the fd goes before the fd is closed (and reused)
  forget(self, oldest)
end

local function admit(self, sock, serve, deadline)
  if self.nconns >= self.max_connections then drop_oldest(self) end
  self.accepted = self.accepted + 1
  self.counts.accepted = self.counts.accepted + 1
  local conn = setmetatable({ server = self, sock = sock, fd = sock:fd(), order = self.accepted,
    deadline = deadline() }, Conn)
  self.conns[conn] = true
  self.nconns = self.nconns + 1
  conn.task = loop.spawn(run_connection, self, conn, serve)
end

local function accept_loop(self, serve, deadline)
  local sock = self.sock
  local fd = sock:fd()
  while true do
    loop.await_socket(fd, "r")
    for _ = 1, ACCEPT_BATCH do
      local c, err = sock:accept(self.max_head, self.max_body)
      if not c then
        if err then
          self.counts.accept_errors = self.counts.accept_errors + 1
          loop.sleep(ACCEPT_PAUSE)
        end
        break
      end
      admit(self, c, serve, deadline)
    end
  end
end

--- server:start(serve, deadline): accepts connections until server:stop();
-- each runs serve(conn) in a task of its own and is closed when it returns.
-- deadline() -> the monotonic time (core.now) by which a connection accepted
-- now must be done.
---@param serve fun(conn: table)
---@param deadline fun(): number
function Server:start(serve, deadline)
  if self.task then return end
  self.task = loop.spawn(accept_loop, self, serve, deadline)
end

--- server:stop(): stops accepting and closes every connection at once (the
-- socket stays bound: start again to go on). Work a connection started goes on.
function Server:stop()
  local current = loop.current()
  if self.task and self.task ~= current then self.task:cancel() end
  self.task = nil
  for conn in pairs(self.conns) do
    if conn.task ~= current then conn.task:cancel() end
    forget(self, conn)
  end
end

--- server:close(): stop(), then the listening socket is closed (the port is free).
function Server:close()
  self:stop()
  self.sock:close()
end

--- server:connections() -> connections open now
---@return integer
function Server:connections()
  return self.nconns
end

return httpserver
