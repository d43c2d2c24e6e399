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

local null = json.null

local function utf8_len(s)
  -- Code points, as the server's ajv counts them: every byte that does not continue a sequence.
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

local function is_array(v)
  if json.is_array(v) then return true end
  return v[1] ~= nil or next(v) == nil
end

local function is_object(v)
  return not json.is_array(v) and (v[1] == nil)
end

local function lua_type_name(v)
  if v == null then return "null" end
  local t = type(v)
  if t == "table" then return is_array(v) and next(v) ~= nil and "array" or (next(v) == nil and "empty table"
    or "object") end
  if t == "number" and v % 1 == 0 then return "integer" end
  return t
end

local function is_type(v, t)
  if t == "string" then return type(v) == "string" end
  if t == "boolean" then return type(v) == "boolean" end
  if t == "number" then return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end
  if t == "integer" then return type(v) == "number" and v % 1 == 0 and v == v end
  if t == "array" then return type(v) == "table" and is_array(v) end
  if t == "object" then return type(v) == "table" and is_object(v) end
  if t == "null" then return v == null end
  return true
end

local function show(v)
  if type(v) == "string" then return format("%q", v) end
  if v == null then return "null" end
  return tostring(v)
end

local check

local function check_props(p, v, path)
  local props = p.properties
  if p.required then
    for _, k in ipairs(p.required) do
      if v[k] == nil then return format("parameter '%s.%s' is required", path, k), path .. "." .. k end
    end
  end
  if props and not p.additional then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    sort(keys)
    for _, k in ipairs(keys) do
      if props[k] == nil then return format("unknown parameter '%s.%s'", path, k), path .. "." .. k end
    end
  end
  if props then
    for k, sub in pairs(props) do
      if v[k] ~= nil then
        local msg, param = check(sub, v[k], path .. "." .. k)
        if msg then return msg, param end
      end
    end
  end
end

-- One value against one flattened schema; `path` names it in messages.
check = function(p, v, path)
  if v == null then
    if p.nullable or p.type == "null" then return nil end
    if type(p.type) == "table" then
      for _, t in ipairs(p.type) do if t == "null" then return nil end end
    end
    if p.type or p.enum then return format("parameter '%s' must not be null", path), path end
    return nil
  end
  if p.any_of then
    local first
    for _, alt in ipairs(p.any_of) do
      local msg = check(alt, v, path)
      if not msg then first = nil break end
      first = first or msg
    end
    if first then return first, path end
  end
  local t = p.type
  if t then
    local ok = false
    if type(t) == "table" then
      for _, x in ipairs(t) do if is_type(v, x) then ok = true end end
      t = concat(t, " or ")
    else
      ok = is_type(v, t)
    end
    if not ok then
      local article = (t == "array" or t == "object" or t == "integer") and "an " or "a "
      return format("parameter '%s' must be %s%s, got %s", path, article, t, lua_type_name(v)), path
    end
  end
  if p.enum then
    local found = false
    for _, e in ipairs(p.enum) do if e == v then found = true break end end
    if not found then
      local alts = {}
      for i, e in ipairs(p.enum) do alts[i] = show(e) end
      return format("parameter '%s' must be one of %s, got %s", path, concat(alts, ", "), show(v)), path
    end
  end
  local tv = type(v)
  if tv == "number" then
    if p.minimum and v < p.minimum then
      return format("parameter '%s' must be >= %s, got %s", path, tostring(p.minimum), show(v)), path
    end
    if p.maximum and v > p.maximum then
      return format("parameter '%s' must be <= %s, got %s", path, tostring(p.maximum), show(v)), path
    end
  elseif tv == "string" then
    if p.min_length or p.max_length then
      local n = utf8_len(v)
      if p.min_length and n < p.min_length then
        return format("parameter '%s' must be at least %d characters, got %d", path, p.min_length, n), path
      end
      if p.max_length and n > p.max_length then
        return format("parameter '%s' must be at most %d characters, got %d", path, p.max_length, n), path
      end
    end
    if p.id and not v:find("^[a-zA-Z0-9]+$") then
      return format("parameter '%s' must be a Misskey id (letters and digits), got %s", path, show(v)), path
    end
  elseif tv == "table" then
    if is_type(v, "array") and (p.items or p.min_items or p.max_items or p.unique) and not p.properties then
      local n = #v
      if p.min_items and n < p.min_items then
        return format("parameter '%s' must have at least %d items, got %d", path, p.min_items, n), path
      end
      if p.max_items and n > p.max_items then
        return format("parameter '%s' must have at most %d items, got %d", path, p.max_items, n), path
      end
      local seen = {}
      for i = 1, n do
        local x = v[i]
        if p.unique and type(x) ~= "table" then
          if seen[x] then return format("parameter '%s' must not repeat %s", path, show(x)), path end
          seen[x] = true
        end
        if p.items then
          local ipath = format("%s[%d]", path, i)
          local msg, param = check(p.items, x, ipath)
          if msg then return msg, param end
        end
      end
    elseif p.properties then
      local msg, param = check_props(p, v, path)
      if msg then return msg, param end
    end
  end
  return nil
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
