#!/usr/bin/env lua
-- Generates the endpoint catalogue from Misskey's OpenAPI document and the
-- per-endpoint facts of endpoints.json:
--
--   lua tools/gen-endpoints.lua API_JSON ENDPOINTS_JSON [OUT]
--       [--permissions PERMISSIONS_JSON] [--streaming STREAMING_JSON]
--       [--types TYPES_OUT] [--streaming-types STREAMING_TYPES_OUT] [--channels CHANNELS_OUT]
--       [--docs DOCS_OUT] [--no-check]
--
-- OUT defaults to lua/misskey/endpoints.lua; then the LuaLS annotations go to
-- types/misskey-api.lua (entities, parameters, results, client.api; written by
-- misskey.types) and types/misskey-streaming.lua (channels and events, from
-- streaming.json), the channel names to lua/misskey/channels.lua (what
-- stream:channel checks a name against), and the endpoint list to
-- docs/endpoints.md (with an explicit OUT they are written only when
-- --types/--streaming-types/--channels/--docs say where).
-- permissions.json and streaming.json come from next to ENDPOINTS_JSON unless
-- --permissions/--streaming name them. --no-check skips the count checks (for
-- trimmed documents). Output is byte-identical on every Lua and every run.
package.path = "./lua/?.lua;./lua/?/init.lua;./tools/?.lua;" .. package.path
local cjson = require "cjson"
local openapi = require "misskey.openapi"
local types = require "misskey.types"
local streaming_types = require "streaming_types"

local function die(msg)
  io.stderr:write("gen-endpoints: ", msg, "\n")
  os.exit(1)
end

local args, flags = {}, {}
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--no-check" then
      flags.no_check = true
    elseif a == "--permissions" or a == "--types" or a == "--docs" or a == "--streaming"
        or a == "--streaming-types" or a == "--channels" then
      flags[a:sub(3)] = arg[i + 1] or die(a .. " needs a path")
      i = i + 1
    elseif a:sub(1, 2) == "--" then
      die("unknown flag " .. a)
    else
      args[#args + 1] = a
    end
    i = i + 1
  end
end
local api_path, ep_path, out_path = args[1], args[2], args[3]
if not api_path or not ep_path then
  die("usage: gen-endpoints.lua API_JSON ENDPOINTS_JSON [OUT] [--permissions P] [--streaming S] [--types T]"
    .. " [--streaming-types ST] [--channels C] [--docs D] [--no-check]")
end
if not out_path then
  out_path = "lua/misskey/endpoints.lua"
  flags.types = flags.types or "types/misskey-api.lua"
  flags["streaming-types"] = flags["streaming-types"] or "types/misskey-streaming.lua"
  flags.channels = flags.channels or "lua/misskey/channels.lua"
  flags.docs = flags.docs or "docs/endpoints.md"
end
local data_dir = ep_path:match("^(.*/)") or "./"
flags.permissions = flags.permissions or (data_dir .. "permissions.json")
flags.streaming = flags.streaming or (data_dir .. "streaming.json")

local function slurp(path)
  local f, err = io.open(path, "rb")
  if not f then die(err) end
  local s = f:read("*a")
  f:close()
  return s
end

local function sha256(path)
  local p = io.popen("sha256sum '" .. path:gsub("'", "'\\''") .. "'")
  local line = p and p:read("*l")
  if p then p:close() end
  local hex = line and line:match("^(%x+)")
  if not hex or #hex ~= 64 then die("sha256sum failed on " .. path) end
  return hex
end

local function write(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then die(err) end
  f:write(text)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then die(rerr) end
end

local function int(v) return math.floor(v + 0.5) end
local function decode(path) return cjson.decode(slurp(path)) end

local api, eps, perms = decode(api_path), decode(ep_path), decode(flags.permissions)
local version = api.info and api.info.version or die("api.json has no info.version")

local catalogue = assert(openapi.convert(api, { permissions = {} }))
for i, p in ipairs(perms.permissions) do catalogue.permissions[i] = p end
catalogue.source = {
  software = "misskey",
  version = version,
  api_json_sha256 = sha256(api_path),
  endpoints_json_sha256 = sha256(ep_path),
}

-- endpoints.json adds what api.json cannot say.
local seen = {}
for _, ep in ipairs(eps.endpoints) do
  local e = catalogue.endpoints[ep.name] or die("endpoints.json has " .. ep.name .. ", api.json has not")
  seen[ep.name] = true
  e.credential = ep.requireCredential == true
  e.permission = type(ep.permission) == "string" and ep.permission or nil
  e.secure = ep.secure == true
  e.moderator = ep.requireModerator == true
  e.admin = ep.requireAdmin == true
  e.get = ep.allowGet == true
  e.multipart = ep.requireFile == true or ep.contentType == "multipart/form-data"
  local s = tostring(ep.success)
  e.returns = (s == "204" and 204) or (s == "200" and 200) or "200|204"
  local rl = ep.rateLimit
  if type(rl) == "table" then
    e.limit = {
      duration = type(rl.duration) == "number" and int(rl.duration) or nil,
      max = type(rl.max) == "number" and int(rl.max) or nil,
      min_interval = type(rl.minInterval) == "number" and int(rl.minInterval) or nil,
    }
    e.rate_limited = true
  else
    e.limit, e.rate_limited = nil, nil
  end
  local errs = {}
  for _, er in ipairs(ep.errors or {}) do
    local status = er.httpStatusCode
    if type(status) ~= "number" then
      status = (er.kind == "server" and 500) or (er.kind == "permission" and 403) or 400
    end
    if errs[er.code] == nil then errs[er.code] = int(status) end
  end
  e.errors = errs
  if type(ep.description) == "string" then
    local line = ep.description:match("^%s*([^\n]*%S)")
    if line and #line > 200 then line = line:sub(1, 197) .. "..." end
    e.doc = line
  end
  e.write = openapi.is_write(ep.name, e)
end
for name in pairs(catalogue.endpoints) do
  if not seen[name] then die("api.json has " .. name .. ", endpoints.json has not") end
end

-- ---- counts (protocol.md section 10) ----
local names = {}
for name in pairs(catalogue.endpoints) do names[#names + 1] = name end
table.sort(names)
local counts = { endpoints = #names, permissions = #catalogue.permissions, limited = 0, get = 0, multipart = 0,
  ["204"] = 0 }
for _, name in ipairs(names) do
  local e = catalogue.endpoints[name]
  if e.limit then counts.limited = counts.limited + 1 end
  if e.get then counts.get = counts.get + 1 end
  if e.multipart then counts.multipart = counts.multipart + 1 end
  if e.returns == 204 then counts["204"] = counts["204"] + 1 end
end
local EXPECTED = { endpoints = 434, permissions = 85, limited = 61, get = 25, multipart = 1, ["204"] = 156 }
if not flags.no_check then
  for _, k in ipairs{ "endpoints", "permissions", "limited", "get", "multipart", "204" } do
    if counts[k] ~= EXPECTED[k] then
      die(("count %s: expected %d, got %d (use --no-check for a trimmed document)"):format(k, EXPECTED[k], counts[k]))
    end
  end
end

local header = ("-- GENERATED by tools/gen-endpoints.lua from Misskey %s (api.json sha256 %s); do not edit.")
  :format(version, catalogue.source.api_json_sha256)
write(out_path, openapi.serialize(catalogue, header))

local function one_line(s)
  return (s:gsub("[\r\n]+", " "))
end

local function rate(e)
  local l = e.limit
  if not l then return nil end
  local parts = {}
  if l.max and l.duration then
    local d = l.duration
    local function per(n, u) return ("%d %s"):format(d / n, u) end
    local unit = (d % 3600000 == 0 and per(3600000, "h")) or (d % 60000 == 0 and per(60000, "min"))
      or (d % 1000 == 0 and per(1000, "s")) or per(1, "ms")
    parts[#parts + 1] = ("%d per %s"):format(l.max, unit:gsub("^1 ", ""))
  end
  if l.min_interval then parts[#parts + 1] = ("%g s apart"):format(l.min_interval / 1000) end
  return table.concat(parts, ", ")
end

-- ---- LuaLS annotations (misskey.types; streaming from streaming.json) ----
if flags.types then
  local text = assert(types.generate{
    document = api, catalogue = catalogue, source = "Misskey " .. version, generator = "tools/gen-endpoints.lua",
  })
  write(flags.types, text)
end
local st = (flags["streaming-types"] or flags.channels) and decode(flags.streaming)
if flags.channels then
  write(flags.channels, streaming_types.channel_module(st, ("Misskey %s's streaming.json"):format(version)))
end
if flags["streaming-types"] then
  local components = type(api.components) == "table" and api.components.schemas or {}
  local function entity(name)
    if components[name] ~= nil then return types.entity_class(name) end
    return nil
  end
  write(flags["streaming-types"], streaming_types.generate(st, entity, ("Misskey %s's streaming.json"):format(version)))
end

-- ---- docs/endpoints.md ----
if flags.docs then
  local md = {
    "# Endpoints",
    "",
    ("GENERATED by `tools/gen-endpoints.lua` (`make endpoints`) from Misskey %s; do not edit."):format(version),
    "",
    ("%d endpoints, %d permissions; %d rate-limited, %d allow GET, %d multipart, %d return 204."):format(
      counts.endpoints, counts.permissions, counts.limited, counts.get, counts.multipart, counts["204"]),
    "Credential: `yes` needs a token, `mod`/`admin` a moderator/administrator account.",
    "Secure endpoints accept only a native (web login) token. Rate limits are per user (or IP),",
    "scaled by the role's rate limit factor.",
    "",
    "| endpoint | permission | credential | secure | rate limit | returns | notes |",
    "|---|---|---|---|---|---|---|",
  }
  for _, name in ipairs(names) do
    local e = catalogue.endpoints[name]
    local cred = e.admin and "admin" or (e.moderator and "mod" or (e.credential and "yes" or "no"))
    local notes = {}
    if e.get then notes[#notes + 1] = "GET" end
    if e.multipart then notes[#notes + 1] = "multipart" end
    if e.paginate then notes[#notes + 1] = "paginate: " .. e.paginate .. (e.date and "+date" or "") end
    if e.doc then notes[#notes + 1] = one_line(e.doc):gsub("|", "\\|") end
    md[#md + 1] = ("| `%s` | %s | %s | %s | %s | %s | %s |"):format(name,
      e.permission and ("`" .. e.permission .. "`") or "", cred, e.secure and "yes" or "", rate(e) or "",
      tostring(e.returns), table.concat(notes, "; "))
  end
  md[#md + 1] = ""
  md[#md + 1] = "## Permissions"
  md[#md + 1] = ""
  for _, p in ipairs(catalogue.permissions) do md[#md + 1] = "- `" .. p .. "`" end
  md[#md + 1] = ""
  write(flags.docs, table.concat(md, "\n"))
end

io.write(("gen-endpoints: %d endpoints, %d permissions, %d rate-limited, %d GET, %d multipart, %d return 204 -> %s\n")
  :format(counts.endpoints, counts.permissions, counts.limited, counts.get, counts.multipart, counts["204"], out_path))
