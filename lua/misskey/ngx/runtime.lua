--- misskey.ngx.runtime: the waiting seam inside nginx (ngx_lua), the second
-- implementation of misskey.loop's interface (docs/architecture.md, "The
-- runtime seam"). misskey.loop hands its functions over to this one when it
-- loads in nginx, so every module that waits through misskey.loop waits here.
--
-- A task is a job run by a *worker*, one ngx light thread; a wait is a wait on
-- the worker's semaphore (ngx.semaphore), so loop.signal, a task's end and a
-- cancel can wake it from any request or timer of the nginx worker process.
-- Cosocket operations run in a helper light thread of the task's worker (rt.io),
-- so that cancelling the task kills the operation (and closes its socket).
--
-- Why workers are pooled: ngx_lua keeps a record for every light thread and
-- coroutine until its request (or timer) ends, ~250 bytes each. A stream that
-- ran a light thread per event in a timer living for weeks would grow without
-- bound; so a worker that finished its task waits for the next one, kept by
-- the worker that started it (its parent), and ends when its parent ends.
local argcheck = require "misskey.argcheck"
local waitlists = require "misskey.waitlists"
local core_now = require("misskey.core").now
local errors = require "misskey.errors"

local host = rawget(_G, "ngx") -- ngx_lua's API: misskey.loop loads this module only when it is there
local semaphore = require "ngx.semaphore"
local get_request = require("resty.core.base").get_request

local rt = {}

--- The transport misskey.new makes when none is given (client options read this).
rt.transport = "misskey.ngx.transport"
--- No stop_on inside nginx: nginx itself handles the process's signals.
rt.signals = false

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")
local function pack(...) return { n = select("#", ...), ... } end

local spawn_thread, wait_thread, kill_thread = host.thread.spawn, host.thread.wait, host.thread.kill

--- The longest single semaphore wait (ngx.semaphore takes milliseconds in an int);
-- longer waits are made of several.
local LONG = 86400

-- ------------------------------------------------------------------------
-- phases

-- Phases where ngx_lua lets code yield (cosockets, light threads, sleeps, semaphores).
local YIELDABLE = {
  rewrite = true, access = true, content = true, timer = true, ssl_cert = true, ssl_session_fetch = true,
  ssl_client_hello = true,
}

--- rt.check_phase(what): raises a clear error when nginx's current phase cannot
-- wait (init, init_worker, set, header and body filters, log, balancer, ...).
---@param what string what was called, for the message
function rt.check_phase(what)
  local phase = host.get_phase()
  if not YIELDABLE[phase] then
    error(("misskey: %s cannot run in nginx's %s phase: cosockets, light threads and sleeps are disabled"
      .. " there; call it from a rewrite, access or content handler, or from a timer (ngx.timer.at)")
      :format(what, phase), 0)
  end
end

-- ------------------------------------------------------------------------
-- waiting

local workers = setmetatable({}, { __mode = "k" }) -- the coroutine of a worker -> the worker
local semas = setmetatable({}, { __mode = "k" })   -- any other coroutine -> the semaphore it waits on
-- coroutine -> light threads of it that ended, to reap (with the request they belong to:
-- ngx_lua reuses the coroutine of a request's entry thread for later requests)
local dead = setmetatable({}, { __mode = "k" })

-- The semaphore the running coroutine waits on, its worker (nil outside our light
-- threads) and the coroutine.
local function here()
  local co = coroutine.running()
  local w = workers[co]
  if w then return w.sema, w, co end
  local s = semas[co]
  if not s then
    s = semaphore.new()
    semas[co] = s
  end
  return s, nil, co
end

-- Light threads of `co` that ended while it lived are "zombies" until it waits on
-- them: ngx.thread.wait on one returns at once and lets ngx_lua free it.
local function reap(co)
  local list = dead[co]
  if list then
    dead[co] = nil
    if list.request ~= get_request() then return end -- an earlier request's: gone with it
    -- nginx reuses a finished request's memory, so a later request can have the same
    -- address: a thread of the earlier one refuses the wait, and is gone anyway.
    for i = 1, #list do pcall(wait_thread, list[i]) end
  end
end

-- A waiter is one wait of one coroutine. Only its first event counts; the semaphore
-- is posted only while the coroutine sleeps on it (no stale counts otherwise).
local function wake(w, ...)
  if w.fired then return end
  w.fired = true
  w.values = pack(...)
  if w.sleeping then w.sema:post(1) end
end

--- The error a cancelled task unwinds with (its own code never sees it unless it
-- catches every error; its next wait raises it again).
local CANCELLED = setmetatable({}, { __tostring = function() return "task cancelled" end })
rt.CANCELLED = CANCELLED

local function finished(task)
  local s = task.status
  return s == "done" or s == "failed" or s == "cancelled"
end

-- Blocks the running coroutine until `register(waiter)` leads to a wake, or
-- `timeout` seconds pass ("timeout"). `cleanup(waiter, cancelling)` undoes the
-- registration. A task that is cancelled meanwhile cleans up and unwinds.
local function await(register, cleanup, timeout)
  local sema, worker, co = here()
  reap(co)
  local task = worker and worker.task
  if task and (task.cancelling or task.status == "cancelled") then
    task.cancelling = nil
    if not finished(task) then rt._finish_cancelled(task) end
    error(CANCELLED, 0)
  end
  local w = { sema = sema }
  register(w)
  if task then
    task.status = "waiting"
    task.waiter = w
    local starter = task.starter -- a spawn_now caller waiting for this task to wait or end
    if starter then
      task.starter = nil
      wake(starter)
    end
  end
  local deadline = timeout and core_now() + timeout
  local turned = false
  while not w.fired and not (task and task.status == "cancelled") do
    local left = LONG
    if deadline then
      left = deadline - core_now()
      if left <= 0 then
        if timeout > 0 or turned then
          w.fired, w.values = true, { n = 1, "timeout" }
          break
        end
        left = 0.001 -- a zero wait still gives way once
      end
    end
    turned = true
    w.sleeping = true
    sema:wait(math.min(math.max(left, 0.001), LONG))
    w.sleeping = false
  end
  if task then task.waiter = nil end
  if task and task.status == "cancelled" then
    if cleanup then cleanup(w, true) end
    error(CANCELLED, 0)
  end
  if task then task.status = "running" end
  if cleanup then cleanup(w, false) end
  return unpack(w.values, 1, w.values.n)
end

-- ------------------------------------------------------------------------
-- tasks

local Task = { __name = "misskey.Task" }
Task.__index = Task
rt.Task = Task

local alive = 0

local function default_handler(err)
  host.log(host.ERR, "misskey: task failed: ", tostring(err.message), "\n", tostring(err.traceback or ""))
end
local error_handler = default_handler

--- Replaces the handler of errors that no task joins; returns the previous one.
---@param fn fun(msg: string, err: table)
function rt.on_error(fn)
  if fn ~= nil and type(fn) ~= "function" then
    argcheck.argerror(1, "on_error", "function expected, got " .. type(fn))
  end
  local old = error_handler
  error_handler = fn or default_handler
  return old
end

-- Ends `task` with `ok, ...`: results, joiners woken, the run it belongs to told.
local function finish(task, ok, ...)
  alive = alive - 1
  task.status = ok and "done" or "failed"
  task.results = pack(...)
  local joiners = task.joiners
  task.joiners = {}
  local joined = task.joined
  for i = 1, #joiners do
    local w = joiners[i]
    if not w.watching then joined = true end
    wake(w)
  end
  if task.starter then
    wake(task.starter)
    task.starter = nil
  end
  local group = task.group
  if group then
    group.tasks[task] = nil
    group.alive = group.alive - 1
    if group.alive == 0 then rt.signal(group) end
  end
  if not ok and not joined then
    local err = task.results[3]
    local hok, herr = pcall(error_handler, err, task)
    if not hok then host.log(host.ERR, "misskey: error handler failed: ", tostring(herr)) end
  end
end

function rt._finish_cancelled(task)
  local m, err = errors.new("task", "task cancelled", { cancelled = true })
  task.joined = true -- a cancel is not an error to report
  finish(task, false, nil, m, err)
  task.status = "cancelled"
end

local function traceback(e)
  if e == CANCELLED then return e end
  return { error = e, traceback = debug.traceback(tostring(e), 2) }
end

-- Runs one task in worker `wk`.
local function run_task(wk, task)
  wk.task = task
  if task.status == "ready" then
    task.status = "running"
    local fn, args = task.fn, task.args
    task.fn, task.args = nil, nil
    local r = pack(xpcall(fn, traceback, unpack(args, 1, args.n)))
    if not finished(task) then
      if r[1] then
        finish(task, true, unpack(r, 2, r.n))
      elseif r[2] == CANCELLED then
        rt._finish_cancelled(task)
      else
        local e = r[2]
        local m, err = errors.new("task", "task failed: " .. tostring(e.error),
          { traceback = e.traceback, error = e.error })
        finish(task, false, nil, m, err)
      end
    end
  end
  wk.task = nil
end

-- A worker's light thread: its task, then (when its parent is a worker that still
-- runs) the next one it is given, until the parent ends. `deferred`: the first task
-- starts at the next turn of nginx's event loop, as misskey.spawn promises.
local function worker_main(wk, deferred)
  if deferred then
    wk.sleeping = true
    while wk.task.status == "ready" and not wk.go do wk.sema:wait(LONG) end
    wk.sleeping, wk.go = false, nil
  end
  while true do
    run_task(wk, wk.task)
    local parent = wk.parent
    if not parent or parent.ended or wk.ended then break end
    local idle = parent.idle
    idle[#idle + 1] = wk
    wk.sleeping = true
    while not wk.task and not wk.ended do wk.sema:wait(LONG) end
    wk.sleeping = false
    if not wk.task then break end
  end
  -- Ending: idle children and the helper end too (they belong to this light thread).
  wk.ended = true
  for i = 1, #wk.idle do
    local child = wk.idle[i]
    child.ended = true
    child.sema:post(1)
  end
  wk.idle = {}
  local helper = wk.helper
  if helper then
    helper.ended = true
    helper.sema:post(1)
  end
  local parent_co = wk.parent_co
  if not wk.parent then -- a one-task worker: its parent reaps it on its next wait
    local list = dead[parent_co]
    if not list or list.request ~= get_request() then
      list = { request = get_request() }
      dead[parent_co] = list
    end
    list[#list + 1] = wk.co
  end
end

local function new_worker(parent, parent_co)
  return { sema = semaphore.new(), idle = {}, parent = parent, parent_co = parent_co }
end

-- Starts `task`: in an idle child of the running worker, else in a new light thread
-- (a child of the running worker, kept for later tasks; or, outside our workers,
-- one that ends with its task). Returns the worker.
local function start(task, deferred)
  local _, parent, co = here()
  reap(co)
  local wk = parent and table.remove(parent.idle)
  if wk then
    wk.task = task
    if wk.sleeping then wk.sema:post(1) end
    return wk, true
  end
  wk = new_worker(parent, co)
  wk.task = task
  local thread = spawn_thread(function(w, d)
    w.co = coroutine.running()
    workers[w.co] = w
    return worker_main(w, d)
  end, wk, deferred)
  wk.co = wk.co or thread
  if deferred then
    wk.go = true
    if wk.sleeping then wk.sema:post(1) end
  end
  return wk, false
end

local function new_task(fn, args)
  local current = rt.current()
  local group = current and current.group
  local task = setmetatable({ status = "ready", joiners = {}, fn = fn, args = args, group = group }, Task)
  alive = alive + 1
  if group then
    group.alive = group.alive + 1
    group.tasks[task] = true
  end
  return task
end

--- The task running now, or nil outside any task.
---@return table|nil task
function rt.current()
  local w = workers[coroutine.running()]
  return w and w.task or nil
end

--- misskey.spawn(fn, ...) -> task: runs fn(...) as a task, from the next turn of
-- nginx's event loop (a light thread: the request or timer that spawns it lasts
-- until it ends).
---@param fn function
---@return table task
function rt.spawn(fn, ...)
  if type(fn) ~= "function" then
    argcheck.argerror(1, "spawn", "function expected, got " .. type(fn))
  end
  rt.check_phase("misskey.spawn")
  local task = new_task(fn, pack(...))
  start(task, true)
  return task
end

--- loop.spawn_now(fn, ...) -> task: runs fn(...) as a task at once; returns when
-- it returns or first waits (from then on it goes on by itself).
---@param fn function
---@return table task
function rt.spawn_now(fn, ...)
  if type(fn) ~= "function" then
    argcheck.argerror(1, "spawn_now", "function expected, got " .. type(fn))
  end
  rt.check_phase("misskey.spawn")
  local task = new_task(fn, pack(...))
  local wk, reused = start(task, false)
  if reused then
    -- An idle worker runs it at its next turn: wait here (still "running": the caller
    -- runs this task, as the scheduler's spawn_now does) until it waits or ends.
    local sema = here()
    local w = { sema = sema }
    task.starter = w
    while not w.fired and not finished(task) and task.status ~= "waiting" do
      w.sleeping = true
      sema:wait(LONG)
      w.sleeping = false
    end
    task.starter = nil
  end
  return task, wk
end

--- task:join() -> the task's return values; if it raised: nil, message, err.
---@return any ...
function Task:join()
  argcheck.self(self, Task, "task", "join")
  if self == rt.current() then error("a task cannot join itself", 2) end
  self.joined = true
  while not finished(self) do
    await(function(w) self.joiners[#self.joiners + 1] = w end, function(w)
      for i = #self.joiners, 1, -1 do
        if self.joiners[i] == w then table.remove(self.joiners, i) end
      end
    end)
  end
  return unpack(self.results, 1, self.results.n)
end

--- task:cancel(): stops the task where it waits (a cosocket operation it waits on
-- is killed, which closes its connection); joiners get nil, "task cancelled", err.
-- From another request or timer this works too: the task unwinds at its next turn.
function Task:cancel()
  argcheck.self(self, Task, "task", "cancel")
  if finished(self) then return false end
  if self == rt.current() then error("a task cannot cancel itself; return from it instead", 2) end
  if self.status == "running" then
    self.cancelling = true -- it runs (it started the caller's task at once): at its next wait
    return true
  end
  rt._finish_cancelled(self)
  local w = self.waiter
  if w and w.sleeping then w.sema:post(1) end -- it wakes, undoes its wait and unwinds
  return true
end

function Task:__tostring()
  return ("misskey.Task (%s)"):format(self.status)
end

--- loop.await_task(task[, timeout]) -> "done" | "timeout", without joining.
---@param task table
---@param timeout? number
function rt.await_task(task, timeout)
  if finished(task) then return "done" end
  local result = await(function(w)
    w.watching = true
    task.joiners[#task.joiners + 1] = w
  end, function(w)
    for i = #task.joiners, 1, -1 do
      if task.joiners[i] == w then table.remove(task.joiners, i) end
    end
  end, timeout)
  return result == "timeout" and "timeout" or "done"
end

--- misskey.sleep(seconds): waits without blocking nginx (a semaphore wait, so a
-- cancel ends it at once).
---@param seconds number
function rt.sleep(seconds)
  local why = argcheck.wait_problem(seconds)
  if why then argcheck.argerror(1, "sleep", why) end
  rt.check_phase("misskey.sleep")
  await(function() end, nil, seconds)
end

local event_waits = waitlists.new()

--- loop.wait_event(obj[, timeout]) -> "signal" | "timeout" (see misskey.loop).
---@param obj any
---@param timeout? number
---@return string "signal"|"timeout"
function rt.wait_event(obj, timeout)
  if obj == nil then argcheck.argerror(1, "wait_event", "a key expected, got nil") end
  local why = timeout ~= nil and argcheck.wait_problem(timeout)
  if why then argcheck.argerror(2, "wait_event", why) end
  rt.check_phase("a wait")
  return (await(function(w) waitlists.add(event_waits, obj, w) end,
    function(w) waitlists.remove(event_waits, obj, w) end, timeout))
end

--- loop.signal(obj) -> number of waiters woken (from any request or timer).
---@param obj any
function rt.signal(obj)
  local list = waitlists.take(event_waits, obj)
  if not list then return 0 end
  for i = 1, #list do wake(list[i], "signal") end
  return #list
end

-- ------------------------------------------------------------------------
-- cosocket operations

-- A worker's helper: a light thread that runs the cosocket operations of the
-- worker's tasks, one at a time, so that the task waits on its semaphore and a
-- cancel can kill the operation.
local function helper_main(h)
  while true do
    local job = h.job
    if job then
      h.job = nil
      local args = h.args
      h.args = nil
      h.results = pack(pcall(job, unpack(args, 1, args.n)))
      local w = h.waiter
      if w then wake(w, "done") end
    elseif h.ended then
      return
    else
      h.sleeping = true
      h.sema:wait(LONG)
      h.sleeping = false
    end
  end
end

--- rt.io(fn, ...) -> fn(...)'s results: runs a cosocket operation so that
-- cancelling the calling task aborts it (and closes the socket it used). Outside
-- a task it runs in place: nothing can cancel it there.
---@param fn function
---@return any ...
function rt.io(fn, ...)
  rt.check_phase("a network operation")
  local co = coroutine.running()
  local wk = workers[co]
  if not (wk and wk.task) then return fn(...) end
  local h = wk.helper
  if not h then
    h = { sema = semaphore.new() }
    wk.helper = h
  end
  h.job, h.args, h.results = fn, pack(...), nil
  await(function(w)
    h.waiter = w
    if h.thread then
      if h.sleeping then h.sema:post(1) end
    else
      h.thread = spawn_thread(helper_main, h) -- runs the job at once, until it first yields
    end
  end, function(_, cancelling)
    h.waiter = nil
    if cancelling then
      kill_thread(h.thread) -- its pending cosocket operation is finalized: the socket closes
      wk.helper = nil
    end
  end)
  local r = h.results
  h.results = nil
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

-- ------------------------------------------------------------------------
-- running

--- misskey.run(fn, ...) -> fn's results: runs fn as a task and waits until it and
-- every task started under it end (or misskey.stop() is called in one of them:
-- the rest are cancelled). Inside a task, a spawn and a join.
---@param fn function
---@return any ...
function rt.run(fn, ...)
  if type(fn) ~= "function" then
    argcheck.argerror(1, "run", "function expected, got " .. type(fn))
  end
  rt.check_phase("misskey.run")
  if rt.current() then return rt.spawn(fn, ...):join() end
  local group = { alive = 0, tasks = {} }
  local main = setmetatable({ status = "ready", joiners = {}, fn = fn, args = pack(...), group = group }, Task)
  alive = alive + 1
  group.alive, group.tasks[main] = 1, true
  main.joined = true
  start(main, false)
  while group.alive > 0 and not group.stopping do rt.wait_event(group) end
  if group.stopping then
    for task in pairs(group.tasks) do task:cancel() end
  end
  while not finished(main) do rt.wait_event(group, 1) end
  return unpack(main.results, 1, main.results.n)
end

--- misskey.stop(): ends the misskey.run the calling task belongs to.
function rt.stop()
  local task = rt.current()
  local group = task and task.group
  if group then
    group.stopping = true
    rt.signal(group)
  end
end

--- Cancels every task of the calling task's misskey.run.
function rt.cancel_all()
  local task = rt.current()
  local group = task and task.group
  if not group then return end
  for t in pairs(group.tasks) do
    if t ~= task then t:cancel() end
  end
end

--- misskey.gather(f1 or task1, ...) -> results, errs (see misskey.loop).
---@return table results
---@return table errs
function rt.gather(...)
  local n = select("#", ...)
  local tasks = {}
  for i = 1, n do
    local f = select(i, ...)
    if getmetatable(f) == Task then
      tasks[i] = f
    elseif type(f) == "function" then
      tasks[i] = rt.spawn(f)
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

--- Number of tasks of this nginx worker process that have not finished.
function rt.alive() return alive end

local function no_engine(name)
  return function()
    error(("misskey: %s is not available inside nginx: nginx's event loop runs the tasks, and there is"
      .. " no C engine (the libcurl transport, the webhook listener and stop_on need one)"):format(name), 2)
  end
end
rt.step = no_engine("misskey.step")
rt.timeout = no_engine("loop.timeout")
rt.fds = no_engine("loop.fds")
rt.pollfd = no_engine("loop.pollfd")
rt.set_wakeup = no_engine("loop.set_wakeup")
rt.await_transfer = no_engine("loop.await_transfer")
rt.await_socket = no_engine("loop.await_socket")

-- ------------------------------------------------------------------------
-- the worker process's exit

local exit_hooks = {}
local exit_watch

--- rt.on_exit(key, fn): calls fn() once when this nginx worker process starts
-- to exit (`nginx -s reload`, `-s quit`, `-s stop`); rt.on_exit(key, nil)
-- forgets it. Known the moment it happens: a pending timer runs then with
-- `premature` set.
---@param key any
---@param fn function|nil
function rt.on_exit(key, fn)
  exit_hooks[key] = fn
  if fn and not exit_watch and not host.worker.exiting() then
    local function watch(premature)
      if premature or host.worker.exiting() then
        rt.exiting = true
        for k, hook in pairs(exit_hooks) do
          exit_hooks[k] = nil
          local ok, why = pcall(hook)
          if not ok then host.log(host.ERR, "misskey: exit hook failed: ", tostring(why)) end
        end
        return
      end
      exit_watch = assert(host.timer.at(3600, watch))
    end
    exit_watch = assert(host.timer.at(3600, watch))
  end
end

--- rt.exiting: true once this nginx worker process is exiting.
rt.exiting = false

return rt
