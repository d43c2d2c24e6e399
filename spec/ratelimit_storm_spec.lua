-- 429s that used to make storms or give up too soon: a zero wait (Retry-After: 0,
-- a resetMs in the past), waits counted against max_wait in real time, the cap
-- on 429 retries per call, resetMs read against the server's Date header, and
-- 429s that say nothing at all (older Misskey, Sharkey 2023.x), which wait by
-- the endpoint's window in the catalogue. The policy runs on a fake clock
-- (ratelimit._now/_sleep): nothing here really sleeps for long.
local ratelimit = require "misskey.ratelimit"
local new_client = require "support.client"
local server = require "support.server"

local RATE_LIMITED_ID = "d5826d14-3982-4d2e-8011-b9e9f02499ef"

-- Misskey's 429 body; `info` only when given (older Misskey and Sharkey 2023.x send none).
local function limited_body(info)
  local json = require "misskey.json"
  return json.encode{ error = { message = "Rate limit exceeded. Please try again later.",
    code = "RATE_LIMIT_EXCEEDED", id = RATE_LIMITED_ID, kind = "client", info = info } }
end

local OK = { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"ok":true}' }

-- A fake clock for the policy: sleeping advances it; `clock.sleeps` lists each wait.
local clock
before_each(function()
  clock = { t = 1000, sleeps = {}, saved_now = ratelimit._now, saved_sleep = ratelimit._sleep }
  ratelimit._now = function() return clock.t end
  ratelimit._sleep = function(s)
    clock.sleeps[#clock.sleeps + 1] = s
    clock.t = clock.t + s
  end
end)
after_each(function()
  ratelimit._now, ratelimit._sleep = clock.saved_now, clock.saved_sleep
end)

local function total(list)
  local sum = 0
  for _, v in ipairs(list) do sum = sum + v end
  return sum
end

-- A transport answering with `answer(n, req)` for the n-th request (bounded by the caller:
-- after `limit` requests it answers 200, so the code before the fix ends too).
local function scripted(answer, limit)
  local t = { sent = 0 }
  function t.request(req)
    t.sent = t.sent + 1
    if t.sent > (limit or 2000) then return OK end
    return answer(t.sent, req)
  end
  return t
end

local function new(transport, opts, catalogue)
  local o = { host = "http://127.0.0.1:9", token = false, transport = transport }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = new_client(o)
  c:use_catalogue(catalogue or { endpoints = { ["test/x"] = { write = false } } })
  return c
end

describe("a 429 with a zero wait", function()
  it("Retry-After: 0 waits at least MIN_WAIT each time and stops after MAX_429_RETRIES", function()
    local transport = scripted(function()
      return { status = 429, headers = { ["retry-after"] = "0" }, body = limited_body() }
    end)
    local res, _, err = new(transport):request("test/x")
    assert.is_nil(res)
    assert.equal(429, err.status)
    assert.equal(ratelimit.MAX_429_RETRIES + 1, transport.sent)
    for _, s in ipairs(clock.sleeps) do assert.truthy(s >= ratelimit.MIN_WAIT, tostring(s)) end
  end)

  it("a resetMs in the past (clock skew) is no tight loop either", function()
    local transport = scripted(function()
      return { status = 429, headers = {}, body = limited_body{ remaining = 0, resetMs = 1000, reset = 1, total = 1 } }
    end)
    local res, _, err = new(transport):request("test/x")
    assert.is_nil(res)
    assert.equal(0, err.retry_after)
    assert.equal(ratelimit.MAX_429_RETRIES + 1, transport.sent)
    for _, s in ipairs(clock.sleeps) do assert.truthy(s >= ratelimit.MIN_WAIT, tostring(s)) end
  end)

  it("the test server's Retry-After: 0, over the wire", function()
    local srv = server.start()
    local c = new_client({ host = srv.url, token = false })
    c:use_catalogue{ endpoints = { ["test/limited"] = { write = false }, ["test/log"] = { write = false } } }
    local key = "storm-" .. os.time()
    local res, _, err = c:request("test/limited", { key = key, retryAfter = 0, times = 200 })
    local log = assert(c:request("test/log", { key = key }))
    srv:stop()
    assert.is_nil(res)
    assert.equal(429, err.status)
    assert.equal(ratelimit.MAX_429_RETRIES + 1, log.count)
  end)
end)

describe("max_wait", function()
  it("counts real elapsed time, round trips included, not only the waits", function()
    -- Each request takes 5 s (a slow server); Retry-After: 1 every time.
    local transport = scripted(function()
      clock.t = clock.t + 5
      return { status = 429, headers = { ["retry-after"] = "1" }, body = limited_body() }
    end)
    local start = clock.t
    local res = new(transport, { max_wait = 20 }):request("test/x")
    assert.is_nil(res)
    -- The first 429 arrives at +5; the call gives up before +5+20 plus one last round trip.
    assert.truthy(clock.t - start <= 5 + 20 + 5, tostring(clock.t - start))
    assert.truthy(transport.sent <= 5, tostring(transport.sent))
  end)

  it("a wait the server names beyond max_wait returns the 429 at once", function()
    local transport = scripted(function()
      return { status = 429, headers = { ["retry-after"] = "90" }, body = limited_body() }
    end)
    assert.is_nil(new(transport):request("test/x"))
    assert.equal(1, transport.sent)
    assert.same({}, clock.sleeps)
  end)

  it("caps the 429 retries of one call even with a long max_wait", function()
    local transport = scripted(function()
      return { status = 429, headers = { ["retry-after"] = "1" }, body = limited_body() }
    end)
    assert.is_nil(new(transport, { max_wait = 100000 }):request("test/x"))
    assert.equal(ratelimit.MAX_429_RETRIES + 1, transport.sent)
  end)
end)

describe("resetMs", function()
  it("is read against the server's Date header, not the local clock", function()
    -- A server whose clock says 2001: resetMs is 5 s after its Date. Against the local clock
    -- it would be 25 years in the past (a zero wait).
    local date = "Mon, 01 Jan 2001 00:00:00 GMT"
    local reset_ms = (978307200 + 5) * 1000
    local transport = scripted(function(n)
      if n > 1 then return OK end
      return { status = 429, headers = { date = date },
        body = limited_body{ remaining = 0, resetMs = reset_ms, reset = math.floor(reset_ms / 1000), total = 1 } }
    end)
    local c = new(transport)
    local _, _, err = c:request("test/x", nil, { ratelimit = "throw" })
    assert.equal(5, err.retry_after)
    transport.sent = 0
    assert(c:request("test/x"))
    assert.same({ 5 }, clock.sleeps)
  end)
end)

describe("ratelimit.hint, per header set", function()
  local hint = ratelimit.hint

  it("Misskey: Retry-After (whole seconds), else info.resetMs against Date", function()
    assert.same({ 1, "retry-after" }, { hint({ ["retry-after"] = "1" }, { resetMs = 1 }) })
    assert.same({ 3, "resetMs" }, { hint({ date = "Sun, 06 Dec 2026 01:09:53 GMT" }, { resetMs = 1796519396000 }) })
  end)

  it("Retry-After as an HTTP date, against the Date header", function()
    assert.same({ 60, "retry-after" }, { hint{ date = "Sun, 06 Dec 2026 01:09:00 GMT",
      ["retry-after"] = "Sun, 06 Dec 2026 01:10:00 GMT" } })
  end)

  it("Sharkey 2025: fractional X-RateLimit-Reset over Retry-After", function()
    assert.same({ 0.755, "x-ratelimit-reset" }, { hint{ ["retry-after"] = "1", ["x-ratelimit-reset"] = "0.755",
      ["x-ratelimit-remaining"] = "0", ["x-ratelimit-clear"] = "1.5" } })
  end)

  it("an X-RateLimit-Reset in milliseconds (one Sharkey release) or an epoch time does not win", function()
    assert.same({ 0.755, "x-ratelimit-reset" }, { hint{ ["retry-after"] = "1", ["x-ratelimit-reset"] = "755" } })
    assert.same({ 2, "retry-after" }, { hint{ ["retry-after"] = "2", ["x-ratelimit-reset"] = "1796519396" } })
    assert.same({ 3, "x-ratelimit-reset" }, { hint{ date = "Sun, 06 Dec 2026 01:09:53 GMT",
      ["x-ratelimit-reset"] = "1796519396" } })
  end)

  it("none: nil, so the catalogue or a backoff decides", function()
    assert.is_nil(hint({}, nil))
    assert.is_nil(hint(nil, nil))
  end)

  it("refuses what is not plain seconds (no infinity, hex or sign from a hostile server)", function()
    assert.is_nil(hint{ ["retry-after"] = "1e999" })
    assert.is_nil(hint{ ["retry-after"] = "0x10" })
    assert.is_nil(hint{ ["retry-after"] = "-5" })
    assert.is_nil(hint{ ["x-ratelimit-reset"] = "inf" })
    assert.is_nil(hint({}, { resetMs = 1 / 0 }))
    assert.is_nil(hint({}, { resetMs = "soon" }))
  end)

  it("reads HTTP dates as UTC", function()
    assert.equal(1796519393, ratelimit._http_date("Sun, 06 Dec 2026 01:09:53 GMT"))
    assert.equal(951825600, ratelimit._http_date("Tue, 29 Feb 2000 12:00:00 GMT"))
    assert.equal(946684799, ratelimit._http_date("Fri, 31 Dec 1999 23:59:59 GMT"))
    assert.is_nil(ratelimit._http_date("yesterday"))
  end)
end)

-- Sharkey 2023.11 / older Misskey: a sliding window of `max` calls per `window` s, and a 429
-- with no Retry-After, no X-RateLimit-* and no info. `prefill` calls were made just before
-- (by this client or another process of the same account).
local function sliding_window(max, window, prefill)
  local sent = {}
  for i = 1, prefill or 0 do sent[i] = clock.t end
  return scripted(function()
    local inside = 0
    for _, t in ipairs(sent) do if t > clock.t - window then inside = inside + 1 end end
    if inside >= max then return { status = 429, headers = {}, body = limited_body() } end
    sent[#sent + 1] = clock.t
    return OK
  end)
end

local NOTIFICATIONS = { endpoints = {
  ["i/notifications"] = { write = false, limit = { duration = 30000, max = 30 } },
} }

describe("a 429 that says nothing", function()
  for _, mode in ipairs{ "wait", "pace" } do
    it(("waits by the catalogue's window (30 per 30 s): the 31st call succeeds with max_wait = 60 (%s)")
      :format(mode), function()
      local transport = sliding_window(30, 30, 30)
      local c = new(transport, { max_wait = 60, ratelimit = mode }, NOTIFICATIONS)
      local start = clock.t
      assert(c:request("i/notifications"))
      assert.truthy(clock.t - start >= 30 and clock.t - start <= 60, tostring(clock.t - start))
      -- and then the whole next window's worth goes through too
      for _ = 1, 30 do assert(c:request("i/notifications")) end
    end)
  end

  it("without a catalogue window, backs off exponentially until max_wait is used up", function()
    local transport = scripted(function()
      return { status = 429, headers = {}, body = limited_body() }
    end)
    local c = new(transport, { max_wait = 60 })
    assert.is_nil(c:request("test/x"))
    local waited = total(clock.sleeps)
    assert.truthy(waited > 59 and waited <= 60 + 1e-9, tostring(waited))
    assert.truthy(#clock.sleeps > 4, tostring(#clock.sleeps))
    for i = 2, #clock.sleeps - 1 do
      -- jittered doubling: each wait is at least a quarter of the next's cap
      assert.truthy(clock.sleeps[i] <= ratelimit.BLIND_CAP, tostring(clock.sleeps[i]))
    end
  end)

  it("with a window, the waits double from the window's share of one call up to the window", function()
    local transport = scripted(function()
      return { status = 429, headers = {}, body = limited_body() }
    end)
    local c = new(transport, { max_wait = 100 }, NOTIFICATIONS)
    assert.is_nil(c:request("i/notifications"))
    local first7 = {}
    for i = 1, 7 do first7[i] = clock.sleeps[i] end
    assert.same({ 1, 2, 4, 8, 16, 30, 30 }, first7)
    assert.truthy(total(clock.sleeps) <= 100)
  end)
end)

describe("misskey.testing's fake:limit", function()
  it("answers Misskey 2026.5.4's 429 (Retry-After and info), which the client waits out", function()
    local fake = require("misskey.testing").fake()
    local client = fake:client()
    fake:limit("notes/timeline", 2, 3)
    local _, _, err = client:request("notes/timeline", {}, { ratelimit = "throw" })
    assert.equal(429, err.status)
    assert.equal("RATE_LIMIT_EXCEEDED", err.code)
    assert.equal(3, err.retry_after)
    assert.same({ "remaining", "reset", "resetMs", "total" }, (function()
      local keys = {}
      for k in pairs(err.info) do keys[#keys + 1] = k end
      table.sort(keys)
      return keys
    end)())
    assert(client:request("notes/timeline"))
    assert.same({ 3 }, clock.sleeps)
    assert.equal("RATE_LIMIT_EXCEEDED", fake.requests[2].error)
    assert.is_nil(fake.requests[3].error)
  end)

  it("refuses bad arguments", function()
    local fake = require("misskey.testing").fake()
    assert.error_matches(function() fake:limit(1, 1) end, "bad argument #1 to 'limit'")
    assert.error_matches(function() fake:limit("i", -1) end, "bad argument #2 to 'limit'")
    assert.error_matches(function() fake:limit("i", 1, 0.5) end, "bad argument #3 to 'limit'")
  end)
end)
