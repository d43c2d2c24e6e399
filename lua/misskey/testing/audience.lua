--- misskey.testing.audience: who follows whom, and who may see a note.
local ipairs = ipairs

local audience = {}

--- Does user `a` follow the user with id `b_id`?
function audience.follows(a, b_id)
  return a.following[b_id] == true
end

--- A renote with nothing of its own (no text, cw or poll).
function audience.is_pure_renote(note)
  return note.renoteId ~= nil and note.text == nil and note.cw == nil and note.poll == nil
end

--- Can `viewer` (a user or nil) see the note's content?
function audience.visible_to(note, viewer)
  local v = note.visibility
  if v == "public" or v == "home" then return true end
  if not viewer then return false end
  if note.userId == viewer.id then return true end
  if v == "followers" then return audience.follows(viewer, note.userId) end
  for _, id in ipairs(note.visibleUserIds) do
    if id == viewer.id then return true end
  end
  return false
end

return audience
