--- WebSockets on the C engine: `transport.websocket(req)` of the curl transport.
-- `ws:receive()` yields in a scheduler task and blocks outside one, like every
-- other wait; the socket is watched through the engine (engine:watch).
local argcheck = require "misskey.argcheck"
local core = require "misskey.core"
local errors = require "misskey.errors"
local json = require "misskey.json"
local loop = require "misskey.loop"

local WebSocket = { __name = "misskey.transport.WebSocket" }
WebSocket.__index = WebSocket

local websocket = {}

-- The decoder of the messages the C side decodes (ws:receive_value): json.decode
-- itself, so they share its marker and its cache of object keys.
local DECODER = json.decode

-- Messages a queue may have held at once and still be kept for the next poll (next_message).
local QUEUE_KEEP = 256

-- Records what C reported besides messages; a failure becomes self.closed.
function WebSocket:_absorb(events)
  for i = 1, #events do
    local ev = events[i]
    local kind = ev[1]
    if kind == "ping" then
      self.last_ping = ev[2]
    elseif kind == "pong" then
      self.last_pong = ev[2]
    elseif kind == "open" then
      self.open = true
    elseif kind == "close" then
      self.closed = { code = ev[3], reason = ev[2] }
    elseif kind == "eof" then
      self.closed = { code = 1006, reason = "connection closed without a close frame" }
    elseif kind == "refused" then
      local status = ev[3]
      local auth = status == 401 or status == 403
      self.closed = { err = select(2, errors.new(auth and "auth" or "http",
        ("websocket upgrade refused: HTTP %d"):format(status), { status = status, body = ev[2] })) }
    elseif kind == "error" then
      self.closed = { err = select(2, errors.new("network", "websocket: " .. ev[2],
        { close_code = ev[3] ~= 0 and ev[3] or nil })) }
    end
  end
end

-- One poll: messages go straight into the queue (C stores them there).
function WebSocket:_poll()
  if self._qhead > self._qtail then self._qhead, self._qtail = 1, 0 end -- empty: start again at 1
  local tail, want, events, more = self._ws:poll(self._queue, self._qtail, self._decode)
  self._qtail = tail
  if events then self:_absorb(events) end
  self._more = more
  return want
end

-- One round of I/O: poll the socket, and wait for it when nothing is ready.
-- Once the messages of a poll are all handed out, the next round first gives
-- way to the scheduler (a wait on the socket, or a zero sleep when the last poll
-- stopped at its byte limit): other tasks run and the engine steps between two
-- batches, so a steady sender cannot starve them. Between the messages of one
-- batch nothing yields.
function WebSocket:_pump(timeout)
  local was_open, waited = self.open, false
  -- No fd: the socket was released under us (engine:close()); the poll says why.
  local fd = self._ws:fd()
  if self._more then
    loop.sleep(0)
  elseif self._fed and self._want and fd then
    waited = true
    if loop.await_socket(fd, self._want, timeout) == "timeout" then return "timeout" end
  end
  local want = self:_poll()
  -- The 101 may already be read here (the upgrade request goes out as soon as
  -- the TCP connect is done): then do not wait for more, the server may be silent.
  if not waited and want and not self._more and self._qhead > self._qtail and not self.closed
      and self.open == was_open then
    if loop.await_socket(self._ws:fd(), want, timeout) == "timeout" then return "timeout" end
    want = self:_poll()
  end
  self._want = want
  self._fed = self._qhead <= self._qtail
  if not want and not self.closed then self.closed = { code = 1006, reason = "closed" } end
end

local function closed_error(self)
  local c = self.closed
  if c.err then return nil, c.err.message, c.err end
  return errors.fail("network", ("websocket closed (%s%s)"):format(tostring(c.code),
    c.reason and c.reason ~= "" and (": " .. c.reason) or ""), { close_code = c.code, closed = true })
end

-- The next queued message, polling (and waiting) for one: the queue's head, or nil, msg, err.
local function next_message(self, timeout)
  while self._qhead > self._qtail do
    if self.closed then return closed_error(self) end
    if self:_pump(timeout) == "timeout" then
      return errors.fail("timeout", ("no message within %g s"):format(timeout), { timeout = true })
    end
  end
  -- A head index, not table.remove(q, 1): one read can queue hundreds of frames.
  local head = self._qhead
  local text = self._queue[head]
  self._queue[head] = nil
  self._qhead = head + 1
  -- The last of a burst: a table keeps the array part the burst grew, so after a burst of
  -- more than QUEUE_KEEP messages the socket gets a new, small queue. A smaller one is kept
  -- (at most 4 KiB): a busy socket's every poll refilled a new queue, growing its array
  -- 1, 2, 4, ... 128 (a rehash each time, and on glibc an allocation past 1 KiB that
  -- consolidated every small block Lua had freed since the last one: ~6,500 instructions
  -- per note event on 5.4).
  if head == self._qtail and head > QUEUE_KEEP then self._queue, self._qhead, self._qtail = {}, 1, 0 end
  return text
end

--- ws:receive([timeout]) -> message | nil, msg, err (err.kind "timeout" when
-- nothing came in `timeout` seconds; "network" with err.closed once closed).
---@param timeout? number seconds
---@return string|nil message
---@return string|nil msg
---@return table|nil err
function WebSocket:receive(timeout)
  if self._decode then error("ws:receive: this socket's messages are decoded (ws:receive_value was used)", 2) end
  return next_message(self, timeout)
end

--- ws:receive_value([timeout]) -> value | nil, msg, err: the next message as
-- json.decode gives it, or false when it is not JSON; the failures of ws:receive.
-- Decoded in C where the message was read, with no Lua string of it. A socket is
-- read one way: after this, ws:receive raises.
---@param timeout? number seconds
---@return any value
---@return string|nil msg
---@return table|nil err
function WebSocket:receive_value(timeout)
  if not self._decode then
    self._decode = DECODER
    -- What an earlier poll queued as strings, decoded here.
    for i = self._qhead, self._qtail do self._queue[i] = json.decode(self._queue[i]) or false end
  end
  return next_message(self, timeout)
end

--- ws:send(text [, "binary" | "ping"]) -> true | nil, msg, err
-- A server that stops reading fails the socket once more than 4 MiB wait
-- unsent (err.close_code 1008); every later call returns that error.
function WebSocket:send(data, kind)
  if self.closed then return closed_error(self) end
  local ok, msg, code = self._ws:send(data, kind)
  if not ok then
    local _, err = errors.new("network", "websocket: " .. tostring(msg), { close_code = code })
    if code then self.closed = { err = err } end
    return nil, err.message, err
  end
  return true
end

--- ws:buffered() -> bytes queued and not sent yet.
function WebSocket:buffered() return self._ws:buffered() end

--- ws:close([code, reason]): the closing handshake, waiting (bounded) for the server's close.
function WebSocket:close(code, reason)
  if self.closed then return true end
  self._ws:close(code or 1000, reason)
  for _ = 1, 10 do
    if self.closed or self:_pump(1) == "timeout" then break end
  end
  self._ws:cancel()
  self.closed = self.closed or { code = code or 1000 }
  return true
end

--- ws:state() -> "connecting" | "handshake" | "open" | "closing" | "closed"
function WebSocket:state() return self._ws:state() end

-- transport.websocket -> websocket.connect -> here: level 2 (see misskey.argcheck).
local function opterror(name, what)
  argcheck.opterror(name, what, 3, "websocket")
end

-- Misuse raises naming the option, before anything is sent.
local function check_request(req)
  if type(req) ~= "table" then argcheck.argerror(1, "websocket", "request table expected", 2) end
  local url = req.url
  if type(url) ~= "string" or not (url:find("^wss?://[^/?#]")) then
    opterror("url", "a ws:// or wss:// URL expected, got " .. tostring(url))
  end
  for _, k in ipairs{ "timeout", "connect_timeout" } do
    local why = req[k] ~= nil and argcheck.seconds_problem(req[k], math.huge) -- C clamps huge ones
    if why then opterror(k, why) end
  end
  local m = req.max_message
  if m ~= nil and (type(m) ~= "number" or m ~= m or m < 1) then
    opterror("max_message", "a number of bytes >= 1 expected, got " .. tostring(m))
  end
  if req.headers ~= nil and type(req.headers) ~= "table" then
    opterror("headers", "a table of strings expected, got " .. type(req.headers))
  end
  if req.ca_file ~= nil and type(req.ca_file) ~= "string" then opterror("ca_file", "a file path expected") end
end

--- websocket.check_request(req): the request's options, checked as websocket.connect
-- checks them (raising naming the option); for another transport's websocket function
-- called the same way (transport.websocket -> its connect -> this).
websocket.check_request = check_request

--- websocket.connect(engine, req) -> ws | nil, msg, err
-- req = { url = "ws(s)://…", headers, connect_timeout, ca_file, insecure, max_message, timeout }
-- Through an http_proxy the connection is a CONNECT tunnel: the proxy never sees the target.
---@param engine userdata
---@param req table
---@return table|nil ws
---@return string|nil message
---@return table|nil err
function websocket.connect(engine, req)
  check_request(req)
  local ws, why = engine:websocket(req)
  -- No socket without a key: the kernel's random source failed.
  if not ws then return errors.fail("network", tostring(why)) end
  local self = setmetatable({ _ws = ws, _queue = {}, _qhead = 1, _qtail = 0 }, WebSocket)
  local timeout = req.timeout or 30
  local own = engine ~= require("misskey.engine").default() and engine or nil
  -- One deadline for the connect and the whole upgrade reply: each wait below
  -- restarts on every byte, so a server dripping its 101 must not extend it.
  local deadline = core.now() + timeout
  if loop.await_transfer(ws, timeout, own) == "timeout" then
    ws:cancel()
    return errors.fail("timeout", ("websocket connect timed out after %g s"):format(timeout))
  end
  while not self.open do
    if self.closed then return closed_error(self) end
    local left = deadline - core.now()
    if left <= 0 or self:_pump(left) == "timeout" then
      ws:cancel()
      return errors.fail("timeout", ("websocket upgrade timed out after %g s"):format(timeout))
    end
  end
  return self
end

return websocket
