-- The seams misskey.ngx.webhook uses, on every Lua (no nginx): webhook.handler
-- takes a body *reader*, called only once the method and the secret passed and
-- given the cap, whose refusal becomes the answer; bot:webhook_handler(spawn)
-- hands the bot's part of an accepted event to `spawn`, to run after the answer.
local misskey = require "misskey"
local loop = require "misskey.loop"
local testing = require "misskey.testing"
local webhook = require "misskey.webhook"

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

local SECRET = "a-secret-for-the-seams"
local HEAD = { ["Content-Type"] = "application/json", ["X-Misskey-Hook-Secret"] = SECRET }
local BODY = '{"type":"mention","eventId":"e-1","body":{"note":{"id":"n-1","text":"hi"}}}'

after_each(function() loop.cancel_all() end)

describe("webhook.handler with a body reader", function()
  local calls, reads, handle
  before_each(function()
    calls, reads = {}, {}
    handle = webhook.handler{ secret = SECRET, max_size = 4096, spawn = function(fn, ...) fn(...) end,
      on = { mention = function(note) calls[#calls + 1] = note.id end } }
  end)
  local function reader(...)
    local result = { ... }
    return function(max)
      reads[#reads + 1] = max
      return unpack(result)
    end
  end

  it("reads nothing for a refused head (method, secret, content type)", function()
    assert.equal(405, (handle("GET", HEAD, reader(BODY))))
    assert.equal(401, (handle("POST", { ["Content-Type"] = "application/json" }, reader(BODY))))
    assert.equal(401, (handle("POST", { ["X-Misskey-Hook-Secret"] = "wrong" }, reader(BODY))))
    assert.equal(415, (handle("POST", { ["X-Misskey-Hook-Secret"] = SECRET, ["Content-Type"] = "text/plain" },
      reader(BODY))))
    assert.same({}, reads)
    assert.same({}, calls)
  end)

  it("reads with the cap once the head passed, and handles what it read", function()
    assert.equal(204, (handle("POST", HEAD, reader(BODY))))
    assert.same({ 4096 }, reads)
    assert.same({ "n-1" }, calls)
    assert.equal(204, (handle("POST", HEAD, reader(BODY)))) -- a replay: read, and no handler
    assert.same({ "n-1" }, calls)
  end)

  it("answers the reader's refusal: 413 as it says, anything else 400; no handler runs", function()
    local status, _, body = handle("POST", HEAD, reader(nil, 413, "webhook: the body is over max_size"))
    assert.equal(413, status)
    assert.matches("over max_size", body)
    assert.equal(400, (handle("POST", HEAD, reader(nil, 400, "unreadable"))))
    assert.equal(400, (handle("POST", HEAD, reader(nil, 500, "a status a receiver never gives"))))
    assert.equal(400, (handle("POST", HEAD, reader(42))))
    assert.same({}, calls)
  end)
end)

describe("bot:webhook_handler(spawn)", function()
  it("hands the bot's part of an accepted event to spawn, and nothing for a refused one", function()
    local fake = testing.fake{ users = { { username = "alice" } } }
    local b = misskey.bot(fake:client(), { stream = false })
    local mentions, deferred = {}, {}
    b:on("mention", function(_, note) mentions[#mentions + 1] = note.id end)
    b:webhook{ url = "https://bot.example/hook", listen = false, register = false, secret = SECRET }
    assert.has_error(function() b:webhook_handler(42) end,
      "bad argument #1 to 'webhook_handler' (function expected, got number)")
    local handle = b:webhook_handler(function(fn, ...)
      deferred[#deferred + 1] = { fn = fn, n = select("#", ...), ... }
    end)
    b:start()
    fake:run_until_idle()
    assert.equal(401, (handle("POST", { ["X-Misskey-Hook-Secret"] = "wrong" }, BODY)))
    assert.equal(0, #deferred)
    local body = BODY:gsub('"text":"hi"', '"text":"hi","userId":"u-9","user":{"id":"u-9","username":"bob"}')
    assert.equal(204, (handle("POST", HEAD, body)))
    fake:run_until_idle()
    assert.equal(1, #deferred)
    assert.same({}, mentions) -- not yet: the host runs it after its answer
    local job = deferred[1]
    job.fn(unpack(job, 1, job.n))
    fake:run_until_idle()
    assert.same({ "n-1" }, mentions)
    b:stop()
    fake:run_until_idle()
  end)
end)
