-- misskey.testing: the fake's streaming side (fake.transport.websocket), the
-- endpoints that fire events, fake:as(user) and fake:run_until_idle().
local misskey = require "misskey"
local testing = require "misskey.testing"
local json = require "misskey.json"

local fake

-- A raw fake socket of @username with the given channels joined (id = channel name).
local function socket(username, channels)
  local ws = assert(fake.transport.websocket{ url = "wss://fake.misskey.test/streaming?i=fake-token-" .. username })
  for _, name in ipairs(channels or {}) do
    ws:send(json.encode{ type = "connect", body = { channel = name, id = name, pong = true } })
  end
  return ws
end

-- Every frame queued on `ws` now, decoded.
local function drain(ws)
  local out = {}
  while #ws._queue > 0 do out[#out + 1] = json.decode(ws:receive(0)) end
  return out
end

local function channel_events(frames)
  local out = {}
  for _, f in ipairs(frames) do
    if f.type == "channel" then out[#out + 1] = f.body.id .. ":" .. f.body.type end
  end
  return out
end

before_each(function() fake = testing.fake{ users = { { username = "bob" } } } end)
after_each(function() fake:reset() end)

describe("fake.transport.websocket", function()
  it("answers connect with pong, ignores what Misskey ignores, refuses an unknown token", function()
    local ws = socket("me", { "main", "homeTimeline", "nosuchChannel" })
    local frames = drain(ws)
    assert.same({ { type = "connected", body = { id = "main" } },
                  { type = "connected", body = { id = "homeTimeline" } } }, frames)
    local anon = assert(fake.transport.websocket{ url = "wss://fake.misskey.test/streaming" })
    anon:send(json.encode{ type = "connect", body = { channel = "main", id = "m", pong = true } })
    anon:send(json.encode{ type = "connect", body = { channel = "localTimeline", id = "l", pong = true } })
    assert.same({ { type = "connected", body = { id = "l" } } }, drain(anon))
    local ws2, msg, err = fake.transport.websocket{ url = "wss://fake.misskey.test/streaming?i=wrong" }
    assert.is_nil(ws2)
    assert.equal("auth", err.kind)
    assert.matches("401", msg)
    local _, _, nerr = fake.transport.websocket{ url = "wss://elsewhere.example/streaming" }
    assert.equal("network", nerr.kind)
    local hdr = assert(fake.transport.websocket{ url = "wss://fake.misskey.test/streaming",
      headers = { Authorization = "Bearer fake-token-alice" } })
    assert.equal("alice", hdr.user.username)
  end)

  it("times out a receive, and reports a closed socket", function()
    local ws = socket("me")
    local text, msg, err = ws:receive(0.01)
    assert.is_nil(text)
    assert.equal("timeout", err.kind)
    assert.matches("no message within", msg)
    assert.equal(1, fake:drop_streams())
    local _, _, cerr = ws:receive(1)
    assert.equal("network", cerr.kind)
    assert.is_true(cerr.closed)
    assert.is_nil((ws:send("{}")))
  end)

  it("wakes a task waiting in receive when an action publishes an event", function()
    local ws = socket("alice", { "main" })
    drain(ws)
    local got
    local t = misskey.spawn(function() got = json.decode(assert(ws:receive(5))) end)
    fake:run_until_idle()
    assert.is_nil(got)
    fake:as("me"):post("hi @alice")
    fake:run_until_idle()
    assert.equal("done", t.status)
    assert.equal("mention", got.body.type)
    assert.equal("hi @alice", got.body.body.text)
  end)
end)

describe("events fired by the fake's actions", function()
  it("a note: timelines of followers, mention, reply and notification on main", function()
    local me, alice, bob = socket("me", { "main", "homeTimeline" }), socket("alice", { "main", "homeTimeline" }),
      socket("bob", { "main", "homeTimeline", "localTimeline" })
    drain(me); drain(alice); drain(bob)
    local parent = fake:as("me"):post("parent")
    assert.same({ "homeTimeline:note" }, channel_events(drain(me)))
    assert.same({ "homeTimeline:note" }, channel_events(drain(alice)))   -- alice follows me
    assert.same({ "localTimeline:note" }, channel_events(drain(bob)))   -- bob does not
    local child = fake:as("alice"):reply(parent, "@bob look")
    assert.equal(parent.id, child.replyId)
    local mine = drain(me)
    assert.same({ "homeTimeline:note", "main:reply", "main:notification" }, channel_events(mine))
    assert.equal("reply", mine[3].body.body.type)
    assert.equal("alice", mine[3].body.body.user.username)
    assert.same({ "localTimeline:note", "main:mention", "main:notification" }, channel_events(drain(bob)))
    -- home visibility stays off the local timeline; specified reaches only its recipients
    fake:as("alice"):post("secret", { visibility = "specified", visibleUserIds = { fake:user("bob").id } })
    assert.same({}, channel_events(drain(me)))
    assert.same({ "main:mention", "main:notification" }, channel_events(drain(bob)))
    local notes = assert(fake:as("bob"):request("i/notifications"))
    assert.equal(2, #notes)
    assert.equal("mention", notes[1].type)
    assert.equal("secret", notes[1].note.text)
  end)

  it("follows: followed and notification for the followee, follow for the follower", function()
    local me, bob = socket("me", { "main" }), socket("bob", { "main" })
    drain(me); drain(bob)
    assert(fake:as("bob"):follow("me"))
    local f = drain(me)
    assert.same({ "main:followed", "main:notification" }, channel_events(f))
    assert.equal("bob", f[1].body.body.username)
    assert.equal("follow", f[2].body.body.type)
    assert.same({ "main:follow" }, channel_events(drain(bob)))
    local _, _, err = fake:as("bob"):follow("me")
    assert.equal("ALREADY_FOLLOWING", err.code)
    assert(fake:as("bob"):unfollow("me"))
    assert.same({ "main:unfollow" }, channel_events(drain(bob)))
    assert.equal("NOT_FOLLOWING", select(3, fake:as("bob"):unfollow("me")).code)
    assert.equal("FOLLOWEE_IS_YOURSELF", select(3, fake:as("bob"):follow("bob")).code)
  end)

  it("reactions: noteUpdated for captured notes, the count on the note, a notification", function()
    local note = fake:as("me"):post("react to me")
    local me = socket("me", { "main" })
    me:send(json.encode{ type = "subNote", body = { id = note.id } })
    drain(me)
    assert.is_true(fake:as("alice"):react(note.id, "👍"))
    local frames = drain(me)
    assert.same({ type = "noteUpdated", body = { id = note.id, type = "reacted",
      body = { reaction = "👍", emoji = misskey.null, userId = fake:user("alice").id } } }, frames[1])
    assert.equal("reaction", frames[2].body.body.type)
    local shown = assert(fake:client{ user = "alice" }:request("notes/show", { noteId = note.id }))
    assert.same({ ["👍"] = 1 }, shown.reactions)
    assert.equal("👍", shown.myReaction)
    assert.equal("ALREADY_REACTED", select(3, fake:as("alice"):react(note.id, "🎉")).code)
    me:send(json.encode{ type = "unsubNote", body = { id = note.id } })
    fake:as("bob"):react(note.id, "🎉")
    assert.same({ "main:notification" }, channel_events(drain(me)))
  end)

  it("the registry: get, set and NO_SUCH_KEY per user and scope", function()
    local c = fake:client()
    local _, _, err = c:request("i/registry/get", { key = "k", scope = { "s" } })
    assert.equal("NO_SUCH_KEY", err.code)
    assert.is_true(c:request("i/registry/set", { key = "k", value = { n = 1 }, scope = { "s" } }))
    assert.same({ n = 1 }, c:request("i/registry/get", { key = "k", scope = { "s" } }))
    assert.equal("NO_SUCH_KEY", select(3, c:request("i/registry/get", { key = "k", scope = { "t" } })).code)
    assert.equal("NO_SUCH_KEY",
      select(3, fake:client{ user = "alice" }:request("i/registry/get", { key = "k", scope = { "s" } })).code)
    assert.equal("INVALID_PARAM", select(3, c:request("i/registry/set", { key = "k", value = 1,
      scope = { "with-dash" } })).code)
  end)
end)

describe("client:stream over the fake", function()
  it("delivers timeline notes and main events to a real stream", function()
    local client = fake:client()
    local s = client:stream()
    local got = {}
    s:channel("homeTimeline"):on("note", function(n) got[#got + 1] = "note " .. n.text end)
    s:on("mention", function(n) got[#got + 1] = "mention " .. n.text end)
    s:start()
    fake:run_until_idle()
    fake:as("alice"):post("@me hello")
    fake:run_until_idle()
    assert.same({ "note @me hello", "mention @me hello" }, got)
    s:close()
    fake:run_until_idle()
    assert.equal(0, #fake:sockets())
  end)
end)

describe("'*' listeners (every event of a channel)", function()
  it("get (event, body) on a channel and on the main channel", function()
    local stream = fake:client():stream()
    local seen = {}
    stream:channel("homeTimeline"):on("*", function(event, body)
      seen[#seen + 1] = "home:" .. event .. ":" .. body.text
    end)
    stream:on("*", function(event) seen[#seen + 1] = "main:" .. event end)
    stream:start()
    fake:run_until_idle()
    fake:as("alice"):post("hi @me")
    fake:run_until_idle()
    stream:close()
    fake:run_until_idle()
    assert.same({ "home:note:hi @me", "main:mention" }, { seen[1], seen[2] })
  end)
end)
