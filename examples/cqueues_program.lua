-- misskey inside a cqueues program: a cqueues coroutine keeps its own ticker
-- while misskey tasks fetch the server's meta and the home timeline at once.
--
--   lua5.1 examples/cqueues_program.lua [--ticks N]
--
-- Stops after N ticks of 50 ms (default 20) or when the work is done.
-- Uses MISSKEY_HOST/MISSKEY_TOKEN when both are set, else misskey.testing's fake.
local cqueues = require "cqueues"
local misskey = require "misskey"
local testing = require "misskey.testing"

local max_ticks = 20
local args = { ... }
for i = 1, #args do
  if args[i] == "--ticks" then max_ticks = assert(tonumber(args[i + 1]), "--ticks needs a number") end
end

local client, _, which = testing.demo_client{ timeout = 20 }
print(which)

local cq = cqueues.new()
require("misskey.loop.cqueues").start(cq)

local done = {}
misskey.spawn(function()
  local meta = assert(client:request("meta", { detail = false }))
  done.meta = meta.version
  print("server version " .. meta.version)
end)
misskey.spawn(function()
  local notes = assert(client:request("notes/timeline", { limit = 5 }))
  done.timeline = #notes
  print(("timeline: %d notes"):format(#notes))
end)

cq:wrap(function()
  for tick = 1, max_ticks do
    if done.meta and done.timeline then break end
    print("tick " .. tick)
    cqueues.sleep(0.05)
  end
end)

assert(cq:loop())
assert(done.meta and done.timeline, "the misskey tasks did not finish")
print("done")
