-- misskey.bot taking Misskey's webhook deliveries, through the in-process fake:
-- the fake delivers each event to the bot's handler as the server would (the
-- secret in X-Misskey-Hook-Secret, a task per delivery), so the same commands,
-- on() and wait_for run whichever source an event came from, and an event
-- that both sources bring runs once. The webhook is registered on the account
-- (idempotent by name) with a secret kept in the credential store.
local misskey = require "misskey"
local botlib = require "misskey.bot"
local credentials = require "misskey.credentials"
local json = require "misskey.json"
local loop = require "misskey.loop"
local server = require "support.server"
local testing = require "misskey.testing"
local with_env = require "support.env"

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

local URL = "https://bot.example/hook"
local ACCOUNT = "@me@fake.misskey.test"

local fake, dir, bots

before_each(function()
  fake = testing.fake{ users = { { username = "bob" } } }
  dir = server.temp_dir()
  with_env{ XDG_CONFIG_HOME = dir }
  bots = {}
end)

after_each(function()
  for _, b in ipairs(bots) do b:stop() end
  fake:run_until_idle()
  loop.cancel_all()
  with_env.reset()
  server.remove_dir(dir)
end)

-- A bot of @me on the fake, its webhook delivered to in-process through fake:route.
local function new_bot(opts, webhook_opts)
  local b = misskey.bot(fake:client(), opts)
  bots[#bots + 1] = b
  local w = { url = URL, listen = false }
  for k, v in pairs(webhook_opts or {}) do w[k] = v end
  b:webhook(w)
  fake:route(w.url, b:webhook_handler())
  return b
end

local function count_requests(endpoint)
  local n = 0
  for _, r in ipairs(fake.requests) do
    if r.endpoint == endpoint then n = n + 1 end
  end
  return n
end

local function my_webhooks()
  return assert(fake:client():request("i/webhooks/list"))
end

describe("a bot with webhooks only (stream = false)", function()
  it("registers its webhook and answers a mention delivered by webhook", function()
    local b = new_bot({ stream = false })
    local mentions = {}
    b:command("ping", function(ctx) assert(ctx:reply("pong")) end)
    b:on("mention", function(ctx, note) mentions[#mentions + 1] = ctx.source .. " " .. note.text end)
    b:start()
    fake:run_until_idle()
    local hooks = my_webhooks()
    assert.equal(1, #hooks)
    assert.equal(botlib.WEBHOOK_NAME, hooks[1].name)
    assert.equal(URL, hooks[1].url)
    assert.same({ "mention", "reply", "renote", "follow", "followed", "unfollow" }, hooks[1].on)
    assert.equal(hooks[1].id, b.webhook_id)
    assert.equal(0, #fake:sockets()) -- no stream
    local note = assert(fake:as("alice"):post("@me ping"))
    fake:run_until_idle()
    local replies = fake:notes{ user = "me" }
    assert.equal(1, #replies)
    assert.equal("@alice pong", replies[1].text)
    assert.equal(note.id, replies[1].replyId)
    assert.same({ "webhook @me ping" }, mentions)
    -- As the server sends it: the secret in the header, the event in the body.
    local d = fake.deliveries[1]
    assert.equal(204, d.status)
    assert.equal("mention", d.type)
    assert.equal(hooks[1].secret, d.headers["X-Misskey-Hook-Secret"])
    assert.equal(note.id, json.decode(d.body).body.note.id)
  end)

  it("makes the secret from the random source, keeps it first, and reuses it on the next start", function()
    local b = new_bot({ stream = false })
    b:start()
    fake:run_until_idle()
    local kept = assert(credentials.webhook(ACCOUNT, botlib.WEBHOOK_NAME))
    assert.equal(43, #kept.secret) -- 32 random bytes, base64url
    assert.matches("^[%w_%-]+$", kept.secret)
    assert.equal(kept.secret, my_webhooks()[1].secret)
    assert.equal(b.webhook_id, kept.id)
    b:stop()
    fake:run_until_idle()
    -- A restart: the same webhook, the same secret, nothing to update.
    local again = new_bot({ stream = false })
    again:start()
    fake:run_until_idle()
    local hooks = my_webhooks()
    assert.equal(1, #hooks)
    assert.equal(b.webhook_id, again.webhook_id)
    assert.equal(kept.secret, hooks[1].secret)
    assert.equal(1, count_requests("i/webhooks/create"))
    assert.equal(0, count_requests("i/webhooks/update"))
    -- A changed URL or event list updates the one webhook of that name.
    again:stop()
    fake:run_until_idle()
    local third = new_bot({ stream = false }, { url = "https://bot.example/other", events = { "mention" } })
    third:start()
    fake:run_until_idle()
    hooks = my_webhooks()
    assert.equal(1, #hooks)
    assert.equal("https://bot.example/other", hooks[1].url)
    assert.same({ "mention" }, hooks[1].on)
    assert.equal(1, count_requests("i/webhooks/update"))
  end)

  it("serves wait_for and on() from webhook deliveries; a replay reaches no handler", function()
    local b = new_bot({ stream = false })
    local got, followed = nil, 0
    b:command("ask", function(ctx)
      ctx:reply("your name?")
      local answer = b:wait_for("reply", { timeout = 5, filter = function(n) return n.user.username == "alice" end })
      got = answer and answer.text
    end)
    b:on("followed", function() followed = followed + 1 end)
    b:start()
    fake:run_until_idle()
    fake:as("alice"):post("@me ask")
    fake:run_until_idle()
    local question = fake:notes{ user = "me" }[1]
    fake:as("alice"):reply(question, "Alice")
    fake:run_until_idle()
    assert.equal("Alice", got)
    fake:as("alice"):unfollow("me")
    fake:as("alice"):follow("me")
    fake:run_until_idle()
    assert.equal(1, followed)
    -- Misskey retries a delivery it thinks failed: the same event id again.
    local last = fake.deliveries[#fake.deliveries]
    assert.equal("followed", last.type)
    fake:redeliver(last)
    fake:run_until_idle()
    assert.equal(204, last.status)
    assert.equal(2, last.tries)
    assert.equal(1, followed)
  end)

  it("answers 503 before it started and once it stopped (Misskey tries those again)", function()
    local b = new_bot({ stream = false })
    local handle = b:webhook_handler()
    assert.equal(503, (handle("POST", {}, "{}")))
    b:start()
    fake:run_until_idle()
    assert.equal(401, (handle("POST", { ["content-type"] = "application/json" }, "{}")))
    b:stop()
    assert.equal(503, (handle("POST", {}, "{}")))
  end)

  it("unregisters on request: the webhook deleted, its secret forgotten", function()
    local b = new_bot({ stream = false })
    b:start()
    fake:run_until_idle()
    assert(credentials.webhook(ACCOUNT, botlib.WEBHOOK_NAME))
    local removed
    misskey.run(function() removed = { b:remove_webhook() } end)
    assert.same({ true }, removed)
    assert.equal(0, #my_webhooks())
    assert.is_nil(credentials.webhook(ACCOUNT, botlib.WEBHOOK_NAME))
    misskey.run(function() removed = { b:remove_webhook() } end)
    assert.same({ false }, removed)
  end)

  it("fails run() when the webhook cannot be registered", function()
    for i = 1, 3 do
      assert(fake:client():request("i/webhooks/create", { name = "other" .. i, url = URL, on = { "note" } }))
    end
    local b = new_bot({ stream = false })
    local ok, msg, err = b:run()
    assert.is_nil(ok)
    assert.equal("api", err.kind)
    assert.equal("TOO_MANY_WEBHOOKS", err.code)
    assert.matches("webhook", msg)
  end)

  it("hands out no secret when a server echoes it in a refusal (create and update)", function()
    local leak = require "support.leak"
    local echo = { credential = true, errors = { ECHO = { id = "e", message = "refused", status = 400 } },
      handler = function(_, ps) return nil, "ECHO", { params = ps, text = "secret was " .. tostring(ps.secret) } end }
    fake.endpoints["i/webhooks/create"] = echo
    local b = new_bot({ stream = false })
    local seen
    b:on("error", function(_, e) seen = e end)
    local results = { b:run() }
    local kept = assert(credentials.webhook(ACCOUNT, botlib.WEBHOOK_NAME)).secret
    assert.is_nil(results[1])
    assert.equal("ECHO", results[3].code)
    leak.assert_none(kept, unpack(results, 1, 3))
    leak.assert_none(kept, seen)
    -- An update refused the same way (the webhook exists, with another URL).
    fake.endpoints["i/webhooks/create"] = nil
    assert(fake:client():request("i/webhooks/create", { name = "h", url = URL, on = { "mention" } }))
    fake.endpoints["i/webhooks/update"] = echo
    results = { require("misskey.webhook.account").register(fake:client(), { name = "h", url = URL .. "2",
      events = { "mention" } }) }
    kept = assert(credentials.webhook(ACCOUNT, "h")).secret
    assert.is_nil(results[1])
    assert.equal("ECHO", results[3].code)
    leak.assert_none(kept, unpack(results, 1, 3))
  end)
end)

describe("a bot with a stream and webhooks", function()
  it("runs an event that both sources bring once; following twice is still two", function()
    local b = new_bot()
    local commands, mentions, followed = 0, {}, 0
    b:command("ping", function() commands = commands + 1 end)
    b:on("mention", function(ctx) mentions[#mentions + 1] = ctx.source end)
    b:on("followed", function() followed = followed + 1 end)
    b:start()
    fake:run_until_idle()
    assert.equal(1, #fake:sockets())
    fake:as("alice"):post("@me ping")
    fake:run_until_idle()
    assert.equal(1, commands)
    assert.equal(1, #mentions) -- the stream's or the webhook's, whichever came first
    local deliveries = #fake.deliveries
    assert.is_true(deliveries >= 1) -- the webhook did deliver it
    for _ = 1, 2 do
      fake:as("bob"):follow("me")
      fake:as("bob"):unfollow("me")
    end
    fake:run_until_idle()
    assert.equal(2, followed) -- 4 events arrived (2 by stream, 2 by webhook)
    local kinds = {}
    for i = deliveries + 1, #fake.deliveries do kinds[#kinds + 1] = fake.deliveries[i].type end
    assert.same({ "followed", "followed" }, kinds)
  end)
end)

describe("bot:webhook's options", function()
  it("refuses plain http to another machine (the secret travels in clear) unless allowed", function()
    local b = misskey.bot(fake:client())
    assert.has_error(function() b:webhook{ url = "http://bot.example/hook", listen = false } end,
      "bad option 'url' (plain http to a host that is not this machine: every delivery carries the webhook's"
      .. " secret in clear, readable on the way; use https (or pass allow_plaintext_secret = true))")
    b:webhook{ url = "http://bot.example/hook", listen = false, allow_plaintext_secret = true }
    b:webhook{ url = "http://127.0.0.1:8080/hook" } -- loopback: fine, and listens there
    assert.has_error(function() b:webhook{ url = "ftp://bot.example/" } end)
  end)

  it("names what is wrong", function()
    local b = misskey.bot(fake:client())
    assert.has_error(function() b:webhook{ url = URL } end)
    local function why(fn, ...)
      local ok, msg = pcall(fn, ...)
      assert.is_false(ok)
      return msg
    end
    assert.matches("bad option 'listen'", why(b.webhook, b, { url = URL }))
    assert.matches("bad option 'events'", why(b.webhook, b, { url = URL, listen = false, events = { "note" } }))
    assert.matches("bad option 'bogus'", why(b.webhook, b, { url = URL, listen = false, bogus = 1 }))
    assert.matches("bad option 'max_size' to 'webhook'", why(b.webhook, b, { url = URL, listen = false, max_size = 0 }))
    local webhook_only = misskey.bot(fake:client(), { stream = false })
    assert.matches("stream = false takes its events from webhooks", why(webhook_only.start, webhook_only))
    assert.has_error(function() misskey.bot(fake:client(), { stream = 5 }) end)
  end)
end)
