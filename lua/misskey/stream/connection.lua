--- misskey.stream.connection: the stream's socket. The reader task connects
-- (through the client's transport), joins every channel and captured note on
-- each new socket, turns frames into events, and reconnects with capped
-- exponential backoff; each connect has a confirmation timer. Part of
-- misskey.stream, which calls this file with its Stream class and module
-- table (its limits) to add these methods.
local errors = require "misskey.errors"
local handlers = require "misskey.stream.handlers"
local json = require "misskey.json"
local loop = require "misskey.loop"
local taskset = require "misskey.taskset"

local fire = handlers.fire
local type = type -- a local: _message tests each frame's with it

---@param Stream misskey.Stream the stream class
---@param stream table misskey.stream (its MAX_CHANNELS)
return function(Stream, stream)
  -- Sends `connect` (pong = true) and starts the confirm timer of this connection
  -- (cancelled by the confirmation, and when the connection is lost).
  function Stream:_join(ch)
    local body = { channel = ch.name, id = ch.id, pong = true }
    if ch.params ~= nil then body.params = ch.params end
    ch._confirmed = false
    self:_send({ type = "connect", body = body }, "params")
    local gen, limit = self._gen, self._opts.confirm_timeout
    taskset.stop(ch._confirm)
    ch._confirm = self._tasks:spawn(function()
      loop.sleep(limit)
      ch._confirm = nil
      if ch._confirmed or ch._closed or self._closed or self._gen ~= gen or not self._ws then return end
      local _, err = errors.new("timeout", ("stream: channel %q (id %s) was not confirmed within %g s"
        .. " (Misskey ignores a connect silently: unknown channel, missing permission or params,"
        .. " or more than %d channels)"):format(ch.name, ch.id, limit, stream.MAX_CHANNELS),
        { channel = ch.name, channel_id = ch.id })
      self:_fire_error(err)
      ch:_fire_own("error", err)
    end)
  end

  -- A frame from the server, decoded (anything but a table is ignored, as Misskey ignores non-JSON).
  function Stream:_message(msg)
    if type(msg) ~= "table" then return end
    local t, body = msg.type, msg.body
    if t == "channel" then -- most frames: the fast path
      if type(body) ~= "table" then return end
      local ch, event = self._channels[body.id], body.type
      if ch and type(event) == "string" then ch:_deliver(event, body.body, "live") end
    elseif type(t) ~= "string" or self._paused then
      return
    elseif t == "connected" then
      local ch = type(body) == "table" and self._channels[body.id]
      if ch and not ch._confirmed then
        ch._confirmed = true
        taskset.stop(ch._confirm)
        ch._confirm = nil
        if ch._bf_endpoint and ch._last == nil and not ch._no_start and self._opts.backfill then self:_mark(ch) end
        ch:_fire_own("connected")
      end
    elseif t == "noteUpdated" then
      fire(self._running, self._handlers, "noteUpdated", body)
    else
      fire(self._running, self._handlers, t, body)
    end
  end

  -- On a new socket: join every channel, capture every note, flush the outbox,
  -- and backfill after a reconnect (or, for positions read from the file, on the first).
  function Stream:_rejoin(reconnected)
    for i = 1, #self._order do self:_join(self._order[i]) end
    for i = 1, #self._capture_order do
      self:_send({ type = "subNote", body = { id = self._capture_order[i] } })
    end
    local outbox = self._outbox
    self._outbox = {}
    for i = 1, #outbox do self._ws:send(outbox[i]) end
    if self._opts.backfill then
      for i = 1, #self._order do
        local ch = self._order[i]
        if ch._bf_endpoint and (reconnected and (ch._last or ch._marking) or ch._restored) then
          self:_backfill(ch, ch._restored and not reconnected and "restart" or "reconnect")
        end
        ch._restored = nil
      end
    end
  end

  -- Capped exponential backoff with jitter: a delay in [d/2, d], d = min * 2^(attempt-1) <= max.
  function Stream:_delay(attempt, err)
    local b = self._opts.backoff
    if err and err.kind == "auth" then return b.max end -- a refused token: slowly, never a storm
    local d = math.min(b.max, b.min * 2 ^ math.min(attempt - 1, 30))
    return d / 2 + math.random() * d / 2
  end

  -- Reads until the socket is lost or the watchdog fires. ws:receive(t) times
  -- out only after t seconds without any frame: a server PING restarts its wait,
  -- so pings count as liveness.
  --
  -- Backpressure: handlers start at once (spawn_now), so a handler that does not
  -- wait is done before the next frame is decoded; one that waits goes on as a
  -- task. The socket's receive gives way to the scheduler (the engine steps,
  -- ready tasks run) each time it has handed out what one read brought, so a
  -- steady sender cannot starve those tasks, and events never pile up unrun.
  -- A socket of the C engine decodes each frame where it read it (ws:receive_value); a
  -- user's transport hands out strings.
  function Stream:_read(ws)
    local got = false
    local watchdog = self._opts.watchdog
    local receive_value, message = ws.receive_value, self._message -- looked up once, not per frame
    local decoded = type(receive_value) == "function"
    while not self._closed do
      local value, msg, err
      if decoded then
        value, msg, err = receive_value(ws, watchdog)
      else
        value, msg, err = ws:receive(watchdog)
        if value then value = json.decode(value) or false end
      end
      if value ~= nil then
        got = true
        message(self, value)
      elseif err and err.kind == "timeout" then
        return got, ("no frame for %g s (watchdog)"):format(watchdog), err
      else
        return got, msg, err
      end
    end
    return got
  end

  -- The reader task.
  function Stream:_reader_main()
    local attempt = 0
    if self._load_error then
      local err = self._load_error
      self._load_error = nil
      self:_fire_error(err)
    end
    while not self._closed and not self._paused do
      local ws, msg, err = self.client:websocket(self._req)
      if self._closed then
        if ws then ws:close(1000) end
        break
      end
      if ws then
        self._ws = ws
        self._gen = self._gen + 1
        self._connections = self._connections + 1
        local reconnected = self._connections > 1
        self:_rejoin(reconnected) -- before the handlers: what they send follows the connects
        fire(self._running, self._handlers, "connected")
        local got
        got, msg, err = self:_read(ws)
        if self._closed then break end
        self._ws = nil
        -- This connection's confirm timers end with it (they would otherwise sleep on).
        for i = 1, #self._order do
          local ch = self._order[i]
          taskset.stop(ch._confirm)
          ch._confirm = nil
        end
        if got then attempt = 0 end
        ws:close(1001)
        msg = errors.scrub(msg or "closed", self._secrets)
        fire(self._running, self._handlers, "disconnected", msg, errors.scrub(err, self._secrets))
      else
        if not errors.is(err) then err = select(2, errors.new("network", tostring(msg))) end
        self:_fire_error(err)
        msg = err.message
      end
      if not self._opts.reconnect then
        self._failure = err
        break
      end
      if self._closed or self._paused then break end -- by a handler (handlers start at once, in this task)
      attempt = attempt + 1
      local delay = self:_delay(attempt, err)
      self:_emit{ type = "reconnect", attempt = attempt, delay = delay, reason = msg,
        kind = type(err) == "table" and err.kind or nil, connections = self._connections }
      fire(self._running, self._handlers, "reconnecting", attempt, delay)
      if self._closed or self._paused then break end
      loop.sleep(delay)
    end
    self._reader = nil
  end
end
