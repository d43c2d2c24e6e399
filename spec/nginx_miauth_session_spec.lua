-- auth.miauth_session: a MiAuth sign-in checked from its session id alone, as a
-- web application's callback does (another request, maybe another nginx worker
-- process). Runs on every Lua, against the test server; spec/nginx_spec.lua runs
-- the same round trip inside nginx.
local misskey = require "misskey"
local server = require "support.server"

local auth = require "misskey.auth"

local srv, admin

setup(function()
  srv = server.start()
  admin = misskey.new{ host = srv.url, token = false }
end)

teardown(function() srv:stop() end)

describe("auth.miauth_session", function()
  it("checks a session started elsewhere: pending, then the token once", function()
    local started = auth.miauth{ host = srv.url, name = "web app", permission = { "read:account" },
      allow_plaintext_token = true }
    local s = auth.miauth_session{ host = srv.url, session = started.session, allow_plaintext_token = true }
    assert.equal(started.session, s.session)
    local token, msg, err = s:check()
    assert.is_nil(token)
    assert.equal("pending", err.kind, msg)
    assert(admin:request("test/miauth/approve", { session = started.session, token = "web-token", username = "dave" }))
    local user
    token, user = s:check()
    assert.equal("web-token", token)
    assert.equal("dave", user.username)
    assert.equal("pending", select(3, s:check()).kind) -- handed out once
    assert.matches(started.session, tostring(s), 1, true)
  end)

  it("raises naming the option for an id that is not one, and for unknown options", function()
    for _, bad in ipairs{ "../../i", "a b", "", ("a"):rep(200), 42 } do
      assert.has_error(function()
        auth.miauth_session{ host = srv.url, session = bad, allow_plaintext_token = true }
      end, "bad argument #1 to 'miauth_session' (option 'session' must be a MiAuth session id "
        .. "(letters, digits and '-'))")
    end
    assert.has_error(function() auth.miauth_session{ host = srv.url, session = "x", nope = 1 } end)
  end)

  it("refuses plain http to another host unless allowed", function()
    local ok, why = pcall(auth.miauth_session, { host = "http://misskey.example", session = "abc" })
    assert.is_false(ok)
    assert.matches("unencrypted", why)
  end)
end)
