--- The scheduler: coroutine tasks over the C engine.
--
-- Every wait (a transfer, a timer, a socket, a task's end) goes through
-- `await`. Inside a task it registers the wait and yields; the scheduler
-- resumes the task when the engine reports the event. Outside a task it steps
-- the engine until the event happens (blocking), queueing other tasks' events
-- for later. So `client:request` yields in a task and blocks in a plain
-- script: one code path. This file is the waiting seam (docs/architecture.md,
-- "The waiting seam"): nothing else in the library waits any other way.
local argcheck = require "misskey.argcheck"
local waitlists = require "misskey.waitlists"
local core_now = require("misskey.core").now
local engines = require "misskey.engine"
local errors = require "misskey.errors"

local loop = {}

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")
-- Locals for what spawn_now runs per call (a stream's every event): no global lookups.
local type, co_resume, co_yield = type, coroutine.resume, coroutine.yield
local function pack(...) return { n = select("#", ...), ... } end

--- A task (misskey.spawn): a function the scheduler runs as a coroutine.
---@class misskey.Task
---@field status "ready"|"running"|"waiting"|"done"|"failed"|"cancelled"
local Task = { __name = "misskey.Task" }
Task.__index = Task

local by_co = setmetatable({}, { __mode = "k" })  -- coroutine -> task
local ready = {}         -- queue of tasks to resume: task, values, task, values, ...
local transfer_waits = {} -- transfer -> waiter, or the task itself (await_transfer's fast path)
local timer_waits = {}    -- timer id -> waiter
local socket_waits = {}   -- fd -> waiter
local alive = 0           -- tasks not finished
local stopping = false
local running_loop = false
local wakeup -- set by a host-loop adapter: called when tasks become ready

-- Queues a task to resume; tells a host-loop adapter that a step is due.
local function enqueue(task, values)
  local n = #ready
  ready[n + 1] = task
  ready[n + 2] = values
  if wakeup and n == 0 then wakeup() end
end

local engine = engines.default

--- The task running now, or nil outside any task.
---@return misskey.Task|nil
function loop.current()
  local co = coroutine.running()
  return co and by_co[co] or nil
end

-- Default handler for errors of tasks nobody joins: print with traceback.
local function default_handler(err)
  io.stderr:write("misskey: task failed: ", tostring(err.message), "\n", tostring(err.traceback or ""), "\n")
end
local error_handler = default_handler

--- Replaces the handler of errors that no task joins; returns the previous one.
---@param fn? fun(err: misskey.Error) nil: the default (print with the traceback)
---@return fun(err: misskey.Error) previous
function loop.on_error(fn)
  if fn ~= nil and type(fn) ~= "function" then
    argcheck.argerror(1, "on_error", "function expected, got " .. type(fn))
  end
  local old = error_handler
  error_handler = fn or default_handler
  return old
end

-- ------------------------------------------------------------------------
-- waking tasks

-- A waiter is one registration of one wait of one task (or of a blocking
-- caller when task is nil). Only the first event of a wait wakes the task.
local function wake(waiter, ...)
  if waiter.fired then return end
  waiter.fired = true
  waiter.values = pack(...)
  local task = waiter.task
  if task and task.wait == waiter.wait and task.status == "waiting" then
    task.status = "ready"
    enqueue(task, waiter.values)
  end
end

local DONE = { n = 1, "done" } -- what await_transfer's fast path resumes a task with (never changed)

-- One engine step: dispatches what finished to whoever waits on it.
local function pump(timeout)
  local transfers, timers, sockets = engine():step(timeout)
  for i = 1, #transfers do
    local tr = transfers[i]
    local w = transfer_waits[tr]
    if w then
      transfer_waits[tr] = nil
      if getmetatable(w) == Task then
        if w.wait == tr and w.status == "waiting" then
          w.status = "ready"
          enqueue(w, DONE)
        end
      else
        wake(w, "done")
      end
    end
  end
  for i = 1, #timers do
    local w = timer_waits[timers[i]]
    if w then
      timer_waits[timers[i]] = nil
      wake(w, "timeout")
    end
  end
  for fd, ev in pairs(sockets) do
    local w = socket_waits[fd]
    if w then wake(w, ev) end
  end
end

-- ------------------------------------------------------------------------
-- tasks

local function finish(task, ok, ...)
  alive = alive - 1
  by_co[task.co] = nil
  if ok then
    task.status = "done"
    task.results = pack(...)
  else
    task.status = "failed"
    task.results = pack(...)
  end
  local joiners = task.joiners
  task.joiners = {}
  local joined = task.joined
  for i = 1, #joiners do
    local w = joiners[i]
    if not w.watching then joined = true end -- loop.await_task only watches: the error is still reported
    wake(w)
  end
  if not ok and not joined then
    local err = task.results[3]
    local hok, herr = pcall(error_handler, err, task)
    if not hok then io.stderr:write("misskey: error handler failed: ", tostring(herr), "\n") end
  end
end

local function resumed(task, ok, ...)
  if coroutine.status(task.co) == "dead" then
    if ok then
      finish(task, true, ...)
    else
      local e = ...
      local msg = tostring(e)
      local m, err = errors.new("task", "task failed: " .. msg,
        { traceback = debug.traceback(task.co, msg), error = e })
      finish(task, false, nil, m, err)
    end
  elseif task.status == "running" then
    if task.wait == nil then
      -- A plain coroutine.yield(): the task gives way and runs again next round.
      task.status = "ready"
      enqueue(task, pack())
    else
      task.status = "waiting"
    end
    if task.cancelling then task:cancel() end -- asked while it ran (see Task:cancel)
  end
end

local function resume(task, values)
  task.status = "running"
  task.wait = nil
  if values.n == 1 then -- the usual wake-up ("done", "timeout", a socket's readiness)
    return resumed(task, coroutine.resume(task.co, values[1]))
  end
  return resumed(task, coroutine.resume(task.co, unpack(values, 1, values.n)))
end

local function run_ready()
  local batch = ready
  ready = {}
  for i = 1, #batch, 2 do
    local task = batch[i]
    if task.status == "ready" then resume(task, batch[i + 1]) end
  end
end

--- misskey.spawn(fn, ...) -> task: runs fn(...) as a task (it starts at the
-- next scheduler round, or when someone joins it).
---@param fn function
---@param ... any fn's arguments
---@return misskey.Task
function loop.spawn(fn, ...)
  if type(fn) ~= "function" then
    argcheck.argerror(1, "spawn", "function expected, got " .. type(fn))
  end
  local task = setmetatable({ status = "ready", joiners = {} }, Task)
  task.co = coroutine.create(fn)
  by_co[task.co] = task
  alive = alive + 1
  enqueue(task, pack(...))
  return task
end

-- Tasks of loop.spawn_now whose last call returned without waiting (status
-- "done"), each with its coroutine parked, kept for the next call.
local parked, PARKED, MAX_PARKED = {}, {}, 16
local parked1 = {} -- the same for loop.spawn_now1, whose coroutines take one argument
local NO_RESULTS = { n = 0 }

-- The body of a spawn_now task: one call after another, as long as each returns
-- without waiting; a call that waited belongs to the scheduler, and the task ends with it.
-- park_wait is a tail call, so a parked coroutine no longer holds fn and its arguments.
local park
local function park_wait(task)
  if task.inline then return park(task, co_yield(PARKED)) end
end
function park(task, fn, ...)
  fn(...)
  return park_wait(task)
end

-- The body of a spawn_now1 task: park's, for fn(a) (no vararg function per call).
local park1
local function park1_wait(task)
  if task.inline then return park1(task, co_yield(PARKED)) end
end
function park1(task, fn, a)
  fn(a)
  return park1_wait(task)
end

local function settle_now(task, ok, r)
  if ok and r == PARKED and task.inline then -- returned without waiting
    if task.status ~= "running" then return task end -- cancelled meanwhile (finished already)
    task.cancelling = false -- asked while it ran, but it returned: nothing left to cancel
    alive = alive - 1
    task.status = "done"
    if #task.joiners > 0 then
      local joiners = task.joiners
      task.joiners = {}
      for i = 1, #joiners do wake(joiners[i]) end
    end
    local pool = task.one and parked1 or parked
    if #pool < MAX_PARKED then pool[#pool + 1] = task end
    return task
  end
  task.inline = false -- from now on an ordinary task, never reused
  -- It raised (a call that returns parks) or it waits: settled as any resumed task.
  resumed(task, ok, r)
  return task
end

-- A running spawn_now task for coroutine co (one: a spawn_now1 task, parked apart).
-- one and cancelling start false, not nil: read or set on every call, found here, not in Task.
local function new_inline_task(co, one)
  local task = setmetatable({ status = "running", joiners = {}, inline = true, one = one, co = co,
    results = NO_RESULTS, cancelling = false }, Task)
  by_co[co] = task
  return task
end

--- loop.spawn_now(fn, ...) -> task: like spawn, but fn(...) starts at once, inside the
-- caller, and spawn_now returns when it returns or first waits (it then goes on as a task,
-- resumed by the scheduler). An error in fn ends its task as in spawn (reported to
-- misskey.on_error); it never reaches the caller. A call that returns without waiting
-- costs no coroutine and no table: its task (status "done" once it returned) is reused
-- for a later call, so keep a spawn_now task only while it runs or once it has waited.
function loop.spawn_now(fn, ...)
  if type(fn) ~= "function" then
    argcheck.argerror(1, "spawn_now", "function expected, got " .. type(fn))
  end
  local n = #parked
  local task = parked[n]
  alive = alive + 1
  if task then
    parked[n] = nil
    task.status = "running"
    return settle_now(task, co_resume(task.co, fn, ...))
  end
  local co = coroutine.create(park)
  task = new_inline_task(co, false)
  return settle_now(task, coroutine.resume(co, task, fn, ...))
end

--- loop.spawn_now1(fn, a) -> task: spawn_now(fn, a) for a caller that knows fn is a
-- function (it is not checked) and passes exactly one argument: a stream's every event,
-- without the vararg functions (~350 instructions each on Lua 5.4) and the check. This
-- scheduler's own: not part of the runtime seam (callers use spawn_now when loop.runtime is set).
---@param fn function
---@param a any
---@return table task
function loop.spawn_now1(fn, a)
  local n = #parked1
  local task = parked1[n]
  alive = alive + 1
  if task then
    parked1[n] = nil
    task.status = "running"
    return settle_now(task, co_resume(task.co, fn, a))
  end
  local co = coroutine.create(park1)
  task = new_inline_task(co, true)
  return settle_now(task, co_resume(co, task, fn, a))
end

-- One scheduler round for a caller that is not a task: run what is ready,
-- else wait on the engine (at most `timeout` seconds).
local function round(timeout)
  if #ready > 0 then
    run_ready()
  else
    pump(timeout)
    run_ready()
  end
end

-- Blocks the calling task until `register(waiter)` leads to a wake; outside a
-- task, drives the scheduler until the waiter fires. `cleanup` undoes the
-- registration if the wait ends another way (cancel).
local function await(register, cleanup, timeout)
  local task = loop.current()
  local waiter = { task = task }
  local timer
  register(waiter)
  if timeout then
    timer = engine():timer(timeout)
    timer_waits[timer] = waiter
  end
  local function undo(cancelling)
    if cleanup then cleanup(waiter, cancelling) end
    if timer then
      engine():cancel_timer(timer)
      timer_waits[timer] = nil
    end
  end
  if task then
    local wait = {}
    waiter.wait = wait
    task.wait = wait
    task.cleanup = undo
    coroutine.yield()
    task.cleanup = nil
  else
    while not waiter.fired do round(60) end
  end
  undo(false)
  return unpack(waiter.values, 1, waiter.values.n)
end

-- Undoes await_transfer's fast path when its task is cancelled.
local function cancel_transfer_wait(cancelling, task)
  local transfer = task.wait
  if transfer_waits[transfer] == task then transfer_waits[transfer] = nil end
  if cancelling then transfer:cancel() end
end

-- Steps engine `e` itself until `transfer` is done or `timeout` seconds pass:
-- for a transfer of a client's own engine (the scheduler drives the default
-- one only, so such a client blocks in its own loop), and for a plain script
-- with no task alive, where nothing else can be waiting (the scheduler's
-- bookkeeping would cost more than the step). While the transfer is all the
-- engine serves, engine:finish does these steps in C, with no return to Lua
-- per step (it gives up on a signal, so that Ctrl-C reaches Lua).
local function step_until(e, transfer, timeout)
  local deadline = timeout and core_now() + timeout
  while true do
    local left = deadline and deadline - core_now()
    if left and left <= 0 then return "timeout" end
    local finished = e:finish(transfer, left)
    if finished then return finished end
    e:step(left or 1)
    if transfer:done() then return "done" end
  end
end

--- Waits until `transfer` is done, or `timeout` passes: "done" or "timeout".
-- `own`: the transfer's engine when it is not the default one (nil for the
-- default). Cancelling the task cancels the transfer.
---@param transfer userdata
---@param timeout? number seconds
---@param own? userdata an engine of a client's own
---@return "done"|"timeout"
function loop.await_transfer(transfer, timeout, own)
  if transfer:done() then return "done" end
  if own then return step_until(own, transfer, timeout) end
  local co = coroutine.running()
  local task = co and by_co[co]
  if not task and alive == 0 then return step_until(engine(), transfer, timeout) end
  if task and timeout == nil then
    -- The common wait (a request in a task, no timer): the task itself is the
    -- waiter and the transfer the wait token; no closures or waiter tables.
    transfer_waits[transfer] = task
    task.wait = transfer
    task.cleanup = cancel_transfer_wait
    local result = coroutine.yield()
    task.cleanup = nil
    return result
  end
  return (await(function(w) transfer_waits[transfer] = w end, function(_, cancelling)
    transfer_waits[transfer] = nil
    if cancelling then transfer:cancel() end
  end, timeout))
end

--- Waits until `fd` is ready for `interest` ("r", "w", "rw") or `timeout`
-- passes; returns what step() reported ("r", "w", "rw", "e") or "timeout".
function loop.await_socket(fd, interest, timeout)
  local e = engine()
  return (await(function(w)
    e:watch(fd, interest)
    socket_waits[fd] = w
  end, function()
    socket_waits[fd] = nil
    e:unwatch(fd)
  end, timeout))
end

--- misskey.sleep(seconds): yields in a task, blocks (running other tasks) outside.
---@param seconds number
function loop.sleep(seconds)
  local why = argcheck.wait_problem(seconds)
  if why then argcheck.argerror(1, "sleep", why) end
  await(function() end, nil, seconds)
end

-- obj -> list of waiters of loop.wait_event (weak keys: a forgotten object frees them).
local event_waits = waitlists.new()

--- loop.wait_event(obj[, timeout]) -> "signal" | "timeout": waits until
-- loop.signal(obj) is called (any value as the key) or `timeout` seconds pass.
-- Yields in a task, drives the scheduler outside one. A condition variable:
-- check your own state before waiting, and again after waking.
function loop.wait_event(obj, timeout)
  if obj == nil then argcheck.argerror(1, "wait_event", "a key expected, got nil") end
  local why = timeout ~= nil and argcheck.wait_problem(timeout)
  if why then argcheck.argerror(2, "wait_event", why) end
  return (await(function(w) waitlists.add(event_waits, obj, w) end,
    function(w) waitlists.remove(event_waits, obj, w) end, timeout))
end

--- loop.signal(obj) -> number of waiters woken: wakes everyone in loop.wait_event(obj).
function loop.signal(obj)
  local list = waitlists.take(event_waits, obj)
  if not list then return 0 end
  for i = 1, #list do wake(list[i], "signal") end
  return #list
end

--- loop.await_task(task[, timeout]) -> "done" | "timeout": waits until `task`
-- ends (done, failed or cancelled), as a join does but without taking its
-- results: a failure nobody joins is still reported (misskey.on_error).
---@param task table a misskey.Task
---@param timeout? number seconds
---@return "done"|"timeout"
function loop.await_task(task, timeout)
  local s = task.status
  if s == "done" or s == "failed" or s == "cancelled" then return "done" end
  local result = await(function(w)
    w.watching = true
    task.joiners[#task.joiners + 1] = w
  end, function(w)
    local joiners = task.joiners
    for i = #joiners, 1, -1 do
      if joiners[i] == w then table.remove(joiners, i) end
    end
  end, timeout)
  return result == "timeout" and "timeout" or "done"
end

--- task:join() -> the task's return values; if it raised: nil, message, err
-- (err.kind "task", err.traceback). Yields in a task, drives the scheduler outside.
---@return any ... the task's results, or nil, message, err
function Task:join()
  argcheck.self(self, Task, "task", "join")
  if self == loop.current() then error("a task cannot join itself", 2) end
  self.joined = true
  if self.status ~= "done" and self.status ~= "failed" and self.status ~= "cancelled" then
    await(function(w) self.joiners[#self.joiners + 1] = w end)
  end
  return unpack(self.results, 1, self.results.n)
end

--- task:cancel(): stops the task where it waits (its transfer is aborted and
-- its connection closed); joiners get nil, "task cancelled", err.
---@return boolean cancelled false when the task had ended already
function Task:cancel()
  argcheck.self(self, Task, "task", "cancel")
  if self.status == "done" or self.status == "failed" or self.status == "cancelled" then return false end
  if self == loop.current() then error("a task cannot cancel itself; return from it instead", 2) end
  if self.status == "running" then
    -- It is running, not current: it started the caller at once (spawn_now), as a
    -- stream's reader starts a handler. It is cancelled when it next waits or yields.
    self.cancelling = true
    return true
  end
  self.cancelling = nil
  if self.cleanup then self.cleanup(true, self) end
  self.cleanup = nil
  self.wait = nil
  local co = self.co
  local m, err = errors.new("task", "task cancelled", { cancelled = true })
  self.joined = true -- a cancel is not an error to report
  finish(self, false, nil, m, err)
  self.status = "cancelled"
  local close = rawget(coroutine, "close")
  if close and coroutine.status(co) == "suspended" then close(co) end
  return true
end

function Task:__tostring()
  return ("misskey.Task (%s)"):format(self.status)
end

-- ------------------------------------------------------------------------
-- running

--- misskey.run(fn, ...) -> fn's results: runs fn as a task and drives the
-- engine until it and every task spawned meanwhile finish, or misskey.stop().
-- Tasks still alive after stop() are cancelled.
---@param fn function
---@param ... any fn's arguments
---@return any ... fn's results
function loop.run(fn, ...)
  if type(fn) ~= "function" then
    argcheck.argerror(1, "run", "function expected, got " .. type(fn))
  end
  if running_loop or loop.current() then
    return loop.spawn(fn, ...):join()
  end
  local main = loop.spawn(fn, ...)
  main.joined = true
  running_loop, stopping = true, false
  local ok, err = pcall(function()
    while alive > 0 and not stopping do round(60) end
  end)
  running_loop = false
  if stopping then loop.cancel_all() end
  stopping = false
  if not ok then error(err, 0) end
  return unpack(main.results, 1, main.results.n)
end

--- misskey.stop(): ends misskey.run after the current round.
function loop.stop()
  stopping = true
end

--- Cancels every task that is still alive.
function loop.cancel_all()
  for _, task in pairs(by_co) do task:cancel() end
end

--- misskey.step(timeout) -> number of tasks alive: one round for frame loops
-- and host event loops; waits at most `timeout` seconds (default 0).
---@param timeout? number
---@return integer alive
function loop.step(timeout)
  local why = timeout ~= nil and argcheck.wait_problem(timeout)
  if why then argcheck.argerror(1, "step", why) end
  run_ready()
  pump(#ready > 0 and 0 or (timeout or 0))
  run_ready()
  return alive
end

--- Seconds until the scheduler needs a step (0 when tasks are ready), or nil.
function loop.timeout()
  if #ready > 0 then return 0 end
  return engine():timeout()
end

--- The sockets a host loop must watch: { [fd] = "r" | "w" | "rw" }.
function loop.fds()
  return engine():fds()
end

--- One fd, readable whenever any socket of the engine is ready (an epoll set):
-- the simplest thing for a host loop to watch, with loop.timeout().
function loop.pollfd()
  return engine():pollfd()
end

--- For host-loop adapters: `fn()` is called when a task becomes ready outside
-- a scheduler round, so the adapter can schedule a step. Returns the previous one.
function loop.set_wakeup(fn)
  local old = wakeup
  wakeup = fn
  return old
end

--- Number of tasks that have not finished.
function loop.alive() return alive end

--- misskey.gather(f1 or task1, f2 or task2, ...) -> results, errs
-- Runs the functions as tasks (tasks are joined as they are); results[i] is the
-- first value of the i-th, errs[i] its err if it failed; results.n = count.
---@param ... function|misskey.Task
---@return table results
---@return table<integer, misskey.Error> errs
function loop.gather(...)
  local n = select("#", ...)
  local tasks = {}
  for i = 1, n do
    local f = select(i, ...)
    if getmetatable(f) == Task then
      tasks[i] = f
    elseif type(f) == "function" then
      tasks[i] = loop.spawn(f)
    else
      argcheck.argerror(i, "gather", "function or task expected, got " .. type(f))
    end
    tasks[i].joined = true
  end
  local results, errs = { n = n }, {}
  for i = 1, n do
    local r = pack(tasks[i]:join())
    if tasks[i].status == "done" then
      results[i] = r[1]
    else
      errs[i] = r[3]
    end
  end
  return results, errs
end

loop.Task = Task

-- ------------------------------------------------------------------------
-- the runtime seam

--- The host runtime when it is not this scheduler on the C engine: nil here,
-- misskey.ngx.runtime inside nginx (its `transport` names the default transport).
loop.runtime = nil

-- The functions a runtime provides (docs/architecture.md, "The runtime seam").
local SEAM = {
  "current", "on_error", "spawn", "spawn_now", "await_transfer", "await_socket", "sleep", "wait_event", "signal",
  "await_task", "run", "stop", "cancel_all", "step", "timeout", "fds", "pollfd", "set_wakeup", "alive", "gather",
  "Task",
}

--- loop.use(runtime): every function of the waiting seam is the runtime's from now
-- on (modules call them through this table, so they wait the runtime's way).
---@param runtime table
function loop.use(runtime)
  for _, name in ipairs(SEAM) do loop[name] = assert(runtime[name], name) end
  loop.runtime = runtime
end

-- Inside nginx (ngx_lua: its `ngx` table with light threads and cosockets) nothing may
-- block the worker process: the seam is misskey.ngx.runtime's. Decided when this module
-- loads, before anything can keep a function of the other one.
local host = rawget(_G, "ngx")
if type(host) == "table" and type(host.thread) == "table" and type(host.socket) == "table" then
  loop.use(require "misskey.ngx.runtime")
end

return loop
