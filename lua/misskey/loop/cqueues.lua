--- Drives misskey's scheduler from a cqueues controller.
--
--   local cq = cqueues.new()
--   require("misskey.loop.cqueues").start(cq)
--   misskey.spawn(function() ... client:request(...) ... end)
--   assert(cq:loop())        -- returns once misskey has no tasks (and cq has nothing else)
--
-- A cqueues coroutine polls one pollable object: the engine's epoll fd with
-- the scheduler's next deadline as its timeout (cqueues' own convention), and a
-- condition that misskey signals when a task becomes ready. No polling loop.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local loop = require "misskey.loop"

local cq_adapter = {}

function cq_adapter.start(cq)
  cq = cq or cqueues.new()
  local wake = condition.new()
  local driver = { stopped = false, controller = cq }
  local pollable = {
    pollfd = function() return loop.pollfd() end,
    events = function() return "r" end,
    timeout = function() return loop.timeout() end,
  }
  loop.set_wakeup(function() wake:signal() end)
  cq:wrap(function()
    while not driver.stopped do
      loop.step(0)
      if loop.alive() == 0 then break end
      cqueues.poll(pollable, wake)
    end
    loop.set_wakeup(nil)
  end)

  --- Stops driving the scheduler after the current round.
  function driver.stop()
    driver.stopped = true
    wake:signal()
  end

  return driver
end

return cq_adapter
