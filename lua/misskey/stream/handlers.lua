--- misskey.stream.handlers: the handler lists of a stream and of its channels
-- (on, once, off), and how an event runs them. Part of misskey.stream.
--
-- Lists: { event = { { fn, once }, ... } }. A list is never changed in place
-- (on/off/once make a new one), so fire() can walk it while handlers add or
-- remove some.
local argcheck = require "misskey.argcheck"
local loop = require "misskey.loop"

local handlers = {}

local argerror = argcheck.argerror
local spawn_now, spawn_now1 = loop.spawn_now, loop.spawn_now1

--- handlers.add(lists, fname, event, fn, once[, level]): `level`: see misskey.argcheck.
function handlers.add(lists, fname, event, fn, once, level)
  level = (level or 1) + 1
  if type(event) ~= "string" or event == "" then
    argerror(1, fname, "event name expected, got " .. type(event), level)
  end
  if type(fn) ~= "function" then argerror(2, fname, "function expected, got " .. type(fn), level) end
  local old, list = lists[event] or {}, {}
  for i = 1, #old do list[i] = old[i] end
  list[#list + 1] = { fn = fn, once = once }
  lists[event] = list
end

-- Removes the last entry for which match(entry) is true; true if one was removed.
local function remove_entry(lists, event, match)
  local old = lists[event]
  if not old then return false end
  for i = #old, 1, -1 do
    if match(old[i]) then
      local list = {}
      for k = 1, #old do
        if k ~= i then list[#list + 1] = old[k] end
      end
      lists[event] = list
      return true
    end
  end
  return false
end

--- handlers.remove(lists, event[, fn]) -> true if one was removed (every
-- handler of `event` without fn).
function handlers.remove(lists, event, fn)
  local list = lists[event]
  if not list then return false end
  if fn == nil then
    lists[event] = nil
    return #list > 0
  end
  return remove_entry(lists, event, function(h) return h.fn == fn end)
end

--- handlers.fire1(running, lists, event, body): fire with exactly one argument, the
-- stream's per-event path, without a vararg function between the event and the handler
-- (each cost ~350 instructions per event on Lua 5.4).
function handlers.fire1(running, lists, event, body)
  local list = lists[event]
  if not list then return end
  for i = 1, #list do
    local h = list[i]
    -- (a once handler that is no longer listed already ran, by an event its own handler fired)
    if not h.once or remove_entry(lists, event, function(e) return e == h end) then
      local task = loop.runtime and spawn_now(h.fn, body) or spawn_now1(h.fn, body)
      local st = task.status
      if st == "waiting" or st == "ready" then running:add(task) end
    end
  end
end

--- handlers.fire(running, lists, event, ...): runs every handler of `event`
-- in a task of its own, in registration order. Each starts at once
-- (spawn_now): one that returns without waiting is done before the next
-- starts and costs no coroutine; one that waits goes on as a task meanwhile,
-- kept in `running` (a task set) so a graceful close can wait for it.
function handlers.fire(running, lists, event, ...)
  local list = lists[event]
  if not list then return end
  for i = 1, #list do
    local h = list[i]
    if h.once and not remove_entry(lists, event, function(e) return e == h end) then
      h = nil -- a once handler already run (by an event its own handler fired)
    end
    if h then
      local task = spawn_now(h.fn, ...)
      local st = task.status
      if st == "waiting" or st == "ready" then running:add(task) end
    end
  end
end

return handlers
