--- misskey.catalogue.server: a server's own catalogue (client:schema()):
-- its GET /api.json converted by misskey.openapi, cached on disk per host,
-- software and version so the next run reads a file instead.
local catalogue = require "misskey.catalogue"
local core = require "misskey.core"
local env = require "misskey.env"
local errors = require "misskey.errors"
local json = require "misskey.json"
local openapi = require "misskey.openapi"

local format = string.format

local server = {}

--- The cache directory: $XDG_CACHE_HOME/misskey, else ~/.cache/misskey (nil if neither is known).
---@return string|nil
function server.cache_dir()
  local dir = env.dir("cache")
  return dir and dir .. "/misskey"
end

-- A file name part: safe characters only, at most 64 of them (the server picks the version).
local function safe(s)
  return (tostring(s):gsub("[^%w%.%-_]", "_"):sub(1, 64))
end

--- The cache file of a host, software and version.
function server.cache_path(dir, host, software, version)
  return format("%s/schema-%s-%s-%s.json", dir, safe(host), safe(software), safe(version))
end

-- The cache is data, never code: JSON through misskey.json, written and read as a private
-- file (no symbolic links, the current user's own). Caches of earlier releases were Lua
-- source that ran when loaded; their `.lua` names are never read, and one is removed when
-- its replacement is written.
local CACHE_FORMAT = "misskey-catalogue/1"
local CACHE_MAX = 16 * 1024 * 1024

local function cache_read(path, host, software, version)
  local text = core.read_private(path, CACHE_MAX)
  if not text then return nil end
  local doc = json.decode(text)
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
  -- A document the encoder refuses (a number that decoded to infinity) is not cached.
  local ok, text = pcall(json.encode, {
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

--- server.fetch(client) -> summary | nil, message, err: client:schema() (see
-- misskey.client): nodeinfo + meta for the version, then the cache, else GET
-- /api.json converted by misskey.openapi.
function server.fetch(client)
  local software, version
  local res, info = client:http{ method = "GET", path = "/nodeinfo/2.1", json = true }
  if res and res.status == 200 and type(info) == "table" and type(info.software) == "table" then
    software = type(info.software.name) == "string" and info.software.name or nil
    version = type(info.software.version) == "string" and info.software.version or nil
  end
  local meta = client:request("meta", { detail = false })
  if type(meta) == "table" and type(meta.version) == "string" then version = meta.version end
  software = software or "misskey"
  local dir = server.cache_dir()
  local path = dir and version and server.cache_path(dir, client.host, software, version)
  if path then
    local cat = cache_read(path, client.host, software, version)
    if cat then
      client:use_catalogue(cat)
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
  local cat, why = openapi.convert(doc, { software = software, permissions = catalogue.permissions() })
  if not cat then
    return errors.fail("decode", "GET /api.json: " .. why, { status = res.status, endpoint = "/api.json" })
  end
  version = version or cat.source.version
  cat.source.version = version
  cat.source.host = client.host
  client:use_catalogue(cat)
  local summary = { software = software, version = version, endpoints = count(cat), source = "server" }
  if dir then
    path = server.cache_path(dir, client.host, software, version)
    local ok, werr = cache_write(path, client.host, software, version, cat)
    if ok then summary.path = path else summary.cache_error = werr end
  end
  return summary
end

return server
