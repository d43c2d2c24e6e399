-- A bot that runs for weeks: a mention missed while the stream was down still
-- runs its command once; captures, dedupe entries, cooldowns and tasks stay
-- bounded over 100,000 events and 1,000 reconnects; positions carry over a
-- restart; SIGTERM/SIGINT stop it cleanly (a subprocess against the test server).
local misskey = require "misskey"
local core = require "misskey.core"
local json = require "misskey.json"
local loop = require "misskey.loop"
local botlib = require "misskey.bot"
local streamlib = require "misskey.stream"
local testing = require "misskey.testing"
local server = require "support.server"

local FAST = { min = 0.0001, max = 0.0005 }

-- Runs scheduler rounds until cond() holds or `limit` seconds pass; returns cond().
local function run_until(cond, limit)
  local deadline = core.now() + (limit or 5)
  for _ = 1, 1000000 do
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

local function replies(fake) return fake:notes{ user = "me" } end

after_each(function() loop.cancel_all() end)

describe("a bot after an outage", function()
  it("runs the command of a mention that came while the stream was down, once", function()
    local fake = testing.fake()
    local bot = misskey.bot(fake:client(), { stream = { backoff = FAST } })
    local runs = 0
    bot:command("ping", function(ctx)
      runs = runs + 1
      assert(ctx:reply("pong"))
    end)
    bot:start()
    assert.is_true(run_until(function() return #fake:sockets() == 1 end))
    fake:run_until_idle() -- joined; nothing has happened yet
    assert.equal(1, fake:drop_streams())
    local mention = fake:post("alice", { text = "@me ping" })
    assert.is_true(run_until(function() return runs >= 1 end))
    fake:run_until_idle()
    assert.is_true(run_until(function() return bot:stats().stream.tasks == 0 end))
    fake:run_until_idle()
    bot:stop()
    assert.equal(1, runs)
    local r = replies(fake)
    assert.equal(1, #r)
    assert.equal(mention.id, r[1].replyId)
  end)
end)

describe("bot captures", function()
  local fake, bot, now
  before_each(function()
    fake = testing.fake()
    now = 0
    bot = misskey.bot(fake:client(), { clock = function() return now end })
  end)
  after_each(function() bot:stop() end)

  local function captured()
    local ws = fake:sockets()[1]
    local out = {}
    for id in pairs(ws.captures) do out[#out + 1] = id end
    table.sort(out)
    return out
  end

  it("are released by uncapture, by the note's deletion and after their ttl", function()
    local reacted = {}
    bot:on("reacted", function(_, r) reacted[#reacted + 1] = r.note_id end)
    bot:start()
    assert.is_true(run_until(function() return #fake:sockets() == 1 end))
    fake:run_until_idle()
    local a = assert(fake:as("me"):post("a"))
    local b = assert(fake:as("me"):post("b"))
    local c = assert(fake:as("me"):post("c"))
    bot:capture(a.id)
    bot:capture(b.id, { ttl = 60 })
    bot:capture(c.id)
    fake:run_until_idle()
    assert.equal(3, bot:stats().captures)
    assert.is_true(bot:uncapture(c.id))
    assert.is_false(bot:uncapture(c.id))
    assert(fake:as("me"):request("notes/delete", { noteId = a.id }))
    fake:run_until_idle()
    assert.equal(1, bot:stats().captures) -- a went with its note
    now = 61                              -- b's ttl has passed
    assert(fake:as("alice"):react(b.id))
    fake:run_until_idle()
    assert.same({}, reacted)
    assert.equal(0, bot:stats().captures)
    assert.same({}, captured())
    assert.equal(0, bot:stats().stream.captures)
  end)

  it("are at most bot.MAX_CAPTURES: one more releases the oldest", function()
    local old = botlib.MAX_CAPTURES
    botlib.MAX_CAPTURES = 3
    bot:start()
    assert.is_true(run_until(function() return #fake:sockets() == 1 end))
    for i = 1, 5 do bot:capture("note" .. i) end
    fake:run_until_idle()
    botlib.MAX_CAPTURES = old
    assert.equal(3, bot:stats().captures)
    assert.same({ "note3", "note4", "note5" }, captured())
    assert.error_matches(function() bot:capture(12) end, "bad argument #1 to 'capture'")
    assert.error_matches(function() bot:capture("x", { ttl = 0 }) end, "bad option 'ttl'")
  end)
end)

describe("a bot that runs long", function()
  it("keeps captures, dedupe entries, cooldowns and tasks bounded over 100,000 events and 1,000 reconnects",
    function()
      local fake = testing.fake()
      local now = 0
      local old_max = botlib.MAX_CAPTURES
      botlib.MAX_CAPTURES = 50 -- each reconnect subscribes every capture again: 50 keeps the spec fast
      local bot = misskey.bot(fake:client(), { stream = { backoff = FAST }, clock = function() return now end })
      local mentions, commands, failures = 0, 0, 0
      local saved_handler = misskey.on_error(function() failures = failures + 1 end)
      bot:on("mention", function(ctx, note)
        mentions = mentions + 1
        ctx.bot:capture(note.id, { ttl = 30 })
        if mentions % 1000 == 0 then error("a handler that fails now and then") end
      end)
      local measure
      bot:on("notification", function(_, notification)
        if tonumber(notification.id) % 97 == 0 then measure() end -- while handlers run
        misskey.sleep(0) -- one that waits
      end)
      bot:command("ping", function() commands = commands + 1 end, { cooldown = 1 })
      bot:every(3600, function() end)
      bot:start()
      assert.is_true(run_until(function() return #fake:sockets() == 1 end))
      fake:run_until_idle()
      local most = { tasks = 0, timers = 0, seen = 0, captures = 0, cooldowns = 0, stream_tasks = 0,
                     stream_seen = 0, handlers = 0, alive = 0 }
      function measure()
        local st = bot:stats()
        for k, v in pairs{ tasks = st.tasks, timers = st.timers, seen = st.seen, captures = st.captures,
                           cooldowns = st.cooldowns, stream_tasks = st.stream.tasks, stream_seen = st.stream.seen,
                           handlers = st.stream.handlers, alive = loop.alive() } do
          if v > most[k] then most[k] = v end
        end
      end
      local n = 0
      for round = 1, 1000 do
        for _ = 1, 100 do
          n = n + 1
          now = now + 0.01
          local id = ("%016d"):format(n)
          local user = { id = "u" .. (n % 5000), username = "u" .. (n % 5000) }
          local note = { id = id, userId = user.id, user = user, text = "@me ping" }
          if n % 2 == 0 then
            fake:publish("main", "mention", note)
          else
            fake:publish("main", "notification", { id = id, type = "mention", userId = user.id, user = user,
              note = note })
          end
        end
        fake:run_until_idle()
        measure()
        assert.equal(1, fake:drop_streams())
        local before = bot:stats().stream.connections
        assert.is_true(run_until(function()
          return bot:stats().stream.connections > before and #fake:sockets() == 1
        end), "reconnect " .. round)
        fake:run_until_idle()
        measure()
      end
      assert.is_true(run_until(function() return bot:stats().tasks == 0 end))
      local st = bot:stats()
      bot:stop()
      fake:run_until_idle()
      misskey.on_error(saved_handler)
      botlib.MAX_CAPTURES = old_max
      assert.equal(100000, n)
      assert.equal(50000, mentions)
      assert.equal(50, failures)
      assert.equal(1001, st.stream.connections)
      assert.is_true(commands > 0)
      -- the bounds
      assert.is_true(most.captures <= 50, "captures " .. most.captures)
      assert.is_true(most.seen <= 2 * botlib.SEEN, "bot dedupe entries " .. most.seen)
      assert.is_true(most.stream_seen <= 2 * streamlib.SEEN * 2, "stream dedupe entries " .. most.stream_seen)
      assert.is_true(most.cooldowns <= 2 * botlib.MAX_COOLDOWNS, "cooldowns " .. most.cooldowns)
      assert.is_true(most.timers <= 1, "timer loops " .. most.timers)
      assert.is_true(most.stream_tasks <= 4, "stream tasks " .. most.stream_tasks) -- 2 channels: confirm + backfill
      assert.is_true(most.tasks <= 250, "bot tasks " .. most.tasks) -- 2 per event of one read (100 here)
      assert.is_true(most.alive <= 300, "tasks alive " .. most.alive)
      print(("# 100,000 events, 1,000 reconnects: at most %d captures, %d bot and %d stream dedupe entries,"
        .. " %d cooldowns, %d bot tasks, %d stream tasks, %d tasks alive"):format(most.captures, most.seen,
        most.stream_seen, most.cooldowns, most.tasks, most.stream_tasks, most.alive))
    end)
end)

describe("bot positions across a restart", function()
  it("a bot that starts again runs the commands it missed while down, and no other, once", function()
    local dir = server.temp_dir()
    local path = dir .. "/bot.json"
    local fake = testing.fake()
    local runs = {}
    local function new_bot()
      local bot = misskey.bot(fake:client(), { positions = path, stream = { backoff = FAST } })
      bot:command("echo", function(_, args) runs[#runs + 1] = table.concat(args, " ") end)
      bot:start()
      return bot
    end
    local bot = new_bot()
    assert.is_true(run_until(function() return #fake:sockets() == 1 end))
    fake:run_until_idle()
    fake:post("alice", { text = "@me echo one" })
    assert.is_true(run_until(function() return #runs == 1 end))
    bot:stop()
    fake:post("alice", { text = "@me echo two" })   -- the bot is down
    fake:post("alice", { text = "@me echo three" })
    bot = new_bot()
    assert.is_true(run_until(function() return #runs == 3 end))
    fake:run_until_idle()
    assert.is_true(run_until(function() return bot:stats().stream and bot:stats().stream.backfills == 0 end))
    bot:stop()
    server.remove_dir(dir)
    assert.same({ "one", "two", "three" }, runs)
  end)

  it("refuses a bad positions option at once, naming it", function()
    assert.error_matches(function() misskey.bot(testing.fake():client(), { positions = "a/b" }) end,
      "bad option 'positions'")
  end)
end)

describe("a bot stopped by a signal (subprocess)", function()
  local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
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

  local BOT = [[
    package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
    package.cpath = "./build/%s/?.so;" .. package.cpath
    local misskey = require "misskey"
    local client = misskey.new{ host = arg[1], token = "tok", on_event = function(ev)
      if ev.type == "position" then print("position " .. ev.channel) io.stdout:flush() end
    end }
    local bot = misskey.bot(client, { positions = arg[2] })
    bot:on("ready", function() print("ready") io.stdout:flush() end)
    bot:on("notification", function(_, n)
      print("got " .. n.text) io.stdout:flush()
      misskey.sleep(0.3) -- still running when the signal comes
      print("handled " .. n.text) io.stdout:flush()
    end)
    local ok, sig = bot:run{ stop_on = { "TERM", "INT" }, grace = 5 }
    print("stopped " .. tostring(ok) .. " " .. tostring(sig)) io.stdout:flush()
  ]]

  for _, signal in ipairs{ "TERM", "INT" } do
    it("on SIG" .. signal .. ": lets the handler finish, saves positions, closes with 1000, exits 0", function()
      local script, positions = dir .. "/bot.lua", dir .. "/positions.json"
      local f = assert(io.open(script, "w"))
      f:write(BOT:format(version))
      f:close()
      -- `timeout` bounds the whole run; the shell reports the pid and the bot's exit status.
      local cmd = ("env -u LD_PRELOAD timeout 30 sh -c '%s %s %s %s & echo pid=$!; wait $!; echo exit=$?'")
        :format(interpreter, script, srv.url, positions)
      local p = assert(io.popen(cmd, "r"))
      local pid = p:read("*l"):match("^pid=(%d+)$")
      assert.truthy(pid)
      assert.equal("ready", p:read("*l"))
      assert.equal("position main", p:read("*l")) -- joined (confirmed), its starting point taken
      local n = assert(control:request("test/stream/notify", { body = { type = "follow", text = "hello" } }))
      assert.equal("got hello", p:read("*l"))
      os.execute("kill -" .. signal .. " " .. pid)
      local rest = p:read("*a")
      p:close()
      assert.equal("handled hello\nstopped true " .. signal .. "\nexit=0\n", rest)
      local saved = json.decode(assert(read(positions)))
      assert.equal(n.id, saved.positions.main)
      assert.equal(384, core.file_mode(positions)) -- 0600
      local st = assert(control:request("test/stream/state"))
      assert.equal(1, #st.sockets)
      assert.equal(1000, st.sockets[1].close_code)
    end)
  end
end)
