--- webhook.parse: a delivery's body -> a typed event.
-- Misskey posts `{server, hookId, userId, eventId, createdAt, type, body}`, with
-- `body = {note = …}` (note, reply, renote, mention) or `{user = …}` (follow,
-- unfollow, followed). A type this module does not know (a newer server, a
-- system webhook) parses all the same: refusing it would lose it for good,
-- since Misskey never retries a 4xx.
local errors = require "misskey.errors"
local json = require "misskey.json"

local event = {}

--- The default cap on a body, in bytes (1 MiB; Misskey's largest deliveries, a
-- note with its renote, reply and files, are a few KiB).
event.MAX_SIZE = 1024 * 1024

--- Where each known type keeps its payload in `body`.
event.PAYLOAD = {
  note = "note", reply = "note", renote = "note", mention = "note",
  follow = "user", unfollow = "user", followed = "user",
}

--- The metatable of parsed events (`getmetatable(e) == event.Event`).
---@class misskey.webhook.Event
---@field type string "mention", "note", "follow", ... (or a type this library does not know)
---@field eventId string
---@field hookId? string
---@field userId? string the webhook's owner
---@field createdAt? number epoch milliseconds
---@field server? string
---@field body any the delivery's body
---@field note? misskey.Note note, reply, renote, mention: body.note
---@field user? misskey.UserDetailed follow, unfollow, followed: body.user
local Event = { __name = "misskey.webhook.Event" }
Event.__index = Event
event.Event = Event

function Event:__tostring()
  return ("misskey.webhook.Event (%s %s)"):format(self.type, self.eventId)
end

local function invalid(message, status, reason)
  return errors.fail("invalid", "webhook: " .. message, { status = status or 400, reason = reason or "shape" })
end

local function is_object(v)
  return type(v) == "table" and v ~= json.null and not json.is_array(v)
end

-- A type names a handler: letters first, then letters, digits and `_-.:`, at most 64.
local function valid_type(t)
  return type(t) == "string" and #t <= 64 and t:find("^%a[%w_%-%.:]*$") ~= nil
end

-- Absent or null (a system webhook has no owner), else of the type Misskey sends.
local function optional(e, key, lua_type)
  local v = e[key]
  return v == nil or v == json.null or type(v) == lua_type
end

local function check_options(opts)
  if opts == nil then return event.MAX_SIZE, nil end
  if type(opts) ~= "table" then error("bad argument #2 to 'parse' (table of options expected)", 3) end
  local max = opts.max_size
  if max == nil then max = event.MAX_SIZE end
  if type(max) ~= "number" or max ~= max or max < 1 then
    error("bad option 'max_size' to 'parse' (a number of bytes >= 1 expected, got " .. tostring(max) .. ")", 3)
  end
  if opts.null ~= nil and opts.null ~= "nil" and opts.null ~= "null" then
    error("bad option 'null' to 'parse' (\"nil\" or \"null\" expected)", 3)
  end
  return max, opts.null == "nil" and opts or nil
end

--- webhook.parse(body[, { max_size = 1 MiB, null = "nil" }]) -> event | nil, message, err
-- The event is the delivery's JSON object as Misskey sent it (`type`, `eventId`,
-- `hookId`, `userId`, `createdAt` in epoch ms, `server`, `body`), and for the
-- known types `event.note` or `event.user` (the body's payload) as well.
-- Anything else is `err.kind = "invalid"` with `err.status` (413 over
-- `max_size`, else 400) and `err.reason` ("too_large", "json" or "shape").
-- `null = "nil"` leaves null members out, as the client's option does.
---@param body string
---@param opts? { max_size?: integer, null?: "nil"|"null" }
---@return misskey.webhook.Event|nil event
---@return string|nil message
---@return misskey.Error|nil err
function event.parse(body, opts)
  if type(body) ~= "string" then
    error("bad argument #1 to 'parse' (string expected, got " .. type(body) .. ")", 2)
  end
  local max, decode_opts = check_options(opts)
  if #body > max then
    return invalid(("body of %d bytes is over the cap of %d"):format(#body, max), 413, "too_large")
  end
  local e, jerr = json.decode(body, decode_opts)
  if e == nil then return invalid("body is not JSON (" .. tostring(jerr) .. ")", 400, "json") end
  if not is_object(e) then return invalid("body is not a JSON object") end
  if not valid_type(e.type) then return invalid("missing or malformed 'type'") end
  if type(e.eventId) ~= "string" or e.eventId == "" or #e.eventId > 128 then
    return invalid("missing or malformed 'eventId'")
  end
  if not (optional(e, "hookId", "string") and optional(e, "userId", "string")
      and optional(e, "server", "string") and optional(e, "createdAt", "number")) then
    return invalid("'hookId', 'userId', 'server' or 'createdAt' of the wrong type")
  end
  if e.body == nil then return invalid("missing 'body'") end
  local key = event.PAYLOAD[e.type]
  if key then
    local b = e.body
    local payload = is_object(b) and b[key]
    if not is_object(payload) or type(payload.id) ~= "string" then
      return invalid(("a '%s' event without body.%s"):format(e.type, key))
    end
    e[key] = payload
  end
  return setmetatable(e, Event)
end

--- The payload handlers get: body.note or body.user for the known types, else the body.
---@param e table
---@return any
function event.payload(e)
  local key = event.PAYLOAD[e.type]
  if key then return e[key] end
  return e.body
end

return event
