-- Quickstart: who am I, what server is this, post a note, read it back, delete it.
-- Runs against MISSKEY_HOST with MISSKEY_TOKEN when both are set.
local misskey = require "misskey"

local host, token = os.getenv("MISSKEY_HOST"), os.getenv("MISSKEY_TOKEN")
if not (host and token) then
  io.stderr:write("quickstart: set MISSKEY_HOST and MISSKEY_TOKEN to run against a server\n")
  os.exit(2)
end
local client = misskey.new{ host = host, token = token, timeout = 30 }

local meta = assert(client:request("meta", { detail = false }))
print(("server: %s (Misskey %s)"):format(meta.name or client.host, meta.version))

local me = assert(client:request("i"))
print(("me: @%s"):format(me.username))

local created = assert(client:request("notes/create", { text = "Hello from lua-misskey!", visibility = "specified" }))
local note = assert(client:request("notes/show", { noteId = created.createdNote.id }))
print(("posted %s: %s"):format(note.id, note.text))

assert(client:request("notes/delete", { noteId = note.id }))
print("deleted " .. note.id)

local _, msg, err = client:request("notes/show", { noteId = note.id })
print(("showing it again fails as it should: %s (code %s)"):format(msg, err and err.code))
