--- misskey.testing.endpoints.webhooks: a user's webhooks (i/webhooks/create,
-- list, show, update, delete, test) and their deliveries, made as Misskey
-- makes them: one POST per event with the secret in X-Misskey-Hook-Secret and
-- the body { server, hookId, userId, eventId, createdAt, type, body }. There
-- are no sockets: fake:route(url, fn) says which function receives what is
-- delivered to `url`, as a Lua HTTP host would call a webhook handler
-- (fn(method, headers, body) -> status, e.g. bot:webhook_handler() or
-- webhook.handler{…}). Each delivery runs in a task of its own (Misskey's
-- job queue), so it arrives after the request that caused it returned; it is
-- tried once and recorded in fake.deliveries (fake:redeliver(d) sends one
-- again, as a retry would).
--
-- The events are the stream's: what the fake publishes on a user's main
-- channel (mention, reply, renote, follow, followed, unfollow) and, for
-- `note`, the notes the user posts (misskey.testing.events).
local json = require "misskey.json"
local loop = require "misskey.loop"
local common = require "misskey.testing.common"
local params = require "misskey.testing.params"
local Fake = require "misskey.testing.fake"

local array, null = json.array, json.null
local type, ipairs, pairs, pcall, error, tostring = type, ipairs, pairs, pcall, error, tostring
local ID, BOOLEAN, object = params.ID, params.BOOLEAN, params.object

local endpoints = {}

-- Misskey's webhookEventTypes, and where each keeps its payload in `body`.
local EVENT_TYPES = { "mention", "unfollow", "follow", "followed", "note", "reply", "renote", "reaction" }
local PAYLOAD = { mention = "note", reply = "note", renote = "note", note = "note",
                  follow = "user", unfollow = "user", followed = "user" }
--- Webhooks a user may have (Misskey's default role policy, webhookLimit).
local LIMIT = 3

local ON = { type = "array", items = { type = "string", enum = EVENT_TYPES } }
local NO_SUCH_WEBHOOK = "NO_SUCH_WEBHOOK"

-- The webhook as i/webhooks/list and show answer it (the secret included, as Misskey does).
local function pack(hook)
  return { id = hook.id, userId = hook.userId, name = hook.name, on = array(common.copy(hook.on)),
    url = hook.url, secret = hook.secret, active = hook.active,
    latestSentAt = hook.latestSentAt and common.iso(hook.latestSentAt) or null,
    latestStatus = hook.latestStatus or null }
end

local function owned(self, ctx, id)
  local hook = self._webhook_by_id[id]
  if hook and hook.userId == ctx.user.id then return hook end
  return nil
end

--- fake:route(url, fn): deliveries to `url` go to fn(method, headers, body),
-- which answers a status (and headers and body, as webhook.handler's
-- function does); nil stops routing it. A delivery to a URL with no route
-- fails as a connection would (status nil in fake.deliveries).
---@param url string
---@param fn fun(method: string, headers: table, body: string): integer?
function Fake:route(url, fn)
  if type(url) ~= "string" then error("bad argument #1 to 'route' (url string expected)", 2) end
  if fn ~= nil and type(fn) ~= "function" then error("bad argument #2 to 'route' (function expected)", 2) end
  self._routes[url] = fn
end

-- Misskey's eventId is a random UUID; the fake has no randomness, so a counter.
function Fake:_event_id()
  self._delivery_count = self._delivery_count + 1
  return ("00000000-0000-4000-8000-%012d"):format(self._delivery_count)
end

-- Sends one delivery (a record of fake.deliveries) to its URL's route, in a
-- task of its own, and records the answer.
function Fake:_send_delivery(d, hook)
  loop.spawn(function()
    local route = self._routes[d.url]
    local status
    if not route then
      d.error = "no route to " .. d.url .. " (fake:route)"
    else
      local ok, s = pcall(route, "POST", common.copy(d.headers), d.body)
      if not ok then
        d.error = tostring(s)
        status = 500
      elseif type(s) == "number" then
        status = s
      else
        d.error = "the route answered no status"
      end
    end
    d.status = status
    d.tries = d.tries + 1
    if hook then
      hook.latestSentAt = self._clock
      hook.latestStatus = status
    end
  end)
end

-- A delivery of `type` with `body` for `hook` (to `url` and with `secret`
-- when given: i/webhooks/test's override).
function Fake:_deliver(hook, event_type, body, url, secret)
  local event = { server = self.base_url, hookId = hook.id, userId = hook.userId, eventId = self:_event_id(),
    createdAt = self._clock, type = event_type, body = body }
  local d = {
    url = url or hook.url, hookId = hook.id, eventId = event.eventId, type = event_type, tries = 0,
    headers = {
      ["Content-Type"] = "application/json", ["User-Agent"] = "Misskey-Hooks", ["X-Misskey-Host"] = self.host,
      ["X-Misskey-Hook-Id"] = hook.id, ["X-Misskey-Hook-Secret"] = secret or hook.secret,
    },
    body = json.encode(event),
  }
  self.deliveries[#self.deliveries + 1] = d
  self:_send_delivery(d, hook)
  return d
end

--- fake:redeliver(delivery): sends a recorded delivery again, the same event
-- (eventId) with the same headers, as Misskey retries a failed one.
---@param d table a record of fake.deliveries
function Fake:redeliver(d)
  if type(d) ~= "table" or type(d.body) ~= "string" then
    error("bad argument #1 to 'redeliver' (a record of fake.deliveries expected)", 2)
  end
  self:_send_delivery(d, self._webhook_by_id[d.hookId])
end

-- An event of `user`'s (`payload`: the stream's body for it) to each of the
-- user's active webhooks that subscribe to `event_type`.
function Fake:_hook(user, event_type, payload)
  local key = PAYLOAD[event_type]
  if not key or not user then return end
  for _, hook in ipairs(self._webhooks) do
    if hook.userId == user.id and hook.active then
      for _, on in ipairs(hook.on) do
        if on == event_type then
          self:_deliver(hook, event_type, { [key] = payload })
          break
        end
      end
    end
  end
end

endpoints["i/webhooks/create"] = {
  credential = true,
  params = object({
    { "name", { type = "string", minLength = 1, maxLength = 100 } },
    { "url", { type = "string", minLength = 1, maxLength = 1024 } },
    { "secret", { type = "string", maxLength = 1024 } },
    { "on", ON },
  }, { "name", "url", "on" }),
  errors = { TOO_MANY_WEBHOOKS = { id = "87a9bb19-111e-4e37-81d3-a3e7426453b0",
                                   message = "You cannot create webhook any more." } },
  handler = function(self, ps, ctx)
    local n = 0
    for _, hook in ipairs(self._webhooks) do
      if hook.userId == ctx.user.id then n = n + 1 end
    end
    if n >= LIMIT then return nil, "TOO_MANY_WEBHOOKS" end
    local hook = { id = self:_gen_id(), userId = ctx.user.id, name = ps.name, url = ps.url, secret = ps.secret or "",
      on = common.copy(ps.on), active = true }
    self._webhooks[#self._webhooks + 1] = hook
    self._webhook_by_id[hook.id] = hook
    return pack(hook)
  end,
}

endpoints["i/webhooks/list"] = {
  credential = true,
  params = object({}),
  handler = function(self, _, ctx)
    local out = array{}
    for _, hook in ipairs(self._webhooks) do
      if hook.userId == ctx.user.id then out[#out + 1] = pack(hook) end
    end
    return out
  end,
}

endpoints["i/webhooks/show"] = {
  credential = true,
  params = object({ { "webhookId", ID } }, { "webhookId" }),
  errors = { NO_SUCH_WEBHOOK = { id = "50f614d9-3047-4f7e-90d8-ad6b2d5fb098", message = "No such webhook." } },
  handler = function(self, ps, ctx)
    local hook = owned(self, ctx, ps.webhookId)
    if not hook then return nil, NO_SUCH_WEBHOOK end
    return pack(hook)
  end,
}

endpoints["i/webhooks/update"] = {
  credential = true,
  params = object({
    { "webhookId", ID },
    { "name", { type = "string", minLength = 1, maxLength = 100 } },
    { "url", { type = "string", minLength = 1, maxLength = 1024 } },
    { "secret", { type = { "string", "null" }, maxLength = 1024 } },
    { "on", ON },
    { "active", BOOLEAN },
  }, { "webhookId" }),
  errors = { NO_SUCH_WEBHOOK = { id = "fb0fea69-da18-45b1-828d-bd4fd1612518", message = "No such webhook." } },
  handler = function(self, ps, ctx)
    local hook = owned(self, ctx, ps.webhookId)
    if not hook then return nil, NO_SUCH_WEBHOOK end
    if ps.name ~= nil then hook.name = ps.name end
    if ps.url ~= nil then hook.url = ps.url end
    if ps.secret ~= nil then hook.secret = ps.secret == null and "" or ps.secret end
    if ps.on ~= nil then hook.on = common.copy(ps.on) end
    if ps.active ~= nil then hook.active = ps.active end
    return nil
  end,
}

endpoints["i/webhooks/delete"] = {
  credential = true,
  params = object({ { "webhookId", ID } }, { "webhookId" }),
  errors = { NO_SUCH_WEBHOOK = { id = "bae73e5a-5522-4965-ae19-3a8688e71d82", message = "No such webhook." } },
  handler = function(self, ps, ctx)
    local hook = owned(self, ctx, ps.webhookId)
    if not hook then return nil, NO_SUCH_WEBHOOK end
    self._webhook_by_id[hook.id] = nil
    for i = #self._webhooks, 1, -1 do
      if self._webhooks[i] == hook then table.remove(self._webhooks, i) end
    end
    return nil
  end,
}

-- i/webhooks/test's dummy data (WebhookTestService): users dummy1..3 and
-- notes whose ids say what they are.
local function dummy_user(n)
  return { id = "dummy-user-" .. n, name = "DummyUser" .. n, username = "dummy" .. n, host = null, avatarUrl = "",
    avatarBlurhash = null, avatarDecorations = array{}, isBot = false, isCat = true, emojis = {},
    onlineStatus = "active", badgeRoles = array{} }
end

local function dummy_note(id, text, user, fields)
  local note = { id = id, createdAt = "2026-05-21T00:00:00.000Z", text = text, cw = null, userId = user.id,
    user = user, replyId = null, renoteId = null, visibility = "public", localOnly = true, fileIds = array{},
    files = array{}, reactions = {}, reactionEmojis = {}, emojis = {}, renoteCount = 0, repliesCount = 0,
    reactionCount = 0, mentions = array{}, visibleUserIds = array{}, tags = array{}, poll = null, channelId = null,
    reply = null, renote = null, myReaction = null }
  for k, v in pairs(fields or {}) do note[k] = v end
  return note
end

local DUMMY_TEXT = "This is a dummy note for testing purposes."

local function dummy_body(event_type)
  local one, two, three = dummy_user(1), dummy_user(2), dummy_user(3)
  local note = dummy_note("dummy-note-1", DUMMY_TEXT, one)
  if event_type == "note" then return { note = note } end
  if event_type == "mention" then
    return { note = dummy_note("dummy-mention-1", "@dummy2 This is a mention to you.", one,
      { mentions = array{ two.id } }) }
  end
  if event_type == "reply" then
    return { note = dummy_note("dummy-reply-1", DUMMY_TEXT, one, { replyId = note.id, reply = note }) }
  end
  if event_type == "renote" then
    return { note = dummy_note("dummy-renote-1", null, two, { renoteId = note.id, renote = note }) }
  end
  if event_type == "follow" then return { user = one } end
  if event_type == "followed" then return { user = two } end
  if event_type == "unfollow" then return { user = three } end
  return {} -- reaction: Misskey has no dummy for it either
end

endpoints["i/webhooks/test"] = {
  credential = true,
  params = object({
    { "webhookId", ID },
    { "type", { type = "string", enum = EVENT_TYPES } },
    { "override", object({ { "url", { type = "string" } }, { "secret", { type = "string" } } }) },
  }, { "webhookId", "type" }),
  errors = { NO_SUCH_WEBHOOK = { id = "0c52149c-e913-18f8-5dc7-74870bfe0cf9", message = "No such webhook." } },
  handler = function(self, ps, ctx)
    local hook = owned(self, ctx, ps.webhookId)
    if not hook then return nil, NO_SUCH_WEBHOOK end
    local override = type(ps.override) == "table" and ps.override or {}
    self:_deliver(hook, ps.type, dummy_body(ps.type), override.url, override.secret)
    return nil
  end,
}

return endpoints
