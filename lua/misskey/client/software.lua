--- misskey.client.software: client:software(), what the server runs, from its
-- nodeinfo (`GET /nodeinfo/2.1`, else 2.0), asked once per client and kept.
-- The stream asks it when a channel name is not one of Misskey's: Misskey
-- itself has no other channels, a fork may. Part of the client: it adds the
-- method to the Client class (misskey.client calls it with the class).
local argcheck = require "misskey.argcheck"
local errors = require "misskey.errors"

-- A nodeinfo document is a few KiB; anything larger is not one.
local MAX_SIZE = 256 * 1024
local PATHS = { "/nodeinfo/2.1", "/nodeinfo/2.0" }

-- nodeinfo's software name: lower case letters, digits and '-' (nodeinfo's own rule).
local function software_of(info)
  local sw = type(info) == "table" and info.software
  local name = type(sw) == "table" and sw.name
  if type(name) ~= "string" or not name:lower():find("^[a-z0-9%-]+$") or #name > 64 then return nil end
  local version = type(sw.version) == "string" and sw.version:sub(1, 128) or nil
  return { name = name:lower(), version = version }
end

---@param Client misskey.Client the client class
return function(Client)
  --- client:software() -> name, version | nil, message, err: the software the
  -- server runs ("misskey", "sharkey", ...; lower case) and its version, from
  -- nodeinfo. Asked once: the answer is kept by the client, and so is a server's
  -- reply that says nothing (a network failure is asked again next time).
  ---@return string|nil name
  ---@return string|nil version_or_message
  ---@return misskey.Error|nil err
  function Client:software()
    argcheck.self(self, Client, "client", "software")
    local known = self._software
    if not known then
      local status
      for _, path in ipairs(PATHS) do
        local res, info, err = self:http{ path = path, json = true, max_size = MAX_SIZE }
        if not res then return nil, info, err end
        status = res.status
        local sw = res.status == 200 and software_of(info)
        if sw then
          known = sw
          break
        end
      end
      if not known then
        local msg, err = errors.new("http", ("GET %s: HTTP %d: the server does not say what software it runs")
          :format(PATHS[#PATHS], status), { status = status, endpoint = PATHS[#PATHS] })
        known = { message = msg, err = err }
      end
      self._software = known
    end
    if known.name then return known.name, known.version end
    return nil, known.message, known.err
  end
end
