--- misskey.testing.common: the fake's constants and small value helpers.
local json = require "misskey.json"

local null, array, is_array = json.null, json.array, json.is_array
local type, pairs = type, pairs
local floor = math.floor
local format, concat = string.format, table.concat

local common = {
  VERSION = "2026.5.4",
  MAX_NOTE_TEXT_LENGTH = 3000,
  -- 2026-05-21T00:00:00.000Z (Misskey 2026.5.4's release day), in unix ms.
  DEFAULT_NOW = 1779321600000,
  -- aid/aidx count milliseconds from 2000-01-01T00:00:00Z.
  TIME2000 = 946684800000,
  -- The 4 "node" characters of an aidx id; Misskey picks them at random per process.
  AIDX_NODE = "fake",
}

local B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

function common.base36(n, width)
  local digits = {}
  for i = width, 1, -1 do
    local d = n % 36
    digits[i] = B36:sub(d + 1, d + 1)
    n = floor(n / 36)
  end
  return concat(digits)
end

-- ISO-8601 UTC with milliseconds, as JavaScript's Date#toISOString.
function common.iso(ms)
  local s = floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. format(".%03dZ", ms - s * 1000)
end

function common.trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

function common.copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- A deep copy that keeps array marks and null (for fake.requests).
local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = deep_copy(x) end
  if is_array(v) then array(c) end
  return c
end
common.deep_copy = deep_copy

-- nil as JSON's null (for the packed shapes, where Misskey sends null).
function common.nn(v)
  if v == nil then return null end
  return v
end

function common.present(v)
  return v ~= nil and v ~= null
end

-- A request header by its lower-case name, whatever the case it was given in.
function common.header(headers, name)
  for k, v in pairs(headers or {}) do
    if type(k) == "string" and k:lower() == name then return v end
  end
  return nil
end

--- The token of an `Authorization: Bearer ...` header, or nil.
---@param headers table?
---@return string?
function common.bearer(headers)
  local authorization = common.header(headers, "authorization")
  if type(authorization) == "string" and authorization:sub(1, 7) == "Bearer " then return authorization:sub(8) end
  return nil
end

return common
