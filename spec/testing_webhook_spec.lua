-- misskey.testing's webhooks: i/webhooks/* as Misskey 2026.5.4 answers them,
-- and deliveries made as the server makes them (the POST, its headers with the
-- secret in clear, the body), handed to the function fake:route names, in a
-- task of their own; no sockets.
local json = require "misskey.json"
local loop = require "misskey.loop"
local testing = require "misskey.testing"
local webhook = require "misskey.webhook"

local URL = "https://receiver.example/hook"

after_each(function() loop.cancel_all() end)

describe("the fake's i/webhooks endpoints", function()
  it("create, list, show, update and delete, each user its own", function()
    local fake = testing.fake()
    local me = fake:client()
    local hook = assert(me:request("i/webhooks/create", { name = "h", url = URL, secret = "s", on = { "mention" } }))
    assert.equal("h", hook.name)
    assert.equal("s", hook.secret)
    assert.is_true(hook.active)
    assert.equal(json.null, hook.latestStatus)
    local list = assert(me:request("i/webhooks/list"))
    assert.equal(1, #list)
    assert.same(hook, list[1])
    assert.same({}, assert(fake:as("alice"):request("i/webhooks/list")))
    local _, _, err = fake:as("alice"):request("i/webhooks/show", { webhookId = hook.id })
    assert.equal("NO_SUCH_WEBHOOK", err.code)
    assert.is_true(me:request("i/webhooks/update", { webhookId = hook.id, url = URL .. "2", active = false,
      on = { "note", "follow" } }))
    local shown = assert(me:request("i/webhooks/show", { webhookId = hook.id }))
    assert.equal(URL .. "2", shown.url)
    assert.is_false(shown.active)
    assert.same({ "note", "follow" }, shown.on)
    assert.is_true(me:request("i/webhooks/delete", { webhookId = hook.id }))
    assert.same({}, assert(me:request("i/webhooks/list")))
    _, _, err = me:request("i/webhooks/delete", { webhookId = hook.id })
    assert.equal("NO_SUCH_WEBHOOK", err.code)
  end)

  it("refuses a fourth webhook (the default role's webhookLimit) and unknown event types", function()
    local fake = testing.fake()
    local me = fake:client()
    for i = 1, 3 do assert(me:request("i/webhooks/create", { name = "h" .. i, url = URL, on = json.array{} })) end
    local _, _, err = me:request("i/webhooks/create", { name = "h4", url = URL, on = json.array{} })
    assert.equal("TOO_MANY_WEBHOOKS", err.code)
    _, _, err = fake:as("alice"):request("i/webhooks/create", { name = "x", url = URL, on = { "bogus" } })
    assert.equal("INVALID_PARAM", err.code)
  end)
end)

describe("the fake's deliveries", function()
  it("POSTs each event as Misskey does, secret included, to the routed function", function()
    local fake = testing.fake()
    local seen = {}
    fake:route(URL, function(method, headers, body)
      seen[#seen + 1] = { method = method, headers = headers, event = json.decode(body) }
      return 204
    end)
    local hook = assert(fake:client():request("i/webhooks/create", { name = "h", url = URL, secret = "s3cret",
      on = { "mention", "note", "followed" } }))
    local mention = assert(fake:as("alice"):post("@me hello"))
    local mine = fake:post("me", { text = "my own note" })
    assert.equal(0, #seen) -- a task each: after the request that caused it
    fake:run_until_idle()
    assert.equal(2, #seen)
    local d = seen[1]
    assert.equal("POST", d.method)
    assert.equal("application/json", d.headers["Content-Type"])
    assert.equal("Misskey-Hooks", d.headers["User-Agent"])
    assert.equal("fake.misskey.test", d.headers["X-Misskey-Host"])
    assert.equal(hook.id, d.headers["X-Misskey-Hook-Id"])
    assert.equal("s3cret", d.headers["X-Misskey-Hook-Secret"])
    assert.equal("mention", d.event.type)
    assert.equal(fake.base_url, d.event.server)
    assert.equal(hook.id, d.event.hookId)
    assert.equal(fake:user("me").id, d.event.userId)
    assert.is_number(d.event.createdAt)
    assert.equal(mention.id, d.event.body.note.id)
    assert.equal("alice", d.event.body.note.user.username)
    assert.equal("note", seen[2].event.type)
    assert.equal(mine.id, seen[2].event.body.note.id)
    assert.not_equal(seen[1].event.eventId, seen[2].event.eventId)
    assert.equal(204, fake.deliveries[1].status)
    local shown = assert(fake:client():request("i/webhooks/show", { webhookId = hook.id }))
    assert.equal(204, shown.latestStatus)
    assert.is_string(shown.latestSentAt)
  end)

  it("reaches webhook.handler's function: a wrong secret is a 401, no route a failed delivery", function()
    local fake = testing.fake()
    local got = {}
    fake:route(URL, webhook.handler{ secret = "right", on = { ["*"] = function(t) got[#got + 1] = t end } })
    local me = fake:client()
    local good = assert(me:request("i/webhooks/create", { name = "good", url = URL, secret = "right",
      on = { "mention" } }))
    assert(me:request("i/webhooks/create", { name = "bad", url = URL, secret = "wrong", on = { "mention" } }))
    assert(me:request("i/webhooks/create", { name = "lost", url = "https://nowhere.example/", secret = "x",
      on = { "mention" } }))
    fake:as("alice"):post("@me hi")
    fake:run_until_idle()
    assert.same({ "mention" }, got)
    local by_hook = {}
    for _, d in ipairs(fake.deliveries) do by_hook[d.hookId] = d end
    assert.equal(204, by_hook[good.id].status)
    local statuses = {}
    for _, d in ipairs(fake.deliveries) do statuses[#statuses + 1] = tostring(d.status) end
    table.sort(statuses)
    assert.same({ "204", "401", "nil" }, statuses)
    for _, d in ipairs(fake.deliveries) do
      if d.status == nil then assert.matches("no route", d.error) end
    end
    -- A test delivery: dummy data, to the override URL and secret when given.
    assert.is_true(me:request("i/webhooks/test", { webhookId = good.id, type = "followed" }))
    fake:run_until_idle()
    local last = fake.deliveries[#fake.deliveries]
    assert.equal("followed", last.type)
    assert.equal("dummy-user-2", json.decode(last.body).body.user.id)
    assert.same({ "mention", "followed" }, got)
    fake:reset()
    assert.same({}, fake.deliveries)
    assert.same({}, assert(fake:client():request("i/webhooks/list")))
  end)
end)
