-- misskey.bot, driven through the in-process fake: users act with
-- fake:as(name), the test runs the loop until idle and asserts what the bot did.
local misskey = require "misskey"
local testing = require "misskey.testing"
local loop = require "misskey.loop"
local botlib = require "misskey.bot"

local fake, bot, now

-- The bot's notes (its replies), oldest first.
local function replies() return fake:notes{ user = "me" } end

before_each(function()
  fake = testing.fake{ users = { { username = "bob" } } }
  now = 1000
  bot = misskey.bot(fake:client(), { clock = function() return now end })
end)

after_each(function()
  bot:stop()
  fake:run_until_idle()
  assert.equal(0, loop.alive())
end)

describe("bot commands", function()
  it("routes '@me ping a \"b c\"' to the command with quoted arguments", function()
    local seen
    bot:command("ping", function(ctx, args)
      seen = args
      assert(ctx:reply("pong"))
    end)
    bot:start()
    fake:run_until_idle()
    local note = assert(fake:as("alice"):post('@me ping a "b c" \'d e\''))
    fake:run_until_idle()
    assert.same({ "a", "b c", "d e" }, seen)
    local r = replies()
    assert.equal(1, #r)
    assert.equal("@alice pong", r[1].text)
    assert.equal(note.id, r[1].replyId)
    assert.equal("public", r[1].visibility)
  end)

  it("splits arguments, keeping quoted words together", function()
    assert.same({ "a", "b c", "", "d" }, botlib.split([[  a "b c" "" d ]]))
    assert.same({ "x", "unterminated rest" }, botlib.split([[x "unterminated rest]]))
  end)

  it("takes a Lua pattern; its captures are the args; names are case-insensitive", function()
    local got = {}
    bot:command("^roll (%d+)d(%d+)$", function(_, args) got[#got + 1] = args[1] .. "/" .. args[2] end)
    bot:command("echo", function(ctx, args) ctx:reply(table.concat(args, " ")) end)
    bot:start()
    fake:run_until_idle()
    fake:as("alice"):post("@me roll 2d6")
    fake:as("alice"):post("@me@fake.misskey.test ECHO hi there")
    fake:as("alice"):post("@me unknown command")
    fake:run_until_idle()
    assert.same({ "2/6" }, got)
    local r = replies()
    assert.equal(1, #r)
    assert.equal("@alice hi there", r[1].text)
  end)

  it("keeps the incoming visibility: specified replies are visible to the author", function()
    bot:command("ping", function(ctx) ctx:reply("pong") end)
    bot:start()
    fake:run_until_idle()
    local me = fake:user("me").id
    fake:as("alice"):post("@me ping", { visibility = "specified", visibleUserIds = { me } })
    fake:as("bob"):post("@me ping", { visibility = "home" })
    fake:run_until_idle()
    local r = replies()
    assert.equal(2, #r)
    assert.equal("specified", r[1].visibility)
    assert.same({ fake:user("alice").id }, r[1].visibleUserIds)
    assert.equal("@alice pong", r[1].text)
    assert.equal("home", r[2].visibility)
    assert.equal("@bob pong", r[2].text)
  end)

  it("applies a per-user cooldown", function()
    local count = 0
    bot:command("ping", function(ctx)
      count = count + 1
      ctx:reply("pong")
    end, { cooldown = 60 })
    bot:start()
    fake:run_until_idle()
    fake:as("alice"):post("@me ping")
    fake:as("alice"):post("@me ping")
    fake:as("bob"):post("@me ping")
    fake:run_until_idle()
    assert.equal(2, count)
    now = now + 61
    fake:as("alice"):post("@me ping")
    fake:run_until_idle()
    assert.equal(3, count)
  end)

  it("answers help with the generated list of commands", function()
    bot:command("ping", function() end, { description = "answers pong", cooldown = 5 })
    bot:command("echo", function() end)
    bot:start()
    fake:run_until_idle()
    fake:as("alice"):post("@me help")
    fake:run_until_idle()
    local r = replies()
    assert.equal(1, #r)
    assert.matches("^@alice Commands:\n%- ping: answers pong %(every 5 s at most%)\n%- echo\n%- help", r[1].text)
  end)

  it("handles a mention that is also a reply once, and ignores its own notes", function()
    local count, mentions, replies_seen = 0, 0, 0
    bot:command("ping", function(ctx) count = count + 1; ctx:reply("pong") end)
    bot:on("mention", function() mentions = mentions + 1 end)
    bot:on("reply", function() replies_seen = replies_seen + 1 end)
    bot:start()
    fake:run_until_idle()
    local mine = fake:post("me", { text = "a note of mine" })
    fake:as("alice"):reply(mine, "@me ping")          -- a reply and a mention
    fake:post("me", { text = "@me ping myself" })      -- its own note
    fake:run_until_idle()
    assert.equal(1, count)
    assert.equal(1, mentions)
    assert.equal(1, replies_seen)
  end)

  it("handles a timeline note seen on two channels once", function()
    local seen = {}
    bot:on("note", function(_, note) seen[#seen + 1] = note.text end)
    bot:start()
    fake:run_until_idle()
    -- a second channel delivering the same notes, as after a reconnect or a backfill
    local ch = bot._stream:channel("localTimeline")
    ch:on("note", function(n) bot:_event("note", n) end)
    fake:run_until_idle()
    fake:as("alice"):post("twice?")
    fake:post("me", { text = "my own" })
    fake:run_until_idle()
    assert.same({ "twice?" }, seen)
  end)
end)

describe("bot dedupe", function()
  it("drops repeats of recent events and forgets old ones (SEEN to 2 * SEEN kept)", function()
    local saved = botlib.SEEN
    botlib.SEEN = 2
    local seen = {}
    bot:on("note", function(_, note) seen[#seen + 1] = note.id end)
    local function deliver(id) bot:_event("note", { id = id, text = id, userId = "someone-else" }) end
    local ok, err = pcall(function()
      for _, id in ipairs { "a", "b", "a", "c", "a", "d", "e", "a" } do deliver(id) end
      fake:run_until_idle()
    end)
    botlib.SEEN = saved
    assert(ok, err)
    -- "a" is dropped while within the last SEEN..2*SEEN ids, and handled again once forgotten
    assert.same({ "a", "b", "c", "d", "e", "a" }, seen)
  end)
end)

describe("bot events", function()
  it("followed, notification and ready run each handler in a task", function()
    local got = {}
    bot:on("ready", function(_, me) got[#got + 1] = "ready " .. me.username end)
    bot:on("followed", function(ctx, user)
      got[#got + 1] = "followed " .. user.username
      assert.is_table(loop.current())
      ctx:reply("thanks")
    end)
    bot:on("notification", function(_, n) got[#got + 1] = "notification " .. n.type end)
    bot:start()
    fake:run_until_idle()
    fake:as("bob"):follow("me")
    fake:run_until_idle()
    assert.same({ "ready me", "followed bob", "notification follow" }, got)
    assert.equal("@bob thanks", replies()[1].text)
  end)

  it("reports reactions on captured notes", function()
    local got
    bot:on("reacted", function(_, r) got = r end)
    local note = fake:post("me", { text = "react" })
    bot:capture(note.id)
    bot:start()
    fake:run_until_idle()
    fake:as("alice"):react(note.id, "🎉")
    fake:run_until_idle()
    assert.same({ note_id = note.id, reaction = "🎉", userId = fake:user("alice").id, emoji = misskey.null }, got)
  end)

  it("renote and chat events; its own chat messages are ignored", function()
    local got = {}
    bot:on("renote", function(ctx, note)
      got[#got + 1] = "renote by " .. ctx.user.username .. " of " .. note.renoteId
    end)
    bot:on("chat", function(ctx, m) got[#got + 1] = "chat from " .. ctx.user.username .. ": " .. m.text end)
    local mine = fake:post("me", { text = "renote me" })
    bot:start()
    fake:run_until_idle()
    fake:as("alice"):request("notes/create", { renoteId = mine.id })
    local me, alice = fake:user("me"), fake:user("alice")
    fake:_main(fake._by_id[me.id], "newChatMessage", { id = "c1", text = "hello", fromUserId = alice.id,
      fromUser = { id = alice.id, username = "alice" } })
    fake:_main(fake._by_id[me.id], "newChatMessage", { id = "c2", text = "mine", fromUserId = me.id })
    fake:run_until_idle()
    assert.same({ "renote by alice of " .. mine.id, "chat from alice: hello" }, got)
  end)

  it("runs a command missed while disconnected, from the backfilled notification", function()
    bot = misskey.bot(fake:client(), { stream = { backoff = { min = 0.01, max = 0.02 } } })
    local count = 0
    bot:command("ping", function(ctx) count = count + 1; ctx:reply("pong") end)
    bot:start()
    fake:run_until_idle()
    fake:as("alice"):post("@me ping")
    fake:run_until_idle()
    assert.equal(1, count)
    assert.equal(1, fake:drop_streams())
    fake:as("bob"):post("@me ping")                    -- nobody listening
    fake:run_until_idle()
    assert.equal(1, count)
    for _ = 1, 100 do
      if #fake:sockets() > 0 and count == 2 then break end
      misskey.sleep(0.01)
      fake:run_until_idle()
    end
    assert.equal(2, count)
    assert.equal("@bob pong", replies()[2].text)
  end)

  it("wait_for returns the next matching event, or times out", function()
    local answer, err
    bot:command("ask", function(ctx)
      ctx:reply("your name?")
      local note = bot:wait_for("mention", { timeout = 5, filter = function(n) return n.user.username == "alice" end })
      answer = note and note.text
      local _, _, e = bot:wait_for("mention", { timeout = 0.01 })
      err = e
    end)
    bot:start()
    fake:run_until_idle()
    fake:as("alice"):post("@me ask")
    fake:run_until_idle()
    fake:as("bob"):post("@me I am not alice")
    fake:as("alice"):post("@me Alice")
    fake:run_until_idle()
    assert.equal("@me Alice", answer)
    misskey.sleep(0.05)
    fake:run_until_idle()
    assert.equal("timeout", err.kind)
  end)

  it("every(seconds, fn) runs fn periodically while the bot runs", function()
    local ticks = 0
    bot:every(0.01, function() ticks = ticks + 1 end)
    bot:start()
    misskey.sleep(0.1)
    fake:run_until_idle()
    assert.is_true(ticks >= 2)
    bot:stop()
    local before = ticks
    misskey.sleep(0.03)
    assert.equal(before, ticks)
  end)

  it("run() blocks until a handler stops the bot", function()
    bot:command("stop", function(ctx)
      ctx:reply("bye")
      ctx.bot:stop()
    end)
    bot:on("ready", function() fake:as("alice"):post("@me stop") end)
    assert.is_true(bot:run())
    assert.equal("@alice bye", replies()[1].text)
    assert.is_false(bot:stop())
  end)

  it("run() inside misskey.run waits in its task", function()
    bot:on("ready", function(ctx) ctx.bot:stop() end)
    local r = misskey.run(function() return bot:run() end)
    assert.is_true(r)
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() misskey.bot("x") end)
    assert.has_error(function() misskey.bot(fake:client(), { nope = 1 }) end, "bad option 'nope' (unknown option)")
    assert.has_error(function() bot:on("nosuch", function() end) end)
    assert.has_error(function() bot:command("x", function() end, { cooldown = -1 }) end)
    assert.has_error(function() bot:every(0, function() end) end)
  end)
end)

describe("bot.store", function()
  it("keeps values in the registry, surviving a new bot", function()
    assert.is_nil(bot.store:get("count"))
    assert.is_true(bot.store:set("count", 3))
    assert.is_true(bot.store:set("data", { a = { 1, 2 } }))
    local again = misskey.bot(fake:client())
    assert.equal(3, again.store:get("count"))
    assert.same({ a = { 1, 2 } }, again.store:get("data"))
    local req = fake.requests[#fake.requests]
    assert.equal("i/registry/get", req.endpoint)
    assert.same(botlib.SCOPE, req.params.scope)
  end)
end)
