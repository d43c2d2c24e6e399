-- A stream that runs for days: quiet channels backfilled after an outage,
-- positions that survive a restart, a clean stop on a signal, the events it
-- reports (on_event) and the max_message option. Against the in-process fake
-- and the test server (spec/support/server.py); every wait is bounded.
local misskey = require "misskey"
local core = require "misskey.core"
local json = require "misskey.json"
local loop = require "misskey.loop"
local streamlib = require "misskey.stream"
local testing = require "misskey.testing"
local with_env = require "support.env"
local server = require "support.server"

local FAST = { min = 0.001, max = 0.005 }

-- Runs scheduler rounds until cond() holds or `limit` seconds pass; returns cond().
local function run_until(cond, limit)
  local deadline = core.now() + (limit or 5)
  for _ = 1, 200000 do
    if cond() then return true end
    if core.now() > deadline then break end
    misskey.step(0.01)
  end
  return cond() and true or false
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function ids_of(list)
  local out = {}
  for i, x in ipairs(list) do out[i] = x.id end
  return out
end

-- A client of `fake` whose observed events land in `events`.
local function observed(fake, events, opts)
  local o = { on_event = function(ev) events[#events + 1] = ev end }
  for k, v in pairs(opts or {}) do o[k] = v end
  return fake:client(o)
end

local function of_type(events, t)
  local out = {}
  for _, ev in ipairs(events) do
    if ev.type == t then out[#out + 1] = ev end
  end
  return out
end

after_each(function()
  loop.cancel_all()
end)

describe("a quiet channel after an outage (fake)", function()
  -- Joins homeTimeline and main, receives nothing, loses the socket; alice
  -- mentions @me twice while it is down; after the reconnect the notes and the
  -- notifications each arrive once, in order.
  local function outage(fake)
    local events, notes, notifs = {}, {}, {}
    local s = observed(fake, events):stream{ backoff = FAST }
    s:channel("homeTimeline"):on("note", function(n) notes[#notes + 1] = n end)
    s:on("notification", function(n) notifs[#notifs + 1] = n end)
    s:start()
    assert.is_true(run_until(function() return #fake:sockets() == 1 end))
    fake:run_until_idle() -- joined and confirmed (the fake answers at once)
    assert.equal(0, #notes + #notifs)
    assert.equal(1, fake:drop_streams())
    local m1 = fake:post("alice", { text = "@me are you there?" })
    local m2 = fake:post("alice", { text = "@me hello?" })
    assert.is_true(run_until(function() return #notes >= 2 and #notifs >= 2 end))
    assert.is_true(run_until(function() return s:stats().tasks == 0 end))
    fake:run_until_idle()
    s:close()
    return s, events, notes, notifs, m1, m2
  end

  it("starts a channel that is empty at join from the server's time, and backfills it", function()
    local fake = testing.fake()
    local _, events, notes, notifs, m1, m2 = outage(fake)
    assert.same({ m1.id, m2.id }, ids_of(notes))
    assert.equal(2, #notifs)
    assert.equal("mention", notifs[1].type)
    assert.same({ m1.id, m2.id }, { notifs[1].note.id, notifs[2].note.id })
    for _, ev in ipairs(of_type(events, "position")) do
      assert.equal("server_time", ev.source)
      assert.is_string(ev.id)
    end
  end)

  it("starts a channel that has items at join from the newest, without delivering them", function()
    local fake = testing.fake()
    local old = fake:post("alice", { text = "@me before the stream" })
    local _, events, notes, notifs, m1, m2 = outage(fake)
    assert.same({ m1.id, m2.id }, ids_of(notes))
    assert.same({ m1.id, m2.id }, { notifs[1].note.id, notifs[2].note.id })
    assert.equal(2, #notifs)
    local positions = of_type(events, "position")
    for _, ev in ipairs(positions) do assert.equal("newest", ev.source) end
    local home = positions[1].channel == "homeTimeline" and positions[1] or positions[2]
    assert.equal(old.id, home.id)
  end)

  it("reports the backfills and the reconnect to on_event, without the token", function()
    local fake = testing.fake()
    local _, events = outage(fake)
    local reconnects = of_type(events, "reconnect")
    assert.equal(1, #reconnects)
    assert.equal(1, reconnects[1].attempt)
    assert.is_number(reconnects[1].delay)
    assert.is_string(reconnects[1].reason)
    local by_channel = {}
    for _, ev in ipairs(of_type(events, "backfill")) do by_channel[ev.channel] = ev end
    local home, main = by_channel.homeTimeline, by_channel.main
    assert.equal("notes/timeline", home.endpoint)
    assert.equal("i/notifications", main.endpoint)
    for _, ev in ipairs{ home, main } do
      assert.equal("reconnect", ev.reason)
      assert.equal(2, ev.count)
      assert.is_string(ev.since_id)
      assert.is_true(ev.last_id > ev.since_id)
      assert.equal(2, ev.pages) -- the page with both, then the empty one that ends it
      assert.equal("fake.misskey.test", ev.host)
    end
    for _, ev in ipairs(events) do
      for k, v in pairs(ev) do
        assert.is_nil(tostring(v):find("fake-token-me", 1, true), k)
      end
    end
  end)
end)

describe("a quiet channel after an outage (test server)", function()
  local srv, control

  setup(function()
    srv = server.start()
    control = misskey.new{ host = srv.url, token = "tok" }
  end)
  teardown(function() srv:stop() end)
  before_each(function() assert(control:request("test/stream/reset")) end)

  local function call(endpoint, params) return assert(control:request(endpoint, params or {})) end

  it("backfills a note and a notification that came while the socket was down, each once", function()
    local events, notes, notifs = {}, {}, {}
    local c = misskey.new{ host = srv.url, token = "tok", on_event = function(ev) events[#events + 1] = ev end }
    local s = c:stream{ backoff = FAST }
    s:channel("homeTimeline"):on("note", function(n) notes[#notes + 1] = n.text end)
    s:on("notification", function(n) notifs[#notifs + 1] = n.text end)
    s:start()
    assert.is_true(run_until(function() return #of_type(events, "position") == 2 end, 10))
    -- away: upgrades wait until the release, so what comes meanwhile is surely missed
    call("test/stream/drop", { hold = true })
    call("test/stream/post", { text = "@streamer while you were away" })
    call("test/stream/notify", { type = "mention",
      body = { type = "mention", text = "@streamer while you were away" } })
    call("test/stream/release")
    assert.is_true(run_until(function() return #of_type(events, "backfill") == 2 end, 10))
    assert.is_true(run_until(function() return s:stats().tasks == 0 end))
    s:close()
    assert.same({ "@streamer while you were away" }, notes)
    assert.same({ "@streamer while you were away" }, notifs)
    local st = call("test/stream/state")
    assert.equal(2, #st.sockets)
  end)
end)

describe("positions across a restart", function()
  local dir
  before_each(function() dir = server.temp_dir() end)
  after_each(function() server.remove_dir(dir) end)

  it("a stream that starts again backfills from where the last one stopped, exactly once", function()
    local fake = testing.fake()
    local path = dir .. "/home.json"
    local seen, first = {}, {}
    local s = observed(fake, first):stream{ backoff = FAST, positions = path }
    s:channel("homeTimeline"):on("note", function(n) seen[#seen + 1] = n.text end)
    s:start()
    assert.is_true(run_until(function() return #of_type(first, "position") == 1 end))
    fake:post("alice", { text = "one" })
    fake:post("alice", { text = "two" })
    assert.is_true(run_until(function() return #seen == 2 end))
    s:close() -- saves
    assert.equal(384, core.file_mode(path)) -- 0600
    local saved = json.decode(read(path))
    assert.equal(fake.base_url, saved.host)
    assert.equal(fake:notes{ user = "alice" }[2].id, saved.positions.homeTimeline)
    -- the process is down: three notes are posted
    for i = 3, 5 do fake:post("alice", { text = ({ "three", "four", "five" })[i - 2] }) end
    local events, again = {}, {}
    local s2 = observed(fake, events):stream{ backoff = FAST, positions = path }
    s2:channel("homeTimeline"):on("note", function(n) again[#again + 1] = n.text end)
    s2:start()
    assert.is_true(run_until(function() return #of_type(events, "backfill") == 1 end))
    fake:post("alice", { text = "six" }) -- live again
    assert.is_true(run_until(function() return #again == 4 end))
    s2:close()
    assert.same({ "three", "four", "five", "six" }, again)
    local bf = of_type(events, "backfill")[1]
    assert.equal("restart", bf.reason)
    assert.equal(3, bf.count)
    assert.equal(0, #of_type(events, "position")) -- the saved one was used, none taken anew
  end)

  it("positions = true keeps the file under $XDG_STATE_HOME/misskey/positions, named without the token", function()
    local fake = testing.fake()
    local events = {}
    local s = with_env({ XDG_STATE_HOME = dir }, function()
      return observed(fake, events):stream{ positions = true }
    end)
    s:on("notification", function() end)
    s:start()
    assert.is_true(run_until(function() return #of_type(events, "position") == 1 end))
    s:close()
    local p = assert(io.popen("ls " .. dir .. "/misskey/positions"))
    local name = p:read("*l")
    p:close()
    assert.matches("^fake%.misskey%.test%-%x+%.json$", name)
    assert.is_nil(name:find("fake-token-me", 1, true))
    local text = read(dir .. "/misskey/positions/" .. name)
    assert.is_nil(text:find("fake-token-me", 1, true))
    assert.is_string(json.decode(text).positions.main)
    assert.equal(448, core.file_mode(dir .. "/misskey/positions")) -- 0700
  end)

  it("writes at most every SAVE_INTERVAL while events come, and at close", function()
    local fake = testing.fake()
    local path = dir .. "/p.json"
    local old = streamlib.SAVE_INTERVAL
    streamlib.SAVE_INTERVAL = 0.05
    local events = {}
    local s = observed(fake, events):stream{ positions = path }
    local n = 0
    s:channel("homeTimeline"):on("note", function() n = n + 1 end)
    s:start()
    assert.is_true(run_until(function() return #of_type(events, "position") == 1 end))
    assert.is_true(run_until(function() return read(path) ~= nil end)) -- the starting point, saved
    os.remove(path)
    local note = fake:post("alice", { text = "saved without a close" })
    assert.is_true(run_until(function() return read(path) ~= nil end))
    streamlib.SAVE_INTERVAL = old
    assert.equal(note.id, json.decode(read(path)).positions.homeTimeline)
    s:close()
  end)

  it("reports an unreadable positions file and goes on without it", function()
    local fake = testing.fake()
    local path = dir .. "/bad.json"
    local f = assert(io.open(path, "w"))
    f:write("this is not json")
    f:close()
    os.execute("chmod 600 " .. path)
    local errs, events = {}, {}
    local s = observed(fake, events):stream{ positions = path }
    s:on("error", function(e) errs[#errs + 1] = e end)
    s:channel("homeTimeline")
    s:start()
    assert.is_true(run_until(function() return #errs >= 1 end))
    assert.equal("invalid", errs[1].kind)
    assert.matches("not a positions file", errs[1].message)
    assert.is_true(run_until(function() return #of_type(events, "position") == 1 end))
    s:close() -- replaced by a good one
    assert.is_string(json.decode(read(path)).positions.homeTimeline)
  end)

  it("refuses bad positions options, naming the option", function()
    local c = testing.fake():client()
    assert.error_matches(function() c:stream{ positions = "../up" } end, "bad option 'positions'")
    assert.error_matches(function() c:stream{ positions = 12 } end, "bad option 'positions'")
    assert.error_matches(function() c:stream{ positions = "x", backfill = false } end,
      "bad option 'positions' %(positions are where backfills start")
  end)
end)

describe("a clean stop on a signal", function()
  local srv, control, dir

  setup(function()
    srv = server.start()
    control = misskey.new{ host = srv.url, token = "tok" }
  end)
  teardown(function() srv:stop() end)
  before_each(function()
    assert(control:request("test/stream/reset"))
    dir = server.temp_dir()
  end)
  after_each(function() server.remove_dir(dir) end)

  local function pid()
    local f = assert(io.open("/proc/self/stat"))
    local p = f:read("*l"):match("^%d+")
    f:close()
    return p
  end

  it("stops taking events, lets a running handler finish, saves positions, closes with 1000", function()
    local path = dir .. "/pos.json"
    local s = misskey.new{ host = srv.url, token = "tok" }:stream{ positions = path }
    local log = {}
    local tl = s:channel("homeTimeline")
    tl:on("connected", function() assert(control:request("test/stream/post", { text = "slow" })) end)
    tl:on("note", function(note)
      log[#log + 1] = "start " .. note.text
      os.execute("kill -USR1 " .. pid()) -- the signal comes while this handler runs
      misskey.sleep(0.2)
      log[#log + 1] = "end " .. note.text
    end)
    local ok, sig = misskey.run(function()
      local guard = misskey.spawn(function()
        misskey.sleep(10)
        s:close()
      end)
      local a, b = s:run{ stop_on = { "USR1" }, grace = 5 }
      guard:cancel()
      return a, b
    end)
    assert.is_true(ok)
    assert.equal("USR1", sig)
    assert.same({ "start slow", "end slow" }, log)
    local st = assert(control:request("test/stream/state"))
    assert.equal(1, #st.sockets)
    assert.equal(1000, st.sockets[1].close_code)
    local saved = json.decode(read(path))
    assert.is_string(saved.positions.homeTimeline)
  end)

  it("cancels a handler that outlives the grace period", function()
    local s = misskey.new{ host = srv.url, token = "tok" }:stream()
    local finished = false
    local tl = s:channel("homeTimeline")
    tl:on("connected", function() assert(control:request("test/stream/post", { text = "stuck" })) end)
    tl:on("note", function()
      os.execute("kill -USR2 " .. pid())
      misskey.sleep(30)
      finished = true
    end)
    local ok, sig = s:run{ stop_on = { "USR2" }, grace = 0.1 }
    assert.is_true(ok)
    assert.equal("USR2", sig)
    assert.is_false(finished)
    assert.equal(0, loop.alive())
  end)

  it("refuses bad stop_on and grace values, naming the option", function()
    local s = misskey.new{ host = srv.url, token = "tok" }:stream()
    assert.error_matches(function() s:run{ stop_on = { "KILL" } } end, "bad option 'stop_on' %(unknown signal KILL")
    assert.error_matches(function() s:run{ stop_on = "TERM" } end, "bad option 'stop_on'")
    assert.error_matches(function() s:run{ grace = -1 } end, "bad option 'grace'")
    assert.error_matches(function() s:close{ grace = "soon" } end, "bad option 'grace'")
    s:close()
  end)
end)

describe("the max_message option", function()
  it("is an integer of bytes from 1 to MAX_MESSAGE, else a clear error", function()
    local c = testing.fake():client()
    for _, bad in ipairs{ 0, -5, 1.5, "16M", math.huge, streamlib.MAX_MESSAGE + 1 } do
      assert.error_matches(function() c:stream{ max_message = bad } end, "bad option 'max_message' %(an integer")
    end
    c:stream{ max_message = 4096 }:close()
  end)

  it("reaches the WebSocket: a bigger message ends the connection (1009) and the stream reconnects", function()
    local srv = server.start()
    local c = misskey.new{ host = srv.url, token = "tok" }
    local s = c:stream{ max_message = 2048, backoff = FAST }
    local reasons, texts, connects = {}, {}, 0
    local tl = s:channel("homeTimeline")
    tl:on("connected", function()
      connects = connects + 1
      if connects == 1 then
        assert(c:request("test/stream/emit", { channel = "homeTimeline", type = "note",
          body = { id = "big", text = ("x"):rep(5000) } }))
      else
        assert(c:request("test/stream/emit", { channel = "homeTimeline", type = "note",
          body = { id = "small", text = "fits" } }))
      end
    end)
    tl:on("note", function(n)
      texts[#texts + 1] = n.text
      s:close()
    end)
    s:on("disconnected", function(reason) reasons[#reasons + 1] = reason end)
    s:start()
    local done = run_until(function() return #texts > 0 end, 10)
    s:close()
    srv:stop()
    assert.is_true(done)
    assert.same({ "fits" }, texts)
    assert.matches("too big", reasons[1])
  end)
end)
