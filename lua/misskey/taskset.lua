--- misskey.taskset: the tasks an owner (a stream, a bot) started, so that it
-- can count them, cancel them, or give them time to finish when it stops.
--
-- Finished tasks are dropped when the set has doubled since the last sweep
-- (amortized O(1) per add): a task that raised never removes itself, and a set
-- that only grew would hold every failed handler of a bot that runs for weeks.
local core = require "misskey.core"
local loop = require "misskey.loop"

local taskset = {}

local TaskSet = { __name = "misskey.TaskSet" }
TaskSet.__index = TaskSet

local MIN_SWEEP = 64

local function live(task)
  local s = task.status
  return s ~= "done" and s ~= "failed" and s ~= "cancelled"
end

--- taskset.stop(task): cancels `task` if it waits (a confirm timer, a
-- starting point, a backfill); a running or finished one, or nil, is left alone.
---@param task table|nil a misskey.Task
function taskset.stop(task)
  if task and (task.status == "waiting" or task.status == "ready") then task:cancel() end
end

--- taskset.new() -> an empty set
---@return table
function taskset.new()
  return setmetatable({ tasks = {}, n = 0, sweep_at = MIN_SWEEP }, TaskSet)
end

--- set:add(task) -> task (kept until it finishes)
---@param task table a misskey.Task
---@return table task
function TaskSet:add(task)
  local tasks = self.tasks
  if not tasks[task] then
    tasks[task] = true
    self.n = self.n + 1
    if self.n >= self.sweep_at then self:count() end
  end
  return task
end

--- set:spawn(fn, ...) -> task: loop.spawn, kept in the set.
---@param fn function
---@return table task
function TaskSet:spawn(fn, ...)
  return self:add(loop.spawn(fn, ...))
end

--- set:count() -> the tasks that have not finished (finished ones are dropped).
---@return integer
function TaskSet:count()
  local n = 0
  for task in pairs(self.tasks) do
    if live(task) then n = n + 1 else self.tasks[task] = nil end
  end
  self.n = n
  self.sweep_at = math.max(MIN_SWEEP, 2 * n)
  return n
end

--- set:cancel([except]) -> cancels every task but `except` and the running ones
-- (a running task sees its owner stopped and ends by itself); empties the set.
---@param except? table a task to leave alone (the caller's)
function TaskSet:cancel(except)
  local tasks = self.tasks
  self.tasks, self.n, self.sweep_at = {}, 0, MIN_SWEEP
  for task in pairs(tasks) do
    if task ~= except and live(task) and task.status ~= "running" then task:cancel() end
  end
end

--- set:wait(seconds[, except]) -> true when every task (but `except`) finished
-- within `seconds`, false when some still run. Yields in a task, blocks outside one.
---@param seconds number
---@param except? table a task not to wait for (the caller's)
---@return boolean
function TaskSet:wait(seconds, except)
  local deadline = core.now() + seconds
  while true do
    -- A snapshot: the set may grow while we wait (a task that starts another).
    local pending = {}
    for task in pairs(self.tasks) do
      if task ~= except and live(task) then pending[#pending + 1] = task end
    end
    if #pending == 0 then return true end
    for i = 1, #pending do
      if live(pending[i]) then
        local left = deadline - core.now()
        if left <= 0 or loop.await_task(pending[i], left) == "timeout" then return false end
      end
    end
  end
end

return taskset
