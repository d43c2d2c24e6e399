-- examples/openresty's OAuth sign-in, run by nginx from the example's own nginx.conf
-- (port, pid and temporary paths moved to a temporary folder) against the test
-- server: the client id page, the start, the consent page's redirect, the callback
-- (in this browser only, once), the timeline as the signed-in user, and the user's
-- refusal. LuaJIT pass only, as spec/nginx_example_spec.lua (which covers MiAuth).
local nginx = require "support.nginx"
local server = require "support.server"
local new_client = require "support.client"

if not rawget(_G, "jit") then return end
local missing = nginx.missing()
if missing then
  io.stderr:write("spec/nginx_oauth_example_spec.lua: skipped: " .. missing .. "\n")
  it("the OpenResty example's OAuth (skipped: " .. missing .. ")", function() pending(missing) end)
  return
end

local APP_URL = "http://127.0.0.1:9"
local srv, ngx_, browser, template

setup(function()
  srv = server.start()
  browser = new_client{ host = srv.url, token = false }
  template = nginx.example_template("examples/openresty/nginx.conf")
  local root = assert(io.popen("pwd")):read("*l")
  ngx_ = nginx.start{ template = template, prefix = root .. "/examples/openresty/",
    env = { MISSKEY_HOST = srv.url, MISSKEY_APP_URL = APP_URL .. "/" } }
end)

teardown(function()
  if ngx_ then ngx_:stop() end
  server.remove_dir(template:match("^(.*)/"))
  srv:stop()
end)

-- A GET to the app with the cookies given; -> status, headers, body, cookies set.
local function browse(path, cookies)
  local jar = {}
  for k, v in pairs(cookies or {}) do jar[#jar + 1] = k .. "=" .. v end
  local res = assert(ngx_.client:http{ path = path, headers = { Cookie = #jar > 0 and table.concat(jar, "; ") or nil },
    timeout = 30 })
  local set = {}
  local raw = res.headers["set-cookie"]
  for _, line in ipairs(type(raw) == "table" and raw or { raw }) do
    for name, value in tostring(line):gmatch("([%w_]+)=([^;,]*);") do set[name] = value end
  end
  return res.status, res.headers, res.body, set
end

-- Starts a sign-in; -> the consent page's address and the cookie that binds it to this browser.
local function start()
  local status, headers, _, set = browse("/login/oauth")
  assert.equal(303, status)
  assert.truthy(headers.location:find(srv.url .. "/oauth/authorize?", 1, true), headers.location)
  return headers.location, assert(set.oauth)
end

-- The browser at the consent page (extra: test_user/test_deny): the app path it is sent back to.
local function consent(url, extra)
  local res = assert(browser:http{ path = url:sub(#srv.url + 1) .. (extra or ""), timeout = 30 })
  assert.equal(302, res.status, res.body)
  local location = res.headers.location
  assert.equal(APP_URL .. "/oauth/callback", location:match("^[^?]+"))
  return location:sub(#APP_URL + 1)
end

describe("examples/openresty with OAuth", function()
  it("serves its client id page, naming the redirect URI", function()
    local status, headers, body = browse("/client")
    assert.equal(200, status)
    assert.equal("<" .. APP_URL .. "/oauth/callback>; rel=\"redirect_uri\"", headers.link)
    assert.matches("<link rel=\"redirect_uri\" href=\"" .. APP_URL .. "/oauth/callback\">", body, 1, true)
    assert.matches("class=\"u-url p-name\" href=\"" .. APP_URL .. "/client\"", body, 1, true)
    body = select(3, browse("/"))
    assert.matches("href=\"/login/oauth\"", body, 1, true)
  end)

  it("signs in: start, consent, callback in this browser only and once, then the timeline", function()
    local url, key = start()
    assert.matches("client_id=http%3A%2F%2F127.0.0.1%3A9%2Fclient", url, 1, true)
    assert.matches("code_challenge_method=S256", url, 1, true)
    local back = consent(url, "&test_user=heidi")
    -- Not started in this browser: refused, and the sign-in is still there for the right one.
    assert.equal(400, (browse(back)))
    assert.equal(400, (browse(back, { oauth = "someone-else" })))
    local status, headers, _, set = browse(back, { oauth = key })
    assert.equal(303, status)
    assert.equal("/", headers.location:match("^https?://[^/]+(/.*)$") or headers.location)
    local sid = assert(set.sid)
    local body
    status, _, body = browse("/", { sid = sid })
    assert.equal(200, status)
    assert.matches("Signed in as @heidi", body, 1, true)
    -- The same redirect again: nothing left to finish.
    status, _, body = browse(back, { oauth = key })
    assert.equal(400, status)
    assert.matches("No sign-in was started", body, 1, true)
  end)

  it("says so when the user refuses, or the state is not this sign-in's", function()
    local url, key = start()
    local status, _, body = browse(consent(url, "&test_deny=1"), { oauth = key })
    assert.equal(403, status)
    assert.matches("access_denied", body, 1, true)
    url, key = start()
    local back = consent(url):gsub("state=[^&]*", "state=forged")
    status, _, body = browse(back, { oauth = key })
    assert.equal(403, status)
    assert.matches("state in the redirect does not match", body, 1, true)
  end)
end)
