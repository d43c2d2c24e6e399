--- misskey: the Misskey API client for Lua.
-- @usage
-- local misskey = require "misskey"
-- local client = misskey.new{ host = "misskey.example", token = os.getenv("MISSKEY_TOKEN") }
-- local note = assert(client:request("notes/create", { text = "hello" }))
local Client = require "misskey.client"
local json = require "misskey.json"
local loop = require "misskey.loop"

--- The module: clients, bots, the scheduler, JSON's null and arrays.
---@class misskey
---@field _VERSION string the library's version
---@field null misskey.Null JSON null, as decoded and as encoded
local misskey = { _VERSION = Client._VERSION }

--- JSON null, as decoded and as encoded.
misskey.null = json.null

--- Marks a table as a JSON array: `misskey.array{}` encodes as `[]`.
misskey.array = json.array

--- Makes a client. See README "Client options". (Client.new itself, not a
-- wrapper: a misuse error then names the caller's line on every Lua.)
misskey.new = Client.new

--- The permissions a token needs for the endpoints `names` (sorted, unique):
-- `misskey.permissions_for{ "notes/create", "drive/files/create" }`. An
-- unknown endpoint raises, naming the nearest known ones.
misskey.permissions_for = require("misskey.catalogue").permissions_for

--- misskey.bot(client[, opts]) -> a bot (see README "Bots").
---@param client misskey.Client
---@param opts? misskey.BotOptions
---@return misskey.Bot
function misskey.bot(client, opts)
  local bot = require("misskey.bot").new(client, opts) -- not a tail call: see misskey.argcheck
  return bot
end

--- The process's default engine (the C core's curl multi handle, sockets and timers).
misskey.engine = require("misskey.engine").default

-- The scheduler (see README "Concurrency").
misskey.run = loop.run
misskey.spawn = loop.spawn
misskey.sleep = loop.sleep
misskey.gather = loop.gather
misskey.stop = loop.stop
misskey.step = loop.step
misskey.on_error = loop.on_error
misskey.current = loop.current

-- Loaded on first use, so `require "misskey"` stays as light as it was.
local LAZY = {
  --- misskey.webhook: receiving Misskey's webhook deliveries (README "Webhooks"): the same
  -- module as `require "misskey.webhook"`, loaded on first use.
  webhook = "misskey.webhook",
}

setmetatable(misskey, {
  __index = function(t, k)
    local name = LAZY[k]
    if not name then return nil end
    local m = require(name)
    rawset(t, k, m)
    return m
  end,
})

return misskey
