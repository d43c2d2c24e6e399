-- OAuth 2.0 with PKCE inside nginx, the way a web application signs its users in:
-- one request starts the sign-in and keeps session:save() in a lua_shared_dict
-- (spec/nginx/app.lua), the browser (this spec) visits the test server's consent
-- page, which redirects with code and state, and the callback, served by a worker
-- process of another generation (after nginx -s reload), rebuilds the session with
-- auth.oauth_session, exchanges the code and calls the API with the token. A
-- forged state, the user's refusal, a replayed redirect and a replayed code are
-- refused. LuaJIT pass only (nginx runs LuaJIT), as spec/nginx_spec.lua.
local misskey = require "misskey"
local nginx = require "support.nginx"
local server = require "support.server"
local leak = require "support.leak"
local new_client = require "support.client"

if not rawget(_G, "jit") then return end
local missing = nginx.missing()
if missing then
  io.stderr:write("spec/nginx_oauth_spec.lua: skipped: " .. missing .. "\n")
  it("signs in with OAuth inside nginx (skipped: " .. missing .. ")", function() pending(missing) end)
  return
end

local srv, ngx_, browser

setup(function()
  srv = server.start()
  ngx_ = nginx.start{ upstream = srv.url, workers = 2 }
  browser = new_client{ host = srv.url, token = false }
end)

teardown(function()
  if ngx_ then ngx_:stop() end
  srv:stop()
end)

-- The browser at the consent page (extra: the test server's test_user/test_deny): the query
-- of the address it is sent back to.
local function consent(url, extra)
  local res = assert(browser:http{ path = url:sub(#srv.url + 1) .. (extra or ""), timeout = 30 })
  assert.equal(302, res.status, res.body)
  local location = res.headers.location
  assert.equal("https://app.example/callback", location:match("^[^?]+"))
  return location:match("%?(.*)$")
end

-- The browser back at the app: its sign-in id (a cookie in a real app) and the redirect's query.
local function callback(sid, query)
  return ngx_:get("/oauth/callback?sid=" .. sid .. "&" .. query)
end

-- Until a worker process not in `old` answers (bounded: 200 tries, 20 s).
local function new_generation(old)
  local was = {}
  for _, pid in ipairs(old) do was[pid] = true end
  for _ = 1, 200 do
    local ok, out = pcall(ngx_.get, ngx_, "/pid", nil, 5)
    if ok and not was[out.pid] then return out.pid end
    misskey.sleep(0.1)
  end
  error("no worker process of the new generation answered\n" .. ngx_:log())
end

describe("OAuth inside nginx", function()
  it("starts in one request and finishes in another worker process: code, exchange, API call", function()
    local started = ngx_:get("/oauth/start")
    assert.truthy(started.url:find(srv.url .. "/oauth/authorize?response_type=code", 1, true), started.url)
    assert.matches("code_challenge_method=S256", started.url)
    local query = consent(started.url, "&test_user=grace")
    local old = ngx_:workers()
    assert.equal(2, #old)
    ngx_:reload()
    local pid = new_generation(old)
    local out = callback(started.sid, query)
    assert.is_string(out.token, out.message)
    assert.equal(128, #out.token)
    assert.equal("grace", out.me)
    assert.not_equal(started.pid, out.pid)
    assert.truthy(pid)
    -- The same redirect again: nothing is left to finish.
    assert.equal("no sign-in under way for this browser", callback(started.sid, query).refused)
  end)

  it("refuses a redirect with another state, before sending the code", function()
    local started = ngx_:get("/oauth/start")
    local query = consent(started.url)
    local forged = query:gsub("state=[^&]*", "state=forged")
    local out = callback(started.sid, forged)
    assert.is_nil(out.token)
    assert.equal("auth", out.err.kind)
    assert.matches("state in the redirect does not match", out.message, 1, true)
    local code = query:match("code=([^&]*)")
    leak.assert_none(code, out)
    assert.is_nil(out.err.status) -- refused here: the token endpoint was never asked
  end)

  it("refuses a replayed code, and the user's refusal, as auth failures with no secret in them", function()
    local first = ngx_:get("/oauth/start")
    local query = consent(first.url)
    assert.is_string(callback(first.sid, query).token)
    -- Another sign-in, fed the first one's (spent) code with its own state: the server refuses.
    local second = ngx_:get("/oauth/start")
    local state = consent(second.url):match("state=([^&]*)")
    local replay = query:gsub("state=[^&]*", "state=" .. state)
    local out = callback(second.sid, replay)
    assert.is_nil(out.token)
    assert.equal("auth", out.err.kind)
    assert.equal(400, out.err.status)
    assert.matches("invalid_grant", out.message)
    leak.assert_none(query:match("code=([^&]*)"), out)

    local third = ngx_:get("/oauth/start")
    out = callback(third.sid, consent(third.url, "&test_deny=1"))
    assert.is_nil(out.token)
    assert.equal("auth", out.err.kind)
    assert.equal("access_denied", out.err.error)
  end)
end)
