--- JSON for the misskey client.
--
-- Decoding is misskey.core's (C, `core.json_decoder`, src/json.c). Encoding is
-- C too for plain data (`core.json_encoder`), with this file's Lua encoder as
-- the reference: the C path gives the same bytes or nil, and on nil the Lua
-- encoder gives the text or the error with its path (it also does json.pretty).
-- lua-cjson 2.1.0 is not used: neither of its directions does what the client
-- needs (and not loading it spares a process ~200 KiB of resident memory):
--   * on the way in, it gives plain tables for both `[]` and `{}` (so an empty
--     array would re-encode as `{}`), and on Lua 5.3+ every number as a float;
--   * on the way out, it has no empty-array marker, escapes `/`, writes 14
--     significant digits, and cannot say which parameter is bad.
--
-- API:
--   json.null                 the null sentinel (the NULL light userdata: == cjson.null)
--   json.array([t])           marks t (default {}) as a JSON array, returns t
--   json.is_array(t)          true if t is marked as an array
--   json.encode(v [, name])   JSON text; raises "name.path: reason" on bad input
--   json.decode(text [, opts]) value, or nil and a message on invalid JSON;
--                             opts.null = "nil" leaves null object members out
--   json.pretty(v [, name])   indented JSON, keys sorted (for the CLI)
--
-- Decoding, in one pass in C (faster than lua-cjson alone):
--   * strict RFC 8259: any top-level value; no NaN/Infinity, hex, leading zeros
--     or `+`, raw control characters in strings, bad escapes, single quotes,
--     trailing commas or trailing text; at most 1000 nested arrays/objects.
--     Invalid JSON gives nil and "invalid JSON at character N: reason".
--   * every array, empty ones included, gets the json.array marker; objects are
--     plain tables; of duplicate keys the last wins.
--   * null is json.null; with `{ null = "nil" }` an object member that is null
--     is left out (as if absent; of duplicate keys a last null still removes
--     the first), while nulls in arrays ([1,null,3] keeps its 3 items) and a
--     null root stay json.null.
--   * on Lua 5.3+ a digits-only number that fits 64 bits is read as an exact
--     integer, and any other number with an integral value in range (`1.0`,
--     `1e3`) becomes an integer too; other numbers are floats, correctly
--     rounded (whatever the C locale's decimal point). On Lua 5.1/LuaJIT every
--     number is a float. `-0` (and `-0.0`) is the float -0.0 everywhere, and
--     encodes back as `-0`. A number beyond a double's range (`1e400`) is
--     refused: no encoder could write it back.
--   * strings come out as well-formed UTF-8: `\uXXXX` escapes become UTF-8
--     (surrogate pairs joined), and a lone surrogate escape or raw bytes that
--     are not well-formed UTF-8 become U+FFFD (one per ill-formed part); `\u0000`
--     comes through as a NUL byte. json.encode refuses strings and keys that
--     are not well-formed UTF-8, naming their path, so whatever json.decode
--     gives, json.encode writes again.

local core = require "misskey.core"

local type, next, tostring, tonumber, error =
  type, next, tostring, tonumber, error
local getmetatable, setmetatable, rawget = getmetatable, setmetatable, rawget
local find, gsub, format, byte = string.find, string.gsub, string.format, string.byte
local concat, sort = table.concat, table.sort
local huge = math.huge
local math_type = rawget(math, "type")         -- nil on Lua 5.1 / LuaJIT

local json = {}

--- JSON null as decoded and encoded (`misskey.null`). A JSON `null` member of a
--- reply is this value, or left out with the client option `null = "nil"`.
---@alias misskey.Null lightuserdata

local null = core.json_decoder({})("null") -- the NULL light userdata: equal to cjson.null
---@type misskey.Null
json.null = null

local MAX_DEPTH = 1000
local INT_LIMIT = 9007199254740992.0 -- 2^53 (written out: see argcheck.MAX_BYTES)

-- ------------------------------------------------------------------------
-- arrays

-- `__jsontype = "array"` is also what dkjson uses, so its arrays are honoured.
local ARRAY_MT = { __jsontype = "array" }

local function is_array(t)
  if type(t) ~= "table" then return false end
  local mt = getmetatable(t)
  return type(mt) == "table" and rawget(mt, "__jsontype") == "array"
end
json.is_array = is_array

--- Marks `t` (default: a new table) as a JSON array, so that it encodes as `[]`
-- even when empty; returns it.
---@param t? table
---@return table
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

-- ------------------------------------------------------------------------
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

-- The position of the first byte of s that is not part of well-formed UTF-8
-- (no overlong forms, no surrogates, nothing above U+10FFFF), or nil.
local function utf8_error(s)
  local i = find(s, "[\128-\255]")
  while i do
    local c, lo, hi = byte(s, i), 0x80, 0xBF
    local need
    if c >= 0xC2 and c <= 0xDF then
      need = 1
    elseif c >= 0xE0 and c <= 0xEF then
      need = 2
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      need = 3
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else
      return i
    end
    for k = 1, need do
      local b = byte(s, i + k)
      if not b or b < lo or b > hi then return i end
      lo, hi = 0x80, 0xBF
    end
    i = find(s, "[\128-\255]", i + need + 1)
  end
  return nil
end

-- snprintf writes the C locale's decimal point (',' in some, several bytes in a
-- few) and tonumber reads it back the same way; JSON wants '.'. (The C encoder
-- makes the same change.)
local function dot_point(s)
  if find(s, "[^%d%-+e.]") then return (gsub(s, "[^%d%-+e]+", ".")) end
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
  if v == 0 and 1 / v < 0 then return "-0" end -- format("%d") would drop the sign
  if v % 1 == 0 and v > -INT_LIMIT and v < INT_LIMIT then
    return format("%d", v)
  end
  local s = format("%.14g", v)
  if tonumber(s) ~= v then
    s = format("%.15g", v)
    if tonumber(s) ~= v then
      s = format("%.16g", v)
      if tonumber(s) ~= v then s = format("%.17g", v) end
    end
  end
  return dot_point(s)
end

-- ------------------------------------------------------------------------
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

-- A key must be well-formed UTF-8; the error names the table (not the key's bytes).
local function check_key(k, d)
  local bad = utf8_error(k)
  if bad then fail(d, format("invalid UTF-8 in a key (byte %d)", bad)) end
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

-- ------------------------------------------------------------------------
-- encode

local buf, nb, seen
-- Weak keys: after an encode that raised, the user's tables are not kept.
local WEAK_KEYS = { __mode = "k" }

local encode_value

-- Entering table `t` at depth `d` (both encoders): refuses a cycle and too deep
-- a nesting, marks it seen until it is done, and returns its array length (nil: an object).
local function enter_table(t, d)
  if seen[t] then fail(d, "cycle detected") end
  if d >= MAX_DEPTH then
    fail(d, "cannot encode more than " .. MAX_DEPTH .. " nested tables")
  end
  local n = array_length(t, d)
  seen[t] = true
  return n
end

-- The items of array `t` (length n >= 1, at depth d) between `open` and
-- `close`, `sep` between them, each written by value(v, depth, indent).
local function encode_items(t, n, d, open, sep, close, value, indent)
  local d1 = d + 1
  for i = 1, n do
    local v = t[i]
    if v == nil then bad_table(t, d) end
    nb = nb + 1; buf[nb] = i == 1 and open or sep
    keys[d1] = i
    value(v, d1, indent)
  end
  nb = nb + 1; buf[nb] = close
end

local function encode_table(t, d)
  local n = enter_table(t, d)
  local d1 = d + 1
  if n then
    if n == 0 then
      nb = nb + 1; buf[nb] = "[]"
    else
      encode_items(t, n, d, "[", ",", "]", encode_value)
    end
  else
    local start = nb
    for k, v in next, t do
      if type(k) ~= "string" then bad_table(t, d) end
      check_key(k, d)
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
    local bad = utf8_error(v)
    if bad then fail(d, format("invalid UTF-8 in a string (byte %d)", bad)) end
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

-- The reference encoder: the text, or raises naming the path (name checked).
local function encode_lua(value, name)
  root_name = name
  buf, nb, seen, keys = {}, 0, setmetatable({}, WEAK_KEYS), {}
  encode_value(value, 0)
  local out = concat(buf, "", 1, nb)
  buf, seen = nil, nil
  return out
end

-- The C fast path: the same text as encode_lua for plain data (strings, numbers,
-- booleans, null, tables without a metatable or marked as arrays), else nil.
local encode_c = core.json_encoder(ARRAY_MT)

--- Encodes value as compact JSON. `name` (default "value") starts the path
-- in error messages, e.g. `params.poll.choices[3]: cannot encode a function`.
function json.encode(value, name)
  if name ~= nil and type(name) ~= "string" then check_name(name, "encode") end
  return encode_c(value) or encode_lua(value, name or "value")
end

-- For the specs: each encoder alone.
function json._encode_lua(value, name)
  return encode_lua(value, check_name(name, "encode"))
end
json._encode_c = encode_c

-- ------------------------------------------------------------------------
-- pretty

local pretty_value

local function pretty_table(t, d, indent)
  local n = enter_table(t, d)
  local d1 = d + 1
  local inner = indent .. "  "
  if n then
    if n == 0 then
      nb = nb + 1; buf[nb] = "[]"
    else
      encode_items(t, n, d, "[\n" .. inner, ",\n" .. inner, "\n" .. indent .. "]", pretty_value, inner)
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
        check_key(k, d)
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

-- ------------------------------------------------------------------------
-- decode

--- Decodes JSON text. Returns the value, or nil and a message if the text is
-- not valid JSON (it never raises on bad input; a non-string raises).
-- Arrays come back marked (`json.is_array`), `null` as `json.null`; with
-- `opts = { null = "nil" }` object members that are null are left out.
-- @function json.decode
-- @tparam string text
-- @tparam[opt] table opts
-- @return the value, or nil and "invalid JSON at character N: reason"
json.decode = core.json_decoder(ARRAY_MT)

-- Internal: json._decode_body(transfer, if_empty) decodes a finished transfer's body where
-- libcurl left it (no Lua string of the body), as json.decode would; if_empty for no body.
-- It shares json.decode's cache of object keys.
json._decode_body = core.json_decoder(ARRAY_MT, "body", json.decode) -- (transfer, if_empty, drop_nulls)

return json
