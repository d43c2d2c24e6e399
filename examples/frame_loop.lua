-- A frame loop (a game, LÖVE's love.update, a UI) that talks to Misskey
-- without ever blocking a frame: each frame calls misskey.step(0), which runs
-- whatever tasks are ready and moves the network, then returns at once.
--
--   lua5.4 examples/frame_loop.lua [--frames N]
--
-- It stops when its work is done or after N frames (default 600, ~10 s).
-- Uses MISSKEY_HOST/MISSKEY_TOKEN when both are set, else misskey.testing's fake.
local misskey = require "misskey"
local testing = require "misskey.testing"

local max_frames = 600
local args = { ... }
for i = 1, #args do
  if args[i] == "--frames" then max_frames = assert(tonumber(args[i + 1]), "--frames needs a number") end
end

local client, _, which = testing.demo_client{ timeout = 20 }
print(which)

local status = "connecting"
misskey.spawn(function()
  local me = assert(client:request("i"))
  status = "signed in as @" .. me.username
  local created = assert(client:request("notes/create",
    { text = "posted from a frame loop", visibility = "specified" }))
  status = "posted " .. created.createdNote.id
  misskey.sleep(0.1) -- a timer, not a frame count: fires on time whatever the frame rate
  assert(client:request("notes/delete", { noteId = created.createdNote.id }))
  status = "deleted " .. created.createdNote.id
end)

local frame, last = 0, nil
while frame < max_frames do
  frame = frame + 1
  local alive = misskey.step(0)     -- never blocks
  if status ~= last then
    print(("frame %4d: %s"):format(frame, status))
    last = status
  end
  if alive == 0 then break end
  misskey.sleep(1 / 60)              -- stands in for vsync; runs tasks meanwhile too
end
print(("done after %d frames"):format(frame))
assert(status:find("^deleted"), "the work did not finish: " .. status)
