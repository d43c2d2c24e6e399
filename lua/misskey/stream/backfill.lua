--- misskey.stream.backfill: what a timeline channel (or the main channel's
-- notifications) missed while the stream was away, fetched over the API and
-- delivered before the live events that came meanwhile; the starting point a
-- channel takes at its first confirmation; and the positions file that keeps
-- those points across restarts (misskey.positions). Part of misskey.stream,
-- which calls this file with its Stream class and module table (its limits)
-- to add these methods, and gets the channel -> endpoint map back.
local errors = require "misskey.errors"
local ids = require "misskey.id"
local loop = require "misskey.loop"
local positions = require "misskey.positions"

local PAGE = 100

---@param Stream misskey.Stream the stream class
---@param stream table misskey.stream (its MAX_PAGES, MAX_ROUNDS, MAX_HELD, SAVE_INTERVAL)
---@return table BACKFILL channel name -> endpoint
return function(Stream, stream)
  -- Channel -> the endpoint that pages what the channel missed, and the event.
  local BACKFILL = {
    homeTimeline = "notes/timeline",
    localTimeline = "notes/local-timeline",
    hybridTimeline = "notes/hybrid-timeline",
    globalTimeline = "notes/global-timeline",
    userList = "notes/user-list-timeline",
    antenna = "antennas/notes",
    channel = "channels/timeline",
    roleTimeline = "roles/notes",
  }
  stream.BACKFILL = BACKFILL

  -- The params of a backfill request of `ch`: its own, and markAsRead = false for notifications.
  local function bf_params(ch, limit)
    local params = {}
    for k, v in pairs(ch.params or {}) do params[k] = v end
    params.limit = limit
    if ch._main then params.markAsRead = false end
    return params
  end

  -- An id of this server, to tell its id method: one a channel delivered, else
  -- the account's own (`i`), else a user's (`users`, for an anonymous stream).
  function Stream:_id_sample()
    for i = 1, #self._order do
      local last = self._order[i]._last
      if ids.method(last) then return last end
    end
    if self._sample then return self._sample end
    local found
    if self._secrets then -- a token: the account's own id
      local me = self.client:request("i")
      found = type(me) == "table" and me.id
    else
      local users = self.client:request("users", { limit = 1 })
      found = type(users) == "table" and type(users[1]) == "table" and users[1].id
    end
    if ids.method(found) then self._sample = found end
    return self._sample
  end

  -- Where a backfill of `ch` would start if nothing arrived before the next
  -- reconnect: the newest id the channel's endpoint has now, or, when it has
  -- none yet, the smallest id of the server's time (`ping`) in the server's id
  -- method. -> id, source ("newest" | "server_time") | nil, "none" (the server's id
  -- method is unknown) | nil, msg, err
  function Stream:_starting_point(ch)
    local page, msg, err = self.client:request(ch._bf_endpoint, bf_params(ch, 1))
    if page == nil then return nil, msg, err end
    local newest
    if type(page) == "table" then
      for i = 1, #page do
        local id = type(page[i]) == "table" and page[i].id
        if type(id) == "string" and #id <= ids.MAX and id:find("^%w+$") and (newest == nil or id > newest) then
          newest = id
        end
      end
    end
    if newest then return newest, "newest" end
    local pong
    pong, msg, err = self.client:request("ping")
    if pong == nil then return nil, msg, err end
    local ms = type(pong) == "table" and tonumber(pong.pong)
    if not ms or ms ~= ms or ms < 0 or ms == math.huge then
      return errors.fail("decode", "stream: ping gave no server time", { endpoint = "ping" })
    end
    local method = ids.method(self:_id_sample())
    if not method then return nil, "none" end -- ids of no known shape: no way to make one
    return ids.at(method, ms), "server_time"
  end

  -- Takes `ch`'s starting point (after its first confirmation, so that whatever
  -- comes after it is either delivered live or found by a backfill).
  function Stream:_mark(ch)
    if ch._marking then return end
    ch._marking = true
    self._tasks:spawn(function()
      local id, source, err = self:_starting_point(ch)
      ch._marking = nil
      if id then
        if ch._last == nil or id > ch._last then
          ch._last = id
          if self._positions and not self._save_due then self:_schedule_save() end
        end
        self:_emit{ type = "position", channel = ch.name, channel_id = ch.id, id = id, source = source }
      elseif source == "none" then
        -- Not a failure of the stream: only a quiet channel's outage goes unfetched, as before.
        ch._no_start = true
        self:_emit{ type = "position", channel = ch.name, channel_id = ch.id, source = "none" }
      elseif not self._closed and not ch._closed then
        -- The server refused (a permission the token lacks, say): asking again on
        -- every reconnect would only repeat it. A network failure is retried.
        if type(err) == "table" and (err.kind == "api" or err.kind == "decode") then ch._no_start = true end
        self:_fire_error(err)
      end
      loop.signal(ch) -- a backfill that waits for this starting point
    end)
  end

  -- The size of a held event: about the bytes of its JSON (every string's
  -- length, a few bytes per other value and per member), walked no further
  -- than `limit`, so sizing a 16 MiB message costs no more than the room left.
  -- Decoded JSON nests at most 1000 deep, which bounds the recursion.
  local function held_size(v, limit)
    local t = type(v)
    if t == "string" then return #v + 2 end
    if t ~= "table" then return 8 end
    local n = 2
    for k, x in pairs(v) do
      n = n + (type(k) == "string" and #k + 4 or 1) + held_size(x, limit - n)
      if n > limit then return n end
    end
    return n
  end

  -- Lets go of the held events a backfill can fetch (its event: notes,
  -- notifications), to make room for one it cannot: the next round fetches
  -- them (`_again`), so none is lost. -> bytes freed
  local function release_fetchable(ch)
    local kept, freed = {}, 0
    for _, item in ipairs(ch._buffer) do
      if item[1] == ch._bf_event then
        freed = freed + item[3]
        ch._unheld = ch._unheld + 1
      else
        kept[#kept + 1] = item
      end
    end
    if freed > 0 or #kept < #ch._buffer then
      ch._buffer, ch._held_bytes, ch._again = kept, ch._held_bytes - freed, true
    end
    return freed
  end

  -- A live event of `ch` while its backfill runs: held back, to be delivered
  -- after the backfill, while the channel holds fewer than MAX_HELD events of
  -- fewer than MAX_HELD_BYTES in all. Past that nothing is lost silently: an
  -- event the backfill can fetch is not held but fetched by its next round
  -- (`_again`); any other first makes room by letting those go, and is
  -- dropped only when that is not enough, counted and reported (`error`)
  -- when the backfill ends. (Dropping the oldest instead would lose events
  -- that cannot be fetched again, and only a gap would say so.)
  function Stream._hold(_, ch, event, body) -- st:_hold(ch, event, body)
    local buffer = ch._buffer
    local room = stream.MAX_HELD_BYTES - ch._held_bytes
    local size = held_size(body, room)
    if size > room or #buffer >= stream.MAX_HELD then
      if event == ch._bf_event then
        ch._again, ch._unheld = true, ch._unheld + 1 -- the backfill's next round fetches it
        return
      end
      room = room + release_fetchable(ch)
      if size > room or #ch._buffer >= stream.MAX_HELD then
        ch._dropped = (ch._dropped or 0) + 1
        return
      end
      buffer = ch._buffer
    end
    buffer[#buffer + 1] = { event, body, size }
    ch._held_bytes = ch._held_bytes + size
  end

  -- Fetches what `ch` missed since its last id, then lets live events through.
  -- Pages `sinceId` forward (oldest first) until an empty page or one with
  -- nothing beyond the cursor: a short page is not the end (servers drop muted
  -- or hidden notes after the query). At most MAX_PAGES per round.
  function Stream:_backfill(ch, reason)
    if ch._buffer then
      ch._again = true -- a backfill runs: it goes round once more
      return
    end
    ch._buffer, ch._held_bytes, ch._unheld = {}, 0, 0
    self._tasks:spawn(function()
      if ch._last == nil and ch._marking then
        loop.wait_event(ch, 300) -- the starting point is on its way (its requests have their own timeouts)
      end
      local first, count, pages, truncated, failure = ch._last, 0, 0, false, nil
      local rounds = 0
      while ch._last ~= nil and rounds < stream.MAX_ROUNDS do
        rounds = rounds + 1
        ch._again, ch._unheld = false, 0
        local since = ch._last
        local ended = false -- by an empty page or one without progress (not by MAX_PAGES)
        for _ = 1, stream.MAX_PAGES do
          if ch._closed or self._closed or self._paused then ended = true break end
          local params = bf_params(ch, PAGE)
          params.sinceId = since
          local page, _, err = self.client:request(ch._bf_endpoint, params)
          pages = pages + 1
          if not page then
            failure = err
            self:_fire_error(err)
            ended = true
            break
          end
          if type(page) ~= "table" then ended = true break end
          local items = {}
          for i = 1, #page do
            local id = type(page[i]) == "table" and page[i].id
            -- an id not beyond the cursor: the server ignored it
            if type(id) == "string" and id > since then items[#items + 1] = page[i] end
          end
          if #items == 0 then ended = true break end -- empty, or no progress: the end
          -- sinceId alone pages oldest first (docs/protocol.md section 8); sorting makes sure.
          table.sort(items, function(a, b) return a.id < b.id end)
          for i = 1, #items do
            if self._closed or self._paused then break end -- a handler closed the stream
            ch:_deliver(ch._bf_event, items[i], "backfill")
            count = count + 1
            if items[i].id > since then since = items[i].id end
          end
        end
        truncated = not ended -- what came after the last page is not delivered
        if failure or not ch._again or ch._closed or self._closed or self._paused then break end
      end
      -- Events it did not hold and a round it could not make (MAX_ROUNDS, or a
      -- failed page): they may be missing; say so.
      local unfetched = ch._again and ch._unheld > 0 and not self._closed and not self._paused and ch._unheld
      local buffer, dropped = ch._buffer, ch._dropped
      ch._buffer, ch._dropped, ch._held_bytes, ch._unheld = false, nil, nil, nil
      self:_emit{ type = "backfill", channel = ch.name, channel_id = ch.id, endpoint = ch._bf_endpoint,
        reason = reason, since_id = first, last_id = ch._last, count = count, pages = pages,
        truncated = (truncated or unfetched) and true or nil, held = #buffer,
        error = failure and failure.message or nil }
      for i = 1, #buffer do
        if self._closed or self._paused then break end
        ch:_deliver(buffer[i][1], buffer[i][2], "held")
      end
      local limits = ("more than %d events or %d bytes held"):format(stream.MAX_HELD, stream.MAX_HELD_BYTES)
      if dropped and not self._closed then
        self:_fire_error(select(2, errors.new("invalid", ("stream: %d events of channel %q dropped while its backfill"
          .. " ran (%s)"):format(dropped, ch.name, limits), { channel = ch.name })))
      end
      if unfetched then
        self:_fire_error(select(2, errors.new("invalid", ("stream: %d live events of channel %q were not held while"
          .. " its backfill ran (%s), and the backfill ended before fetching them again: some may be missing")
          :format(unfetched, ch.name, limits), { channel = ch.name })))
      end
    end)
  end

  -- Writes the positions file now (no-op without positions).
  function Stream:_save_positions()
    if not self._positions then return true end
    local map, n = {}, 0
    for i = 1, #self._order do
      local ch = self._order[i]
      if ch._key and ch._last and not map[ch._key] then map[ch._key], n = ch._last, n + 1 end
    end
    for k, v in pairs(self._saved) do -- channels of earlier runs stay, as room allows
      if n >= positions.MAX_KEYS then break end
      if not map[k] then map[k], n = v, n + 1 end
    end
    self._saved = map
    local ok, msg, err = positions.save(self._positions, self.client.base_url, map)
    if not ok then
      self:_fire_error(err or select(2, errors.new("invalid", tostring(msg))))
      return nil, msg, err
    end
    return true
  end

  -- One write of the positions file at most every SAVE_INTERVAL seconds.
  function Stream:_schedule_save()
    self._save_due = true
    self._tasks:spawn(function()
      loop.sleep(stream.SAVE_INTERVAL)
      self._save_due = false
      if not self._closed then self:_save_positions() end
    end)
  end

  return BACKFILL
end
