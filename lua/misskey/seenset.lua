--- misskey.seenset: a bounded set of keys in two generations, for dropping
-- repeats (the stream's backfilled ids, the bot's events). Once the newer
-- generation holds `size` keys it becomes the older one and the older is
-- dropped whole, so the set keeps at least the last `size` keys and at most
-- 2 * `size`. Seven times cheaper than a ring whose every insert also deletes:
-- Lua tables rehash under that churn.
--
-- Plain functions over a plain table (no methods): the stream asks `has` for
-- every live event of a timeline, and a method lookup would cost more than the
-- lookup itself. `size` is given at each add, so a module's limit (stream.SEEN,
-- bot.SEEN) may change while sets exist.
local seenset = {}

--- seenset.new() -> an empty set.
---@return table
function seenset.new()
  return { cur = {}, old = {}, n = 0, oldn = 0 }
end

--- seenset.has(set, key) -> true if `key` is in the set.
---@param set table
---@param key any
---@return boolean
function seenset.has(set, key)
  return set.n > 0 and (set.cur[key] or set.old[key]) or false
end

--- seenset.add(set, key, size): adds `key` (one the set does not hold).
---@param set table
---@param key any
---@param size integer
function seenset.add(set, key, size)
  local cur, n = set.cur, set.n + 1
  if n > size then
    set.old, set.oldn, cur, n = cur, set.n, {}, 1
    set.cur = cur
  end
  cur[key], set.n = true, n
end

--- seenset.remember(set, key, size) -> false if `key` was in the set, else adds it and returns true.
---@param set table
---@param key any
---@param size integer
---@return boolean
function seenset.remember(set, key, size)
  if set.cur[key] or set.old[key] then return false end
  seenset.add(set, key, size)
  return true
end

--- seenset.count(set) -> the keys it holds (at most 2 * size).
---@param set table
---@return integer
function seenset.count(set)
  return set.n + set.oldn
end

return seenset
