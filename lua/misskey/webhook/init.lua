--- misskey.webhook: receiving Misskey's webhook deliveries (README "Webhooks").
-- @usage
-- local webhook = require "misskey.webhook"
-- local listener = assert(webhook.listen{ port = 8080, secret = os.getenv("HOOK_SECRET"),
--   on = { mention = function(note, event) print(note.text) end } })
-- listener:run()
local event = require "misskey.webhook.event"
local handler = require "misskey.webhook.handler"
local listen = require "misskey.webhook.listen"
local seen = require "misskey.webhook.seen"

--- Receiving webhook deliveries (require "misskey.webhook").
---@class misskey.webhook
local webhook = {}

--- webhook.verify(headers, secret) -> true | nil, message, err (kind "auth", status 401).
webhook.verify = require "misskey.webhook.verify"

--- webhook.parse(body[, opts]) -> event | nil, message, err (kind "invalid", status 400 or 413).
webhook.parse = event.parse

--- webhook.handler{ secret, on, … } -> function(method, headers, body) -> status, headers, body.
webhook.handler = handler.new

--- webhook.listen{ secret, on, host, port, … } -> listener | nil, message, err.
webhook.listen = listen.new

--- webhook.seen([size]) -> the default store of handled event ids (two generations).
webhook.seen = seen.new

--- The default cap on a delivery's body, in bytes (1 MiB).
webhook.MAX_SIZE = event.MAX_SIZE

--- Where the known event types keep their payload: `{ mention = "note", follow = "user", … }`.
webhook.PAYLOAD = event.PAYLOAD

--- The metatable of parsed events.
webhook.Event = event.Event

return webhook
