-- Quickstart: what server is this, who am I, post a note, read it back, read
-- the home timeline, delete the note.
--
-- Runs against MISSKEY_HOST with MISSKEY_TOKEN when both are set (the note is
-- posted with visibility "specified", so only you see it); otherwise against
-- misskey.testing's in-process fake server, so it runs anywhere.
-- Anything unexpected fails an assert and the script exits non-zero.
local misskey = require "misskey"

local host, token = os.getenv("MISSKEY_HOST"), os.getenv("MISSKEY_TOKEN")
local client
if host and host ~= "" and token and token ~= "" then
  client = misskey.new{ host = host, token = token, timeout = 30 }
  print(("using the Misskey server at %s (MISSKEY_HOST, MISSKEY_TOKEN)"):format(client.base_url))
else
  local testing = require "misskey.testing"
  local fake = testing.fake()
  -- A little history, so the timeline has more than our own note.
  fake:post("alice", { text = "Good morning, fediverse!" })
  fake:post("alice", { text = "Anyone else testing Lua clients today?" })
  fake:post("me", { text = "Trying out lua-misskey." })
  client = fake:client{ timeout = 30 }
  print(("using the fake Misskey server at %s (misskey.testing; set MISSKEY_HOST and MISSKEY_TOKEN "
    .. "for a real one)"):format(fake.base_url))
end

local function text_of(note)
  if note.text ~= misskey.null then return note.text end
  if note.renoteId ~= misskey.null then return "(renote of " .. note.renoteId .. ")" end
  return "(no text)"
end

local meta = assert(client:request("meta", { detail = false }))
print(("server: %s (Misskey %s)"):format(meta.name ~= misskey.null and meta.name or client.host, meta.version))

local me = assert(client:request("i"))
print(("me: @%s (%d notes)"):format(me.username, me.notesCount))

local created = assert(client:request("notes/create", {
  text = "Hello from lua-misskey!", visibility = "specified",
}))
local note = assert(client:request("notes/show", { noteId = created.createdNote.id }))
assert(note.id == created.createdNote.id, "notes/show returned another note")
print(("posted %s at %s: %s"):format(note.id, note.createdAt, text_of(note)))

local timeline = assert(client:request("notes/timeline", { limit = 3 }))
print(("home timeline, newest %d:"):format(#timeline))
for _, n in ipairs(timeline) do
  print(("  %s @%s: %s"):format(n.createdAt, n.user.username, text_of(n)))
end

assert(client:request("notes/delete", { noteId = note.id }))
print("deleted " .. note.id)

local gone, msg, err = client:request("notes/show", { noteId = note.id })
assert(gone == nil, "the deleted note can still be shown")
assert(err.kind == "api" and err.code == "NO_SUCH_NOTE", msg)
print(("showing it again fails as it should: %s (HTTP %d)"):format(err.code, err.status))
