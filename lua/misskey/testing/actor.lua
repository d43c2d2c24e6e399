--- misskey.testing.actor: fake:as(username), a user acting through the API.
local Fake = require "misskey.testing.fake"

local type, pairs, tostring, error, setmetatable = type, pairs, tostring, error, setmetatable

local Actor = { __name = "misskey.testing.Actor" }
Actor.__index = Actor

--- fake:as(username) -> actor: acts as that user through the API (recorded in
-- fake.requests): actor:post(text, params), actor:reply(note, text, params),
-- actor:follow(username), actor:unfollow(username), actor:react(note_id, reaction),
-- actor:request(endpoint, params); actor.client, actor.user.
-- Each returns what the API returns (post: the created note), or nil, msg, err.
function Fake:as(username)
  local u = type(username) == "string" and self._by_name[username:gsub("^@", ""):lower()]
  if not u then error(("bad argument #1 to 'as' (no user @%s on the fake)"):format(tostring(username)), 2) end
  return setmetatable({ fake = self, user = self:user(u.username), client = self:client{ user = u.username } }, Actor)
end

function Actor:request(endpoint, params)
  return self.client:request(endpoint, params)
end

function Actor:post(text, params)
  local ps = {}
  for k, v in pairs(params or {}) do ps[k] = v end
  ps.text = text
  local res, msg, err = self.client:request("notes/create", ps)
  if not res then return nil, msg, err end
  return res.createdNote
end

function Actor:reply(note, text, params)
  local ps = {}
  for k, v in pairs(params or {}) do ps[k] = v end
  ps.replyId = type(note) == "table" and note.id or note
  return self:post(text, ps)
end

local function user_id(self, username)
  local u = self.fake:user(username)
  if not u then error(("no user @%s on the fake"):format(tostring(username)), 3) end
  return u.id
end

function Actor:follow(username)
  return self.client:request("following/create", { userId = user_id(self, username) })
end

function Actor:unfollow(username)
  return self.client:request("following/delete", { userId = user_id(self, username) })
end

function Actor:react(note_id, reaction)
  if type(note_id) == "table" then note_id = note_id.id end
  return self.client:request("notes/reactions/create", { noteId = note_id, reaction = reaction or "👍" })
end

return Actor
