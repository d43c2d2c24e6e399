--- client:paginate(endpoint, params, opts): walks a paginated endpoint.
--
-- The iterator is callable (`for note in it do ... end`) and has
-- `it:next()`, `it:cursor()` (a string that resumes the walk, in this process
-- or another one) and `it:error()`. It fetches one page at a time through
-- client:request, so rate limits and retries apply, and it yields in a task.
--
-- How it moves (docs/protocol.md section 8):
--   by "id", direction "older" (default): newest first; the next page's
--     `untilId` is the last item's id.
--   by "id", direction "newer": oldest first; `sinceId` alone makes Misskey
--     return the items just after it in ascending order, so the next page's
--     `sinceId` is the last (newest) item of the page.
--   by "date": the same with `untilDate`/`sinceDate` (unix ms of each item's
--     createdAt). Several items can share one millisecond: the next page asks
--     again from that millisecond and drops the ids already delivered there.
--   by "offset": `offset` grows by the number of items delivered.
-- The walk stops on an empty page, on a page that does not move the cursor
-- (nothing in it lies beyond the last item delivered), after `opts.max` items,
-- or on an error (kept in `it.err`; the cursor still resumes after the last
-- item delivered). A page shorter than asked is not the end: servers that drop
-- muted or hidden items after the query (Sharkey, forks) answer short pages
-- while more items exist.
local argcheck = require "misskey.argcheck"
local catalogue = require "misskey.catalogue"
local errors = require "misskey.errors"
local loop = require "misskey.loop"

local M = {}

--- An iterator over a paginated endpoint (client:paginate): `for item in it do`, or it:next().
---@class misskey.Paginator
---@overload fun(): any
---@field endpoint string
---@field count integer items delivered so far
---@field err? misskey.Error the failure that ended the walk early
local Iterator = { __name = "misskey.Paginator" }
Iterator.__index = Iterator

--- Options of client:paginate.
---@class misskey.PaginateOptions
---@field direction? "older"|"newer"
---@field by? "id"|"date"|"offset"
---@field max? integer|false items in all (default: no limit)
---@field page_size? integer the `limit` of each page
---@field cursor? string resume where it:cursor() was taken
---@field timeout? number
---@field ratelimit? "wait"|"throw"|"pace"
---@field max_wait? number
---@field retries? integer

local OPTIONS = {
  cursor = true, max = true, page_size = true, direction = true, by = true,
  -- passed on to every client:request of the walk
  timeout = true, ratelimit = true, max_wait = true, retries = true,
}
local REQUEST_OPTIONS = { "timeout", "ratelimit", "max_wait", "retries" }
local DEFAULT_PAGE_MAX = 100
local CURSOR_VERSION = "1"

-- client:paginate -> paginate.new -> this wrapper: level 3 (see misskey.argcheck).
local function argerror(n, what)
  argcheck.argerror(n, "paginate", what, 3)
end

local function is_count(v, min)
  return type(v) == "number" and v == v and v >= min and v % 1 == 0 and v ~= math.huge
end

-- "%.0f": integral values print without an exponent on every Lua.
local function int(v) return ("%.0f"):format(v) end

-- ------------------------------------------------------------------------
-- dates

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m > 2 and m - 3 or m + 9) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- "2026-05-21T00:00:00.123Z" (or with a "+09:00" offset) -> unix milliseconds, or nil.
function M.parse_date(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local frac, zone = rest:match("^%.(%d+)(.*)$")
  if not frac then frac, zone = "", rest end
  local offset
  if zone == "Z" then
    offset = 0
  else
    local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(zh) * 60 + tonumber(zm)) * (sign == "+" and 1 or -1)
  end
  local ms = tonumber((frac .. "000"):sub(1, 3))
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  local minutes = (days * 24 + tonumber(h)) * 60 + tonumber(mi) - offset
  return (minutes * 60 + tonumber(sec)) * 1000 + ms
end

-- ------------------------------------------------------------------------
-- cursors: "1" by dir "." pos "." remaining "." seen "." check
--   by: i (id), d (date), o (offset); dir: o (older), n (newer)
--   pos: the last delivered id / createdAt ms / offset ("" before the first item)
--   remaining: always "" now (cursors of earlier versions carried what was
--     left of `max` there; it is ignored: a resumed walk takes its own max)
--   seen: date walks only, the ids delivered at the `pos` millisecond, comma-separated
--   check: a hash of the endpoint and the rest, so a cursor of another
--     endpoint, or a damaged one, is refused

local function hash(s)
  local h = 5381
  for i = 1, #s do h = (h * 33 + s:byte(i)) % 16777216 end
  local digits, out = "0123456789abcdefghijklmnopqrstuvwxyz", ""
  for _ = 1, 5 do
    local r = h % 36
    out = digits:sub(r + 1, r + 1) .. out
    h = (h - r) / 36
  end
  return out
end

local BY_CODE = { id = "i", date = "d", offset = "o" }
local BY_NAME = { i = "id", d = "date", o = "offset" }
local DIR_CODE = { older = "o", newer = "n" }
local DIR_NAME = { o = "older", n = "newer" }

local function encode_cursor(endpoint, st)
  local pos = st.pos
  if pos == nil then pos = "" elseif type(pos) == "number" then pos = int(pos) end
  local seen = ""
  if st.by == "date" and st.seen_list then seen = table.concat(st.seen_list, ",") end
  local body = CURSOR_VERSION .. BY_CODE[st.by] .. DIR_CODE[st.direction] .. "." .. pos .. "."
    .. "." .. seen
  return body .. "." .. hash(endpoint .. "|" .. body)
end

-- -> { by, direction, pos, seen_list } or nil, why
local function decode_cursor(endpoint, s)
  if type(s) ~= "string" then return nil, "string expected, got " .. type(s) end
  local body, check = s:match("^(.*)%.([0-9a-z]+)$")
  if not body or hash(endpoint .. "|" .. body) ~= check then
    return nil, "not a cursor of " .. endpoint .. " (or damaged)"
  end
  -- The third field (an old cursor's remaining max) is skipped: a resumed walk takes its own.
  local ver, by, dir, pos, seen = body:match("^(%d)(%a)(%a)%.([%w]*)%.%d*%.([%w,]*)$")
  if ver ~= CURSOR_VERSION or not BY_NAME[by] or not DIR_NAME[dir] then
    return nil, "not a cursor of this version"
  end
  local c = { by = BY_NAME[by], direction = DIR_NAME[dir] }
  if pos ~= "" then
    if c.by == "id" then
      c.pos = pos
    else
      c.pos = tonumber(pos)
      if not c.pos or not pos:find("^%d+$") then return nil, "bad position" end
    end
  end
  if seen ~= "" then
    if c.by ~= "date" then return nil, "bad cursor" end
    c.seen_list = {}
    for id in seen:gmatch("[^,]+") do c.seen_list[#c.seen_list + 1] = id end
  end
  return c
end

-- ------------------------------------------------------------------------
-- the iterator

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

--- Makes the iterator (client:paginate calls this).
function M.new(client, endpoint, params, opts)
  if type(endpoint) ~= "string" then argerror(1, "endpoint must be a string, got " .. type(endpoint)) end
  if params ~= nil and type(params) ~= "table" then argerror(2, "params must be a table, got " .. type(params)) end
  if opts ~= nil and type(opts) ~= "table" then argerror(3, "options table expected, got " .. type(opts)) end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then argerror(3, "unknown option '" .. tostring(k) .. "'") end
  end
  local entry = catalogue.lookup(endpoint, client:catalogue())
  if type(entry) ~= "table" then
    argerror(1, ("unknown endpoint '%s': the catalogue does not know it, so how it pages is unknown"):format(endpoint))
  end
  local kinds = {}
  if entry.paginate == "id" or entry.paginate == "offset" then kinds[entry.paginate] = true end
  if entry.date then kinds.date = true end
  if not next(kinds) then argerror(1, ("endpoint '%s' is not paginated"):format(endpoint)) end

  local cursor
  if opts.cursor ~= nil then
    local why
    cursor, why = decode_cursor(endpoint, opts.cursor)
    if not cursor then argerror(3, "option 'cursor' is not valid: " .. why) end
  end
  local by = opts.by
  if by ~= nil and not BY_CODE[by] then argerror(3, "option 'by' must be \"id\", \"date\" or \"offset\"") end
  if cursor and by and by ~= cursor.by then
    argerror(3, ("option 'by' is %q but the cursor walks by %q"):format(by, cursor.by))
  end
  by = by or (cursor and cursor.by) or (kinds.id and "id") or (kinds.offset and "offset") or "date"
  if not kinds[by] then argerror(3, ("endpoint '%s' cannot be paginated by %s"):format(endpoint, by)) end
  local direction = opts.direction
  if direction ~= nil and not DIR_CODE[direction] then
    argerror(3, "option 'direction' must be \"older\" or \"newer\"")
  end
  if cursor and direction and direction ~= cursor.direction then
    argerror(3, ("option 'direction' is %q but the cursor walks %q"):format(direction, cursor.direction))
  end
  direction = direction or (cursor and cursor.direction) or "older"
  if by == "offset" and direction == "newer" then
    argerror(3, "an offset endpoint only pages in the server's order (direction \"older\")")
  end
  params = copy(params)
  if direction == "newer" and (params.untilId ~= nil or params.untilDate ~= nil) then
    -- With both since and until Misskey answers newest first: no forward walk.
    argerror(2, "untilId/untilDate cannot be combined with direction \"newer\"")
  end

  local page_max = tonumber(entry.page_max)
    or (type(entry.params) == "table" and type(entry.params.limit) == "table" and tonumber(entry.params.limit.maximum))
    or DEFAULT_PAGE_MAX
  local page_size = opts.page_size
  if page_size ~= nil and not is_count(page_size, 1) then argerror(3, "option 'page_size' must be an integer >= 1") end
  if page_size == nil and params.limit ~= nil then
    if not is_count(params.limit, 1) then argerror(2, "params.limit must be an integer >= 1") end
    page_size = params.limit
  end
  page_size = math.min(page_size or page_max, page_max)
  local max = opts.max
  if max == false or max == math.huge then max = nil end -- spelled-out "no limit"
  if max ~= nil and not is_count(max, 0) then
    argerror(3, "option 'max' must be an integer >= 0, math.huge or false")
  end

  local request_opts
  for _, k in ipairs(REQUEST_OPTIONS) do
    if opts[k] ~= nil then
      request_opts = request_opts or {}
      request_opts[k] = opts[k]
    end
  end

  local it = setmetatable({
    client = client, endpoint = endpoint, params = params, by = by, direction = direction,
    page_size = page_size, request_opts = request_opts, count = 0,
    buf = {}, bn = 0, bi = 1, done = false,
  }, Iterator)
  if cursor then
    it.pos, it.seen_list = cursor.pos, cursor.seen_list
  elseif by == "id" then
    it.pos = direction == "older" and params.untilId or params.sinceId
  elseif by == "offset" then
    if params.offset ~= nil and not is_count(params.offset, 0) then
      argerror(2, "params.offset must be an integer >= 0")
    end
    it.pos = params.offset or 0
  end
  it.remaining = max -- a resumed walk has its own max (none: all)
  it.seen = {}
  for _, id in ipairs(it.seen_list or {}) do it.seen[id] = true end
  it.seen_list = it.seen_list or {}
  return it
end

local function fail(self, msg, err)
  self.msg, self.err = msg, err
  self.done = true
end

-- The parameters of the next page.
function Iterator:_page_params(want)
  local p = copy(self.params)
  p.limit = want
  local pos = self.pos
  if self.by == "id" then
    if self.direction == "older" then
      p.untilId = pos
    else
      p.sinceId = pos or "0" -- every id sorts after "0": the walk starts at the oldest item
    end
  elseif self.by == "offset" then
    p.offset = pos
  elseif pos ~= nil then
    -- From the millisecond of the last item again (inclusive), minus the ids seen there.
    if self.direction == "older" then p.untilDate = pos + 1 else p.sinceDate = pos - 1 end
  elseif self.direction == "newer" and p.sinceDate == nil then
    p.sinceDate = 0
  end
  return p
end

-- Fetches pages until one gives something new, the walk ends or fails.
function Iterator:_fetch()
  for _ = 1, 1000 do
    local want = self.page_size
    if self.remaining and self.remaining < want then want = self.remaining end
    local page, msg, err = self.client:request(self.endpoint, self:_page_params(want), self.request_opts)
    if page == nil then return fail(self, msg, err) end
    if type(page) ~= "table" then
      return fail(self, errors.new("decode", ("%s: expected a list of items, got %s"):format(
        self.endpoint, type(page)), { endpoint = self.endpoint }))
    end
    local n = #page
    -- Only an empty page ends the walk: a short one may have lost items to the
    -- server's filters after its query (Sharkey answers 6 of 7 while more exist).
    if n == 0 then self.done = true end
    local fresh, ids_at, at_pos = {}, {}, false
    local older, pos = self.direction == "older", self.pos
    for i = 1, n do
      local item = page[i]
      local id = type(item) == "table" and item.id
      if self.by ~= "offset" and (type(id) ~= "string" or not id:find("^%w+$")) then
        return fail(self, errors.new("decode", ("%s: item %d of the page has no id"):format(self.endpoint, i),
          { endpoint = self.endpoint }))
      end
      local keep = true
      if self.by == "date" then
        local ms = M.parse_date(item.createdAt)
        if not ms then
          return fail(self, errors.new("decode", ("%s: item %s has no valid createdAt"):format(self.endpoint, id),
            { endpoint = self.endpoint }))
        end
        if ms == pos then
          at_pos = true
          keep = not self.seen[id]
        elseif pos ~= nil then
          keep = (older and ms < pos) or (not older and ms > pos)
        end
        if keep then ids_at[#fresh + 1] = ms end
      elseif self.by == "id" and pos ~= nil then
        -- An item on the wrong side of the cursor: the server ignored it.
        keep = (older and id < pos) or (not older and id > pos)
      elseif self.by == "offset" and i == 1 then
        -- The same first item as the last page: the server ignored the offset.
        keep = not (id ~= nil and id == self.first_id)
        self.first_id = id
      end
      if keep then fresh[#fresh + 1] = item end
    end
    if #fresh > 0 or self.done then
      self.buf, self.bn, self.bi, self.ms = fresh, #fresh, 1, ids_at
      return
    end
    if not (self.by == "date" and at_pos) then
      -- Nothing beyond the cursor: it would not advance, so the walk ends here.
      self.done = true
      return
    end
    -- Only items already delivered, all at the millisecond `pos`: more than a
    -- page share it. Step past it (the rest of that millisecond is skipped).
    self.pos = older and self.pos - 1 or self.pos + 1
    self.seen, self.seen_list = {}, {}
  end
  fail(self, errors.new("decode", self.endpoint .. ": pagination made no progress", { endpoint = self.endpoint }))
end

--- it:next() -> the next item, or nil at the end (or after an error: see it:error()).
---@return any
function Iterator:next()
  argcheck.self(self, Iterator, "it", "next")
  if self.remaining and self.remaining <= 0 then return nil end
  if self.bi > self.bn then
    if self.done then return nil end
    self:_fetch()
    if self.bi > self.bn then return nil end
  end
  local i = self.bi
  local item = self.buf[i]
  self.buf[i] = nil
  self.bi = i + 1
  if self.by == "id" then
    self.pos = item.id
  elseif self.by == "offset" then
    self.pos = self.pos + 1
  else
    local ms = self.ms[i]
    if ms ~= self.pos then
      self.pos, self.seen, self.seen_list = ms, {}, {}
    end
    self.seen[item.id] = true
    self.seen_list[#self.seen_list + 1] = item.id
  end
  self.count = self.count + 1
  if self.remaining then self.remaining = self.remaining - 1 end
  return item
end

-- `for item in it do`: the generic for calls it(state, control); both are ignored.
-- PUC Lua 5.1 cannot yield from a function a generic for calls, so there a
-- task must use it:next() (in a plain script, where nothing yields, `for` works).
local PUC51 = _VERSION == "Lua 5.1" and not rawget(_G, "jit")
Iterator.__call = function(self)
  if PUC51 and loop.current() then
    error("misskey: on Lua 5.1 a for loop cannot yield; inside a task use "
      .. "`local item = it:next()` in a while loop instead of `for item in it`", 2)
  end
  return self:next()
end

--- it:cursor() -> a string that resumes the walk after the last item delivered:
-- client:paginate(endpoint, params, { cursor = s }) with the same params.
---@return string
function Iterator:cursor()
  argcheck.self(self, Iterator, "it", "cursor")
  return encode_cursor(self.endpoint, self)
end

--- it:error() -> message, err of the failure that ended the walk, or nil.
---@return string|nil message
---@return misskey.Error|nil err
function Iterator:error()
  return self.msg, self.err
end

function Iterator:__tostring()
  return ("misskey.Paginator (%s, %d items%s)"):format(self.endpoint, self.count, self.err and ", failed" or "")
end

M.Iterator = Iterator
M._encode_cursor, M._decode_cursor = encode_cursor, decode_cursor
return M
