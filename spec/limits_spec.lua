-- Limits and network options over real 127.0.0.1 sockets: the reply size cap
-- (chunked and gzip), the low-speed abort, the connect timeout, proxies from
-- the environment, and the checks on those options.
local json = require "misskey.json"
local new_client = require "support.client"
local server = require "support.server"

local srv

local function new(opts)
  return new_client({ host = srv.url, token = false }, opts)
end


-- A transport that records the request it is given.
local function recorder()
  local t = {}
  function t.request(req)
    t.req = req
    return { status = 200, headers = {}, body = "{}" }
  end
  return t
end

setup(function() srv = server.start() end)
teardown(function() srv:stop() end)

describe("max_size", function()
  it("a chunked reply (no Content-Length) over the cap fails as an http error", function()
    local res, msg, err = new{ max_size = 100000 }:request("test/chunked", { size = 300000, chunk = 8192 })
    assert.is_nil(res)
    assert.equal("http", err.kind)
    assert.equal("too_large", err.reason)
    assert.equal(200, err.status)
    assert.equal(23, err.curl_code) -- CURLE_WRITE_ERROR: the write callback refused it
    assert.equal("test/chunked", err.endpoint)
    assert.matches("larger than the 100000 byte limit %(max_size", msg)
  end)

  it("a chunked reply exactly at the cap is accepted", function()
    local res = assert(new{ max_size = 100000 }:http{
      method = "POST", path = "/api/test/chunked", body = '{"size":100000,"chunk":7000}',
      headers = { ["Content-Type"] = "application/json" } })
    assert.equal(200, res.status)
    assert.equal(100000, #res.body)
    assert.is_nil(res.headers["content-length"])
    assert.equal("chunked", res.headers["transfer-encoding"])
  end)

  it("a gzip reply under the cap is decoded, and gzip was advertised", function()
    local res = assert(new():http{ method = "POST", path = "/api/test/gzip", body = '{"size":200000}',
                                   headers = { ["Content-Type"] = "application/json" } })
    assert.equal("gzip", res.headers["content-encoding"])
    local value = assert(json.decode(res.body))
    assert.matches("gzip", value.acceptEncoding)
    assert.equal(200000, #res.body)
    local meta = assert(new():request("test/gzip", { size = 5000 }))
    assert.equal(5000, meta.size)
  end)

  it("a gzip bomb (16 KiB inflating to 16 MiB) stops at the cap of decoded bytes", function()
    local res, msg, err = new{ max_size = 1024 * 1024 }:request("test/gzip", { size = 16 * 1024 * 1024 })
    assert.is_nil(res)
    assert.equal("http", err.kind)
    assert.equal("too_large", err.reason)
    assert.matches("1048576 byte limit", msg)
    assert.matches("decompression", msg)
  end)

  it("the default cap is 64 MiB", function()
    local seen = recorder()
    assert(new{ transport = seen }:request("meta"))
    assert.equal(64 * 1024 * 1024, seen.req.max_size)
    local _, _, err = new():request("test/gzip", { size = 64 * 1024 * 1024 + 1 })
    assert.equal("too_large", err.reason)
  end)
end)

describe("low_speed", function()
  it("aborts a reply that dribbles below the limit, as a timeout (curl error 28)", function()
    local c = new{ low_speed = { bytes = 10, seconds = 1 } }
    local res, msg, err = c:request("test/dribble", { bytes = 20, interval = 1 })
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.equal(28, err.curl_code)
    assert.matches("too slow", msg)
    -- Without the abort the 20 s dribble would have succeeded: no clock needed.
  end)

  it("defaults to 1 byte/s over 60 s, and false turns it off", function()
    local seen = recorder()
    assert(new{ transport = seen }:request("meta"))
    assert.equal(1, seen.req.low_speed_limit)
    assert.equal(60, seen.req.low_speed_time)
    assert(new{ transport = seen, low_speed = false }:request("meta"))
    assert.is_nil(seen.req.low_speed_limit)
    assert.is_nil(seen.req.low_speed_time)
    assert(new{ transport = seen, low_speed = { bytes = 500, seconds = 10 } }:request("meta"))
    assert.equal(500, seen.req.low_speed_limit)
    assert.equal(10, seen.req.low_speed_time)
  end)

  it("is checked", function()
    assert.has_error(function() new{ low_speed = 5 } end,
      "bad option 'low_speed' ({ bytes = n, seconds = s } or false expected)")
    assert.has_error(function() new{ low_speed = { bytes = 0, seconds = 1 } } end,
      "bad option 'low_speed.bytes' (an integer from 1 to 2^53 expected, got 0)")
    assert.has_error(function() new{ low_speed = { bytes = 1, seconds = 0.5 } } end,
      "bad option 'low_speed.seconds' (an integer from 1 to 1000000 expected, got 0.5)")
    assert.has_error(function() new{ low_speed = { bytes = 1 } } end,
      "bad option 'low_speed.seconds' (an integer from 1 to 1000000 expected, got nil)")
    assert.has_error(function() new{ low_speed = { bytes = 1, seconds = 1, time = 3 } } end,
      "bad option 'low_speed' (unknown field 'time')")
  end)
end)

describe("connect_timeout", function()
  it("ends a connect that hangs, as a timeout (curl error 28)", function()
    -- The server's blackhole port has a full listen queue and never accepts:
    -- the kernel drops our SYN, so the connect hangs, all on 127.0.0.1.
    local port = assert(new():request("test/blackhole")).port
    -- retries = 0: `meta` is a read, which would otherwise be retried after the timeout.
    local c = new{ host = "http://127.0.0.1:" .. port, connect_timeout = 0.5, retries = 0 }
    local res, msg, err = c:request("meta")
    assert.is_nil(res)
    assert.equal("timeout", err.kind, msg)
    assert.equal(28, err.curl_code)
    assert.matches("onnect", msg)
  end)

  it("is passed to the transport", function()
    local seen = recorder()
    assert(new{ transport = seen, connect_timeout = 2.5 }:request("meta"))
    assert.equal(2.5, seen.req.connect_timeout)
  end)

  it("options are checked", function()
    assert.has_error(function() new{ connect_timeout = "1" } end)
    assert.has_error(function() new{ connect_timeout = 0 } end)
    assert.has_error(function() new{ max_size = -1 } end)
    assert.has_error(function() new{ timeout = 0 / 0 } end)
  end)
end)

describe("proxies from the environment", function()
  -- libcurl reads http_proxy/no_proxy with getenv at request time, and plain Lua
  -- cannot setenv: run the request in a child interpreter with its own environment.
  local LUA = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  local CHILD = [[
    local c = require("misskey").new{ host = HOST, token = false }
    local r, msg = c:request("test/target")
    io.write(r and require("misskey.json").encode(r) or ("FAILED " .. msg))
  ]]

  local function child(env, host)
    local prelude = ("package.path = %q; package.cpath = %q; local HOST = %q\n"):format(
      package.path, package.cpath, host)
    local cmd = "env -u no_proxy -u NO_PROXY -u all_proxy -u ALL_PROXY -u https_proxy -u HTTPS_PROXY "
      .. "-u MISSKEY_HOST -u MISSKEY_TOKEN " .. env .. " " .. LUA .. " -e " .. server.shell_quote(prelude .. CHILD)
      .. " 2>&1"
    local h = assert(io.popen(cmd, "r"))
    local out = h:read("*a")
    h:close()
    return out
  end

  it("http_proxy sends the request in absolute form to the proxy", function()
    -- The proxy is the test server; the target host never resolves: only the proxy sees it.
    local out = child("http_proxy=" .. srv.url, "http://proxied.example")
    local seen = json.decode(out)
    assert.is_table(seen, out)
    assert.equal("POST", seen.method)
    assert.equal("http://proxied.example/api/test/target", seen.target)
    assert.equal("proxied.example", seen.host)
  end)

  it("no_proxy is honoured", function()
    local dead = "http://127.0.0.1:" .. server.free_port()
    local out = child("http_proxy=" .. dead .. " no_proxy=127.0.0.1", srv.url)
    local seen = json.decode(out)
    assert.is_table(seen, out)
    assert.equal("/api/test/target", seen.target)
  end)

  it("a proxy that refuses is a network error naming the proxy", function()
    local dead = "http://127.0.0.1:" .. server.free_port()
    local out = child("http_proxy=" .. dead, "http://proxied.example")
    assert.matches("^FAILED test/target: ", out)
    assert.matches("curl error 7%)", out)
  end)
end)
