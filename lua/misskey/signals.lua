--- misskey.signals: a stop on SIGTERM/SIGINT (the `stop_on` option of
-- stream:run and bot:run), without a signal handler; and that `run` itself,
-- which a stream and a bot share.
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
---@param level? integer see misskey.argcheck
---@return string[]|nil
function signals.check(v, option, level)
  if v == nil then return nil end
  local function bad(what) -- the public function -> signals.check -> bad (`level`: see misskey.argcheck)
    argcheck.opterror(option, what, (level or 1) + 2)
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

local RUN_OPTIONS = { stop_on = true, grace = true }

--- signals.run(owner, opts, hooks) -> true [, signal] | nil, msg, err: the
-- `run` of a stream and of a bot (`owner`: "stream" or "bot", for messages).
-- Checks `opts` ({ stop_on = { "TERM", ... }, grace = s }; stream:run or
-- bot:run calls this, so it raises at level 2), calls hooks.start(), then
-- waits for hooks.wait() to return (in the caller's task, or inside
-- misskey.run from a plain script, so every task the owner started finishes
-- first). On one of the `stop_on` signals it calls hooks.stop(grace) (default
-- 10 s), and returns true and the signal's name; else the failure
-- hooks.failure() gives, or true.
---@param owner string
---@param opts? { stop_on?: string[], grace?: number }
---@param hooks { start: fun(), wait: fun(), stop: fun(grace: number), failure: fun(): table|nil }
---@return boolean|nil ok
---@return string|nil signal_or_message
---@return table|nil err
function signals.run(owner, opts, hooks)
  if opts ~= nil and type(opts) ~= "table" then
    argcheck.argerror(1, "run", "options table expected, got " .. type(opts), 2)
  end
  opts = opts or {}
  argcheck.known_options(opts, RUN_OPTIONS, 2)
  local stop_on = signals.check(opts.stop_on, "stop_on", 2)
  local grace = argcheck.seconds_option(opts, "grace", nil, 2) or 10
  local watcher
  if stop_on and loop.runtime and not loop.runtime.signals then
    error(owner .. ":run: stop_on is not available in this runtime (inside nginx, nginx handles the signals: "
      .. "a reload or stop closes streams through misskey.ngx)", 3)
  end
  if stop_on then
    local why
    watcher, why = signals.watch(stop_on, function() hooks.stop(grace) end)
    if not watcher then error(owner .. ":run: " .. why, 3) end
  end
  hooks.start()
  local function wait()
    hooks.wait()
    if watcher then watcher:close() end
  end
  if loop.current() then wait() else loop.run(wait) end
  local err = hooks.failure()
  if err then return nil, err.message, err end
  return true, watcher and watcher.fired or nil
end

return signals
