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
-- and delivered before the live events that arrived during the fetch. Each
-- such channel gets a starting point when it first joins (the newest id then,
-- or the smallest id of the server's time), so a quiet one is backfilled too;
-- with `positions`, the starting points survive a restart (misskey.positions).
local errors = require "misskey.errors"
local ids = require "misskey.id"
local json = require "misskey.json"
local loop = require "misskey.loop"
local positions = require "misskey.positions"
local signals = require "misskey.signals"
local taskset = require "misskey.taskset"

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
-- The longest id taken as a position (every id method makes at most 26 characters).
local MAX_ID = 64
--- Ids of backfilled items remembered per channel (at least the last SEEN; two
-- generations of SEEN each), so that a live event repeating one is dropped.
stream.SEEN = 1000
--- Live events held back per channel while its backfill runs. Beyond that a
-- backfillable event is dropped and fetched by one more round of the backfill;
-- any other is dropped and reported (`error`): a flood cannot grow memory.
stream.MAX_HELD = 10000
--- Rounds of one backfill (a round pages from the last id delivered; a
-- reconnect or an overflow of held events during a round asks for another).
stream.MAX_ROUNDS = 3
--- Messages channel:send keeps while no socket is open.
stream.MAX_OUTBOX = 1000
--- Seconds between two writes of the positions file (and one more at close).
stream.SAVE_INTERVAL = 5
--- The largest `max_message` (bytes) a stream accepts.
stream.MAX_MESSAGE = 1024 * 1024 * 1024

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

local OPTIONS = { reconnect = true, backoff = true, watchdog = true, confirm_timeout = true, backfill = true,
                  max_message = true, positions = true }

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
  local max = opts.max_message
  if max ~= nil and (type(max) ~= "number" or max ~= max or max < 1 or max % 1 ~= 0 or max > stream.MAX_MESSAGE) then
    opterror("max_message", ("an integer number of bytes from 1 to %d expected, got %s"):format(stream.MAX_MESSAGE,
      tostring(max)))
  end
  if opts.positions ~= nil and opts.positions ~= false and opts.backfill == false then
    opterror("positions", "positions are where backfills start: they need backfill = true")
  end
  return {
    reconnect = opts.reconnect ~= false,
    backfill = opts.backfill ~= false,
    backoff = backoff,
    watchdog = opts.watchdog or 120,
    confirm_timeout = opts.confirm_timeout or 10,
    max_message = max,
    positions = opts.positions,
  }
end

local function seconds_or_nil(v, name)
  if v ~= nil then check_seconds(v, name) end
  return v
end

local function pct(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- A bounded set of ids in two generations: once the newer holds SEEN ids it
-- becomes the older and the older is dropped whole (seven times cheaper than a
-- ring whose every insert also deletes: Lua tables rehash under that churn).
local function seen_new() return { cur = {}, old = {}, n = 0, oldn = 0 } end
local function seen_has(s, id)
  return s.n > 0 and (s.cur[id] or s.old[id]) or false
end
local function seen_add(s, id)
  local cur, n = s.cur, s.n + 1
  if n > stream.SEEN then
    s.old, s.oldn, cur, n = cur, s.n, {}, 1
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
-- next starts and costs no coroutine; one that waits goes on as a task meanwhile,
-- kept in `running` (a task set) so a graceful close can wait for it.
local function fire(running, handlers, event, ...)
  local list = handlers[event]
  if not list then return end
  for i = 1, #list do
    local h = list[i]
    if h.once and not remove_entry(handlers, event, function(e) return e == h end) then
      h = nil -- a once handler already run (by an event its own handler fired)
    end
    if h then
      local task = spawn_now(h.fn, ...)
      local st = task.status
      if st == "waiting" or st == "ready" then running:add(task) end
    end
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
  local st = self._stream
  local handlers = self._main and st._handlers or self._handlers
  fire(st._running, handlers, event, ...)
  if handlers["*"] then fire(st._running, handlers, "*", event, ...) end
end

-- A channel event. `source`: "live" (from the socket; held back while a
-- backfill runs), "backfill" (an item a backfill fetched) or "held" (a live
-- event held back, delivered after the backfill). Only backfilled ids are
-- remembered: a backfill asks for ids above the greatest one delivered
-- (`_last`), so it can only repeat live events that came during or just after
-- it, and those are checked against what it delivered. Recording every live id
-- too cost ~1 us per event on 5.4 (cache misses in a table of 1000 ids).
function Channel:_deliver(event, body, source)
  local st = self._stream
  if source == "live" then
    if st._paused then return end -- stopping: not delivered, so positions stay before it
    local buffer = self._buffer
    if buffer then
      if #buffer < stream.MAX_HELD then
        buffer[#buffer + 1] = { event, body }
      elseif event == self._bf_event then
        self._again = true -- the backfill's next round fetches it
      else
        self._dropped = (self._dropped or 0) + 1
      end
      return
    end
  end
  if event == self._bf_event and type(body) == "table" then
    local id = body.id
    if type(id) == "string" then
      local seen = self._seen
      if seen_has(seen, id) then return end
      if source == "backfill" then seen_add(seen, id) end
      local last = self._last
      if (last == nil or id > last) and #id <= MAX_ID then
        self._last = id
        if st._positions and not st._save_due then st:_schedule_save() end
      end
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

-- Cancels a task that waits (a confirm timer, a mark, a backfill); a running or
-- finished one is left alone.
local function stop_task(task)
  if task and (task.status == "waiting" or task.status == "ready") then task:cancel() end
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
  local self = setmetatable({
    client = client,
    _req = {
      url = url, headers = headers, timeout = client._timeout or 30, connect_timeout = client._connect_timeout,
      ca_file = http.ca_file, insecure = http.insecure, max_message = o.max_message,
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
    _tasks = taskset.new(),   -- confirm timers, starting points, backfills, the saver: cancelled by close()
    _running = taskset.new(), -- handlers that waited: a graceful close waits for them
    _next_id = 0,
    _gen = 0,        -- connection generation
    _connections = 0,
  }, Stream)
  if o.positions ~= nil and o.positions ~= false then
    local path, why = positions.path(o.positions, client)
    if not path then opterror("positions", why) end
    self._positions = path
    local saved, msg, err = positions.load(path, client.base_url)
    self._saved = saved or {}
    if not saved then self._load_error = err or select(2, errors.new("invalid", tostring(msg))) end
  end
  return self
end

function Stream:__tostring()
  return ("misskey.Stream (%s, %d channels%s)"):format(self._req.url:gsub("%?i=.*$", ""), #self._order,
    self._closed and ", closed" or self._ws and ", open" or "")
end

-- Hands an event to the client's observer (on_event), if there is one.
function Stream:_emit(event)
  local c = self.client
  if type(c.observed) == "function" and c:observed() then c:emit(event) end
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
  if #self._outbox >= stream.MAX_OUTBOX then
    return errors.fail("network", ("stream: not connected, and %d messages already wait for the socket")
      :format(stream.MAX_OUTBOX), { outbox = stream.MAX_OUTBOX })
  end
  self._outbox[#self._outbox + 1] = text
  return true
end

-- Sends `connect` (pong = true) and starts the confirm timer of this connection
-- (cancelled by the confirmation, and when the connection is lost).
function Stream:_join(ch)
  local body = { channel = ch.name, id = ch.id, pong = true }
  if ch.params ~= nil then body.params = ch.params end
  ch._confirmed = false
  self:_send({ type = "connect", body = body }, "params")
  local gen, limit = self._gen, self._opts.confirm_timeout
  stop_task(ch._confirm)
  ch._confirm = self._tasks:spawn(function()
    loop.sleep(limit)
    ch._confirm = nil
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
  if not self._main then fire(self._stream._running, self._handlers, event, ...) end
end

function Stream:_fire_error(err)
  errors.scrub(err, self._secrets) -- every field: a refused upgrade's reply may echo the target
  fire(self._running, self._handlers, "error", err)
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
  if ch._bf_endpoint and self._positions then
    ch._key = positions.key(main and "main" or name, params)
    local saved = self._saved[ch._key]
    if saved then ch._last, ch._restored = saved, true end
  end
  self._channels[ch.id] = ch
  self._order[#self._order + 1] = ch
  if self._ws then self:_join(ch) end
  return ch
end

function Stream:_drop(ch)
  ch._closed = true
  stop_task(ch._confirm)
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
  elseif type(t) ~= "string" or self._paused then
    return
  elseif t == "connected" then
    local ch = type(body) == "table" and self._channels[body.id]
    if ch and not ch._confirmed then
      ch._confirmed = true
      stop_task(ch._confirm)
      ch._confirm = nil
      if ch._bf_endpoint and ch._last == nil and not ch._no_start and self._opts.backfill then self:_mark(ch) end
      ch:_fire_own("connected")
    end
  elseif t == "noteUpdated" then
    fire(self._running, self._handlers, "noteUpdated", body)
  else
    fire(self._running, self._handlers, t, body)
  end
end

-- The params of a backfill request of `ch`: its own, and markAsRead = false for notifications.
local function bf_params(ch, limit)
  local params = {}
  for k, v in pairs(ch.params or {}) do params[k] = v end
  params.limit = limit
  if ch._main then params.markAsRead = false end
  return params
end

-- An id of this server, to tell its id method: one a channel delivered, else
-- the account's own (`i`), else a user's (`users`, for an anonymous stream).
function Stream:_id_sample()
  for i = 1, #self._order do
    local last = self._order[i]._last
    if ids.method(last) then return last end
  end
  if self._sample then return self._sample end
  local found
  if self._token then
    local me = self.client:request("i")
    found = type(me) == "table" and me.id
  else
    local users = self.client:request("users", { limit = 1 })
    found = type(users) == "table" and type(users[1]) == "table" and users[1].id
  end
  if ids.method(found) then self._sample = found end
  return self._sample
end

-- Where a backfill of `ch` would start if nothing arrived before the next
-- reconnect: the newest id the channel's endpoint has now, or, when it has
-- none yet, the smallest id of the server's time (`ping`) in the server's id
-- method. -> id, source ("newest" | "server_time") | nil, "none" (the server's id
-- method is unknown) | nil, msg, err
function Stream:_starting_point(ch)
  local page, msg, err = self.client:request(ch._bf_endpoint, bf_params(ch, 1))
  if page == nil then return nil, msg, err end
  local newest
  if type(page) == "table" then
    for i = 1, #page do
      local id = type(page[i]) == "table" and page[i].id
      if type(id) == "string" and #id <= MAX_ID and id:find("^%w+$") and (newest == nil or id > newest) then
        newest = id
      end
    end
  end
  if newest then return newest, "newest" end
  local pong
  pong, msg, err = self.client:request("ping")
  if pong == nil then return nil, msg, err end
  local ms = type(pong) == "table" and tonumber(pong.pong)
  if not ms or ms ~= ms or ms < 0 or ms == math.huge then
    return errors.fail("decode", "stream: ping gave no server time", { endpoint = "ping" })
  end
  local method = ids.method(self:_id_sample())
  if not method then return nil, "none" end -- ids of no known shape: no way to make one
  return ids.at(method, ms), "server_time"
end

-- Takes `ch`'s starting point (after its first confirmation, so that whatever
-- comes after it is either delivered live or found by a backfill).
function Stream:_mark(ch)
  if ch._marking then return end
  ch._marking = true
  self._tasks:spawn(function()
    local id, source, err = self:_starting_point(ch)
    ch._marking = nil
    if id then
      if ch._last == nil or id > ch._last then
        ch._last = id
        if self._positions and not self._save_due then self:_schedule_save() end
      end
      self:_emit{ type = "position", channel = ch.name, channel_id = ch.id, id = id, source = source }
    elseif source == "none" then
      -- Not a failure of the stream: only a quiet channel's outage goes unfetched, as before.
      ch._no_start = true
      self:_emit{ type = "position", channel = ch.name, channel_id = ch.id, source = "none" }
    elseif not self._closed and not ch._closed then
      -- The server refused (a permission the token lacks, say): asking again on
      -- every reconnect would only repeat it. A network failure is retried.
      if type(err) == "table" and (err.kind == "api" or err.kind == "decode") then ch._no_start = true end
      self:_fire_error(err)
    end
    loop.signal(ch) -- a backfill that waits for this starting point
  end)
end

-- Fetches what `ch` missed since its last id, then lets live events through.
-- Pages `sinceId` forward (oldest first) until an empty page or one with
-- nothing beyond the cursor: a short page is not the end (servers drop muted
-- or hidden notes after the query). At most MAX_PAGES per round.
function Stream:_backfill(ch, reason)
  if ch._buffer then
    ch._again = true -- a backfill runs: it goes round once more
    return
  end
  ch._buffer = {}
  self._tasks:spawn(function()
    if ch._last == nil and ch._marking then
      loop.wait_event(ch, 300) -- the starting point is on its way (its requests have their own timeouts)
    end
    local first, count, pages, truncated, failure = ch._last, 0, 0, false, nil
    local rounds = 0
    while ch._last ~= nil and rounds < stream.MAX_ROUNDS do
      rounds = rounds + 1
      ch._again = false
      local since = ch._last
      local ended = false -- by an empty page or one without progress (not by MAX_PAGES)
      for _ = 1, stream.MAX_PAGES do
        if ch._closed or self._closed or self._paused then ended = true break end
        local params = bf_params(ch, PAGE)
        params.sinceId = since
        local page, _, err = self.client:request(ch._bf_endpoint, params)
        pages = pages + 1
        if not page then
          failure = err
          self:_fire_error(err)
          ended = true
          break
        end
        if type(page) ~= "table" then ended = true break end
        local items = {}
        for i = 1, #page do
          local id = type(page[i]) == "table" and page[i].id
          -- an id not beyond the cursor: the server ignored it
          if type(id) == "string" and id > since then items[#items + 1] = page[i] end
        end
        if #items == 0 then ended = true break end -- empty, or no progress: the end
        -- sinceId alone pages oldest first (protocol.md 8); sorting makes sure.
        table.sort(items, function(a, b) return a.id < b.id end)
        for i = 1, #items do
          if self._closed or self._paused then break end -- a handler closed the stream
          ch:_deliver(ch._bf_event, items[i], "backfill")
          count = count + 1
          if items[i].id > since then since = items[i].id end
        end
      end
      truncated = not ended -- what came after the last page is not delivered
      if failure or not ch._again or ch._closed or self._closed or self._paused then break end
    end
    local buffer, dropped = ch._buffer, ch._dropped
    ch._buffer, ch._dropped = nil, nil
    self:_emit{ type = "backfill", channel = ch.name, channel_id = ch.id, endpoint = ch._bf_endpoint,
      reason = reason, since_id = first, last_id = ch._last, count = count, pages = pages,
      truncated = truncated or nil, held = #buffer, error = failure and failure.message or nil }
    for i = 1, #buffer do
      if self._closed or self._paused then break end
      ch:_deliver(buffer[i][1], buffer[i][2], "held")
    end
    if dropped and not self._closed then
      self:_fire_error(select(2, errors.new("invalid", ("stream: %d events of channel %q dropped while its backfill"
        .. " ran (more than %d held)"):format(dropped, ch.name, stream.MAX_HELD), { channel = ch.name })))
    end
  end)
end

-- On a new socket: join every channel, capture every note, flush the outbox,
-- and backfill after a reconnect (or, for positions read from the file, on the first).
function Stream:_rejoin(reconnected)
  for i = 1, #self._order do self:_join(self._order[i]) end
  for i = 1, #self._capture_order do
    self:_send({ type = "subNote", body = { id = self._capture_order[i] } })
  end
  local outbox = self._outbox
  self._outbox = {}
  for i = 1, #outbox do self._ws:send(outbox[i]) end
  if self._opts.backfill then
    for i = 1, #self._order do
      local ch = self._order[i]
      if ch._bf_endpoint and (reconnected and (ch._last or ch._marking) or ch._restored) then
        self:_backfill(ch, ch._restored and not reconnected and "restart" or "reconnect")
      end
      ch._restored = nil
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
  if self._load_error then
    local err = self._load_error
    self._load_error = nil
    self:_fire_error(err)
  end
  while not self._closed and not self._paused do
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
      fire(self._running, self._handlers, "connected")
      local got
      got, msg, err = self:_read(ws)
      if self._closed then break end
      self._ws = nil
      -- This connection's confirm timers end with it (they would otherwise sleep on).
      for i = 1, #self._order do
        local ch = self._order[i]
        stop_task(ch._confirm)
        ch._confirm = nil
      end
      if got then attempt = 0 end
      ws:close(1001)
      msg = errors.scrub(msg or "closed", self._secrets)
      fire(self._running, self._handlers, "disconnected", msg, errors.scrub(err, self._secrets))
    else
      if not errors.is(err) then err = select(2, errors.new("network", tostring(msg))) end
      self:_fire_error(err)
      msg = err.message
    end
    if not self._opts.reconnect then
      self._failure = err
      break
    end
    if self._closed or self._paused then break end -- by a handler (handlers start at once, in this task)
    attempt = attempt + 1
    local delay = self:_delay(attempt, err)
    self:_emit{ type = "reconnect", attempt = attempt, delay = delay, reason = msg,
      kind = type(err) == "table" and err.kind or nil, connections = self._connections }
    fire(self._running, self._handlers, "reconnecting", attempt, delay)
    if self._closed or self._paused then break end
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

local RUN_OPTIONS = { stop_on = true, grace = true }

--- stream:run([{ stop_on = { "TERM", "INT" }, grace = 10 }]) -> true [, signal] | nil, msg, err:
-- processes events until stream:close() (or, with reconnect = false, until the
-- socket is lost). Blocks in a plain script; inside a task it waits there,
-- other tasks running meanwhile. `stop_on`: on one of those signals the stream
-- closes gracefully (close{ grace = grace }) and run returns true and the
-- signal's name.
---@param opts? { stop_on?: string[], grace?: number }
---@return boolean|nil ok
---@return string|nil signal_or_message
---@return table|nil err
function Stream:run(opts)
  check_open(self, "run")
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'run' (options table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not RUN_OPTIONS[k] then opterror(tostring(k), "unknown option") end
  end
  local stop_on = signals.check(opts.stop_on, "stop_on")
  local grace = seconds_or_nil(opts.grace, "grace") or 10
  local watcher
  if stop_on then
    local why
    watcher, why = signals.watch(stop_on, function() self:close{ grace = grace } end)
    if not watcher then error("stream:run: " .. why, 2) end
  end
  self:start()
  local reader = self._reader
  local function wait()
    if reader then
      -- A reader that raised ended the stream: say so (run would otherwise return true).
      local _, _, err = reader:join()
      if reader.status == "failed" and not self._failure then self._failure = errors.scrub(err, self._secrets) end
    end
    if watcher then watcher:close() end
  end
  if loop.current() then wait() else loop.run(wait) end
  local err = self._failure
  if err then return nil, err.message, err end
  return true, watcher and watcher.fired or nil
end

--- stream:pause(): stops delivering events (a graceful stop's first step):
-- frames are still read but dropped, so saved positions stay at the last event
-- delivered and a restart backfills the rest; backfills stop, no reconnect.
-- Only close() follows.
---@return boolean
function Stream:pause()
  check_stream(self, "pause")
  if self._paused or self._closed then return false end
  self._paused = true
  self._tasks:cancel(loop.current())
  return true
end

-- Writes the positions file now (no-op without positions).
function Stream:_save_positions()
  if not self._positions then return true end
  local map, n = {}, 0
  for i = 1, #self._order do
    local ch = self._order[i]
    if ch._key and ch._last and not map[ch._key] then map[ch._key], n = ch._last, n + 1 end
  end
  for k, v in pairs(self._saved) do -- channels of earlier runs stay, as room allows
    if n >= positions.MAX_KEYS then break end
    if not map[k] then map[k], n = v, n + 1 end
  end
  self._saved = map
  local ok, msg, err = positions.save(self._positions, self.client.base_url, map)
  if not ok then
    self:_fire_error(err or select(2, errors.new("invalid", tostring(msg))))
    return nil, msg, err
  end
  return true
end

-- One write of the positions file at most every SAVE_INTERVAL seconds.
function Stream:_schedule_save()
  self._save_due = true
  self._tasks:spawn(function()
    loop.sleep(stream.SAVE_INTERVAL)
    self._save_due = false
    if not self._closed then self:_save_positions() end
  end)
end

local CLOSE_OPTIONS = { grace = true }

--- stream:close([{ grace = seconds }]) -> true (false if already closed):
-- closes the socket (1000), stops reconnecting, saves positions and ends run().
-- With `grace`: first stops delivering events (pause), then lets handlers that
-- are still running finish for up to `grace` seconds (cancelling the rest);
-- this waits, yielding in a task and blocking in a plain script.
---@param opts? { grace?: number }
---@return boolean
function Stream:close(opts)
  check_stream(self, "close")
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'close' (options table expected, got " .. type(opts) .. ")", 2)
  end
  for k in pairs(opts or {}) do
    if not CLOSE_OPTIONS[k] then opterror(tostring(k), "unknown option") end
  end
  local grace = seconds_or_nil(opts and opts.grace, "grace")
  if self._closed then return false end
  local current = loop.current()
  if grace then
    self:pause()
    if not self._running:wait(grace, current) then self._running:cancel(current) end
    if self._closed then return false end -- closed meanwhile
  end
  self._closed = true
  -- A task that is running (the caller, or one that started the caller's handler
  -- at once, as the reader does) is not cancelled: it sees _closed and ends by itself.
  self._tasks:cancel(current)
  local reader = self._reader
  if reader and reader.status ~= "running" then
    reader:cancel()
    self._reader = nil
  end
  self:_save_positions()
  local ws = self._ws
  self._ws = nil
  if ws then
    ws:close(1000)
    fire(self._running, self._handlers, "disconnected", "closed")
  end
  return true
end

--- Is the socket open now?
function Stream:connected() return self._ws ~= nil end

--- stream:stats() -> counts of what the stream holds, all bounded: channels,
-- captures (notes), tasks (confirm timers, starting points, backfills, the
-- positions writer), handlers (handler tasks still running), seen (ids
-- remembered against repeats), held (live events held back during backfills),
-- backfills (running now), outbox, connections (sockets opened so far).
---@return table
function Stream:stats()
  check_stream(self, "stats")
  local seen, held, backfills = 0, 0, 0
  for i = 1, #self._order do
    local ch = self._order[i]
    seen = seen + ch._seen.n + ch._seen.oldn
    if ch._buffer then
      held, backfills = held + #ch._buffer, backfills + 1
    end
  end
  return {
    channels = #self._order, captures = #self._capture_order, tasks = self._tasks:count(),
    handlers = self._running:count(), seen = seen, held = held, backfills = backfills, outbox = #self._outbox,
    connections = self._connections,
  }
end

stream.Stream, stream.Channel = Stream, Channel
return stream
