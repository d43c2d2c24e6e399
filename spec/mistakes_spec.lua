-- Mistakes caught where they are made (issue 16, item 8): a misspelled endpoint
-- comes back from the server's 404 with suggestions, a misspelled channel raises
-- at once on Misskey, PERMISSION_DENIED names the permission the endpoint needs,
-- and a misspelled permission in the auth flows raises with the nearest names.
local auth = require "misskey.auth"
local json = require "misskey.json"
local testing = require "misskey.testing"
local server = require "support.server"
local new_client = require "support.client"

-- A transport that records every request and answers with reply(req) (nothing leaves the process).
local function recording(reply)
  local seen = {}
  return {
    request = function(req)
      seen[#seen + 1] = req
      return reply(req)
    end,
  }, seen
end

local function answer(status, body, ctype)
  return { status = status, headers = { ["content-type"] = ctype or "application/json; charset=utf-8" },
    body = type(body) == "string" and body or json.encode(body) }
end

-- Misskey 2026.5.4's answer to POST /api/notes/craete (Fastify's own 404, checked on a real server).
local function fastify_404(req)
  local path = req.url:match("^https?://[^/]+(/[^?]*)")
  return answer(404, { message = "Route POST:" .. path .. " not found", error = "Not Found", statusCode = 404 })
end

local function misskey_error(status, code, message, kind)
  return answer(status, { error = { message = message, code = code, id = "2ca3b769-540a-4f08-9dd5-b5a825b6d0f1",
    kind = kind or "client" } })
end

local function client_with(transport, opts)
  local o = { host = "https://misskey.example", token = "SECRET-TOKEN", transport = transport, retries = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return new_client(o)
end

describe("an endpoint the catalogue does not know", function()
  it("is sent as it is; the server's 404 gains the nearest names (Fastify's 404 of Misskey 2026.5.4)", function()
    local t, seen = recording(fastify_404)
    local client = client_with(t)
    local value, msg, err = client:request("notes/craete", { text = "hi" })
    assert.is_nil(value)
    assert.equal(1, #seen) -- nothing refused before sending: a newer server may know the name
    assert.equal("https://misskey.example/api/notes/craete", seen[1].url)
    assert.equal("http", err.kind)
    assert.equal(404, err.status)
    assert.equal("notes/craete", err.endpoint)
    assert.equal("notes/create", err.suggestions[1])
    assert.equal(msg, err.message)
    assert.matches("notes/craete: HTTP 404, no such endpoint on this server (did you mean 'notes/create'",
      msg, 1, true)
    assert.matches("Route POST:/api/notes/craete not found", err.body, 1, true)
  end)

  it("gains them from UNKNOWN_API_ENDPOINT too (a GET, or an older server)", function()
    local client = client_with((recording(function()
      return misskey_error(404, "UNKNOWN_API_ENDPOINT", "Unknown API endpoint.")
    end)))
    local _, msg, err = client:request("users/shwo", { userId = "x" })
    assert.equal("api", err.kind)
    assert.equal("UNKNOWN_API_ENDPOINT", err.code)
    assert.equal("users/show", err.suggestions[1])
    assert.matches("users/shwo: UNKNOWN_API_ENDPOINT (HTTP 404): Unknown API endpoint. (did you mean 'users/show'",
      msg, 1, true)
  end)

  it("follows the server's catalogue after client:schema() (client:use_catalogue)", function()
    local client = client_with((recording(fastify_404)))
    client:use_catalogue{ endpoints = { ["fork/special/thing"] = { params = {} }, ["notes/create"] = { params = {} } } }
    local _, msg, err = client:request("fork/specail/thing")
    assert.same({ "fork/special/thing" }, err.suggestions)
    assert.matches("did you mean 'fork/special/thing'?", msg, 1, true)
  end)

  it("leaves a 404 of an endpoint the catalogue knows alone (a server too old for it)", function()
    local client = client_with((recording(fastify_404)))
    local _, msg, err = client:request("notes/create", { text = "hi" })
    assert.equal(404, err.status)
    assert.is_nil(err.suggestions)
    assert.is_nil(msg:find("did you mean", 1, true))
  end)

  it("gains them over HTTP from the test server, and never carries the token", function()
    local srv = server.start()
    local client = new_client{ host = srv.url, token = "SECRET-TOKEN-xyz", timeout = 5 }
    local _, msg, err = client:request("notes/timline", {})
    srv:stop()
    assert.equal(404, err.status)
    assert.equal("notes/timeline", err.suggestions[1])
    assert.matches("did you mean 'notes/timeline'", msg, 1, true)
    assert.is_nil(require("support.leak").find(err, "SECRET-TOKEN-xyz"))
  end)
end)

describe("PERMISSION_DENIED", function()
  local function denied()
    return misskey_error(403, "PERMISSION_DENIED",
      "Your app does not have the necessary permissions to use this endpoint.", "permission")
  end

  it("carries err.permission, the permission the endpoint needs (the catalogue's), and names it", function()
    local client = client_with((recording(denied)))
    local _, msg, err = client:request("drive/folders/create", { name = "x" })
    assert.equal("PERMISSION_DENIED", err.code)
    assert.equal("write:drive", err.permission)
    assert.equal("drive/folders/create: PERMISSION_DENIED (HTTP 403): Your app does not have the necessary "
      .. "permissions to use this endpoint. (the endpoint needs the permission write:drive)", msg)
  end)

  it("has no err.permission when the catalogue does not know one", function()
    local client = client_with((recording(denied)))
    local _, _, err = client:request("fork/thing")
    assert.equal("PERMISSION_DENIED", err.code)
    assert.is_nil(err.permission)
  end)

  it("takes from a server's catalogue only a name shaped as a permission", function()
    local client = client_with((recording(denied)))
    client:use_catalogue{ endpoints = {
      ["fork/a"] = { params = {}, permission = "write:fork-things" },
      ["fork/b"] = { params = {}, permission = "x\nos.exit(1) " .. ("y"):rep(200) },
    } }
    local _, msg, err = client:request("fork/a")
    assert.equal("write:fork-things", err.permission)
    assert.matches("needs the permission write:fork-things", msg, 1, true)
    _, msg, err = client:request("fork/b")
    assert.is_nil(err.permission)
    assert.is_nil(msg:find("\n", 1, true))
  end)
end)

describe("stream:channel with a name that is not a channel", function()
  it("raises at once on Misskey (nodeinfo), naming the nearest channels and the caller's line", function()
    local fake = testing.fake()
    local s = fake:client():stream()
    s:channel("homeTimeline")
    assert.equal(0, #fake.requests) -- a known name asks nothing
    local ok, why = pcall(function() s:channel("homeTimline") end)
    assert.is_false(ok)
    assert.matches("mistakes_spec.lua:%d+: bad argument #1 to 'channel' %(unknown channel 'homeTimline' "
      .. "%(did you mean 'homeTimeline'", why)
    assert.matches("strict = false", why, 1, true)
    assert.equal("/nodeinfo/2.1", fake.requests[1].path)
    assert.has_error(function() s:channel("globalTimline") end)
    assert.equal(1, #fake.requests) -- the software is asked once per client
    assert.equal(1, s:stats().channels)
    s:close()
  end)

  -- A server that is not Misskey: the fake behind a nodeinfo that says "sharkey".
  local function sharkey()
    local fake = testing.fake()
    local transport = {
      request = function(req)
        if req.url:find("/nodeinfo/2.1", 1, true) then
          return answer(200, { version = "2.1", software = { name = "sharkey", version = "2025.4.0" } })
        end
        return fake.transport.request(req)
      end,
      websocket = fake.transport.websocket,
    }
    return fake, new_client{ host = fake.base_url, token = "fake-token-me", transport = transport }
  end

  it("on other software makes the channel and emits error with the suggestion at once", function()
    local fake, client = sharkey()
    local s = client:stream()
    local errs, own = {}, {}
    s:on("error", function(err) errs[#errs + 1] = err end)
    local ch = s:channel("homeTimline")
    ch:on("error", function(err) own[#own + 1] = err end)
    assert.equal("homeTimline", ch.name)
    s:start()
    fake:run_until_idle()
    assert.equal(1, #errs)
    assert.equal(errs[1], own[1])
    assert.equal("invalid", errs[1].kind)
    assert.equal("homeTimline", errs[1].channel)
    assert.equal("homeTimeline", errs[1].suggestions[1])
    assert.matches("unknown channel 'homeTimline' (did you mean 'homeTimeline'", errs[1].message, 1, true)
    assert.matches("runs sharkey", errs[1].message, 1, true)
    s:close()
  end)

  it("with strict = false asks nothing and says nothing", function()
    local fake, client = sharkey()
    local s = client:stream{ strict = false }
    local errs = {}
    s:on("error", function(err) errs[#errs + 1] = err end)
    s:channel("bubbleTimeline")
    s:start()
    fake:run_until_idle()
    assert.same({}, errs)
    assert.equal(0, #fake.requests)
    s:close()
    fake = testing.fake()
    s = fake:client():stream{ strict = false }
    assert.equal("homeTimline", s:channel("homeTimline").name) -- Misskey too: the caller's choice
    s:close()
    assert.has_error(function() fake:client():stream{ strict = "no" } end,
      "bad option 'strict' (boolean expected, got string)")
  end)
end)

describe("client:software()", function()
  it("asks nodeinfo once and keeps the answer, including one that names no software", function()
    local t, seen = recording(function(req)
      if req.url:find("/nodeinfo/2.1", 1, true) then
        return answer(200, { software = { name = "Sharkey", version = "2025.4.0" } })
      end
      return answer(404, "not here", "text/plain")
    end)
    local client = client_with(t)
    assert.same({ "sharkey", "2025.4.0" }, { client:software() })
    assert.same({ "sharkey", "2025.4.0" }, { client:software() })
    assert.equal(1, #seen)
    assert.equal("GET", seen[1].method)
    for k, v in pairs(seen[1].headers or {}) do
      assert.is_nil(tostring(v):find("SECRET", 1, true), "the token went in header " .. k)
    end
    local quiet, qseen = recording(function(req)
      if req.url:find("/nodeinfo/2.1", 1, true) then
        return answer(200, { software = { name = "x\nos.exit(1)" } }) -- not a software name
      end
      return answer(404, "not here", "text/plain")
    end)
    client = client_with(quiet)
    local name, msg, err = client:software()
    assert.is_nil(name)
    assert.equal("http", err.kind)
    assert.matches("does not say what software it runs", msg, 1, true)
    assert.equal(2, #qseen) -- 2.1, then 2.0
    assert.is_nil((client:software()))
    assert.equal(2, #qseen)
  end)

  it("raises on misuse", function()
    local client = client_with((recording(fastify_404)))
    assert.has_error(function() client.software() end, "bad self to 'software' (call it as client:software(...))")
  end)
end)

describe("misskey stream (the command) with a misspelled channel", function()
  it("is a usage error naming the nearest channel, before any socket is opened", function()
    local srv = server.start()
    local dir = server.temp_dir()
    -- Bounded: a command that let the name through would stream until killed.
    local errfile = os.tmpname()
    local p = assert(io.popen("timeout -k 2 20 " .. require("support.cli").command(dir, "stream homeTimline",
      { MISSKEY_HOST = srv.url, MISSKEY_TOKEN = "tok" }) .. " 2>" .. server.shell_quote(errfile) .. "; echo $?"))
    local code = tonumber(p:read("*a"):match("(%d+)%s*$"))
    p:close()
    local f = assert(io.open(errfile, "rb"))
    local err = f:read("*a")
    f:close()
    os.remove(errfile)
    local state = new_client{ host = srv.url, token = false }:request("test/stream/state")
    srv:stop()
    server.remove_dir(dir)
    assert.equal(2, code)
    assert.matches("unknown channel 'homeTimline' (did you mean 'homeTimeline'", err, 1, true)
    assert.equal(0, #state.sockets)
  end)
end)

describe("a misspelled permission in the auth flows", function()
  it("raises with the nearest valid names, unless strict = false", function()
    local ok, why = pcall(auth.miauth, { host = "misskey.example", permission = { "read:account", "write:note" } })
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'miauth' (unknown permission: write:note (did you mean 'write:notes'",
      why, 1, true)
    ok, why = pcall(auth.app_create, { host = "misskey.example", name = "x", permission = "read:acount" })
    assert.is_false(ok)
    assert.matches("unknown permission: read:acount (did you mean 'read:account'?)", why, 1, true)
    ok, why = pcall(auth.oauth_start, { host = "misskey.example", client_id = "https://app.example/",
      redirect_uri = "https://app.example/cb", permission = { "read:acount", "write:drvie" } })
    assert.is_false(ok)
    assert.matches("unknown permissions: read:acount (did you mean 'read:account'?), write:drvie (did you mean "
      .. "'write:drive'", why, 1, true)
    local s = auth.miauth{ host = "misskey.example", permission = { "write:note" }, strict = false }
    assert.same({ "write:note" }, s.permission)
  end)
end)
