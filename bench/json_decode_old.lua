-- misskey.json's decoder before commit "json: decode in C" (lua-cjson, then a Lua walk that
-- marks arrays and makes integers, with empty arrays found by rewriting `[]` in the text).
-- Kept only so that bench/json_bench.lua can compare the C decoder with it.
--
--   local old_decode = dofile("bench/json_decode_old.lua")

local cjson = require "cjson"

local type, next, tonumber, error, pcall = type, next, tonumber, error, pcall
local setmetatable, rawget = setmetatable, rawget
local find, sub, byte, match = string.find, string.sub, string.byte, string.match
local concat = table.concat
local tointeger = rawget(math, "tointeger")    -- nil on Lua 5.1 / LuaJIT

local cj = cjson.new()
cj.decode_invalid_numbers(false)     -- reject NaN, Infinity, 0x10, 012
local cj_decode = cj.decode

local ARRAY_MT = { __jsontype = "array" }
local json = {}


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


return json.decode
