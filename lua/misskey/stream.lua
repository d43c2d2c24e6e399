--- misskey.stream: the Streaming API over one WebSocket (docs/protocol.md section 7).
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
local argcheck = require "misskey.argcheck"
local catalogue = require "misskey.catalogue"
local channels = require "misskey.channels"
local errors = require "misskey.errors"
local handlers = require "misskey.stream.handlers"
local json = require "misskey.json"
local loop = require "misskey.loop"
local positions = require "misskey.positions"
local seenset = require "misskey.seenset"
local signals = require "misskey.signals"
local taskset = require "misskey.taskset"

local stream = {}

--- One Streaming API connection (client:stream). The main channel's events, noteUpdated
--- and the broadcasts are typed in misskey-streaming.lua.
---@class misskey.Stream
---@field client misskey.Client
---@field channel fun(self: misskey.Stream, name: string, params?: table): misskey.stream.Channel # at most 32 channels
---@field on fun(self: misskey.Stream, event: "connected", handler: fun()): misskey.Stream
---@field on fun(self: misskey.Stream, event: "disconnected", handler: fun(reason: string, err?: misskey.Error)): misskey.Stream
---@field on fun(self: misskey.Stream, event: "reconnecting", handler: fun(attempt: integer, delay: number)): misskey.Stream
---@field on fun(self: misskey.Stream, event: "error", handler: fun(err: misskey.Error)): misskey.Stream
---@field on fun(self: misskey.Stream, event: "*", handler: fun(event: string, body: any)): misskey.Stream
---@field on fun(self: misskey.Stream, event: string, handler: fun(body: any)): misskey.Stream
---@field once fun(self: misskey.Stream, event: "connected", handler: fun()): misskey.Stream
---@field once fun(self: misskey.Stream, event: "disconnected", handler: fun(reason: string, err?: misskey.Error)): misskey.Stream
---@field once fun(self: misskey.Stream, event: "reconnecting", handler: fun(attempt: integer, delay: number)): misskey.Stream
---@field once fun(self: misskey.Stream, event: "error", handler: fun(err: misskey.Error)): misskey.Stream
---@field once fun(self: misskey.Stream, event: "*", handler: fun(event: string, body: any)): misskey.Stream
---@field once fun(self: misskey.Stream, event: string, handler: fun(body: any)): misskey.Stream
local Stream = { __name = "misskey.Stream" }
Stream.__index = Stream

--- Misskey ignores connects beyond 32 channels on one socket (since 2024.8.0).
stream.MAX_CHANNELS = 32
--- Backfill: at most this many pages of 100 per channel after a reconnect.
stream.MAX_PAGES = 10
--- Ids of backfilled items remembered per channel (at least the last SEEN; two
-- generations of SEEN each), so that a live event repeating one is dropped.
stream.SEEN = 1000
--- Live events held back per channel while its backfill runs. Beyond that (or
-- MAX_HELD_BYTES) a backfillable event is not held but fetched by one more
-- round of the backfill; any other is dropped and reported (`error`): a flood
-- cannot grow memory (stream/backfill.lua, Stream:_hold).
stream.MAX_HELD = 10000
--- Bytes of live events held back per channel while its backfill runs (their
-- JSON size, about): a message may be 16 MiB, so a count alone bounds nothing.
stream.MAX_HELD_BYTES = 16 * 1024 * 1024
--- Rounds of one backfill (a round pages from the last id delivered; a
-- reconnect or an overflow of held events during a round asks for another).
stream.MAX_ROUNDS = 3
--- Messages channel:send keeps while no socket is open.
stream.MAX_OUTBOX = 1000
--- Seconds between two writes of the positions file (and one more at close).
stream.SAVE_INTERVAL = 5
--- The largest `max_message` (bytes) a stream accepts.
stream.MAX_MESSAGE = 1024 * 1024 * 1024

-- The parts of the stream, each in a file of its own: a channel; the socket
-- (the reader, reconnects, joins, frames); backfills and positions. They read
-- the limits above from this module table, so a program may change them.
local Channel = require("misskey.stream.channel")(stream)
require("misskey.stream.connection")(Stream, stream)
local BACKFILL = require("misskey.stream.backfill")(Stream, stream)
local add_handler, remove_handler, fire = handlers.add, handlers.remove, handlers.fire

-- Events of the stream itself; every other name given to stream:on is an
-- event of the main channel (which it connects), except the broadcasts.
local LIFECYCLE = { connected = true, disconnected = true, reconnecting = true, error = true, noteUpdated = true }
local BROADCAST = { emojiAdded = true, emojiUpdated = true, emojiDeleted = true }

--- Options of client:stream.
---@class misskey.StreamOptions
---@field reconnect? boolean (default true)
---@field backoff? { min: number, max: number } seconds (default { min = 1, max = 60 })
---@field watchdog? number seconds without any frame before the socket is declared dead (default 120)
---@field confirm_timeout? number seconds for a channel's confirmation (default 10)
---@field backfill? boolean fetch what timeline channels missed after a reconnect (default true)
---@field max_message? integer the largest message accepted, in bytes (default 16 MiB)
---@field positions? string|table where the stream keeps its positions across restarts
---@field strict? boolean check channel names against Misskey's (default true; README "Streaming")

local OPTIONS = { reconnect = true, backoff = true, watchdog = true, confirm_timeout = true, backfill = true,
                  max_message = true, positions = true, strict = true }

-- Misskey's channel names (streaming.json's, generated into misskey.channels).
local KNOWN_CHANNELS = {}
for _, name in ipairs(channels.names) do KNOWN_CHANNELS[name] = true end

local argerror, opterror = argcheck.argerror, argcheck.opterror

-- client:stream(opts) -> stream.new -> here: level 3 (see misskey.argcheck).
local function check_options(opts)
  local L = 3
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then argerror(1, "stream", "options table expected, got " .. type(opts), L) end
  argcheck.known_options(opts, OPTIONS, L)
  for _, k in ipairs{ "reconnect", "backfill", "strict" } do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then opterror(k, "boolean expected, got " .. type(opts[k]), L) end
  end
  local backoff = { min = 1, max = 60 }
  if opts.backoff ~= nil then
    if type(opts.backoff) ~= "table" then opterror("backoff", "{ min = s, max = s } expected", L) end
    for k, v in pairs(opts.backoff) do
      if k ~= "min" and k ~= "max" then opterror("backoff", "unknown field '" .. tostring(k) .. "'", L) end
      local why = argcheck.seconds_problem(v)
      if why then opterror("backoff." .. k, why, L) end
      backoff[k] = v
    end
    if backoff.min > backoff.max then opterror("backoff", "min is greater than max", L) end
  end
  argcheck.seconds_option(opts, "watchdog", nil, L)
  argcheck.seconds_option(opts, "confirm_timeout", nil, L)
  local max = opts.max_message
  if max ~= nil and (type(max) ~= "number" or max ~= max or max < 1 or max % 1 ~= 0 or max > stream.MAX_MESSAGE) then
    opterror("max_message", ("an integer number of bytes from 1 to %d expected, got %s"):format(stream.MAX_MESSAGE,
      tostring(max)), L)
  end
  if opts.positions ~= nil and opts.positions ~= false and opts.backfill == false then
    opterror("positions", "positions are where backfills start: they need backfill = true", L)
  end
  return {
    reconnect = opts.reconnect ~= false,
    backfill = opts.backfill ~= false,
    backoff = backoff,
    watchdog = opts.watchdog or 120,
    confirm_timeout = opts.confirm_timeout or 10,
    max_message = max,
    positions = opts.positions,
    strict = opts.strict ~= false,
  }
end


-- ------------------------------------------------------------------------
-- Stream

-- `level`: see misskey.argcheck (1: called by the public function itself).
local function check_stream(self, fname, level)
  argcheck.self(self, Stream, "stream", fname, (level or 1) + 1)
end

local function check_open(self, fname, level)
  level = (level or 1) + 1
  check_stream(self, fname, level)
  if self._closed then error(("stream:%s: the stream is closed"):format(fname), level + 1) end
end

--- stream.new(client, opts) -> Stream (use client:stream(opts)).
function stream.new(client, opts)
  local o = check_options(opts)
  -- The upgrade request, and what errors must never carry: the token, and as the upgrade's target spells it.
  local req, secrets = client:streaming_request{ max_message = o.max_message }
  if not req then error("client:stream: " .. secrets, 3) end -- client:stream's caller
  local self = setmetatable({
    client = client,
    _req = req,
    _secrets = secrets,
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
    -- Read for every event: false rather than nil, so the read finds them here and does not
    -- go on to the class (a missing field costs a second table lookup per read on 5.4).
    _paused = false,
    _positions = false,
    _closed = false,
  }, Stream)
  if o.positions ~= nil and o.positions ~= false then
    local path, why = positions.path(o.positions, client)
    if not path then opterror("positions", why, 2) end
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

function Stream:_fire_error(err)
  errors.scrub(err, self._secrets) -- every field: a refused upgrade's reply may echo the target
  fire(self._running, self._handlers, "error", err)
end

-- Raises when the stream has no room for one more channel (`level`: see misskey.argcheck).
local function check_room(self, level)
  if #self._order >= stream.MAX_CHANNELS then
    error(("stream: at most %d channels per socket (Misskey ignores more); close one first")
      :format(stream.MAX_CHANNELS), (level or 1) + 2)
  end
end

function Stream:_new_channel(name, params, main)
  self._next_id = self._next_id + 1
  local ch = setmetatable({
    name = name, id = tostring(self._next_id), params = params, _stream = self, _handlers = {}, _main = main,
    _seen = seenset.new(),
    _buffer = false, -- read for every event (see stream.new's _paused)
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
  taskset.stop(ch._confirm)
  self._channels[ch.id] = nil
  for i = #self._order, 1, -1 do
    if self._order[i] == ch then table.remove(self._order, i) end
  end
  if self._main == ch then self._main = nil end
  if self._ws then self:_send({ type = "disconnect", body = { id = ch.id } }) end
end

-- A channel name that is not one of Misskey's. On Misskey (client:software(),
-- asked once per client) it is a mistake: raises, naming the nearest names. On
-- other software, which may add channels, it is the err of an error event.
local function unknown_channel(self, name)
  local suggestions = catalogue.nearest(name, channels.names)
  local what = ("unknown channel '%s'%s"):format(name, catalogue.did_you_mean(suggestions))
  local software = self.client:software()
  if software == "misskey" then
    argerror(1, "channel", what .. "; the stream option strict = false lets it through", 2)
  end
  local _, err = errors.new("invalid", ("stream: %s: not one of Misskey's channels, and the server runs %s "
    .. "(strict = false silences this)"):format(what, software or "unknown software"),
    { channel = name, suggestions = suggestions })
  return err
end

--- stream:channel(name[, params]) -> Channel. At most 32 channels per stream
-- (the main channel counts when something listens on it): the 33rd raises.
-- A name that is not one of Misskey's channels raises at once, with the nearest
-- names, when the server runs Misskey; on other software (forks add channels)
-- the channel is made and an `error` event says the same, unless the stream's
-- option `strict = false`.
---@param name string
---@param params? table the channel's parameters
---@return misskey.stream.Channel
function Stream:channel(name, params)
  check_open(self, "channel")
  if type(name) ~= "string" or not name:find("^%w+$") then
    argerror(1, "channel", "channel name expected, got " .. tostring(name))
  end
  if name == "main" then
    argerror(1, "channel", "the main channel is the stream's own: use stream:on(event, fn)")
  end
  if params ~= nil and type(params) ~= "table" then
    argerror(2, "channel", "params table expected, got " .. type(params))
  end
  local copy
  if params ~= nil then
    copy = {}
    for k, v in pairs(params) do copy[k] = v end
  end
  check_room(self)
  local unknown = not KNOWN_CHANNELS[name] and self._opts.strict and unknown_channel(self, name)
  local ch = self:_new_channel(name, copy, false)
  if unknown then
    -- A task, so that handlers added right after stream:channel() hear it too.
    self._tasks:spawn(function()
      if ch._closed then return end
      self:_fire_error(unknown)
      ch:_fire_own("error", unknown)
    end)
  end
  return ch
end

local function listen(self, fname, event, fn, once)
  check_open(self, fname, 2)
  add_handler(self._handlers, fname, event, fn, once, 2)
  if not LIFECYCLE[event] and not BROADCAST[event] and not self._main then
    if #self._order >= stream.MAX_CHANNELS then remove_handler(self._handlers, event, fn) end
    check_room(self, 2)
    self._main = self:_new_channel("main", nil, true)
  end
end

--- stream:on(event, fn): lifecycle events (connected, disconnected(reason, err),
-- reconnecting(attempt, delay), error(err)), noteUpdated({id, type, body}),
-- broadcasts (emojiAdded, ...) and every other name as an event of the main channel.
---@param event string
---@param fn function
---@return misskey.Stream
function Stream:on(event, fn)
  listen(self, "on", event, fn, false)
  return self
end

--- stream:once(event, fn): like on, for the next event only.
---@param event string
---@param fn function
---@return misskey.Stream
function Stream:once(event, fn)
  listen(self, "once", event, fn, true)
  return self
end

--- stream:off(event[, fn]) -> true if a handler was removed.
---@param event string
---@param fn? function
---@return boolean removed
function Stream:off(event, fn)
  check_stream(self, "off")
  return remove_handler(self._handlers, event, fn)
end

local function check_note_id(fname, id)
  if type(id) ~= "string" or id == "" then argerror(1, fname, "note id expected, got " .. type(id), 2) end
end

--- stream:capture(note_id): noteUpdated events for that note. Counted: the
-- first capture sends subNote, and it lasts until as many uncaptures.
---@param id string the note's id
---@return integer captures
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
---@param id string the note's id
---@return integer|false captures_left false when the note was not captured
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

--- stream:start() -> stream: spawns the reader task and returns (inside misskey.run).
---@return misskey.Stream
function Stream:start()
  check_open(self, "start")
  if not self._reader then
    self._reader = loop.spawn(self._reader_main, self)
  end
  return self
end

--- stream:run([{ stop_on = { "TERM", "INT" }, grace = 10 }]) -> true [, signal] | nil, msg, err:
-- processes events until stream:close() (or, with reconnect = false, until the
-- socket is lost). Blocks in a plain script; inside a task it waits there,
-- other tasks running meanwhile. `stop_on`: on one of those signals the stream
-- closes gracefully (close{ grace = grace }) and run returns true and the
-- signal's name.
---@param opts? { stop_on?: string[], grace?: number }
---@return boolean|nil ok
---@return string|nil signal_or_message
---@return misskey.Error|nil err
function Stream:run(opts)
  check_open(self, "run")
  local reader
  local ok, msg, err = signals.run("stream", opts, {
    start = function()
      self:start()
      reader = self._reader
    end,
    wait = function()
      if not reader then return end
      -- A reader that raised ended the stream: say so (run would otherwise return true).
      local _, _, err = reader:join()
      if reader.status == "failed" and not self._failure then self._failure = errors.scrub(err, self._secrets) end
    end,
    stop = function(grace) self:close{ grace = grace } end,
    failure = function() return self._failure end,
  })
  return ok, msg, err
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
    argerror(1, "close", "options table expected, got " .. type(opts))
  end
  argcheck.known_options(opts or {}, CLOSE_OPTIONS)
  local grace = argcheck.seconds_option(opts or {}, "grace")
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
---@return boolean
function Stream:connected() return self._ws ~= nil end

--- stream:stats() -> counts of what the stream holds, all bounded: channels,
-- captures (notes), tasks (confirm timers, starting points, backfills, the
-- positions writer), handlers (handler tasks still running), seen (ids
-- remembered against repeats), held and held_bytes (live events held back
-- during backfills, and their size), backfills (running now), outbox, connections (sockets opened so far).
---@return table<string, integer>
function Stream:stats()
  check_stream(self, "stats")
  local seen, held, held_bytes, backfills = 0, 0, 0, 0
  for i = 1, #self._order do
    local ch = self._order[i]
    seen = seen + seenset.count(ch._seen)
    if ch._buffer then
      held, held_bytes, backfills = held + #ch._buffer, held_bytes + ch._held_bytes, backfills + 1
    end
  end
  return {
    channels = #self._order, captures = #self._capture_order, tasks = self._tasks:count(),
    handlers = self._running:count(), seen = seen, held = held, held_bytes = held_bytes, backfills = backfills,
    outbox = #self._outbox, connections = self._connections,
  }
end

stream.Stream, stream.Channel = Stream, Channel
return stream
