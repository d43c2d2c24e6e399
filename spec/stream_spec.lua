-- misskey.stream over real sockets against the streaming endpoint of
-- spec/support/server.py. Every run is bounded: a guard task closes the
-- stream after a few seconds if the expected events never come, and specs
-- assert on what the server recorded, never on wall-clock time.
local misskey = require "misskey"
local loop = require "misskey.loop"
local server = require "support.server"
local leak = require "support.leak"

local srv

setup(function() srv = server.start() end)
teardown(function() srv:stop() end)

local function client(opts)
  local o = { host = srv.url, token = "tok" }
  for k, v in pairs(opts or {}) do o[k] = v end
  return misskey.new(o)
end

local control

local function call(endpoint, params)
  control = control or client()
  return assert(control:request(endpoint, params or {}))
end

before_each(function() call("test/stream/reset") end)

-- Runs the stream inside the scheduler until it is closed, or `limit` seconds
-- pass (then it is closed and `timed_out` is true). Returns timed_out, run's results.
local function run_bounded(s, limit)
  local timed_out = false
  local results
  misskey.run(function()
    local guard = misskey.spawn(function()
      misskey.sleep(limit or 8)
      timed_out = true
      s:close()
    end)
    results = { s:run() }
    guard:cancel()
  end)
  return timed_out, results[1], results[2], results[3]
end

local FAST = { min = 0.02, max = 0.1 }

describe("misskey.stream", function()
  it("raises on unknown or bad options", function()
    local c = client()
    assert.has_error(function() c:stream{ nope = 1 } end, "bad option 'nope' (unknown option)")
    assert.has_error(function() c:stream{ backoff = { min = 2, max = 1 } } end,
      "bad option 'backoff' (min is greater than max)")
    assert.has_error(function() c:stream{ watchdog = 0 } end)
    assert.has_error(function() c:stream{ reconnect = "yes" } end)
    local s = c:stream()
    assert.has_error(function() s:channel("main") end)
    assert.has_error(function() s:on("note") end)
    assert.has_error(function() s:capture(1) end)
  end)

  it("delivers channel events; ignores frames that are not JSON", function()
    local c = client()
    local s = c:stream()
    local got = {}
    local tl = s:channel("homeTimeline", { withRenotes = false })
    tl:on("connected", function()
      call("test/stream/raw", { text = "not json {" })
      call("test/stream/post", { text = "one" })
    end)
    tl:on("note", function(note)
      got[#got + 1] = note.text
      s:close()
    end)
    assert.is_false(run_bounded(s, 5))
    assert.same({ "one" }, got)
    local st = call("test/stream/state")
    assert.equal(1, #st.sockets)
    local sock = st.sockets[1]
    assert.equal("/streaming", sock.path)
    assert.equal("query", sock.auth)
    -- only the channel asked for: main is connected lazily, and nothing listened on it
    assert.equal(1, #sock.connects)
    assert.equal("homeTimeline", sock.connects[1].channel)
    assert.same({ withRenotes = false }, sock.connects[1].params)
    assert.is_true(sock.connects[1].pong)
  end)

  it("runs handlers while a burst is read: tasks do not pile up (bounded memory)", function()
    local s = client():stream()
    local seen, most_alive = 0, 0
    local tl = s:channel("homeTimeline")
    tl:on("connected", function()
      call("test/stream/emit", { channel = "homeTimeline", type = "note", body = { text = "burst" }, count = 300 })
    end)
    tl:on("note", function(note)
      seen = seen + 1
      most_alive = math.max(most_alive, loop.alive())
      if note.seq == 300 then s:close() end
    end)
    assert.is_false(run_bounded(s, 10))
    assert.equal(300, seen)
    -- Without giving way after each frame the reader would spawn ~300 handler
    -- tasks before the first one ran, each holding its note.
    assert.truthy(most_alive < 10, "tasks alive at once: " .. most_alive)
  end)

  it("delivers a burst of many frames, more than one read holds, all in order", function()
    local s = client():stream()
    local seqs, big = {}, ("x"):rep(1000)
    local tl = s:channel("homeTimeline")
    tl:on("connected", function()
      -- ~1.2 MB back to back: the client reads it in batches (READ_BATCH is 64 KiB)
      call("test/stream/emit", { channel = "homeTimeline", type = "note", body = { text = big }, count = 1000 })
    end)
    tl:on("note", function(note)
      seqs[#seqs + 1] = note.seq
      if note.seq == 1000 then s:close() end
    end)
    assert.is_false(run_bounded(s, 20))
    assert.equal(1000, #seqs)
    for i = 1, 1000 do
      if seqs[i] ~= i then error(("event %d was seq %s"):format(i, tostring(seqs[i]))) end
    end
  end)

  it("a handler that waits goes on as a task while the next events are handled", function()
    local s = client():stream()
    local log, key = {}, {}
    local tl = s:channel("homeTimeline")
    tl:on("connected", function()
      call("test/stream/emit", { channel = "homeTimeline", type = "note", body = { text = "w" }, count = 20 })
    end)
    tl:on("note", function(note)
      log[#log + 1] = note.seq
      if note.seq == 1 then
        -- Waits until the handler of the last event has run: that can only happen if
        -- the events after this one are handled while it waits.
        loop.wait_event(key, 10)
        local st = call("test/stream/state") -- and it may call the API
        log[#log + 1] = "1 done " .. #st.sockets
        s:close()
      elseif note.seq == 20 then
        loop.signal(key)
      end
    end)
    assert.is_false(run_bounded(s, 10))
    local want = {}
    for i = 1, 20 do want[i] = i end
    want[21] = "1 done 1"
    assert.same(want, log)
    assert.equal(0, loop.alive())
  end)

  it("an error in a handler goes to misskey.on_error; other handlers and the stream go on", function()
    local s = client():stream()
    local errs, seen, other = {}, {}, 0
    local old = misskey.on_error(function(err) errs[#errs + 1] = err end)
    local tl = s:channel("homeTimeline")
    tl:on("connected", function()
      call("test/stream/emit", { channel = "homeTimeline", type = "note", body = { text = "e" }, count = 5 })
    end)
    tl:on("note", function(note)
      if note.seq % 2 == 0 then error("handler failed on " .. note.seq) end
      seen[#seen + 1] = note.seq
    end)
    tl:on("note", function(note)
      other = other + 1
      if note.seq == 5 then s:close() end
    end)
    local timed_out = run_bounded(s, 5)
    misskey.on_error(old)
    assert.is_false(timed_out)
    assert.same({ 1, 3, 5 }, seen)
    assert.equal(5, other)
    assert.equal(2, #errs)
    assert.equal("task", errs[1].kind)
    assert.matches("handler failed on 2", errs[1].message)
    assert.matches("handler failed on 4", errs[2].message)
  end)

  it("handlers may add and remove handlers while an event is dispatched", function()
    local s = client():stream()
    local log = {}
    local tl = s:channel("homeTimeline")
    local function late(note) log[#log + 1] = "late " .. note.seq end
    local function second(note)
      log[#log + 1] = "second " .. note.seq
      tl:off("note", second) -- removes itself
    end
    tl:once("note", function(note)
      log[#log + 1] = "once " .. note.seq
      tl:on("note", late) -- from the next event on
    end)
    tl:on("note", second)
    tl:on("note", function(note) if note.seq == 3 then s:close() end end)
    tl:on("connected", function()
      call("test/stream/emit", { channel = "homeTimeline", type = "note", body = { text = "h" }, count = 3 })
    end)
    assert.is_false(run_bounded(s, 5))
    assert.same({ "once 1", "second 1", "late 2", "late 3" }, log)
  end)

  it("sends the token as a Bearer header with auth = \"header\", none when anonymous", function()
    for _, case in ipairs{ { auth = "header" }, { token = false } } do
      local s = client(case):stream()
      s:on("connected", function() s:close() end)
      assert.is_false(run_bounded(s, 5))
    end
    local st = call("test/stream/state")
    assert.equal("header", st.sockets[1].auth)
    assert.is_false(st.sockets[1].anonymous)
    assert.is_true(st.sockets[2].anonymous)
  end)

  it("connects main lazily and delivers its events through stream:on", function()
    local s = client():stream()
    local got = {}
    local notes = 0
    s:on("notification", function(n)
      got[#got + 1] = n.type
      notes = notes + 1
      if notes == 2 then s:close() end
    end)
    s:on("followed", function(user) got[#got + 1] = "followed " .. user.username end)
    s:on("connected", function()
      -- the socket is open; wait until the server confirmed main before emitting
      misskey.spawn(function()
        for _ = 1, 200 do
          local st = call("test/stream/state")
          if st.sockets[1] and st.sockets[1].channels and next(st.sockets[1].channels) then break end
          misskey.sleep(0.01)
        end
        call("test/stream/emit", { channel = "main", type = "followed", body = { username = "bob" } })
        call("test/stream/notify", { body = { type = "reaction" } })
        call("test/stream/notify", { body = { type = "follow" } })
      end)
    end)
    assert.is_false(run_bounded(s, 5))
    assert.same({ "followed bob", "reaction", "follow" }, got)
    local sock = call("test/stream/state").sockets[1]
    assert.equal("main", sock.connects[1].channel)
  end)

  it("once fires once; off removes a handler", function()
    local s = client():stream()
    local tl = s:channel("homeTimeline")
    local once, on, removed, n = {}, {}, 0, 0
    local function gone() removed = removed + 1 end
    tl:on("note", gone)
    assert.is_true(tl:off("note", gone))
    assert.is_false(tl:off("note", gone))
    tl:once("note", function(note) once[#once + 1] = note.text end)
    tl:on("note", function(note)
      on[#on + 1] = note.text
      n = n + 1
      if n == 2 then s:close() end
    end)
    tl:on("connected", function()
      call("test/stream/post", { text = "a" })
      call("test/stream/post", { text = "b" })
    end)
    assert.is_false(run_bounded(s, 5))
    assert.same({ "a" }, once)
    assert.same({ "a", "b" }, on)
    assert.equal(0, removed)
  end)

  it("channel:send sends a channel message; channel:close disconnects", function()
    local s = client():stream()
    local tl = s:channel("homeTimeline")
    local other = s:channel("localTimeline")
    local echoed
    tl:on("connected", function()
      assert.is_true(tl:send("echo", { hello = "world" }))
    end)
    tl:on("echoed", function(body)
      echoed = body
      other:close()
      assert.has_error(function() other:send("x") end)
      s:close()
    end)
    assert.is_false(run_bounded(s, 5))
    assert.same({ hello = "world" }, echoed)
    local sock = call("test/stream/state").sockets[1]
    assert.same({ { id = tl.id, type = "echo", body = { hello = "world" } } }, sock.messages)
    assert.same({ other.id }, sock.disconnects)
    assert.not_equal(tl.id, other.id)
  end)

  it("counts captures: one subNote for two captures, one unsubNote for two uncaptures; noteUpdated", function()
    local s = client():stream()
    assert.equal(1, s:capture("note1"))
    assert.equal(2, s:capture("note1"))
    local updates, left = {}, {}
    s:on("noteUpdated", function(u)
      updates[#updates + 1] = u
      left[#left + 1] = s:uncapture("note1")
      left[#left + 1] = s:uncapture("note1")
      left[#left + 1] = s:uncapture("note1")
      s:close()
    end)
    -- frames of one socket are handled in order: once a later connect is
    -- confirmed, the subNote before it has been seen
    s:channel("homeTimeline"):on("connected", function()
      call("test/stream/emit", { type = "noteUpdated",
        body = { id = "note1", type = "reacted", body = { reaction = ":like:", userId = "u1" } } })
    end)
    assert.is_false(run_bounded(s, 5))
    assert.equal(1, #updates)
    assert.same({ id = "note1", type = "reacted", body = { reaction = ":like:", userId = "u1" } }, updates[1])
    assert.same({ 1, 0, false }, left)
    local sock = call("test/stream/state").sockets[1]
    assert.same({ "note1" }, sock.subNote)
    assert.same({ "note1" }, sock.unsubNote)
    assert.is_nil(next(sock.subs))
  end)

  it("emits error naming a channel the server never confirms", function()
    -- strict = false: a name that is not Misskey's goes to the server unchecked.
    local s = client():stream{ confirm_timeout = 0.2, strict = false }
    local errs, confirmed, own = {}, 0, 0
    s:channel("homeTimeline"):on("connected", function() confirmed = confirmed + 1 end)
    s:channel("noSuchChannel", { x = 1 }):on("error", function() own = own + 1 end)
    s:on("error", function(err)
      errs[#errs + 1] = err
      s:close()
    end)
    assert.is_false(run_bounded(s, 5))
    assert.equal(1, #errs)
    assert.equal("timeout", errs[1].kind)
    assert.equal("noSuchChannel", errs[1].channel)
    assert.matches('channel "noSuchChannel"', errs[1].message)
    assert.equal(1, confirmed)
    assert.equal(1, own)
  end)

  it("reports a refused token (401) as an auth error and retries slowly, at the max backoff", function()
    local s = client{ token = "bad-token" }:stream{ backoff = { min = 0.01, max = 0.15 } }
    local errs, delays = {}, {}
    s:on("error", function(err)
      errs[#errs + 1] = err
      if #errs == 3 then s:close() end
    end)
    s:on("reconnecting", function(_, delay) delays[#delays + 1] = delay end)
    assert.is_false(run_bounded(s, 5))
    assert.equal(3, #errs)
    for _, err in ipairs(errs) do
      assert.equal("auth", err.kind)
      assert.equal(401, err.status)
      leak.assert_none("bad-token", err)
    end
    assert.is_true(#delays >= 2)
    for _, d in ipairs(delays) do assert.equal(0.15, d) end -- never the 0.01 of a storm
    local st = call("test/stream/state")
    assert.equal(3, st.attempts) -- one upgrade attempt per error, nothing hidden
    assert.equal(3, st.refused)
  end)

  it("refuses the 33rd channel of a stream", function()
    local s = client():stream()
    local chans = {}
    for i = 1, 31 do chans[i] = s:channel("homeTimeline") end
    s:on("notification", function() end) -- main is the 32nd
    assert.has_error(function() s:channel("localTimeline") end,
      "stream: at most 32 channels per socket (Misskey ignores more); close one first")
    chans[1]:close()
    assert.is_table(s:channel("localTimeline"))
    assert.has_error(function() s:channel("localTimeline") end)
    s:close()
  end)

  it("declares a silent socket dead after the watchdog and reconnects", function()
    local s = client():stream{ watchdog = 0.2, backoff = FAST }
    local reasons, connects = {}, 0
    s:on("connected", function()
      connects = connects + 1
      if connects == 2 then s:close() end
    end)
    s:on("disconnected", function(reason) reasons[#reasons + 1] = reason end)
    assert.is_false(run_bounded(s, 5))
    assert.equal(2, connects)
    assert.matches("watchdog", reasons[1])
  end)

  it("counts server pings as liveness", function()
    call("test/stream/config", { ping = 0.05 })
    local s = client():stream{ watchdog = 0.5, backoff = FAST }
    local disconnects = 0
    s:on("disconnected", function(reason)
      if reason ~= "closed" then disconnects = disconnects + 1 end
    end)
    misskey.run(function()
      s:start()
      misskey.sleep(1.2) -- more than twice the watchdog, with a ping every 0.05 s
      s:close()
    end)
    assert.equal(0, disconnects)
    assert.equal(1, call("test/stream/state").attempts)
  end)

  it("ends run with the error when reconnect is off", function()
    local s = client():stream{ reconnect = false }
    s:on("connected", function() call("test/stream/drop") end)
    local timed_out, ok, msg, err = run_bounded(s, 5)
    assert.is_false(timed_out)
    assert.is_nil(ok)
    assert.equal("network", err.kind)
    assert.matches("closed", msg)
  end)

  it("reconnects, joins again, captures again and backfills what it missed, each note once and in order",
    function()
      local s = client():stream{ backoff = FAST }
      local texts, ids, confirms = {}, {}, 0
      s:capture("watched")
      local tl = s:channel("homeTimeline", { withFiles = false })
      tl:on("connected", function()
        confirms = confirms + 1
        if confirms == 1 then
          for i = 1, 3 do call("test/stream/post", { text = tostring(i) }) end
        elseif confirms == 2 then
          for i = 7, 8 do call("test/stream/post", { text = tostring(i) }) end
        end
      end)
      tl:on("note", function(note)
        texts[#texts + 1] = tonumber(note.text)
        ids[#ids + 1] = note.id
        if note.text == "3" then
          -- away: new upgrades wait until the release, so 4-6 are surely missed
          call("test/stream/drop", { hold = true })
          for i = 4, 6 do call("test/stream/post", { text = tostring(i) }) end
          call("test/stream/release")
        elseif #texts >= 8 then
          s:close()
        end
      end)
      assert.is_false(run_bounded(s, 8))
      assert.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, texts)
      local st = call("test/stream/state")
      assert.equal(2, #st.sockets)
      local second = st.sockets[2]
      assert.equal("homeTimeline", second.connects[1].channel)
      assert.equal(tl.id, second.connects[1].id)
      assert.same({ withFiles = false }, second.connects[1].params)
      assert.same({ "watched" }, second.subNote)
      assert.same({ watched = 1 }, second.subs)
      -- the backfill asked for what came after note 3, oldest first, with the channel's params
      -- (the request without sinceId is the starting point taken at the first join)
      local log = call("test/log", { key = "notes/timeline" })
      local pages = {}
      for _, p in ipairs(log.params) do
        if p.sinceId then pages[#pages + 1] = p end
      end
      assert.is_true(#pages >= 1)
      assert.equal(ids[3], pages[1].sinceId)
      assert.equal(100, pages[1].limit)
      assert.is_false(pages[1].withFiles)
    end)

  it("pages the backfill forward (sinceId ascending)", function()
    local s = client():stream{ backoff = FAST }
    local got = {}
    local tl = s:channel("homeTimeline")
    tl:once("connected", function() call("test/stream/post", { text = "0" }) end)
    tl:on("note", function(note)
      got[#got + 1] = tonumber(note.text)
      if note.text == "0" then
        call("test/stream/drop", { hold = true })
        for i = 1, 150 do call("test/stream/post", { text = tostring(i) }) end
        call("test/stream/release")
      elseif #got >= 151 then
        s:close()
      end
    end)
    assert.is_false(run_bounded(s, 10))
    local want = {}
    for i = 0, 150 do want[#want + 1] = i end
    assert.same(want, got)
    local log = call("test/log", { key = "notes/timeline" })
    local pages = {}
    for _, p in ipairs(log.params) do
      if p.sinceId then pages[#pages + 1] = p end
    end
    assert.equal(2, #pages) -- 100, then 50 (the stream closed at the last note, before asking again)
    assert.is_true(pages[2].sinceId > pages[1].sinceId)
  end)

  it("backfills notifications of main after a reconnect (markAsRead = false)", function()
    local s = client():stream{ backoff = FAST }
    local got = {}
    s:on("notification", function(n)
      got[#got + 1] = n.n
      if n.n == 1 then
        call("test/stream/drop", { hold = true })
        call("test/stream/notify", { body = { type = "follow", n = 2 } })
        call("test/stream/notify", { body = { type = "follow", n = 3 } })
        call("test/stream/release")
      elseif #got >= 3 then
        s:close()
      end
    end)
    s:on("connected", function()
      if #got > 0 then return end
      misskey.spawn(function()
        for _ = 1, 200 do
          local st = call("test/stream/state")
          if st.sockets[1] and next(st.sockets[1].channels) then break end
          misskey.sleep(0.01)
        end
        call("test/stream/notify", { body = { type = "follow", n = 1 } })
      end)
    end)
    assert.is_false(run_bounded(s, 8))
    assert.same({ 1, 2, 3 }, got)
    local log = call("test/log", { key = "i/notifications" })
    assert.is_true(log.count >= 1)
    assert.is_false(log.params[1].markAsRead)
  end)

  it("is idle-safe: close before start, close twice", function()
    local s = client():stream()
    assert.is_true(s:close())
    assert.is_false(s:close())
    assert.has_error(function() s:run() end)
    assert.is_nil(loop.current())
  end)
end)
