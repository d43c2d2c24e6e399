--- Endpoint catalogue access, parameter validation and permissions.
--
-- The catalogue (misskey.endpoints, generated) is loaded on first use only,
-- so `require "misskey"` stays fast. Every function takes an optional
-- catalogue (a client's, after client:schema()); the default is the bundled one.
--
--   schema.catalogue()                 the bundled catalogue
--   schema.lookup(name [, cat])        the entry of an endpoint, or nil
--   schema.names([cat])                sorted endpoint names
--   schema.suggest(name [, cat])       up to 3 nearest names (edit distance)
--   schema.validate(entry, params)     nil, or message, param
--   schema.check_token(entry, token)   nil, or message (secure endpoints want a native token)
--   schema.permissions_for(names [, cat])  sorted unique permissions; raises on an unknown name
local json = require "misskey.json"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local sort, concat = table.sort, table.concat
local format = string.format

local schema = {}

local default

--- The bundled catalogue (loaded on first call).
function schema.catalogue()
  if not default then default = require "misskey.endpoints" end
  return default
end

local names_cache = setmetatable({}, { __mode = "k" })

--- Sorted endpoint names of a catalogue.
function schema.names(cat)
  cat = cat or schema.catalogue()
  local names = names_cache[cat]
  if not names then
    names = {}
    for name in pairs(cat.endpoints) do names[#names + 1] = name end
    sort(names)
    names_cache[cat] = names
  end
  return names
end

--- The entry of endpoint `name`, or nil.
function schema.lookup(name, cat)
  cat = cat or schema.catalogue()
  if type(name) ~= "string" then return nil end
  return cat.endpoints[name]
end

local prefix_cache = setmetatable({}, { __mode = "k" })

--- Is `prefix` a name or a leading part ("i/registry") of one?
function schema.is_prefix(prefix, cat)
  cat = cat or schema.catalogue()
  local set = prefix_cache[cat]
  if not set then
    set = {}
    for name in pairs(cat.endpoints) do
      local p = name
      while p do
        set[p] = true
        p = p:match("^(.*)/[^/]*$")
      end
    end
    prefix_cache[cat] = set
  end
  return set[prefix] == true
end

local function distance(a, b, cap)
  local la, lb = #a, #b
  if math.abs(la - lb) > cap then return cap + 1 end
  local prev, cur = {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur[0] = i
    local best = i
    local ca = a:byte(i)
    for j = 1, lb do
      local cost = ca == b:byte(j) and 0 or 1
      local v = prev[j - 1] + cost
      if prev[j] + 1 < v then v = prev[j] + 1 end
      if cur[j - 1] + 1 < v then v = cur[j - 1] + 1 end
      cur[j] = v
      if v < best then best = v end
    end
    if best > cap then return cap + 1 end
    prev, cur = cur, prev
  end
  return prev[lb]
end

--- Up to `n` (3) endpoint names nearest to `name`, best first.
function schema.suggest(name, cat, n)
  n = n or 3
  name = tostring(name)
  local cap = math.max(2, math.floor(#name / 3))
  local scored = {}
  for _, cand in ipairs(schema.names(cat)) do
    local d = distance(name, cand, cap)
    -- A name that ends like the query ("create" for "note/create") is a good hint too.
    if d > cap and #name >= 4 and (cand:sub(-#name) == name or name:sub(-#cand) == cand) then d = cap end
    if d <= cap then scored[#scored + 1] = { d = d, name = cand } end
  end
  sort(scored, function(x, y)
    if x.d ~= y.d then return x.d < y.d end
    return x.name < y.name
  end)
  local out = {}
  for i = 1, math.min(n, #scored) do out[i] = scored[i].name end
  return out
end

--- "unknown endpoint 'x' (did you mean 'a', 'b'?)"
function schema.unknown_message(name, cat)
  local s = schema.suggest(name, cat)
  local msg = format("unknown endpoint '%s'", tostring(name))
  if #s > 0 then msg = msg .. " (did you mean '" .. concat(s, "', '") .. "'?)" end
  return msg, s
end

-- ---- validation ----
-- misskey.validate does the checking; here the catalogue's flat parameter
-- entries become its JSON-Schema tables (once per entry, cached) and its
-- failures become this module's messages.

local validator = require "misskey.validate"
local null = json.null

-- The catalogue's null rule: null is valid where the entry says nullable (or
-- lists the type null), and wherever neither a type nor an enum says what is valid.
local function nullable(p)
  if p.nullable or p.type == "null" or (p.type == nil and p.enum == nil) then return true end
  if type(p.type) == "table" then
    for _, t in ipairs(p.type) do if t == "null" then return true end end
  end
  return false
end

local converted = setmetatable({}, { __mode = "k" })

-- One flat catalogue entry -> misskey.validate's schema. `pattern`s are
-- JavaScript regular expressions and `all_of` is not flattened for validation:
-- neither is checked (the server validates anyway).
local function convert(p)
  local s = converted[p]
  if s then return s end
  s = {
    type = p.type, nullable = nullable(p) or nil, minimum = p.minimum, maximum = p.maximum,
    minLength = p.min_length, maxLength = p.max_length, format = p.id and "misskey:id" or nil,
    minItems = p.min_items, maxItems = p.max_items, uniqueItems = p.unique,
  }
  if p.enum then
    -- null in an enum of an entry that is not nullable stays refused ("must not be null").
    s.enum = {}
    for _, e in ipairs(p.enum) do
      if e ~= null then s.enum[#s.enum + 1] = e end
    end
  end
  if p.items then s.items = convert(p.items) end
  if p.properties then
    local names = {}
    for name in pairs(p.properties) do names[#names + 1] = name end
    sort(names)
    s.properties = {}
    for i, name in ipairs(names) do s.properties[i] = { name, convert(p.properties[name]) } end
    s.required = p.required
    if not p.additional then s.additionalProperties = false end
  end
  if p.any_of then
    s.anyOf = {}
    for i, alt in ipairs(p.any_of) do s.anyOf[i] = convert(alt) end
  end
  converted[p] = s
  return s
end

-- "poll.choices[2]": a parameter's name and the place in its value.
local function place(name, at)
  local parts = { name }
  for _, seg in ipairs(at) do
    parts[#parts + 1] = type(seg) == "number" and format("[%d]", seg) or "." .. seg
  end
  return concat(parts)
end

local function lua_type_name(v)
  if v == null then return "null" end
  local t = type(v)
  if t == "table" then
    if next(v) == nil then return "empty table" end
    return validator.is_array(v) and "array" or "object"
  end
  if t == "number" and v % 1 == 0 then return "integer" end
  return t
end

local function show(v)
  if type(v) == "string" then return format("%q", v) end
  if v == null then return "null" end
  return tostring(v)
end

-- Bounds, in this module's words: on a count (the bound, then what was
-- counted) and on a number.
local COUNTS = { minLength = "must be at least %d characters", maxLength = "must be at most %d characters",
                 minItems = "must have at least %d items", maxItems = "must have at most %d items" }
local BOUNDS = { minimum = ">=", maximum = "<=" }

-- The other failed rules (`at`: the parameter and place).
local MESSAGES = {
  type = function(f, at)
    local t = f.expected
    if type(t) == "table" then t = concat(t, " or ") end
    local article = (t == "array" or t == "object" or t == "integer") and "an " or "a "
    return format("parameter '%s' must be %s%s, got %s", at, article, t, lua_type_name(f.value))
  end,
  enum = function(f, at)
    local alts = {}
    for i, e in ipairs(f.expected) do alts[i] = show(e) end
    return format("parameter '%s' must be one of %s, got %s", at, concat(alts, ", "), show(f.value))
  end,
  format = function(f, at)
    return format("parameter '%s' must be a Misskey id (letters and digits), got %s", at, show(f.value))
  end,
  uniqueItems = function(f, at)
    return format("parameter '%s' must not repeat %s", at, show(f.value))
  end,
  required = function(f, at)
    return format("parameter '%s.%s' is required", at, f.property)
  end,
  additionalProperties = function(f, at)
    return format("unknown parameter '%s.%s'", at, f.property)
  end,
}

local function message(f, at)
  local k = f.keyword
  if f.value == null and (k == "type" or k == "enum") then
    return format("parameter '%s' must not be null", at)
  end
  if COUNTS[k] then return format("parameter '%s' " .. COUNTS[k] .. ", got %d", at, f.limit, f.count) end
  if BOUNDS[k] then
    return format("parameter '%s' must be %s %s, got %s", at, BOUNDS[k], tostring(f.limit), show(f.value))
  end
  return MESSAGES[k](f, at)
end

-- Parameter `name`'s value against its entry `p`: nil, or message, param.
local function check(p, v, name)
  local f = validator.check(convert(p), v)
  if not f then return nil end
  local at = place(name, f.at)
  local msg = message(f, at)
  if f.alternatives_at then return msg, place(name, f.alternatives_at) end
  if f.property then return msg, at .. "." .. f.property end
  return msg, at
end

--- Checks `params` against an endpoint entry: nil when fine, else `message, param`.
-- Rules: required (and one of any_of_required), types (null only where
-- nullable), enum, minimum/maximum, min/max length in characters, items,
-- misskey:id, unknown parameters (`i`, the token, is always allowed).
function schema.validate(entry, params, _opts)
  params = params or {}
  if type(params) ~= "table" then return "params must be a table", nil end
  local spec = entry.params or {}
  for _, k in ipairs(entry.required or {}) do
    if params[k] == nil then return format("parameter '%s' is required", k), k end
  end
  if entry.any_of_required then
    local ok = false
    for _, set in ipairs(entry.any_of_required) do
      local all = true
      for _, k in ipairs(set) do if params[k] == nil then all = false break end end
      if all then ok = true break end
    end
    if not ok then
      local alts = {}
      for i, set in ipairs(entry.any_of_required) do alts[i] = "'" .. concat(set, "' + '") .. "'" end
      return "one of these parameters is required: " .. concat(alts, " or "), entry.any_of_required[1][1]
    end
  end
  local keys = {}
  for k in pairs(params) do
    if type(k) ~= "string" then return format("parameter names must be strings, got %s", tostring(k)), nil end
    keys[#keys + 1] = k
  end
  sort(keys)
  for _, k in ipairs(keys) do
    local p = spec[k]
    if p == nil then
      if k ~= "i" and not entry.additional then
        local known = {}
        for name in pairs(spec) do known[#known + 1] = name end
        sort(known)
        local hint = #known > 0 and (" (known: " .. concat(known, ", ") .. ")") or " (it takes no parameters)"
        return format("unknown parameter '%s'%s", k, hint), k
      end
    else
      local msg, param = check(p, params[k], k)
      if msg then return msg, param end
    end
  end
  return nil
end

--- Native (web login) tokens are exactly 16 letters and digits (protocol.md 5).
function schema.is_native(token)
  return type(token) == "string" and #token == 16 and token:find("^[0-9A-Za-z]+$") ~= nil
end

--- A secure endpoint with a non-native token is refused by the server with
-- ACCESS_DENIED; say so before sending. nil when fine, else a message.
function schema.check_token(entry, token)
  if entry.secure and token ~= nil and not schema.is_native(token) then
    return "this endpoint accepts only a native (web login) token; app, MiAuth and OAuth tokens get ACCESS_DENIED"
  end
  if entry.secure and token == nil then
    return "this endpoint needs a native (web login) token"
  end
  return nil
end

--- The permissions a token needs for the endpoints `names`: sorted, unique.
-- An unknown endpoint raises, naming the nearest known ones.
function schema.permissions_for(names, cat)
  if type(names) == "string" then names = { names } end
  if type(names) ~= "table" then
    error("bad argument #1 to 'permissions_for' (list of endpoint names expected, got " .. type(names) .. ")", 2)
  end
  local set, out = {}, {}
  for _, name in ipairs(names) do
    local entry = schema.lookup(name, cat)
    if not entry then error("bad argument #1 to 'permissions_for' (" .. schema.unknown_message(name, cat) .. ")", 2) end
    local p = entry.permission
    if p and not set[p] then set[p], out[#out + 1] = true, p end
  end
  sort(out)
  return out
end

-- ---- client:schema(): the server's own catalogue, cached on disk ----

--- The cache directory: $XDG_CACHE_HOME/misskey, else ~/.cache/misskey (nil if neither is known).
function schema.cache_dir(getenv)
  getenv = getenv or os.getenv
  local xdg = getenv("XDG_CACHE_HOME")
  if xdg and xdg ~= "" then return xdg .. "/misskey" end
  local home = getenv("HOME")
  if home and home ~= "" then return home .. "/.cache/misskey" end
  return nil
end

-- A file name part: safe characters only, at most 64 of them (the server picks the version).
local function safe(s)
  return (tostring(s):gsub("[^%w%.%-_]", "_"):sub(1, 64))
end

--- The cache file of a host, software and version.
function schema.cache_path(dir, host, software, version)
  return format("%s/schema-%s-%s-%s.json", dir, safe(host), safe(software), safe(version))
end

-- The cache is data, never code: JSON through misskey.json, written and read as a private
-- file (no symbolic links, the current user's own). Caches of earlier releases were Lua
-- source that ran when loaded; their `.lua` names are never read, and one is removed when
-- its replacement is written.
local CACHE_FORMAT = "misskey-catalogue/1"
local CACHE_MAX = 16 * 1024 * 1024

local function cache_read(path, host, software, version)
  local text = require("misskey.core").read_private(path, CACHE_MAX)
  if not text then return nil end
  local doc = require("misskey.json").decode(text)
  if type(doc) ~= "table" or doc.format ~= CACHE_FORMAT or doc.host ~= host or doc.software ~= software
     or doc.version ~= version then
    return nil
  end
  local cat = doc.catalogue
  if type(cat) ~= "table" or type(cat.source) ~= "table" or type(cat.endpoints) ~= "table"
     or (cat.permissions ~= nil and type(cat.permissions) ~= "table") then
    return nil
  end
  for name, entry in pairs(cat.endpoints) do
    if type(name) ~= "string" or type(entry) ~= "table" then return nil end
  end
  cat.permissions = cat.permissions or {}
  return cat
end

local function cache_write(path, host, software, version, cat)
  local core = require "misskey.core"
  -- A document the encoder refuses (a number that decoded to infinity) is not cached.
  local ok, text = pcall(require("misskey.json").encode, {
    format = CACHE_FORMAT, host = host, software = software, version = version, catalogue = cat,
  })
  if not ok then return nil, tostring(text) end
  local done, why = core.write_private(path, text)
  if not done then return nil, tostring(why) end
  os.remove((path:gsub("%.json$", ".lua")))
  return true
end

local function count(cat)
  local n = 0
  for _ in pairs(cat.endpoints) do n = n + 1 end
  return n
end

local function use(client, cat)
  client._catalogue = cat
  client.api = require("misskey.api").new(client)
end

--- client:schema() (see misskey.client): nodeinfo + meta for the version, then
-- the cache, else GET /api.json converted by misskey.openapi.
function schema.fetch(client)
  local openapi = require "misskey.openapi"
  local errors = require "misskey.errors"
  local software, version
  local res, info = client:http{ method = "GET", path = "/nodeinfo/2.1", json = true }
  if res and res.status == 200 and type(info) == "table" and type(info.software) == "table" then
    software = type(info.software.name) == "string" and info.software.name or nil
    version = type(info.software.version) == "string" and info.software.version or nil
  end
  local meta = client:request("meta", { detail = false })
  if type(meta) == "table" and type(meta.version) == "string" then version = meta.version end
  software = software or "misskey"
  local getenv = require("misskey.client")._getenv
  local dir = schema.cache_dir(getenv)
  local path = dir and version and schema.cache_path(dir, client.host, software, version)
  if path then
    local cat = cache_read(path, client.host, software, version)
    if cat then
      use(client, cat)
      return { software = software, version = version, endpoints = count(cat), source = "cache", path = path }
    end
  end
  local doc, herr
  res, doc, herr = client:http{ method = "GET", path = "/api.json", json = true, max_size = 64 * 1024 * 1024 }
  if not res then return nil, doc, herr end
  if res.status ~= 200 or type(doc) ~= "table" then
    return errors.fail("http", format("GET /api.json: HTTP %d, no OpenAPI document", res.status),
      { status = res.status, endpoint = "/api.json" })
  end
  local cat, why = openapi.convert(doc, { software = software, permissions = schema.catalogue().permissions })
  if not cat then
    return errors.fail("decode", "GET /api.json: " .. why, { status = res.status, endpoint = "/api.json" })
  end
  version = version or cat.source.version
  cat.source.version = version
  cat.source.host = client.host
  use(client, cat)
  local summary = { software = software, version = version, endpoints = count(cat), source = "server" }
  if dir then
    path = schema.cache_path(dir, client.host, software, version)
    local ok, werr = cache_write(path, client.host, software, version, cat)
    if ok then summary.path = path else summary.cache_error = werr end
  end
  return summary
end

return schema
