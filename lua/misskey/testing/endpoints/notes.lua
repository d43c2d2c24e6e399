--- misskey.testing.endpoints.notes: notes/create, notes/show, notes/delete, and
-- the server-side operations behind them: creating a note (NoteCreateService's
-- rules), deleting one with its replies and renotes, fake:post and fake:notes.
local json = require "misskey.json"
local common = require "misskey.testing.common"
local params = require "misskey.testing.params"
local audience = require "misskey.testing.audience"
local Fake = require "misskey.testing.fake"

local null = json.null
local type, ipairs, tostring, error = type, ipairs, tostring, error
local present, trim, iso = common.present, common.trim, common.iso
local visible_to, is_pure_renote = audience.visible_to, audience.is_pure_renote
local ID, NULLABLE_ID, ID_LIST, BOOLEAN, object = params.ID, params.NULLABLE_ID, params.ID_LIST, params.BOOLEAN,
  params.object
local MAX_NOTE_TEXT_LENGTH = common.MAX_NOTE_TEXT_LENGTH

local endpoints = {}

local VISIBILITIES = { "public", "home", "followers", "specified" }

local POLL = {
  type = { "object", "null" },
  required = { "choices" },
  properties = {
    { "choices", { type = "array", uniqueItems = true, minItems = 2, maxItems = 10,
                   items = { type = "string", minLength = 1, maxLength = 50 } } },
    { "multiple", BOOLEAN },
    { "expiresAt", { type = { "integer", "null" } } },
    { "expiredAfter", { type = { "integer", "null" }, minimum = 1 } },
  },
}

local CREATE_PARAMS = object({
  { "visibility", { type = "string", enum = VISIBILITIES } },
  { "visibleUserIds", ID_LIST },
  { "cw", { type = { "string", "null" }, minLength = 1, maxLength = 100 } },
  { "localOnly", BOOLEAN },
  { "reactionAcceptance", { type = { "string", "null" }, enum = { null, "likeOnly", "likeOnlyForRemote",
    "nonSensitiveOnly", "nonSensitiveOnlyForLocalLikeOnlyForRemote" } } },
  { "noExtractMentions", BOOLEAN },
  { "noExtractHashtags", BOOLEAN },
  { "noExtractEmojis", BOOLEAN },
  { "replyId", NULLABLE_ID },
  { "renoteId", NULLABLE_ID },
  { "channelId", NULLABLE_ID },
  { "text", { type = { "string", "null" }, minLength = 1, maxLength = MAX_NOTE_TEXT_LENGTH } },
  { "fileIds", { type = "array", uniqueItems = true, minItems = 1, maxItems = 16, items = ID } },
  { "mediaIds", { type = "array", uniqueItems = true, minItems = 1, maxItems = 16, items = ID } },
  { "poll", POLL },
})

-- The schema's `if` (no renote, files, media or poll) / `then` (a text with
-- a non-space character is required).
local CREATE_THEN = object({
  { "text", { type = "string", minLength = 1, maxLength = MAX_NOTE_TEXT_LENGTH,
              pattern = { "[^\\s]+", "%S" } } },
}, { "text" })

endpoints["notes/create"] = {
  credential = true,
  params = CREATE_PARAMS,
  check = function(ps)
    if not (present(ps.renoteId) or present(ps.fileIds) or present(ps.mediaIds) or present(ps.poll)) then
      return params.check(CREATE_THEN, ps, "#/then")
    end
  end,
  errors = {
    NO_SUCH_RENOTE_TARGET = { id = "b5c90186-4ab0-49c8-9bba-a1f76c282ba4", message = "No such renote target." },
    CANNOT_RENOTE_TO_A_PURE_RENOTE = { id = "fd4cc33e-2a37-48dd-99cc-9b806eb2031a",
                                       message = "You can not Renote a pure Renote." },
    CANNOT_RENOTE_DUE_TO_VISIBILITY = { id = "be9529e9-fe72-4de0-ae43-0b363c4938af",
                                        message = "You can not Renote due to target visibility." },
    NO_SUCH_REPLY_TARGET = { id = "749ee0f6-d3da-459a-bf02-282e2da4292c", message = "No such reply target." },
    CANNOT_REPLY_TO_AN_INVISIBLE_NOTE = { id = "b98980fa-3780-406c-a935-b6d0eeee10d1",
                                          message = "You cannot reply to an invisible Note." },
    CANNOT_REPLY_TO_A_PURE_RENOTE = { id = "3ac74a84-8fd5-4bb0-870f-01804f82ce15",
                                      message = "You can not reply to a pure Renote." },
    CANNOT_REPLY_TO_SPECIFIED_VISIBILITY_NOTE_WITH_EXTENDED_VISIBILITY = {
      id = "ed940410-535c-4d5e-bfa3-af798671e93c",
      message = "You cannot reply to a specified visibility note with extended visibility." },
    CANNOT_CREATE_ALREADY_EXPIRED_POLL = { id = "04da457d-b083-4055-9082-955525eda5a5",
                                           message = "Poll is already expired." },
    NO_SUCH_CHANNEL = { id = "b1653923-5453-4edc-b786-7c4f39bb0bbb", message = "No such channel." },
    NO_SUCH_FILE = { id = "b6992544-63e7-67f0-fa7f-32444b1b5306", message = "Some files are not found." },
  },
  handler = function(self, ps, ctx)
    local note, code = self:_create_note(ctx.user, ps)
    if not note then return nil, code end
    return { createdNote = self:_pack_note(note, ctx.user, true) }
  end,
}

endpoints["notes/show"] = {
  params = object({ { "noteId", ID } }, { "noteId" }),
  errors = {
    NO_SUCH_NOTE = { id = "24fcbfc6-2e37-42b6-8388-c29b3861a08d", message = "No such note." },
  },
  handler = function(self, ps, ctx)
    local note = self._notes[ps.noteId]
    if not note then return nil, "NO_SUCH_NOTE" end
    return self:_pack_note(note, ctx.user, true)
  end,
}

endpoints["notes/delete"] = {
  credential = true,
  params = object({ { "noteId", ID } }, { "noteId" }),
  errors = {
    NO_SUCH_NOTE = { id = "490be23f-8c1f-4796-819f-94cb4f9d1630", message = "No such note." },
    ACCESS_DENIED = { id = "fe8d7103-0ea8-4ec3-814d-f8b401dc69e9", message = "Access denied." },
  },
  handler = function(self, ps, ctx)
    local note = self._notes[ps.noteId]
    if not note then return nil, "NO_SUCH_NOTE" end
    if note.userId ~= ctx.user.id then return nil, "ACCESS_DENIED" end
    self:_delete_note(note)
    return nil
  end,
}

-- Creates a note for `user` from validated params: the note, or nil and an
-- error code of notes/create.
function Fake:_create_note(user, ps)
  local visibility = ps.visibility or "public"
  local file_ids = {}
  for _, id in ipairs(present(ps.fileIds) and ps.fileIds or present(ps.mediaIds) and ps.mediaIds or {}) do
    local file = self._files[id]
    if not file or file.userId ~= user.id then return nil, "NO_SUCH_FILE" end
    file_ids[#file_ids + 1] = id
  end
  local renote, parent
  if present(ps.renoteId) then
    renote = self._notes[ps.renoteId]
    if not renote then return nil, "NO_SUCH_RENOTE_TARGET" end
    if is_pure_renote(renote) then return nil, "CANNOT_RENOTE_TO_A_PURE_RENOTE" end
    if renote.visibility == "followers" and renote.userId ~= user.id or renote.visibility == "specified" then
      return nil, "CANNOT_RENOTE_DUE_TO_VISIBILITY"
    end
  end
  if present(ps.replyId) then
    parent = self._notes[ps.replyId]
    if not parent then return nil, "NO_SUCH_REPLY_TARGET" end
    if is_pure_renote(parent) then return nil, "CANNOT_REPLY_TO_A_PURE_RENOTE" end
    if not visible_to(parent, user) then return nil, "CANNOT_REPLY_TO_AN_INVISIBLE_NOTE" end
    if parent.visibility == "specified" and visibility ~= "specified" then
      return nil, "CANNOT_REPLY_TO_SPECIFIED_VISIBILITY_NOTE_WITH_EXTENDED_VISIBILITY"
    end
  end
  local poll
  if present(ps.poll) then
    local expires = present(ps.poll.expiresAt) and ps.poll.expiresAt or nil
    if present(ps.poll.expiredAfter) then expires = self._clock + ps.poll.expiredAfter end
    if expires and expires < self._clock then return nil, "CANNOT_CREATE_ALREADY_EXPIRED_POLL" end
    local choices = {}
    for i, c in ipairs(ps.poll.choices) do choices[i] = c end
    poll = { choices = choices, multiple = ps.poll.multiple == true, expiresAt = expires }
  end
  if present(ps.channelId) then return nil, "NO_SUCH_CHANNEL" end

  -- NoteCreateService trims the text; an all-space text with a renote becomes no text.
  local text = present(ps.text) and trim(ps.text) or nil
  if text == "" then text = nil end
  self._clock = self._clock + 1
  local visible = {}
  if visibility == "specified" then
    for _, id in ipairs(present(ps.visibleUserIds) and ps.visibleUserIds or {}) do
      if self._by_id[id] then visible[#visible + 1] = id end
    end
  end
  local note = {
    id = self:_gen_id(), createdAt = self._clock, userId = user.id, text = text,
    cw = present(ps.cw) and ps.cw or nil, visibility = visibility, visibleUserIds = visible,
    localOnly = ps.localOnly == true, reactionAcceptance = present(ps.reactionAcceptance) and ps.reactionAcceptance
    or nil, replyId = parent and parent.id, renoteId = renote and renote.id, poll = poll,
    renoteCount = 0, repliesCount = 0, fileIds = file_ids,
  }
  self._notes[note.id] = note
  self._order[#self._order + 1] = note.id
  if parent then parent.repliesCount = parent.repliesCount + 1 end
  if renote then renote.renoteCount = renote.renoteCount + 1 end
  self:_note_events(note)
  return note
end

-- Deletes a note and, as the database's ON DELETE CASCADE does, its replies and renotes.
function Fake:_delete_note(note)
  if not self._notes[note.id] then return end
  self._notes[note.id] = nil
  self:_note_updated(note.id, "deleted", { deletedAt = iso(self._clock) })
  for i, id in ipairs(self._order) do
    if id == note.id then table.remove(self._order, i) break end
  end
  local parent = note.replyId and self._notes[note.replyId]
  if parent then parent.repliesCount = parent.repliesCount - 1 end
  local target = note.renoteId and self._notes[note.renoteId]
  if target then target.renoteCount = target.renoteCount - 1 end
  local children = {}
  for _, id in ipairs(self._order) do
    local n = self._notes[id]
    if n.replyId == note.id or n.renoteId == note.id then children[#children + 1] = n end
  end
  for _, n in ipairs(children) do self:_delete_note(n) end
end

--- Creates a note as @username directly on the server (nothing is recorded
-- in fake.requests) with the params of notes/create. Returns the note as its
-- author sees it; raises if notes/create would refuse the params.
---@param username string
---@param fields misskey.api.params.notes.create
---@return misskey.Note
function Fake:post(username, fields)
  local user = type(username) == "string" and self._by_name[username:gsub("^@", ""):lower()]
  if not user then error(("bad argument #1 to 'post' (no user @%s on the fake)"):format(tostring(username)), 2) end
  if type(fields) ~= "table" then error("bad argument #2 to 'post' (params table expected)", 2) end
  local ps = json.decode(json.encode(fields, "params"))
  local spec = endpoints["notes/create"]
  local p, r = params.check(spec.params, ps)
  if not p then p, r = spec.check(ps) end
  if p then error(("fake:post: INVALID_PARAM [%s: %s]"):format(p, r), 2) end
  local note, code = self:_create_note(user, ps)
  if not note then error("fake:post: " .. code, 2) end
  return self:_pack_note(note, user, true)
end

--- fake:notes(filter) -> the notes on the server, oldest first, as `viewer`
-- (a username; default the author) sees them; filter = { user =, replyId =, text = } (all optional).
---@param filter? { user?: string, replyId?: string, text?: string, viewer?: string }
---@return misskey.Note[]
function Fake:notes(filter)
  filter = filter or {}
  local out = {}
  for _, id in ipairs(self._order) do
    local n = self._notes[id]
    local author = self._by_id[n.userId]
    if (filter.user == nil or author.username:lower() == filter.user:gsub("^@", ""):lower())
       and (filter.replyId == nil or n.replyId == filter.replyId)
       and (filter.text == nil or (n.text and n.text:find(filter.text, 1, true))) then
      local viewer = filter.viewer and self._by_name[filter.viewer:lower()] or author
      out[#out + 1] = self:_pack_note(n, viewer, true)
    end
  end
  return out
end

return endpoints
