-- The C engine through real sockets against the test server.
local core = require "misskey.core"
local server = require "support.server"
local poll = require "support.poll"

local srv

setup(function() srv = server.start() end)
teardown(function() srv:stop() end)

local function post(engine, path, body, extra)
  local req = { url = srv.url .. path, body = body or "{}", headers = { ["Content-Type"] = "application/json" } }
  for k, v in pairs(extra or {}) do req[k] = v end
  return engine:request(req)
end

-- Finishes every transfer the way a host loop would: poll the listed fds
-- ourselves, with engine:timeout() as the bound, then step(0). Bounded.
local function drive(engine, transfers)
  local finished, polls = {}, 0
  local deadline = os.time() + 20
  while engine:pending() > 0 do
    assert(os.time() < deadline, "transfers did not finish in time")
    local t = engine:timeout()
    poll(engine:fds(), t and math.min(t, 1) or 1)
    polls = polls + 1
    for _, tr in ipairs(engine:step(0)) do finished[#finished + 1] = tr end
  end
  for _, tr in ipairs(transfers) do assert.is_true(tr:done()) end
  return finished, polls
end

local function decode(s) return require("cjson").decode(s) end

describe("engine", function()
  it("finishes concurrent transfers driven only by fds(), timeout() and step(0)", function()
    local e = core.engine()
    local ts = {}
    for i = 1, 5 do ts[i] = post(e, "/api/test/echo", ('{"n":%d}'):format(i)) end
    assert.equal(5, e:pending())
    local finished = drive(e, ts)
    assert.equal(5, #finished)
    for i, t in ipairs(ts) do
      local status, headers, body = t:result()
      assert.equal(200, status)
      assert.matches("application/json", headers["content-type"])
      assert.equal(i, decode(body).json.n)
    end
  end)

  it("lists each socket with its interest while a transfer waits on it", function()
    local e = core.engine()
    local t = post(e, "/api/test/slow", '{"delay":0.3}')
    local seen
    local deadline = os.time() + 10
    while not t:done() do
      assert(os.time() < deadline)
      for fd, interest in pairs(e:fds()) do
        assert.is_number(fd)
        assert.truthy(interest == "r" or interest == "w" or interest == "rw")
        seen = true
      end
      poll(e:fds(), math.min(e:timeout() or 1, 1))
      e:step(0)
    end
    assert.is_true(seen)
    assert.equal(200, (t:result()))
  end)

  it("reuses the connection for sequential requests", function()
    local e = core.engine()
    local first = post(e, "/api/test/count")
    drive(e, { first })
    local before = decode(select(3, first:result()))
    local second = post(e, "/api/test/count")
    drive(e, { second })
    local after = decode(select(3, second:result()))
    assert.equal(1, first:info().connects)
    assert.equal(0, second:info().connects)
    assert.equal(before.connections, after.connections)
    assert.equal(before.count + 1, after.count)
  end)

  it("sends the method, headers and body it is given", function()
    local e = core.engine()
    local t = e:request{ url = srv.url .. "/echo/x?a=1", method = "PUT", body = "payload",
                         headers = { ["X-Test"] = "yes", ["X-Long"] = ("v"):rep(3000), ["X-Empty"] = "" },
                         user_agent = "spec-agent/1" }
    drive(e, { t })
    local echo = decode(select(3, t:result()))
    assert.equal("PUT", echo.method)
    assert.equal("payload", echo.body)
    assert.equal("yes", echo.headers["x-test"])
    assert.equal(("v"):rep(3000), echo.headers["x-long"]) -- longer than the line buffer
    assert.equal("", echo.headers["x-empty"])
    assert.equal("spec-agent/1", echo.headers["user-agent"])
    assert.equal("a=1", echo.query)
    assert.is_nil(echo.headers["expect"])
  end)

  it("returns lowercased response headers, repeated ones joined", function()
    local e = core.engine()
    local t = post(e, "/api/test/status", '{"status":418,"body":"teapot","contentType":"text/plain",'
      .. '"headers":{"X-One":"1"}}')
    drive(e, { t })
    local status, headers, body = t:result()
    assert.equal(418, status)
    assert.equal("teapot", body)
    assert.equal("1", headers["x-one"])
    assert.matches("text/plain", headers["content-type"])
  end)

  it("skips the header table on request (result(true)) and gives it later (headers())", function()
    local e = core.engine()
    local t = post(e, "/api/test/status", '{"status":200,"body":"ok","headers":{"X-Two":"2"}}')
    drive(e, { t })
    local status, headers, body = t:result(true)
    assert.equal(200, status)
    assert.is_nil(headers)
    assert.equal("ok", body)
    assert.equal("2", t:headers()["x-two"])
    assert.same(t:headers(), (select(2, t:result(false, true))))
  end)

  it("skips the body on request (result(true, true)) and decodes it in place", function()
    local json = require "misskey.json"
    local e = core.engine()
    local text = '{"list":[1,2.5,[]],"name":"caf\\u00e9","none":null}'
    local good = post(e, "/api/test/status", json.encode{ status = 200, body = text })
    local bad = post(e, "/api/test/status", '{"status":200,"body":"{\\"a\\":"}')
    local empty = post(e, "/api/test/status", '{"status":200,"body":""}')
    drive(e, { good, bad, empty })
    local status, headers, body = good:result(true, true)
    assert.equal(200, status)
    assert.is_nil(headers)
    assert.is_nil(body)
    local value = json._decode_body(good, "empty")
    assert.same(json.decode(text), value)
    assert.is_true(json.is_array(value.list[3]))
    assert.equal(json.null, value.none)
    assert.equal("caf\195\169", value.name)
    -- Decoded, the body is freed: asking for it again says so.
    assert.has_error(function() good:body() end, "transfer has no body: it was decoded in place")
    assert.has_error(function() good:result() end, "transfer has no body: it was decoded in place")
    assert.equal(200, (good:result(true, true)))
    local v, msg = json._decode_body(bad, "empty")
    assert.is_nil(v)
    assert.equal(select(2, json.decode('{"a":')), msg)
    assert.equal('{"a":', bad:body()) -- a failed decode leaves it for the error's excerpt
    assert.equal("empty", json._decode_body(empty, "empty"))
    assert.equal("", empty:body())
  end)

  it("hands the body over once: a second read raises, the headers stay", function()
    local json = require "misskey.json"
    local e = core.engine()
    local t = post(e, "/api/test/status", '{"status":200,"body":"once","headers":{"X-Three":"3"}}')
    drive(e, { t })
    assert.equal("once", t:body())
    assert.has_error(function() t:body() end, "transfer has no body: it was read already")
    assert.has_error(function() t:result() end, "transfer has no body: it was read already")
    assert.has_error(function() json._decode_body(t) end, "transfer has no body: it was read already")
    local status, headers = t:result(false, true)
    assert.equal(200, status)
    assert.equal("3", headers["x-three"])
    assert.equal("3", t:headers()["x-three"])
  end)

  it("has no body to give for a transfer that failed or still runs", function()
    local json = require "misskey.json"
    local e = core.engine()
    local refused = e:request{ url = "http://127.0.0.1:" .. server.free_port() .. "/api/meta", body = "{}" }
    drive(e, { refused })
    assert.has_error(function() refused:body() end, "transfer has no body: it failed")
    assert.has_error(function() json._decode_body(refused) end, "transfer has no body: it failed")
    local running = post(e, "/api/test/slow", '{"delay":1}')
    assert.has_error(function() running:body() end, "transfer has no body: it is still running")
    running:cancel()
    assert.has_error(function() running:body() end, "transfer has no body: it was cancelled")
    assert.has_error(function() json._decode_body("text") end)
  end)

  it("reports a refused connection as a network failure", function()
    local e = core.engine()
    local t = e:request{ url = "http://127.0.0.1:" .. server.free_port() .. "/api/meta", body = "{}" }
    drive(e, { t })
    local ok, msg, reason, code = t:result()
    assert.is_nil(ok)
    assert.equal("network", reason)
    assert.equal(7, code) -- CURLE_COULDNT_CONNECT
    assert.matches("onnect", msg)
  end)

  it("reports a body cut short as a network failure", function()
    local e = core.engine()
    local t = post(e, "/api/test/truncated")
    drive(e, { t })
    local ok, _, reason, code = t:result()
    assert.is_nil(ok)
    assert.equal("network", reason)
    assert.equal(18, code) -- CURLE_PARTIAL_FILE
  end)

  -- curl's timer is one-shot: a deadline left armed after it fired made every
  -- later step poll with a zero timeout, a busy wait until the reply came.
  it("waits for a slow reply on a reused connection in a few steps, not a spin", function()
    local e = core.engine()
    local warm = post(e, "/api/test/echo")
    while not warm:done() do e:step(1) end
    local tr = post(e, "/api/test/hold", '{"delay":0.5}')
    local steps = 0
    while not tr:done() and steps < 1000 do
      e:step(5)
      steps = steps + 1
    end
    assert.is_true(steps <= 10, ("%d engine steps for one held reply"):format(steps))
    assert.equal(200, (tr:result()))
    assert.equal(0, tr:info().connects) -- the kept-alive connection
  end)

  it("times out a slow reply", function()
    local e = core.engine()
    local t = post(e, "/api/test/slow", '{"delay":3}', { timeout = 0.2 })
    drive(e, { t })
    local ok, _, reason, code = t:result()
    assert.is_nil(ok)
    assert.equal("timeout", reason)
    assert.equal(28, code)
  end)

  it("keeps each transfer's total timeout itself: visible to host loops, ended in deadline order", function()
    local e = core.engine()
    local late = post(e, "/api/test/slow", '{"delay":3}', { timeout = 0.6 })
    local early = post(e, "/api/test/slow", '{"delay":3}', { timeout = 0.2 })
    local quick = post(e, "/api/test/status", '{"status":200,"body":"ok"}', { timeout = 30 })
    assert.is_true(e:timeout() <= 0.2) -- a host loop polling with timeout() wakes for it
    local finished = drive(e, { late, early, quick })
    assert.equal(quick, finished[1])
    assert.equal(early, finished[2])
    assert.equal(late, finished[3])
    for _, t in ipairs { early, late } do
      local ok, msg, reason, code, status = t:result()
      assert.is_nil(ok)
      assert.equal("timeout", reason)
      assert.equal(28, code)
      assert.equal(0, status)
      assert.matches("^Operation timed out after %d+ milliseconds with 0 bytes received %(curl error 28%)$", msg)
    end
    assert.equal("ok", select(3, quick:result()))
    assert.equal(0, e:pending())
    assert.is_nil(e:timeout()) -- no deadline is left behind by the finished ones
    local cancelled = post(e, "/api/test/slow", '{"delay":3}', { timeout = 0.3 })
    e:step(0)
    cancelled:cancel()
    assert.is_nil(e:timeout())
    assert.equal(0, #e:step(0))
    assert.equal("cancelled", select(3, cancelled:result()))
  end)

  it("stops a body over max_size", function()
    local e = core.engine()
    local t = post(e, "/api/test/large", '{"n":50}', { max_size = 10000 })
    drive(e, { t })
    local ok, msg, reason = t:result()
    assert.is_nil(ok)
    assert.equal("too_large", reason)
    assert.matches("10000", msg)
  end)

  it("cancels a transfer in flight", function()
    local e = core.engine()
    local t = post(e, "/api/test/slow", '{"delay":2}')
    e:step(0)
    t:cancel()
    assert.equal(0, e:pending())
    assert.is_true(t:done())
    local ok, _, reason = t:result()
    assert.is_nil(ok)
    assert.equal("cancelled", reason)
  end)

  it("reports nothing as one shared empty list that cannot be changed", function()
    local e = core.engine()
    local transfers, timers, sockets = e:step(0)
    assert.equal(0, #transfers)
    assert.is_nil(next(transfers))
    assert.equal(transfers, timers)
    assert.equal(transfers, sockets)
    assert.has_error(function() transfers[1] = true end, "engine:step's empty lists are shared and read-only")
    assert.has_error(function() timers[#timers + 1] = 1 end)
    assert.is_nil(next(sockets))
    -- A list that reports something is the caller's own table.
    local id = e:timer(0)
    local _, fired = e:step(0)
    assert.same({ id }, fired)
    assert.are_not.equal(transfers, fired)
    fired[2] = "mine"
    assert.equal(0, #select(2, e:step(0)))
  end)

  it("raises on misuse", function()
    local e = core.engine()
    assert.has_error(function() e:request{ body = "{}" } end, "request option 'url' is required")
    assert.has_error(function() e:request{ url = srv.url, headers = { ["X"] = "a\r\nInjected: 1" } } end,
      "invalid request header 'X'")
    assert.has_error(function() e:request{ url = srv.url, headers = { ["X"] = "cut\0here" } } end,
      "invalid request header 'X'")
    assert.has_error(function() e:request{ url = srv.url, headers = { ["X Y"] = "1" } } end,
      "invalid request header 'X Y'")
    assert.has_error(function() e:request{ url = srv.url, headers = { [""] = "1" } } end,
      "invalid request header ''")
    assert.has_error(function() e:request{ url = srv.url, timeout = "soon" } end,
      "request option 'timeout' must be a number")
    assert.has_error(function() e:step(-1) end)
    local running = post(e, "/api/test/slow", '{"delay":1}')
    assert.has_error(function() running:result() end, "transfer is still running")
    e:close()
    assert.is_true(running:done())
    assert.has_error(function() e:step(0) end, "attempt to use a closed engine")
    assert.matches("closed", tostring(e))
  end)
end)
