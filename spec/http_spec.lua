-- client:http: raw HTTP to the client's own host (non-API URLs), against the
-- test server's /echo route and real failures.
local json = require "misskey.json"
local new_client = require "support.client"
local server = require "support.server"
local leak = require "support.leak"

local TOKEN = "HtTpToKeN0123456789abcdefABCDEFG"

local srv, client

local function new(opts)
  return new_client({ host = srv.url, token = TOKEN }, opts)
end

local function echo(res)
  assert.equal(200, res.status)
  return assert(json.decode(res.body))
end

setup(function()
  srv = server.start()
  client = new()
end)
teardown(function() srv:stop() end)

describe("client:http", function()
  it("GETs a path with a percent-encoded query in sorted key order", function()
    local res = assert(client:http{ path = "/echo/a", query = {
      b = "x y/z", a = 1, c = { "p", "q&r" }, d = true, ["é k"] = "ü" } })
    local e = echo(res)
    assert.equal("GET", e.method)
    assert.equal("/echo/a", e.path)
    assert.equal("a=1&b=x%20y%2Fz&c=p&c=q%26r&d=true&%C3%A9%20k=%C3%BC", e.query)
    assert.equal("application/json; charset=utf-8", res.headers["content-type"])
  end)

  it("appends the query to one already in the path", function()
    local e = echo(assert(client:http{ path = "/echo/q?x=1", query = { y = 2 } }))
    assert.equal("x=1&y=2", e.query)
  end)

  it("PUTs a body with the caller's headers and the User-Agent", function()
    local res = assert(client:http{ method = "PUT", path = "/echo/put", body = "raw\0bytes",
      headers = { ["Content-Type"] = "application/octet-stream", ["X-Custom"] = "yes" } })
    local e = echo(res)
    assert.equal("PUT", e.method)
    assert.equal(9, e.length)
    assert.equal("raw\0bytes", e.body)
    assert.equal("application/octet-stream", e.headers["content-type"])
    assert.equal("yes", e.headers["x-custom"])
    assert.matches("^lua%-misskey/%d+%.%d+%.%d+ libcurl/", e.headers["user-agent"])
  end)

  it("a User-Agent header of the caller's wins", function()
    local e = echo(assert(client:http{ path = "/echo/ua", headers = { ["User-Agent"] = "mine/1" } }))
    assert.equal("mine/1", e.headers["user-agent"])
  end)

  it("never sends the token unless auth = true, and then as a Bearer header", function()
    local e = echo(assert(client:http{ method = "POST", path = "/echo/t", body = "{}" }))
    assert.is_nil(e.headers.authorization)
    assert.is_nil(e.body:find(TOKEN, 1, true))
    assert.equal("", e.query)
    e = echo(assert(client:http{ path = "/echo/t", auth = true }))
    assert.equal("Bearer " .. TOKEN, e.headers.authorization)
  end)

  it("returns a 404 page as a response, not as an error", function()
    local res, msg = client:http{ path = "/no/such/page" }
    assert.is_table(res, msg)
    assert.equal(404, res.status)
    assert.matches("Not Found", res.body)
    assert.matches("^text/plain", res.headers["content-type"])
  end)

  it("returns a Misskey error reply as a response too", function()
    local res = assert(client:http{ method = "POST", path = "/api/test/error/no-such-user", body = "{}" })
    assert.equal(404, res.status)
    assert.equal("NO_SUCH_USER", json.decode(res.body).error.code)
  end)

  it("HEAD gets the status and headers without a body", function()
    local res = assert(client:http{ method = "HEAD", path = "/echo/h" })
    assert.equal(200, res.status)
    assert.equal("", res.body)
  end)

  it("json = true decodes a JSON reply into the second result and asks for JSON", function()
    local res, value = client:http{ path = "/echo/j", json = true }
    assert.equal(200, res.status)
    assert.equal("GET", value.method)
    assert.equal("application/json", value.headers.accept)
    local page, none = client:http{ path = "/no/such/page", json = true }
    assert.equal(404, page.status)
    assert.is_nil(none) -- not JSON: no value
    local _, msg, err = client:http{ method = "POST", path = "/api/test/invalid-json", body = "{}", json = true }
    assert.equal("decode", err.kind)
    assert.equal(200, err.status)
    assert.matches("^POST /api/test/invalid%-json: invalid JSON", msg)
  end)

  it("a refused connection is a network error", function()
    local c = new{ host = "http://127.0.0.1:" .. server.free_port() }
    local res, msg, err = c:http{ path = "/api.json" }
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal(7, err.curl_code)
    assert.equal("/api.json", err.endpoint)
    assert.matches("^GET /api%.json: ", msg)
  end)

  it("times out with its timeout", function()
    local _, _, err = client:http{ method = "POST", path = "/api/test/slow", body = '{"delay":3}', timeout = 0.2 }
    assert.equal("timeout", err.kind)
  end)

  it("caps the body with max_size", function()
    local _, msg, err = client:http{ path = "/echo/big", max_size = 10 }
    assert.equal("http", err.kind)
    assert.equal("too_large", err.reason)
    assert.matches("10 byte limit", msg)
  end)

  it("keeps the token out of every field of a failure", function()
    local transport = { request = function(req)
      return nil, "failed with " .. req.headers.Authorization, { kind = "network", headers = req.headers }
    end }
    local _, msg, err = new{ transport = transport }:http{ path = "/x", auth = true }
    leak.assert_none(TOKEN, msg, err)
    assert.matches("Bearer %*%*%*", msg)
    -- a JSON reply that does not decode, echoing the token
    local _, msg2, err2 = new{ transport = { request = function(req)
      return { status = 200, headers = { ["content-type"] = "application/json" },
        body = "{" .. req.headers.Authorization }
    end } }:http{ path = "/x", auth = true, json = true }
    assert.equal("decode", err2.kind)
    leak.assert_none(TOKEN, msg2, err2)
  end)
end)

describe("client:http misuse raises naming the argument", function()
  local function fails(req, message)
    assert.has_error(function() client:http(req) end, "bad argument #1 to 'http' (" .. message .. ")")
  end

  it("path", function()
    fails({ path = "api.json" }, [[path must start with '/' (the client's host is implied): "api.json"]])
    fails({ path = "http://evil.example/x" },
      [[path must start with '/' (the client's host is implied): "http://evil.example/x"]])
    fails({ path = "/a b" }, [[path must not contain spaces, control characters or '#': "/a b"]])
    fails({ path = 5 }, "path must be a string, got number")
    fails({}, "path must be a string, got nil")
  end)

  it("method, body, headers, query and flags", function()
    fails({ path = "/", method = "get" }, 'method must be an upper-case HTTP method such as "GET"')
    fails({ path = "/", body = "x" }, "GET cannot carry a body")
    fails({ path = "/", method = "POST", body = {} }, "body must be a string, got table")
    fails({ path = "/", headers = { ["Bad Name"] = "x" } }, [[header names must be HTTP tokens, got "Bad Name"]])
    fails({ path = "/", headers = { X = "a\r\nInjected: 1" } }, [[headers["X"] must be a string without line breaks]])
    fails({ path = "/", query = "a=b" }, "query must be a table, got string")
    fails({ path = "/", query = { a = print } }, "query.a must be a string, number, boolean or a list of them")
    fails({ path = "/", timeout = -1 }, "timeout: a number of seconds > 0 and <= 1000000 expected, got -1")
    fails({ path = "/", auth = "yes" }, "auth must be a boolean, got string")
    fails({ path = "/", url = "http://x" }, "unknown field 'url'")
    fails({ path = "/", auth = true, headers = { authorization = "Bearer x" } },
      "auth = true and an Authorization header")
    assert.has_error(function() new{ token = false }:http{ path = "/", auth = true } end,
      "bad argument #1 to 'http' (auth = true but the client has no token)")
    assert.has_error(function() client:http("/api.json") end,
      "bad argument #1 to 'http' (request table expected, got string)")
  end)
end)

describe("the curl transport's reply", function()
  -- A successful API call reads neither: the client decodes the body where libcurl left it.
  it("makes body and headers only when read", function()
    local transport = require("misskey.transport.curl").new(require("misskey.core").engine())
    local res = assert(transport.request{ method = "POST", url = srv.url .. "/api/test/status",
      body = '{"status":200,"body":{"a":1},"headers":{"X-One":"1"}}' })
    assert.equal(200, res.status)
    assert.is_nil(rawget(res, "body"))
    assert.is_nil(rawget(res, "headers"))
    assert.equal('{"a":1}', res.body)
    assert.equal('{"a":1}', rawget(res, "body"))
    assert.equal("1", res.headers["x-one"])
    assert.equal(res.headers, rawget(res, "headers"))
    assert.is_nil(res.other)
  end)

  it("is a plain table from client:http", function()
    local res = assert(client:http{ path = "/echo/plain" })
    assert.is_string(rawget(res, "body"))
    assert.is_table(rawget(res, "headers"))
  end)
end)
