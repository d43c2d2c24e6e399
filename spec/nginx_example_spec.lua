-- examples/openresty: the example app, run by nginx from its own nginx.conf (the
-- port, pid and temporary paths moved to a temporary folder; everything else as
-- shipped) against the test server: sign in with MiAuth, the home timeline, a post,
-- a forged callback and a missing CSRF token refused, sign out. LuaJIT pass only.
local json = require "misskey.json"
local nginx = require "support.nginx"
local server = require "support.server"
local new_client = require "support.client"

if not rawget(_G, "jit") then return end
local missing = nginx.missing()
if missing then
  io.stderr:write("spec/nginx_example_spec.lua: skipped: " .. missing .. "\n")
  it("the OpenResty example (skipped: " .. missing .. ")", function() pending(missing) end)
  return
end

local srv, ngx_, api, template

setup(function()
  srv = server.start()
  api = new_client{ host = srv.url, token = "tok", allow_plaintext_token = true }
  template = nginx.example_template("examples/openresty/nginx.conf")
  local root = assert(io.popen("pwd")):read("*l")
  ngx_ = nginx.start{ template = template, prefix = root .. "/examples/openresty/",
    env = { MISSKEY_HOST = srv.url, MISSKEY_APP_URL = "http://127.0.0.1:9/" } }
end)

teardown(function()
  if ngx_ then ngx_:stop() end
  server.remove_dir(template:match("^(.*)/"))
  srv:stop()
end)

-- A request to the app with the cookies given; -> status, headers, body, cookies set.
local function browse(method, path, cookies, form)
  local headers = {}
  local jar = {}
  for k, v in pairs(cookies or {}) do jar[#jar + 1] = k .. "=" .. v end
  if #jar > 0 then headers.Cookie = table.concat(jar, "; ") end
  local body
  if form then
    local parts = {}
    for k, v in pairs(form) do
      parts[#parts + 1] = k .. "=" .. v:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end)
    end
    body = table.concat(parts, "&")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
  local res = assert(ngx_.client:http{ method = method, path = path, headers = headers, body = body, timeout = 30 })
  local set = {}
  local raw = res.headers["set-cookie"]
  for _, line in ipairs(type(raw) == "table" and raw or { raw }) do
    for name, value in tostring(line):gmatch("([%w_]+)=([^;,]*);") do set[name] = value end
  end
  return res.status, res.headers, res.body, set
end

describe("examples/openresty", function()
  it("signs in with MiAuth, shows the home timeline, posts, and signs out", function()
    local status, _, body = browse("GET", "/")
    assert.equal(200, status)
    assert.matches("Sign in with Misskey", body)

    local headers, set
    status, headers, _, set = browse("GET", "/login")
    assert.equal(303, status)
    local session = headers.location:match("/miauth/([%w%-]+)%?")
    assert.truthy(headers.location:find(srv.url .. "/miauth/", 1, true), headers.location)
    assert.matches("callback=http%%3A%%2F%%2F127%.0%.0%.1%%3A9%%2Fcallback", headers.location)
    assert.equal(session, set.miauth)

    -- A callback this browser did not start is refused, approved or not.
    status = browse("GET", "/callback?session=" .. session)
    assert.equal(400, status)
    -- Not approved yet: refused, saying so.
    status, _, body = browse("GET", "/callback?session=" .. session, { miauth = session })
    assert.equal(403, status)
    assert.matches("did not approve", body)

    assert(api:request("test/miauth/approve", { session = session, token = "web-token", username = "erin" }))
    status, headers, _, set = browse("GET", "/callback?session=" .. session, { miauth = session })
    assert.equal(303, status)
    assert.equal("/", headers.location:match("^https?://[^/]+(/.*)$") or headers.location)
    local sid = assert(set.sid)
    assert.not_matches("web%-token", json.encode(headers)) -- the token stays on the server

    assert(api:request("test/stream/reset"))
    assert(api:request("test/stream/post", { text = "<b>hello</b> timeline" }))
    status, _, body = browse("GET", "/", { sid = sid })
    assert.equal(200, status)
    assert.matches("Signed in as @erin", body)
    assert.matches("&lt;b&gt;hello&lt;/b&gt; timeline", body, 1, true) -- escaped
    local csrf = body:match("name=\"csrf\" value=\"([%w%-]+)\"")

    -- A post without the form's CSRF token is refused; with it, the note is created.
    status = browse("POST", "/post", { sid = sid }, { text = "forged" })
    assert.equal(403, status)
    status = browse("POST", "/post", { sid = sid }, { text = "from nginx & lua", csrf = csrf })
    assert.equal(303, status)
    local notes = assert(api:request("test/notes/list"))
    assert.equal("from nginx & lua", notes[#notes].text)
    for _, note in ipairs(notes) do assert.not_equal("forged", note.text) end

    status = browse("POST", "/logout", { sid = sid }, { csrf = csrf })
    assert.equal(303, status)
    _, _, body = browse("GET", "/", { sid = sid })
    assert.matches("Not signed in", body)
  end)
end)
