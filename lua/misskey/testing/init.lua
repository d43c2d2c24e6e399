--- misskey.testing: an in-process fake Misskey server, for tests and demos.
--
-- The fake is a *transport* (docs/architecture.md, "The fake server"): the
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
--   fake.endpoints, testing.endpoints  the endpoint handlers (their format: misskey.testing.endpoints)
--   fake.transport.websocket(req)    an in-process WebSocket speaking the streaming protocol; the
--                                    fake's actions publish events (misskey.testing.socket, .events)
--   fake:as(name)                    act as a user through the API: :post, :reply, :follow, :unfollow,
--                                    :react, :request
--   fake:run_until_idle()            run the scheduler until no task is ready (from the test)
--   fake:notes(filter), fake:files(filter), fake:sockets(), fake:drop_streams(),
--   fake:publish(channel, event, body)   a raw channel event to every socket's channels of that name
--   fake:route(url, fn)              webhook deliveries to url go to fn(method, headers, body) -> status
--                                    (a webhook handler, bot:webhook_handler()); i/webhooks/* endpoints
--   fake.deliveries                  every webhook delivery, oldest first: { url, hookId, eventId, type,
--                                    headers, body, status, error, tries }; fake:redeliver(d) again
--   testing.validate(schema, value)  nil, or ajv's schemaPath and reason (misskey.validate's check
--                                    of decoded JSON; the handlers' `params` format)
--
-- The package, one concern a file: fake (the class and its state), common,
-- audience, pack (the JSON shapes), params, replies, http (the request
-- pipeline), events and socket (streaming), actor, endpoints/<area>.

local baseurl = require "misskey.baseurl"
local common = require "misskey.testing.common"
local params = require "misskey.testing.params"
local replies = require "misskey.testing.replies"
local Fake = require "misskey.testing.fake"
local endpoints = require "misskey.testing.endpoints"
require "misskey.testing.pack"
require "misskey.testing.http"
require "misskey.testing.events"

local type, pairs, ipairs, tostring, error, setmetatable = type, pairs, ipairs, tostring, error, setmetatable

--- The test kit (require "misskey.testing").
---@class misskey.testing
---@field Fake misskey.testing.Fake the class of fakes
---@field Actor misskey.testing.Actor the class of fake:as(name)
---@field WebSocket misskey.testing.WebSocket the class of the fake's WebSockets
---@field endpoints table<string, table> the endpoint handlers (their format: misskey.testing.endpoints)
---@field COMMON_ERRORS table<string, table> the errors every endpoint may answer
local testing = {
  Fake = Fake,
  Actor = require "misskey.testing.actor",
  WebSocket = require "misskey.testing.socket",
  endpoints = endpoints,
  COMMON_ERRORS = replies.COMMON_ERRORS,
}

--- testing.validate(schema, value) -> nil, or ajv's schemaPath and reason: misskey.validate's
-- check of decoded JSON (the handlers' `params` format).
testing.validate = params.check

--- Options of testing.fake.
---@class misskey.testing.FakeOptions
---@field host? string the fake's host or base URL (default "fake.misskey.test")
---@field token? string @me's token (default "fake-token-me")
---@field users? table[] more users, or changes to @me/@alice: { username, name, token, description, isBot, isCat, following }
---@field notes? table[] notes to create at the start: { user = "alice", text = "hi", ... }
---@field name? string the server's name in `meta` (default "Fake Misskey")
---@field version? string the Misskey version in `meta` and nodeinfo (default "2026.5.4")
---@field now? integer the fake clock's start, unix ms (default 2026-05-21T00:00:00Z)

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
---@param opts? misskey.testing.FakeOptions
---@return misskey.testing.Fake
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
  if opts.now ~= nil and (type(opts.now) ~= "number" or opts.now % 1 ~= 0 or opts.now < common.TIME2000) then
    error("bad option 'now' (unix milliseconds after 2000-01-01 expected)", 2)
  end
  for _, k in ipairs({ "name", "version" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then error(("bad option '%s' (string expected)"):format(k), 2) end
  end
  local self = setmetatable({
    base_url = base,
    host = base:match("://(.*)$"),
    requests = {},
    deliveries = {},
    _routes = {},
    endpoints = setmetatable({}, { __index = testing.endpoints }),
    _opts = common.copy(opts),
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
-- the `notes` option's), clock, no webhooks; fake.requests and
-- fake.deliveries are emptied (the same tables). Handlers added to
-- fake.endpoints and routes (fake:route) stay.
---@return misskey.testing.Fake
function Fake:reset()
  for i = #self.requests, 1, -1 do self.requests[i] = nil end
  self:_init()
  return self
end

--- A client of this fake: misskey.new with host = fake.base_url, the token of
-- `@me` (or of `opts.user`, a username) and transport = fake.transport. Other
-- options go to misskey.new (`token = false` makes it anonymous).
---@param opts? misskey.ClientOptions|{ user?: string }
---@return misskey.Client
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

--- For examples and demos: a client of the real server when MISSKEY_HOST and
-- MISSKEY_TOKEN are both set, else of a new fake with a little history.
-- Returns client, fake (nil for a real server), and a line saying which it is.
---@param opts? misskey.ClientOptions
---@return misskey.Client client
---@return misskey.testing.Fake|nil fake
---@return string what
function testing.demo_client(opts)
  local env = require "misskey.env"
  local host, token = env.get("MISSKEY_HOST"), env.get("MISSKEY_TOKEN")
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
