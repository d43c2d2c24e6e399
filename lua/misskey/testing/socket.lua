--- misskey.testing.socket: fake.transport.websocket(req) -> an in-process
-- WebSocket speaking Misskey's streaming protocol: connect (with pong = true
-- it answers connected), disconnect, subNote/unsubNote. What arrives on it is
-- what the fake's actions publish (misskey.testing.events). receive(timeout)
-- waits through misskey.loop: it yields in a task and blocks outside one,
-- like the real socket. Also the scheduler's side: fake:run_until_idle().
local json = require "misskey.json"
local common = require "misskey.testing.common"
local Fake = require "misskey.testing.fake"

local type, ipairs, tostring, error, setmetatable = type, ipairs, tostring, error, setmetatable

local loop -- required lazily: the fake's HTTP side works without the C core

--- A fake WebSocket (fake.transport.websocket(req)) speaking the streaming protocol.
---@class misskey.testing.WebSocket
---@field fake misskey.testing.Fake
---@field user? table the token's user, nil for an anonymous socket
---@field channels table<string, { name: string, params?: table }> by connection id
---@field captures table<string, integer> note id -> subNote count
---@field sent string[] every frame the client sent
---@field closed? integer the close code once closed
local FakeSocket = { __name = "misskey.testing.WebSocket" }
FakeSocket.__index = FakeSocket

local TIMELINES = { homeTimeline = "home", localTimeline = "public", hybridTimeline = "hybrid",
                    globalTimeline = "public", main = "main" }
local NEEDS_LOGIN = { homeTimeline = true, hybridTimeline = true, main = true }

function Fake:_websocket(req)
  loop = loop or require "misskey.loop"
  local errors = require "misskey.errors"
  if type(req) ~= "table" or type(req.url) ~= "string" then
    error("bad argument #1 to 'websocket' (a request table with a url expected)", 2)
  end
  local base, rest = req.url:match("^(wss?://[^/?#]+)(.*)$")
  if not base or base:gsub("^ws", "http"):lower() ~= self.base_url then
    return errors.fail("network", ("fake: no server at %s (this fake is %s)"):format(tostring(base or req.url),
      self.base_url))
  end
  local token = common.bearer(req.headers)
  if not token then
    local q = rest:match("[?&]i=([^&#]*)")
    if q then token = q:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end) end
  end
  local user
  if token ~= nil and token ~= "" then
    user = self._by_token[token]
    if not user then
      return errors.fail("auth", "websocket upgrade refused: HTTP 401", { status = 401 })
    end
  end
  local ws = setmetatable({ fake = self, user = user, _queue = {}, channels = {}, captures = {}, sent = {} },
    FakeSocket)
  self._sockets[#self._sockets + 1] = ws
  return ws
end

function FakeSocket:_push(msg)
  if self.closed then return end
  self._queue[#self._queue + 1] = json.encode(msg)
  loop.signal(self)
end

--- ws:receive([timeout]) -> text | nil, msg, err (kind "timeout", or "network" with err.closed)
---@param timeout? number seconds
---@return string|nil text
---@return string|nil message
---@return misskey.Error|nil err
function FakeSocket:receive(timeout)
  local errors = require "misskey.errors"
  while #self._queue == 0 do
    if self.closed then
      return errors.fail("network", ("websocket closed (%d)"):format(self.closed), { close_code = self.closed,
        closed = true })
    end
    if loop.wait_event(self, timeout) == "timeout" and #self._queue == 0 and not self.closed then
      return errors.fail("timeout", ("no message within %g s"):format(timeout), { timeout = true })
    end
  end
  return table.remove(self._queue, 1)
end

--- ws:send(text) -> true | nil, msg, err: a client frame, handled at once.
---@param text string
---@return true|nil ok
---@return string|nil message
---@return misskey.Error|nil err
function FakeSocket:send(text)
  if self.closed then
    return require("misskey.errors").fail("network", "websocket closed", { closed = true })
  end
  self.sent[#self.sent + 1] = text
  local msg = json.decode(text)
  if type(msg) ~= "table" or type(msg.type) ~= "string" or type(msg.body) ~= "table" then return true end
  local t, body = msg.type, msg.body
  if t == "connect" then
    local kind = TIMELINES[body.channel]
    if kind and type(body.id) == "string" and (self.user or not NEEDS_LOGIN[body.channel]) then
      self.channels[body.id] = { name = body.channel, params = body.params }
      if body.pong then self:_push({ type = "connected", body = { id = body.id } }) end
    end
  elseif t == "disconnect" then
    if type(body.id) == "string" then self.channels[body.id] = nil end
  elseif t == "subNote" or t == "s" or t == "sr" then
    if type(body.id) == "string" then self.captures[body.id] = (self.captures[body.id] or 0) + 1 end
  elseif t == "unsubNote" or t == "un" then
    if type(body.id) == "string" then self.captures[body.id] = nil end
  end
  return true
end

--- ws:close([code]): closes the socket; a waiting receive returns "closed".
---@param code? integer default 1000
---@return true
function FakeSocket:close(code)
  if self.closed then return true end
  self.closed = code or 1000
  local list = self.fake._sockets
  for i = #list, 1, -1 do
    if list[i] == self then table.remove(list, i) end
  end
  if loop then loop.signal(self) end
  return true
end

--- ws:state() -> "open" | "closed".
---@return "open"|"closed"
function FakeSocket:state() return self.closed and "closed" or "open" end

function Fake:_close_sockets(code)
  for _, ws in ipairs(self._sockets or {}) do
    ws.closed = code or 1001
    if loop then loop.signal(ws) end
  end
  self._sockets = {}
end

--- fake:drop_streams(): the server closes every open WebSocket (1006), as a restart would.
---@return integer closed
function Fake:drop_streams()
  local n = #self._sockets
  self:_close_sockets(1006)
  return n
end

--- fake.sockets(): the open fake WebSockets ({ user, channels = { id = { name, params } }, captures, sent }).
---@return misskey.testing.WebSocket[]
function Fake:sockets()
  local out = {}
  for i, ws in ipairs(self._sockets) do out[i] = ws end
  return out
end

--- fake:run_until_idle([max_rounds]) -> rounds: runs scheduler rounds (from
-- outside any task) until no task is ready and no fake socket has a message
-- waiting; at most max_rounds (default 10000) rounds. Timers in the future
-- (sleeps, every) do not count as work: the fake has no clock of its own there.
---@param max_rounds? integer
---@return integer rounds
function Fake:run_until_idle(max_rounds)
  loop = loop or require "misskey.loop"
  if loop.current() then error("fake:run_until_idle: call it from outside a task (in the test itself)", 2) end
  max_rounds = max_rounds or 10000
  local rounds = 0
  while rounds < max_rounds do
    local busy = loop.timeout() == 0
    if not busy then
      for _, ws in ipairs(self._sockets) do
        if #ws._queue > 0 then busy = true break end
      end
    end
    if not busy and rounds > 0 then break end
    loop.step(0)
    rounds = rounds + 1
  end
  return rounds
end

return FakeSocket
