--- misskey.bot: a bot framework over the streaming API.
--
--   local bot = misskey.bot(client)
--   bot:command("ping", function(ctx, args) ctx:reply("pong") end)   -- "@bot ping a b" -> args {"a","b"}
--   bot:on("followed", function(ctx, user) ... end)
--   bot:run()                                                       -- until bot:stop()
--
-- One stream (client:stream()) carries the main channel (mention, reply,
-- renote, follow, followed, unfollow, notification), homeTimeline when
-- something listens on "note", and noteUpdated for captured notes ("reacted").
-- Webhook deliveries are a second source, or the only one with
-- `stream = false` (bot:webhook, misskey.bot.webhook).
-- Every handler runs in a task of its own, so it may call the API, sleep and
-- wait_for. The bot asks `i` at start, ignores what it did itself, and handles
-- an event seen twice (two channels, a backfill) once.
local argcheck = require "misskey.argcheck"
local core = require "misskey.core"
local errors = require "misskey.errors"
local loop = require "misskey.loop"
local seenset = require "misskey.seenset"
local signals = require "misskey.signals"
local taskset = require "misskey.taskset"

local bot = {}

--- A bot over the streaming API (misskey.bot(client, opts)).
---@class misskey.Bot
---@field client misskey.Client
---@field me? misskey.MeDetailed the bot's own user, once started (`i`)
---@field store misskey.bot.Store the bot's keys in Misskey's registry
local Bot = { __name = "misskey.Bot" }
Bot.__index = Bot

--- The registry scope of bot.store (Misskey allows [a-zA-Z0-9_] in scope names).
bot.SCOPE = { "misskey_lua_bot" }
--- Events remembered to drop duplicates (between SEEN and 2 * SEEN of the latest).
bot.SEEN = 2000
--- Notes captured at once at most (bot:capture); capturing one more releases the oldest.
bot.MAX_CAPTURES = 1000
--- Users remembered per command with a cooldown: beyond this, entries whose
-- cooldown has passed are dropped (they would allow a run anyway).
bot.MAX_COOLDOWNS = 256
--- The name of the bot's webhook on the account (bot:webhook's `name`).
bot.WEBHOOK_NAME = "misskey-lua-bot"
--- Seconds the bot's handlers get to finish when an event source fails under
-- it (its `error` handlers see the failure), before bot:run returns it.
bot.FAILURE_GRACE = 5

-- Main channel events the bot listens to; their payloads.
local MAIN = { mention = "note", reply = "note", renote = "note", follow = "user", followed = "user",
               unfollow = "user", notification = "notification", chat = "chat" }
-- Bot event -> the main channel's event name, where they differ.
local WIRE = { chat = "newChatMessage" }
local EVENTS = { mention = true, reply = true, renote = true, follow = true, followed = true, unfollow = true,
                 notification = true, note = true, reacted = true, ready = true, error = true, command = true,
                 chat = true }
bot.EVENTS = EVENTS

--- Options of misskey.bot.
---@class misskey.BotOptions
---@field help? boolean false: no generated "help" command
---@field timeline? misskey.ChannelName|string the channel of "note" events (default "homeTimeline")
---@field stream? misskey.StreamOptions options for client:stream
---@field positions? boolean|string|table where the bot stopped, kept across restarts (client:stream's `positions`)
---@field clock? fun(): number seconds, for cooldowns and capture ttl (default: a monotonic clock)

local OPTIONS = { help = true, stream = true, timeline = true, clock = true, positions = true }
local COMMAND_OPTIONS = { cooldown = true, description = true }
local CAPTURE_OPTIONS = { ttl = true }
local STOP_OPTIONS = { grace = true }

-- The bot's other parts, each in a file of its own: ctx and bot.store; what
-- an event does (dispatch: handlers, waiters, commands). They read the limits
-- above from this module table, so a program may change them.
local Context, Store = require("misskey.bot.context")(bot)
require("misskey.bot.dispatch")(Bot, bot, MAIN, Context)
require("misskey.bot.webhook")(Bot, bot)

local argerror, opterror = argcheck.argerror, argcheck.opterror

local function check_self(self, fname)
  argcheck.self(self, Bot, "bot", fname, 2)
end

local monotonic = core.now

--- misskey.bot(client[, opts]) -> Bot. Options:
--   help      false: no generated "help" command (default: one, unless you define "help")
--   timeline  the channel of "note" events (default "homeTimeline")
--   stream    options for client:stream; false: no stream, the bot takes webhook
--             deliveries only (bot:webhook)
--   positions where the bot stopped, kept across restarts: true, a name or a path
--             (client:stream's `positions`; README "Events, positions and stopping")
--   clock     function() -> seconds, for cooldowns and capture ttl (default: a monotonic clock)
---@param client misskey.Client
---@param opts? misskey.BotOptions
---@return misskey.Bot
function bot.new(client, opts)
  local L = 2 -- misskey.bot -> bot.new (see misskey.argcheck)
  if type(client) ~= "table" or type(client.request) ~= "function" then
    argerror(1, "bot", "a misskey client expected, got " .. type(client), L)
  end
  if opts ~= nil and type(opts) ~= "table" then argerror(2, "bot", "options table expected", L) end
  opts = opts or {}
  argcheck.known_options(opts, OPTIONS, L)
  if opts.clock ~= nil and type(opts.clock) ~= "function" then
    opterror("clock", "function expected", L)
  end
  if opts.timeline ~= nil and (type(opts.timeline) ~= "string" or opts.timeline == "main") then
    opterror("timeline", "a timeline channel name expected", L)
  end
  if opts.stream ~= nil and opts.stream ~= false and type(opts.stream) ~= "table" then
    opterror("stream", "options table (or false: webhooks only) expected", L)
  end
  if opts.stream == false and opts.positions ~= nil and opts.positions ~= false then
    opterror("positions", "positions are the stream's: a bot with stream = false has none", L)
  end
  if opts.positions ~= nil and opts.positions ~= false then
    local ok, why = require("misskey.positions").path(opts.positions, client)
    if not ok then opterror("positions", why, L) end
  end
  local self = setmetatable({
    client = client,
    _opts = opts,
    _clock = opts.clock or monotonic,
    _handlers = {},   -- event -> { fn, ... }
    _commands = {},   -- in registration order: { name, pattern?, fn, cooldown, description, last = {} }
    _waiters = {},    -- event -> { waiter, ... }
    _timers = {},     -- { seconds, fn }
    _tasks = taskset.new(),        -- handler and command tasks: stop waits for them (grace), then cancels
    _timer_tasks = taskset.new(),  -- the loops of bot:every
    _seen = seenset.new(),
    _captured = {},       -- note id -> { expires = clock time or nil }
    _capture_order = {},  -- captured note ids, oldest first
    _stopsig = {},
  }, Bot)
  self.store = setmetatable({ _bot = self }, Store)
  return self
end

function Bot:__tostring()
  return ("misskey.Bot (%s%s)"):format(self.me and ("@" .. self.me.username) or "not started",
    self._stopped and ", stopped" or self._running and ", running" or "")
end

-- Spawns fn(...) as a task the bot tracks (stop waits for it, then cancels it).
function Bot:_spawn(fn, ...)
  return self._tasks:spawn(fn, ...)
end

-- ------------------------------------------------------------------------
-- listeners

--- bot:on(event, fn): fn(ctx, payload) in a task of its own for each event:
-- mention, reply, renote, note (timeline; payload the note), follow, followed,
-- unfollow (payload the user), notification (the notification), chat (a chat
-- message: newChatMessage on the main channel; ctx.user is its sender), reacted
-- ({ note_id, reaction, userId } on captured notes), command (ctx, name), ready (ctx, me), error (ctx, err).
---@param event "mention"|"reply"|"renote"|"note"|"follow"|"followed"|"unfollow"|"notification"|"chat"|"reacted"|"command"|"ready"|"error"
---@param fn fun(ctx: misskey.bot.Context, payload: any)
---@return misskey.Bot
function Bot:on(event, fn)
  check_self(self, "on")
  if not EVENTS[event] then argerror(1, "on", "unknown bot event " .. tostring(event)) end
  if type(fn) ~= "function" then argerror(2, "on", "function expected, got " .. type(fn)) end
  local list = self._handlers[event] or {}
  self._handlers[event] = list
  list[#list + 1] = fn
  if event == "note" and self._stream then self:_open_timeline() end
  return self
end

--- bot:command(name | pattern, fn[, { cooldown = s, description = text }]):
-- fn(ctx, args) for mentions "@bot name a "b c"" (args {"a", "b c"}). A name of
-- letters, digits, _ and - matches the first word (case-insensitive); anything
-- else is a Lua pattern matched against the text after the mentions, and its
-- captures are the args. cooldown: seconds between two runs per user.
---@param name string a command name, or a Lua pattern
---@param fn fun(ctx: misskey.bot.Context, args: string[])
---@param opts? { cooldown?: number, description?: string }
---@return misskey.Bot
function Bot:command(name, fn, opts)
  check_self(self, "command")
  if type(name) ~= "string" or name == "" then argerror(1, "command", "command name or pattern expected") end
  if type(fn) ~= "function" then argerror(2, "command", "function expected, got " .. type(fn)) end
  if opts ~= nil and type(opts) ~= "table" then argerror(3, "command", "options table expected") end
  opts = opts or {}
  argcheck.known_options(opts, COMMAND_OPTIONS)
  argcheck.wait_option(opts, "cooldown")
  local plain = name:find("^[%w_%-]+$") ~= nil
  self._commands[#self._commands + 1] = {
    name = plain and name:lower() or nil, pattern = not plain and name or nil, fn = fn,
    cooldown = opts.cooldown, description = opts.description, last = {},
  }
  return self
end

--- bot:every(seconds, fn): fn(ctx) every `seconds` (the first run after one period), while the bot runs.
---@param seconds number
---@param fn fun(ctx: misskey.bot.Context)
---@return misskey.Bot
function Bot:every(seconds, fn)
  check_self(self, "every")
  local why = argcheck.seconds_problem(seconds)
  if why then argerror(1, "every", why) end
  if type(fn) ~= "function" then argerror(2, "every", "function expected, got " .. type(fn)) end
  local t = { seconds = seconds, fn = fn }
  self._timers[#self._timers + 1] = t
  if self._running then self:_start_timer(t) end
  return self
end

function Bot:_start_timer(t)
  self._timer_tasks:spawn(function()
    while not self._stopped and not self._stopping do
      loop.sleep(t.seconds)
      if self._stopped or self._stopping then break end
      self:_spawn(t.fn, self:_context("timer"))
    end
  end)
end

--- bot:wait_for(event[, { timeout = s, filter = function(payload, ctx) -> bool }])
-- -> payload, ctx | nil, msg, err (err.kind "timeout"). For conversations:
-- waits (in a task) for the next such event the filter accepts.
---@param event string a bot event (as bot:on)
---@param opts? { timeout?: number, filter?: fun(payload: any, ctx: misskey.bot.Context): boolean }
---@return any payload, or nil
---@return misskey.bot.Context|string|nil ctx_or_message
---@return misskey.Error|nil err
function Bot:wait_for(event, opts)
  check_self(self, "wait_for")
  if not EVENTS[event] then argerror(1, "wait_for", "unknown bot event " .. tostring(event)) end
  if opts ~= nil and type(opts) ~= "table" then argerror(2, "wait_for", "options table expected") end
  opts = opts or {}
  if opts.filter ~= nil and type(opts.filter) ~= "function" then opterror("filter", "function expected") end
  argcheck.wait_option(opts, "timeout")
  local w = { filter = opts.filter }
  local list = self._waiters[event] or {}
  self._waiters[event] = list
  list[#list + 1] = w
  while not w.done and not self._stopped and not self._stopping do
    if loop.wait_event(w, opts.timeout) == "timeout" then break end
  end
  for i = #list, 1, -1 do
    if list[i] == w then table.remove(list, i) end
  end
  if w.done then return w.payload, w.ctx end
  if self._stopped or self._stopping then
    return errors.fail("task", "bot:wait_for: the bot stopped", { cancelled = true })
  end
  return errors.fail("timeout", ("bot:wait_for(%q): no event within %g s"):format(event, opts.timeout),
    { timeout = true })
end

-- ------------------------------------------------------------------------
-- running

function Bot:_open_timeline()
  if self._timeline or not self._stream then return end
  self._timeline = self._stream:channel(self._opts.timeline or "homeTimeline")
  self._timeline:on("note", function(note) self:_event("note", note) end)
end

-- Releases captures whose ttl has passed, when the earliest one may have.
function Bot:_expire_captures(now)
  if not self._next_expiry or now < self._next_expiry then return end
  local next_expiry
  for i = #self._capture_order, 1, -1 do
    local id = self._capture_order[i]
    local e = self._captured[id].expires
    if e and e <= now then
      self:_release(id)
    elseif e and (next_expiry == nil or e < next_expiry) then
      next_expiry = e
    end
  end
  self._next_expiry = next_expiry
end

-- Ends the capture of `id` (the stream's too); false if it was not captured.
function Bot:_release(id)
  if not self._captured[id] then return false end
  self._captured[id] = nil
  local order = self._capture_order
  for i = #order, 1, -1 do
    if order[i] == id then table.remove(order, i) break end
  end
  local s = self._stream
  if s and not self._stopped then s:uncapture(id) end
  return true
end

--- bot:capture(note_id[, { ttl = seconds }]) -> true: "reacted" events for
-- that note, until bot:uncapture(note_id), the note's deletion, `ttl` seconds
-- (none by default), or more than bot.MAX_CAPTURES captures (the oldest goes
-- first). Capturing a captured note again sets its ttl anew.
---@param id string
---@param opts? { ttl?: number }
---@return boolean
function Bot:capture(id, opts)
  check_self(self, "capture")
  if type(id) ~= "string" or id == "" then argerror(1, "capture", "note id expected, got " .. type(id)) end
  if opts ~= nil and type(opts) ~= "table" then argerror(2, "capture", "options table expected") end
  local ttl = opts and opts.ttl
  argcheck.known_options(opts or {}, CAPTURE_OPTIONS)
  argcheck.seconds_option(opts or {}, "ttl")
  local now = self._clock()
  self:_expire_captures(now)
  local expires = ttl and now + ttl
  if expires and (self._next_expiry == nil or expires < self._next_expiry) then self._next_expiry = expires end
  local c = self._captured[id]
  if c then
    c.expires = expires
    return true
  end
  while #self._capture_order >= bot.MAX_CAPTURES do self:_release(self._capture_order[1]) end
  self._captured[id] = { expires = expires }
  self._capture_order[#self._capture_order + 1] = id
  if self._stream and not self._stopped then self._stream:capture(id) end
  return true
end

--- bot:uncapture(note_id) -> true, or false when the bot had not captured it.
---@param id string
---@return boolean
function Bot:uncapture(id)
  check_self(self, "uncapture")
  if type(id) ~= "string" then argerror(1, "uncapture", "note id expected, got " .. type(id)) end
  return self:_release(id)
end

--- bot:stats() -> what the bot holds, every count bounded: tasks (handlers and
-- commands running), timers (bot:every loops), seen (event keys remembered
-- against duplicates, at most 2 * bot.SEEN), captures (at most
-- bot.MAX_CAPTURES), cooldowns (users remembered by commands with a cooldown),
-- waiters (bot:wait_for calls), stream (stream:stats(), once running),
-- webhook (the built-in listener's listener:stats(), once running).
---@return table<string, integer|table>
function Bot:stats()
  check_self(self, "stats")
  local cooldowns, waiters = 0, 0
  for _, c in ipairs(self._commands) do cooldowns = cooldowns + (c.nlast or 0) end
  for _, list in pairs(self._waiters) do waiters = waiters + #list end
  return {
    tasks = self._tasks:count(), timers = self._timer_tasks:count(), seen = seenset.count(self._seen),
    captures = #self._capture_order, cooldowns = cooldowns, waiters = waiters,
    stream = self._stream and self._stream:stats() or nil,
    webhook = self._listener and self._listener:stats() or nil,
  }
end

-- An event source failed under the bot: its error handlers see it, the bot
-- stops (they get bot.FAILURE_GRACE to finish) and run returns it.
function Bot:_fail(err)
  self._failure = err
  self:_emit("error", err)
  self:stop{ grace = bot.FAILURE_GRACE }
end

function Bot:_main()
  local me, msg, err = self.client:request("i")
  if not me then
    self:_fail(err or select(2, errors.new("network", tostring(msg))))
    return
  end
  self.me = me
  if self._stopped then return end
  if self._webhook then
    local ok, wmsg, werr = self:_start_webhook()
    if not ok then
      self:_fail(werr or select(2, errors.new("network", tostring(wmsg))))
      return
    end
    if self._stopped or self._stopping then return end
  end
  for _, t in ipairs(self._timers) do self:_start_timer(t) end
  if self._opts.stream == false then
    self:_emit("ready", self.me)
    return
  end
  local sopts = {}
  for k, v in pairs(self._opts.stream or {}) do sopts[k] = v end
  if self._opts.positions ~= nil then sopts.positions = self._opts.positions end
  local s = self.client:stream(sopts)
  self._stream = s
  for event in pairs(MAIN) do
    s:on(WIRE[event] or event, function(body) self:_event(event, body) end)
  end
  s:on("noteUpdated", function(body)
    if type(body) ~= "table" or type(body.id) ~= "string" or not self._captured[body.id] then return end
    if body.type == "deleted" then
      self:_release(body.id) -- nothing more can happen to it
      return
    end
    local c = self._captured[body.id]
    if c.expires and c.expires <= self._clock() then
      self:_release(body.id)
      return
    end
    if body.type == "reacted" and type(body.body) == "table" then
      if self.me and body.body.userId == self.me.id then return end
      self:_emit("reacted", { note_id = body.id, reaction = body.body.reaction, userId = body.body.userId,
        emoji = body.body.emoji })
    end
  end)
  s:on("error", function(e) self:_emit("error", e) end)
  local ready = false
  s:on("connected", function()
    if ready then return end
    ready = true
    self:_emit("ready", self.me)
  end)
  for _, id in ipairs(self._capture_order) do s:capture(id) end
  if self._handlers.note then self:_open_timeline() end
  -- stream:run in a task of its own, not stream:start: run returns when the
  -- stream ends, and its failure (the reader task raised; with reconnect =
  -- false, the socket lost) must end the bot too, or bot:run would wait for
  -- events that never come (a unit with Restart=on-failure must see it).
  self._stream_task = loop.spawn(function()
    local ok, _, failure = s:run()
    if self._stopped or self._stopping then return end
    if not ok then return self:_fail(failure) end
    if not self._webhook then self:stop() end -- closed under it: no other source
  end)
end

--- bot:start() -> bot: starts the bot's tasks and returns (in a task or before a loop runs).
---@return misskey.Bot
function Bot:start()
  check_self(self, "start")
  if self._running then return self end
  if self._stopped then error("bot:start: the bot was stopped", 2) end
  if self._opts.stream == false and not self._webhook then
    error("bot:start: a bot with stream = false takes its events from webhooks: call bot:webhook{ … } first", 2)
  end
  -- Both sources: user events (no id of their own) are paired across them (misskey.bot.dispatch).
  if self._webhook and self._opts.stream ~= false then self._pairs = { young = {}, old = {}, n = 0 } end
  self._running = true
  self:_spawn(self._main, self)
  return self
end

--- bot:run([{ stop_on = { "TERM", "INT" }, grace = 10 }]) -> true [, signal] | nil, msg, err:
-- runs until bot:stop(). Blocks a plain script; inside misskey.run it waits in
-- its task while the bot's tasks run. `stop_on`: on one of those signals the
-- bot stops gracefully (bot:stop{ grace = grace }) and run returns true and
-- the signal's name, so the program can end with status 0.
---@param opts? { stop_on?: string[], grace?: number }
---@return boolean|nil ok
---@return string|nil signal_or_message
---@return misskey.Error|nil err
function Bot:run(opts)
  check_self(self, "run")
  local ok, msg, err = signals.run("bot", opts, {
    start = function() self:start() end,
    wait = function()
      while not self._stopped do loop.wait_event(self._stopsig) end
    end,
    stop = function(grace) self:stop{ grace = grace } end,
    failure = function() return self._failure end,
  })
  return ok, msg, err
end

--- bot:stop([{ grace = seconds }]) -> true (false if stopping already): closes
-- the stream (1000; positions saved), cancels the bot's tasks (but the calling
-- one) and ends run(). With `grace`: first stops taking events and lets the
-- handlers and commands that run finish for up to `grace` seconds (wait_for
-- calls return at once); the ones still running then are cancelled.
---@param opts? { grace?: number }
---@return boolean
function Bot:stop(opts)
  check_self(self, "stop")
  if opts ~= nil and type(opts) ~= "table" then argerror(1, "stop", "options table expected") end
  argcheck.known_options(opts or {}, STOP_OPTIONS)
  local grace = argcheck.seconds_option(opts or {}, "grace")
  if self._stopped or self._stopping then return false end
  local current = loop.current()
  self._stopping = true
  if self._webhook then self:_stop_webhook() end -- refused from now on: Misskey tries again later
  if grace then
    if self._stream then self._stream:pause() end
    self._timer_tasks:cancel(current)
    for _, list in pairs(self._waiters) do
      for _, w in ipairs(list) do loop.signal(w) end
    end
    self._tasks:wait(grace, current)
  end
  self._stopped = true
  if self._stream then self._stream:close() end
  self._timer_tasks:cancel(current)
  self._tasks:cancel(current)
  for _, list in pairs(self._waiters) do
    for _, w in ipairs(list) do loop.signal(w) end
  end
  loop.signal(self._stopsig)
  return true
end

bot.Bot, bot.Context, bot.Store = Bot, Context, Store
return bot
