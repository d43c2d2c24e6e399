--- misskey.testing.endpoints.timeline: notes/timeline (home) and the id/date
-- pagination Misskey's timelines share.
local json = require "misskey.json"
local params = require "misskey.testing.params"
local audience = require "misskey.testing.audience"
local Fake = require "misskey.testing.fake"

local array = json.array
local ipairs = ipairs
local follows, visible_to, is_pure_renote = audience.follows, audience.visible_to, audience.is_pure_renote
local ID, BOOLEAN, object = params.ID, params.BOOLEAN, params.object

local endpoints = {}

local TIMELINE_PARAMS = object({
  { "limit", { type = "integer", minimum = 1, maximum = 100 } },
  { "sinceId", ID },
  { "untilId", ID },
  { "sinceDate", { type = "integer" } },
  { "untilDate", { type = "integer" } },
  { "allowPartial", BOOLEAN },
  { "includeMyRenotes", BOOLEAN },
  { "includeRenotedMyNotes", BOOLEAN },
  { "includeLocalRenotes", BOOLEAN },
  { "withFiles", BOOLEAN },
  { "withRenotes", BOOLEAN },
})

-- Misskey's pagination over the notes that `keep(note)` accepts: newest
-- first, except with sinceId/sinceDate alone (no until): the `limit` notes
-- just after it, oldest first.
function Fake:_paginate(ps, keep)
  local limit = ps.limit or 10
  local since = ps.sinceId ~= nil or ps.sinceDate ~= nil
  local ascending = since and ps.untilId == nil and ps.untilDate == nil
  local order, out = self._order, array{}
  local from, to, step = #order, 1, -1
  if ascending then from, to, step = 1, #order, 1 end
  for i = from, to, step do
    local note = self._notes[order[i]]
    if (ps.sinceId == nil or note.id > ps.sinceId) and (ps.untilId == nil or note.id < ps.untilId)
       and (ps.sinceDate == nil or note.createdAt > ps.sinceDate)
       and (ps.untilDate == nil or note.createdAt < ps.untilDate) and keep(note) then
      out[#out + 1] = note
      if #out >= limit then break end
    end
  end
  return out
end

endpoints["notes/timeline"] = {
  credential = true,
  params = TIMELINE_PARAMS,
  handler = function(self, ps, ctx)
    local me = ctx.user
    local notes = self:_paginate(ps, function(note)
      if note.userId ~= me.id and not follows(me, note.userId) then return false end
      if ps.withRenotes == false and is_pure_renote(note) then return false end
      if ps.withFiles == true and #(note.fileIds or {}) == 0 then return false end
      return visible_to(note, me)
    end)
    for i, note in ipairs(notes) do notes[i] = self:_pack_note(note, me, true) end
    return notes
  end,
}

return endpoints
