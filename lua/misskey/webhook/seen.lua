--- The memory of handled event ids, which recognises Misskey's retries.
--
-- The store interface (what `webhook.handler{ store = … }` takes):
--
--   store:add(id) -> true   `id` was not known: it is now, and the event is handled
--                 -> false  `id` is known: a replay, answered 204 without a handler
--
-- `add` must check and record in one step, so that two deliveries of one event
-- racing each other (a retry while the first is still being answered) run the
-- handlers once. A store that fails returns nil (and a message): the event is
-- then handled, since running a handler twice is better than losing an event.
-- Under nginx, a `lua_shared_dict` does all of this across worker processes:
-- misskey.ngx.webhook.store(dict_name[, ttl]) is a store on its `add`.
--
-- The default store is a set in two generations: ids go into the young one;
-- when it holds `size` ids the old one is dropped whole and the young one
-- becomes old. So it knows at least the last `size` ids and at most 2 × `size`
-- (each at most 128 bytes, which `parse` checks), whatever arrives. Misskey
-- retries a failed delivery after about 1, 3 and 7 minutes (a base of a minute,
-- doubled each time, plus up to 20 %), so the default 10,000 recognises every
-- retry while fewer than ~11 events a second arrive.
local seen = {}

--- Ids remembered at least (and at most twice as many) by default.
seen.SIZE = 10000

--- The default memory of handled event ids (webhook.seen([size])).
---@class misskey.webhook.Seen
---@field size integer ids remembered at least
local Seen = { __name = "misskey.webhook.Seen" }
Seen.__index = Seen

--- seen.new([size]) -> a store with `add(id)` (see above) and `count()`.
---@param size? integer
---@return misskey.webhook.Seen
function seen.new(size)
  if size == nil then size = seen.SIZE end
  if type(size) ~= "number" or size ~= size or size < 1 or size % 1 ~= 0 then
    error("bad argument #1 to 'seen' (an integer >= 1 expected, got " .. tostring(size) .. ")", 2)
  end
  return setmetatable({ size = size, young = {}, old = {}, n = 0, n_old = 0 }, Seen)
end

--- store:add(id) -> true when `id` is new (and is now remembered), false when known.
---@param id string
---@return boolean
function Seen:add(id)
  if self.young[id] or self.old[id] then return false end
  if self.n >= self.size then
    self.old, self.young, self.n_old, self.n = self.young, {}, self.n, 0
  end
  self.young[id] = true
  self.n = self.n + 1
  return true
end

--- store:count() -> ids remembered now (at most 2 × size).
---@return integer
function Seen:count()
  return self.n + self.n_old
end

return seen
