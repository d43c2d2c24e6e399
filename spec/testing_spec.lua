-- misskey.testing: the in-process fake Misskey, driven through a real client
-- (misskey.new{ transport = fake.transport }) so the client's error model
-- applies to everything the fake answers.
local misskey = require "misskey"
local testing = require "misskey.testing"
local json = require "misskey.json"

local null = misskey.null

-- A client of `fake` with explicit credentials (the environment never leaks in).
local function client_of(fake, opts)
  local o = { host = fake.base_url, token = "fake-token-me", transport = fake.transport }
  for k, v in pairs(opts or {}) do o[k] = v end
  return misskey.new(o)
end

-- Calls that must fail: returns err after checking the common fields.
local function fails(c, endpoint, params, code, status)
  local res, msg, err = c:request(endpoint, params)
  assert.is_nil(res)
  assert.is_string(msg)
  assert.equal("api", err.kind)
  assert.equal(code, err.code)
  assert.equal(status, err.status)
  assert.equal(endpoint, err.endpoint)
  return err
end

-- One raw request through the transport, to see status and headers.
local function raw(fake, endpoint, body, headers)
  return fake.transport.request{
    method = "POST", url = fake.base_url .. "/api/" .. endpoint,
    headers = headers or { ["Content-Type"] = "application/json" }, body = body or "{}",
  }
end

local function is_aidx(id)
  return type(id) == "string" and #id == 16 and id:find("^[0-9a-z]+$") ~= nil
end

local fake, me

before_each(function()
  fake = testing.fake()
  me = client_of(fake)
end)

describe("testing.fake", function()
  it("makes a server with @me and @alice and a client for it", function()
    assert.equal("https://fake.misskey.test", fake.base_url)
    assert.equal("fake.misskey.test", fake.host)
    assert.is_function(fake.transport.request)
    assert.same({}, fake.requests)
    local m, a = fake:user("me"), fake:user("@alice")
    assert.equal("fake-token-me", m.token)
    assert.equal("fake-token-alice", a.token)
    assert.is_true(is_aidx(m.id) and is_aidx(a.id))
    assert.is_nil(fake:user("nobody"))
    assert.matches("fake.misskey.test", tostring(fake))

    local c = fake:client()
    assert.equal("https://fake.misskey.test", c.base_url)
    assert.equal("me", assert(c:request("i")).username)
    assert.equal("alice", assert(fake:client{ user = "alice" }:request("i")).username)
    local anon = fake:client{ token = false }
    assert.equal("CREDENTIAL_REQUIRED", select(3, anon:request("i")).code)
    assert.equal("me", assert(fake:client{ auth = "header" }:request("i")).username)
    assert.has_error(function() fake:client{ user = "nobody" } end)
  end)

  it("takes a host, @me's token, more users, notes, a name, a version and a start time", function()
    local f = testing.fake{
      host = "http://127.0.0.1:3000", token = "my-secret", name = "Test Server", version = "2025.7.0",
      now = 1700000000000,
      users = { { username = "bob", name = "Bob", following = { "me" } }, { username = "me", name = "Myself" } },
      notes = { { user = "bob", text = "first" } },
    }
    assert.equal("http://127.0.0.1:3000", f.base_url)
    local c = f:client()
    local i = assert(c:request("i"))
    assert.equal("Myself", i.name)
    assert.equal("my-secret", f:user("me").token)
    assert.equal("fake-token-bob", f:user("bob").token)
    local meta = assert(c:request("meta"))
    assert.equal("Test Server", meta.name)
    assert.equal("2025.7.0", meta.version)
    assert.equal("http://127.0.0.1:3000", meta.uri)
    local bob = assert(c:request("users/show", { username = "bob" }))
    assert.equal(1, bob.notesCount)
    assert.is_true(bob.isFollowed)
    assert.is_false(bob.isFollowing)
    assert.equal(1700000000001, f:now())
  end)

  it("rejects bad options", function()
    assert.has_error(function() testing.fake{ nope = 1 } end, "bad option 'nope' (unknown option)")
    assert.has_error(function() testing.fake("x") end)
    assert.has_error(function() testing.fake{ host = "a b" } end)
    assert.has_error(function() testing.fake{ token = "" } end)
    assert.has_error(function() testing.fake{ users = { { username = "bad name" } } } end)
    assert.has_error(function() testing.fake{ users = { { username = "x", token = "fake-token-me" } } } end)
    assert.has_error(function() testing.fake{ users = { { username = "x", following = { "ghost" } } } } end)
    assert.has_error(function() testing.fake{ notes = { { user = "me" } } } end)
  end)

  it("is deterministic: the same calls give the same ids and dates", function()
    local function run()
      local f = testing.fake()
      local c = f:client()
      local a = assert(c:request("notes/create", { text = "a" })).createdNote
      local b = assert(c:request("notes/create", { text = "b" })).createdNote
      return { a.id, a.createdAt, b.id, b.createdAt, f:user("me").id }
    end
    assert.same(run(), run())
  end)
end)

describe("the fake clock and ids", function()
  it("advances 1 ms per created note, and ids sort by time", function()
    local t0 = fake:now()
    assert.equal(1779321600000, t0) -- 2026-05-21T00:00:00Z
    local ids = {}
    for i = 1, 40 do
      local n = assert(me:request("notes/create", { text = "n" .. i })).createdNote
      assert.is_true(is_aidx(n.id))
      ids[i] = n.id
      if i > 1 then assert.is_true(ids[i - 1] < ids[i]) end
    end
    assert.equal(t0 + 40, fake:now())
    local last = assert(me:request("notes/show", { noteId = ids[40] }))
    assert.equal("2026-05-21T00:00:00.040Z", last.createdAt)
    fake:advance(86400000)
    local later = assert(me:request("notes/create", { text = "tomorrow" })).createdNote
    assert.equal("2026-05-22T00:00:00.041Z", later.createdAt)
    assert.is_true(ids[40] < later.id)
    assert.has_error(function() fake:advance(-1) end)
  end)
end)

describe("authentication", function()
  it("answers CREDENTIAL_REQUIRED (401) without a token where one is required", function()
    local anon = client_of(fake, { token = false })
    for _, ep in ipairs({ "i", "notes/create", "notes/delete", "notes/timeline" }) do
      local err = fails(anon, ep, { text = "x", noteId = "x" }, "CREDENTIAL_REQUIRED", 401)
      assert.equal("1384574d-a912-4b81-8601-c7b1c4085df1", err.id)
    end
    local res = raw(fake, "i")
    assert.equal(401, res.status)
    assert.equal('Bearer realm="Misskey"', res.headers["www-authenticate"])
    assert.matches("^application/json", res.headers["content-type"])
    assert.same({ error = { message = "Credential required.", code = "CREDENTIAL_REQUIRED",
      id = "1384574d-a912-4b81-8601-c7b1c4085df1", kind = "client" } }, json.decode(res.body))
  end)

  it("answers AUTHENTICATION_FAILED (401) for an unknown token, even on public endpoints", function()
    local bad = client_of(fake, { token = "wrong-token" })
    for _, ep in ipairs({ "i", "meta", "notes/show", "users/show" }) do
      local err = fails(bad, ep, {}, "AUTHENTICATION_FAILED", 401)
      assert.equal("b0a7f5f8-dc2f-4171-b91f-de88ad238e14", err.id)
      assert.equal("client", err.api.kind)
    end
    local res = raw(fake, "i", '{"i":"wrong-token"}')
    assert.equal(401, res.status)
    assert.equal('Bearer realm="Misskey", error="invalid_token", error_description="Authentication failed. '
      .. 'Please ensure your token is correct."', res.headers["www-authenticate"])
    local hdr = client_of(fake, { token = "wrong-token", auth = "header" })
    fails(hdr, "i", nil, "AUTHENTICATION_FAILED", 401)
  end)

  it("reads the token from `i` or from Authorization: Bearer, the header first", function()
    local res = raw(fake, "i", '{"i":"fake-token-alice"}', { Authorization = "Bearer fake-token-me" })
    assert.equal(200, res.status)
    assert.equal("me", json.decode(res.body).username)
    assert.equal("header", fake.requests[1].auth)
    -- The prefix is case-sensitive: "bearer " is not a Bearer header, so `i` counts.
    res = raw(fake, "i", '{"i":"fake-token-alice"}', { authorization = "bearer fake-token-me" })
    assert.equal("alice", json.decode(res.body).username)
    assert.equal("body", fake.requests[2].auth)
    -- A token that is not a string: 400 with no body.
    res = raw(fake, "i", '{"i":42}')
    assert.equal(400, res.status)
    assert.equal("", res.body)
  end)

  it("lets anonymous clients call public endpoints", function()
    local anon = client_of(fake, { token = false })
    assert.equal("Fake Misskey", assert(anon:request("meta")).name)
    assert.equal("alice", assert(anon:request("users/show", { username = "alice" })).username)
  end)
end)

describe("meta", function()
  it("describes the server", function()
    local m = assert(me:request("meta"))
    assert.equal("Fake Misskey", m.name)
    assert.equal("2026.5.4", m.version)
    assert.equal("https://fake.misskey.test", m.uri)
    assert.equal(3000, m.maxNoteTextLength)
    assert.is_table(m.features)
    assert.is_true(m.features.miauth)
    assert.is_true(json.is_array(m.langs))
    assert.equal(null, m.tosUrl)
  end)

  it("leaves the detailed part out with detail = false", function()
    local m = assert(me:request("meta", { detail = false }))
    assert.equal("2026.5.4", m.version)
    assert.is_nil(m.features)
    assert.is_nil(m.requireSetup)
  end)

  it("validates its params", function()
    local err = fails(me, "meta", { detail = "yes" }, "INVALID_PARAM", 400)
    assert.same({ param = "#/properties/detail/type", reason = "must be boolean" }, err.info)
    assert.equal("3d81ceae-475f-4600-b2a8-2bc116157532", err.id)
  end)
end)

describe("i", function()
  it("returns the token's user (MeDetailed)", function()
    assert(me:request("notes/create", { text = "one" }))
    local i = assert(me:request("i"))
    assert.equal(fake:user("me").id, i.id)
    assert.equal("me", i.username)
    assert.equal("Me", i.name)
    assert.equal(null, i.host)
    assert.equal("https://fake.misskey.test/identicon/me@fake.misskey.test", i.avatarUrl)
    assert.equal(1, i.notesCount)
    assert.equal(1, i.followersCount)
    assert.equal(1, i.followingCount)
    assert.is_false(i.isAdmin)
    assert.is_false(i.isBot)
    assert.equal("2026-05-21T00:00:00.000Z", i.createdAt)
    assert.is_true(json.is_array(i.mutedWords))
  end)
end)

describe("notes/create", function()
  it("returns the created note", function()
    local res = assert(me:request("notes/create", { text = "hello", cw = "greeting" }))
    local n = res.createdNote
    assert.is_true(is_aidx(n.id))
    assert.equal("hello", n.text)
    assert.equal("greeting", n.cw)
    assert.equal("public", n.visibility)
    assert.equal(fake:user("me").id, n.userId)
    assert.equal("me", n.user.username)
    assert.equal(null, n.user.host)
    assert.equal(null, n.replyId)
    assert.equal(null, n.renoteId)
    assert.equal(0, n.renoteCount)
    assert.equal(0, n.repliesCount)
    assert.same({}, n.reactions)
    assert.is_true(json.is_array(n.fileIds))
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", n.createdAt)
    assert.is_nil(n.isHidden)
  end)

  it("takes every visibility; specified keeps the known visibleUserIds", function()
    for _, v in ipairs({ "public", "home", "followers" }) do
      assert.equal(v, assert(me:request("notes/create", { text = v, visibility = v })).createdNote.visibility)
    end
    local alice = fake:user("alice").id
    local n = assert(me:request("notes/create", {
      text = "psst", visibility = "specified", visibleUserIds = { alice, "0000000000000000" },
    })).createdNote
    assert.equal("specified", n.visibility)
    assert.same({ alice }, n.visibleUserIds)
    local err = fails(me, "notes/create", { text = "x", visibility = "friends" }, "INVALID_PARAM", 400)
    assert.same({ param = "#/properties/visibility/enum", reason = "must be equal to one of the allowed values" },
      err.info)
  end)

  it("trims the text", function()
    assert.equal("hi", assert(me:request("notes/create", { text = "  hi \n" })).createdNote.text)
  end)

  it("refuses a text longer than maxNoteTextLength (counted in characters)", function()
    assert(me:request("notes/create", { text = ("あ"):rep(3000) }))
    local err = fails(me, "notes/create", { text = ("a"):rep(3001) }, "INVALID_PARAM", 400)
    assert.same({ param = "#/properties/text/maxLength", reason = "must NOT have more than 3000 characters" },
      err.info)
    assert.equal("client", err.api.kind)
  end)

  it("needs a text unless there is a renote, files or a poll", function()
    local err = fails(me, "notes/create", {}, "INVALID_PARAM", 400)
    assert.same({ param = "#/then/required", reason = "must have required property 'text'" }, err.info)
    err = fails(me, "notes/create", { cw = "only a cw" }, "INVALID_PARAM", 400)
    assert.equal("#/then/required", err.info.param)
    err = fails(me, "notes/create", { text = null }, "INVALID_PARAM", 400)
    assert.same({ param = "#/then/properties/text/type", reason = "must be string" }, err.info)
    err = fails(me, "notes/create", { text = " \n " }, "INVALID_PARAM", 400)
    assert.same({ param = "#/then/properties/text/pattern", reason = 'must match pattern "[^\\s]+"' }, err.info)
    err = fails(me, "notes/create", { text = "" }, "INVALID_PARAM", 400)
    assert.same({ param = "#/properties/text/minLength", reason = "must NOT have fewer than 1 characters" },
      err.info)
    err = fails(me, "notes/create", { text = 5 }, "INVALID_PARAM", 400)
    assert.same({ param = "#/properties/text/type", reason = "must be string,null" }, err.info)
    local poll = assert(me:request("notes/create", { poll = { choices = { "yes", "no" } } })).createdNote
    assert.equal(null, poll.text)
    assert.is_true(poll.hasPoll)
    assert.equal("yes", poll.poll.choices[1].text)
    err = fails(me, "notes/create", { poll = { choices = { "only" } } }, "INVALID_PARAM", 400)
    assert.equal("#/properties/poll/properties/choices/minItems", err.info.param)
  end)

  it("answers NO_SUCH_FILE for files (the fake has no drive yet)", function()
    local err = fails(me, "notes/create", { fileIds = { "0000000000000000" } }, "NO_SUCH_FILE", 400)
    assert.equal("b6992544-63e7-67f0-fa7f-32444b1b5306", err.id)
  end)

  it("replies, and answers NO_SUCH_REPLY_TARGET for an unknown replyId", function()
    local parent = assert(me:request("notes/create", { text = "parent" })).createdNote
    local alice = client_of(fake, { token = "fake-token-alice" })
    local child = assert(alice:request("notes/create", { text = "child", replyId = parent.id })).createdNote
    assert.equal(parent.id, child.replyId)
    assert.equal(parent.id, child.reply.id)
    assert.equal(1, assert(me:request("notes/show", { noteId = parent.id })).repliesCount)

    local err = fails(me, "notes/create", { text = "x", replyId = "amiagao0fake0zzz" }, "NO_SUCH_REPLY_TARGET", 400)
    assert.equal("749ee0f6-d3da-459a-bf02-282e2da4292c", err.id)
    assert.equal("No such reply target.", err.api.message)
    err = fails(me, "notes/create", { text = "x", replyId = "not-an-id!" }, "INVALID_PARAM", 400)
    assert.same({ param = "#/properties/replyId/format", reason = 'must match format "misskey:id"' }, err.info)
  end)

  it("renotes, with Misskey's renote rules", function()
    local alice = client_of(fake, { token = "fake-token-alice" })
    local orig = assert(alice:request("notes/create", { text = "original" })).createdNote
    local rn = assert(me:request("notes/create", { renoteId = orig.id })).createdNote
    assert.equal(null, rn.text)
    assert.equal(orig.id, rn.renoteId)
    assert.equal("original", rn.renote.text)
    assert.equal(1, assert(me:request("notes/show", { noteId = orig.id })).renoteCount)
    local quote = assert(me:request("notes/create", { renoteId = orig.id, text = "look" })).createdNote
    assert.equal("look", quote.text)

    fails(me, "notes/create", { renoteId = rn.id }, "CANNOT_RENOTE_TO_A_PURE_RENOTE", 400)
    fails(me, "notes/create", { text = "re", replyId = rn.id }, "CANNOT_REPLY_TO_A_PURE_RENOTE", 400)
    fails(me, "notes/create", { renoteId = "0000000000000000" }, "NO_SUCH_RENOTE_TARGET", 400)
    local secret = assert(alice:request("notes/create", { text = "s", visibility = "specified" })).createdNote
    fails(me, "notes/create", { renoteId = secret.id }, "CANNOT_RENOTE_DUE_TO_VISIBILITY", 400)
    fails(me, "notes/create", { text = "re", replyId = secret.id }, "CANNOT_REPLY_TO_AN_INVISIBLE_NOTE", 400)
  end)
end)

describe("notes/show", function()
  it("shows a note, also to anonymous clients", function()
    local n = assert(me:request("notes/create", { text = "visible" })).createdNote
    local shown = assert(me:request("notes/show", { noteId = n.id }))
    assert.equal(n.id, shown.id)
    assert.equal("visible", shown.text)
    assert.equal(n.createdAt, shown.createdAt)
    local anon = client_of(fake, { token = false })
    assert.equal("visible", assert(anon:request("notes/show", { noteId = n.id })).text)
  end)

  it("answers NO_SUCH_NOTE with HTTP 400 for an unknown note", function()
    local err = fails(me, "notes/show", { noteId = "0000000000000000" }, "NO_SUCH_NOTE", 400)
    assert.equal("24fcbfc6-2e37-42b6-8388-c29b3861a08d", err.id)
    assert.equal("No such note.", err.api.message)
    local res = raw(fake, "notes/show", '{"noteId":"0000000000000000"}')
    assert.equal('Bearer realm="Misskey", error="invalid_request", error_description="No such note."',
      res.headers["www-authenticate"])
  end)

  it("needs a noteId", function()
    local err = fails(me, "notes/show", {}, "INVALID_PARAM", 400)
    assert.same({ param = "#/required", reason = "must have required property 'noteId'" }, err.info)
  end)

  it("hides what the viewer may not see", function()
    local alice = client_of(fake, { token = "fake-token-alice" })
    local secret = assert(alice:request("notes/create", { text = "for bob only", cw = "cw",
      visibility = "specified" })).createdNote
    local hidden = assert(me:request("notes/show", { noteId = secret.id }))
    assert.is_true(hidden.isHidden)
    assert.equal(null, hidden.text)
    assert.equal(null, hidden.cw)
    assert.equal("for bob only", assert(alice:request("notes/show", { noteId = secret.id })).text)
    local anon = client_of(fake, { token = false })
    local followers = assert(alice:request("notes/create", { text = "f", visibility = "followers" })).createdNote
    assert.is_true(assert(anon:request("notes/show", { noteId = followers.id })).isHidden)
    assert.equal("f", assert(me:request("notes/show", { noteId = followers.id })).text) -- @me follows @alice
  end)
end)

describe("notes/delete", function()
  it("deletes your own note (204) and it is gone", function()
    local n = assert(me:request("notes/create", { text = "bye" })).createdNote
    assert.is_true(me:request("notes/delete", { noteId = n.id }))
    assert.equal(204, fake.requests[#fake.requests].status)
    fails(me, "notes/show", { noteId = n.id }, "NO_SUCH_NOTE", 400)
    assert.equal(0, assert(me:request("i")).notesCount)
  end)

  it("answers NO_SUCH_NOTE for an unknown note and ACCESS_DENIED for another's", function()
    local err = fails(me, "notes/delete", { noteId = "0000000000000000" }, "NO_SUCH_NOTE", 400)
    assert.equal("490be23f-8c1f-4796-819f-94cb4f9d1630", err.id)
    local theirs = fake:post("alice", { text = "mine" })
    err = fails(me, "notes/delete", { noteId = theirs.id }, "ACCESS_DENIED", 400)
    assert.equal("fe8d7103-0ea8-4ec3-814d-f8b401dc69e9", err.id)
    assert.equal("mine", assert(me:request("notes/show", { noteId = theirs.id })).text)
  end)

  it("deletes replies and renotes with the note", function()
    local n = fake:post("me", { text = "root" })
    local reply = fake:post("alice", { text = "reply", replyId = n.id })
    local rn = fake:post("alice", { renoteId = n.id })
    assert.is_true(me:request("notes/delete", { noteId = n.id }))
    fails(me, "notes/show", { noteId = reply.id }, "NO_SUCH_NOTE", 400)
    fails(me, "notes/show", { noteId = rn.id }, "NO_SUCH_NOTE", 400)
  end)
end)

describe("notes/timeline", function()
  local ids -- the 25 notes, oldest first: me, alice, me, alice, ...

  before_each(function()
    ids = {}
    for i = 1, 25 do
      ids[i] = fake:post(i % 2 == 1 and "me" or "alice", { text = "note " .. i }).id
    end
  end)

  local function ids_of(list)
    local out = {}
    for i, n in ipairs(list) do out[i] = n.id end
    return out
  end

  local function range(from, to)
    local out = {}
    for i = from, to, from <= to and 1 or -1 do out[#out + 1] = ids[i] end
    return out
  end

  it("returns the newest 10 notes, newest first", function()
    local tl = assert(me:request("notes/timeline"))
    assert.same(range(25, 16), ids_of(tl))
    assert.equal("note 25", tl[1].text)
    assert.equal("me", tl[1].user.username)
    assert.equal("alice", tl[2].user.username)
    assert.same(range(25, 23), ids_of(assert(me:request("notes/timeline", { limit = 3 }))))
    assert.same(range(25, 1), ids_of(assert(me:request("notes/timeline", { limit = 100 }))))
  end)

  it("pages back with untilId, newest first", function()
    assert.same(range(19, 15), ids_of(assert(me:request("notes/timeline", { untilId = ids[20], limit = 5 }))))
  end)

  it("returns the oldest notes after sinceId first when sinceId is alone", function()
    assert.same(range(6, 10), ids_of(assert(me:request("notes/timeline", { sinceId = ids[5], limit = 5 }))))
    assert.same(range(24, 25), ids_of(assert(me:request("notes/timeline", { sinceId = ids[23] }))))
  end)

  it("is newest first again with both sinceId and untilId", function()
    assert.same(range(19, 16), ids_of(assert(me:request("notes/timeline", {
      sinceId = ids[10], untilId = ids[20], limit = 4,
    }))))
  end)

  it("pages by date as by id", function()
    local t5 = assert(me:request("notes/show", { noteId = ids[5] }))
    assert.equal("2026-05-21T00:00:00.005Z", t5.createdAt)
    local since = fake:now() - 20 -- the createdAt of ids[5], in unix ms
    assert.same(range(6, 8), ids_of(assert(me:request("notes/timeline", { sinceDate = since, limit = 3 }))))
    assert.same(range(4, 2), ids_of(assert(me:request("notes/timeline", { untilDate = since, limit = 3 }))))
  end)

  it("validates limit and the ids", function()
    local err = fails(me, "notes/timeline", { limit = 0 }, "INVALID_PARAM", 400)
    assert.same({ param = "#/properties/limit/minimum", reason = "must be >= 1" }, err.info)
    err = fails(me, "notes/timeline", { limit = 101 }, "INVALID_PARAM", 400)
    assert.same({ param = "#/properties/limit/maximum", reason = "must be <= 100" }, err.info)
    err = fails(me, "notes/timeline", { limit = 2.5 }, "INVALID_PARAM", 400)
    assert.same({ param = "#/properties/limit/type", reason = "must be integer" }, err.info)
    err = fails(me, "notes/timeline", { sinceId = "" }, "INVALID_PARAM", 400)
    assert.equal("#/properties/sinceId/format", err.info.param)
  end)

  it("holds the notes of the user and of whom they follow, that they may see", function()
    local f = testing.fake{ users = { { username = "bob" } } }
    local c = f:client()
    local bob = f:user("bob").id
    f:post("bob", { text = "bob is not followed" })
    local to_me = f:post("alice", { text = "to me", visibility = "specified", visibleUserIds = { f:user("me").id } })
    f:post("alice", { text = "to bob", visibility = "specified", visibleUserIds = { bob } })
    local followers = f:post("alice", { text = "followers", visibility = "followers" })
    local rn = f:post("alice", { renoteId = followers.id })
    local mine = f:post("me", { text = "mine", visibility = "home" })
    assert.same({ mine.id, rn.id, followers.id, to_me.id }, ids_of(assert(c:request("notes/timeline"))))
    assert.same({ mine.id, followers.id, to_me.id },
      ids_of(assert(c:request("notes/timeline", { withRenotes = false }))))
    assert.same({}, assert(c:request("notes/timeline", { withFiles = true })))
    -- bob follows nobody: a specified note to him from @alice is not in his home timeline.
    local tl = assert(f:client{ user = "bob" }:request("notes/timeline"))
    assert.equal(1, #tl)
    assert.equal("bob is not followed", tl[1].text)
  end)
end)

describe("users/show", function()
  it("finds a user by id or by username (any case)", function()
    local alice = fake:user("alice")
    local u = assert(me:request("users/show", { userId = alice.id }))
    assert.equal(alice.id, u.id)
    assert.equal("alice", u.username)
    assert.equal("Alice", u.name)
    assert.equal(null, u.host)
    assert.equal(0, u.notesCount)
    assert.is_true(u.isFollowing)
    assert.is_true(u.isFollowed)
    assert.is_true(json.is_array(u.pinnedNotes))
    assert.equal(alice.id, assert(me:request("users/show", { username = "ALICE" })).id)
    assert.equal(alice.id, assert(me:request("users/show", { username = "alice", host = null })).id)
    assert.equal(alice.id, assert(me:request("users/show", { username = "alice",
      host = "fake.misskey.test" })).id)
  end)

  it("leaves relations out for anonymous clients and gives MeDetailed for yourself", function()
    local anon = client_of(fake, { token = false })
    local u = assert(anon:request("users/show", { username = "alice" }))
    assert.is_nil(u.isFollowing)
    assert.is_nil(u.isAdmin)
    local self_ = assert(me:request("users/show", { username = "me" }))
    assert.is_false(self_.isAdmin)
    assert.is_nil(self_.isFollowing)
  end)

  it("takes userIds and answers in their order, skipping unknown ones", function()
    local a, m = fake:user("alice").id, fake:user("me").id
    local list = assert(me:request("users/show", { userIds = { a, "0000000000000000", m } }))
    assert.is_true(json.is_array(list))
    assert.equal(2, #list)
    assert.equal("alice", list[1].username)
    assert.equal("me", list[2].username)
  end)

  it("answers NO_SUCH_USER with HTTP 404", function()
    local err = fails(me, "users/show", { username = "nobody" }, "NO_SUCH_USER", 404)
    assert.equal("4362f8dc-731f-4ad8-a694-be5a88922a24", err.id)
    fails(me, "users/show", { userId = "0000000000000000" }, "NO_SUCH_USER", 404)
    local remote = fails(me, "users/show", { username = "x", host = "elsewhere.example" },
      "FAILED_TO_RESOLVE_REMOTE_USER", 500)
    assert.equal("server", remote.api.kind)
  end)

  it("needs userId, userIds or username", function()
    local err = fails(me, "users/show", {}, "INVALID_PARAM", 400)
    assert.same({ param = "#/allOf/0/anyOf/0/required", reason = "must have required property 'userId'" }, err.info)
  end)
end)

describe("the fake as a server", function()
  it("answers UNKNOWN_API_ENDPOINT (404) for an endpoint it does not implement", function()
    local err = fails(me, "notes/favorites/create", { noteId = "x" }, "UNKNOWN_API_ENDPOINT", 404)
    assert.equal("2ca3b769-540a-4f08-9dd5-b5a825b6d0f1", err.id)
  end)

  it("answers with Fastify's errors for a body that is not JSON, and 405 for GET", function()
    local res = raw(fake, "i", "{nope")
    assert.equal(400, res.status)
    assert.equal("FST_ERR_CTP_INVALID_JSON_BODY", json.decode(res.body).code)
    res = raw(fake, "i", "")
    assert.equal("FST_ERR_CTP_EMPTY_JSON_BODY", json.decode(res.body).code)
    res = raw(fake, "meta", "[1]")
    assert.equal("#/type", json.decode(res.body).error.info.param)
    res = fake.transport.request{ method = "GET", url = fake.base_url .. "/api/meta", headers = {} }
    assert.equal(405, res.status)
    res = fake.transport.request{ method = "GET", url = fake.base_url .. "/robots.txt", headers = {} }
    assert.equal(404, res.status)
  end)

  it("says it runs Misskey in its nodeinfo (client:software())", function()
    local res = fake.transport.request{ method = "GET", url = fake.base_url .. "/nodeinfo/2.1", headers = {} }
    assert.equal(200, res.status)
    assert.equal("misskey", json.decode(res.body).software.name)
    assert.same({ "misskey", "2026.5.4" }, { fake:client():software() })
  end)

  it("is a network error for any other host", function()
    local other = misskey.new{ host = "misskey.example", token = "other-token", transport = fake.transport }
    local res, msg, err = other:request("meta")
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.matches("no server at https://misskey.example", msg)
  end)

  it("gives the client's error model everything it needs", function()
    local _, msg, err = me:request("notes/show", { noteId = "0000000000000000" })
    assert.equal("notes/show: NO_SUCH_NOTE (HTTP 400): No such note.", msg)
    assert.equal(msg, tostring(err))
    assert.equal("client", err.api.kind)
  end)
end)

describe("fake.requests", function()
  it("records endpoint, params without the token, auth mode and user", function()
    assert(me:request("notes/create", { text = "hi", visibility = "home" }))
    assert(client_of(fake, { auth = "header" }):request("i"))
    assert(client_of(fake, { token = false }):request("meta", { detail = false }))
    client_of(fake, { token = "nope" }):request("i")
    assert.equal(4, #fake.requests)
    local r = fake.requests
    assert.same({ method = "POST", path = "/api/notes/create", endpoint = "notes/create", auth = "body", user = "me",
      params = { text = "hi", visibility = "home" }, status = 200 }, r[1])
    assert.equal("header", r[2].auth)
    assert.same({}, r[2].params)
    assert.equal("none", r[3].auth)
    assert.is_nil(r[3].user)
    assert.same({ detail = false }, r[3].params)
    assert.equal("body", r[4].auth)
    assert.is_nil(r[4].user)
    assert.equal(401, r[4].status)
    assert.equal("AUTHENTICATION_FAILED", r[4].error)
    for _, req in ipairs(r) do assert.is_nil(req.params.i) end
    fails(me, "notes/show", { noteId = "0000000000000000" }, "NO_SUCH_NOTE", 400)
    assert.equal("NO_SUCH_NOTE", r[5].error)
  end)

  it("is emptied by fake:reset(), which also restores the initial state", function()
    local requests = fake.requests
    local n = assert(me:request("notes/create", { text = "x" })).createdNote
    fake:advance(1000)
    fake:reset()
    assert.equal(requests, fake.requests)
    assert.equal(0, #fake.requests)
    assert.equal(1779321600000, fake:now())
    fails(me, "notes/show", { noteId = n.id }, "NO_SUCH_NOTE", 400)
    -- The same ids again after a reset.
    assert.equal(n.id, assert(me:request("notes/create", { text = "x" })).createdNote.id)
    local seeded = testing.fake{ notes = { { user = "alice", text = "seed" } } }
    seeded:post("me", { text = "later" })
    seeded:reset()
    assert.equal(1, #assert(seeded:client():request("notes/timeline")))
  end)
end)

describe("fake:post", function()
  it("creates a note without a request and raises on what notes/create refuses", function()
    local n = fake:post("alice", { text = "server side", visibility = "home" })
    assert.equal("server side", n.text)
    assert.equal("alice", n.user.username)
    assert.equal(0, #fake.requests)
    assert.has_error(function() fake:post("alice", {}) end,
      "fake:post: INVALID_PARAM [#/then/required: must have required property 'text']")
    assert.has_error(function() fake:post("alice", { text = "x", replyId = "0000000000000000" }) end,
      "fake:post: NO_SUCH_REPLY_TARGET")
    assert.has_error(function() fake:post("nobody", { text = "x" }) end)
  end)
end)

describe("fake.endpoints", function()
  it("takes handlers of its own, per fake", function()
    fake.endpoints["notes/favorites/create"] = {
      credential = true,
      params = { type = "object", required = { "noteId", "reaction" },
                 properties = { { "noteId", { type = "string", format = "misskey:id" } } } },
      errors = { NO_SUCH_NOTE = { id = "033d0620-5bfe-4027-965d-980b0c85a3ea", message = "No such note." } },
      handler = function(f, ps, ctx)
        assert.equal("me", ctx.user.username)
        assert.equal("notes/favorites/create", ctx.endpoint)
        if not f:user("alice") then return nil, "INTERNAL_ERROR" end
        if ps.noteId == "0000000000000000" then return nil, "NO_SUCH_NOTE" end
        return nil -- 204
      end,
    }
    assert.is_true(me:request("notes/favorites/create", { noteId = "abc", reaction = "👍" }))
    fails(me, "notes/favorites/create", { noteId = "0000000000000000", reaction = "👍" }, "NO_SUCH_NOTE", 400)
    fails(me, "notes/favorites/create", { noteId = "abc" }, "INVALID_PARAM", 400)
    fails(client_of(fake, { token = false }), "notes/favorites/create", {}, "CREDENTIAL_REQUIRED", 401)
    -- Other fakes are not affected; false removes an endpoint.
    fails(testing.fake():client(), "notes/favorites/create", {}, "UNKNOWN_API_ENDPOINT", 404)
    fake.endpoints.meta = false
    fails(me, "meta", {}, "UNKNOWN_API_ENDPOINT", 404)
  end)
end)

describe("examples/quickstart.lua", function()
  it("runs against the fake without MISSKEY_HOST/MISSKEY_TOKEN and exits 0", function()
    local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
    local interpreter = version == "luajit" and "luajit" or "lua" .. version
    local setup = ('package.path="./lua/?.lua;./lua/?/init.lua;"..package.path; '
      .. 'package.cpath="./build/%s/?.so;"..package.cpath'):format(version)
    local cmd = ("env -u MISSKEY_HOST -u MISSKEY_TOKEN %s -e '%s' examples/quickstart.lua 2>&1; echo \"exit=$?\"")
      :format(interpreter, setup)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("*a")
    p:close()
    assert.matches("exit=0\n$", out)
    assert.matches("using the fake Misskey server at https://fake.misskey.test", out, 1, true)
    assert.matches("server: Fake Misskey (Misskey 2026.5.4)", out, 1, true)
    assert.matches("me: @me", out, 1, true)
    assert.matches("home timeline, newest 3:", out, 1, true)
    assert.matches("showing it again fails as it should: NO_SUCH_NOTE (HTTP 400)", out, 1, true)
  end)
end)

describe("drive/files/create", function()
  local client
  before_each(function()
    fake = testing.fake()
    client = fake:client()
  end)

  it("stores an upload (path or data) and returns a DriveFile; notes/create takes its id", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(("z"):rep(1234))
    f:close()
    local sent
    local file = assert(client:upload(path, { comment = "a z", isSensitive = true },
      { progress = function(s, t) sent = s .. "/" .. t end }))
    os.remove(path)
    assert.equal(path:match("[^/]*$"), file.name)
    assert.equal(1234, file.size)
    assert.equal("a z", file.comment)
    assert.is_true(file.isSensitive)
    assert.equal("1234/1234", sent)
    assert.equal(fake:user("me").id, file.userId)
    local mem = assert(client:upload({ data = "png!", filename = "x.png" }))
    assert.equal("image/png", mem.type)
    assert.equal(4, mem.size)
    assert.same({ file.id, mem.id }, { fake:files{ user = "me" }[1].id, fake:files()[2].id })
    local res = assert(client:request("notes/create", { fileIds = { file.id, mem.id } }))
    assert.same({ file.id, mem.id }, { res.createdNote.fileIds[1], res.createdNote.fileIds[2] })
    assert.equal("x.png", res.createdNote.files[2].name)
    local tl = assert(client:request("notes/timeline", { withFiles = true }))
    assert.equal(1, #tl)
  end)

  it("refuses another user's file, an unknown id and an anonymous upload", function()
    local file = assert(fake:client{ user = "alice" }:upload({ data = "a", filename = "a.txt" }))
    local _, _, err = client:request("notes/create", { text = "x", fileIds = { file.id } })
    assert.equal("NO_SUCH_FILE", err.code)
    _, _, err = client:request("notes/create", { text = "x", fileIds = { "0000000000000000" } })
    assert.equal("NO_SUCH_FILE", err.code)
    _, _, err = fake:client{ token = false }:upload({ data = "a" })
    assert.equal("CREDENTIAL_REQUIRED", err.code)
    fake:reset()
    assert.same({}, fake:files())
  end)
end)
