--- misskey.ngx.websocket: WebSockets over nginx's cosockets, the
-- `transport.websocket(req)` of the nginx transport. The protocol is the C
-- core's (core.ws_codec: the upgrade reply check of src/wshandshake.c, the
-- frames of src/wsframe.c); this file only moves the bytes.
--
-- One task reads (the stream's reader); sends are queued and written by a
-- writer task of the socket, so `send` never waits: a server that stops
-- reading fails the socket once more than 4 MiB wait (close code 1008), as
-- with the curl transport. Pings are answered with one pong, the newest ping's,
-- once the frames queued before it are out. A cosocket belongs to the request
-- or timer that opened it: `send` from another one raises, and `close` from
-- another one only marks the socket closed (its reader, cancelled, drops it).
local argcheck = require "misskey.argcheck"
local base = require "resty.core.base"
local core = require "misskey.core"
local errors = require "misskey.errors"
local http = require "misskey.ngx.http"
local rt = require "misskey.ngx.runtime"

local host = rawget(_G, "ngx")

local websocket = {}

local READ = 64 * 1024
local SEND_MAX = 4 * 1024 * 1024
local LONG = 86400
local now = core.now

local WebSocket = { __name = "misskey.ngx.WebSocket" }
WebSocket.__index = WebSocket

local function ms(seconds) return math.max(1, math.floor(math.min(seconds, LONG) * 1000)) end

local function closed_error(self)
  local c = self.closed
  if c.err then return nil, c.err.message, c.err end
  return errors.fail("network", ("websocket closed (%s%s)"):format(tostring(c.code),
    c.reason and c.reason ~= "" and (": " .. c.reason) or ""), { close_code = c.code, closed = true })
end

-- Is the running code in the request or timer that opened the socket?
function WebSocket:_own()
  return base.get_request() == self._request
end

-- Ends the connection now (nothing more is read or written).
function WebSocket:_drop()
  if self._dropped then return end
  self._dropped = true
  self._outbox, self._queued, self._pong = {}, 0, nil
  if not self._reading and not self._writing then self._sock:close() end
end

-- The writer: sends what is queued, in order, then the pong due; ends when nothing is left.
function WebSocket:_write_all()
  local sock = self._sock
  while not self._dropped do
    local frame
    if #self._outbox > 0 then
      frame = table.remove(self._outbox, 1)
      self._queued = self._queued - #frame
    elseif self._pong then
      frame, self._pong = self._pong, nil
    else
      break
    end
    sock:settimeouts(ms(self._timeout), ms(self._timeout), ms(self._timeout))
    local ok, err = rt.io(sock.send, sock, frame)
    if not ok then
      if not self.closed then
        self.closed = { err = select(2, errors.new("network", "websocket: send failed: " .. tostring(err))) }
      end
      self:_drop()
      break
    end
  end
  self._writing = false
  rt.signal(self) -- a close waiting for the frames before its own
  if self._dropped and not self._reading then self._sock:close() end
end

-- Queues a frame (nil, msg, err when the server has left more than SEND_MAX unread).
function WebSocket:_queue(frame, is_pong)
  if is_pong then
    self._pong = frame -- a newer ping replaces the pong still due
  else
    if self._queued > SEND_MAX then
      local _, err = errors.new("network", ("websocket: send buffer over %d MiB: the server is not reading")
        :format(SEND_MAX / 1048576), { close_code = 1008 })
      self.closed = { err = err }
      self:_drop()
      return nil, err.message, err
    end
    self._outbox[#self._outbox + 1] = frame
    self._queued = self._queued + #frame
  end
  if not self._writing then
    self._writing = true
    rt.spawn(self._write_all, self)
  end
  return true
end

-- What the codec reported besides messages.
function WebSocket:_absorb(events)
  for i = 1, #events do
    local ev = events[i]
    local kind = ev[1]
    if kind == "ping" then
      self.last_ping = ev[2]
      local pong = self._codec:encode(ev[2], "pong")
      if pong then self:_queue(pong, true) end
    elseif kind == "pong" then
      self.last_pong = ev[2]
    elseif kind == "close" then
      local code = ev[3]
      self.closed = self.closed or { code = code, reason = ev[2] }
      local echo = code == 1005 and self._codec:close_frame() or self._codec:close_frame(code)
      self:_close_with(echo)
    elseif kind == "error" then
      self.closed = self.closed or { err = select(2, errors.new("network", "websocket: " .. ev[2],
        { close_code = ev[3] ~= 0 and ev[3] or nil })) }
      local ok, frame = pcall(self._codec.close_frame, self._codec, ev[3], ev[2])
      self:_close_with(ok and frame or nil)
    end
  end
end

-- Sends a last frame (the echo of the server's close, or ours on a protocol error),
-- after what is queued (unless ours went out already), then drops the connection.
function WebSocket:_close_with(frame)
  if frame and not self._dropped and not self._close_sent then
    self._close_sent = true
    self._outbox[#self._outbox + 1] = frame
    self._queued = self._queued + #frame
    if not self._writing then
      self._writing = true
      self:_write_all()
    end
  end
  self:_drop()
end

-- One read: bytes from the socket through the codec into the queue.
-- -> nil | "timeout"
function WebSocket:_read(timeout)
  local sock = self._sock
  self._reading = true
  sock:settimeouts(ms(self._timeout), ms(self._timeout), ms(timeout or LONG))
  local ok, data, err = pcall(rt.io, sock.receiveany, sock, READ)
  self._reading = false
  if not ok then -- cancelled (or misuse): the socket was dropped with the operation
    self._dropped = true
    error(data, 0)
  end
  if self._dropped then
    if not self._writing then sock:close() end
    return
  end
  if not data then
    if err == "timeout" then return "timeout" end
    self.closed = self.closed or (err == "closed"
      and { code = 1006, reason = "connection closed without a close frame" }
      or { err = select(2, errors.new("network", "websocket: " .. tostring(err))) })
    self:_drop()
    return
  end
  local events
  self._qtail, events = self._codec:feed(data, self._inbox, self._qtail)
  if events then self:_absorb(events) end
end

--- ws:receive([timeout]) -> message | nil, msg, err (err.kind "timeout" when no
-- frame at all came in `timeout` seconds; "network" with err.closed once closed).
---@param timeout? number
---@return string|nil message
---@return string|nil msg
---@return table|nil err
function WebSocket:receive(timeout)
  while self._qhead > self._qtail do
    if self.closed then return closed_error(self) end
    if not self:_own() then
      error("websocket: receive from another nginx request or timer than the one that opened it", 2)
    end
    if self._reading then error("websocket: receive from two tasks at once", 2) end
    self._qhead, self._qtail = 1, 0
    if self:_read(timeout) == "timeout" then
      return errors.fail("timeout", ("no message within %g s"):format(timeout), { timeout = true })
    end
  end
  local head = self._qhead
  local text = self._inbox[head]
  self._inbox[head] = nil
  self._qhead = head + 1
  return text
end

--- ws:send(text [, "binary" | "ping"]) -> true | nil, msg, err: queued at once;
-- written by the socket's writer task.
---@param data string
---@param kind? "text"|"binary"|"ping"
---@return boolean|nil ok
---@return string|nil msg
---@return table|nil err
function WebSocket:send(data, kind)
  if self.closed then return closed_error(self) end
  if not self:_own() then
    error("websocket: send from another nginx request or timer than the one that opened it", 2)
  end
  if kind ~= nil and kind ~= "text" and kind ~= "binary" and kind ~= "ping" then
    argcheck.argerror(2, "send", '"text", "binary" or "ping" expected')
  end
  local frame, why = self._codec:encode(data, kind or "text")
  if not frame then return errors.fail("network", why) end
  return self:_queue(frame)
end

--- ws:buffered() -> bytes queued and not sent yet.
---@return integer
function WebSocket:buffered()
  return self._queued + (self._pong and #self._pong or 0)
end

--- ws:close([code, reason]): sends the close frame (after what is queued), waits a
-- little for the server's, then closes the connection.
---@param code? integer
---@param reason? string
function WebSocket:close(code, reason)
  code = code or 1000
  if type(code) ~= "number" or code % 1 ~= 0 or not (code >= 1000 and code <= 1003 or code >= 1007 and code <= 1014
      or code >= 3000 and code <= 4999) then
    argcheck.argerror(1, "close", "a close code is 1000-1003, 1007-1014 or 3000-4999")
  end
  if reason ~= nil and (type(reason) ~= "string" or #reason > 123 or reason:find("%z")
      or not core._utf8_valid(reason)) then
    argcheck.argerror(2, "close", "a close reason is UTF-8 text of at most 123 bytes")
  end
  if self.closed and self._dropped then return true end
  local frame = self._codec:close_frame(code, reason)
  if self.closed then
    self:_drop()
    return true
  end
  self.closed = { code = code }
  if not self:_own() then return true end -- another request: the reader, cancelled, drops it
  self._close_sent = true
  self._outbox[#self._outbox + 1] = frame
  self._queued = self._queued + #frame
  if not self._writing then
    self._writing = true
    self:_write_all()
  else
    local deadline = now() + 5
    while self._writing and now() < deadline do rt.wait_event(self, deadline - now()) end
  end
  -- The server's close, unless the stream's reader is reading (it is being cancelled).
  local deadline = now() + 2
  while not self._reading and not self._dropped and self._codec:state() == "open" and now() < deadline do
    if self:_read(deadline - now()) == "timeout" then break end
  end
  self:_drop()
  return true
end

--- ws:state() -> "connecting" | "open" | "closing" | "closed"
function WebSocket:state()
  if self._dropped then return "closed" end
  if self.closed then return "closing" end
  return self._codec:state() == "open" and "open" or "connecting"
end

-- The connect and the upgrade, under one deadline. -> rest of the read | nil, failure
local function open(self, req, u, request_head)
  local sock = self._sock
  local deadline = now() + (req.timeout or 30)
  local function left() return deadline - now() end
  local ct = math.min(req.connect_timeout or left(), left())
  sock:settimeouts(ms(ct), ms(ct), ms(ct))
  local where = u.authority
  local ok, err = sock:connect(u.name, u.port, { pool = "misskey websocket " .. where }) -- never a pooled one
  if not ok then
    if err == "timeout" then
      return nil, { kind = "timeout", message = ("websocket connect timed out after %g s"):format(req.timeout or 30) }
    end
    local msg = ("websocket: cannot connect to %s: %s"):format(where, tostring(err))
    if tostring(err):find("no resolver defined", 1, true) then
      msg = msg .. " (nginx resolves host names only through its `resolver` directive: add one to nginx.conf)"
    end
    return nil, { kind = "network", message = msg }
  end
  if u.scheme == "https" then
    sock:settimeouts(ms(left()), ms(left()), ms(left()))
    local done
    done, err = http.handshake(sock, u.name, not req.insecure)
    if not done then
      local msg = "websocket: TLS handshake with " .. where .. " failed: " .. tostring(err)
        .. " (is the server's certificate trusted here? nginx.conf's lua_ssl_trusted_certificate says what is)"
      return nil, { kind = "network", message = msg }
    end
  end
  sock:settimeouts(ms(left()), ms(left()), ms(left()))
  local sent
  sent, err = sock:send(request_head)
  if not sent then return nil, { kind = "network", message = "websocket: sending the upgrade failed: " .. err } end
  while true do
    if left() <= 0 then
      return nil, { kind = "timeout", message = ("websocket upgrade timed out after %g s"):format(req.timeout or 30) }
    end
    sock:settimeouts(ms(left()), ms(left()), ms(left()))
    local data
    data, err = sock:receiveany(READ)
    if not data then
      if err == "timeout" then
        return nil, { kind = "timeout", message = ("websocket upgrade timed out after %g s"):format(req.timeout or 30) }
      end
      return nil, { kind = "network", message = "websocket: connection closed during the upgrade: " .. err }
    end
    local state, a, b = self._codec:upgrade(data)
    if state == "open" then return a end
    if state == "refused" then
      local auth = a == 401 or a == 403
      return nil, { kind = auth and "auth" or "http", message = ("websocket upgrade refused: HTTP %d"):format(a),
        status = a, body = b }
    end
    if state == "invalid" then return nil, { kind = "network", message = "websocket: " .. a } end
  end
end

--- websocket.connect(req) -> ws | nil, msg, err
-- req = { url = "ws(s)://…", headers, connect_timeout, insecure, max_message, timeout }
---@param req table
---@return table|nil ws
---@return string|nil message
---@return table|nil err
function websocket.connect(req)
  require("misskey.transport.websocket").check_request(req)
  rt.check_phase("a WebSocket connect")
  if req.ca_file ~= nil then
    argcheck.opterror("ca_file", "inside nginx the trusted certificates are lua_ssl_trusted_certificate's", 2,
      "websocket")
  end
  local scheme, name, port, target, authority = http.parse_url((req.url:gsub("^ws", "http")))
  if not scheme then argcheck.opterror("url", "a ws:// or wss:// URL expected", 2, "websocket") end
  local m = req.max_message
  local codec = core.ws_codec(m and math.min(m, 2 ^ 52) or nil)
  local key, why = codec:key()
  if not key then return errors.fail("network", why) end
  local lines = { ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n"):format(target, authority, key) }
  for k, v in pairs(req.headers or {}) do
    if type(k) ~= "string" or type(v) ~= "string" or k:find("[\r\n%z:]") or v:find("[\r\n%z]") then
      error("websocket headers must map strings to strings without line breaks", 2)
    end
    lines[#lines + 1] = k .. ": " .. v .. "\r\n"
  end
  lines[#lines + 1] = "\r\n"
  local self = setmetatable({
    _sock = host.socket.tcp(), _codec = codec, _inbox = {}, _qhead = 1, _qtail = 0, _outbox = {}, _queued = 0,
    _timeout = req.timeout or 30, _request = base.get_request(),
  }, WebSocket)
  local u = { scheme = scheme, name = name, port = port, authority = authority }
  local ok, rest, failed = pcall(rt.io, open, self, req, u, table.concat(lines))
  if not ok or not rest then
    self._sock:close()
    if not ok then error(rest, 0) end
    local kind, message = failed.kind, failed.message
    failed.kind, failed.message = nil, nil
    return errors.fail(kind, message, failed)
  end
  if #rest > 0 then
    local events
    self._qtail, events = codec:feed(rest, self._inbox, self._qtail)
    if events then self:_absorb(events) end
  end
  self.open = true
  return self
end

return websocket
