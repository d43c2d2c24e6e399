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
-- Every handler runs in a task of its own, so it may call the API, sleep and
-- wait_for. The bot asks `i` at start, ignores what it did itself, and handles
-- an event seen twice (two channels, a backfill) once.
local argcheck = require "misskey.argcheck"
local errors = require "misskey.errors"
local json = require "misskey.json"
local loop = require "misskey.loop"
local seenset = require "misskey.seenset"
local signals = require "misskey.signals"
local taskset = require "misskey.taskset"

local bot = {}

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

local Bot = { __name = "misskey.Bot" }
Bot.__index = Bot

local Context = { __name = "misskey.bot.Context" }
Context.__index = Context

local Store = { __name = "misskey.bot.Store" }
Store.__index = Store

--- The registry scope of bot.store (Misskey allows [a-zA-Z0-9_] in scope names).
bot.SCOPE = { "misskey_lua_bot" }
--- Events remembered to drop duplicates (between SEEN and 2 * SEEN of the latest).
bot.SEEN = 2000
--- Notes captured at once at most (bot:capture); capturing one more releases the oldest.
bot.MAX_CAPTURES = 1000
--- Users remembered per command with a cooldown: beyond this, entries whose
-- cooldown has passed are dropped (they would allow a run anyway).
bot.MAX_COOLDOWNS = 256

-- Main channel events the bot listens to; their payloads.
local MAIN = { mention = "note", reply = "note", renote = "note", follow = "user", followed = "user",
               unfollow = "user", notification = "notification", chat = "chat" }
-- Bot event -> the main channel's event name, where they differ.
local WIRE = { chat = "newChatMessage" }
local EVENTS = { mention = true, reply = true, renote = true, follow = true, followed = true, unfollow = true,
                 notification = true, note = true, reacted = true, ready = true, error = true, command = true,
                 chat = true }
bot.EVENTS = EVENTS

local OPTIONS = { help = true, stream = true, timeline = true, clock = true, positions = true }
local COMMAND_OPTIONS = { cooldown = true, description = true }
local CAPTURE_OPTIONS = { ttl = true }
local RUN_OPTIONS, STOP_OPTIONS = { stop_on = true, grace = true }, { grace = true }

local argerror, opterror = argcheck.argerror, argcheck.opterror

local function check_self(self, fname)
  argcheck.self(self, Bot, "bot", fname, 2)
end

local function monotonic()
  return require("misskey.core").now()
end

--- misskey.bot(client[, opts]) -> Bot. Options:
--   help      false: no generated "help" command (default: one, unless you define "help")
--   timeline  the channel of "note" events (default "homeTimeline")
--   stream    options for client:stream
--   positions where the bot stopped, kept across restarts: true, a name or a path
--             (client:stream's `positions`; README "Events, positions and stopping")
--   clock     function() -> seconds, for cooldowns and capture ttl (default: a monotonic clock)
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
  if opts.stream ~= nil and type(opts.stream) ~= "table" then
    opterror("stream", "options table expected", L)
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

-- false for a key seen lately (see misskey.seenset), else true and remembered.
local function remember(self, key)
  return seenset.remember(self._seen, key, bot.SEEN)
end

---------------------------------------------------------------------------
-- listeners

--- bot:on(event, fn): fn(ctx, payload) in a task of its own for each event:
-- mention, reply, renote, note (timeline; payload the note), follow, followed,
-- unfollow (payload the user), notification (the notification), chat (a chat
-- message: newChatMessage on the main channel; ctx.user is its sender), reacted
-- ({ note_id, reaction, userId } on captured notes), command (ctx, name), ready (ctx, me), error (ctx, err).
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

---------------------------------------------------------------------------
-- dispatch

function Bot:_context(event, payload)
  local ctx = setmetatable({ bot = self, client = self.client, event = event, me = self.me }, Context)
  if MAIN[event] == "note" or event == "note" then
    ctx.note = payload
    ctx.user = type(payload) == "table" and payload.user or nil
  elseif MAIN[event] == "user" then
    ctx.user = payload
  elseif event == "notification" and type(payload) == "table" then
    ctx.notification = payload
    ctx.user = payload.user
    ctx.note = payload.note
  elseif event == "chat" and type(payload) == "table" then
    ctx.message = payload
    ctx.user = payload.fromUser
  end
  return ctx
end

-- Runs the handlers and resolves the waiters of `event`.
function Bot:_emit(event, payload, ctx)
  ctx = ctx or self:_context(event, payload)
  for _, fn in ipairs(self._handlers[event] or {}) do
    self:_spawn(fn, ctx, payload)
  end
  local list = self._waiters[event]
  if list then
    for i = 1, #list do
      local w = list[i]
      if not w.done then
        local ok, accept = true, true
        if w.filter then ok, accept = pcall(w.filter, payload, ctx) end
        if ok and accept then
          w.done, w.payload, w.ctx = true, payload, ctx
          loop.signal(w)
        end
      end
    end
  end
end

local function own(self, payload)
  return self.me and type(payload) == "table" and (payload.userId == self.me.id or payload.fromUserId == self.me.id
    or type(payload.user) == "table" and payload.user.id == self.me.id)
end

-- An event from the stream.
function Bot:_event(event, payload)
  if self._stopped or self._stopping or type(payload) ~= "table" then return end
  local kind = MAIN[event] or (event == "note" and "note") or event
  if kind == "note" or kind == "notification" or kind == "chat" then
    if own(self, payload) then return end
    if type(payload.id) == "string" and not remember(self, event .. ":" .. payload.id) then return end
  end
  local ctx = self:_context(event, payload)
  self:_emit(event, payload, ctx)
  if (event == "mention" or event == "reply") and type(payload.id) == "string"
     and remember(self, "command:" .. payload.id) then
    self:_command(ctx, payload)
  end
  -- A mention missed while disconnected comes back as a notification (the
  -- stream's backfill): its command runs then, once.
  local note = payload.note
  if event == "notification" and (payload.type == "mention" or payload.type == "reply")
     and type(note) == "table" and type(note.id) == "string" and not own(self, note)
     and remember(self, "command:" .. note.id) then
    self:_command(self:_context("mention", note), note)
  end
end

--- bot.split(text) -> words: splits at spaces, keeping "quoted words" (or 'these') together.
function bot.split(text)
  local args, i, n = {}, 1, #text
  while i <= n do
    local c = text:sub(i, i)
    if c:find("%s") then
      i = i + 1
    elseif c == '"' or c == "'" then
      local j = text:find(c, i + 1, true)
      if not j then j = n + 1 end
      args[#args + 1] = text:sub(i + 1, j - 1)
      i = j + 1
    else
      local j = text:find("[%s\"']", i) or n + 1
      args[#args + 1] = text:sub(i, j - 1)
      i = j
    end
  end
  return args
end

-- The text of a mention after the leading mentions ("@bot @x ping" -> "ping").
local function command_text(text)
  text = text:gsub("^%s+", "")
  while true do
    local rest = text:match("^@[%w_]+@?[%w%.%-]*%s*(.*)$")
    if not rest then break end
    text = rest
  end
  return (text:gsub("%s+$", ""))
end

-- Drops the users whose cooldown of command `c` has passed (they may run it
-- again anyway): a bot that meets thousands of users keeps only the recent ones.
local function prune_cooldowns(c, now)
  local n = 0
  for who, t in pairs(c.last) do
    if now - t >= c.cooldown then c.last[who] = nil else n = n + 1 end
  end
  c.nlast = n
  c.prune_at = math.max(bot.MAX_COOLDOWNS, 2 * n)
end

function Bot:_command(ctx, note)
  if type(note.text) ~= "string" then return end
  local text = command_text(note.text)
  if text == "" then return end
  local words = bot.split(text)
  local first = (words[1] or ""):lower():gsub("^/", "")
  local found, args
  for _, c in ipairs(self._commands) do
    if c.name and c.name == first then
      found = c
      args = { unpack(words, 2) }
      break
    end
  end
  if not found then
    for _, c in ipairs(self._commands) do
      if c.pattern then
        local caps = { text:match(c.pattern) }
        if caps[1] ~= nil then
          found = c
          if not c.pattern:find("(", 1, true) then caps = words end
          args = caps
          break
        end
      end
    end
  end
  if not found and first == "help" and self._opts.help ~= false then
    self:_spawn(function() ctx:reply(self:help_text()) end)
    return
  end
  if not found then return end
  local who = ctx.user and ctx.user.id or "?"
  if found.cooldown then
    local now, last = self._clock(), found.last[who]
    if last and now - last < found.cooldown then return end
    if not last then
      found.nlast = (found.nlast or 0) + 1
      if found.nlast > (found.prune_at or bot.MAX_COOLDOWNS) then prune_cooldowns(found, now) end
    end
    found.last[who] = now
  end
  ctx.command, ctx.args, ctx.text = found.name or found.pattern, args, text
  self:_emit("command", ctx.command, ctx)
  self:_spawn(found.fn, ctx, args)
end

--- bot:help_text() -> the generated help: one line per command.
function Bot:help_text()
  local lines = { "Commands:" }
  for _, c in ipairs(self._commands) do
    local line = "- " .. (c.name or c.pattern)
    if c.description then line = line .. ": " .. c.description end
    if c.cooldown then line = line .. (" (every %g s at most)"):format(c.cooldown) end
    lines[#lines + 1] = line
  end
  lines[#lines + 1] = "- help: this list"
  return table.concat(lines, "\n")
end

---------------------------------------------------------------------------
-- context

--- ctx:reply(text[, params]) -> note | nil, msg, err: replies in thread
-- (replyId), mentioning the author (@user or @user@host), with the incoming
-- note's visibility (specified: visible to the author). params go to notes/create.
function Context:reply(text, params)
  if type(text) ~= "string" then argerror(1, "reply", "string expected, got " .. type(text)) end
  local ps = {}
  local note, user = self.note, self.user
  if type(user) == "table" and user.username then
    local mention = "@" .. user.username
    if user.host ~= nil and user.host ~= json.null then mention = mention .. "@" .. user.host end
    if not text:find(mention, 1, true) then text = mention .. " " .. text end
  end
  ps.text = text
  if type(note) == "table" and note.id then
    ps.replyId = note.id
    local v = note.visibility
    if v and v ~= "public" then ps.visibility = v end
    if v == "specified" then ps.visibleUserIds = json.array{ note.userId or user.id } end
  end
  for k, v in pairs(params or {}) do ps[k] = v end
  local res, msg, err = self.client:request("notes/create", ps)
  if not res then return nil, msg, err end
  return res.createdNote
end

--- ctx:react(reaction) -> true | nil, msg, err: reacts to the incoming note.
function Context:react(reaction)
  if type(self.note) ~= "table" then error("ctx:react: this event has no note", 2) end
  return self.client:request("notes/reactions/create", { noteId = self.note.id, reaction = reaction or "👍" })
end

---------------------------------------------------------------------------
-- store: Misskey's registry (i/registry/get, i/registry/set), scope bot.SCOPE

--- bot.store:get(key) -> value | nil (no such key) | nil, msg, err
function Store:get(key)
  if type(key) ~= "string" then argerror(1, "get", "string key expected") end
  local v, msg, err = self._bot.client:request("i/registry/get", { key = key, scope = bot.SCOPE })
  if v == nil and err and err.code == "NO_SUCH_KEY" then return nil end
  if v == nil then return nil, msg, err end
  return v
end

--- bot.store:set(key, value) -> true | nil, msg, err (value: anything JSON encodes)
function Store:set(key, value)
  if type(key) ~= "string" or key == "" then argerror(1, "set", "non-empty string key expected") end
  if value == nil then value = json.null end
  return self._bot.client:request("i/registry/set", { key = key, value = value, scope = bot.SCOPE })
end

---------------------------------------------------------------------------
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
-- waiters (bot:wait_for calls), stream (stream:stats(), once running).
---@return table
function Bot:stats()
  check_self(self, "stats")
  local cooldowns, waiters = 0, 0
  for _, c in ipairs(self._commands) do cooldowns = cooldowns + (c.nlast or 0) end
  for _, list in pairs(self._waiters) do waiters = waiters + #list end
  return {
    tasks = self._tasks:count(), timers = self._timer_tasks:count(), seen = seenset.count(self._seen),
    captures = #self._capture_order, cooldowns = cooldowns, waiters = waiters,
    stream = self._stream and self._stream:stats() or nil,
  }
end

function Bot:_main()
  local me, msg, err = self.client:request("i")
  if not me then
    self:_emit("error", err)
    self._failure = err or select(2, errors.new("network", tostring(msg)))
    self:stop()
    return
  end
  self.me = me
  if self._stopped then return end
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
  for _, t in ipairs(self._timers) do self:_start_timer(t) end
  s:start()
end

--- bot:start() -> bot: starts the bot's tasks and returns (in a task or before a loop runs).
function Bot:start()
  check_self(self, "start")
  if self._running then return self end
  if self._stopped then error("bot:start: the bot was stopped", 2) end
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
---@return table|nil err
function Bot:run(opts)
  check_self(self, "run")
  if opts ~= nil and type(opts) ~= "table" then argerror(1, "run", "options table expected") end
  opts = opts or {}
  argcheck.known_options(opts, RUN_OPTIONS)
  local stop_on = signals.check(opts.stop_on, "stop_on")
  local grace = argcheck.seconds_option(opts, "grace") or 10
  local watcher
  if stop_on then
    local why
    watcher, why = signals.watch(stop_on, function() self:stop{ grace = grace } end)
    if not watcher then error("bot:run: " .. why, 2) end
  end
  self:start()
  local function wait()
    while not self._stopped do loop.wait_event(self._stopsig) end
    if watcher then watcher:close() end
  end
  if loop.current() then wait() else loop.run(wait) end
  if self._failure then return nil, self._failure.message, self._failure end
  return true, watcher and watcher.fired or nil
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
