--- The credential store: several accounts, keyed "@user@host", and a default.
--
-- The file is `$XDG_CONFIG_HOME/misskey/credentials.json` (else
-- `$HOME/.config/misskey/credentials.json`), mode 0600 in a 0700 directory,
-- always replaced whole and atomically by the C core (`core.write_private`).
-- A file that group or others can read is refused, with the `chmod` that fixes it.
--
--   {
--     "default": "@alice@misskey.example",
--     "accounts": {
--       "@alice@misskey.example": { "host": "https://misskey.example", "token": "...",
--                                   "username": "alice", "userId": "9xyz" }
--     }
--   }
--
-- Failures return `nil, message, err` with `err.kind = "invalid"` and
-- `err.path`; messages never contain a token.
local core = require "misskey.core"
local errors = require "misskey.errors"
local json = require "misskey.json"

local credentials = {}

-- The environment goes through the client's _getenv, so specs can replace it.
local function getenv(name)
  local v = require("misskey.client")._getenv(name)
  if v == "" then return nil end
  return v
end

--- The store's path, or `nil, message` when neither XDG_CONFIG_HOME nor HOME is set.
function credentials.path()
  local xdg = getenv("XDG_CONFIG_HOME")
  if xdg and xdg:sub(1, 1) == "/" then return xdg .. "/misskey/credentials.json" end
  local home = getenv("HOME")
  if home then return home .. "/.config/misskey/credentials.json" end
  return nil, "no credential store: neither XDG_CONFIG_HOME nor HOME is set"
end

local function fail(path, message, reason)
  return errors.fail("invalid", message, { path = path, reason = reason })
end

--- The account key of `username` on the server at `base_url` (or a bare host).
function credentials.key(username, host)
  host = tostring(host):gsub("^%a[%w+.-]*://", ""):gsub("/$", "")
  return "@" .. tostring(username) .. "@" .. host
end

--- "alice@host" and "@alice@host" name the same account.
function credentials.normalize(name)
  if type(name) ~= "string" then return nil end
  if name:sub(1, 1) ~= "@" then name = "@" .. name end
  return name
end

--- load([path]) -> store | nil, message, err
-- A missing file is an empty store `{ accounts = {} }`.
function credentials.load(path)
  local why
  if path == nil then
    path, why = credentials.path()
    if not path then return { accounts = {} }, why end
  end
  local text, msg, reason = core.read_private(path)
  if not text then
    if reason == "missing" then return { accounts = {} } end
    return fail(path, "credential store: " .. msg, reason)
  end
  local store = json.decode(text)
  if type(store) ~= "table" or (store.accounts ~= nil and type(store.accounts) ~= "table") then
    return fail(path, "credential store: " .. path .. " is not a credentials file (invalid JSON)", "json")
  end
  store.accounts = store.accounts or {}
  if type(store.default) ~= "string" or store.accounts[store.default] == nil then store.default = nil end
  return store
end

--- save(store [, path]) -> true | nil, message, err
function credentials.save(store, path)
  local why
  if path == nil then
    path, why = credentials.path()
    if not path then return fail(nil, why, "path") end
  end
  local out = { accounts = store.accounts or {}, default = store.default }
  local ok, msg = core.write_private(path, json.pretty(out) .. "\n", store._fail_before_rename and
    { fail_before_rename = true } or nil)
  if not ok then return fail(path, "credential store: " .. msg, "io") end
  return true
end

--- add{ host = base_url, token = ..., user = { id, username } | username = ... [, default = bool] }
-- -> key | nil, message, err. The first account becomes the default; `default = true` makes it so.
function credentials.add(entry)
  local user = entry.user or {}
  local username = entry.username or user.username
  if type(username) ~= "string" or type(entry.token) ~= "string" or type(entry.host) ~= "string" then
    error("bad argument #1 to 'add' (host, token and username strings expected)", 2)
  end
  local store, msg, err = credentials.load()
  if msg and not err then return fail(nil, msg, "path") end
  if not store then return nil, msg, err end
  local key = credentials.key(username, entry.host)
  store.accounts[key] = { host = entry.host, token = entry.token, username = username, userId = user.id }
  if entry.default or store.default == nil then store.default = key end
  local ok, smsg, serr = credentials.save(store)
  if not ok then return nil, smsg, serr end
  return key
end

--- get([name]) -> entry (with entry.key) | nil, message, err. No name: the default account.
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
function credentials.remove(name)
  local store, msg, err = credentials.load()
  if not store then return nil, msg, err end
  local key = name and credentials.normalize(name) or store.default
  if not key or not store.accounts[key] then
    return fail(nil, key and ("no account %s in the credential store"):format(key)
      or "no default account in the credential store", "unknown")
  end
  store.accounts[key] = nil
  if store.default == key then
    local keys = credentials.list(store)
    store.default = keys[1]
  end
  local ok, smsg, serr = credentials.save(store)
  if not ok then return nil, smsg, serr end
  return key
end

--- list(store) -> sorted account keys
function credentials.list(store)
  local keys = {}
  for k in pairs(store.accounts or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

return credentials
