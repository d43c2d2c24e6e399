--- The credential store: several accounts, keyed "@user@host", and a default.
--
-- The file is `$XDG_CONFIG_HOME/misskey/credentials.json` (else
-- `$HOME/.config/misskey/credentials.json`), mode 0600, always replaced whole
-- and atomically by the C core (`core.write_private`) while holding
-- `credentials.json.lock` (flock), so concurrent writers never lose accounts.
-- The directory (made 0700 when missing) and the file must be the current
-- user's and not symbolic links; a file that group or others can read, or a
-- directory they can write, is refused with the `chmod` that fixes it.
--
--   {
--     "default": "@alice@misskey.example",
--     "accounts": {
--       "@alice@misskey.example": { "host": "https://misskey.example", "token": "...",
--                                   "username": "alice", "userId": "9xyz" }
--     },
--     "webhooks": {
--       "@alice@misskey.example": { "bot": { "secret": "...", "id": "9abc", "url": "https://..." } }
--     }
--   }
--
-- `webhooks` keeps the secrets of the webhooks registered for an account
-- (bot:webhook, `misskey webhook create`), by account key and webhook name,
-- beside the account's token: Misskey sends the secret with every delivery,
-- so a receiver needs it again after a restart. It is keyed by the account
-- whatever gave its token (the store, MISSKEY_TOKEN, an explicit one), and a
-- logout leaves it (the webhook stays registered on the server until
-- deleted, `misskey webhook delete`, which forgets the secret too).
--
-- Failures return `nil, message, err` with `err.kind = "invalid"`, `err.path`
-- and `err.reason` ("missing", "symlink", "owner", "mode", "type", "size",
-- "format", "timeout", "io", "unknown", "path"); messages never contain a token.
local argcheck = require "misskey.argcheck"
local core = require "misskey.core"
local env = require "misskey.env"
local errors = require "misskey.errors"
local json = require "misskey.json"
local loop = require "misskey.loop"

--- The credential store (require "misskey.credentials").
---@class misskey.credentials
local credentials = {}

--- The store's contents: accounts by key ("@user@host"), and the default's key.
---@class misskey.credentials.Store
---@field accounts table<string, misskey.credentials.Account>
---@field default? string
--- One stored account (credentials.get adds its `key`).
---@class misskey.credentials.Account
---@field host string the base URL
---@field token string
---@field username string
---@field userId? string
---@field allow_plaintext_token? boolean this account may use plain http (see misskey.new)
---@field key? string "@user@host"
--- What credentials.add stores.
---@class misskey.credentials.NewAccount
---@field host string the base URL (or a bare host)
---@field token string
---@field user? { id?: string, username: string } the token's user (`i`)
---@field username? string when there is no `user`
---@field default? boolean make it the default account
---@field allow_plaintext_token? boolean

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

--- The store's path, or `nil, message` when neither XDG_CONFIG_HOME nor HOME is set.
---@return string|nil path
---@return string|nil message
function credentials.path()
  local dir, why = env.dir("config")
  if not dir then return nil, "no credential store: " .. why end
  return dir .. "/misskey/credentials.json"
end

local function fail(path, message, reason)
  return errors.fail("invalid", message, { path = path, reason = reason })
end

--- The account key of `username` on the server at `base_url` (or a bare host).
---@param username string
---@param host string
---@return string key "@user@host"
function credentials.key(username, host)
  host = tostring(host):gsub("^%a[%w+.-]*://", ""):gsub("/$", "")
  return "@" .. tostring(username) .. "@" .. host
end

--- "alice@host" and "@alice@host" name the same account.
---@param name any
---@return string|nil key
function credentials.normalize(name)
  if type(name) ~= "string" then return nil end
  if name:sub(1, 1) ~= "@" then name = "@" .. name end
  return name
end

-- The lock file beside the store: add, remove and save take turns through it.
local function lock_path(path) return path .. ".lock" end

-- The most seconds add, remove and save wait for another process's lock.
local LOCK_WAIT = 10

-- Takes the store's lock. flock gives no readiness to wait on, so a held lock
-- is tried again after short sleeps (1 ms, doubling to 50 ms) through the
-- scheduler: a task yields meanwhile, a plain script blocks. -> lock | nil, msg, reason
local function take_lock(path)
  local deadline, pause = core.now() + LOCK_WAIT, 0.001
  while true do
    local lock, msg, reason = core.lock_private(path, 0)
    local left = deadline - core.now()
    if lock or reason ~= "timeout" or left <= 0 then return lock, msg, reason end
    loop.sleep(math.min(pause, left))
    pause = math.min(pause * 2, 0.05)
  end
end

-- Runs fn() holding the store's lock; the lock is released whatever fn does.
local function locked(path, fn)
  local lock, msg, reason = take_lock(lock_path(path))
  if not lock then return fail(path, "credential store: " .. msg, reason) end
  local res = { pcall(fn) }
  lock:unlock()
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, 4)
end

-- A short, printable name for a key of the file (never a whole long string).
local function describe(k)
  local s = tostring(k)
  if #s > 40 then s = s:sub(1, 40) .. "..." end
  return ("%q"):format(s)
end

--- load([path]) -> store | nil, message, err
-- A missing file is an empty store `{ accounts = {}, webhooks = {} }`. A file that is not a
-- store (bad JSON, an entry that is not an account) fails with reason "format".
---@param path? string the store (default: credentials.path())
---@return misskey.credentials.Store|nil store
---@return string|nil message
---@return misskey.Error|nil err
function credentials.load(path)
  local why
  if path == nil then
    path, why = credentials.path()
    if not path then return { accounts = {}, webhooks = {} }, why end
  end
  local text, msg, reason = core.read_private(path)
  if not text then
    if reason == "missing" then return { accounts = {}, webhooks = {} } end
    return fail(path, "credential store: " .. msg, reason)
  end
  local store = json.decode(text)
  if type(store) ~= "table" or (store.accounts ~= nil and type(store.accounts) ~= "table") then
    return fail(path, "credential store: " .. path .. " is not a credentials file (invalid JSON); "
      .. "fix it or move it away", "format")
  end
  store.accounts = store.accounts or {}
  for k, v in pairs(store.accounts) do
    if type(k) ~= "string" or type(v) ~= "table" or type(v.host) ~= "string" or type(v.token) ~= "string" then
      return fail(path, ("credential store: %s: the entry %s of \"accounts\" is not an account (an object "
        .. "with host and token strings); fix it or remove it"):format(path, describe(k)), "format")
    end
  end
  if type(store.default) ~= "string" or store.accounts[store.default] == nil then store.default = nil end
  if store.webhooks ~= nil and type(store.webhooks) ~= "table" then
    return fail(path, ("credential store: %s: \"webhooks\" is not an object; fix it or remove it"):format(path),
      "format")
  end
  store.webhooks = store.webhooks or {}
  for account, hooks in pairs(store.webhooks) do
    local bad = type(account) ~= "string" or type(hooks) ~= "table"
    for name, hook in pairs(type(hooks) == "table" and hooks or {}) do
      if type(name) ~= "string" or type(hook) ~= "table" or type(hook.secret) ~= "string" then bad = true end
    end
    if bad then
      return fail(path, ("credential store: %s: the entry %s of \"webhooks\" is not a set of webhook secrets (an"
        .. " object of objects with a secret string); fix it or remove it"):format(path, describe(account)), "format")
    end
  end
  return store
end

-- Writes the store; the caller holds the lock, so leftover temporary files are stale.
local function write(store, path)
  local out = { accounts = store.accounts or {}, default = store.default,
    webhooks = next(store.webhooks or {}) ~= nil and store.webhooks or nil }
  local ok, msg, reason = core.write_private(path, json.pretty(out) .. "\n",
    { sweep = true, fail_before_rename = store._fail_before_rename or nil })
  if not ok then return fail(path, "credential store: " .. msg, reason or "io") end
  return true
end

local function store_path(path)
  if path ~= nil then return path end
  local why
  path, why = credentials.path()
  if not path then return fail(nil, why, "path") end
  return path
end

--- save(store [, path]) -> true | nil, message, err
---@param store misskey.credentials.Store
---@param path? string the store (default: credentials.path())
---@return true|nil ok
---@return string|nil message
---@return misskey.Error|nil err
function credentials.save(store, path)
  local p, msg, err = store_path(path)
  if not p then return nil, msg, err end
  return locked(p, function() return write(store, p) end)
end

--- check([path]) -> true | nil, message, err
-- Can the store be read and written now? Run before a login: MiAuth hands a
-- token out exactly once, so a store that cannot take it must fail first.
---@param path? string the store (default: credentials.path())
---@return true|nil ok
---@return string? message
---@return misskey.Error? err
function credentials.check(path)
  local p, msg, err = store_path(path)
  if not p then return nil, msg, err end
  local store
  store, msg, err = credentials.load(p)
  if not store then return nil, msg, err end
  local ok, reason
  ok, msg, reason = core.write_private(p, "", { probe = true })
  if not ok then return fail(p, "credential store: " .. msg, reason or "io") end
  return true
end

--- add{ host = base_url, token = ..., user = { id, username } | username = ... [, default = bool]
--      [, allow_plaintext_token = true] } -> key | nil, message, err
-- The first account becomes the default; `default = true` makes it so.
-- `allow_plaintext_token` records that this account may use plain http (see misskey.new).
---@param entry misskey.credentials.NewAccount
---@return string|nil key
---@return string|nil message
---@return misskey.Error|nil err
function credentials.add(entry)
  local user = entry.user or {}
  local username = entry.username or user.username
  if type(username) ~= "string" or type(entry.token) ~= "string" or type(entry.host) ~= "string" then
    argcheck.argerror(1, "add", "host, token and username strings expected")
  end
  local path, msg, err = store_path()
  if not path then return nil, msg, err end
  return locked(path, function()
    local store, lmsg, lerr = credentials.load(path)
    if not store then return nil, lmsg, lerr end
    local key = credentials.key(username, entry.host)
    store.accounts[key] = { host = entry.host, token = entry.token, username = username, userId = user.id,
      allow_plaintext_token = entry.allow_plaintext_token or nil }
    if entry.default or store.default == nil then store.default = key end
    local ok, smsg, serr = write(store, path)
    if not ok then return nil, smsg, serr end
    return key
  end)
end

--- rescue(token) -> path | nil, message
-- When the store cannot take a fresh token, keeps it in a new 0600 file (the
-- store's directory, else $HOME, else the current directory) so that it is
-- not lost. The file holds the token and a newline.
---@param token string
---@return string|nil path
---@return string? message
function credentials.rescue(token)
  if type(token) ~= "string" then argcheck.argerror(1, "rescue", "token string expected") end
  local dirs = {}
  local store = credentials.path()
  if store then dirs[#dirs + 1] = store:match("^(.*)/[^/]*$") end
  local home = env.get("HOME")
  if home then dirs[#dirs + 1] = home end
  dirs[#dirs + 1] = "."
  local name = "misskey-token-" .. core.base64url(core.random(6)) .. ".txt"
  local why
  for _, dir in ipairs(dirs) do
    local path = (dir == "." and "" or dir .. "/") .. name
    local ok, msg = core.write_private(path, token .. "\n", { exclusive = true })
    if ok then return path end
    why = why or msg
  end
  return nil, "cannot keep the token in a file: " .. tostring(why)
end

--- get([name]) -> entry (with entry.key) | nil, message, err. No name: the default account.
---@param name? string "@user@host" or "user@host"
---@return misskey.credentials.Account|nil entry
---@return string|nil message
---@return misskey.Error|nil err
function credentials.get(name)
  local store, msg, err = credentials.load()
  if not store then return nil, msg, err end
  local key = name and credentials.normalize(name) or store.default
  local entry = key and store.accounts[key]
  if type(entry) ~= "table" or type(entry.token) ~= "string" or type(entry.host) ~= "string" then
    if name then
      return fail(nil, ("no account %s in the credential store (see `misskey accounts`)"):format(key), "unknown")
    end
    return fail(nil, "no default account in the credential store (log in with `misskey login`)", "unknown")
  end
  local out = {}
  for k, v in pairs(entry) do out[k] = v end
  out.key = key
  return out
end

--- remove([name]) -> key | nil, message, err. No name: the default account.
-- The next remaining account (in sorted order) becomes the default.
---@param name? string "@user@host" or "user@host"
---@return string|nil key
---@return string|nil message
---@return misskey.Error|nil err
function credentials.remove(name)
  local path, msg, err = store_path()
  if not path then return nil, msg, err end
  local function removal(store)
    local key = name and credentials.normalize(name) or store.default
    if not key or not store.accounts[key] then
      return fail(nil, key and ("no account %s in the credential store"):format(key)
        or "no default account in the credential store", "unknown")
    end
    return key
  end
  -- Looked up first without the lock: a store with nothing to remove is left as it is
  -- (no lock file, no directory made).
  local store
  store, msg, err = credentials.load(path)
  if not store then return nil, msg, err end
  local found, fmsg, ferr = removal(store)
  if not found then return nil, fmsg, ferr end
  return locked(path, function()
    store, msg, err = credentials.load(path)
    if not store then return nil, msg, err end
    local key, rmsg, rerr = removal(store)
    if not key then return nil, rmsg, rerr end
    store.accounts[key] = nil
    if store.default == key then store.default = credentials.list(store)[1] end
    local ok, smsg, serr = write(store, path)
    if not ok then return nil, smsg, serr end
    return key
  end)
end

-- ------------------------------------------------------------------------
-- webhook secrets

local function check_webhook_key(fname, account, name)
  if type(account) ~= "string" or account == "" then argcheck.argerror(1, fname, "account key expected", 2) end
  if type(name) ~= "string" or name == "" then argcheck.argerror(2, fname, "webhook name expected", 2) end
end

--- webhook(account, name) -> { secret, id, url } | nil (none kept) | nil, message, err:
-- what is kept of the webhook `name` of `account` (a key, "@user@host").
---@param account string
---@param name string
---@return table|nil record
---@return string|nil message
---@return table|nil err
function credentials.webhook(account, name)
  check_webhook_key("webhook", account, name)
  local store, msg, err = credentials.load()
  if not store then return nil, msg, err end
  local hook = (store.webhooks[account] or {})[name]
  if not hook then return nil end
  return { secret = hook.secret, id = hook.id, url = hook.url }
end

--- keep_webhook(account, name, { secret, id, url }) -> true | nil, message, err:
-- keeps (or replaces) the webhook `name` of `account`, under the store's lock.
---@param account string
---@param name string
---@param record { secret: string, id?: string, url?: string }
---@return true|nil ok
---@return string|nil message
---@return table|nil err
function credentials.keep_webhook(account, name, record)
  check_webhook_key("keep_webhook", account, name)
  if type(record) ~= "table" or type(record.secret) ~= "string" or record.secret == "" then
    argcheck.argerror(3, "keep_webhook", "{ secret = string, id?, url? } expected")
  end
  local path, msg, err = store_path()
  if not path then return nil, msg, err end
  return locked(path, function()
    local store, lmsg, lerr = credentials.load(path)
    if not store then return nil, lmsg, lerr end
    local hooks = store.webhooks[account] or {}
    store.webhooks[account] = hooks
    hooks[name] = { secret = record.secret, id = record.id, url = record.url }
    return write(store, path)
  end)
end

--- forget_webhook(account, name) -> true (forgotten) | false (none was kept) | nil, message, err
---@param account string
---@param name string
---@return boolean|nil ok
---@return string|nil message
---@return table|nil err
function credentials.forget_webhook(account, name)
  check_webhook_key("forget_webhook", account, name)
  local path, msg, err = store_path()
  if not path then return nil, msg, err end
  local store
  store, msg, err = credentials.load(path)
  if not store then return nil, msg, err end
  if not (store.webhooks[account] or {})[name] then return false end -- nothing to write
  return locked(path, function()
    local current, lmsg, lerr = credentials.load(path)
    if not current then return nil, lmsg, lerr end
    local hooks = current.webhooks[account]
    if not (hooks or {})[name] then return false end
    hooks[name] = nil
    if next(hooks) == nil then current.webhooks[account] = nil end
    local ok, wmsg, werr = write(current, path)
    if not ok then return nil, wmsg, werr end
    return true
  end)
end

--- list(store) -> sorted account keys
---@param store misskey.credentials.Store
---@return string[]
function credentials.list(store)
  local keys = {}
  for k in pairs(store.accounts or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

return credentials
