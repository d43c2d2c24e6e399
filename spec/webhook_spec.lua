-- misskey.webhook without sockets: verify, parse, the memory of event ids and
-- webhook.handler's answers (the listener: spec/webhook_listen_spec.lua).
-- The fixtures in spec/fixtures/webhook are deliveries recorded from a real
-- Misskey 2026.5.4 (i/webhooks/test for each type, and a real mention and note).
local core = require "misskey.core"
local json = require "misskey.json"
local misskey = require "misskey"
local webhook = require "misskey.webhook"
local leak = require "support.leak"

local SECRET = "hook-secret-Zq8uV3"

local function fixture(name)
  local f = assert(io.open("spec/fixtures/webhook/" .. name .. ".json", "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local delivery = require("support.webhook_delivery").body
local HEADERS = require("support.webhook_delivery").headers(SECRET)

describe("core.equal_ct", function()
  it("compares whole strings, of any length and content", function()
    assert.is_true(core.equal_ct("abc", "abc"))
    assert.is_true(core.equal_ct("", ""))
    assert.is_true(core.equal_ct("a\0b", "a\0b"))
    assert.is_false(core.equal_ct("abc", "abd"))
    assert.is_false(core.equal_ct("abc", "abcd"))
    assert.is_false(core.equal_ct("a\0b", "a\0c"))
    assert.is_false(core.equal_ct("", "x"))
    assert.has_error(function() core.equal_ct("a") end)
    assert.has_error(function() core.equal_ct({}, "a") end)
  end)
end)

describe("webhook.verify", function()
  it("accepts the secret under any spelling of the header name", function()
    for _, name in ipairs{ "x-misskey-hook-secret", "X-Misskey-Hook-Secret", "X-MISSKEY-HOOK-SECRET" } do
      assert.is_true(webhook.verify({ [name] = SECRET, ["content-type"] = "application/json" }, SECRET))
    end
  end)

  it("refuses a missing, wrong or repeated secret with kind auth, status 401, never showing either", function()
    local cases = {
      missing = {},
      wrong = { ["X-Misskey-Hook-Secret"] = SECRET .. "x" },
      prefix = { ["X-Misskey-Hook-Secret"] = SECRET:sub(1, -2) },
      empty = { ["X-Misskey-Hook-Secret"] = "" },
      repeated = { ["X-Misskey-Hook-Secret"] = SECRET, ["x-misskey-hook-secret"] = SECRET },
      list = { ["x-misskey-hook-secret"] = { SECRET, SECRET } },
    }
    local reasons = { missing = "missing", wrong = "wrong", prefix = "wrong", empty = "wrong",
      repeated = "repeated", list = "repeated" }
    for name, headers in pairs(cases) do
      local ok, msg, err = webhook.verify(headers, SECRET)
      assert.is_nil(ok, name)
      assert.equal("auth", err.kind, name)
      assert.equal(401, err.status, name)
      assert.equal(reasons[name], err.reason, name)
      assert.equal(msg, err.message)
      leak.assert_none(SECRET, ok, msg, err)
      leak.assert_none(SECRET:sub(1, -2), ok, msg, err)
    end
  end)

  it("raises on misuse, naming the argument", function()
    assert.has_error(function() webhook.verify(nil, SECRET) end,
      "bad argument #1 to 'verify' (table of headers expected, got nil)")
    assert.has_error(function() webhook.verify({}, "") end,
      "bad argument #2 to 'verify' (the webhook's secret, a non-empty string, expected)")
    assert.has_error(function() webhook.verify({}, nil) end)
  end)
end)

describe("webhook.parse", function()
  it("parses every delivery recorded from a real Misskey, with its payload", function()
    local expect = {
      ["test-note"] = { "note", "note", "dummy-note-1" },
      ["test-mention"] = { "mention", "note", "dummy-mention-1" },
      ["test-reply"] = { "reply", "note", "dummy-reply-1" },
      ["test-renote"] = { "renote", "note", "dummy-renote-1" },
      ["test-follow"] = { "follow", "user", "dummy-user-1" },
      ["test-followed"] = { "followed", "user", "dummy-user-2" },
      ["test-unfollow"] = { "unfollow", "user", "dummy-user-3" },
      ["real-mention"] = { "mention", "note", "auet5iqi3pyj000y" },
      ["real-note"] = { "note", "note", "auet5iu93pyj0010" },
    }
    for name, want in pairs(expect) do
      local e, msg = webhook.parse(fixture(name))
      assert.is_table(e, msg)
      assert.equal(webhook.Event, getmetatable(e))
      assert.equal(want[1], e.type, name)
      assert.equal(want[3], e[want[2]].id, name)
      assert.equal(e.body[want[2]], e[want[2]])
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", e.eventId)
      assert.equal("auepff2d3pyj0004", e.userId)
      assert.equal("http://127.0.0.1:3000", e.server)
      assert.equal("number", type(e.createdAt))
      assert.matches("^misskey.webhook.Event %(" .. want[1], tostring(e))
    end
    local mention = webhook.parse(fixture("real-mention"))
    assert.equal("@alice webhook check (misskey-lua)", mention.note.text)
    assert.equal("admin", mention.note.user.username)
    assert.equal(json.null, mention.note.cw)
    assert.is_nil(webhook.parse(fixture("real-mention"), { null = "nil" }).note.cw)
  end)

  it("parses a type it does not know, keeping the body as it came", function()
    local e = assert(webhook.parse(delivery{ type = "abuseReport", userId = misskey.null,
      body = { id = "r1", comment = "spam" } }))
    assert.equal("abuseReport", e.type)
    assert.equal("spam", e.body.comment)
    assert.is_nil(e.note)
    -- a system webhook's envelope has no userId at all
    local raw = '{"server":"http://127.0.0.1:3000","hookId":"h","eventId":"e","createdAt":1,'
      .. '"type":"userCreated","body":{"id":"u9","username":"new"}}'
    assert.equal("u9", assert(webhook.parse(raw)).body.id)
    assert.equal("inactiveModeratorsInvitationOnlyChanged",
      assert(webhook.parse(delivery{ type = "inactiveModeratorsInvitationOnlyChanged", body = {} })).type)
  end)

  it("refuses what is not a delivery: kind invalid, status 400 (413 over the cap)", function()
    local big = delivery{ body = { note = { id = "n", text = ("x"):rep(1024 * 1024) } } }
    local cases = {
      { "", 400, "json" },
      { "not json {", 400, "json" },
      { "[1, 2]", 400, "shape" },
      { '"mention"', 400, "shape" },
      { "null", 400, "shape" },
      { delivery{ type = misskey.null }, 400, "shape" },
      { delivery{ type = 5 }, 400, "shape" },
      { delivery{ type = "" }, 400, "shape" },
      { delivery{ type = "*" }, 400, "shape" },
      { delivery{ type = "a b" }, 400, "shape" },
      { delivery{ type = ("t"):rep(65) }, 400, "shape" },
      { delivery{ eventId = misskey.null }, 400, "shape" },
      { delivery{ eventId = "" }, 400, "shape" },
      { delivery{ eventId = 12 }, 400, "shape" },
      { delivery{ eventId = ("e"):rep(129) }, 400, "shape" },
      { delivery{ hookId = 1 }, 400, "shape" },
      { delivery{ createdAt = "yesterday" }, 400, "shape" },
      { delivery{ body = misskey.null }, 400, "shape" },
      { delivery{ body = { user = { id = "u" } } }, 400, "shape" },   -- a mention without its note
      { delivery{ body = { note = { text = "no id" } } }, 400, "shape" },
      { delivery{ type = "follow", body = { note = { id = "n" } } }, 400, "shape" },
      { delivery{ body = json.array{ { id = "n" } } }, 400, "shape" },
      { big, 413, "too_large" },
    }
    for i, case in ipairs(cases) do
      local e, msg, err = webhook.parse(case[1])
      assert.is_nil(e, "case " .. i)
      assert.equal("invalid", err.kind, "case " .. i)
      assert.equal(case[2], err.status, "case " .. i .. ": " .. msg)
      assert.equal(case[3], err.reason, "case " .. i .. ": " .. msg)
      assert.matches("^webhook: ", msg)
    end
    -- the cap is the option's, checked before decoding
    local _, _, err = webhook.parse(delivery(), { max_size = 10 })
    assert.equal("too_large", err.reason)
    assert.is_table(webhook.parse(big, { max_size = 2 * 1024 * 1024 }))
  end)

  it("raises on misuse, naming the argument or option", function()
    assert.has_error(function() webhook.parse(nil) end, "bad argument #1 to 'parse' (string expected, got nil)")
    assert.has_error(function() webhook.parse("{}", { max_size = 0 }) end,
      "bad option 'max_size' to 'parse' (a number of bytes >= 1 expected, got 0)")
    assert.has_error(function() webhook.parse("{}", { null = "none" }) end)
    assert.has_error(function() webhook.parse("{}", 5) end)
  end)
end)

describe("webhook.seen", function()
  it("recognises ids it was given, within a bounded memory", function()
    local s = webhook.seen(100)
    assert.is_true(s:add("a"))
    assert.is_false(s:add("a"))
    for i = 1, 1000 do assert.is_true(s:add("id" .. i)) end
    assert.truthy(s:count() <= 200)
    -- the last `size` are always known
    for i = 901, 1000 do assert.is_false(s:add("id" .. i)) end
    assert.is_true(s:add("a")) -- long forgotten
    assert.has_error(function() webhook.seen(0) end)
    assert.has_error(function() webhook.seen(1.5) end)
    assert.equal(10000, webhook.seen().size)
  end)
end)

describe("webhook.handler", function()
  local old_handler
  local reported

  before_each(function()
    reported = {}
    old_handler = misskey.on_error(function(err) reported[#reported + 1] = err end)
  end)
  after_each(function() misskey.on_error(old_handler) end)

  -- Runs the scheduler until no task is left (the handlers), bounded.
  local function settle()
    for _ = 1, 100 do
      if misskey.step(0) == 0 then return end
    end
    error("tasks still running after 100 rounds")
  end

  it("answers every bad input with its status, and nothing reaches a handler", function()
    local calls = 0
    local count = function() calls = calls + 1 end
    local handle = webhook.handler{ secret = SECRET, on = { mention = count, ["*"] = count } }
    local function with(h)
      local t = {}
      for k, v in pairs(HEADERS) do t[k] = v end
      for k, v in pairs(h) do t[k] = v ~= false and v or nil end
      return t
    end
    local cases = {
      { "GET", HEADERS, delivery(), 405 },
      { "post", HEADERS, delivery(), 405 },
      { "POST", with{ ["X-Misskey-Hook-Secret"] = false }, delivery(), 401 },
      { "POST", with{ ["X-Misskey-Hook-Secret"] = "guess" }, delivery(), 401 },
      { "POST", with{ ["Content-Type"] = "text/plain" }, delivery(), 415 },
      { "POST", with{ ["Content-Type"] = "application/jsonx" }, delivery(), 415 },
      { "POST", HEADERS, "not json", 400 },
      { "POST", HEADERS, "[]", 400 },
      { "POST", HEADERS, delivery{ type = 7 }, 400 },
      { "POST", HEADERS, nil, 400 },
      { "POST", HEADERS, delivery{ body = { note = { id = "n", text = ("x"):rep(1024 * 1024) } } }, 413 },
    }
    for i, case in ipairs(cases) do
      local status, headers, body = handle(case[1], case[2], case[3])
      assert.equal(case[4], status, "case " .. i)
      assert.is_table(headers)
      assert.is_string(body)
      leak.assert_none(SECRET, status, headers, body)
    end
    local _, headers = handle("GET", HEADERS, "")
    assert.equal("POST", headers.Allow)
    settle()
    assert.equal(0, calls)
    -- the wrong secret is refused before the body is looked at
    assert.equal(401, (handle("POST", with{ ["X-Misskey-Hook-Secret"] = "guess" }, "not json")))
  end)

  it("answers before the handlers run, which then get (payload, event) and '*' (type, payload, event)", function()
    local got = {}
    local handle = webhook.handler{ secret = SECRET, on = {
      mention = function(note, e) got[#got + 1] = { "mention", note.id, e.eventId } end,
      followed = function(user) got[#got + 1] = { "followed", user.username } end,
      ["*"] = function(t, payload, e) got[#got + 1] = { "*", t, payload.id or payload.comment, e.type } end,
    } }
    local status, headers, body = handle("POST", HEADERS, fixture("real-mention"))
    assert.equal(204, status)
    assert.same({}, headers)
    assert.equal("", body)
    assert.same({}, got) -- started, not run: the answer goes first
    settle()
    assert.same({ { "mention", "auet5iqi3pyj000y", "574f9308-93d5-42c6-8d17-6071762d0961" },
      { "*", "mention", "auet5iqi3pyj000y", "mention" } }, got)
    got = {}
    assert.equal(204, (handle("POST", { ["x-misskey-hook-secret"] = SECRET }, fixture("test-followed"))))
    assert.equal(204, (handle("POST", HEADERS, delivery{ eventId = "ev-unknown", type = "brandNew",
      body = { comment = "from a newer server" } })))
    settle()
    assert.same({ { "followed", "dummy2" }, { "*", "followed", "dummy-user-2", "followed" },
      { "*", "brandNew", "from a newer server", "brandNew" } }, got)
  end)

  it("answers a replayed event id 204 and runs no handler for it", function()
    local calls = 0
    local handle = webhook.handler{ secret = SECRET, on = { mention = function() calls = calls + 1 end } }
    for _ = 1, 3 do assert.equal(204, (handle("POST", HEADERS, delivery{ eventId = "same" }))) end
    assert.equal(204, (handle("POST", HEADERS, delivery{ eventId = "other" })))
    settle()
    assert.equal(2, calls)
  end)

  it("never turns a handler's error into a 5xx: it is answered 204 and reported to misskey.on_error", function()
    local handle = webhook.handler{ secret = SECRET, on = { mention = function() error("handler broke") end } }
    assert.equal(204, (handle("POST", HEADERS, delivery())))
    settle()
    assert.equal(1, #reported)
    assert.equal("task", reported[1].kind)
    assert.matches("handler broke", reported[1].message)
  end)

  it("takes a store (add(id) -> true | false | nil) and a spawn function", function()
    local ids, spawned = {}, {}
    local answers = { true, false }
    local store = { add = function(_, id)
      ids[#ids + 1] = id
      return table.remove(answers, 1) -- true (new), false (known), then nil (a failing store)
    end }
    local handle = webhook.handler{ secret = SECRET, store = store,
      spawn = function(fn, ...) spawned[#spawned + 1] = { fn, ... } end,
      on = { mention = function() end } }
    for i = 1, 3 do assert.equal(204, (handle("POST", HEADERS, delivery{ eventId = "e" .. i }))) end
    assert.same({ "e1", "e2", "e3" }, ids)
    assert.equal(2, #spawned) -- e1 (new) and e3 (the store failed: better twice than never)
    assert.equal("note1", spawned[1][2].id)
  end)

  it("raises on bad options, naming them", function()
    local function msg(opts)
      local ok, err = pcall(function() webhook.handler(opts) end)
      assert.is_false(ok)
      return err
    end
    assert.matches("bad argument #1 to 'handler'", msg(nil))
    assert.matches("bad option 'secret' to 'handler'", msg{ on = {} })
    assert.matches("bad option 'secret' to 'handler'", msg{ secret = "" })
    assert.matches("bad option 'on' to 'handler' %(on.mention must be a function",
      msg{ secret = "s", on = { mention = 1 } })
    assert.matches("bad option 'on' to 'handler' %(handler names", msg{ secret = "s", on = { [1] = print } })
    assert.matches("bad option 'store' to 'handler'", msg{ secret = "s", store = {} })
    assert.matches("bad option 'max_size' to 'handler'", msg{ secret = "s", max_size = -1 })
    assert.matches("bad option 'remember' to 'handler'", msg{ secret = "s", remember = 0 })
    assert.matches("bad option 'spawn' to 'handler'", msg{ secret = "s", spawn = true })
    assert.matches("webhook_spec.lua", msg{ secret = "" }) -- blamed on the caller
    local handle = webhook.handler{ secret = "s" }
    assert.has_error(function() handle(nil, {}, "") end)
    assert.has_error(function() handle("POST", "headers", "") end)
  end)
end)
