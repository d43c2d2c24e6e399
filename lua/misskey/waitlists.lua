-- Waiters kept by key, for loop.wait_event / loop.signal in both runtimes of the
-- waiting seam (misskey.loop and misskey.ngx.runtime): what is kept is the same in
-- both, only how a waiter sleeps and is woken differs.
local waitlists = {}

--- waitlists.new() -> lists keyed weakly by their key (a key nobody holds goes).
---@return table
function waitlists.new()
  return setmetatable({}, { __mode = "k" })
end

--- waitlists.add(lists, key, waiter): waiter joins key's list.
---@param lists table
---@param key any
---@param waiter any
function waitlists.add(lists, key, waiter)
  local list = lists[key]
  if not list then
    list = {}
    lists[key] = list
  end
  list[#list + 1] = waiter
end

--- waitlists.remove(lists, key, waiter): waiter leaves key's list (a timeout, a cancel).
---@param lists table
---@param key any
---@param waiter any
function waitlists.remove(lists, key, waiter)
  local list = lists[key]
  if not list then return end
  for i = #list, 1, -1 do
    if list[i] == waiter then table.remove(list, i) end
  end
  if #list == 0 then lists[key] = nil end
end

--- waitlists.take(lists, key) -> key's waiters in the order they came, or nil; the list is gone.
---@param lists table
---@param key any
---@return any[]|nil
function waitlists.take(lists, key)
  local list = lists[key]
  lists[key] = nil
  return list
end

return waitlists
