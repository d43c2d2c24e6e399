--- misskey.bot.dispatch: what the bot does with an event of its stream:
-- drops its own and repeated ones, makes the context handlers get, runs the
-- handlers and wakes bot:wait_for, and finds and runs the command a mention
-- names (cooldowns, the generated help). Part of misskey.bot, which calls this
-- file with its Bot class, its module table (SEEN, MAX_COOLDOWNS, split), the
-- main channel's events and the Context class, to add these methods.
local loop = require "misskey.loop"
local seenset = require "misskey.seenset"

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

---@param Bot misskey.Bot the bot class
---@param bot table misskey.bot
---@param MAIN table the main channel's events the bot takes, and their payloads
---@param Context table the class of handlers' ctx
return function(Bot, bot, MAIN, Context)
  -- false for a key seen lately (see misskey.seenset), else true and remembered.
  local function remember(self, key)
    return seenset.remember(self._seen, key, bot.SEEN)
  end

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

  -- With both sources (stream and webhooks), user events (follow, followed,
  -- unfollow) come twice and carry no id of their own: one from a source
  -- pairs with an unpaired one of the same kind and user from the other (its
  -- twin, dropped), so that following twice is still two events. Per key, a
  -- count of the events not paired yet: > 0 from the stream, < 0 from
  -- webhooks; kept in two generations of bot.SEEN keys, as the seen set is.
  local function twin(self, key, source)
    local p = self._pairs
    local count = p.young[key]
    if count == nil then
      count = p.old[key] or 0
      if p.n >= bot.SEEN then p.old, p.young, p.n = p.young, {}, 0 end
      p.n = p.n + 1
    end
    local sign = source == "webhook" and -1 or 1
    p.young[key] = count + sign
    return count * sign < 0
  end

  -- An event from the stream, or (`source` "webhook") from a webhook delivery.
  function Bot:_event(event, payload, source)
    if self._stopped or self._stopping or type(payload) ~= "table" then return end
    local kind = MAIN[event] or (event == "note" and "note") or event
    if kind == "note" or kind == "notification" or kind == "chat" then
      if own(self, payload) then return end
      if type(payload.id) == "string" and not remember(self, event .. ":" .. payload.id) then return end
    elseif kind == "user" and self._pairs and type(payload.id) == "string"
       and twin(self, event .. ":" .. payload.id, source) then
      return
    end
    local ctx = self:_context(event, payload)
    ctx.source = source or "stream"
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
  ---@return string
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
end
