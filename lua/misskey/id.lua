--- misskey.id: Misskey's id methods, told apart by their shape, and the
-- smallest id of a given time in each, to page from with `sinceId`.
--
-- A server uses one method for all its ids (its `id` setting, fixed at setup):
--   aid       8 base36 digits of ms since 2000-01-01 + 2 noise       (10 chars)
--   aidx      the same 8 digits + 4 node + 4 counter                  (16 chars)
--   meid      12 hex digits of (ms + 0x800000000000) + 12 random hex  (24 chars, first >= 8)
--   meidg     "g" + 11 hex digits of ms + 12 random hex               (24 chars)
--   objectid  8 hex digits of unix seconds + 16 random hex            (24 chars, first < 8 until 2038)
--   ulid      10 Crockford base32 digits of ms + 16 random (upper case) (26 chars)
-- In every method the time comes first, so ids sort by time as strings; the
-- rest filled with the smallest digit gives the smallest id of that time, which
-- every id made at that time or later sorts after. Misskey parses `sinceId` by
-- its method for notifications (Redis stream ids), so the id is whole, never a
-- bare time prefix.
local M = {}

--- The longest id taken as a position (a backfill's or a positions file's
-- starting point): every method above makes at most 26 characters; the rest is room.
M.MAX = 64

local TIME2000 = 946684800000 -- aid/aidx count ms from 2000-01-01T00:00:00Z
local MEID_OFFSET = 0x800000000000
local B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
local HEX = "0123456789abcdef"
local CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

-- n (an integer >= 0) in `width` digits of `digits` (its length is the base).
local function encode(n, width, digits)
  local base, out = #digits, {}
  n = math.floor(n)
  for i = width, 1, -1 do
    local d = n % base
    out[i] = digits:sub(d + 1, d + 1)
    n = (n - d) / base
  end
  return table.concat(out)
end

--- id.method(s) -> "aid" | "aidx" | "meid" | "meidg" | "objectid" | "ulid", or nil
-- when `s` has none of their shapes.
---@param s string
---@return string|nil
function M.method(s)
  if type(s) ~= "string" then return nil end
  local n = #s
  if n == 10 and s:find("^[0-9a-z]+$") then return "aid" end
  if n == 16 and s:find("^[0-9a-z]+$") then return "aidx" end
  if n == 24 then
    if s:find("^g[0-9a-f]+$") then return "meidg" end
    if s:find("^[0-9a-f]+$") then
      return s:sub(1, 1) >= "8" and "meid" or "objectid"
    end
  end
  if n == 26 and s:find("^[0-9A-HJKMNP-TV-Z]+$") then return "ulid" end
  return nil
end

--- id.at(method, ms) -> the smallest id of `method` at unix time `ms`
-- (milliseconds; objectid keeps whole seconds): every id made at `ms` or later
-- sorts after it. Raises on an unknown method.
---@param method string
---@param ms number
---@return string
function M.at(method, ms)
  if type(ms) ~= "number" or ms ~= ms or ms < 0 or ms == math.huge then
    error("bad argument #2 to 'at' (unix milliseconds expected, got " .. tostring(ms) .. ")", 2)
  end
  if method == "aid" or method == "aidx" then
    local t = encode(math.max(ms - TIME2000, 0), 8, B36)
    return t .. (method == "aid" and "00" or "00000000")
  elseif method == "meid" then
    return encode(ms + MEID_OFFSET, 12, HEX) .. ("0"):rep(12)
  elseif method == "meidg" then
    return "g" .. encode(ms, 11, HEX) .. ("0"):rep(12)
  elseif method == "objectid" then
    return encode(ms / 1000, 8, HEX) .. ("0"):rep(16)
  elseif method == "ulid" then
    return encode(ms, 10, CROCKFORD) .. ("0"):rep(16)
  end
  error("bad argument #1 to 'at' (an id method expected, got " .. tostring(method) .. ")", 2)
end

-- digits -> value, for M.time
local function decode(s, digits)
  local base, n = #digits, 0
  for i = 1, #s do
    local d = digits:find(s:sub(i, i), 1, true)
    if not d then return nil end
    n = n * base + d - 1
  end
  return n
end

--- id.time(s) -> the unix time in ms that id `s` carries, or nil (unknown shape).
---@param s string
---@return number|nil
function M.time(s)
  local method = M.method(s)
  if method == "aid" or method == "aidx" then return decode(s:sub(1, 8), B36) + TIME2000 end
  if method == "meid" then return decode(s:sub(1, 12), HEX) - MEID_OFFSET end
  if method == "meidg" then return decode(s:sub(2, 12), HEX) end
  if method == "objectid" then return decode(s:sub(1, 8), HEX) * 1000 end
  if method == "ulid" then return decode(s:sub(1, 10), CROCKFORD) end
  return nil
end

return M
