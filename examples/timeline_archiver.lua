-- A timeline archiver: appends the home timeline to a JSON Lines file, oldest
-- first, and saves the pagination cursor so the next run resumes where this
-- one stopped (no duplicates, nothing missed).
--
-- Runs against MISSKEY_HOST with MISSKEY_TOKEN when both are set; otherwise
-- against misskey.testing's in-process fake, where @alice has posted a few notes.
--   --out FILE    the archive (default timeline.jsonl)
--   --state FILE  where the cursor is kept (default: the archive's name .. ".cursor")
--   --max N       archive at most N notes in this run (the rest comes next time)
--   --seed N      fake only: @alice posts N numbered notes first (the same ones every
--                 run, with the same ids; a larger N the next time = new notes since)
local testing = require "misskey.testing"
local json = require "misskey.json"

local opts = { out = "timeline.jsonl" }
local args = arg or {}
local i = 1
while i <= #args do
  local name = args[i]:match("^%-%-(%a+)$")
  if not name or (name ~= "out" and name ~= "state" and name ~= "max" and name ~= "seed") or not args[i + 1] then
    io.stderr:write("usage: timeline_archiver.lua [--out FILE] [--state FILE] [--max N] [--seed N]\n")
    os.exit(2)
  end
  opts[name] = args[i + 1]
  i = i + 2
end
opts.state = opts.state or (opts.out .. ".cursor")

local client, fake, where = testing.demo_client()
print(where)
if fake then
  for n = 1, tonumber(opts.seed) or 3 do fake:post("alice", { text = ("archived note #%d"):format(n) }) end
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return text
end

local cursor = read_file(opts.state)
if cursor then cursor = cursor:match("^%s*(.-)%s*$") end
if cursor == "" then cursor = nil end

-- Oldest first ("newer"), so the archive grows in time order and the cursor taken at
-- the end finds exactly the notes posted since.
local it = client:paginate("notes/timeline", {}, {
  direction = "newer", cursor = cursor, page_size = 20,
  -- Each run has its own max (the cursor carries none); no --max: everything new.
  max = tonumber(opts.max),
})
local out = assert(io.open(opts.out, "ab"))
local count = 0
for note in it do
  out:write(json.encode{ id = note.id, createdAt = note.createdAt, user = note.user and note.user.username,
                         text = note.text, cw = note.cw, visibility = note.visibility, fileIds = note.fileIds }, "\n")
  count = count + 1
end
out:close()

-- The cursor goes to a temporary file first, then replaces the old one.
local tmp = opts.state .. ".tmp"
local f = assert(io.open(tmp, "wb"))
f:write(it:cursor(), "\n")
f:close()
assert(os.rename(tmp, opts.state))

print(("archived %d notes to %s (%s; cursor saved to %s)"):format(
  count, opts.out, cursor and "resumed from the saved cursor" or "from the start", opts.state))
if it.err then
  io.stderr:write("stopped early: ", tostring((it:error())), "\n")
  os.exit(1)
end
