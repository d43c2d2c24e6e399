--- misskey.validate: the one JSON-Schema validator of the library.
--
-- misskey.schema checks a client's parameters with it before sending (after
-- turning the catalogue's flat entries into this format), and misskey.testing
-- answers INVALID_PARAM with it as Misskey's ajv does. It finds the first
-- error, in ajv's order, and describes it; each caller words it its own way.
--
-- A schema is a Lua table in a subset of JSON Schema. Two keywords take a Lua
-- form: `properties` is a list of { name, schema } pairs (the first error
-- depends on their order, and Lua tables have none), and `pattern` is
-- { javascript_source, lua_pattern } (the first for the message, the second to match).
-- Keywords, in the order they are checked (ajv's: the type, the keywords of
-- any type, then those of the value's type):
--   nullable = true                  null is valid and nothing else is checked (OpenAPI's)
--   type = name | { names }          string, boolean, number, integer, array, object, null
--   enum = { values }
--   anyOf (reported as its first alternative's error), allOf
--   maxLength, minLength, pattern, format = "misskey:id"     (strings; lengths in code points)
--   maximum, minimum                                          (numbers)
--   maxItems, minItems, items, uniqueItems                    (arrays)
--   required, additionalProperties = false, properties        (objects)
--
--   validate.check(schema, value[, opts]) -> nil | failure
--     opts.marked_arrays  arrays are exactly the tables misskey.array marks (data from
--                         misskey.json.decode); otherwise a table with t[1], or an empty
--                         one, is an array too
--     opts.root           where schema paths start (default "#")
--   failure = {
--     keyword,          the rule that failed ("maxLength", "required", ...)
--     schema_path,      "#/properties/text/maxLength", as ajv's schemaPath
--     reason,           ajv's words: "must NOT have more than 3000 characters"
--     at,               where in the value: { "poll", "choices", 2 } (item numbers from 1)
--     value,            the value that failed (for uniqueItems: the repeated item)
--     expected,         type / enum: the keyword's value (the type name or names, the values)
--     limit, count,     the bound and what was counted (lengths, item counts)
--     property,         required / additionalProperties: the property's name
--     alternatives_at,  set when an anyOf matched nothing: where that anyOf stands (the
--                       outermost such one)
--   }
--   validate.is_array(v[, marked]), validate.is_object(v[, marked]): the table rules above
local json = require "misskey.json"

local null, marked_array = json.null, json.is_array
local type, ipairs, pairs, next, tostring = type, ipairs, pairs, next, tostring
local huge = math.huge
local format, concat, sort = string.format, table.concat, table.sort

local validate = {}

--- Is `v` a JSON array? Marked by misskey.array; unless `marked`, also a table with t[1] or an empty one.
---@param v any
---@param marked boolean?
---@return boolean
function validate.is_array(v, marked)
  if type(v) ~= "table" then return false end
  if marked_array(v) then return true end
  return not marked and (v[1] ~= nil or next(v) == nil)
end

--- Is `v` a JSON object? A table not marked as an array; unless `marked`, also without t[1].
---@param v any
---@param marked boolean?
---@return boolean
function validate.is_object(v, marked)
  if type(v) ~= "table" or marked_array(v) then return false end
  return marked or v[1] == nil
end

local is_array, is_object = validate.is_array, validate.is_object

local function finite(v)
  return type(v) == "number" and v == v and v ~= huge and v ~= -huge
end

local function has_type(v, name, marked)
  if name == "null" then return v == null end
  if name == "string" or name == "boolean" then return type(v) == name end
  if name == "number" then return finite(v) end
  if name == "integer" then return finite(v) and v % 1 == 0 end
  if name == "array" then return is_array(v, marked) end
  if name == "object" then return is_object(v, marked) end
  return true -- a type JSON Schema does not have: nothing to check
end

-- Code points, as ajv counts string lengths: every byte that does not continue a sequence.
local function length(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

-- A bound as JavaScript prints it (no ".0" on whole numbers).
local function num(n)
  if finite(n) and n % 1 == 0 then return format("%d", n) end
  return tostring(n)
end

-- A failure is made where a rule fails and learns where it stands on the way
-- out: its path segments are collected innermost first and turned around once,
-- at the top (nothing is built for a value that passes).
local function fail(keyword, reason, value, details)
  local f = details or {}
  f.keyword, f.reason, f.value = keyword, reason, value
  f.schema_rev, f.at_rev = { keyword }, {}
  return f
end

-- Puts `f` under a schema keyword (and a name or index below it) and, when
-- given, under a place in the value.
local function nest(f, at, keyword, below)
  local s = f.schema_rev
  if below ~= nil then s[#s + 1] = tostring(below) end
  s[#s + 1] = keyword
  if at ~= nil then f.at_rev[#f.at_rev + 1] = at end
  return f
end

local check

local function check_string(schema, v)
  local max, min = schema.maxLength, schema.minLength
  if max or min then
    local n = length(v)
    if max and n > max then
      return fail("maxLength", format("must NOT have more than %s characters", num(max)), v,
        { limit = max, count = n })
    end
    if min and n < min then
      return fail("minLength", format("must NOT have fewer than %s characters", num(min)), v,
        { limit = min, count = n })
    end
  end
  local pattern = schema.pattern
  if pattern and not v:find(pattern[2]) then
    return fail("pattern", format('must match pattern "%s"', pattern[1]), v)
  end
  if schema.format == "misskey:id" and not v:find("^[a-zA-Z0-9]+$") then
    return fail("format", 'must match format "misskey:id"', v)
  end
end

local function check_number(schema, v)
  if schema.maximum and v > schema.maximum then
    return fail("maximum", "must be <= " .. num(schema.maximum), v, { limit = schema.maximum })
  end
  if schema.minimum and v < schema.minimum then
    return fail("minimum", "must be >= " .. num(schema.minimum), v, { limit = schema.minimum })
  end
end

local function check_array(schema, v, marked)
  local n = #v
  if schema.maxItems and n > schema.maxItems then
    return fail("maxItems", format("must NOT have more than %s items", num(schema.maxItems)), v,
      { limit = schema.maxItems, count = n })
  end
  if schema.minItems and n < schema.minItems then
    return fail("minItems", format("must NOT have fewer than %s items", num(schema.minItems)), v,
      { limit = schema.minItems, count = n })
  end
  -- Each item before uniqueness: Misskey's ajv reports ["a-b", "a-b"] as a bad id.
  if schema.items then
    for i = 1, n do
      local f = check(schema.items, v[i], marked)
      if f then return nest(f, i, "items") end
    end
  end
  if schema.uniqueItems then
    local seen = {}
    for i = 1, n do
      local x = v[i]
      if type(x) ~= "table" and x == x then -- (NaN is no table key, and equals nothing)
        if seen[x] then
          return fail("uniqueItems", format("must NOT have duplicate items (items ## %d and %d are identical)",
            i - 1, seen[x] - 1), x, { first = seen[x], index = i })
        end
        seen[x] = i
      end
    end
  end
end

local NONE = {}

local declared_cache = setmetatable({}, { __mode = "k" })

-- The names a `properties` list declares, as a set (made once per list).
local function declared(properties)
  local set = declared_cache[properties]
  if not set then
    set = {}
    for _, prop in ipairs(properties) do set[prop[1]] = true end
    declared_cache[properties] = set
  end
  return set
end

local function check_object(schema, v, marked)
  if schema.required then
    for _, name in ipairs(schema.required) do
      if v[name] == nil then
        return fail("required", format("must have required property '%s'", name), v, { property = name })
      end
    end
  end
  local properties = schema.properties or NONE
  if schema.additionalProperties == false then
    local known, keys = declared(properties), {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    sort(keys)
    for _, k in ipairs(keys) do
      if not known[k] then
        return fail("additionalProperties", "must NOT have additional properties", v, { property = k })
      end
    end
  end
  for _, prop in ipairs(properties) do
    local name = prop[1]
    local x = v[name]
    if x ~= nil then
      local f = check(prop[2], x, marked)
      if f then return nest(f, name, "properties", name) end
    end
  end
end

local function type_error(want, v, marked)
  if type(want) == "string" then
    if has_type(v, want, marked) then return nil end
    return fail("type", "must be " .. want, v, { expected = want })
  end
  for _, name in ipairs(want) do
    if has_type(v, name, marked) then return nil end
  end
  return fail("type", "must be " .. concat(want, ","), v, { expected = want })
end

check = function(schema, v, marked)
  if v == null and schema.nullable then return nil end
  local f = schema.type ~= nil and type_error(schema.type, v, marked)
  if f then return f end
  if schema.enum then
    local found = false
    for _, e in ipairs(schema.enum) do
      if e == v then found = true break end
    end
    if not found then
      return fail("enum", "must be equal to one of the allowed values", v, { expected = schema.enum })
    end
  end
  if schema.anyOf then
    local first
    for i, alt in ipairs(schema.anyOf) do
      local g = check(alt, v, marked)
      if not g then first = nil break end
      if i == 1 then first = nest(g, nil, "anyOf", 0) end
    end
    if first then
      first.alternatives_depth = #first.at_rev
      return first
    end
  end
  if schema.allOf then
    for i, sub in ipairs(schema.allOf) do
      f = check(sub, v, marked)
      if f then return nest(f, nil, "allOf", i - 1) end
    end
  end
  local tv = type(v)
  if tv == "string" then return check_string(schema, v) end
  if tv == "number" then return check_number(schema, v) end
  if tv == "table" then
    f = is_array(v, marked) and check_array(schema, v, marked)
    if not f and is_object(v, marked) then f = check_object(schema, v, marked) end
    return f or nil
  end
  return nil
end

local function reversed(list, from)
  local out = {}
  for i = #list, from or 1, -1 do out[#out + 1] = list[i] end
  return out
end

--- The first error of `value` against `schema`, or nil when it is valid.
---@param schema table
---@param value any
---@param opts? { marked_arrays: boolean?, root: string? }
---@return table? failure
function validate.check(schema, value, opts)
  local f = check(schema, value, opts ~= nil and opts.marked_arrays)
  if not f then return nil end
  f.schema_path = (opts and opts.root or "#") .. "/" .. concat(reversed(f.schema_rev), "/")
  f.at = reversed(f.at_rev)
  if f.alternatives_depth then f.alternatives_at = reversed(f.at_rev, f.alternatives_depth + 1) end
  f.schema_rev, f.at_rev, f.alternatives_depth = nil, nil, nil
  return f
end

return validate
