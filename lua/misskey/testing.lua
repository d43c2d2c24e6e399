--- misskey.testing: an in-process fake Misskey server, for tests and demos.
--
-- The fake is a *transport* (see docs/architecture.md, "Transport"): the
-- client hands it the same request table it would hand libcurl and gets a
-- Misskey-shaped reply back, so everything above the transport (JSON, the
-- error model, redaction) runs exactly as against a real server. No sockets,
-- no real clock, no randomness: the same calls give the same ids and dates.
--
-- @usage
-- local testing = require "misskey.testing"
-- local fake = testing.fake()                      -- users @me and @alice
-- local client = fake:client()                     -- https://fake.misskey.test, token of @me
-- local res = assert(client:request("notes/create", { text = "hi" }))
-- assert(fake.requests[1].endpoint == "notes/create")
--
-- API:
--   testing.fake(opts) -> fake       a new server (options: see testing.fake below)
--   fake.transport                   { request = function(req) }: pass as misskey.new{ transport = ... }
--   fake:client(opts)                a client of the fake (token of @me, or of opts.user)
--   fake.base_url, fake.host         "https://fake.misskey.test", "fake.misskey.test"
--   fake.requests                    every request seen, oldest first: { method, path, endpoint,
--                                    params (the decoded body without `i`), auth ("body" | "header" |
--                                    "none"), user (username or nil), status, error (code or nil) }
--   fake:reset()                     back to the initial state; fake.requests emptied
--   fake:now(), fake:advance(ms)     the fake clock (unix ms): +1 ms per created note
--   fake:limit(endpoint, n[, s])     the next n calls of endpoint answer Misskey's 429 (Retry-After: s)
--   fake:user(name)                  { id, username, name, token } or nil
--   fake:post(name, params)          a note created directly on the server (not a request)
--   fake.endpoints, testing.endpoints  the endpoint handlers; see "Endpoint handlers" below
--   fake.transport.websocket(req)    an in-process WebSocket speaking the streaming protocol; the
--                                    fake's actions publish events (see "streaming" below)
--   fake:as(name)                    act as a user through the API: :post, :reply, :follow, :unfollow,
--                                    :react, :request
--   fake:run_until_idle()            run the scheduler until no task is ready (from the test)
--   fake:notes(filter), fake:files(filter), fake:sockets(), fake:drop_streams(),
--   fake:publish(channel, event, body)   a raw channel event to every socket's channels of that name
local json = require "misskey.json"
local baseurl = require "misskey.baseurl"

local null, array, is_array = json.null, json.array, json.is_array
local type, pairs, ipairs, tostring, error, setmetatable, select, pcall =
  type, pairs, ipairs, tostring, error, setmetatable, select, pcall
local floor, huge = math.floor, math.huge
local format, concat = string.format, table.concat

local testing = {}

local VERSION = "2026.5.4"
local MAX_NOTE_TEXT_LENGTH = 3000
-- 2026-05-21T00:00:00.000Z (Misskey 2026.5.4's release day), in unix ms.
local DEFAULT_NOW = 1779321600000
-- aid/aidx count milliseconds from 2000-01-01T00:00:00Z.
local TIME2000 = 946684800000
-- The 4 "node" characters of an aidx id; Misskey picks them at random per process.
local AIDX_NODE = "fake"

---------------------------------------------------------------------------
-- small helpers

local B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

local function base36(n, width)
  local digits = {}
  for i = width, 1, -1 do
    local d = n % 36
    digits[i] = B36:sub(d + 1, d + 1)
    n = floor(n / 36)
  end
  return concat(digits)
end

-- ISO-8601 UTC with milliseconds, as JavaScript's Date#toISOString.
local function iso(ms)
  local s = floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. format(".%03dZ", ms - s * 1000)
end

-- Code points, as ajv counts string lengths.
local function ulen(s)
  return select(2, s:gsub("[^\128-\191]", ""))
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- A deep copy that keeps array marks and null (for fake.requests).
local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = deep_copy(x) end
  if is_array(v) then array(c) end
  return c
end

local function nn(v)
  if v == nil then return null end
  return v
end

local function present(v)
  return v ~= nil and v ~= null
end

---------------------------------------------------------------------------
-- errors (Misskey's common errors; protocol.md section 2)

local COMMON_ERRORS = {
  CREDENTIAL_REQUIRED = { id = "1384574d-a912-4b81-8601-c7b1c4085df1", message = "Credential required.",
                          status = 401 },
  INVALID_PARAM = { id = "3d81ceae-475f-4600-b2a8-2bc116157532", message = "Invalid param." },
  UNKNOWN_API_ENDPOINT = { id = "2ca3b769-540a-4f08-9dd5-b5a825b6d0f1", message = "Unknown API endpoint.",
                           status = 404 },
  INTERNAL_ERROR = { id = "5d37dbcb-891e-41ca-a3d6-e690c97775ac", kind = "server", status = 500,
                     message = "Internal error occurred. Please contact us if the error persists." },
  RATE_LIMIT_EXCEEDED = { id = "d5826d14-3982-4d2e-8011-b9e9f02499ef", status = 429,
                          message = "Rate limit exceeded. Please try again later." },
}
testing.COMMON_ERRORS = COMMON_ERRORS

local AUTH_FAILED_MESSAGE = "Authentication failed. Please ensure your token is correct."

local JSON_HEADERS = {
  ["content-type"] = "application/json; charset=utf-8",
  ["cache-control"] = "private, max-age=0, must-revalidate",
  ["access-control-allow-origin"] = "*",
}

local function reply(status, value, extra)
  local headers = copy(JSON_HEADERS)
  for k, v in pairs(extra or {}) do headers[k] = v end
  return { status = status, headers = headers, body = json.encode(value) }
end

local function error_body(code, def, info)
  local e = { message = def.message, code = code, id = def.id, kind = def.kind or "client" }
  if info ~= nil then e.info = info end
  return { error = e }
end

-- The status and headers Misskey's ApiCallService gives an ApiError.
local function api_error_reply(code, def, info)
  local kind, status, headers = def.kind or "client", def.status, {}
  if status == 401 then
    headers["www-authenticate"] = 'Bearer realm="Misskey"'
  elseif code == "RATE_LIMIT_EXCEEDED" then
    status = 429
  elseif kind == "client" then
    headers["www-authenticate"] = ('Bearer realm="Misskey", error="invalid_request", error_description="%s"')
      :format(def.message)
    status = status or 400
  elseif kind == "permission" then
    if code == "PERMISSION_DENIED" then
      headers["www-authenticate"] = ('Bearer realm="Misskey", error="insufficient_scope", error_description="%s"')
        :format(def.message)
    end
    status = status or 403
  else
    status = status or 500
  end
  return reply(status, error_body(code, def, info), headers)
end

local function auth_failed_reply()
  return reply(401, error_body("AUTHENTICATION_FAILED",
    { id = "b0a7f5f8-dc2f-4171-b91f-de88ad238e14", message = AUTH_FAILED_MESSAGE }), {
    ["www-authenticate"] = ('Bearer realm="Misskey", error="invalid_token", error_description="%s"')
      :format(AUTH_FAILED_MESSAGE),
  })
end

-- Fastify's own replies (no Misskey error body: the client reports kind "http").
local function fastify_reply(status, code, message)
  local phrase = ({ [400] = "Bad Request", [404] = "Not Found" })[status]
  local body = { statusCode = status, error = phrase, message = message }
  if code then body.code = code end
  return reply(status, body)
end

---------------------------------------------------------------------------
-- parameter validation: the subset of JSON Schema Misskey's endpoints use,
-- reported as ajv reports its first error ({ param = schemaPath, reason }).

local function has_type(v, want)
  local tv = type(v)
  if want == "null" then return v == null end
  if want == "integer" then return tv == "number" and v % 1 == 0 and v > -huge and v < huge end
  if want == "number" then return tv == "number" and v == v end
  if want == "array" then return tv == "table" and is_array(v) end
  if want == "object" then return tv == "table" and not is_array(v) end
  return tv == want
end

local validate

local function check_type(schema, v)
  local want = schema.type
  if want == nil then return true end
  if type(want) == "string" then return has_type(v, want), want end
  for _, t in ipairs(want) do
    if has_type(v, t) then return true end
  end
  return false, concat(want, ",")
end

validate = function(schema, v, path)
  local ok, wanted = check_type(schema, v)
  if not ok then return path .. "/type", "must be " .. wanted end
  if schema.enum then
    local found = false
    for _, e in ipairs(schema.enum) do
      if e == v then found = true break end
    end
    if not found then return path .. "/enum", "must be equal to one of the allowed values" end
  end
  local tv = type(v)
  if tv == "string" then
    local n = ulen(v)
    if schema.maxLength and n > schema.maxLength then
      return path .. "/maxLength", ("must NOT have more than %d characters"):format(schema.maxLength)
    end
    if schema.minLength and n < schema.minLength then
      return path .. "/minLength", ("must NOT have fewer than %d characters"):format(schema.minLength)
    end
    if schema.pattern and not v:find(schema.pattern[2]) then
      return path .. "/pattern", ('must match pattern "%s"'):format(schema.pattern[1])
    end
    if schema.format == "misskey:id" and not v:find("^%w+$") then
      return path .. "/format", 'must match format "misskey:id"'
    end
  elseif tv == "number" then
    if schema.maximum and v > schema.maximum then
      return path .. "/maximum", ("must be <= %d"):format(schema.maximum)
    end
    if schema.minimum and v < schema.minimum then
      return path .. "/minimum", ("must be >= %d"):format(schema.minimum)
    end
  elseif tv == "table" and is_array(v) then
    if schema.maxItems and #v > schema.maxItems then
      return path .. "/maxItems", ("must NOT have more than %d items"):format(schema.maxItems)
    end
    if schema.minItems and #v < schema.minItems then
      return path .. "/minItems", ("must NOT have fewer than %d items"):format(schema.minItems)
    end
    if schema.uniqueItems then
      local seen = {}
      for i = 1, #v do
        local x = v[i]
        if type(x) ~= "table" then
          if seen[x] then
            return path .. "/uniqueItems",
              ("must NOT have duplicate items (items ## %d and %d are identical)"):format(i - 1, seen[x] - 1)
          end
          seen[x] = i
        end
      end
    end
    if schema.items then
      for i = 1, #v do
        local p, r = validate(schema.items, v[i], path .. "/items")
        if p then return p, r end
      end
    end
  elseif tv == "table" then
    for _, name in ipairs(schema.required or {}) do
      if v[name] == nil then return path .. "/required", ("must have required property '%s'"):format(name) end
    end
    for _, prop in ipairs(schema.properties or {}) do
      local x = v[prop[1]]
      if x ~= nil then
        local p, r = validate(prop[2], x, path .. "/properties/" .. prop[1])
        if p then return p, r end
      end
    end
  end
  if schema.anyOf then
    local first_p, first_r
    for i, alt in ipairs(schema.anyOf) do
      local p, r = validate(alt, v, path .. "/anyOf/" .. (i - 1))
      if not p then first_p = nil break end
      if i == 1 then first_p, first_r = p, r end
    end
    if first_p then return first_p, first_r end
  end
  if schema.allOf then
    for i, sub in ipairs(schema.allOf) do
      local p, r = validate(sub, v, path .. "/allOf/" .. (i - 1))
      if p then return p, r end
    end
  end
  return nil
end
testing.validate = function(schema, v) return validate(schema, v, "#") end

local ID = { type = "string", format = "misskey:id" }
local NULLABLE_ID = { type = { "string", "null" }, format = "misskey:id" }
local ID_LIST = { type = "array", uniqueItems = true, items = ID }
local BOOLEAN = { type = "boolean" }

local function object(properties, required)
  return { type = "object", properties = properties, required = required }
end

---------------------------------------------------------------------------
-- the Fake

local Fake = { __name = "misskey.testing.Fake" }
Fake.__index = Fake
testing.Fake = Fake

function Fake:__tostring()
  return ("misskey.testing.Fake (%s)"):format(self.base_url)
end

--- The fake clock: unix milliseconds. It only moves when a note is created
-- (1 ms each) or by fake:advance(ms).
function Fake:now()
  return self._clock
end

--- Moves the fake clock forward by `ms` milliseconds (an integer >= 0).
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
  return base36(self._clock - TIME2000, 8) .. AIDX_NODE .. base36(self._counter, 4)
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
  self._clock = opts.now or DEFAULT_NOW
  self._counter = 0
  self._users, self._by_id, self._by_name, self._by_token = {}, {}, {}, {}
  self._notes, self._order = {}, {}
  self._notifications, self._registry = {}, {}
  self._files, self._file_order = {}, {}
  self._limits = {} -- endpoint -> { n = calls still refused, seconds = Retry-After }
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
    local params = copy(n)
    params.user = nil
    local ok, msg = pcall(self.post, self, n.user, params)
    if not ok then error(("bad option 'notes' (notes[%d]: %s)"):format(i, msg), 3) end
  end
end

local FAKE_OPTIONS = { host = true, token = true, users = true, notes = true, name = true, version = true,
                       now = true }

--- testing.fake(opts) -> fake. Options (all optional):
--   host     the fake's host or base URL (default "fake.misskey.test", i.e. https://fake.misskey.test)
--   token    @me's token (default "fake-token-me")
--   users    more users, or changes to @me/@alice: { { username =, name =, token =, description =,
--            isBot =, isCat =, following = { usernames } }, ... } (a user's token defaults to
--            "fake-token-<username>")
--   notes    notes to create at the start: { { user = "alice", text = "hi", ... }, ... }
--   name     the server's name in `meta` (default "Fake Misskey")
--   version  the Misskey version in `meta` (default "2026.5.4")
--   now      the fake clock's start, unix ms (default 2026-05-21T00:00:00Z)
function testing.fake(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("bad argument #1 to 'fake' (options table expected, got " .. type(opts) .. ")", 2)
  end
  for k in pairs(opts) do
    if not FAKE_OPTIONS[k] then error(("bad option '%s' (unknown option)"):format(tostring(k)), 2) end
  end
  local base, why = baseurl.parse(opts.host or "fake.misskey.test")
  if not base then error(("bad option 'host' (%s)"):format(why), 2) end
  if opts.token ~= nil and (type(opts.token) ~= "string" or opts.token == "") then
    error("bad option 'token' (a non-empty string expected)", 2)
  end
  if opts.now ~= nil and (type(opts.now) ~= "number" or opts.now % 1 ~= 0 or opts.now < TIME2000) then
    error("bad option 'now' (unix milliseconds after 2000-01-01 expected)", 2)
  end
  for _, k in ipairs({ "name", "version" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then error(("bad option '%s' (string expected)"):format(k), 2) end
  end
  local self = setmetatable({
    base_url = base,
    host = base:match("://(.*)$"),
    requests = {},
    endpoints = setmetatable({}, { __index = testing.endpoints }),
    _opts = copy(opts),
  }, Fake)
  self.transport = {
    request = function(req) return self:handle(req) end,
    websocket = function(req) return self:_websocket(req) end,
  }
  self._sockets = {}
  self:_init()
  return self
end

--- Back to the state right after testing.fake(opts): users, notes (only
-- the `notes` option's), clock; fake.requests is emptied (the same table).
-- Handlers added to fake.endpoints stay.
function Fake:reset()
  for i = #self.requests, 1, -1 do self.requests[i] = nil end
  self:_init()
  return self
end

--- The next `n` calls of `endpoint` (after authentication, as Misskey's
-- limiter runs) answer 429 RATE_LIMIT_EXCEEDED as Misskey 2026.5.4 does:
-- `Retry-After: s` (whole seconds, default 1) and info { remaining, reset,
-- resetMs, total } on the fake clock. Nothing is done for a refused call.
---@param endpoint string
---@param n integer
---@param seconds integer?
function Fake:limit(endpoint, n, seconds)
  if type(endpoint) ~= "string" then error("bad argument #1 to 'limit' (endpoint name expected)", 2) end
  if type(n) ~= "number" or n < 0 or n % 1 ~= 0 then
    error("bad argument #2 to 'limit' (an integer >= 0 expected)", 2)
  end
  seconds = seconds or 1
  if type(seconds) ~= "number" or seconds < 0 or seconds % 1 ~= 0 then
    error("bad argument #3 to 'limit' (whole seconds >= 0 expected)", 2)
  end
  self._limits[endpoint] = { n = n, seconds = seconds }
end

-- A 429 when fake:limit holds the endpoint, else nil.
function Fake:_limited(endpoint, fail)
  local held = self._limits[endpoint]
  if not held or held.n <= 0 then return nil end
  held.n = held.n - 1
  local reset = self._clock + held.seconds * 1000
  local res = fail("RATE_LIMIT_EXCEEDED", { remaining = 0, reset = floor(reset / 1000), resetMs = reset, total = 1 })
  res.headers["retry-after"] = format("%d", held.seconds)
  return res
end

--- A client of this fake: misskey.new with host = fake.base_url, the token of
-- @me (or of `opts.user`, a username) and transport = fake.transport. Other
-- options go to misskey.new (`token = false` makes it anonymous).
function Fake:client(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  local username = o.user
  o.user = nil
  local user = self._by_name[(username or "me"):lower()]
  if not user then error(("bad option 'user' (no user @%s on the fake)"):format(tostring(username)), 2) end
  o.host = self.base_url
  o.transport = self.transport
  if o.token == nil then o.token = user.token end
  return require("misskey.client").new(o)
end

--- A user's public facts: { id, username, name, token }, or nil.
function Fake:user(username)
  local u = type(username) == "string" and self._by_name[username:gsub("^@", ""):lower()]
  if not u then return nil end
  return { id = u.id, username = u.username, name = u.name, token = u.token }
end

---------------------------------------------------------------------------
-- packing: the JSON shapes of api.json's components.schemas

function Fake:_avatar_url(user)
  return ("%s/identicon/%s@%s"):format(self.base_url, user.username:lower(), self.host)
end

local function follows(a, b_id)
  return a.following[b_id] == true
end

function Fake:_counts(user)
  local notes, followers, following = 0, 0, 0
  for _, id in ipairs(self._order) do
    if self._notes[id].userId == user.id then notes = notes + 1 end
  end
  for _, other in ipairs(self._users) do
    if other.following[user.id] then followers = followers + 1 end
  end
  for _ in pairs(user.following) do following = following + 1 end
  return notes, followers, following
end

-- UserLite
function Fake:_pack_user_lite(user)
  return {
    id = user.id, name = nn(user.name), username = user.username, host = null,
    avatarUrl = self:_avatar_url(user), avatarBlurhash = null, avatarDecorations = array{},
    isBot = user.isBot, isCat = user.isCat, emojis = {}, onlineStatus = "unknown", badgeRoles = array{},
  }
end

-- UserDetailed: UserDetailedNotMe for others (with the relation to `viewer`
-- when there is one), MeDetailed for the viewer themself.
function Fake:_pack_user_detailed(user, viewer)
  local u = self:_pack_user_lite(user)
  local notes, followers, following = self:_counts(user)
  local d = {
    url = null, uri = null, movedTo = null, alsoKnownAs = null, createdAt = iso(user.createdAt),
    updatedAt = null, lastFetchedAt = null, bannerUrl = null, bannerBlurhash = null, isLocked = false,
    isSilenced = false, isSuspended = false, description = nn(user.description), location = null,
    birthday = null, lang = null, fields = array{}, verifiedLinks = array{}, followersCount = followers,
    followingCount = following, notesCount = notes, pinnedNoteIds = array{}, pinnedNotes = array{},
    pinnedPageId = null, pinnedPage = null, publicReactions = true, followingVisibility = "public",
    followersVisibility = "public", chatScope = "mutual", canChat = true, roles = array{}, memo = null,
    twoFactorEnabled = false, usePasswordLessLogin = false, securityKeys = false,
  }
  for k, v in pairs(d) do u[k] = v end
  if viewer and viewer ~= user then
    u.isFollowing = follows(viewer, user.id)
    u.isFollowed = follows(user, viewer.id)
    u.hasPendingFollowRequestFromYou = false
    u.hasPendingFollowRequestToYou = false
    u.isBlocking, u.isBlocked, u.isMuted, u.isRenoteMuted = false, false, false, false
    u.notify = "none"
    u.withReplies = false
  elseif viewer == user then
    local me = {
      avatarId = null, bannerId = null, followedMessage = null, isModerator = false, isAdmin = false,
      injectFeaturedNote = true, receiveAnnouncementEmail = true, alwaysMarkNsfw = false, autoSensitive = false,
      carefulBot = false, autoAcceptFollowed = true, noCrawle = false, preventAiLearning = true,
      isExplorable = true, isDeleted = false, twoFactorBackupCodesStock = "none", hideOnlineStatus = false,
      hasUnreadSpecifiedNotes = false, hasUnreadMentions = false, hasUnreadAnnouncement = false,
      unreadAnnouncements = array{}, hasUnreadAntenna = false, hasUnreadChannel = false,
      hasUnreadChatMessages = false, hasUnreadNotification = false, hasPendingReceivedFollowRequest = false,
      unreadNotificationsCount = 0, mutedWords = array{}, hardMutedWords = array{}, mutedInstances = array{},
      emailNotificationTypes = array{}, achievements = array{}, loggedInDays = 1, email = null,
      emailVerified = false, securityKeysList = array{},
    }
    for k, v in pairs(me) do u[k] = v end
  end
  return u
end

local function is_pure_renote(note)
  return note.renoteId ~= nil and note.text == nil and note.cw == nil and note.poll == nil
end

-- Can `viewer` (a user or nil) see the note's content?
local function visible_to(note, viewer)
  local v = note.visibility
  if v == "public" or v == "home" then return true end
  if not viewer then return false end
  if note.userId == viewer.id then return true end
  if v == "followers" then return follows(viewer, note.userId) end
  for _, id in ipairs(note.visibleUserIds) do
    if id == viewer.id then return true end
  end
  return false
end

-- Note, as NoteEntityService.pack gives it to `viewer`; a note the viewer
-- may not see comes back with isHidden = true and no content.
function Fake:_pack_note(note, viewer, detail)
  local user = self._by_id[note.userId]
  local p = {
    id = note.id, createdAt = iso(note.createdAt), userId = note.userId, user = self:_pack_user_lite(user),
    text = nn(note.text), cw = nn(note.cw), visibility = note.visibility, localOnly = note.localOnly or nil,
    reactionAcceptance = nn(note.reactionAcceptance), renoteCount = note.renoteCount,
    repliesCount = note.repliesCount, reactionCount = note.reactionCount or 0, reactions = copy(note.reactions or {}),
    reactionEmojis = {},
    fileIds = array{}, files = array{}, replyId = nn(note.replyId), renoteId = nn(note.renoteId),
  }
  for i, id in ipairs(note.fileIds or {}) do
    p.fileIds[i] = id
    p.files[i] = self:_pack_file(self._files[id])
  end
  if note.visibility == "specified" then
    local ids = array{}
    for i, id in ipairs(note.visibleUserIds) do ids[i] = id end
    p.visibleUserIds = ids
  end
  if note.poll then
    local choices = array{}
    for i, text in ipairs(note.poll.choices) do choices[i] = { text = text, votes = 0, isVoted = false } end
    p.hasPoll = true
    p.poll = { multiple = note.poll.multiple, expiresAt = note.poll.expiresAt and iso(note.poll.expiresAt) or null,
               choices = choices }
  end
  if detail then
    p.clippedCount = 0
    if note.replyId and self._notes[note.replyId] then
      p.reply = self:_pack_note(self._notes[note.replyId], viewer, false)
    end
    if note.renoteId and self._notes[note.renoteId] then
      p.renote = self:_pack_note(self._notes[note.renoteId], viewer, true)
    end
    if viewer then p.myReaction = nn(note.reacted and note.reacted[viewer.id]) end
  end
  if not visible_to(note, viewer) then
    p.visibleUserIds, p.poll, p.text, p.cw = nil, nil, null, null
    p.fileIds, p.files = array{}, array{}
    p.isHidden = true
  end
  return p
end

---------------------------------------------------------------------------
-- notes

local VISIBILITIES = { "public", "home", "followers", "specified" }

local POLL = {
  type = { "object", "null" },
  required = { "choices" },
  properties = {
    { "choices", { type = "array", uniqueItems = true, minItems = 2, maxItems = 10,
                   items = { type = "string", minLength = 1, maxLength = 50 } } },
    { "multiple", BOOLEAN },
    { "expiresAt", { type = { "integer", "null" } } },
    { "expiredAfter", { type = { "integer", "null" }, minimum = 1 } },
  },
}

local CREATE_PARAMS = object({
  { "visibility", { type = "string", enum = VISIBILITIES } },
  { "visibleUserIds", ID_LIST },
  { "cw", { type = { "string", "null" }, minLength = 1, maxLength = 100 } },
  { "localOnly", BOOLEAN },
  { "reactionAcceptance", { type = { "string", "null" }, enum = { null, "likeOnly", "likeOnlyForRemote",
    "nonSensitiveOnly", "nonSensitiveOnlyForLocalLikeOnlyForRemote" } } },
  { "noExtractMentions", BOOLEAN },
  { "noExtractHashtags", BOOLEAN },
  { "noExtractEmojis", BOOLEAN },
  { "replyId", NULLABLE_ID },
  { "renoteId", NULLABLE_ID },
  { "channelId", NULLABLE_ID },
  { "text", { type = { "string", "null" }, minLength = 1, maxLength = MAX_NOTE_TEXT_LENGTH } },
  { "fileIds", { type = "array", uniqueItems = true, minItems = 1, maxItems = 16, items = ID } },
  { "mediaIds", { type = "array", uniqueItems = true, minItems = 1, maxItems = 16, items = ID } },
  { "poll", POLL },
})

-- The schema's `if` (no renote, files, media or poll) / `then` (a text with
-- a non-space character is required).
local CREATE_THEN = object({
  { "text", { type = "string", minLength = 1, maxLength = MAX_NOTE_TEXT_LENGTH,
              pattern = { "[^\\s]+", "%S" } } },
}, { "text" })

-- Creates a note for `user` from validated params: the note, or nil and an
-- error code of notes/create.
function Fake:_create_note(user, ps)
  local visibility = ps.visibility or "public"
  local file_ids = {}
  for _, id in ipairs(present(ps.fileIds) and ps.fileIds or present(ps.mediaIds) and ps.mediaIds or {}) do
    local file = self._files[id]
    if not file or file.userId ~= user.id then return nil, "NO_SUCH_FILE" end
    file_ids[#file_ids + 1] = id
  end
  local renote, parent
  if present(ps.renoteId) then
    renote = self._notes[ps.renoteId]
    if not renote then return nil, "NO_SUCH_RENOTE_TARGET" end
    if is_pure_renote(renote) then return nil, "CANNOT_RENOTE_TO_A_PURE_RENOTE" end
    if renote.visibility == "followers" and renote.userId ~= user.id or renote.visibility == "specified" then
      return nil, "CANNOT_RENOTE_DUE_TO_VISIBILITY"
    end
  end
  if present(ps.replyId) then
    parent = self._notes[ps.replyId]
    if not parent then return nil, "NO_SUCH_REPLY_TARGET" end
    if is_pure_renote(parent) then return nil, "CANNOT_REPLY_TO_A_PURE_RENOTE" end
    if not visible_to(parent, user) then return nil, "CANNOT_REPLY_TO_AN_INVISIBLE_NOTE" end
    if parent.visibility == "specified" and visibility ~= "specified" then
      return nil, "CANNOT_REPLY_TO_SPECIFIED_VISIBILITY_NOTE_WITH_EXTENDED_VISIBILITY"
    end
  end
  local poll
  if present(ps.poll) then
    local expires = present(ps.poll.expiresAt) and ps.poll.expiresAt or nil
    if present(ps.poll.expiredAfter) then expires = self._clock + ps.poll.expiredAfter end
    if expires and expires < self._clock then return nil, "CANNOT_CREATE_ALREADY_EXPIRED_POLL" end
    local choices = {}
    for i, c in ipairs(ps.poll.choices) do choices[i] = c end
    poll = { choices = choices, multiple = ps.poll.multiple == true, expiresAt = expires }
  end
  if present(ps.channelId) then return nil, "NO_SUCH_CHANNEL" end

  -- NoteCreateService trims the text; an all-space text with a renote becomes no text.
  local text = present(ps.text) and trim(ps.text) or nil
  if text == "" then text = nil end
  self._clock = self._clock + 1
  local visible = {}
  if visibility == "specified" then
    for _, id in ipairs(present(ps.visibleUserIds) and ps.visibleUserIds or {}) do
      if self._by_id[id] then visible[#visible + 1] = id end
    end
  end
  local note = {
    id = self:_gen_id(), createdAt = self._clock, userId = user.id, text = text,
    cw = present(ps.cw) and ps.cw or nil, visibility = visibility, visibleUserIds = visible,
    localOnly = ps.localOnly == true, reactionAcceptance = present(ps.reactionAcceptance) and ps.reactionAcceptance
    or nil, replyId = parent and parent.id, renoteId = renote and renote.id, poll = poll,
    renoteCount = 0, repliesCount = 0, fileIds = file_ids,
  }
  self._notes[note.id] = note
  self._order[#self._order + 1] = note.id
  if parent then parent.repliesCount = parent.repliesCount + 1 end
  if renote then renote.renoteCount = renote.renoteCount + 1 end
  self:_note_events(note)
  return note
end

-- Deletes a note and, as the database's ON DELETE CASCADE does, its replies and renotes.
function Fake:_delete_note(note)
  if not self._notes[note.id] then return end
  self._notes[note.id] = nil
  self:_note_updated(note.id, "deleted", { deletedAt = iso(self._clock) })
  for i, id in ipairs(self._order) do
    if id == note.id then table.remove(self._order, i) break end
  end
  local parent = note.replyId and self._notes[note.replyId]
  if parent then parent.repliesCount = parent.repliesCount - 1 end
  local target = note.renoteId and self._notes[note.renoteId]
  if target then target.renoteCount = target.renoteCount - 1 end
  local children = {}
  for _, id in ipairs(self._order) do
    local n = self._notes[id]
    if n.replyId == note.id or n.renoteId == note.id then children[#children + 1] = n end
  end
  for _, n in ipairs(children) do self:_delete_note(n) end
end

--- Creates a note as @username directly on the server (nothing is recorded
-- in fake.requests) with the params of notes/create. Returns the note as its
-- author sees it; raises if notes/create would refuse the params.
function Fake:post(username, params)
  local user = type(username) == "string" and self._by_name[username:gsub("^@", ""):lower()]
  if not user then error(("bad argument #1 to 'post' (no user @%s on the fake)"):format(tostring(username)), 2) end
  if type(params) ~= "table" then error("bad argument #2 to 'post' (params table expected)", 2) end
  local ps = json.decode(json.encode(params, "params"))
  local spec = testing.endpoints["notes/create"]
  local p, r = validate(spec.params, ps, "#")
  if not p and spec.check then p, r = spec.check(ps) end
  if p then error(("fake:post: INVALID_PARAM [%s: %s]"):format(p, r), 2) end
  local note, code = self:_create_note(user, ps)
  if not note then error("fake:post: " .. code, 2) end
  return self:_pack_note(note, user, true)
end

---------------------------------------------------------------------------
-- Endpoint handlers
--
-- testing.endpoints[name] = {
--   credential = true,          -- CREDENTIAL_REQUIRED without a token
--   params = schema,            -- validated before the handler (INVALID_PARAM as ajv reports it)
--   check = function(params) -> nil | param, reason   -- extra validation (e.g. if/then)
--   errors = { CODE = { id =, message =, status =?, kind =? } },  -- the endpoint's own errors
--   handler = function(fake, params, ctx) -> value (200 JSON) | nil (204) | nil, CODE, info?
-- }
-- ctx = { user = the authenticated user's record or nil, endpoint = name, request = req }.
-- CODE is looked up in the endpoint's `errors`, then in testing.COMMON_ERRORS.
-- A fake's own table, fake.endpoints, falls back to testing.endpoints: set
-- fake.endpoints[name] to add or replace a handler for one fake (false removes one).

local endpoints = {}
testing.endpoints = endpoints

endpoints["meta"] = {
  params = object({ { "detail", BOOLEAN } }),
  handler = function(self, ps)
    local m = {
      maintainerName = null, maintainerEmail = null, version = self._opts.version or VERSION,
      providesTarball = false, name = self._opts.name or "Fake Misskey", shortName = null, uri = self.base_url,
      description = "An in-process fake Misskey server (misskey.testing).", langs = array{}, tosUrl = null,
      repositoryUrl = "https://github.com/misskey-dev/misskey",
      feedbackUrl = "https://github.com/misskey-dev/misskey/issues/new", defaultDarkTheme = null,
      defaultLightTheme = null, disableRegistration = true, emailRequiredForSignup = false,
      enableHcaptcha = false, hcaptchaSiteKey = null, enableMcaptcha = false, mcaptchaSiteKey = null,
      mcaptchaInstanceUrl = null, enableRecaptcha = false, recaptchaSiteKey = null, enableTurnstile = false,
      turnstileSiteKey = null, enableTestcaptcha = false, googleAnalyticsMeasurementId = null,
      swPublickey = null, mascotImageUrl = "/assets/ai.png", bannerUrl = null, serverErrorImageUrl = null,
      infoImageUrl = null, notFoundImageUrl = null, iconUrl = null, maxNoteTextLength = MAX_NOTE_TEXT_LENGTH,
      ads = array{}, notesPerOneAd = 0, enableEmail = false, enableServiceWorker = false,
      translatorAvailable = false, sentryForFrontend = null, mediaProxy = self.base_url .. "/proxy",
      enableUrlPreview = false, backgroundImageUrl = null, impressumUrl = null, logoImageUrl = null,
      privacyPolicyUrl = null, inquiryUrl = null, serverRules = array{}, themeColor = null,
      noteSearchableScope = "local", maxFileSize = 262144000, federation = "none",
    }
    if ps.detail ~= false then
      m.features = {
        registration = false, emailRequiredForSignup = false, localTimeline = true, globalTimeline = true,
        hcaptcha = false, turnstile = false, recaptcha = false, objectStorage = false, serviceWorker = false,
        miauth = true,
      }
      m.proxyAccountName = null
      m.requireSetup = false
      m.cacheRemoteFiles = false
      m.cacheRemoteSensitiveFiles = false
    end
    return m
  end,
}

endpoints["ping"] = {
  handler = function(self) return { pong = self._clock } end,
}

endpoints["i"] = {
  credential = true,
  handler = function(self, _, ctx)
    return self:_pack_user_detailed(ctx.user, ctx.user)
  end,
}

endpoints["notes/create"] = {
  credential = true,
  params = CREATE_PARAMS,
  check = function(ps)
    if not (present(ps.renoteId) or present(ps.fileIds) or present(ps.mediaIds) or present(ps.poll)) then
      return validate(CREATE_THEN, ps, "#/then")
    end
  end,
  errors = {
    NO_SUCH_RENOTE_TARGET = { id = "b5c90186-4ab0-49c8-9bba-a1f76c282ba4", message = "No such renote target." },
    CANNOT_RENOTE_TO_A_PURE_RENOTE = { id = "fd4cc33e-2a37-48dd-99cc-9b806eb2031a",
                                       message = "You can not Renote a pure Renote." },
    CANNOT_RENOTE_DUE_TO_VISIBILITY = { id = "be9529e9-fe72-4de0-ae43-0b363c4938af",
                                        message = "You can not Renote due to target visibility." },
    NO_SUCH_REPLY_TARGET = { id = "749ee0f6-d3da-459a-bf02-282e2da4292c", message = "No such reply target." },
    CANNOT_REPLY_TO_AN_INVISIBLE_NOTE = { id = "b98980fa-3780-406c-a935-b6d0eeee10d1",
                                          message = "You cannot reply to an invisible Note." },
    CANNOT_REPLY_TO_A_PURE_RENOTE = { id = "3ac74a84-8fd5-4bb0-870f-01804f82ce15",
                                      message = "You can not reply to a pure Renote." },
    CANNOT_REPLY_TO_SPECIFIED_VISIBILITY_NOTE_WITH_EXTENDED_VISIBILITY = {
      id = "ed940410-535c-4d5e-bfa3-af798671e93c",
      message = "You cannot reply to a specified visibility note with extended visibility." },
    CANNOT_CREATE_ALREADY_EXPIRED_POLL = { id = "04da457d-b083-4055-9082-955525eda5a5",
                                           message = "Poll is already expired." },
    NO_SUCH_CHANNEL = { id = "b1653923-5453-4edc-b786-7c4f39bb0bbb", message = "No such channel." },
    NO_SUCH_FILE = { id = "b6992544-63e7-67f0-fa7f-32444b1b5306", message = "Some files are not found." },
  },
  handler = function(self, ps, ctx)
    local note, code = self:_create_note(ctx.user, ps)
    if not note then return nil, code end
    return { createdNote = self:_pack_note(note, ctx.user, true) }
  end,
}

endpoints["notes/show"] = {
  params = object({ { "noteId", ID } }, { "noteId" }),
  errors = {
    NO_SUCH_NOTE = { id = "24fcbfc6-2e37-42b6-8388-c29b3861a08d", message = "No such note." },
  },
  handler = function(self, ps, ctx)
    local note = self._notes[ps.noteId]
    if not note then return nil, "NO_SUCH_NOTE" end
    return self:_pack_note(note, ctx.user, true)
  end,
}

endpoints["notes/delete"] = {
  credential = true,
  params = object({ { "noteId", ID } }, { "noteId" }),
  errors = {
    NO_SUCH_NOTE = { id = "490be23f-8c1f-4796-819f-94cb4f9d1630", message = "No such note." },
    ACCESS_DENIED = { id = "fe8d7103-0ea8-4ec3-814d-f8b401dc69e9", message = "Access denied." },
  },
  handler = function(self, ps, ctx)
    local note = self._notes[ps.noteId]
    if not note then return nil, "NO_SUCH_NOTE" end
    if note.userId ~= ctx.user.id then return nil, "ACCESS_DENIED" end
    self:_delete_note(note)
    return nil
  end,
}

local TIMELINE_PARAMS = object({
  { "limit", { type = "integer", minimum = 1, maximum = 100 } },
  { "sinceId", ID },
  { "untilId", ID },
  { "sinceDate", { type = "integer" } },
  { "untilDate", { type = "integer" } },
  { "allowPartial", BOOLEAN },
  { "includeMyRenotes", BOOLEAN },
  { "includeRenotedMyNotes", BOOLEAN },
  { "includeLocalRenotes", BOOLEAN },
  { "withFiles", BOOLEAN },
  { "withRenotes", BOOLEAN },
})

-- Misskey's pagination over the notes that `keep(note)` accepts: newest
-- first, except with sinceId/sinceDate alone (no until): the `limit` notes
-- just after it, oldest first (protocol.md section 8).
function Fake:_paginate(ps, keep)
  local limit = ps.limit or 10
  local since = ps.sinceId ~= nil or ps.sinceDate ~= nil
  local ascending = since and ps.untilId == nil and ps.untilDate == nil
  local order, out = self._order, array{}
  local from, to, step = #order, 1, -1
  if ascending then from, to, step = 1, #order, 1 end
  for i = from, to, step do
    local note = self._notes[order[i]]
    if (ps.sinceId == nil or note.id > ps.sinceId) and (ps.untilId == nil or note.id < ps.untilId)
       and (ps.sinceDate == nil or note.createdAt > ps.sinceDate)
       and (ps.untilDate == nil or note.createdAt < ps.untilDate) and keep(note) then
      out[#out + 1] = note
      if #out >= limit then break end
    end
  end
  return out
end

endpoints["notes/timeline"] = {
  credential = true,
  params = TIMELINE_PARAMS,
  handler = function(self, ps, ctx)
    local me = ctx.user
    local notes = self:_paginate(ps, function(note)
      if note.userId ~= me.id and not follows(me, note.userId) then return false end
      if ps.withRenotes == false and is_pure_renote(note) then return false end
      if ps.withFiles == true and #(note.fileIds or {}) == 0 then return false end
      return visible_to(note, me)
    end)
    for i, note in ipairs(notes) do notes[i] = self:_pack_note(note, me, true) end
    return notes
  end,
}

endpoints["users/show"] = {
  params = {
    allOf = {
      { anyOf = {
        object({ { "userId", ID } }, { "userId" }),
        object({ { "userIds", ID_LIST } }, { "userIds" }),
        object({ { "username", { type = "string" } } }, { "username" }),
      } },
      object({ { "host", { type = { "string", "null" } } } }),
    },
  },
  errors = {
    FAILED_TO_RESOLVE_REMOTE_USER = { id = "ef7b9be4-9cba-4e6f-ab41-90ed171c7d3c",
                                      message = "Failed to resolve remote user.", kind = "server" },
    NO_SUCH_USER = { id = "4362f8dc-731f-4ad8-a694-be5a88922a24", message = "No such user.", status = 404 },
  },
  handler = function(self, ps, ctx)
    if ps.userIds ~= nil then
      local out = array{}
      for _, id in ipairs(ps.userIds) do
        local u = self._by_id[id]
        if u then out[#out + 1] = self:_pack_user_detailed(u, ctx.user) end
      end
      return out
    end
    local user
    if ps.userId ~= nil then
      user = self._by_id[ps.userId]
    else
      if present(ps.host) and ps.host:lower() ~= self.host then return nil, "FAILED_TO_RESOLVE_REMOTE_USER" end
      user = self._by_name[ps.username:lower()]
    end
    if not user then return nil, "NO_SUCH_USER" end
    return self:_pack_user_detailed(user, ctx.user)
  end,
}

---------------------------------------------------------------------------
-- the transport

local function header(headers, name)
  for k, v in pairs(headers or {}) do
    if type(k) == "string" and k:lower() == name then return v end
  end
  return nil
end

local function network_error(msg)
  return nil, msg, { kind = "network" }
end

--- Answers one transport request, as Misskey's ApiServerService and
-- ApiCallService would: fake.transport.request(req) calls this.
function Fake:handle(req)
  if type(req) ~= "table" or type(req.url) ~= "string" then
    error("bad argument #1 to 'request' (a request table with a url expected)", 2)
  end
  local base, path = req.url:match("^(https?://[^/?#]+)(.*)$")
  if not base or base:lower() ~= self.base_url then
    return network_error(("fake: no server at %s (this fake is %s)"):format(tostring(base or req.url), self.base_url))
  end
  path = path:gsub("[?#].*$", "")
  local method = (req.method or "POST"):upper()
  local endpoint = path:match("^/api/(.+)$")
  local record = { method = method, path = path, endpoint = endpoint, auth = "none" }
  self.requests[#self.requests + 1] = record
  local res = self:_answer(req, record)
  record.status = res.status
  return res
end

function Fake:_answer(req, record)
  local method, endpoint = record.method, record.endpoint
  if not endpoint then
    return fastify_reply(404, nil, ("Route %s:%s not found"):format(method, record.path))
  end
  local spec = self.endpoints[endpoint]
  local function fail(code, info)
    local def = spec and spec.errors and spec.errors[code] or COMMON_ERRORS[code]
    if not def then
      error(("misskey.testing: endpoint %s returned the unknown error code %s"):format(endpoint, tostring(code)))
    end
    record.error = code
    return api_error_reply(code, def, info)
  end
  if not spec then return fail("UNKNOWN_API_ENDPOINT") end
  if method ~= "POST" then return { status = 405, headers = {}, body = "" } end

  if spec.multipart then
    if type(req.parts) ~= "table" then return { status = 400, headers = {}, body = "" } end
    return self:_answer_multipart(req, record, spec, fail)
  end

  -- Fastify parses the JSON body before Misskey sees it.
  local body = req.body
  if body == nil or body:find("^%s*$") then
    return fastify_reply(400, "FST_ERR_CTP_EMPTY_JSON_BODY",
      "Body cannot be empty when content-type is set to 'application/json'")
  end
  local ps = json.decode(body)
  if ps == nil then
    return fastify_reply(400, "FST_ERR_CTP_INVALID_JSON_BODY",
      "Body is not valid JSON but content-type is set to 'application/json'")
  end

  -- The token: a Bearer header beats the body's `i` (ApiCallService.handleRequest).
  local token
  local authorization = header(req.headers, "authorization")
  local is_object = type(ps) == "table" and not is_array(ps)
  if type(authorization) == "string" and authorization:sub(1, 7) == "Bearer " then
    token = authorization:sub(8)
    record.auth = "header"
  elseif is_object and ps.i ~= nil then
    token = ps.i
    record.auth = "body"
  end
  if is_object then
    ps.i = nil
    record.params = deep_copy(ps)
  end
  if token ~= nil and type(token) ~= "string" then
    return { status = 400, headers = {}, body = "" }
  end
  local user
  if token ~= nil then
    user = self._by_token[token]
    if not user then
      record.error = "AUTHENTICATION_FAILED"
      return auth_failed_reply()
    end
    record.user = user.username
  end
  if spec.credential and not user then return fail("CREDENTIAL_REQUIRED") end
  local limited = self:_limited(endpoint, fail)
  if limited then return limited end

  if not is_object then
    return fail("INVALID_PARAM", { param = "#/type", reason = "must be object" })
  end
  if spec.params then
    local p, r = validate(spec.params, ps, "#")
    if p then return fail("INVALID_PARAM", { param = p, reason = r }) end
  end
  if spec.check then
    local p, r = spec.check(ps)
    if p then return fail("INVALID_PARAM", { param = p, reason = r }) end
  end

  local result, code, info = spec.handler(self, ps, { user = user, endpoint = endpoint, request = req })
  if code ~= nil then return fail(code, info) end
  if result == nil then return { status = 204, headers = { ["cache-control"] = JSON_HEADERS["cache-control"],
    ["access-control-allow-origin"] = "*" }, body = "" } end
  return reply(200, result)
end

-- multipart/form-data (drive/files/create): text parts become params (text, as
-- Misskey receives them), the file part becomes ps.file = { filename, size, type, data? }.
function Fake:_answer_multipart(req, record, spec, fail)
  local ps, file, token = {}, nil, nil
  for _, part in ipairs(req.parts) do
    if part.name == "file" and (part.path or part.data) then
      local data, size = part.data, part.data and #part.data
      if part.path then
        local f = io.open(part.path, "rb")
        if not f then return { status = 500, headers = {}, body = "" } end
        size = f:seek("end")
        f:close()
      end
      file = { filename = part.filename, size = size, type = part.type, data = data }
    elseif part.name == "i" then
      token = part.value
    elseif type(part.name) == "string" then
      ps[part.name] = part.value
    end
  end
  local authorization = header(req.headers, "authorization")
  if type(authorization) == "string" and authorization:sub(1, 7) == "Bearer " then
    token = authorization:sub(8)
    record.auth = "header"
  elseif token ~= nil then
    record.auth = "body"
  end
  record.params = deep_copy(ps)
  local user
  if token ~= nil then
    user = self._by_token[token]
    if not user then
      record.error = "AUTHENTICATION_FAILED"
      return auth_failed_reply()
    end
    record.user = user.username
  end
  if spec.credential and not user then return fail("CREDENTIAL_REQUIRED") end
  local limited = self:_limited(record.endpoint, fail)
  if limited then return limited end
  ps.file = file
  if type(req.progress) == "function" and file then pcall(req.progress, file.size, file.size) end
  local result, code, info = spec.handler(self, ps, { user = user, endpoint = record.endpoint, request = req })
  if code ~= nil then return fail(code, info) end
  return reply(200, result)
end

---------------------------------------------------------------------------
-- drive files

local MIME = { png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", webp = "image/webp",
               txt = "text/plain", json = "application/json" }

function Fake:_pack_file(file)
  return {
    id = file.id, createdAt = iso(file.createdAt), name = file.name, type = file.type, md5 = null,
    size = file.size, isSensitive = file.isSensitive, blurhash = null, properties = {},
    url = self.base_url .. "/files/" .. file.id, thumbnailUrl = null, comment = nn(file.comment),
    folderId = null, folder = null, userId = file.userId, user = null,
  }
end

endpoints["drive/files/create"] = {
  credential = true,
  multipart = true,
  errors = {
    FILE_REQUIRED = { id = "4267801e-70d1-416a-b011-4ee502885d8b", message = "File required." },
  },
  handler = function(self, ps, ctx)
    if not ps.file then return nil, "FILE_REQUIRED" end
    local name = ps.name or ps.file.filename
    if name == nil or name == "blob" or trim(name) == "" then name = "untitled" end
    local ext = name:match("%.(%w+)$")
    self._clock = self._clock + 1
    local file = {
      id = self:_gen_id(), createdAt = self._clock, name = name, size = ps.file.size, userId = ctx.user.id,
      type = ps.file.type or MIME[ext and ext:lower() or ""] or "application/octet-stream",
      isSensitive = ps.isSensitive == "true", comment = ps.comment, data = ps.file.data,
    }
    self._files[file.id] = file
    self._file_order[#self._file_order + 1] = file.id
    return self:_pack_file(file)
  end,
}

--- fake:files{ user = } -> the drive files on the server, oldest first, as DriveFile objects.
function Fake:files(filter)
  filter = filter or {}
  local out = {}
  for _, id in ipairs(self._file_order) do
    local f = self._files[id]
    if f and (filter.user == nil or self._by_id[f.userId].username:lower() == filter.user:gsub("^@", ""):lower()) then
      out[#out + 1] = self:_pack_file(f)
    end
  end
  return out
end

---------------------------------------------------------------------------
-- streaming: fake.transport.websocket(req) -> an in-process WebSocket
--
-- It speaks Misskey's streaming protocol (protocol.md 7): connect (with
-- pong = true it answers connected), disconnect, subNote/unsubNote; the
-- fake's actions publish events: notes -> "note" on homeTimeline (author and
-- followers), localTimeline/hybridTimeline/globalTimeline (public notes);
-- mention/reply/renote and notification on the main channel; follow,
-- followed, unfollow; noteUpdated (reacted, deleted) for captured notes.
-- receive(timeout) waits through misskey.loop: it yields in a task and
-- blocks outside one, like the real socket.

local loop -- required lazily: the fake's HTTP side works without the C core

local FakeSocket = { __name = "misskey.testing.WebSocket" }
FakeSocket.__index = FakeSocket
testing.WebSocket = FakeSocket

local TIMELINES = { homeTimeline = "home", localTimeline = "public", hybridTimeline = "hybrid",
                    globalTimeline = "public", main = "main" }
local NEEDS_LOGIN = { homeTimeline = true, hybridTimeline = true, main = true }

function Fake:_websocket(req)
  loop = loop or require "misskey.loop"
  local errors = require "misskey.errors"
  if type(req) ~= "table" or type(req.url) ~= "string" then
    error("bad argument #1 to 'websocket' (a request table with a url expected)", 2)
  end
  local base, rest = req.url:match("^(wss?://[^/?#]+)(.*)$")
  if not base or base:gsub("^ws", "http"):lower() ~= self.base_url then
    return errors.fail("network", ("fake: no server at %s (this fake is %s)"):format(tostring(base or req.url),
      self.base_url))
  end
  local token
  local authorization = header(req.headers, "authorization")
  if type(authorization) == "string" and authorization:sub(1, 7) == "Bearer " then
    token = authorization:sub(8)
  else
    local q = rest:match("[?&]i=([^&#]*)")
    if q then token = q:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end) end
  end
  local user
  if token ~= nil and token ~= "" then
    user = self._by_token[token]
    if not user then
      return errors.fail("auth", "websocket upgrade refused: HTTP 401", { status = 401 })
    end
  end
  local ws = setmetatable({ fake = self, user = user, _queue = {}, channels = {}, captures = {}, sent = {} },
    FakeSocket)
  self._sockets[#self._sockets + 1] = ws
  return ws
end

function FakeSocket:_push(msg)
  if self.closed then return end
  self._queue[#self._queue + 1] = json.encode(msg)
  loop.signal(self)
end

--- ws:receive([timeout]) -> text | nil, msg, err (kind "timeout", or "network" with err.closed)
function FakeSocket:receive(timeout)
  local errors = require "misskey.errors"
  while #self._queue == 0 do
    if self.closed then
      return errors.fail("network", ("websocket closed (%d)"):format(self.closed), { close_code = self.closed,
        closed = true })
    end
    if loop.wait_event(self, timeout) == "timeout" and #self._queue == 0 and not self.closed then
      return errors.fail("timeout", ("no message within %g s"):format(timeout), { timeout = true })
    end
  end
  return table.remove(self._queue, 1)
end

--- ws:send(text) -> true | nil, msg, err: a client frame, handled at once.
function FakeSocket:send(text)
  if self.closed then
    return require("misskey.errors").fail("network", "websocket closed", { closed = true })
  end
  self.sent[#self.sent + 1] = text
  local msg = json.decode(text)
  if type(msg) ~= "table" or type(msg.type) ~= "string" or type(msg.body) ~= "table" then return true end
  local t, body = msg.type, msg.body
  if t == "connect" then
    local kind = TIMELINES[body.channel]
    if kind and type(body.id) == "string" and (self.user or not NEEDS_LOGIN[body.channel]) then
      self.channels[body.id] = { name = body.channel, params = body.params }
      if body.pong then self:_push({ type = "connected", body = { id = body.id } }) end
    end
  elseif t == "disconnect" then
    if type(body.id) == "string" then self.channels[body.id] = nil end
  elseif t == "subNote" or t == "s" or t == "sr" then
    if type(body.id) == "string" then self.captures[body.id] = (self.captures[body.id] or 0) + 1 end
  elseif t == "unsubNote" or t == "un" then
    if type(body.id) == "string" then self.captures[body.id] = nil end
  end
  return true
end

--- ws:close([code]): closes the socket; a waiting receive returns "closed".
function FakeSocket:close(code)
  if self.closed then return true end
  self.closed = code or 1000
  local list = self.fake._sockets
  for i = #list, 1, -1 do
    if list[i] == self then table.remove(list, i) end
  end
  if loop then loop.signal(self) end
  return true
end

function FakeSocket:state() return self.closed and "closed" or "open" end

function Fake:_close_sockets(code)
  for _, ws in ipairs(self._sockets or {}) do
    ws.closed = code or 1001
    if loop then loop.signal(ws) end
  end
  self._sockets = {}
end

--- fake:drop_streams(): the server closes every open WebSocket (1006), as a restart would.
function Fake:drop_streams()
  local n = #self._sockets
  self:_close_sockets(1006)
  return n
end

--- fake:publish(channel, event, body) -> sockets reached: a channel event (as
-- the server would send it) to every open socket's channels named `channel`
-- ("main", "homeTimeline", ...), whatever their user. For load and edge cases
-- the fake's own actions do not make; body is sent as given.
function Fake:publish(channel, event, body)
  if type(channel) ~= "string" or type(event) ~= "string" then
    error("bad argument to 'publish' (channel and event names expected)", 2)
  end
  local n = 0
  self:_publish({ [channel] = true }, event, function()
    n = n + 1
    return body
  end)
  return n
end

--- fake.sockets(): the open fake WebSockets ({ user, channels = { id = { name, params } }, captures, sent }).
function Fake:sockets()
  local out = {}
  for i, ws in ipairs(self._sockets) do out[i] = ws end
  return out
end

-- Sends `event` with a body built per socket user (`make(user)` -> body or nil)
-- to every channel whose name is in `names`.
function Fake:_publish(names, event, make)
  for _, ws in ipairs(self._sockets) do
    for id, ch in pairs(ws.channels) do
      if names[ch.name] then
        local body = make(ws.user, ch)
        if body ~= nil then ws:_push({ type = "channel", body = { id = id, type = event, body = body } }) end
      end
    end
  end
end

-- A main channel event for one user.
function Fake:_main(user, event, body)
  self:_publish({ main = true }, event, function(u) if u == user then return body end end)
end

function Fake:_note_updated(note_id, event, body)
  for _, ws in ipairs(self._sockets) do
    if ws.captures[note_id] then
      ws:_push({ type = "noteUpdated", body = { id = note_id, type = event, body = body } })
    end
  end
end

-- Stores a notification for `user` and publishes it on the main channel.
function Fake:_notify(user, kind, from, fields)
  if from and from.id == user.id then return end
  local n = { id = self:_gen_id(), createdAt = self._clock, type = kind, userId = from and from.id,
              fields = fields or {}, isRead = false }
  local list = self._notifications[user.id] or {}
  self._notifications[user.id] = list
  list[#list + 1] = n
  self:_main(user, "notification", self:_pack_notification(n, user))
end

function Fake:_pack_notification(n, viewer)
  local p = { id = n.id, createdAt = iso(n.createdAt), type = n.type, isRead = n.isRead }
  if n.userId then
    p.userId = n.userId
    p.user = self:_pack_user_lite(self._by_id[n.userId])
  end
  if n.fields.noteId and self._notes[n.fields.noteId] then
    p.note = self:_pack_note(self._notes[n.fields.noteId], viewer, true)
  end
  if n.fields.reaction then p.reaction = n.fields.reaction end
  return p
end

-- The local users a note's text mentions (@name or @name@<this host>).
function Fake:_mentioned(text)
  local out, seen = {}, {}
  if not text then return out end
  for name, host in text:gmatch("@([%w_]+)@?([%w%.%-:]*)") do
    if host == "" or host:lower() == self.host then
      local u = self._by_name[name:lower()]
      if u and not seen[u] then
        seen[u] = true
        out[#out + 1] = u
      end
    end
  end
  return out
end

-- Publishes what a new note causes (NoteCreateService's events, simplified).
function Fake:_note_events(note)
  local author = self._by_id[note.userId]
  self:_publish({ homeTimeline = true, hybridTimeline = true, localTimeline = true, globalTimeline = true },
    "note", function(u, ch)
      local home = u and (u == author or follows(u, author.id)) and visible_to(note, u)
      if ch.name == "homeTimeline" and not home then return nil end
      if (ch.name == "localTimeline" or ch.name == "globalTimeline") and note.visibility ~= "public" then return nil end
      if ch.name == "hybridTimeline" and not home and note.visibility ~= "public" then return nil end
      local params = ch.params
      if type(params) == "table" and params.withRenotes == false and is_pure_renote(note) then return nil end
      return self:_pack_note(note, u, true)
    end)
  local done = {}
  local parent = note.replyId and self._notes[note.replyId]
  if parent then
    local to = self._by_id[parent.userId]
    if to ~= author then
      done[to] = true
      self:_main(to, "reply", self:_pack_note(note, to, true))
      self:_notify(to, "reply", author, { noteId = note.id })
    end
  end
  local target = note.renoteId and self._notes[note.renoteId]
  if target then
    local to = self._by_id[target.userId]
    if to ~= author then
      self:_main(to, "renote", self:_pack_note(note, to, true))
      if is_pure_renote(note) then
        self:_notify(to, "renote", author, { noteId = note.id })
      else
        done[to] = true
        self:_notify(to, "quote", author, { noteId = note.id })
      end
    end
  end
  local mentioned = self:_mentioned(note.text)
  for _, id in ipairs(note.visibleUserIds) do
    local u = self._by_id[id]
    local found = false
    for _, m in ipairs(mentioned) do if m == u then found = true end end
    if not found then mentioned[#mentioned + 1] = u end
  end
  for _, u in ipairs(mentioned) do
    if u ~= author and visible_to(note, u) then
      self:_main(u, "mention", self:_pack_note(note, u, true))
      if not done[u] then self:_notify(u, "mention", author, { noteId = note.id }) end
    end
  end
end

---------------------------------------------------------------------------
-- follows, reactions, notifications, the registry

local NO_SUCH_USER_FOLLOW = { id = "fcd2eef9-a9b2-4c4f-8624-038099e90aa5", message = "No such user." }

function Fake:_follow(follower, followee)
  if follower == followee then return nil, "FOLLOWEE_IS_YOURSELF" end
  if follows(follower, followee.id) then return nil, "ALREADY_FOLLOWING" end
  follower.following[followee.id] = true
  self:_main(follower, "follow", self:_pack_user_detailed(followee, follower))
  self:_main(followee, "followed", self:_pack_user_lite(follower))
  self:_notify(followee, "follow", follower)
  return true
end

function Fake:_unfollow(follower, followee)
  if follower == followee then return nil, "FOLLOWEE_IS_YOURSELF" end
  if not follows(follower, followee.id) then return nil, "NOT_FOLLOWING" end
  follower.following[followee.id] = nil
  self:_main(follower, "unfollow", self:_pack_user_detailed(followee, follower))
  return true
end

function Fake:_react(user, note, reaction)
  note.reacted = note.reacted or {}
  note.reactions = note.reactions or {}
  if note.reacted[user.id] then return nil, "ALREADY_REACTED" end
  note.reacted[user.id] = reaction
  note.reactions[reaction] = (note.reactions[reaction] or 0) + 1
  note.reactionCount = (note.reactionCount or 0) + 1
  self:_note_updated(note.id, "reacted", { reaction = reaction, emoji = null, userId = user.id })
  self:_notify(self._by_id[note.userId], "reaction", user, { noteId = note.id, reaction = reaction })
  return true
end

local FOLLOW_ERRORS = {
  NO_SUCH_USER = NO_SUCH_USER_FOLLOW,
  FOLLOWEE_IS_YOURSELF = { id = "26fbe7bb-a331-4857-af17-205b426669a9", message = "Followee is yourself." },
  ALREADY_FOLLOWING = { id = "35387507-38c7-4cb9-9197-300b93783fa0", message = "You are already following that user." },
  NOT_FOLLOWING = { id = "5dbf82f5-c92b-40b1-87d1-6c8c0741fd09", message = "You are not following that user." },
}

endpoints["following/create"] = {
  credential = true,
  params = object({ { "userId", ID }, { "withReplies", BOOLEAN } }, { "userId" }),
  errors = FOLLOW_ERRORS,
  handler = function(self, ps, ctx)
    local followee = self._by_id[ps.userId]
    if not followee then return nil, "NO_SUCH_USER" end
    local ok, code = self:_follow(ctx.user, followee)
    if not ok then return nil, code end
    return self:_pack_user_lite(followee)
  end,
}

endpoints["following/delete"] = {
  credential = true,
  params = object({ { "userId", ID } }, { "userId" }),
  errors = FOLLOW_ERRORS,
  handler = function(self, ps, ctx)
    local followee = self._by_id[ps.userId]
    if not followee then return nil, "NO_SUCH_USER" end
    local ok, code = self:_unfollow(ctx.user, followee)
    if not ok then return nil, code end
    return self:_pack_user_lite(followee)
  end,
}

endpoints["notes/reactions/create"] = {
  credential = true,
  params = object({ { "noteId", ID }, { "reaction", { type = "string" } } }, { "noteId", "reaction" }),
  errors = {
    NO_SUCH_NOTE = { id = "033d0620-5bfe-4027-965d-980b0c85a3ea", message = "No such note." },
    ALREADY_REACTED = { id = "71efcf98-86d6-4e2b-b2ad-9d032369366b",
                        message = "You are already reacting to that note." },
  },
  handler = function(self, ps, ctx)
    local note = self._notes[ps.noteId]
    if not note or not visible_to(note, ctx.user) then return nil, "NO_SUCH_NOTE" end
    local ok, code = self:_react(ctx.user, note, ps.reaction)
    if not ok then return nil, code end
    return nil
  end,
}

local NOTIFICATION_TYPES = { "note", "follow", "mention", "reply", "renote", "quote", "reaction", "pollEnded",
  "receiveFollowRequest", "followRequestAccepted", "roleAssigned", "achievementEarned", "app", "test" }

endpoints["i/notifications"] = {
  credential = true,
  params = object({
    { "limit", { type = "integer", minimum = 1, maximum = 100 } },
    { "sinceId", ID }, { "untilId", ID },
    { "sinceDate", { type = "integer" } }, { "untilDate", { type = "integer" } },
    { "markAsRead", BOOLEAN },
    { "includeTypes", { type = "array", items = { type = "string", enum = NOTIFICATION_TYPES } } },
    { "excludeTypes", { type = "array", items = { type = "string", enum = NOTIFICATION_TYPES } } },
  }),
  handler = function(self, ps, ctx)
    local list = self._notifications[ctx.user.id] or {}
    local include, exclude = {}, {}
    for _, t in ipairs(ps.includeTypes or {}) do include[t] = true end
    for _, t in ipairs(ps.excludeTypes or {}) do exclude[t] = true end
    local limit = ps.limit or 10
    local ascending = ps.sinceId ~= nil and ps.untilId == nil
    local out = array{}
    local from, to, step = #list, 1, -1
    if ascending then from, to, step = 1, #list, 1 end
    for i = from, to, step do
      local n = list[i]
      if (ps.sinceId == nil or n.id > ps.sinceId) and (ps.untilId == nil or n.id < ps.untilId)
         and (not ps.includeTypes or include[n.type]) and not exclude[n.type] then
        out[#out + 1] = self:_pack_notification(n, ctx.user)
        if #out >= limit then break end
      end
    end
    if ps.markAsRead ~= false then
      for _, n in ipairs(list) do n.isRead = true end
    end
    return out
  end,
}

local SCOPE = { type = "array", items = { type = "string", pattern = { "^[a-zA-Z0-9_]+$", "^[%w_]+$" } } }

local function registry_of(self, user, scope)
  local key = concat(scope or {}, "\0")
  local r = self._registry[user.id] or {}
  self._registry[user.id] = r
  r[key] = r[key] or {}
  return r[key]
end

endpoints["i/registry/get"] = {
  credential = true,
  params = object({ { "key", { type = "string" } }, { "scope", SCOPE }, { "domain", { type = { "string", "null" } } } },
    { "key", "scope" }),
  errors = { NO_SUCH_KEY = { id = "ac3ed68a-62f0-422b-a7bc-d5e09e8f6a6a", message = "No such key." } },
  handler = function(self, ps, ctx)
    local r = registry_of(self, ctx.user, ps.scope)
    if r[ps.key] == nil then return nil, "NO_SUCH_KEY" end
    return json.decode(r[ps.key])
  end,
}

endpoints["i/registry/set"] = {
  credential = true,
  params = object({ { "key", { type = "string", minLength = 1 } }, { "scope", SCOPE },
                    { "domain", { type = { "string", "null" } } } }, { "key", "value", "scope" }),
  handler = function(self, ps, ctx)
    registry_of(self, ctx.user, ps.scope)[ps.key] = json.encode(ps.value)
    self:_main(ctx.user, "registryUpdated", { scope = ps.scope, key = ps.key, value = ps.value })
    return nil
  end,
}

---------------------------------------------------------------------------
-- acting as a user, and running the loop until idle

local Actor = { __name = "misskey.testing.Actor" }
Actor.__index = Actor
testing.Actor = Actor

--- fake:as(username) -> actor: acts as that user through the API (recorded in
-- fake.requests): actor:post(text, params), actor:reply(note, text, params),
-- actor:follow(username), actor:unfollow(username), actor:react(note_id, reaction),
-- actor:request(endpoint, params); actor.client, actor.user.
-- Each returns what the API returns (post: the created note), or nil, msg, err.
function Fake:as(username)
  local u = type(username) == "string" and self._by_name[username:gsub("^@", ""):lower()]
  if not u then error(("bad argument #1 to 'as' (no user @%s on the fake)"):format(tostring(username)), 2) end
  return setmetatable({ fake = self, user = self:user(u.username), client = self:client{ user = u.username } }, Actor)
end

function Actor:request(endpoint, params)
  return self.client:request(endpoint, params)
end

function Actor:post(text, params)
  local ps = {}
  for k, v in pairs(params or {}) do ps[k] = v end
  ps.text = text
  local res, msg, err = self.client:request("notes/create", ps)
  if not res then return nil, msg, err end
  return res.createdNote
end

function Actor:reply(note, text, params)
  local ps = {}
  for k, v in pairs(params or {}) do ps[k] = v end
  ps.replyId = type(note) == "table" and note.id or note
  return self:post(text, ps)
end

local function user_id(self, username)
  local u = self.fake:user(username)
  if not u then error(("no user @%s on the fake"):format(tostring(username)), 3) end
  return u.id
end

function Actor:follow(username)
  return self.client:request("following/create", { userId = user_id(self, username) })
end

function Actor:unfollow(username)
  return self.client:request("following/delete", { userId = user_id(self, username) })
end

function Actor:react(note_id, reaction)
  if type(note_id) == "table" then note_id = note_id.id end
  return self.client:request("notes/reactions/create", { noteId = note_id, reaction = reaction or "👍" })
end

--- fake:run_until_idle([max_rounds]) -> rounds: runs scheduler rounds (from
-- outside any task) until no task is ready and no fake socket has a message
-- waiting; at most max_rounds (default 10000) rounds. Timers in the future
-- (sleeps, every) do not count as work: the fake has no clock of its own there.
function Fake:run_until_idle(max_rounds)
  loop = loop or require "misskey.loop"
  if loop.current() then error("fake:run_until_idle: call it from outside a task (in the test itself)", 2) end
  max_rounds = max_rounds or 10000
  local rounds = 0
  while rounds < max_rounds do
    local busy = loop.timeout() == 0
    if not busy then
      for _, ws in ipairs(self._sockets) do
        if #ws._queue > 0 then busy = true break end
      end
    end
    if not busy and rounds > 0 then break end
    loop.step(0)
    rounds = rounds + 1
  end
  return rounds
end

--- fake:notes(filter) -> the notes on the server, oldest first, as `viewer`
-- (a username; default the author) sees them; filter = { user =, replyId =, text = } (all optional).
function Fake:notes(filter)
  filter = filter or {}
  local out = {}
  for _, id in ipairs(self._order) do
    local n = self._notes[id]
    local author = self._by_id[n.userId]
    if (filter.user == nil or author.username:lower() == filter.user:gsub("^@", ""):lower())
       and (filter.replyId == nil or n.replyId == filter.replyId)
       and (filter.text == nil or (n.text and n.text:find(filter.text, 1, true))) then
      local viewer = filter.viewer and self._by_name[filter.viewer:lower()] or author
      out[#out + 1] = self:_pack_note(n, viewer, true)
    end
  end
  return out
end

--- For examples and demos: a client of the real server when MISSKEY_HOST and
-- MISSKEY_TOKEN are both set, else of a new fake with a little history.
-- Returns client, fake (nil for a real server), and a line saying which it is.
function testing.demo_client(opts)
  local getenv = require("misskey.client")._getenv
  local host, token = getenv("MISSKEY_HOST"), getenv("MISSKEY_TOKEN")
  if host and host ~= "" and token and token ~= "" then
    local o = { host = host, token = token }
    for k, v in pairs(opts or {}) do o[k] = v end
    local client = require("misskey").new(o)
    return client, nil, ("using the Misskey server at %s (MISSKEY_HOST, MISSKEY_TOKEN)"):format(client.base_url)
  end
  local fake = testing.fake()
  fake:post("alice", { text = "Good morning, fediverse!" })
  fake:post("alice", { text = "Anyone else testing Lua clients today?" })
  return fake:client(opts), fake,
    ("using the fake Misskey server at %s (set MISSKEY_HOST and MISSKEY_TOKEN for a real one)"):format(fake.base_url)
end

return testing
