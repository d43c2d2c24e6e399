-- The client against the test server over real sockets: results, the error
-- model, credentials, redaction and bad input.
local misskey = require "misskey"
local json = require "misskey.json"
local server = require "support.server"
local leak = require "support.leak"
local with_env = require "support.env"

local TOKEN = "SeCrEtToKeN0123456789abcdefABCDE"

local srv, client

local function new(opts)
  local o = { host = srv.url, token = TOKEN }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c
  with_env({}, function() c = misskey.new(o) end)
  return c
end

setup(function()
  srv = server.start()
  client = new()
end)
teardown(function() srv:stop() end)

describe("client:request", function()
  it("returns the decoded result", function()
    local meta = assert(client:request("meta", { detail = true }))
    assert.equal("2026.5.4", meta.version)
    assert.equal(srv.url, meta.uri)
  end)

  it("returns true for a 204 reply", function()
    assert.is_true(client:request("test/no-content"))
  end)

  it("posts JSON with the token in `i` and does not change params", function()
    local params = { text = "héllo / wörld", n = 3, flag = false, list = misskey.array{} }
    local echo = assert(client:request("test/echo", params))
    assert.equal("POST", echo.method)
    assert.equal("/api/test/echo", echo.path)
    assert.matches("^application/json", echo.headers["content-type"])
    assert.equal(TOKEN, echo.json.i)
    assert.equal("héllo / wörld", echo.json.text)
    assert.equal(3, echo.json.n)
    assert.is_false(echo.json.flag)
    assert.matches('"list":%[%]', echo.body)
    assert.is_nil(params.i)
    assert.is_nil(echo.headers.authorization)
  end)

  it('sends the token as a Bearer header with auth = "header"', function()
    local c = new{ auth = "header" }
    local echo = assert(c:request("test/echo", {}))
    assert.equal("Bearer " .. TOKEN, echo.headers.authorization)
    assert.is_nil(echo.json.i)
    assert.equal("{}", echo.body)
  end)

  it("sends no token for an anonymous client", function()
    local c = new{ token = false }
    local echo = assert(c:request("test/echo"))
    assert.equal("{}", echo.body)
    assert.is_nil(echo.headers.authorization)
  end)

  it("sends a User-Agent naming the library and libcurl", function()
    local echo = assert(client:request("test/echo"))
    assert.matches("^lua%-misskey/%d+%.%d+%.%d+ libcurl/%d+%.%d+", echo.headers["user-agent"])
  end)
end)

describe("errors", function()
  local function fails(endpoint, params, c)
    local res, msg, err = (c or client):request(endpoint, params)
    assert.is_nil(res)
    assert.is_string(msg)
    assert.is_table(err)
    assert.equal(msg, tostring(err))
    assert.is_nil(msg:find("\n"))
    assert.equal(endpoint, err.endpoint)
    return err, msg
  end

  it("400 INVALID_PARAM is an api error with code, id and info", function()
    local err, msg = fails("test/error/invalid-param")
    assert.equal("api", err.kind)
    assert.equal(400, err.status)
    assert.equal("INVALID_PARAM", err.code)
    assert.equal("3d81ceae-475f-4600-b2a8-2bc116157532", err.id)
    assert.equal("#/properties/limit/maximum", err.info.param)
    assert.equal("client", err.api.kind)
    assert.matches("INVALID_PARAM", msg)
    assert.matches("#/properties/limit/maximum", msg, 1, true)
  end)

  it("401 AUTHENTICATION_FAILED", function()
    local err = fails("test/error/auth")
    assert.equal("api", err.kind)
    assert.equal(401, err.status)
    assert.equal("AUTHENTICATION_FAILED", err.code)
  end)

  it("403 PERMISSION_DENIED keeps Misskey's own kind in err.api", function()
    local err = fails("test/error/permission")
    assert.equal(403, err.status)
    assert.equal("PERMISSION_DENIED", err.code)
    assert.equal("permission", err.api.kind)
  end)

  it("429 takes retry_after from Retry-After", function()
    local err, msg = fails("test/error/rate-limit", { resetIn = 7 }, new{ ratelimit = "throw" })
    assert.equal(429, err.status)
    assert.equal("RATE_LIMIT_EXCEEDED", err.code)
    assert.equal(7, err.retry_after)
    assert.matches("retry after 7", msg)
  end)

  it("429 without Retry-After takes retry_after from info.resetMs", function()
    local err = fails("test/error/rate-limit", { resetIn = 30, noRetryAfter = true },
      new{ ratelimit = "throw" })
    assert.is_number(err.info.resetMs)
    -- resetMs / 1000 - os.time(): os.time() is whole seconds of glibc's coarse clock, which
    -- may lag the server's clock by a few ms, so 30 s can read as just over 31.
    assert.truthy(err.retry_after >= 28 and err.retry_after < 31.5, tostring(err.retry_after))
  end)

  it("500 INTERNAL_ERROR", function()
    local err = fails("test/error/internal")
    assert.equal(500, err.status)
    assert.equal("INTERNAL_ERROR", err.code)
    assert.equal("boom", err.info.e.message)
  end)

  it("an unknown endpoint is UNKNOWN_API_ENDPOINT", function()
    local err = fails("no/such/endpoint")
    assert.equal(404, err.status)
    assert.equal("UNKNOWN_API_ENDPOINT", err.code)
  end)

  it("an HTML 502 is an http error with an excerpt", function()
    local err, msg = fails("test/bad-gateway")
    assert.equal("http", err.kind)
    assert.equal(502, err.status)
    assert.matches("502 Bad Gateway", err.body)
    assert.truthy(#err.body < 300)
    assert.matches("HTTP 502", msg)
  end)

  it("invalid JSON on a 200 is a decode error", function()
    local err, msg = fails("test/invalid-json")
    assert.equal("decode", err.kind)
    assert.equal(200, err.status)
    assert.equal("test/invalid-json: invalid JSON in HTTP 200 reply (invalid JSON at character 8: "
      .. "expected a value (true, false and null are the only words))", msg)
    assert.equal('{"ok": tru', err.body)
  end)

  it("an empty 2xx reply is true, and a JSON one is its value", function()
    assert.is_true(client:request("test/status", { status = 200, body = "" }))
    assert.is_true(client:request("test/status", { status = 204 }))
    assert.same({ a = { 1, 2 } }, client:request("test/status", { status = 201, body = { a = { 1, 2 } } }))
    assert.is_false(client:request("test/status", { status = 200, body = "false" }))
  end)

  it("a connection closed mid-body is a network error", function()
    local err = fails("test/truncated")
    assert.equal("network", err.kind)
    assert.equal(18, err.curl_code)
  end)

  it("a connection closed without a reply is a network error", function()
    local err = fails("test/close")
    assert.equal("network", err.kind)
    assert.equal(52, err.curl_code)
  end)

  it("a refused connection is a network error", function()
    local c = new{ host = "http://127.0.0.1:" .. server.free_port() }
    local err = fails("meta", nil, c)
    assert.equal("network", err.kind)
    assert.equal(7, err.curl_code)
  end)

  it("a DNS failure is a network error", function()
    -- A 64-character label fails inside the resolver: no query leaves the machine.
    local c = new{ host = "http://" .. ("a"):rep(64) .. ".invalid", token = false, timeout = 10 }
    local err = fails("meta", nil, c)
    assert.equal("network", err.kind)
    assert.equal(6, err.curl_code) -- CURLE_COULDNT_RESOLVE_HOST
  end)

  it("a slow reply times out with the per-call timeout", function()
    local res, msg, err = client:request("test/slow", { delay = 3 }, { timeout = 0.2 })
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.matches("timed out after 0.2 s", msg)
  end)

  it("the client timeout applies when the call sets none", function()
    local c = new{ timeout = 0.2 }
    local _, _, err = c:request("test/slow", { delay = 3 })
    assert.equal("timeout", err.kind)
  end)
end)

describe("tokens", function()
  it("never appear in messages or error fields, even when the server echoes them", function()
    local body = "token was " .. TOKEN .. " and again " .. TOKEN
    local _, msg, err = client:request("test/status", { status = 400, body = body, contentType = "text/plain" })
    leak.assert_none(TOKEN, msg, err)
    assert.matches("token was %*%*%* and again %*%*%*", err.body)
    -- in the decoded error, its info too, however deep
    local _, msg2, err2 = client:request("test/status", {
      status = 400, body = { error = { code = "X", message = "bad " .. TOKEN, id = "1",
        info = { param = "i", reason = { TOKEN, { deeper = "got " .. TOKEN } } } } } })
    leak.assert_none(TOKEN, msg2, err2)
    assert.equal("got ***", err2.info.reason[2].deeper)
    assert.equal("X", err2.code)
    -- a 2xx that is not JSON
    local _, msg3, err3 = client:request("test/status",
      { status = 200, body = "{" .. TOKEN, contentType = "text/plain" })
    assert.equal("decode", err3.kind)
    leak.assert_none(TOKEN, msg3, err3)
  end)

  it("are not shown by tostring(client)", function()
    assert.is_nil(tostring(client):find(TOKEN, 1, true))
    assert.matches("%*%*%*", tostring(client))
  end)

  it("are not in encoding errors", function()
    local ok, err = pcall(client.request, client, "test/echo", { f = print })
    assert.is_false(ok)
    assert.is_nil(err:find(TOKEN, 1, true))
  end)
end)

describe("bad input raises naming the argument", function()
  it("endpoint", function()
    assert.has_error(function() client:request(42) end,
      "bad argument #1 to 'request' (endpoint must be a string, got number)")
    assert.has_error(function() client:request("/notes/create") end,
      "bad argument #1 to 'request' (endpoint must not start with '/': \"/notes/create\")")
    assert.has_error(function() client:request("notes/../admin") end,
      "bad argument #1 to 'request' (not an endpoint name: \"notes/../admin\")")
    assert.has_error(function() client:request("notes create") end)
    assert.has_error(function() client:request("") end)
  end)

  it("params and options", function()
    assert.has_error(function() client:request("meta", "x") end,
      "bad argument #2 to 'request' (params must be a table, got string)")
    assert.has_error(function() client:request("meta", {}, { colour = 3 }) end,
      "bad argument #3 to 'request' (unknown option 'colour')")
    assert.has_error(function() client:request("meta", {}, { timeout = -1 }) end)
  end)

  it("values JSON cannot carry, named by their path", function()
    assert.has_error(function() client:request("test/echo", { poll = { choices = { "a", print } } }) end)
    local ok, err = pcall(client.request, client, "test/echo", { poll = { choices = { "a", print } } })
    assert.is_false(ok)
    assert.matches("params.poll.choices%[2%]", err)
    ok, err = pcall(client.request, client, "test/echo", { n = 0 / 0 })
    assert.is_false(ok)
    assert.matches("params.n", err)
    local cyc = {}
    cyc.self = cyc
    ok, err = pcall(client.request, client, "test/echo", { c = cyc })
    assert.is_false(ok)
    assert.matches("params.c.self", err)
    assert.matches("cycle", err)
  end)

  it("misskey.new options", function()
    assert.has_error(function() new{ token = 42 } end, "bad option 'token' (string expected, got number)")
    assert.has_error(function() new{ auth = "query" } end)
    assert.has_error(function() new{ colour = "red" } end, "bad option 'colour' (unknown option)")
    assert.has_error(function() new{ timeout = "1" } end)
    assert.has_error(function() new{ transport = {} } end)
    assert.has_error(function() misskey.new("misskey.example") end)
  end)

  it("called without self", function()
    assert.has_error(function() client.request("meta") end)
  end)
end)

describe("host", function()
  local function base(host)
    local c
    with_env({}, function() c = misskey.new{ host = host } end)
    return c.base_url
  end

  it("a bare host means https; a base URL is taken as it is", function()
    assert.equal("https://misskey.example", base("misskey.example"))
    assert.equal("https://misskey.example:8443", base("Misskey.Example:8443"))
    assert.equal("http://127.0.0.1:3000", base("http://127.0.0.1:3000"))
    assert.equal("https://misskey.example", base("https://misskey.example/"))
    assert.equal("http://[::1]:3000", base("http://[::1]:3000"))
  end)

  it("rejects a path, spaces, user info, another scheme or no host", function()
    for _, bad in ipairs{ "misskey.example/api", "https://misskey.example/x", "mis skey.example",
                          "https://user:pw@misskey.example", "ftp://misskey.example", "wss://m.example",
                          "", "misskey.example:99999", "https://", "m.example?x=1", ".example" } do
      local ok, err = pcall(base, bad)
      assert.is_false(ok, bad)
      assert.matches("bad option 'host'", err)
    end
    assert.has_error(function() base(42) end)
    with_env({}, function()
      assert.has_error(function() misskey.new{} end,
        "bad option 'host' (a host is required: pass host = ..., set MISSKEY_HOST, "
        .. "or log in with `misskey login`)")
    end)
  end)
end)

describe("credentials", function()
  it("come from MISSKEY_HOST and MISSKEY_TOKEN as a pair", function()
    with_env({ MISSKEY_HOST = srv.url, MISSKEY_TOKEN = "envtoken" }, function()
      local c = misskey.new()
      local echo = assert(c:request("test/echo"))
      assert.equal("envtoken", echo.json.i)
    end)
  end)

  it("explicit arguments win over the environment", function()
    with_env({ MISSKEY_HOST = srv.url, MISSKEY_TOKEN = "envtoken" }, function()
      local echo = assert(misskey.new{ token = "explicit" }:request("test/echo"))
      assert.equal("explicit", echo.json.i)
    end)
  end)

  it("the environment's token is never sent to another host", function()
    with_env({ MISSKEY_HOST = "elsewhere.example", MISSKEY_TOKEN = "envtoken" }, function()
      local echo = assert(misskey.new{ host = srv.url }:request("test/echo"))
      assert.is_nil(echo.json.i)
    end)
  end)

  it("a token without a host is not used", function()
    with_env({ MISSKEY_TOKEN = "envtoken" }, function()
      assert.has_error(function() misskey.new() end)
    end)
  end)
end)

describe("transport seam", function()
  it("sends every request through an injected transport", function()
    local seen
    local transport = {
      request = function(req)
        seen = req
        return { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"id":"n1"}' }
      end,
    }
    local c = new{ transport = transport }
    local note = assert(c:request("notes/create", { text = "hi" }, { timeout = 5 }))
    assert.equal("n1", note.id)
    assert.equal("POST", seen.method)
    assert.equal(srv.url .. "/api/notes/create", seen.url)
    assert.equal(5, seen.timeout)
    local body = json.decode(seen.body)
    assert.equal("hi", body.text)
    assert.equal(TOKEN, body.i)
  end)

  it("passes a transport failure on with the endpoint and no token in any field", function()
    local transport = {
      request = function(req)
        return nil, "exploded near " .. TOKEN, { kind = "network", url = req.url .. "?i=" .. TOKEN,
          detail = { sent = req.body, lines = { "i=" .. TOKEN } } }
      end,
    }
    local c = new{ transport = transport }
    local res, msg, err = c:request("meta")
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal("meta", err.endpoint)
    leak.assert_none(TOKEN, msg, err)
    assert.equal("i=***", err.detail.lines[1])
  end)
end)

describe("timeouts in tasks", function()
  -- The engine keeps each call's total timeout: calls in tasks and in a batch end at their own
  -- deadlines while the others go on.
  it("end slow calls in tasks while a quick one succeeds, and in a batch", function()
    local c = new{ retries = 0 }
    local results = {}
    misskey.run(function()
      local ts = {}
      for i = 1, 3 do
        ts[i] = misskey.spawn(function()
          return c:request("test/slow", { delay = 3 }, { timeout = 0.2 + 0.1 * i })
        end)
      end
      ts[4] = misskey.spawn(function()
        return c:request("test/status", { status = 200, body = { ok = true } }, { timeout = 5 })
      end)
      for i = 1, 4 do results[i] = { ts[i]:join() } end
    end)
    for i = 1, 3 do
      assert.is_nil(results[i][1])
      assert.equal("timeout", results[i][3].kind)
      assert.equal(28, results[i][3].curl_code)
      assert.matches("timed out after 0%.%d s %(Operation timed out after %d+ milliseconds", results[i][2])
    end
    assert.is_true(results[4][1].ok)
    local r, errs = c:batch({ { "test/slow", { delay = 3 } }, { "test/status", { status = 200, body = {} } } },
      { concurrency = 2, timeout = 0.3 })
    assert.equal("timeout", errs[1].kind)
    assert.is_nil(r[1])
    assert.same({}, r[2])
  end)
end)
