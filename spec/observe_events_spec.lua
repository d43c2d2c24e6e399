-- The events the request path reports through on_event: `request` after each
-- attempt on the wire (client:request, upload, http, batch), `retry` before a
-- retry and `ratelimit_wait` before a 429 wait; their fields, their order, and
-- never a token. Waits run on a fake clock (ratelimit._now/_sleep): nothing sleeps.
local ratelimit = require "misskey.ratelimit"
local new_client = require "support.client"
local server = require "support.server"

local TOKEN = "EvEnTtOkEn0123456789abcdefXYZ"

local CATALOGUE = { endpoints = {
  ["test/limited"] = { write = false },
  ["test/flaky"] = { write = false },
  ["test/log"] = { write = false },
  ["test/window"] = { write = false, limit = { duration = 30000, max = 30 } },
} }

local srv
local key_n = 0
local function key()
  key_n = key_n + 1
  return "ev" .. key_n .. "-" .. tostring(os.time())
end

setup(function() srv = server.start() end)
teardown(function() srv:stop() end)

local saved_now, saved_sleep
before_each(function()
  saved_now, saved_sleep = ratelimit._now, ratelimit._sleep
  local t = 1000
  ratelimit._now = function() return t end
  ratelimit._sleep = function(s) t = t + s end
end)
after_each(function() ratelimit._now, ratelimit._sleep = saved_now, saved_sleep end)

-- A client that records its events; `opts` override the defaults.
local function observed(opts)
  local events = {}
  local o = { host = srv.url, token = TOKEN, on_event = function(ev) events[#events + 1] = ev end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = new_client(o)
  c:use_catalogue(CATALOGUE)
  return c, events
end

local function types(events)
  local out = {}
  for i, ev in ipairs(events) do out[i] = ev.type end
  return out
end

-- No string field of any event holds the token.
local function no_token(events)
  for _, ev in ipairs(events) do
    for k, v in pairs(ev) do
      if type(v) == "string" then assert.is_nil(v:find(TOKEN, 1, true), k .. " holds the token") end
    end
  end
end

local function scripted(replies)
  local t = { sent = 0 }
  function t.request()
    t.sent = t.sent + 1
    return replies[math.min(t.sent, #replies)]
  end
  return t
end

local BLIND_429 = { status = 429, headers = { ["content-type"] = "application/json" },
  body = '{"error":{"message":"Rate limit exceeded.","code":"RATE_LIMIT_EXCEEDED",'
    .. '"id":"d5826d14-3982-4d2e-8011-b9e9f02499ef","kind":"client"}}' }
local OK = { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"id":"x"}' }

describe("request events", function()
  it("one per successful call, with endpoint, status, elapsed, attempt, ok, host and time", function()
    local c, events = observed()
    assert(c:request("meta"))
    assert.equal(1, #events)
    local ev = events[1]
    assert.equal("request", ev.type)
    assert.equal("meta", ev.endpoint)
    assert.equal(200, ev.status)
    assert.equal(1, ev.attempt)
    assert.is_true(ev.ok)
    assert.is_nil(ev.kind)
    assert.is_number(ev.elapsed)
    assert.truthy(ev.elapsed >= 0)
    assert.equal(c.host, ev.host)
    assert.is_number(ev.time)
  end)

  it("a failed call says its kind; a network failure has no status", function()
    local c, events = observed()
    assert.is_nil(c:request("test/error/invalid-param"))
    assert.same({ "request" }, types(events))
    assert.equal(400, events[1].status)
    assert.is_false(events[1].ok)
    assert.equal("api", events[1].kind)
    local dead, devents = observed{ host = "http://127.0.0.1:" .. server.free_port(), retries = 0 }
    assert.is_nil(dead:request("meta"))
    assert.equal(1, #devents)
    assert.is_nil(devents[1].status)
    assert.equal("network", devents[1].kind)
  end)

  it("client:batch reports each call", function()
    local c, events = observed()
    local _, errs = c:batch({ { "meta" }, { "meta" }, { "test/error/invalid-param" } }, { concurrency = 3 })
    assert.equal(400, errs[3].status)
    assert.is_nil(errs[1] or errs[2])
    assert.same({ "request", "request", "request" }, types(events))
  end)

  it("client:upload reports its attempts", function()
    local c, events = observed{ transport = scripted{ BLIND_429, OK } }
    assert(c:upload({ data = "abc", filename = "a.txt" }))
    assert.same({ "request", "ratelimit_wait", "request" }, types(events))
    assert.equal("drive/files/create", events[1].endpoint)
    assert.equal(429, events[1].status)
    assert.equal(2, events[3].attempt)
  end)

  it("client:http reports its request: the path (token redacted) and method", function()
    local c, events = observed()
    local res = assert(c:http{ path = "/api/test/echo?i=" .. TOKEN, method = "POST", body = "{}" })
    assert.equal(200, res.status)
    assert.equal(1, #events)
    assert.equal("request", events[1].type)
    assert.equal("/api/test/echo?i=***", events[1].endpoint)
    assert.equal("POST", events[1].method)
    assert.equal(200, events[1].status)
    assert.is_true(events[1].ok)
    no_token(events)
  end)
end)

describe("retry events", function()
  it("come between the attempts of a read that failed with 502", function()
    local c, events = observed()
    assert(c:request("test/flaky", { key = key(), fail = 2 }))
    assert.same({ "request", "retry", "request", "retry", "request" }, types(events))
    for i, n in ipairs{ 1, 3, 5 } do assert.equal(i, events[n].attempt) end
    assert.same({ 502, 502, 200 }, { events[1].status, events[3].status, events[5].status })
    assert.equal("http", events[1].kind)
    local retry = events[2]
    assert.equal("test/flaky", retry.endpoint)
    assert.equal(1, retry.attempt)
    assert.equal(1, retry.retry)
    assert.equal(502, retry.status)
    assert.equal("http", retry.kind)
    assert.truthy(retry.delay > 0 and retry.delay <= ratelimit.RETRY_CAP)
    assert.equal(2, events[4].retry)
    no_token(events)
  end)
end)

describe("ratelimit_wait events", function()
  it("say the wait and the rule that chose it (Retry-After)", function()
    local c, events = observed()
    assert(c:request("test/limited", { key = key(), retryAfter = 2 }))
    assert.same({ "request", "ratelimit_wait", "request" }, types(events))
    local w = events[2]
    assert.equal("test/limited", w.endpoint)
    assert.equal(2, w.wait)
    assert.equal("retry-after", w.rule)
    assert.equal(1, w.attempt)
    assert.equal(429, w.status)
    assert.is_number(w.waited)
    assert.equal(429, events[1].status)
    assert.equal(2, events[3].attempt)
  end)

  it("Sharkey's X-RateLimit-Reset, the catalogue's window, or a backoff", function()
    local c, events = observed()
    assert(c:request("test/limited", { key = key(), retryAfter = 2, sharkey = 0.5 }))
    assert.equal("x-ratelimit-reset", events[2].rule)
    assert.equal(0.5, events[2].wait)
    local w, wevents = observed{ transport = scripted{ BLIND_429, OK } }
    assert(w:request("test/window"))
    assert.equal("window", wevents[2].rule)
    assert.equal(1, wevents[2].wait)
    local b, bevents = observed{ transport = scripted{ BLIND_429, OK } }
    assert(b:request("test/limited"))
    assert.equal("backoff", bevents[2].rule)
  end)

  it("pacing waits are reported with rule \"pace\"", function()
    local c, events = observed{ ratelimit = "pace", transport = scripted{ OK } }
    c:use_catalogue{ endpoints = { ["test/paced"] = { write = false, limit = { min_interval = 60000 } } } }
    assert(c:request("test/paced"))
    assert(c:request("test/paced"))
    assert.same({ "request", "ratelimit_wait", "request" }, types(events))
    assert.equal("pace", events[2].rule)
    assert.truthy(math.abs(events[2].wait - (60 + ratelimit.PACE_MARGIN)) < 1e-9, tostring(events[2].wait))
  end)
end)

describe("without an observer", function()
  it("a request reads no clock and builds no event", function()
    local c = new_client{ host = srv.url, token = TOKEN }
    local reads, saved = 0, ratelimit._now
    ratelimit._now = function() reads = reads + 1; return saved() end -- the fake clock, counted
    local ok, res = pcall(c.request, c, "meta")
    ratelimit._now = saved
    assert.is_true(ok, res)
    assert.truthy(res)
    assert.equal(0, reads)
  end)
end)
