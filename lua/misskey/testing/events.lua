--- misskey.testing.events: what the fake publishes on its WebSockets. Its
-- actions publish as the server does: a note goes as "note" to homeTimeline
-- (author and followers) and localTimeline/hybridTimeline/globalTimeline
-- (public notes); mention/reply/renote and notification go to the main
-- channel of the users concerned; noteUpdated (reacted, deleted) to the
-- sockets that captured the note. The sockets are misskey.testing.socket's.
-- Webhook deliveries go out from the same places (endpoints/webhooks.lua).
local audience = require "misskey.testing.audience"
local Fake = require "misskey.testing.fake"

local type, pairs, ipairs, error = type, pairs, ipairs, error
local follows, visible_to, is_pure_renote = audience.follows, audience.visible_to, audience.is_pure_renote

--- fake:publish(channel, event, body) -> sockets reached: a channel event (as
-- the server would send it) to every open socket's channels named `channel`
-- ("main", "homeTimeline", ...), whatever their user. For load and edge cases
-- the fake's own actions do not make; body is sent as given.
---@param channel string
---@param event string
---@param body any
---@return integer sockets
function Fake:publish(channel, event, body)
  if type(channel) ~= "string" or type(event) ~= "string" then
    error("bad argument to 'publish' (channel and event names expected)", 2)
  end
  local n = 0
  self:_publish({ [channel] = true }, event, function()
    n = n + 1
    return body
  end)
  return n
end

-- Sends `event` with a body built per socket user (`make(user)` -> body or nil)
-- to every channel whose name is in `names`.
function Fake:_publish(names, event, make)
  for _, ws in ipairs(self._sockets) do
    for id, ch in pairs(ws.channels) do
      if names[ch.name] then
        local body = make(ws.user, ch)
        if body ~= nil then ws:_push({ type = "channel", body = { id = id, type = event, body = body } }) end
      end
    end
  end
end

-- A main channel event for one user, and the same event to the user's
-- webhooks that take it (mention, reply, renote, follow, followed, unfollow:
-- Misskey sends both from the same place; endpoints/webhooks.lua).
function Fake:_main(user, event, body)
  self:_publish({ main = true }, event, function(u) if u == user then return body end end)
  self:_hook(user, event, body)
end

function Fake:_note_updated(note_id, event, body)
  for _, ws in ipairs(self._sockets) do
    if ws.captures[note_id] then
      ws:_push({ type = "noteUpdated", body = { id = note_id, type = event, body = body } })
    end
  end
end

-- The local users a note's text mentions (@name or @name@<this host>).
function Fake:_mentioned(text)
  local out, seen = {}, {}
  if not text then return out end
  for name, host in text:gmatch("@([%w_]+)@?([%w%.%-:]*)") do
    if host == "" or host:lower() == self.host then
      local u = self._by_name[name:lower()]
      if u and not seen[u] then
        seen[u] = true
        out[#out + 1] = u
      end
    end
  end
  return out
end

-- Publishes what a new note causes (NoteCreateService's events, simplified).
function Fake:_note_events(note)
  local author = self._by_id[note.userId]
  self:_publish({ homeTimeline = true, hybridTimeline = true, localTimeline = true, globalTimeline = true },
    "note", function(u, ch)
      local home = u and (u == author or follows(u, author.id)) and visible_to(note, u)
      if ch.name == "homeTimeline" and not home then return nil end
      if (ch.name == "localTimeline" or ch.name == "globalTimeline") and note.visibility ~= "public" then return nil end
      if ch.name == "hybridTimeline" and not home and note.visibility ~= "public" then return nil end
      local params = ch.params
      if type(params) == "table" and params.withRenotes == false and is_pure_renote(note) then return nil end
      return self:_pack_note(note, u, true)
    end)
  self:_hook(author, "note", self:_pack_note(note, author, true)) -- the author's `note` webhooks
  local done = {}
  local parent = note.replyId and self._notes[note.replyId]
  if parent then
    local to = self._by_id[parent.userId]
    if to ~= author then
      done[to] = true
      self:_main(to, "reply", self:_pack_note(note, to, true))
      self:_notify(to, "reply", author, { noteId = note.id })
    end
  end
  local target = note.renoteId and self._notes[note.renoteId]
  if target then
    local to = self._by_id[target.userId]
    if to ~= author then
      self:_main(to, "renote", self:_pack_note(note, to, true))
      if is_pure_renote(note) then
        self:_notify(to, "renote", author, { noteId = note.id })
      else
        done[to] = true
        self:_notify(to, "quote", author, { noteId = note.id })
      end
    end
  end
  local mentioned = self:_mentioned(note.text)
  for _, id in ipairs(note.visibleUserIds) do
    local u = self._by_id[id]
    local found = false
    for _, m in ipairs(mentioned) do if m == u then found = true end end
    if not found then mentioned[#mentioned + 1] = u end
  end
  for _, u in ipairs(mentioned) do
    if u ~= author and visible_to(note, u) then
      self:_main(u, "mention", self:_pack_note(note, u, true))
      if not done[u] then self:_notify(u, "mention", author, { noteId = note.id }) end
    end
  end
end

return Fake
