--- misskey.stream: the Streaming API over one WebSocket (protocol.md 7).
--
--   local stream = client:stream{ backoff = { min = 1, max = 60 } }
--   stream:channel("homeTimeline"):on("note", function(note) ... end)
--   stream:on("notification", function(n) ... end)   -- main channel, connected lazily
--   stream:capture(note_id)                          -- "noteUpdated" events
--   stream:run()                                     -- until stream:close()
--
-- One reader task owns the socket: it connects, reads frames and turns them
-- into events, and reconnects with capped exponential backoff. Every handler
-- runs in a task of its own, so it may call client:request: it starts at once
-- (loop.spawn_now), and goes on as a separate task only if it waits.
-- After a reconnect every channel is joined again (same params), every
-- captured note subscribed again, and what timeline channels and the main
-- channel's notifications missed meanwhile is fetched over the API (backfill)
-- and delivered before the live events that arrived during the fetch.
local errors = require "misskey.errors"
local json = require "misskey.json"
local loop = require "misskey.loop"

local stream = {}

local Stream = { __name = "misskey.Stream" }
Stream.__index = Stream

local Channel = { __name = "misskey.stream.Channel" }
Channel.__index = Channel

--- Misskey ignores connects beyond 32 channels on one socket (since 2024.8.0).
stream.MAX_CHANNELS = 32
--- Backfill: at most this many pages of 100 per channel after a reconnect.
stream.MAX_PAGES = 10
local PAGE = 100
--- Ids of backfilled items remembered per channel (at least the last SEEN; two
-- generations of SEEN each), so that a live event repeating one is dropped.
stream.SEEN = 1000

-- Events of the stream itself; every other name given to stream:on is an
-- event of the main channel (which it connects), except the broadcasts.
local LIFECYCLE = { connected = true, disconnected = true, reconnecting = true, error = true, noteUpdated = true }
local BROADCAST = { emojiAdded = true, emojiUpdated = true, emojiDeleted = true }

-- Channel -> the endpoint that pages what the channel missed, and the event.
local BACKFILL = {
  homeTimeline = "notes/timeline",
  localTimeline = "notes/local-timeline",
  hybridTimeline = "notes/hybrid-timeline",
  globalTimeline = "notes/global-timeline",
  userList = "notes/user-list-timeline",
  antenna = "antennas/notes",
  channel = "channels/timeline",
  roleTimeline = "roles/notes",
}
stream.BACKFILL = BACKFILL

local OPTIONS = { reconnect = true, backoff = true, watchdog = true, confirm_timeout = true, backfill = true }

local function opterror(name, what)
  error(("bad option '%s' (%s)"):format(name, what), 4)
end

local function check_seconds(v, name)
  if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
    opterror(name, "a number of seconds > 0 expected, got " .. tostring(v))
  end
end

local function check_options(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("bad argument #1 to 'stream' (options table expected, got " .. type(opts) .. ")", 3)
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then opterror(tostring(k), "unknown option") end
  end
  for _, k in ipairs{ "reconnect", "backfill" } do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then opterror(k, "boolean expected, got " .. type(opts[k])) end
  end
  local backoff = { min = 1, max = 60 }
  if opts.backoff ~= nil then
    if type(opts.backoff) ~= "table" then opterror("backoff", "{ min = s, max = s } expected") end
    for k, v in pairs(opts.backoff) do
      if k ~= "min" and k ~= "max" then opterror("backoff", "unknown field '" .. tostring(k) .. "'") end
      check_seconds(v, "backoff." .. k)
      backoff[k] = v
    end
    if backoff.min > backoff.max then opterror("backoff", "min is greater than max") end
  end
  if opts.watchdog ~= nil then check_seconds(opts.watchdog, "watchdog") end
  if opts.confirm_timeout ~= nil then check_seconds(opts.confirm_timeout, "confirm_timeout") end
  return {
    reconnect = opts.reconnect ~= false,
    backfill = opts.backfill ~= false,
    backoff = backoff,
    watchdog = opts.watchdog or 120,
    confirm_timeout = opts.confirm_timeout or 10,
  }
end

local function pct(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- A bounded set of ids in two generations: once the newer holds SEEN ids it
-- becomes the older and the older is dropped whole (seven times cheaper than a
-- ring whose every insert also deletes: Lua tables rehash under that churn).
local function seen_new() return { cur = {}, old = {}, n = 0 } end
local function seen_has(s, id)
  return s.n > 0 and (s.cur[id] or s.old[id]) or false
end
local function seen_add(s, id)
  local cur, n = s.cur, s.n + 1
  if n > stream.SEEN then
    s.old, cur, n = cur, {}, 1
    s.cur = cur
  end
  cur[id], s.n = true, n
end

-- Handler lists: { event = { { fn, once }, ... } }. A list is never changed in place
-- (on/off/once make a new one), so fire() can walk it while handlers add or remove some.
local function add_handler(handlers, fname, event, fn, once)
  if type(event) ~= "string" or event == "" then
    error(("bad argument #1 to '%s' (event name expected, got %s)"):format(fname, type(event)), 3)
  end
  if type(fn) ~= "function" then
    error(("bad argument #2 to '%s' (function expected, got %s)"):format(fname, type(fn)), 3)
  end
  local old, list = handlers[event] or {}, {}
  for i = 1, #old do list[i] = old[i] end
  list[#list + 1] = { fn = fn, once = once }
  handlers[event] = list
end

-- Removes the last entry for which match(entry) is true; true if one was removed.
local function remove_entry(handlers, event, match)
  local old = handlers[event]
  if not old then return false end
  for i = #old, 1, -1 do
    if match(old[i]) then
      local list = {}
      for k = 1, #old do
        if k ~= i then list[#list + 1] = old[k] end
      end
      handlers[event] = list
      return true
    end
  end
  return false
end

local function remove_handler(handlers, event, fn)
  local list = handlers[event]
  if not list then return false end
  if fn == nil then
    handlers[event] = nil
    return #list > 0
  end
  return remove_entry(handlers, event, function(h) return h.fn == fn end)
end

local spawn_now = loop.spawn_now

-- Runs every handler of `event` in a task of its own, in registration order. Each
-- starts at once (spawn_now): one that returns without waiting is done before the
-- next starts and costs no coroutine; one that waits goes on as a task meanwhile.
local function fire(handlers, event, ...)
  local list = handlers[event]
  if not list then return end
  for i = 1, #list do
    local h = list[i]
    if h.once and not remove_entry(handlers, event, function(e) return e == h end) then
      h = nil -- a once handler already run (by an event its own handler fired)
    end
    if h then spawn_now(h.fn, ...) end
  end
end

---------------------------------------------------------------------------
-- Channel

local function check_channel(self, fname)
  if getmetatable(self) ~= Channel then
    error(("bad self to '%s' (call it as channel:%s(...))"):format(fname, fname), 3)
  end
  if self._closed then error(("channel:%s: the channel %q is closed"):format(fname, self.name), 3) end
end

--- channel:on(event, fn): fn(body) for every `event` of this channel ("note", ...);
-- event "*": fn(event, body) for every event of the channel.
function Channel:on(event, fn)
  check_channel(self, "on")
  add_handler(self._handlers, "on", event, fn, false)
  return self
end

--- channel:once(event, fn): like on, for the next event only.
function Channel:once(event, fn)
  check_channel(self, "once")
  add_handler(self._handlers, "once", event, fn, true)
  return self
end

--- channel:off(event[, fn]): removes fn (or every handler of event); true if one was removed.
function Channel:off(event, fn)
  check_channel(self, "off")
  return remove_handler(self._handlers, event, fn)
end

--- channel:send(type, body) -> true | nil, msg, err: a message to the channel
-- (`{type = "channel", body = {id, type, body}}`); queued until the socket is open.
function Channel:send(type_, body)
  check_channel(self, "send")
  if type(type_) ~= "string" or type_ == "" then
    error("bad argument #1 to 'send' (message type expected, got " .. type(type_) .. ")", 2)
  end
  if body == nil then body = json.null end
  return self._stream:_send({ type = "channel", body = { id = self.id, type = type_, body = body } },
    "channel." .. type_)
end

--- channel:close(): leaves the channel (`disconnect`); the channel cannot be used afterwards.
function Channel:close()
  if getmetatable(self) ~= Channel then error("bad self to 'close' (call it as channel:close())", 2) end
  if self._closed then return false end
  self._stream:_drop(self)
  return true
end

function Channel:__tostring()
  return ("misskey.stream.Channel (%s, %s%s)"):format(self.name, self.id, self._closed and ", closed" or "")
end

-- Listeners of this channel: its own, or the stream's for the main channel.
-- Then the "*" listeners, as fn(event, body): every event of the channel (`misskey stream` uses them).
function Channel:_fire(event, ...)
  local handlers = self._main and self._stream._handlers or self._handlers
  fire(handlers, event, ...)
  if handlers["*"] then fire(handlers, "*", event, ...) end
end

-- A channel event. `source`: "live" (from the socket; held back while a
-- backfill runs), "backfill" (an item a backfill fetched) or "held" (a live
-- event held back, delivered after the backfill). Only backfilled ids are
-- remembered: a backfill asks for ids above the greatest one delivered
-- (`_last`), so it can only repeat live events that came during or just after
-- it, and those are checked against what it delivered. Recording every live id
-- too cost ~1 us per event on 5.4 (cache misses in a table of 1000 ids).
function Channel:_deliver(event, body, source)
  if source == "live" and self._buffer then
    self._buffer[#self._buffer + 1] = { event, body }
    return
  end
  if event == self._bf_event and type(body) == "table" then
    local id = body.id
    if type(id) == "string" then
      local seen = self._seen
      if seen_has(seen, id) then return end
      if source == "backfill" then seen_add(seen, id) end
      local last = self._last
      if last == nil or id > last then self._last = id end
    end
  end
  self:_fire(event, body)
end

---------------------------------------------------------------------------
-- Stream

local function check_stream(self, fname)
  if getmetatable(self) ~= Stream then
    error(("bad self to '%s' (call it as stream:%s(...))"):format(fname, fname), 3)
  end
end

local function check_open(self, fname)
  check_stream(self, fname)
  if self._closed then error(("stream:%s: the stream is closed"):format(fname), 3) end
end

--- stream.new(client, opts) -> Stream (use client:stream(opts)).
function stream.new(client, opts)
  local o = check_options(opts)
  local transport = client._transport
  if type(transport) ~= "table" or type(transport.websocket) ~= "function" then
    error("client:stream: the client's transport has no websocket function", 3)
  end
  local url = client.base_url:gsub("^http", "ws") .. "/streaming"
  local headers
  if client._token then
    if client._auth == "header" then
      headers = { Authorization = "Bearer " .. client._token }
    else
      url = url .. "?i=" .. pct(client._token)
    end
  end
  local http = client._http_options or {}
  return setmetatable({
    client = client,
    _req = {
      url = url, headers = headers, timeout = client._timeout or 30, connect_timeout = client._connect_timeout,
      ca_file = http.ca_file, insecure = http.insecure,
    },
    _token = client._token,
    -- What errors must never carry: the token, and as the upgrade's target spells it.
    _secrets = client._token and { client._token, pct(client._token) } or nil,
    _opts = o,
    _handlers = {},
    _channels = {},  -- id -> channel
    _order = {},     -- channels in the order they were made (joined again in that order)
    _captures = {},  -- note id -> count
    _capture_order = {},
    _outbox = {},    -- messages sent while no socket is open
    _tasks = {},     -- confirm timers and backfills: cancelled by close()
    _next_id = 0,
    _gen = 0,        -- connection generation
    _connections = 0,
  }, Stream)
end

function Stream:__tostring()
  return ("misskey.Stream (%s, %d channels%s)"):format(self._req.url:gsub("%?i=.*$", ""), #self._order,
    self._closed and ", closed" or self._ws and ", open" or "")
end

-- Encodes and sends `msg` on the open socket, or queues it for the next one.
function Stream:_send(msg, what)
  local ok, text = pcall(json.encode, msg, what or msg.type)
  if not ok then error(text, 3) end
  if self._ws then
    local sent, m, err = self._ws:send(text)
    if not sent then return nil, m, err end
    return true
  end
  self._outbox[#self._outbox + 1] = text
  return true
end

function Stream:_spawn(fn, ...)
  return loop.spawn_in(self._tasks, fn, ...)
end

-- Sends `connect` (pong = true) and starts the confirm timer of this connection.
function Stream:_join(ch)
  local body = { channel = ch.name, id = ch.id, pong = true }
  if ch.params ~= nil then body.params = ch.params end
  ch._confirmed = false
  self:_send({ type = "connect", body = body }, "params")
  local gen, limit = self._gen, self._opts.confirm_timeout
  self:_spawn(function()
    loop.sleep(limit)
    if ch._confirmed or ch._closed or self._closed or self._gen ~= gen or not self._ws then return end
    local _, err = errors.new("timeout", ("stream: channel %q (id %s) was not confirmed within %g s"
      .. " (Misskey ignores a connect silently: unknown channel, missing permission or params,"
      .. " or more than %d channels)"):format(ch.name, ch.id, limit, stream.MAX_CHANNELS),
      { channel = ch.name, channel_id = ch.id })
    self:_fire_error(err)
    ch:_fire_own("error", err)
  end)
end

-- Error events of a channel itself (`channel:on("error")`), besides the stream's.
function Channel:_fire_own(event, ...)
  if not self._main then fire(self._handlers, event, ...) end
end

function Stream:_fire_error(err)
  errors.scrub(err, self._secrets) -- every field: a refused upgrade's reply may echo the target
  fire(self._handlers, "error", err)
end

function Stream:_new_channel(name, params, main)
  if #self._order >= stream.MAX_CHANNELS then
    error(("stream: at most %d channels per socket (Misskey ignores more); close one first")
      :format(stream.MAX_CHANNELS), 3)
  end
  self._next_id = self._next_id + 1
  local ch = setmetatable({
    name = name, id = tostring(self._next_id), params = params, _stream = self, _handlers = {}, _main = main,
    _seen = seen_new(),
  }, Channel)
  if main then
    ch._bf_endpoint, ch._bf_event = "i/notifications", "notification"
  elseif BACKFILL[name] then
    ch._bf_endpoint, ch._bf_event = BACKFILL[name], "note"
  end
  self._channels[ch.id] = ch
  self._order[#self._order + 1] = ch
  if self._ws then self:_join(ch) end
  return ch
end

function Stream:_drop(ch)
  ch._closed = true
  self._channels[ch.id] = nil
  for i = #self._order, 1, -1 do
    if self._order[i] == ch then table.remove(self._order, i) end
  end
  if self._main == ch then self._main = nil end
  if self._ws then self:_send({ type = "disconnect", body = { id = ch.id } }) end
end

--- stream:channel(name[, params]) -> Channel. At most 32 channels per stream
-- (the main channel counts when something listens on it): the 33rd raises.
function Stream:channel(name, params)
  check_open(self, "channel")
  if type(name) ~= "string" or not name:find("^%w+$") then
    error("bad argument #1 to 'channel' (channel name expected, got " .. tostring(name) .. ")", 2)
  end
  if name == "main" then
    error("bad argument #1 to 'channel' (the main channel is the stream's own: use stream:on(event, fn))", 2)
  end
  if params ~= nil and type(params) ~= "table" then
    error("bad argument #2 to 'channel' (params table expected, got " .. type(params) .. ")", 2)
  end
  local copy
  if params ~= nil then
    copy = {}
    for k, v in pairs(params) do copy[k] = v end
  end
  return self:_new_channel(name, copy, false)
end

local function listen(self, fname, event, fn, once)
  check_open(self, fname)
  add_handler(self._handlers, fname, event, fn, once)
  if not LIFECYCLE[event] and not BROADCAST[event] and not self._main then
    local ok, err = pcall(self._new_channel, self, "main", nil, true)
    if not ok then
      remove_handler(self._handlers, event, fn)
      error(err, 3)
    end
    self._main = err
  end
  return self
end

--- stream:on(event, fn): lifecycle events (connected, disconnected(reason, err),
-- reconnecting(attempt, delay), error(err)), noteUpdated({id, type, body}),
-- broadcasts (emojiAdded, ...) and every other name as an event of the main channel.
function Stream:on(event, fn) return listen(self, "on", event, fn, false) end

--- stream:once(event, fn): like on, for the next event only.
function Stream:once(event, fn) return listen(self, "once", event, fn, true) end

--- stream:off(event[, fn]) -> true if a handler was removed.
function Stream:off(event, fn)
  check_stream(self, "off")
  return remove_handler(self._handlers, event, fn)
end

local function check_note_id(fname, id)
  if type(id) ~= "string" or id == "" then
    error(("bad argument #1 to '%s' (note id expected, got %s)"):format(fname, type(id)), 3)
  end
end

--- stream:capture(note_id): noteUpdated events for that note. Counted: the
-- first capture sends subNote, and it lasts until as many uncaptures.
function Stream:capture(id)
  check_open(self, "capture")
  check_note_id("capture", id)
  local n = self._captures[id]
  if n then
    self._captures[id] = n + 1
    return n + 1
  end
  self._captures[id] = 1
  self._capture_order[#self._capture_order + 1] = id
  if self._ws then self:_send({ type = "subNote", body = { id = id } }) end
  return 1
end

--- stream:uncapture(note_id) -> the captures left; the last one sends unsubNote
-- (false when the note was not captured).
function Stream:uncapture(id)
  check_open(self, "uncapture")
  check_note_id("uncapture", id)
  local n = self._captures[id]
  if not n then return false end
  if n > 1 then
    self._captures[id] = n - 1
    return n - 1
  end
  self._captures[id] = nil
  for i = #self._capture_order, 1, -1 do
    if self._capture_order[i] == id then table.remove(self._capture_order, i) end
  end
  if self._ws then self:_send({ type = "unsubNote", body = { id = id } }) end
  return 0
end

-- A frame from the server.
function Stream:_frame(text)
  local msg = json.decode(text)
  if type(msg) ~= "table" then return end -- Misskey ignores non-JSON too
  local t, body = msg.type, msg.body
  if t == "channel" then -- most frames: the fast path
    if type(body) ~= "table" then return end
    local ch, event = self._channels[body.id], body.type
    if ch and type(event) == "string" then ch:_deliver(event, body.body, "live") end
  elseif type(t) ~= "string" then
    return
  elseif t == "connected" then
    local ch = type(body) == "table" and self._channels[body.id]
    if ch and not ch._confirmed then
      ch._confirmed = true
      ch:_fire_own("connected")
    end
  elseif t == "noteUpdated" then
    fire(self._handlers, "noteUpdated", body)
  else
    fire(self._handlers, t, body)
  end
end

-- Fetches what `ch` missed since its last id, then lets live events through.
function Stream:_backfill(ch)
  if ch._buffer then
    ch._again = true -- a backfill runs: it goes round once more
    return
  end
  ch._buffer = {}
  self:_spawn(function()
    repeat
      ch._again = false
      local since = ch._last
      for _ = 1, stream.MAX_PAGES do
        if ch._closed or self._closed then break end
        local params = {}
        for k, v in pairs(ch.params or {}) do params[k] = v end
        params.sinceId, params.limit = since, PAGE
        if ch._main then params.markAsRead = false end
        local page, _, err = self.client:request(ch._bf_endpoint, params)
        if not page then
          self:_fire_error(err)
          break
        end
        if type(page) ~= "table" then break end
        local items = {}
        for i = 1, #page do
          if type(page[i]) == "table" and type(page[i].id) == "string" then items[#items + 1] = page[i] end
        end
        -- sinceId alone pages oldest first (protocol.md 8); sorting makes sure.
        table.sort(items, function(a, b) return a.id < b.id end)
        for i = 1, #items do
          if self._closed then break end -- a handler closed the stream
          ch:_deliver(ch._bf_event, items[i], "backfill")
          if items[i].id > since then since = items[i].id end
        end
        if #page < PAGE then break end
      end
    until not ch._again or ch._closed or self._closed
    local buffer = ch._buffer
    ch._buffer = nil
    for i = 1, #buffer do
      if self._closed then break end
      ch:_deliver(buffer[i][1], buffer[i][2], "held")
    end
  end)
end

-- On a new socket: join every channel, capture every note, flush the outbox,
-- and backfill after a reconnect.
function Stream:_rejoin(reconnected)
  for i = 1, #self._order do self:_join(self._order[i]) end
  for i = 1, #self._capture_order do
    self:_send({ type = "subNote", body = { id = self._capture_order[i] } })
  end
  local outbox = self._outbox
  self._outbox = {}
  for i = 1, #outbox do self._ws:send(outbox[i]) end
  if reconnected and self._opts.backfill then
    for i = 1, #self._order do
      local ch = self._order[i]
      if ch._bf_endpoint and ch._last then self:_backfill(ch) end
    end
  end
end

-- Capped exponential backoff with jitter: a delay in [d/2, d], d = min * 2^(attempt-1) <= max.
function Stream:_delay(attempt, err)
  local b = self._opts.backoff
  if err and err.kind == "auth" then return b.max end -- a refused token: slowly, never a storm
  local d = math.min(b.max, b.min * 2 ^ math.min(attempt - 1, 30))
  return d / 2 + math.random() * d / 2
end

-- Reads until the socket is lost or the watchdog fires. ws:receive(t) times
-- out only after t seconds without any frame: a server PING restarts its wait,
-- so pings count as liveness.
--
-- Backpressure: handlers start at once (spawn_now), so a handler that does not
-- wait is done before the next frame is decoded; one that waits goes on as a
-- task. The socket's receive gives way to the scheduler (the engine steps,
-- ready tasks run) each time it has handed out what one read brought, so a
-- steady sender cannot starve those tasks, and events never pile up unrun.
function Stream:_read(ws)
  local got = false
  local watchdog = self._opts.watchdog
  while not self._closed do
    local text, msg, err = ws:receive(watchdog)
    if text then
      got = true
      self:_frame(text)
    elseif err and err.kind == "timeout" then
      return got, ("no frame for %g s (watchdog)"):format(watchdog), err
    else
      return got, msg, err
    end
  end
  return got
end

-- The reader task.
function Stream:_reader_main()
  local attempt = 0
  while not self._closed do
    local ws, msg, err = self.client._transport.websocket(self._req)
    if self._closed then
      if ws then ws:close(1000) end
      break
    end
    if ws then
      self._ws = ws
      self._gen = self._gen + 1
      self._connections = self._connections + 1
      local reconnected = self._connections > 1
      self:_rejoin(reconnected) -- before the handlers: what they send follows the connects
      fire(self._handlers, "connected")
      local got
      got, msg, err = self:_read(ws)
      if self._closed then break end
      self._ws = nil
      if got then attempt = 0 end
      ws:close(1001)
      msg = errors.scrub(msg or "closed", self._secrets)
      fire(self._handlers, "disconnected", msg, errors.scrub(err, self._secrets))
    else
      if not errors.is(err) then err = select(2, errors.new("network", tostring(msg))) end
      self:_fire_error(err)
    end
    if not self._opts.reconnect then
      self._failure = err
      break
    end
    if self._closed then break end -- by a handler (handlers start at once, in this task)
    attempt = attempt + 1
    local delay = self:_delay(attempt, err)
    fire(self._handlers, "reconnecting", attempt, delay)
    if self._closed then break end
    loop.sleep(delay)
  end
  self._reader = nil
end

--- stream:start() -> stream: spawns the reader task and returns (inside misskey.run).
function Stream:start()
  check_open(self, "start")
  if not self._reader then
    self._reader = loop.spawn(self._reader_main, self)
  end
  return self
end

--- stream:run() -> true | nil, msg, err: processes events until stream:close()
-- (or, with reconnect = false, until the socket is lost). Blocks in a plain
-- script; inside a task it waits there, other tasks running meanwhile.
function Stream:run()
  check_open(self, "run")
  self:start()
  local reader = self._reader
  if loop.current() then
    reader:join()
  else
    loop.run(function() reader:join() end)
  end
  local err = self._failure
  if err then return nil, err.message, err end
  return true
end

--- stream:close(): closes the socket (1000), stops reconnecting and ends run().
function Stream:close()
  check_stream(self, "close")
  if self._closed then return false end
  self._closed = true
  -- A task that is running (the caller, or one that started the caller's handler
  -- at once, as the reader does) is not cancelled: it sees _closed and ends by itself.
  for task in pairs(self._tasks) do
    if task.status ~= "running" then task:cancel() end
  end
  self._tasks = {}
  local reader = self._reader
  if reader and reader.status ~= "running" then
    reader:cancel()
    self._reader = nil
  end
  local ws = self._ws
  self._ws = nil
  if ws then
    ws:close(1000)
    fire(self._handlers, "disconnected", "closed")
  end
  return true
end

--- Is the socket open now?
function Stream:connected() return self._ws ~= nil end

stream.Stream, stream.Channel = Stream, Channel
return stream
