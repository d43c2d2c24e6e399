--- misskey.schema: parameter validation against an endpoint's entry, and the
-- native-token check, before a call is sent (the `validate` option).
--
--   schema.validate(entry, params)     nil, or message, param
--   schema.check_token(entry, token)   nil, or message (secure endpoints want a native token)
--
-- It also answers, under the names README documents for it, the catalogue's
-- questions (misskey.catalogue: lookup, names, suggest, permissions_for, ...),
-- each taking an optional catalogue (a client's, after client:schema()).
local catalogue = require "misskey.catalogue"
local json = require "misskey.json"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local sort, concat = table.sort, table.concat
local format = string.format

local schema = {}

-- The catalogue's questions (see misskey.catalogue).
schema.catalogue = catalogue.bundled
for _, name in ipairs{ "names", "lookup", "is_prefix", "suggest", "unknown_message", "permissions_for" } do
  schema[name] = catalogue[name]
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

--- Native (web login) tokens are exactly 16 letters and digits (docs/protocol.md section 5).
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

return schema
