--- misskey.testing.actor: fake:as(username), a user acting through the API.
local Fake = require "misskey.testing.fake"

local type, pairs, tostring, error, setmetatable = type, pairs, tostring, error, setmetatable

--- A user of the fake acting through the API (fake:as(username)); every call is
--- recorded in fake.requests and returns what the API returns, or nil, message, err.
---@class misskey.testing.Actor
---@field fake misskey.testing.Fake
---@field user { id: string, username: string, name: string|misskey.Null, token: string }
---@field client misskey.Client a client of the fake with this user's token
local Actor = { __name = "misskey.testing.Actor" }
Actor.__index = Actor

--- fake:as(username) -> actor: acts as that user through the API (recorded in
-- fake.requests): actor:post(text, params), actor:reply(note, text, params),
-- actor:follow(username), actor:unfollow(username), actor:react(note_id, reaction),
-- actor:request(endpoint, params); actor.client, actor.user.
-- Each returns what the API returns (post: the created note), or nil, msg, err.
---@param username string
---@return misskey.testing.Actor
function Fake:as(username)
  local u = type(username) == "string" and self._by_name[username:gsub("^@", ""):lower()]
  if not u then error(("bad argument #1 to 'as' (no user @%s on the fake)"):format(tostring(username)), 2) end
  return setmetatable({ fake = self, user = self:user(u.username), client = self:client{ user = u.username } }, Actor)
end

--- actor:request(endpoint, params): client:request as this user.
---@param endpoint string
---@param params? table
---@return any value
---@return string|nil message
---@return misskey.Error|nil err
function Actor:request(endpoint, params)
  return self.client:request(endpoint, params)
end

--- actor:post(text[, params]) -> the created note (notes/create).
---@param text string
---@param params? misskey.api.params.notes.create
---@return misskey.Note|nil note
---@return string|nil message
---@return misskey.Error|nil err
function Actor:post(text, params)
  local ps = {}
  for k, v in pairs(params or {}) do ps[k] = v end
  ps.text = text
  local res, msg, err = self.client:request("notes/create", ps)
  if not res then return nil, msg, err end
  return res.createdNote
end

--- actor:reply(note, text[, params]) -> the reply (a note or its id).
---@param note misskey.Note|string
---@param text string
---@param params? misskey.api.params.notes.create
---@return misskey.Note|nil note
---@return string|nil message
---@return misskey.Error|nil err
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

--- actor:follow(username) (following/create).
---@param username string
---@return misskey.UserLite|nil user
---@return string|nil message
---@return misskey.Error|nil err
function Actor:follow(username)
  return self.client:request("following/create", { userId = user_id(self, username) })
end

--- actor:unfollow(username) (following/delete).
---@param username string
---@return misskey.UserLite|nil user
---@return string|nil message
---@return misskey.Error|nil err
function Actor:unfollow(username)
  return self.client:request("following/delete", { userId = user_id(self, username) })
end

--- actor:react(note[, reaction]) (notes/reactions/create; default "👍").
---@param note_id string|misskey.Note
---@param reaction? string
---@return true|nil ok
---@return string|nil message
---@return misskey.Error|nil err
function Actor:react(note_id, reaction)
  if type(note_id) == "table" then note_id = note_id.id end
  return self.client:request("notes/reactions/create", { noteId = note_id, reaction = reaction or "👍" })
end

return Actor
