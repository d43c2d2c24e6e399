--- misskey.testing.endpoints.reactions: notes/reactions/create and the
-- reaction it records (noteUpdated for captured notes, a notification).
local json = require "misskey.json"
local params = require "misskey.testing.params"
local audience = require "misskey.testing.audience"
local Fake = require "misskey.testing.fake"

local null = json.null
local visible_to = audience.visible_to
local ID, object = params.ID, params.object

local endpoints = {}

function Fake:_react(user, note, reaction)
  note.reacted = note.reacted or {}
  note.reactions = note.reactions or {}
  if note.reacted[user.id] then return nil, "ALREADY_REACTED" end
  note.reacted[user.id] = reaction
  note.reactions[reaction] = (note.reactions[reaction] or 0) + 1
  note.reactionCount = (note.reactionCount or 0) + 1
  self:_note_updated(note.id, "reacted", { reaction = reaction, emoji = null, userId = user.id })
  self:_notify(self._by_id[note.userId], "reaction", user, { noteId = note.id, reaction = reaction })
  return true
end

endpoints["notes/reactions/create"] = {
  credential = true,
  params = object({ { "noteId", ID }, { "reaction", { type = "string" } } }, { "noteId", "reaction" }),
  errors = {
    NO_SUCH_NOTE = { id = "033d0620-5bfe-4027-965d-980b0c85a3ea", message = "No such note." },
    ALREADY_REACTED = { id = "71efcf98-86d6-4e2b-b2ad-9d032369366b",
                        message = "You are already reacting to that note." },
  },
  handler = function(self, ps, ctx)
    local note = self._notes[ps.noteId]
    if not note or not visible_to(note, ctx.user) then return nil, "NO_SUCH_NOTE" end
    local ok, code = self:_react(ctx.user, note, ps.reaction)
    if not ok then return nil, code end
    return nil
  end,
}

return endpoints
