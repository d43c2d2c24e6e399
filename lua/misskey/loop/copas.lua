--- Drives misskey's scheduler from copas (LuaSocket's coroutine dispatcher).
--
--   local copas = require "copas"
--   local adapter = require "misskey.loop.copas"
--   misskey.spawn(function() ... client:request(...) ... end)
--   adapter.loop(copas)      -- copas.step() until misskey has no tasks
--
-- A copas thread waits on the engine's epoll fd (wrapped as a socket-like
-- object, which LuaSocket's select accepts through `getfd`) and steps misskey
-- when it is readable; `adapter.loop` bounds each copas.step by misskey's next
-- deadline, so timers fire on time. Debian 12's lua-copas package (1.2.0)
-- holds Copas 1.1.7, which has no timers and no copas.sleep of its own: that
-- is why the loop is ours rather than copas.loop().
local loop = require "misskey.loop"

local copas_adapter = {}

-- The engine's epoll fd as a LuaSocket-like object: `receive` first answers
-- "timeout" (so copas waits in select), then succeeds once select saw it ready.
local function fd_object(fd)
  local obj, armed = {}, false
  function obj.getfd() return fd end
  function obj.dirty() return false end
  function obj.settimeout() end
  function obj.close() end -- copas closes the last socket a finished thread used
  function obj.receive()
    armed = not armed
    if armed then return nil, "timeout" end
    return ""
  end
  return obj
end

--- Adds the copas thread that steps misskey whenever the engine's fd is readable.
-- Returns a driver with stop().
function copas_adapter.attach(copas)
  local driver = { stopped = false }
  local obj = fd_object(loop.pollfd())
  copas.addthread(function()
    while not driver.stopped and loop.alive() > 0 do
      copas.receive(obj)
      loop.step(0)
    end
  end)
  function driver.stop() driver.stopped = true end
  return driver
end

--- Runs copas steps, each bounded by misskey's next deadline, until misskey has
-- no tasks left.
function copas_adapter.loop(copas)
  local driver = copas_adapter.attach(copas)
  loop.step(0)
  while loop.alive() > 0 do
    copas.step(loop.timeout())
    loop.step(0)
  end
  driver.stop()
end

return copas_adapter
