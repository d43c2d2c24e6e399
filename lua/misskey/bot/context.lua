--- misskey.bot.context: what a bot's handlers get: `ctx` (ctx:reply,
-- ctx:react) and `bot.store`, the bot's keys in Misskey's registry. Part of
-- misskey.bot, which calls this file with its module table (SCOPE) and gets
-- the Context and Store classes back.
local argcheck = require "misskey.argcheck"
local json = require "misskey.json"

local argerror = argcheck.argerror

---@param bot table misskey.bot
---@return table Context
---@return table Store
return function(bot)
  --- What a bot's handlers get: the event and who it is about (README "Bots").
  ---@class misskey.bot.Context
  ---@field bot misskey.Bot
  ---@field client misskey.Client
  ---@field event string the bot event
  ---@field me? misskey.MeDetailed the bot's own user
  ---@field note? misskey.Note the note of a note event (or of a notification)
  ---@field user? misskey.UserLite|misskey.UserDetailed the author, the follower, the sender
  ---@field notification? misskey.Notification
  ---@field message? misskey.ChatMessage a chat event's message
  ---@field command? string a command's name (or pattern)
  ---@field args? string[] a command's arguments
  ---@field text? string a command's text after the mentions
  local Context = { __name = "misskey.bot.Context" }
  Context.__index = Context

  --- bot.store: the bot's keys in Misskey's registry (scope bot.SCOPE).
  ---@class misskey.bot.Store
  local Store = { __name = "misskey.bot.Store" }
  Store.__index = Store

  --- ctx:reply(text[, params]) -> note | nil, msg, err: replies in thread
  -- (replyId), mentioning the author (@user or @user@host), with the incoming
  -- note's visibility (specified: visible to the author). params go to notes/create.
  ---@param text string
  ---@param params? misskey.api.params.notes.create notes/create's parameters, over the reply's
  ---@return misskey.Note|nil note
  ---@return string|nil message
  ---@return misskey.Error|nil err
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
  ---@param reaction? string default "👍"
  ---@return true|nil ok
  ---@return string|nil message
  ---@return misskey.Error|nil err
  function Context:react(reaction)
    if type(self.note) ~= "table" then error("ctx:react: this event has no note", 2) end
    return self.client:request("notes/reactions/create", { noteId = self.note.id, reaction = reaction or "👍" })
  end

  -- store: Misskey's registry (i/registry/get, i/registry/set), scope bot.SCOPE

  --- bot.store:get(key) -> value | nil (no such key) | nil, msg, err
  ---@param key string
  ---@return any value nil for a missing key (or on failure: then message and err)
  ---@return string|nil message
  ---@return misskey.Error|nil err
  function Store:get(key)
    if type(key) ~= "string" then argerror(1, "get", "string key expected") end
    local v, msg, err = self._bot.client:request("i/registry/get", { key = key, scope = bot.SCOPE })
    if v == nil and err and err.code == "NO_SUCH_KEY" then return nil end
    if v == nil then return nil, msg, err end
    return v
  end

  --- bot.store:set(key, value) -> true | nil, msg, err (value: anything JSON encodes)
  ---@param key string
  ---@param value any anything JSON encodes
  ---@return true|nil ok
  ---@return string|nil message
  ---@return misskey.Error|nil err
  function Store:set(key, value)
    if type(key) ~= "string" or key == "" then argerror(1, "set", "non-empty string key expected") end
    if value == nil then value = json.null end
    return self._bot.client:request("i/registry/set", { key = key, value = value, scope = bot.SCOPE })
  end

  return Context, Store
end
