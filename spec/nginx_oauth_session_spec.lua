-- auth.oauth_session and session:save()/finish(): an OAuth sign-in started in one
-- request and finished in another (maybe another process), as a web application
-- does, from the plain table save() gives. Runs on every Lua, against the test
-- server's /oauth/authorize (which redirects as Misskey's decision does);
-- spec/nginx_oauth_spec.lua runs the same round trip inside nginx.
local misskey = require "misskey"
local json = require "misskey.json"
local server = require "support.server"
local leak = require "support.leak"

local auth = require "misskey.auth"

local CLIENT_ID, REDIRECT = "https://app.example/", "https://app.example/callback"

local srv, browser

setup(function()
  srv = server.start()
  browser = misskey.new{ host = srv.url, token = false }
end)

teardown(function() srv:stop() end)

local function start(extra)
  local o = { host = srv.url, client_id = CLIENT_ID, redirect_uri = REDIRECT, permission = { "read:account" },
    allow_plaintext_token = true }
  for k, v in pairs(extra or {}) do o[k] = v end
  return auth.oauth_start(o)
end

-- The browser at the consent page: the redirect address it is sent back to.
local function approve(url, extra)
  local target = url:sub(#srv.url + 1) .. (extra or "")
  local res = assert(browser:http{ path = target })
  assert.equal(302, res.status, res.body)
  return res.headers.location
end

-- What a web application keeps between the two requests: JSON text, then a rebuilt session.
local function through_store(session)
  return auth.oauth_session(json.decode(json.encode(session:save())))
end

describe("auth.oauth_session", function()
  it("finishes from the saved table: the redirect's code exchanged, the token works", function()
    local s = start()
    local saved = s:save()
    saved.allow_plaintext_token = nil -- loopback needs none (unless a proxy is set)
    assert.same({ host = srv.url, client_id = CLIENT_ID, redirect_uri = REDIRECT, state = s.state,
      verifier = s.verifier }, saved)
    local redirect = approve(s.url, "&test_user=frank")
    assert.equal(REDIRECT, redirect:match("^[^?]+"))
    local rebuilt = through_store(s)
    assert.is_nil(rebuilt.url)
    assert.equal(s.challenge, rebuilt.challenge)
    local token, reply = rebuilt:finish(redirect)
    assert.is_string(token, reply)
    assert.equal("Bearer", reply.token_type)
    local me = assert(misskey.new{ host = srv.url, token = token, auth = "header" }:request("i"))
    assert.equal("frank", me.username)
  end)

  it("takes the redirect's query as a table, and the session oauth_start made", function()
    local s = start()
    local q = auth.oauth_parse_redirect(approve(s.url))
    assert.truthy(q.iss)
    assert.is_string((s:finish(q)))
  end)

  it("refuses another state, a denial and a missing code without sending, and never raises", function()
    local s = start()
    local redirect = approve(s.url)
    local q = auth.oauth_parse_redirect(redirect)
    local rebuilt = through_store(s)
    for _, bad in ipairs{
      { code = q.code, state = "forged" }, { code = q.code }, { code = q.code, state = { s.state } },
      { code = q.code, state = s.state:sub(1, -2) .. "x" }, { state = s.state }, { state = s.state, code = true },
      { state = s.state, code = ("c"):rep(5000) }, {},
    } do
      local token, msg, err = rebuilt:finish(bad)
      assert.is_nil(token)
      assert.equal("auth", err.kind, msg)
      leak.assert_none(s.verifier, msg, err)
      leak.assert_none(q.code, msg, err)
    end
    local token, msg, err = rebuilt:finish(REDIRECT .. "?state=" .. s.state .. "&error=access_denied"
      .. "&error_description=The+user%0Adenied+it")
    assert.is_nil(token)
    assert.equal("auth", err.kind)
    assert.equal("access_denied", err.error)
    assert.matches("refused (access_denied: The user?denied it)", msg, 1, true)
    -- An error under another state is a forged redirect, not this sign-in's refusal.
    token, msg, err = rebuilt:finish{ state = "forged", error = "access_denied" }
    assert.is_nil(token)
    assert.is_nil(err.error)
    assert.matches("state in the redirect does not match", msg, 1, true)
    -- None of that spent the code: the real redirect still finishes.
    assert.is_string((rebuilt:finish(redirect)))
  end)

  it("reports the server's denial and a replayed code as auth failures", function()
    local s = start()
    local token, msg, err = s:finish(approve(s.url, "&test_deny=1"))
    assert.is_nil(token)
    assert.equal("auth", err.kind)
    assert.matches("access_denied", msg)
    local s2 = start()
    local redirect = approve(s2.url)
    assert.is_string((through_store(s2):finish(redirect)))
    local code = auth.oauth_parse_redirect(redirect).code
    token, msg, err = through_store(s2):finish(redirect)
    assert.is_nil(token)
    assert.equal("auth", err.kind)
    assert.equal(400, err.status)
    assert.matches("invalid_grant", msg)
    leak.assert_none(code, msg, err)
    leak.assert_none(s2.verifier, msg, err)
  end)

  -- RFC 9207: a server that sends the user on to another server's consent page would
  -- otherwise have that server's code sent to its own token endpoint (a mix-up).
  it("checks the redirect's iss against the issuer it was given, through save, before an error", function()
    local md = assert(auth.oauth_discover(srv.url))
    assert.equal(srv.url, md.issuer)
    local s = start{ issuer = md.issuer, require_iss = md.authorization_response_iss_parameter_supported }
    local saved = s:save()
    assert.equal(srv.url, saved.issuer)
    assert.is_true(saved.require_iss)
    local redirect = approve(s.url)
    local q = auth.oauth_parse_redirect(redirect)
    assert.equal(srv.url, q.iss)
    local rebuilt = through_store(s)
    local function copy(extra)
      local t = { code = q.code, state = q.state, iss = q.iss }
      for k, v in pairs(extra) do t[k] = v end
      return t
    end
    for _, case in ipairs{
      { copy{ iss = "https://evil.example" }, "names another issuer (iss https://evil.example, expected " .. srv.url },
      { copy{ iss = srv.url .. "/" }, "names another issuer" },
      { copy{ iss = { srv.url } }, "names another issuer (iss table" },
      { copy{ iss = false }, "names another issuer" },
      { { code = q.code, state = q.state }, "names no issuer (iss)" },
      { { state = q.state, iss = "https://evil.example", error = "access_denied" }, "names another issuer" },
    } do
      local token, msg, err = rebuilt:finish(case[1])
      assert.is_nil(token)
      assert.equal("auth", err.kind, msg)
      assert.matches(case[2], msg, 1, true)
      leak.assert_none(q.code, msg, err)
      leak.assert_none(s.verifier, msg, err)
    end
    -- None of that spent the code: the redirect as the server sent it finishes.
    assert.is_string((rebuilt:finish(redirect)))
  end)

  it("without an issuer, takes any iss; with one but not require_iss, a redirect without iss", function()
    local s = start()
    assert.is_nil(s:save().issuer)
    local q = auth.oauth_parse_redirect(approve(s.url))
    q.iss = "https://elsewhere.example"
    assert.is_string((s:finish(q)))
    local s2 = start{ issuer = srv.url }
    assert.is_nil(s2:save().require_iss)
    local q2 = auth.oauth_parse_redirect(approve(s2.url))
    q2.iss = nil
    assert.is_string((through_store(s2):finish(q2)))
  end)

  it("oauth_exchange refuses an iss other than its issuer before sending the code", function()
    local s = start()
    local q = auth.oauth_parse_redirect(approve(s.url))
    local opts = { host = srv.url, code = q.code, state = q.state, expected_state = s.state, verifier = s.verifier,
      client_id = CLIENT_ID, redirect_uri = REDIRECT, iss = "https://evil.example", issuer = srv.url }
    local token, msg, err = auth.oauth_exchange(opts)
    assert.is_nil(token)
    assert.equal("auth", err.kind)
    assert.matches("names another issuer", msg, 1, true)
    opts.iss, opts.require_iss = nil, true
    token, msg = auth.oauth_exchange(opts)
    assert.is_nil(token)
    assert.matches("names no issuer", msg, 1, true)
    opts.iss = srv.url
    assert.is_string((auth.oauth_exchange(opts)))
  end)

  it("raises naming the option for a bad issuer or require_iss", function()
    assert.has_error(function() start{ issuer = 42 } end,
      "bad argument #1 to 'oauth_start' (option 'issuer' must be a string)")
    assert.has_error(function() start{ issuer = srv.url, require_iss = "yes" } end,
      "bad argument #1 to 'oauth_start' (option 'require_iss' must be a boolean)")
    assert.has_error(function() start{ require_iss = true } end,
      "bad argument #1 to 'oauth_start' (option 'require_iss' needs option 'issuer' (the metadata's issuer))")
    local saved = start():save()
    saved.require_iss = true
    assert.has_error(function() auth.oauth_session(saved) end,
      "bad argument #1 to 'oauth_session' (option 'require_iss' needs option 'issuer' (the metadata's issuer))")
  end)

  it("keeps the token path through save", function()
    local s = start{ token_path = "/oauth/nowhere" }
    assert.equal("/oauth/nowhere", s:save().token_path)
    local _, msg, err = through_store(s):finish(approve(s.url))
    assert.equal("auth", err.kind)
    assert.matches("POST /oauth/nowhere", msg, 1, true)
  end)

  it("raises naming the option for a bad saved table, never showing the verifier", function()
    local saved = start():save()
    local function without(k, v)
      local t = {}
      for key, value in pairs(saved) do t[key] = value end
      t[k] = v
      return t
    end
    for _, case in ipairs{
      { "verifier", saved.verifier:sub(1, 40) }, { "verifier", saved.verifier .. " " }, { "verifier", 42 },
      { "state", "" }, { "client_id", nil }, { "redirect_uri", 7 }, { "token_path", {} },
    } do
      local ok, why = pcall(auth.oauth_session, without(case[1], case[2]))
      assert.is_false(ok, case[1])
      assert.matches("bad argument #1 to 'oauth_session' (option '" .. case[1] .. "'", why, 1, true)
      assert.not_matches(saved.verifier:sub(1, 40), why, 1, true)
    end
    assert.has_error(function() auth.oauth_session(without("nope", 1)) end,
      "bad argument #1 to 'oauth_session' (unknown option 'nope')")
    assert.has_error(function() start():finish(42) end,
      "bad argument #1 to 'finish' (redirect address or query table expected, got number)")
  end)

  it("carries allow_plaintext_token over plain http to another host, and needs it", function()
    local saved = start{ host = "http://misskey.example" }:save()
    assert.is_true(saved.allow_plaintext_token)
    assert.equal("misskey.auth.OAuthSession", getmetatable(auth.oauth_session(saved)).__name)
    saved.allow_plaintext_token = nil
    local ok, why = pcall(auth.oauth_session, saved)
    assert.is_false(ok)
    assert.matches("unencrypted", why)
  end)

  it("shows no secret in its tostring", function()
    local s = start()
    for _, session in ipairs{ s, through_store(s) } do
      assert.matches("misskey.auth.OAuthSession", tostring(session), 1, true)
      leak.assert_none(s.verifier, tostring(session))
      leak.assert_none(s.state, tostring(session))
    end
  end)
end)
