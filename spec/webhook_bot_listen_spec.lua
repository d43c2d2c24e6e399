-- A bot taking webhook deliveries through the built-in listener, over real
-- sockets on 127.0.0.1: the test server (spec/support/server.py with
-- spec/support/webhooks_api.py) keeps the account's webhooks and POSTs each
-- delivery from its own process, as Misskey's job queue does. Every wait is
-- bounded and goes through the scheduler.
local core = require "misskey.core"
local loop = require "misskey.loop"
local misskey = require "misskey"
local new_client = require "support.client"
local server = require "support.server"

local TOKEN = "BotNativeToken01" -- 16 letters and digits: a native token, as i/webhooks/test wants

local srv, admin

setup(function()
  srv = server.start()
  admin = new_client{ host = srv.url, token = false }
  assert(admin:request("test/miauth/approve", { session = "webhook-bot", token = TOKEN, username = "hookbot" }))
end)
teardown(function() srv:stop() end)

before_each(function() assert(admin:request("test/webhooks/reset")) end)
after_each(function() loop.cancel_all() end)

-- Waits (in a task) until cond() holds, at most `limit` seconds, told by loop.signal(key).
local function wait_for(key, cond, limit)
  local stop = core.now() + (limit or 10)
  while not cond() do
    local left = stop - core.now()
    if left <= 0 then return false end
    loop.wait_event(key, left)
  end
  return true
end

local function mention(text)
  return { note = { id = "9note" .. tostring(math.random(1e9)), text = text, userId = "9alice", visibility = "public",
    user = { id = "9alice", username = "alice", host = misskey.null } } }
end

describe("a bot behind the built-in webhook listener", function()
  it("answers a mention the server delivers, and takes the server's test delivery", function()
    local b = misskey.bot(new_client{ host = srv.url, token = TOKEN }, { stream = false })
    local events, replies = {}, {}
    b:command("ping", function(ctx)
      replies[#replies + 1] = assert(ctx:reply("pong"))
      loop.signal(events)
    end)
    b:on("mention", function(ctx, note)
      events[#events + 1] = ctx.source .. " " .. note.id
      loop.signal(events)
    end)
    b:on("ready", function() loop.signal(events) end) -- registered, listening
    b:webhook{ listen = { port = 0, path = "/hook" } }
    local hooks, log
    misskey.run(function()
      b:start()
      assert.is_true(wait_for(events, function() return b.webhook_url ~= nil end))
      assert.matches("^http://127%.0%.0%.1:%d+/hook$", b.webhook_url)
      hooks = assert(b.client:request("i/webhooks/list"))
      local event = mention("@hookbot ping")
      assert(admin:request("test/webhooks/deliver", { username = "hookbot", type = "mention", body = event }))
      assert.is_true(wait_for(events, function() return #replies == 1 end), "no reply to the mention")
      assert(b.client:request("i/webhooks/test", { webhookId = b.webhook_id, type = "mention" }))
      assert.is_true(wait_for(events, function() return #events == 2 end), "no test delivery")
      log = assert(admin:request("test/webhooks/log"))
      b:stop()
    end)
    assert.equal(1, #hooks)
    assert.equal(b.webhook_url, hooks[1].url)
    assert.equal(43, #hooks[1].secret)
    assert.equal("@alice pong", replies[1].text)
    assert.matches("^webhook 9note", events[1])
    assert.equal("webhook dummy-mention-1", events[2])
    assert.equal(2, #log)
    assert.equal(204, log[1].status)
    assert.equal(204, log[2].status)
    local stats = b:stats().webhook
    assert.equal(2, stats.handled)
    assert.equal(0, stats.refused)
  end)

  it("refuses a delivery without the secret (401, no handler); once stopped, its port is closed", function()
    local port = server.free_port()
    local url = ("http://127.0.0.1:%d/in"):format(port)
    local b = misskey.bot(new_client{ host = srv.url, token = TOKEN }, { stream = false })
    local mentions = 0
    b:on("mention", function() mentions = mentions + 1 end)
    b:webhook{ url = url, secret = "a-secret-of-our-own" } -- listens on the URL's own address
    local res, after
    misskey.run(function()
      local ready = {}
      b:on("ready", function() loop.signal(ready) end) -- registered, listening
      b:start()
      assert.is_true(wait_for(ready, function() return b.webhook_url ~= nil end))
      assert.equal(url, b.webhook_url)
      res = assert(require("misskey.transport.curl").new().request{ method = "POST", url = url, timeout = 5,
        headers = { ["Content-Type"] = "application/json", ["X-Misskey-Hook-Secret"] = "wrong" },
        body = '{"type":"mention","eventId":"e1","body":{"note":{"id":"n1"}}}' })
      b:stop()
      after = { require("misskey.transport.curl").new().request{ method = "POST", url = url, timeout = 5, body = "" } }
    end)
    assert.equal(401, res.status)
    assert.equal(0, mentions)
    assert.is_nil(after[1])
    assert.equal("network", after[3].kind)
  end)
end)
