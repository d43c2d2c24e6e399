-- An idle scheduler costs next to no CPU, and timers fire on time without a
-- polling loop. Prints: CPU seconds used during a 2 s wait on a slow reply
-- (through the scheduler), how many engine steps that took, and how late
-- timers of 0.1, 0.5 and 1 s fired. Figures only; nothing is asserted.
--   lua5.4 bench/idle_cpu.lua   (from the repository root, after `make`)
local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
package.cpath = "./build/" .. version .. "/?.so;" .. package.cpath

local misskey = require "misskey"
local core = require "misskey.core"
local server = require "support.server"

-- Count engine steps: every wake-up of the scheduler goes through step().
local steps = 0
local engine_index = getmetatable(misskey.engine()).__index
local real_step = engine_index.step
engine_index.step = function(...) steps = steps + 1; return real_step(...) end

local srv = server.start()
local client = misskey.new{ host = srv.url, token = false }

local cpu0, wall0 = os.clock(), core.now()
local steps0 = steps
misskey.run(function()
  assert(client:request("test/slow", { delay = 2 }))
end)
local cpu, wall = os.clock() - cpu0, core.now() - wall0
local wait_steps = steps - steps0

local lateness = {}
misskey.run(function()
  for _, d in ipairs{ 0.1, 0.5, 1.0 } do
    misskey.spawn(function()
      local t0 = core.now()
      misskey.sleep(d)
      lateness[#lateness + 1] = { d, (core.now() - t0 - d) * 1000 }
    end)
  end
end)
srv:stop()

print(("%-8s idle wait on a 2 s reply: wall %.2f s, CPU %.4f s (%.2f%%), %d engine steps")
  :format(version, wall, cpu, 100 * cpu / wall, wait_steps))
for _, l in ipairs(lateness) do
  print(("%-8s timer %.1f s fired %.2f ms late"):format(version, l[1], l[2]))
end
