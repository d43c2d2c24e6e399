--- misskey.stream.channel: a channel of a stream (stream:channel(name)):
-- its handlers, its messages, and how an event reaches them (held back while
-- the channel's backfill runs, a repeat of a backfilled item dropped). Part of
-- misskey.stream, which calls this file with its module table (the limits,
-- which a program may change) and gets the Channel class back.
local argcheck = require "misskey.argcheck"
local handlers = require "misskey.stream.handlers"
local ids = require "misskey.id"
local json = require "misskey.json"
local seenset = require "misskey.seenset"

local argerror = argcheck.argerror
local fire, fire1 = handlers.fire, handlers.fire1
local seen_has, seen_add = seenset.has, seenset.add

---@param stream table misskey.stream (its MAX_HELD and SEEN)
---@return table Channel
return function(stream)
  --- A channel of a stream (stream:channel). Each named channel has its own class,
  --- misskey.channels.<name>, whose on/once know the channel's events.
  ---@class misskey.stream.Channel
  ---@field id string the connection id
  ---@field name string the channel's name
  ---@field on fun(self: misskey.stream.Channel, event: "connected", handler: fun()): misskey.stream.Channel
  ---@field on fun(self: misskey.stream.Channel, event: "error", handler: fun(err: misskey.Error)): misskey.stream.Channel
  ---@field on fun(self: misskey.stream.Channel, event: "*", handler: fun(event: string, body: any)): misskey.stream.Channel
  ---@field on fun(self: misskey.stream.Channel, event: string, handler: fun(body: any)): misskey.stream.Channel
  ---@field once fun(self: misskey.stream.Channel, event: "connected", handler: fun()): misskey.stream.Channel
  ---@field once fun(self: misskey.stream.Channel, event: "error", handler: fun(err: misskey.Error)): misskey.stream.Channel
  ---@field once fun(self: misskey.stream.Channel, event: "*", handler: fun(event: string, body: any)): misskey.stream.Channel
  ---@field once fun(self: misskey.stream.Channel, event: string, handler: fun(body: any)): misskey.stream.Channel
  ---@field send fun(self: misskey.stream.Channel, type: string, body?: any): true|nil, string?, misskey.Error? # a message to the channel
  local Channel = { __name = "misskey.stream.Channel" }
  Channel.__index = Channel

  local function check_channel(self, fname)
    argcheck.self(self, Channel, "channel", fname, 2)
    if self._closed then error(("channel:%s: the channel %q is closed"):format(fname, self.name), 3) end
  end

  --- channel:on(event, fn): fn(body) for every `event` of this channel ("note", ...);
  -- event "*": fn(event, body) for every event of the channel.
  ---@param event string
  ---@param fn function
  ---@return misskey.stream.Channel
  function Channel:on(event, fn)
    check_channel(self, "on")
    handlers.add(self._handlers, "on", event, fn, false)
    return self
  end

  --- channel:once(event, fn): like on, for the next event only.
  ---@param event string
  ---@param fn function
  ---@return misskey.stream.Channel
  function Channel:once(event, fn)
    check_channel(self, "once")
    handlers.add(self._handlers, "once", event, fn, true)
    return self
  end

  --- channel:off(event[, fn]): removes fn (or every handler of event); true if one was removed.
  ---@param event string
  ---@param fn? function
  ---@return boolean removed
  function Channel:off(event, fn)
    check_channel(self, "off")
    return handlers.remove(self._handlers, event, fn)
  end

  --- channel:send(type, body) -> true | nil, msg, err: a message to the channel
  -- (`{type = "channel", body = {id, type, body}}`); queued until the socket is open.
  ---@param type_ string the message's type
  ---@param body? any
  ---@return true|nil ok
  ---@return string|nil message
  ---@return misskey.Error|nil err
  function Channel:send(type_, body)
    check_channel(self, "send")
    if type(type_) ~= "string" or type_ == "" then
      argerror(1, "send", "message type expected, got " .. type(type_))
    end
    if body == nil then body = json.null end
    return self._stream:_send({ type = "channel", body = { id = self.id, type = type_, body = body } },
      "channel." .. type_)
  end

  --- channel:close(): leaves the channel (`disconnect`); the channel cannot be used afterwards.
  ---@return boolean
  function Channel:close()
    argcheck.self(self, Channel, "channel", "close")
    if self._closed then return false end
    self._stream:_drop(self)
    return true
  end

  function Channel:__tostring()
    return ("misskey.stream.Channel (%s, %s%s)"):format(self.name, self.id, self._closed and ", closed" or "")
  end

  -- A channel event. `source`: "live" (from the socket; held back while a
  -- backfill runs), "backfill" (an item a backfill fetched) or "held" (a live
  -- event held back, delivered after the backfill). Only backfilled ids are
  -- remembered: a backfill asks for ids above the greatest one delivered
  -- (`_last`), so it can only repeat live events that came during or just after
  -- it, and those are checked against what it delivered. Recording every live id
  -- too cost ~1 us per event on 5.4 (cache misses in a table of 1000 ids).
  function Channel:_deliver(event, body, source)
    local st = self._stream
    if source == "live" then
      if st._paused then return end -- stopping: not delivered, so positions stay before it
      if self._buffer then return st:_hold(self, event, body) end -- a backfill runs (stream/backfill.lua)
    end
    if event == self._bf_event and type(body) == "table" then
      local id = body.id
      if type(id) == "string" then
        local seen = self._seen
        if seen_has(seen, id) then return end
        if source == "backfill" then seen_add(seen, id, stream.SEEN) end
        local last = self._last
        if (last == nil or id > last) and #id <= ids.MAX then
          self._last = id
          if st._positions and not st._save_due then st:_schedule_save() end
        end
      end
    end
    -- Listeners of this channel: its own, or the stream's for the main channel. Then the
    -- "*" listeners, as fn(event, body): every event of the channel (`misskey stream` uses them).
    local lists = self._main and st._handlers or self._handlers
    fire1(st._running, lists, event, body)
    if lists["*"] then fire(st._running, lists, "*", event, body) end
  end

  -- Error events of a channel itself (`channel:on("error")`), besides the stream's.
  function Channel:_fire_own(event, ...)
    if not self._main then fire(self._stream._running, self._handlers, event, ...) end
  end

  return Channel
end
