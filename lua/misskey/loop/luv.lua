--- Drives misskey's scheduler from a libuv loop (luv): Neovim (`vim.uv` or
-- `vim.loop`), luvit, or any program built on luv.
--
--   local driver = require("misskey.loop.luv").start()   -- or .start(vim.uv)
--   misskey.spawn(function() ... client:request(...) ... end)
--   uv.run()                                             -- returns once misskey has no tasks
--   driver.stop()
--
-- It watches one fd (the engine's epoll set, readable when any of its sockets
-- is) and one timer set to the scheduler's next deadline: no polling. Its
-- handles are unreferenced while misskey has no task, so uv.run() can return.
local loop = require "misskey.loop"

local luv_adapter = {}

-- True when `uv`'s loop is running now (we are inside one of its callbacks).
-- luv's own uv.run sets the mode; Neovim runs its loop from C, so inside
-- Neovim (the `vim` global) Lua code always counts as running in the loop.
local function loop_running(uv)
  if rawget(_G, "vim") ~= nil then return true end
  return type(uv.loop_mode) == "function" and uv.loop_mode() ~= nil
end

---@param uv table? luv (default `require "luv"`), `vim.uv` or `vim.loop`
---@return table driver with `stop()`
function luv_adapter.start(uv)
  uv = uv or require "luv"
  local poll = uv.new_poll(loop.pollfd())
  local timer = uv.new_timer()
  local driver = { stopped = false }

  local step
  local function schedule()
    timer:stop()
    local t = loop.timeout()
    if t then timer:start(math.ceil(t * 1000), 0, step) end
    if loop.alive() > 0 then
      poll:ref()
      timer:ref()
    else
      poll:unref()
      timer:unref()
    end
  end

  step = function()
    if driver.stopped then return end
    loop.step(0)
    schedule()
  end

  poll:start("r", step)
  loop.set_wakeup(function()
    timer:stop()
    timer:start(0, 0, step)
    timer:ref()
    poll:ref()
  end)
  schedule()

  --- Stops driving the scheduler and closes the handles. Outside the loop it
  -- also runs one non-blocking round of the loop so libuv finishes the closes:
  -- a handle still closing when the program exits makes luv 1.44's loop
  -- finalizer call back into freed memory (a segfault at exit). Inside the loop
  -- (a callback, a misskey task) the running uv.run finishes them itself.
  function driver.stop()
    if driver.stopped then return end
    driver.stopped = true
    loop.set_wakeup(nil)
    poll:stop()
    timer:stop()
    poll:close()
    timer:close()
    if not loop_running(uv) then uv.run("nowait") end
  end

  return driver
end

return luv_adapter
