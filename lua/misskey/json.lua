--- JSON for the misskey client.
--
-- Decoding is lua-cjson's (fast, C); encoding is pure Lua, because the client
-- needs control that lua-cjson 2.1.0 lacks: an empty-array marker, `/` left
-- unescaped, integers written as plain digits up to 2^53 (and the full 64-bit
-- range on Lua 5.3+), and errors that name the parameter at fault.
--
-- API:
--   json.null                 the null sentinel (it is cjson.null)
--   json.array([t])           marks t (default {}) as a JSON array, returns t
--   json.is_array(t)          true if t is marked as an array
--   json.encode(v [, name])   JSON text; raises "name.path: reason" on bad input
--   json.decode(text)         value, or nil and a message on invalid JSON
--   json.pretty(v [, name])   indented JSON, keys sorted (for the CLI)
--
-- Arrays and decoding. lua-cjson 2.1.0 gives plain tables for both `[]` and
-- `{}`. After decoding, every table decoded from a non-empty JSON array is
-- marked (a JSON object never has integer keys, so `t[1] ~= nil` tells them
-- apart). Empty arrays cannot be told from empty objects after the fact, so
-- they are recognised in the text first: every `[` followed by JSON
-- whitespace and `]` is rewritten to `["\u0000"]` (a memchr-driven scan of the
-- `[` bytes, not a pattern scan of every byte), and the walk that marks arrays
-- turns a one-element array holding "\0" back into an empty marked array.
--   * If such a `[]` was inside a string, the rewritten text is always invalid,
--     and cjson stops exactly at the `\` of the injected `"\u0000"` (the
--     injected quote ends the string, and a `\` is never valid outside one).
--     That `[]` is put back as it was and the decode retried. After
--     MAX_RETRIES, or on any other failure, the original text is decoded (so
--     invalid JSON is always reported with the original's positions) and, if
--     valid, rewritten by a string-aware, slower pure-Lua scan.
--   * A document that contains a NUL character (`\u0000`, or a raw NUL byte)
--     could hold a genuine ["\u0000"], so it is decoded without the rewrite:
--     its empty arrays come back as plain empty tables (they re-encode as `{}`).
--     Misskey cannot emit NUL (PostgreSQL text cannot hold it).
-- On Lua 5.3+ the same walk turns floats with an integral value that fits an
-- integer back into integers (cjson 2.1.0 decodes every number as a float
-- there), so decode("123") is the integer 123. On Lua 5.1/LuaJIT numbers are
-- left as they are.

local cjson = require "cjson"

local type, next, tostring, tonumber, error, pcall =
  type, next, tostring, tonumber, error, pcall
local getmetatable, setmetatable, rawget = getmetatable, setmetatable, rawget
local find, gsub, format, sub, byte, match =
  string.find, string.gsub, string.format, string.sub, string.byte, string.match
local concat, sort = table.concat, table.sort
local huge = math.huge
local math_type = rawget(math, "type")         -- nil on Lua 5.1 / LuaJIT
local tointeger = rawget(math, "tointeger")    -- nil on Lua 5.1 / LuaJIT

-- A private instance, so that settings never leak to other users of cjson.
local cj = cjson.new()
cj.decode_invalid_numbers(false)     -- reject NaN, Infinity, 0x10, 012
local cj_decode = cj.decode

local json = {}

local null = cjson.null
json.null = null

local MAX_DEPTH = 1000
local INT_LIMIT = 2 ^ 53

---------------------------------------------------------------------------
-- arrays

-- `__jsontype = "array"` is also what dkjson uses, so its arrays are honoured.
local ARRAY_MT = { __jsontype = "array" }

local function is_array(t)
  if type(t) ~= "table" then return false end
  local mt = getmetatable(t)
  return type(mt) == "table" and rawget(mt, "__jsontype") == "array"
end
json.is_array = is_array

function json.array(t)
  if t == nil then return setmetatable({}, ARRAY_MT) end
  if type(t) ~= "table" then
    error("json.array: expected a table, got " .. type(t), 2)
  end
  local mt = getmetatable(t)
  if mt == nil then return setmetatable(t, ARRAY_MT) end
  if type(mt) == "table" and rawget(mt, "__jsontype") == "array" then return t end
  error("json.array: the table already has a metatable", 2)
end

---------------------------------------------------------------------------
-- scalars

local ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
for i = 0, 31 do
  local c = string.char(i)
  if not ESCAPES[c] then ESCAPES[c] = format("\\u%04x", i) end
end
local NEEDS_ESCAPE = '[%z\1-\31"\\]'

-- The string's JSON form without the surrounding quotes.
local function escape(s)
  if find(s, NEEDS_ESCAPE) then
    return (gsub(s, NEEDS_ESCAPE, ESCAPES))
  end
  return s
end

-- nil and a reason if v is NaN or infinite.
local function number_text(v)
  if math_type and math_type(v) == "integer" then
    return format("%d", v)
  end
  if v ~= v then return nil, "cannot encode NaN" end
  if v >= huge then return nil, "cannot encode inf" end
  if v <= -huge then return nil, "cannot encode -inf" end
  if v % 1 == 0 and v > -INT_LIMIT and v < INT_LIMIT then
    return format("%d", v)
  end
  local s = format("%.14g", v)
  if tonumber(s) == v then return s end
  s = format("%.15g", v)
  if tonumber(s) == v then return s end
  s = format("%.16g", v)
  if tonumber(s) == v then return s end
  return format("%.17g", v)
end

---------------------------------------------------------------------------
-- error paths

local function path_item(k)
  if type(k) == "number" then
    return "[" .. format("%d", k) .. "]"
  elseif find(k, "^[%a_][%w_]*$") then
    return "." .. k
  end
  return '["' .. escape(k) .. '"]'
end

-- State of the running encode/pretty call. Neither can be re-entered (no user
-- code runs inside them), so module-level state is safe; each call resets it.
local root_name = "value"
local keys = {}        -- keys[d]: key of the value at depth d (root: depth 0)

local function fail(d, msg)
  local parts = { root_name }
  for i = 1, d do parts[i + 1] = path_item(keys[i]) end
  error(concat(parts) .. ": " .. msg, 0)
end

local function key_text(k)
  local tk = type(k)
  if tk == "number" or tk == "boolean" then
    return tk .. " " .. (tk == "number" and (number_text(k) or tostring(k)) or tostring(k))
  end
  return tk
end

-- Called once a table is known not to be encodable as it is: says why.
local function bad_table(t, d)
  local has_string, max = false, 0
  for k in next, t do
    if type(k) == "string" then
      has_string = true
    elseif type(k) == "number" and k >= 1 and k % 1 == 0 and k < huge then
      if k > max then max = k end
    else
      fail(d, "cannot encode a non-string key (" .. key_text(k) .. ")")
    end
  end
  if has_string and max > 0 then
    fail(d, "cannot encode a table that mixes array items and string keys")
  end
  if has_string and is_array(t) then
    fail(d, "cannot encode an array (json.array) with string keys")
  end
  for i = 1, max do
    if t[i] == nil then
      fail(d, format("cannot encode a sparse array (no value at index %d)", i))
    end
  end
  fail(d, "cannot encode this table")  -- not reached
end

-- The array length if t is to be encoded as an array, false for an object.
-- Raises if t is neither (sparse, mixed, or has non-string keys).
local function array_length(t, d)
  local n = #t
  if n == 0 then
    if is_array(t) then
      if next(t) ~= nil then bad_table(t, d) end
      return 0
    end
    return false
  end
  local count = 0
  for _ in next, t do count = count + 1 end
  if count ~= n then bad_table(t, d) end
  return n
end

---------------------------------------------------------------------------
-- encode

local buf, nb, seen
-- Weak keys: after an encode that raised, the user's tables are not kept.
local WEAK_KEYS = { __mode = "k" }

local encode_value

local function encode_table(t, d)
  if seen[t] then fail(d, "cycle detected") end
  if d >= MAX_DEPTH then
    fail(d, "cannot encode more than " .. MAX_DEPTH .. " nested tables")
  end
  local n = array_length(t, d)
  seen[t] = true
  local d1 = d + 1
  if n then
    if n == 0 then
      nb = nb + 1; buf[nb] = "[]"
    else
      for i = 1, n do
        local v = t[i]
        if v == nil then bad_table(t, d) end
        nb = nb + 1; buf[nb] = i == 1 and "[" or ","
        keys[d1] = i
        encode_value(v, d1)
      end
      nb = nb + 1; buf[nb] = "]"
    end
  else
    local start = nb
    for k, v in next, t do
      if type(k) ~= "string" then bad_table(t, d) end
      buf[nb + 1] = nb == start and '{"' or ',"'
      buf[nb + 2] = escape(k)
      buf[nb + 3] = '":'
      nb = nb + 3
      keys[d1] = k
      encode_value(v, d1)
    end
    nb = nb + 1; buf[nb] = nb == start + 1 and "{}" or "}"
  end
  seen[t] = nil
end

encode_value = function(v, d)
  local tv = type(v)
  if tv == "string" then
    buf[nb + 1] = '"'
    buf[nb + 2] = escape(v)
    buf[nb + 3] = '"'
    nb = nb + 3
  elseif tv == "number" then
    local s, err = number_text(v)
    if not s then fail(d, err) end
    nb = nb + 1; buf[nb] = s
  elseif tv == "boolean" then
    nb = nb + 1; buf[nb] = v and "true" or "false"
  elseif tv == "table" then
    encode_table(v, d)
  elseif v == null or v == nil then
    nb = nb + 1; buf[nb] = "null"
  else
    fail(d, "cannot encode a " .. tv)
  end
end

local function check_name(name, fn)
  if name == nil then return "value" end
  if type(name) ~= "string" then
    error("json." .. fn .. ": name must be a string, got " .. type(name), 3)
  end
  return name
end

--- Encodes value as compact JSON. `name` (default "value") starts the path
-- in error messages, e.g. `params.poll.choices[3]: cannot encode a function`.
function json.encode(value, name)
  root_name = check_name(name, "encode")
  buf, nb, seen, keys = {}, 0, setmetatable({}, WEAK_KEYS), {}
  encode_value(value, 0)
  local out = concat(buf, "", 1, nb)
  buf, seen = nil, nil
  return out
end

---------------------------------------------------------------------------
-- pretty

local pretty_value

local function pretty_table(t, d, indent)
  if seen[t] then fail(d, "cycle detected") end
  if d >= MAX_DEPTH then
    fail(d, "cannot encode more than " .. MAX_DEPTH .. " nested tables")
  end
  local n = array_length(t, d)
  local d1 = d + 1
  local inner = indent .. "  "
  seen[t] = true
  if n then
    if n == 0 then
      nb = nb + 1; buf[nb] = "[]"
    else
      for i = 1, n do
        local v = t[i]
        if v == nil then bad_table(t, d) end
        nb = nb + 1; buf[nb] = (i == 1 and "[\n" or ",\n") .. inner
        keys[d1] = i
        pretty_value(v, d1, inner)
      end
      nb = nb + 1; buf[nb] = "\n" .. indent .. "]"
    end
  else
    local list, count = {}, 0
    for k in next, t do
      if type(k) ~= "string" then bad_table(t, d) end
      count = count + 1; list[count] = k
    end
    if count == 0 then
      nb = nb + 1; buf[nb] = "{}"
    else
      sort(list)
      for i = 1, count do
        local k = list[i]
        nb = nb + 1
        buf[nb] = (i == 1 and "{\n" or ",\n") .. inner .. '"' .. escape(k) .. '": '
        keys[d1] = k
        pretty_value(t[k], d1, inner)
      end
      nb = nb + 1; buf[nb] = "\n" .. indent .. "}"
    end
  end
  seen[t] = nil
end

pretty_value = function(v, d, indent)
  if type(v) == "table" then
    pretty_table(v, d, indent)
  else
    encode_value(v, d)
  end
end

--- Indented JSON (2 spaces, object keys sorted), for humans.
function json.pretty(value, name)
  root_name = check_name(name, "pretty")
  buf, nb, seen, keys = {}, 0, setmetatable({}, WEAK_KEYS), {}
  pretty_value(value, 0, "")
  local out = concat(buf, "", 1, nb)
  buf, seen = nil, nil
  return out
end

---------------------------------------------------------------------------
-- decode

local SENTINEL = "\0"                   -- what `["\u0000"]` decodes to
local EMPTY_ARRAY = '"\\u0000"]'        -- replaces the `]` of an empty array
local NO_SENTINEL = {}                  -- never equal to a decoded value
local sentinel = NO_SENTINEL            -- SENTINEL while a rewrite is in use

local RBRACKET, QUOTE, BACKSLASH = byte("]\"\\", 1, 3)

-- Finds every `[ws]` (JSON whitespace only), wherever it is (even inside
-- strings), and prepares its rewrite to `["\u0000"]`: returns parts (whose
-- concatenation is the rewritten text; parts[2 * i] is the rewrite of the
-- i-th one) and the positions of its `[` and `]` in text; nil if there is none.
-- Only plain finds (memchr) are used, never a pattern scan of every byte:
-- compact JSON (what Misskey sends) is scanned for "[]" alone; only if some
-- `[` is followed by whitespace does the scan stop at every `[`.
local function scan_empty_arrays(text)
  local parts, opens, closes, count, last = nil, nil, nil, 0, 1
  local spaced = find(text, "[ ", 1, true) or find(text, "[\n", 1, true)
    or find(text, "[\r", 1, true) or find(text, "[\t", 1, true)
  local needle = spaced and "[" or "[]"
  local pos = 1
  while true do
    local s = find(text, needle, pos, true)
    if not s then break end
    local e
    if byte(text, s + 1) == RBRACKET then
      e = s + 1
    else
      e = match(text, "^[ \t\n\r]*()%]", s + 1)
    end
    if e then
      if not parts then parts, opens, closes = {}, {}, {} end
      count = count + 1
      parts[2 * count - 1] = sub(text, last, s)
      parts[2 * count] = EMPTY_ARRAY
      opens[count], closes[count] = s, e
      last = e + 1
      pos = e + 1
    else
      pos = s + 1
    end
  end
  if not parts then return nil end
  parts[2 * count + 1] = sub(text, last)
  return parts, opens, closes
end

-- When the rewritten text fails to decode at the `\` of an injected
-- `"\u0000"`, that `[]` was inside a string: its index, else nil.
local function in_string_rewrite(parts, opens, closes, message)
  local at = tonumber(match(message, "at character (%d+)"))
  if not at then return nil end
  local shift = 0
  for i = 1, #opens do
    local part = parts[2 * i]
    if part == EMPTY_ARRAY and opens[i] + shift + 2 == at then return i end
    shift = shift + #part - (closes[i] - opens[i])
  end
  return nil
end

-- Rewrites every `[ws]` outside strings to `["\u0000"]`. For valid JSON only;
-- slower than scan_empty_arrays (it visits every string), so it is the last
-- resort, for texts with more than MAX_RETRIES `[]` inside strings.
local function rewrite_exact(text)
  local parts, np, last = {}, 0, 1
  local pos = 1
  while true do
    local s = find(text, '["%[]', pos)
    if not s then break end
    if byte(text, s) == QUOTE then
      local p = s + 1
      while true do
        local q = find(text, '["\\]', p)
        if not q then return text end        -- not reached for valid JSON
        if byte(text, q) == BACKSLASH then
          p = q + 2
        else
          pos = q + 1
          break
        end
      end
    else
      local e = match(text, "^[ \t\n\r]*()%]", s + 1)
      if e then
        parts[np + 1] = sub(text, last, s)
        parts[np + 2] = EMPTY_ARRAY
        np = np + 2
        last = e + 1
        pos = e + 1
      else
        pos = s + 1
      end
    end
  end
  parts[np + 1] = sub(text, last)
  return concat(parts)
end

local walk
if tointeger then
  -- Lua 5.3+: mark arrays, turn integral floats back into integers.
  walk = function(t)
    local v1 = t[1]
    if v1 ~= nil then
      setmetatable(t, ARRAY_MT)
      if v1 == sentinel then
        t[1] = nil
        return
      end
      for i = 1, #t do
        local v = t[i]
        local tv = type(v)
        if tv == "number" then
          local iv = tointeger(v)
          if iv then t[i] = iv end
        elseif tv == "table" then
          walk(v)
        end
      end
    else
      for k, v in next, t do
        local tv = type(v)
        if tv == "number" then
          local iv = tointeger(v)
          if iv then t[k] = iv end
        elseif tv == "table" then
          walk(v)
        end
      end
    end
  end
else
  -- Lua 5.1 / LuaJIT: mark arrays only.
  walk = function(t)
    local v1 = t[1]
    if v1 ~= nil then
      setmetatable(t, ARRAY_MT)
      if v1 == sentinel then
        t[1] = nil
        return
      end
      for i = 1, #t do
        local v = t[i]
        if type(v) == "table" then walk(v) end
      end
    else
      for _, v in next, t do
        if type(v) == "table" then walk(v) end
      end
    end
  end
end

local function finish(v, with_sentinel)
  local tv = type(v)
  if tv == "table" then
    sentinel = with_sentinel and SENTINEL or NO_SENTINEL
    walk(v)
    sentinel = NO_SENTINEL
  elseif tv == "number" and tointeger then
    v = tointeger(v) or v
  end
  return v
end

local MAX_RETRIES = 8

--- Decodes JSON text. Returns the value, or nil and a message if the text is
-- not valid JSON (it never raises on bad input; a non-string raises).
function json.decode(text)
  if type(text) ~= "string" then
    error("json.decode: expected a string, got " .. type(text), 2)
  end
  local parts, opens, closes
  if not find(text, "\\u0000", 1, true) and not find(text, "\0", 1, true) then
    parts, opens, closes = scan_empty_arrays(text)
  end
  if parts then
    -- A `[]` inside a string makes the rewritten text fail exactly at the
    -- injected `\`: put that one back as it was and try again.
    for _ = 1, MAX_RETRIES do
      local ok, v = pcall(cj_decode, concat(parts))
      if ok then return finish(v, true) end
      local i = in_string_rewrite(parts, opens, closes, v)
      if not i then break end
      parts[2 * i] = sub(text, opens[i] + 1, closes[i])
    end
  end
  local ok, v = pcall(cj_decode, text)
  if not ok then return nil, v end
  if parts then
    -- Valid JSON with many `[]` inside strings: rewrite only structural ones.
    local ok2, v2 = pcall(cj_decode, rewrite_exact(text))
    if ok2 then return finish(v2, true) end
  end
  return finish(v, false)
end

return json
