--- misskey.positions: where a stream stopped, kept across restarts (the
-- stream's `positions` option), so a program that starts again backfills from there.
--
-- One JSON file per stream, data only (decoded, every id checked, never run):
--   { "version": 1, "host": "https://misskey.example",
--     "positions": { "main": "<id>", "homeTimeline": "<id>", "antenna {\"antennaId\":\"x\"}": "<id>" } }
-- Keys are a channel's name and params ("main": the main channel's
-- notifications). The file is replaced whole and atomically by the C core
-- (core.write_private: a 0600 temp file made with O_EXCL|O_NOFOLLOW, fsync,
-- rename) in a 0700 directory, and read with core.read_private, which refuses
-- a file that group or others may read.
local core = require "misskey.core"
local env = require "misskey.env"
local errors = require "misskey.errors"
local ids = require "misskey.id"
local json = require "misskey.json"

local positions = {}

--- Keys kept in one file at most (a stream has at most 32 channels; the rest
-- are positions of channels an earlier run had, kept for a later one).
positions.MAX_KEYS = 64

--- The directory of position files: $XDG_STATE_HOME/misskey/positions, else
-- $HOME/.local/state/misskey/positions; nil, why when neither is set.
---@return string|nil dir
---@return string|nil why
function positions.dir()
  local dir, why = env.dir("state")
  if not dir then return nil, why end
  return dir .. "/misskey/positions"
end

--- The file of option value `spec` for `client`: true (a name made of the
-- host and a fingerprint of the token, so two accounts never share a file), a
-- name ([A-Za-z0-9_.-], not starting with "."), or an absolute path.
-- Returns path, or nil and why the value cannot be used.
---@param spec true|string
---@param client table a misskey.Client
---@return string|nil path
---@return string|nil why
function positions.path(spec, client)
  local name
  if spec == true then
    local host = tostring(client.host or "server"):gsub("[^%w%.%-]", "_")
    -- 48 bits of SHA-256: tells accounts apart, says nothing usable about the token.
    local token = client:token()
    local who = token and core.sha256(token, "hex"):sub(1, 12) or "anonymous"
    name = host .. "-" .. who
  elseif type(spec) == "string" and spec:sub(1, 1) == "/" then
    if spec:sub(-1) == "/" then return nil, "a file path expected, got a directory" end
    return spec
  elseif type(spec) == "string" and spec:find("^[%w_%-][%w_%.%-]*$") and #spec <= 128 then
    name = spec
  else
    return nil, 'true, a name ([A-Za-z0-9_.-]) or an absolute path expected, got ' .. tostring(spec)
  end
  local dir, why = positions.dir()
  if not dir then return nil, why end
  return dir .. "/" .. name .. ".json"
end

--- positions.key(name, params) -> the key of a channel: its name, then its
-- params as JSON with sorted keys (two channels that page alike share one).
---@param name string
---@param params? table
---@return string
function positions.key(name, params)
  if params == nil or next(params) == nil then return name end
  local keys = {}
  for k in pairs(params) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local ok, v = pcall(json.encode, params[k])
    parts[i] = ("%q:%s"):format(k, ok and v or "?")
  end
  return name .. " {" .. table.concat(parts, ",") .. "}"
end

local function valid_id(v)
  return type(v) == "string" and #v <= ids.MAX and v:find("^%w+$") ~= nil
end

--- load(path, base_url) -> { key = id } (empty for a missing file) | nil, msg, err
-- (err.kind "invalid", err.path). Positions of another server are not used.
---@param path string
---@param base_url string
---@return table|nil positions
---@return string|nil message
---@return table|nil err
function positions.load(path, base_url)
  local text, msg, reason = core.read_private(path)
  if not text then
    if reason == "missing" then return {} end
    return errors.fail("invalid", "positions: " .. msg, { path = path, reason = reason })
  end
  local data = json.decode(text)
  if type(data) ~= "table" or type(data.positions) ~= "table" then
    return errors.fail("invalid", "positions: " .. path .. " is not a positions file (invalid JSON)",
      { path = path, reason = "json" })
  end
  if data.host ~= base_url then
    return errors.fail("invalid", ("positions: %s holds positions of %s, not of %s; not used"):format(
      path, tostring(data.host), base_url), { path = path, reason = "host" })
  end
  local out, n = {}, 0
  for k, v in pairs(data.positions) do
    if type(k) == "string" and #k <= 4096 and valid_id(v) and n < positions.MAX_KEYS then
      out[k], n = v, n + 1
    end
  end
  return out
end

--- save(path, base_url, map) -> true | nil, msg, err (err.kind "invalid", err.path)
---@param path string
---@param base_url string
---@param map table<string, string>
---@return boolean|nil ok
---@return string|nil message
---@return table|nil err
function positions.save(path, base_url, map)
  local text = json.pretty({ version = 1, host = base_url, positions = map }) .. "\n"
  local ok, msg = core.write_private(path, text)
  if not ok then return errors.fail("invalid", "positions: " .. msg, { path = path, reason = "io" }) end
  return true
end

return positions
