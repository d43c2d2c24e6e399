--- misskey.signals: a stop on SIGTERM/SIGINT (the `stop_on` option of
-- stream:run and bot:run), without a signal handler.
--
-- The C core blocks the signals and hands them out through a signalfd
-- (src/signals.c); a task waits for that fd through the engine like for any
-- socket, and calls the owner's stop function in the scheduler, where it may
-- wait for handlers and close sockets. Nothing runs inside a signal.
local argcheck = require "misskey.argcheck"
local core = require "misskey.core"
local loop = require "misskey.loop"

local signals = {}

local NAMES = { TERM = true, INT = true, HUP = true, QUIT = true, USR1 = true, USR2 = true }

--- signals.check(v, option) -> a list of names ("TERM", ...; "SIGTERM" is
-- taken too) or nil for nil; raises naming `option` on anything else.
---@param v any
---@param option string
---@return string[]|nil
function signals.check(v, option)
  if v == nil then return nil end
  local function bad(what) -- stream:run or bot:run -> signals.check -> bad: level 3
    argcheck.opterror(option, what, 3)
  end
  if type(v) ~= "table" or #v == 0 then bad('a list of signal names expected, e.g. { "TERM", "INT" }') end
  local out = {}
  for i = 1, #v do
    local name = type(v[i]) == "string" and v[i]:gsub("^SIG", "") or nil
    if not NAMES[name] then bad("unknown signal " .. tostring(v[i]) .. " (TERM, INT, HUP, QUIT, USR1 or USR2)") end
    out[i] = name
  end
  return out
end

local Watcher = { __name = "misskey.signals.Watcher" }
Watcher.__index = Watcher

--- signals.watch(names, on_signal) -> watcher | nil, message: blocks the
-- signals and starts a task that calls on_signal(name) on the first of them.
---@param names string[]
---@param on_signal fun(name: string)
function signals.watch(names, on_signal)
  local sig, msg = core.signals(names)
  if not sig then return nil, msg end
  local self = setmetatable({ sig = sig }, Watcher)
  self.task = loop.spawn(function()
    while true do
      loop.await_socket(sig:fd(), "r")
      local got = sig:read()
      if got[1] then
        self.fired = got[1]
        return on_signal(got[1])
      end
    end
  end)
  return self
end

--- watcher:close(): stops watching. When a signal came, this waits for the
-- stop it started first: the signals stay blocked until then, so a second one
-- cannot end the process halfway through the stop.
function Watcher:close()
  local task = self.task
  if self.fired then
    if task.status ~= "done" and task.status ~= "failed" and task ~= loop.current() then task:join() end
  elseif task.status == "waiting" or task.status == "ready" then
    task:cancel()
  end
  self.sig:close()
end

return signals
