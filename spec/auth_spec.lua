-- misskey.auth against the test server: MiAuth (URL, pending, approved once,
-- wait timing out), the legacy app flow (SHA-256 of accessToken .. secret) and
-- OAuth 2.0 with PKCE S256 (the server checks the verifier; a wrong state,
-- code or verifier is refused).
local misskey = require "misskey"
local core = require "misskey.core"
local server = require "support.server"
local leak = require "support.leak"
local with_env = require "support.env"

local auth = require "misskey.auth"

local srv, admin, dir

setup(function()
  dir = server.temp_dir()
  with_env{ XDG_CONFIG_HOME = dir }
  srv = server.start()
  admin = misskey.new{ host = srv.url, token = false }
end)

teardown(function()
  srv:stop()
  with_env.reset()
  server.remove_dir(dir)
end)

local function approve(session, token, username)
  assert(admin:request("test/miauth/approve", { session = session, token = token, username = username }))
end

local function query(url)
  return auth.oauth_parse_redirect(url)
end

describe("auth.miauth", function()
  it("builds the MiAuth URL with a fresh UUID session", function()
    local s = auth.miauth{ host = "misskey.example", name = "My app", icon = "https://i.example/a.png",
      callback = "https://app.example/cb?x=1", permission = { "read:account", "write:notes" } }
    assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", s.session)
    assert.equal("https://misskey.example/miauth/" .. s.session .. "?name=My%20app"
      .. "&icon=https%3A%2F%2Fi.example%2Fa.png&callback=https%3A%2F%2Fapp.example%2Fcb%3Fx%3D1"
      .. "&permission=read:account,write:notes", s.url)
    local s2 = auth.miauth{ host = "misskey.example" }
    assert.not_equal(s.session, s2.session)
    assert.equal("https://misskey.example/miauth/" .. s2.session, s2.url)
  end)

  it("leaves out empty parameters and duplicate permissions", function()
    local s = auth.miauth{ host = "http://127.0.0.1:1", name = "", permission = { "read:account", "read:account" } }
    assert.equal("http://127.0.0.1:1/miauth/" .. s.session .. "?permission=read:account", s.url)
  end)

  it("refuses unknown permissions, naming them, unless strict = false", function()
    local ok, err = pcall(auth.miauth, { host = "h.example", permission = { "read:account", "read:nope", "x:y" } })
    assert.is_false(ok)
    assert.matches("unknown permissions: read:nope, x:y", err)
    local s = auth.miauth{ host = "h.example", permission = { "read:account", "read:fork-thing" }, strict = false }
    assert.matches("permission=read:account,read:fork%-thing$", s.url)
    assert.has_error(function() auth.miauth{ host = "h.example", permission = { "a,b" }, strict = false } end)
  end)

  it("raises on misuse", function()
    assert.has_error(function() auth.miauth{ host = "h.example", bogus = 1 } end)
    assert.has_error(function() auth.miauth{} end)
    assert.has_error(function() auth.miauth{ host = "h.example", name = 3 } end)
  end)

  it("checks: pending, then the token once, then pending again", function()
    local s = auth.miauth{ host = srv.url, name = "spec", permission = { "read:account" } }
    local token, msg, err = s:check()
    assert.is_nil(token)
    assert.equal("pending", err.kind)
    assert.matches("pending, unknown or already%-used", msg)
    approve(s.session, "MiAuthToken0123456789abcdefABCDEF", "carol")
    local user
    token, user = s:check()
    assert.equal("MiAuthToken0123456789abcdefABCDEF", token)
    assert.equal("carol", user.username)
    token, msg, err = s:check()
    assert.is_nil(token)
    assert.equal("pending", err.kind)
    assert.not_matches("MiAuthToken", msg)
  end)

  it("waits until the deadline, then fails with kind timeout", function()
    local s = auth.miauth{ host = srv.url, permission = { "read:account" } }
    local token, msg, err = s:wait{ timeout = 0.4, interval = 0.1 }
    assert.is_nil(token)
    assert.equal("timeout", err.kind)
    assert.matches("not approved within 0.4 s", msg)
  end)

  it("waits inside a task while another task approves, and saves the account", function()
    local s = auth.miauth{ host = srv.url, permission = { "read:account" } }
    local token, user
    misskey.run(function()
      misskey.spawn(function()
        misskey.sleep(0.2)
        approve(s.session, "WaitedToken0123456789abcdefABCDEF", "dave")
      end)
      token, user = s:wait{ timeout = 5, interval = 0.05, save = true }
    end)
    assert.equal("WaitedToken0123456789abcdefABCDEF", token)
    assert.equal("dave", user.username)
    local entry = assert(require("misskey.credentials").get("@dave@" .. srv.host))
    assert.equal(token, entry.token)
    assert.equal(srv.url, entry.host)
  end)
end)

describe("legacy app flow", function()
  it("creates an app, a session, and turns the accessToken into sha256hex(accessToken .. secret)", function()
    -- The test server accepts a fixed secret: "ab" .. "c" hashes to FIPS 180's "abc" vector.
    local app = assert(admin:request("app/create", { name = "v", description = "", permission = {}, secret = "c" }))
    local session = assert(auth.app_session(srv.url, app.secret))
    assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", session.token)
    assert.matches("/auth/" .. session.token, session.url, 1, true)
    local token, msg, err = auth.app_userkey(srv.url, app.secret, session.token)
    assert.is_nil(token)
    assert.equal("pending", err.kind)
    assert.equal("PENDING_SESSION", err.code)
    assert.matches("not accepted", msg)
    assert(admin:request("test/auth/approve", { token = session.token, accessToken = "ab", username = "erin" }))
    local user
    token, user = auth.app_userkey(srv.url, app.secret, session.token)
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", token)
    assert.equal("erin", user.username)
    -- The session is gone after success.
    token, msg, err = auth.app_userkey(srv.url, app.secret, session.token)
    assert.is_nil(token)
    assert.equal("api", err.kind)
    assert.equal("NO_SUCH_SESSION", err.code)
    leak.assert_none(app.secret, msg, err)
  end)

  it("goes through auth.app_create and app_wait; the token works", function()
    local app = assert(auth.app_create{ host = srv.url, name = "spec app", permission = { "read:account" },
      callback = "https://app.example/cb" })
    assert.equal("spec app", app.name)
    assert.same({ "read:account" }, app.permission)
    local session = assert(auth.app_session(srv.url, app.secret))
    local done
    misskey.run(function()
      misskey.spawn(function()
        misskey.sleep(0.15)
        done = assert(admin:request("test/auth/approve", { token = session.token }))
      end)
      local token, user = auth.app_wait(srv.url, app.secret, session.token, { timeout = 5, interval = 0.05 })
      assert.equal(done.apiToken, token) -- the server's own (hashlib) SHA-256
      assert.equal("alice", user.username)
      local me = assert(misskey.new{ host = srv.url, token = token }:request("i"))
      assert.equal("alice", me.username)
    end)
  end)

  it("refuses unknown permissions before sending", function()
    assert.has_error(function() auth.app_create{ host = srv.url, name = "x", permission = { "write:nothing" } } end)
  end)
end)

describe("OAuth 2.0 with PKCE", function()
  local CLIENT_ID, REDIRECT = "https://app.example/", "http://127.0.0.1:8123/callback"

  it("discovers the server's metadata", function()
    local md = assert(auth.oauth_discover(srv.url))
    assert.equal(srv.url .. "/oauth/token", md.token_endpoint)
    assert.same({ "S256" }, md.code_challenge_methods_supported)
  end)

  it("starts with a random state and verifier and an S256 challenge", function()
    local a = auth.oauth_start{ host = srv.url, client_id = CLIENT_ID, redirect_uri = REDIRECT,
      permission = { "read:account", "write:notes" } }
    local b = auth.oauth_start{ host = srv.url, client_id = CLIENT_ID, redirect_uri = REDIRECT }
    assert.not_equal(a.state, b.state)
    assert.not_equal(a.verifier, b.verifier)
    assert.equal(43, #a.verifier)
    assert.matches("^[%w%-_]+$", a.verifier)
    assert.equal(core.base64url(core.sha256(a.verifier)), a.challenge)
    local q = query(a.url)
    assert.equal(srv.url .. "/oauth/authorize", a.url:match("^[^?]+"))
    assert.same({ response_type = "code", client_id = CLIENT_ID, redirect_uri = REDIRECT,
      scope = "read:account write:notes", state = a.state, code_challenge = a.challenge,
      code_challenge_method = "S256" }, q)
  end)

  local function authorize(start)
    return assert(admin:request("test/oauth/authorize", query(start.url))).code
  end

  local function exchange(start, code, fields)
    local o = { host = srv.url, code = code, state = start.state, expected_state = start.state,
      verifier = start.verifier, client_id = CLIENT_ID, redirect_uri = REDIRECT }
    for k, v in pairs(fields or {}) do o[k] = v end
    if o.state == false then o.state = nil end
    return auth.oauth_exchange(o)
  end

  it("exchanges the code; the server verifies the verifier against the challenge", function()
    local start = auth.oauth_start{ host = srv.url, client_id = CLIENT_ID, redirect_uri = REDIRECT,
      permission = { "read:account" } }
    local token, reply = exchange(start, authorize(start))
    assert.equal(128, #token)
    assert.equal("Bearer", reply.token_type)
    local me = assert(misskey.new{ host = srv.url, token = token, auth = "header" }:request("i"))
    assert.equal("alice", me.username)
  end)

  it("refuses a wrong verifier, a wrong code and a reused code (kind auth)", function()
    local start = auth.oauth_start{ host = srv.url, client_id = CLIENT_ID, redirect_uri = REDIRECT }
    local code = authorize(start)
    local token, msg, err = exchange(start, code, { verifier = core.base64url(core.random(32)) })
    assert.is_nil(token)
    assert.equal("auth", err.kind)
    assert.equal(400, err.status)
    assert.matches("invalid_grant", msg)
    leak.assert_none(code, msg, err)
    local token2, _, err2 = exchange(start, "not-a-code")
    assert.is_nil(token2)
    assert.equal("auth", err2.kind)
  end)

  it("refuses a redirect whose state does not match, before sending", function()
    local start = auth.oauth_start{ host = srv.url, client_id = CLIENT_ID, redirect_uri = REDIRECT }
    local code = authorize(start)
    local token, msg, err = exchange(start, code, { state = "forged" })
    assert.is_nil(token)
    assert.equal("auth", err.kind)
    assert.matches("state", msg)
    local token2, _, err2 = exchange(start, code, { state = false })
    assert.is_nil(token2)
    assert.equal("auth", err2.kind)
    -- The code was not spent: the right state still works.
    assert.truthy(exchange(start, code))
  end)

  it("parses a redirect address", function()
    assert.same({ code = "a b", state = "x/y" }, auth.oauth_parse_redirect(REDIRECT .. "?code=a+b&state=x%2Fy#frag"))
  end)
end)
