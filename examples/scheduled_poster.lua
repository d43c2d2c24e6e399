-- A scheduled poster: posts a note every S seconds, N times (or until Ctrl-C).
--
-- Runs against MISSKEY_HOST with MISSKEY_TOKEN when both are set; otherwise
-- against misskey.testing's in-process fake.
--   --every S   seconds between notes (default 3600)
--   --count N   post N notes, then exit (default: until interrupted); CI runs
--               --count 2 --every 0.05
local misskey = require "misskey"
local testing = require "misskey.testing"

local every, count = 3600, nil
local args = arg or {}
local i = 1
while i <= #args do
  local a, v = args[i], tonumber(args[i + 1])
  if a == "--every" and v and v > 0 then
    every = v
  elseif a == "--count" and v and v >= 1 and v % 1 == 0 then
    count = v
  else
    io.stderr:write("usage: scheduled_poster.lua [--every SECONDS] [--count N]\n")
    os.exit(2)
  end
  i = i + 2
end

local client, fake, where = testing.demo_client()
print(where)

local n = 0
while count == nil or n < count do
  if n > 0 then misskey.sleep(every) end   -- blocks here; inside a task it would yield instead
  n = n + 1
  local res, msg = client:request("notes/create", {
    text = ("Scheduled note #%d (%s)"):format(n, os.date("!%Y-%m-%d %H:%M:%S UTC")),
    visibility = "home",
  })
  if res then
    print(("posted %s: %s"):format(res.createdNote.id, res.createdNote.text))
  else
    io.stderr:write("could not post: ", tostring(msg), "\n")   -- try again next time
  end
end

if fake then
  -- The effect, checked in the fake.
  local notes = fake:notes{ user = "me", text = "Scheduled note #" }
  print(("in the fake: %d scheduled notes by @me"):format(#notes))
end
