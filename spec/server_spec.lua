-- Checks the local test server itself over real sockets, with curl, so client
-- specs can trust it.
local server = require "support.server"
local cjson = require "cjson"

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs curl with `args` (a shell fragment). Returns curl's exit code, the
-- status, the headers (lowercased names) and the body of the last response.
local function curl(args)
  local handle = assert(io.popen("env -u LD_PRELOAD /usr/bin/curl -s -i " .. args .. "; printf '\\n%s' $?", "r"))
  local out = handle:read("*a")
  handle:close()
  local text, rc = out:match("^(.*)\n(%d+)$")
  local head, body = text:match("^(.-)\r\n\r\n(.*)$")
  local status, headers = nil, {}
  for line in (head or ""):gmatch("[^\r\n]+") do
    local code = line:match("^HTTP/%S+ (%d+)")
    if code then
      status, headers = tonumber(code), {}
    else
      local name, value = line:match("^([^:]+):%s*(.*)$")
      if name then headers[name:lower()] = value end
    end
  end
  return tonumber(rc), status, headers, body or text
end

describe("test server", function()
  local srv

  local function post(path, json)
    return curl("-X POST -H 'Content-Type: application/json' --data-binary "
      .. quote(json or "{}") .. " " .. quote(srv.url .. path))
  end

  setup(function()
    srv = server.start()
  end)

  teardown(function()
    srv:stop()
  end)

  it("echoes method, path, raw query, headers and body", function()
    local rc, status, _, body = curl("-X POST -H 'X-Test: yes' --data-binary '{\"a\":[1,2]}' "
      .. quote(srv.url .. "/api/test/echo?q=a%20b"))
    assert.are.same({ 0, 200 }, { rc, status })
    local echo = cjson.decode(body)
    assert.are.equal("POST", echo.method)
    assert.are.equal("/api/test/echo", echo.path)
    assert.are.equal("q=a%20b", echo.query)
    assert.are.equal("yes", echo.headers["x-test"])
    assert.are.equal('{"a":[1,2]}', echo.body)
    assert.are.same({ a = { 1, 2 } }, echo.json)
    assert.are.equal(srv.host, echo.headers.host)
  end)

  it("answers 204 with no body and unknown endpoints with UNKNOWN_API_ENDPOINT", function()
    local _, status, _, body = post("/api/test/no-content")
    assert.are.same({ 204, "" }, { status, body })
    _, status, _, body = post("/api/does/not-exist")
    assert.are.equal(404, status)
    assert.are.equal("UNKNOWN_API_ENDPOINT", cjson.decode(body).error.code)
  end)

  it("sends 429 with Retry-After and resetMs in the future", function()
    local _, status, headers, body = post("/api/test/error/rate-limit", '{"resetIn":1.5}')
    assert.are.equal(429, status)
    assert.are.equal("2", headers["retry-after"])
    local err = cjson.decode(body).error
    assert.are.equal("RATE_LIMIT_EXCEEDED", err.code)
    assert.is_true(err.info.resetMs > os.time() * 1000)
    _, status, headers = post("/api/test/error/rate-limit", '{"noRetryAfter":true}')
    assert.are.equal(429, status)
    assert.is_nil(headers["retry-after"])
  end)

  it("sends client errors with WWW-Authenticate", function()
    local _, status, headers, body = post("/api/test/error/invalid-param")
    assert.are.equal(400, status)
    assert.matches('error="invalid_request"', headers["www-authenticate"], 1, true)
    assert.are.equal("#/properties/limit/maximum", cjson.decode(body).error.info.param)
  end)

  it("counts requests and connections (two requests on one kept-alive connection)", function()
    local _, _, _, body = post("/api/test/count")
    local before = cjson.decode(body)
    -- curl reuses its connection for several URLs given in one invocation;
    -- the first answer goes to /dev/null, the second is parsed.
    local url = quote(srv.url .. "/api/test/count")
    _, _, _, body = curl("-X POST -o /dev/null " .. url .. " " .. url)
    local after = cjson.decode(body)
    assert.are.equal(before.count + 2, after.count)
    assert.are.equal(before.connections + 1, after.connections)
  end)

  it("cuts a body short and closes without a response", function()
    local rc = post("/api/test/truncated")
    assert.are.equal(18, rc) -- CURLE_PARTIAL_FILE
    rc = post("/api/test/close")
    assert.are.equal(52, rc) -- CURLE_GOT_NOTHING
  end)

  it("gives a free port that refuses connections", function()
    local rc = curl(quote("http://127.0.0.1:" .. server.free_port() .. "/"))
    assert.are.equal(7, rc) -- CURLE_COULDNT_CONNECT
  end)

  it("stop() ends the server process", function()
    local other = server.start()
    assert.are_not.equal(srv.port, other.port)
    other:stop()
    other:stop() -- idempotent
    local alive = os.execute("kill -0 " .. other.pid .. " 2>/dev/null")
    assert.is_true(alive ~= true and alive ~= 0)
  end)
end)
