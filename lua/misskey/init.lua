--- misskey: the Misskey API client for Lua.
-- @usage
-- local misskey = require "misskey"
-- local client = misskey.new{ host = "misskey.example", token = os.getenv("MISSKEY_TOKEN") }
-- local note = assert(client:request("notes/create", { text = "hello" }))
local Client = require "misskey.client"
local json = require "misskey.json"

local misskey = {
  _VERSION = Client._VERSION,
  --- JSON null, as decoded and as encoded.
  null = json.null,
  --- Marks a table as a JSON array: `misskey.array{}` encodes as `[]`.
  array = json.array,
}

--- Makes a client. See README "Client options".
function misskey.new(opts)
  return Client.new(opts)
end

--- The process's default engine (the C core's curl multi handle, sockets and timers).
function misskey.engine()
  return require("misskey.transport.curl").default_engine()
end

return misskey
