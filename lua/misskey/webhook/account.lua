--- misskey.webhook.account: an account's webhooks on the server (i/webhooks/*),
-- with their secrets kept in the credential store. Used by bot:webhook and by
-- `misskey webhook create|delete|list|test`.
--
-- Registering is idempotent by name: the account's webhook of that name is
-- updated (only when something differs) or created. Its secret is the one
-- kept for that name, else a new one made from the C core's random source
-- (32 bytes, base64url), kept in the store *before* the server hears of it:
-- a secret the server holds and the receiver lost would make every delivery a
-- 401, which Misskey never retries. A refusal that echoes the secret comes
-- back with it redacted (errors.scrubbed), as a token is.
local argcheck = require "misskey.argcheck"
local baseurl = require "misskey.baseurl"
local core = require "misskey.core"
local credentials = require "misskey.credentials"
local errors = require "misskey.errors"
local json = require "misskey.json"

local account = {}

--- The events an account's webhook may subscribe to (Misskey's webhookEventTypes).
account.EVENTS = { "mention", "unfollow", "follow", "followed", "note", "reply", "renote", "reaction" }
local KNOWN = {}
for _, e in ipairs(account.EVENTS) do KNOWN[e] = true end

--- Bytes of randomness in a secret made here (base64url: 43 characters).
account.SECRET_BYTES = 32

--- account.check_url(url, allow_plaintext) -> nil | why the URL is refused: not
-- http(s), or plain http to a host that is not this machine (deliveries carry
-- the secret in clear) unless `allow_plaintext`.
---@param url any
---@param allow_plaintext? boolean
---@return string|nil
function account.check_url(url, allow_plaintext)
  if type(url) ~= "string" or not url:find("^[hH][tT][tT][pP][sS]?://[^/?#%s]+") or url:find("%s") then
    return "an http:// or https:// URL expected, got " .. tostring(url)
  end
  if #url > 1024 then return "at most 1024 characters (Misskey's limit)" end
  if url:lower():find("^http://") and not allow_plaintext then
    local origin = url:match("^(%a+://[^/?#]+)")
    if not baseurl.is_loopback(origin:lower()) then
      return "plain http to a host that is not this machine: every delivery carries the webhook's secret in"
        .. " clear, readable on the way; use https (or pass allow_plaintext_secret = true)"
    end
  end
  return nil
end

--- account.check_events(list, level) -> a copy (raises naming the option
-- `events` on anything else; `level`: see misskey.argcheck).
---@param list any
---@param level integer
---@return string[]
function account.check_events(list, level)
  if type(list) ~= "table" or #list == 0 then
    argcheck.opterror("events", "a non-empty list of event types expected", level + 1)
  end
  local out = {}
  for i = 1, #list do
    if not KNOWN[list[i]] then
      argcheck.opterror("events", ("unknown event type %s (%s)"):format(tostring(list[i]),
        table.concat(account.EVENTS, ", ")), level + 1)
    end
    out[i] = list[i]
  end
  return out
end

-- The account key ("@user@host") of the client's token, for the store. -> key | nil, msg, err
local function account_key(client)
  local me, msg, err = client:request("i")
  if not me then return nil, msg, err end
  if type(me) ~= "table" or type(me.username) ~= "string" then
    return errors.fail("decode", "i: no username in the reply", { endpoint = "i" })
  end
  return credentials.key(me.username, client.base_url)
end

--- account.list(client) -> the account's webhooks (i/webhooks/list) | nil, msg, err.
---@param client table
---@return table[]|nil
---@return string|nil message
---@return table|nil err
function account.list(client)
  local hooks, msg, err = client:request("i/webhooks/list")
  if not hooks then return nil, msg, err end
  if type(hooks) ~= "table" then
    return errors.fail("decode", "i/webhooks/list: not a list", { endpoint = "i/webhooks/list" })
  end
  return hooks
end

--- account.find(client, name_or_id) -> the webhook with that id, else the
-- first with that name | false (none) | nil, msg, err.
---@param client table
---@param which string
---@return table|false|nil
---@return string|nil message
---@return table|nil err
function account.find(client, which)
  local hooks, msg, err = account.list(client)
  if not hooks then return nil, msg, err end
  for _, h in ipairs(hooks) do
    if type(h) == "table" and h.id == which then return h end
  end
  for _, h in ipairs(hooks) do
    if type(h) == "table" and h.name == which then return h end
  end
  return false
end

local function same_set(a, b)
  if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then return false end
  local seen = {}
  for _, v in ipairs(a) do seen[v] = true end
  for _, v in ipairs(b) do
    if not seen[v] then return false end
  end
  return true
end

-- The secret to register: the caller's, else the kept one, else a new one,
-- kept first. -> secret, key (nil with the caller's) | nil, msg, err
local function secret_for(client, name, opts)
  if opts.secret then return opts.secret end
  local key, msg, err = account_key(client)
  if not key then return nil, msg, err end
  local kept
  kept, msg, err = credentials.webhook(key, name)
  if kept == nil and msg then return nil, msg, err end
  if kept then return kept.secret, key end
  local secret = core.base64url(core.random(account.SECRET_BYTES))
  local ok
  ok, msg, err = credentials.keep_webhook(key, name, { secret = secret, url = opts.url })
  if not ok then
    return nil, "webhook: the secret could not be kept, so nothing was registered: " .. tostring(msg), err
  end
  return secret, key
end

--- account.register(client, { name, url, events, secret?, allow_plaintext_secret? })
-- -> webhook, secret | nil, msg, err: makes the account's webhook `name`
-- deliver `events` to `url` with a secret (see above), creating it or
-- updating it (only when something differs, `active` included). `webhook` is
-- the server's record without its secret.
---@param client table
---@param opts { name: string, url: string, events: string[], secret?: string, allow_plaintext_secret?: boolean }
---@return table|nil webhook
---@return string|nil secret_or_message
---@return table|nil err
function account.register(client, opts)
  local secret, key_or_msg, err = secret_for(client, opts.name, opts)
  if not secret then return nil, key_or_msg, err end
  local key = key_or_msg
  local hooks, msg
  hooks, msg, err = account.list(client)
  if not hooks then return nil, msg, err end
  local found, hook
  for _, h in ipairs(hooks) do
    if type(h) == "table" and h.name == opts.name and type(h.id) == "string" then
      found = h
      break
    end
  end
  if found then
    if found.url ~= opts.url or found.secret ~= secret or found.active ~= true
       or not same_set(found.on, opts.events) then
      local ok
      ok, msg, err = errors.scrubbed(secret, client:request("i/webhooks/update", { webhookId = found.id,
        name = opts.name, url = opts.url, secret = secret, on = json.array(opts.events), active = true }))
      if not ok then return nil, msg, err end
    end
    hook = found
    hook.url, hook.on, hook.active = opts.url, json.array(opts.events), true
  else
    hook, msg, err = errors.scrubbed(secret, client:request("i/webhooks/create", { name = opts.name, url = opts.url,
      secret = secret, on = json.array(opts.events) }))
    if not hook then return nil, msg, err end
  end
  hook.secret = nil
  if key then
    -- The id and URL are conveniences (the name finds the webhook again): a
    -- failure to note them loses nothing.
    credentials.keep_webhook(key, opts.name, { secret = secret, id = hook.id, url = opts.url })
  end
  return hook, secret
end

--- account.remove(client, name_or_id) -> true (deleted) | false (no such
-- webhook) | nil, msg, err: deletes the account's webhook and forgets its
-- kept secret.
---@param client table
---@param which string
---@return boolean|nil
---@return string|nil message
---@return table|nil err
function account.remove(client, which)
  local found, msg, err = account.find(client, which)
  if found == nil then return nil, msg, err end
  local key
  key, msg, err = account_key(client)
  if not key then return nil, msg, err end
  if found then
    local ok
    ok, msg, err = client:request("i/webhooks/delete", { webhookId = found.id })
    if not ok then return nil, msg, err end
  end
  local forgotten
  forgotten, msg, err = credentials.forget_webhook(key, found and found.name or which)
  if forgotten == nil then return nil, msg, err end
  return found and true or false
end

--- account.secret(client, name) -> the kept secret of the account's webhook
-- `name` | nil (none kept) | nil, msg, err.
---@param client table
---@param name string
---@return string|nil
---@return string|nil message
---@return table|nil err
function account.secret(client, name)
  local key, msg, err = account_key(client)
  if not key then return nil, msg, err end
  local kept
  kept, msg, err = credentials.webhook(key, name)
  if not kept then return nil, msg, err end
  return kept.secret
end

return account
