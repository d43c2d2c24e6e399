--- misskey.testing.fake: the Fake class and the server's state: the clock,
-- ids, users, and the tables every area keeps its records in. The methods of
-- each concern (packing, the HTTP pipeline, the WebSocket, the endpoint areas)
-- are defined on this class in their own files; misskey.testing loads them all.
local common = require "misskey.testing.common"

local type, pairs, ipairs, error, pcall = type, pairs, ipairs, error, pcall

--- One request the fake saw (fake.requests).
---@class misskey.testing.Request
---@field method string
---@field path string
---@field endpoint? string the API endpoint, for /api/ paths
---@field params? table the decoded body without `i`
---@field auth "body"|"header"|"none"
---@field user? string the username of the token
---@field status integer
---@field error? string Misskey's error code, when it answered one

local base36 = common.base36

--- An in-process fake Misskey server (misskey.testing.fake(opts)); README
--- "Testing your code with misskey.testing".
---@class misskey.testing.Fake
---@field base_url string "https://fake.misskey.test"
---@field host string "fake.misskey.test"
---@field transport { request: fun(req: table): table, websocket: fun(req: table): misskey.testing.WebSocket } pass as misskey.new{ transport = ... }
---@field requests misskey.testing.Request[] every request seen, oldest first
---@field endpoints table<string, table> the endpoint handlers (misskey.testing.endpoints' format)
local Fake = { __name = "misskey.testing.Fake" }
Fake.__index = Fake

function Fake:__tostring()
  return ("misskey.testing.Fake (%s)"):format(self.base_url)
end

--- The fake clock: unix milliseconds. It only moves when a note is created
-- (1 ms each) or by fake:advance(ms).
---@return integer ms
function Fake:now()
  return self._clock
end

--- Moves the fake clock forward by `ms` milliseconds (an integer >= 0).
---@param ms integer
---@return integer now
function Fake:advance(ms)
  if type(ms) ~= "number" or ms < 0 or ms % 1 ~= 0 then
    error("bad argument #1 to 'advance' (an integer number of milliseconds >= 0 expected)", 2)
  end
  self._clock = self._clock + ms
  return self._clock
end

-- A Misskey `aidx` id for the current time: 8 base-36 digits of ms since
-- 2000-01-01, 4 node characters and a 4-digit counter: 16 chars of [0-9a-z],
-- so byte order is time order.
function Fake:_gen_id()
  self._counter = (self._counter + 1) % 1679616   -- 36^4
  return base36(self._clock - common.TIME2000, 8) .. common.AIDX_NODE .. base36(self._counter, 4)
end

local USER_OPTIONS = { username = true, name = true, token = true, description = true, isBot = true,
                       isCat = true, following = true }

function Fake:_add_user(spec)
  local user = {
    id = self:_gen_id(), createdAt = self._clock, username = spec.username, name = spec.name,
    token = spec.token or ("fake-token-" .. spec.username), description = spec.description,
    isBot = spec.isBot or false, isCat = spec.isCat or false, following = {},
  }
  self._users[#self._users + 1] = user
  self._by_id[user.id] = user
  self._by_name[user.username:lower()] = user
  if self._by_token[user.token] then
    error(("testing.fake: two users have the token %q"):format(user.token), 4)
  end
  self._by_token[user.token] = user
  return user
end

local function check_user_spec(spec, i)
  if type(spec) ~= "table" then error(("bad option 'users' (users[%d]: a table expected)"):format(i), 4) end
  for k in pairs(spec) do
    if not USER_OPTIONS[k] then error(("bad option 'users' (users[%d]: unknown field '%s')"):format(i, k), 4) end
  end
  if type(spec.username) ~= "string" or not spec.username:find("^[%w_]+$") or #spec.username > 20 then
    error(("bad option 'users' (users[%d].username: 1 to 20 letters, digits or _ expected)"):format(i), 4)
  end
  if spec.token ~= nil and (type(spec.token) ~= "string" or spec.token == "") then
    error(("bad option 'users' (users[%d].token: a non-empty string expected)"):format(i), 4)
  end
end

-- Builds the initial state from the options (also what fake:reset() returns to).
function Fake:_init()
  local opts = self._opts
  self._clock = opts.now or common.DEFAULT_NOW
  self._counter = 0
  self._users, self._by_id, self._by_name, self._by_token = {}, {}, {}, {}
  self._notes, self._order = {}, {}
  self._notifications, self._registry = {}, {}
  self._files, self._file_order = {}, {}
  self._limits = {} -- endpoint -> { n = calls still refused, seconds = Retry-After }
  self._webhooks, self._webhook_by_id, self._delivery_count = {}, {}, 0 -- endpoints/webhooks.lua
  for i = #self.deliveries, 1, -1 do self.deliveries[i] = nil end
  self:_close_sockets()
  local specs = {
    { username = "me", name = "Me", token = opts.token or "fake-token-me", following = { "alice" } },
    { username = "alice", name = "Alice", token = "fake-token-alice", following = { "me" } },
  }
  for i, spec in ipairs(opts.users or {}) do
    check_user_spec(spec, i)
    local merged
    for _, s in ipairs(specs) do
      if s.username == spec.username then merged = s end
    end
    if not merged then
      merged = {}
      specs[#specs + 1] = merged
    end
    for k, v in pairs(spec) do merged[k] = v end
  end
  for _, spec in ipairs(specs) do self:_add_user(spec) end
  for _, spec in ipairs(specs) do
    local user = self._by_name[spec.username:lower()]
    for _, name in ipairs(spec.following or {}) do
      local other = self._by_name[name:lower()]
      if not other then
        error(("bad option 'users' (@%s follows @%s, who is not a user)"):format(spec.username, name), 3)
      end
      user.following[other.id] = true
    end
  end
  for i, n in ipairs(opts.notes or {}) do
    if type(n) ~= "table" or type(n.user) ~= "string" then
      error(("bad option 'notes' (notes[%d]: a table with user = <username> expected)"):format(i), 3)
    end
    local params = common.copy(n)
    params.user = nil
    local ok, msg = pcall(self.post, self, n.user, params)
    if not ok then error(("bad option 'notes' (notes[%d]: %s)"):format(i, msg), 3) end
  end
end

--- A user's public facts: { id, username, name, token }, or nil.
---@param username string with or without the "@"
---@return { id: string, username: string, name: string|misskey.Null, token: string }|nil
function Fake:user(username)
  local u = type(username) == "string" and self._by_name[username:gsub("^@", ""):lower()]
  if not u then return nil end
  return { id = u.id, username = u.username, name = u.name, token = u.token }
end

return Fake
