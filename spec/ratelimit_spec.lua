-- Rate limits (wait, throw, pace, Sharkey headers) and retries, checked with
-- the test server's request log (server-side monotonic arrival times): no
-- wall-clock assertions here. The client gets a small catalogue of its own.
local misskey = require "misskey"
local ratelimit = require "misskey.ratelimit"
local new_client = require "support.client"
local server = require "support.server"

local function catalogue(extra)
  local eps = {
    ["test/limited"] = { write = false },
    ["test/paced"] = { write = false, limit = { duration = 1000, max = 3 } },
    ["test/bucket"] = { write = false },
    ["test/flaky"] = { write = false },
    ["test/flaky-write"] = { write = true },
    ["test/items"] = { write = false, paginate = "id", page_max = 100 },
    ["test/log"] = { write = false },
  }
  for k, v in pairs(extra or {}) do eps[k] = v end
  return { endpoints = eps }
end

local srv, client
local key_n = 0

local function new(opts, cat)
  local c = new_client({ host = srv.url, token = false }, opts)
  c:use_catalogue(cat or catalogue())
  return c
end

local function key()
  key_n = key_n + 1
  return "r" .. key_n .. "-" .. tostring(os.time())
end

local function log(k)
  return assert(client:request("test/log", { key = k }))
end

setup(function()
  srv = server.start()
  client = new()
end)
teardown(function() srv:stop() end)

describe("429 with ratelimit = \"wait\" (the default)", function()
  it("waits Retry-After, then sends the request again", function()
    local k = key()
    local res = assert(client:request("test/limited", { key = k, retryAfter = 1 }))
    assert.equal(2, res.n)
    local l = log(k)
    assert.equal(2, l.count)
    assert.same({ 429, 200 }, l.statuses)
    assert.truthy(l.times[2] - l.times[1] >= 1.0, tostring(l.times[2] - l.times[1]))
  end)

  it("returns the 429 at once when the wait would pass max_wait", function()
    local k = key()
    local c = new{ max_wait = 0.5 }
    local res, msg, err = c:request("test/limited", { key = k, retryAfter = 1 })
    assert.is_nil(res)
    assert.equal(429, err.status)
    assert.equal("RATE_LIMIT_EXCEEDED", err.code)
    assert.matches("RATE_LIMIT_EXCEEDED", msg)
    assert.equal(1, log(k).count)
    -- per call too
    local k2 = key()
    assert.is_nil(client:request("test/limited", { key = k2, retryAfter = 2 }, { max_wait = 1 }))
    assert.equal(1, log(k2).count)
  end)

  it("gives up when the waits add up past max_wait", function()
    local k = key()
    local c = new{ max_wait = 2.5 }
    local res, _, err = c:request("test/limited", { key = k, retryAfter = 1, times = 5 })
    assert.is_nil(res)
    assert.equal(429, err.status)
    assert.equal(3, log(k).count) -- waited 1 + 1; a third wait would pass 2.5 s
  end)

  it("honours Sharkey's fractional X-RateLimit-Reset over Retry-After", function()
    local k = key()
    assert(client:request("test/limited", { key = k, retryAfter = 2, sharkey = 0.3 }))
    local l = log(k)
    assert.equal(2, l.count)
    local gap = l.times[2] - l.times[1]
    assert.truthy(gap >= 0.3 and gap < 1.9, tostring(gap))
  end)

  it("backs off with jitter when a 429 says nothing about when to come back", function()
    local k = key()
    assert(client:request("test/limited", { key = k, blind = true }))
    local l = log(k)
    assert.equal(2, l.count)
    assert.truthy(l.times[2] - l.times[1] >= ratelimit.BLIND_BASE / 2)
  end)

  it("waits inside a task without blocking the other tasks", function()
    local k, other = key(), key()
    misskey.run(function()
      local a = misskey.spawn(function() return client:request("test/limited", { key = k, retryAfter = 1 }) end)
      local b = misskey.spawn(function()
        misskey.sleep(0.2)
        return client:request("test/paced", { key = other })
      end)
      assert(a:join())
      assert(b:join())
    end)
    local la, lb = log(k), log(other)
    assert.equal(2, la.count)
    assert.equal(1, lb.count)
    assert.truthy(lb.times[1] > la.times[1] and lb.times[1] < la.times[2])
  end)
end)

describe("429 with ratelimit = \"throw\"", function()
  it("returns the error at once", function()
    local k = key()
    local c = new{ ratelimit = "throw" }
    local res, _, err = c:request("test/limited", { key = k })
    assert.is_nil(res)
    assert.equal(429, err.status)
    assert.equal(1, err.retry_after)
    assert.equal(1, log(k).count)
  end)

  it("per call", function()
    local k = key()
    assert.is_nil(client:request("test/limited", { key = k }, { ratelimit = "throw" }))
    assert.equal(1, log(k).count)
  end)
end)

describe("ratelimit = \"pace\"", function()
  it("keeps a burst under the catalogue's limit (3 per second)", function()
    local k = key()
    local c = new{ ratelimit = "pace" }
    local calls = {}
    for i = 1, 7 do calls[i] = { "test/paced", { key = k } } end
    local results, errs = c:batch(calls, { concurrency = 7 })
    assert.is_nil(next(errs))
    assert.equal(7, results.n)
    local t = log(k).times
    assert.equal(7, #t)
    table.sort(t)
    for i = 4, #t do
      assert.truthy(t[i] - t[i - 3] >= 1.0, ("requests %d and %d are %.3f s apart"):format(i - 3, i, t[i] - t[i - 3]))
    end
  end)

  it("spaces calls by min_interval", function()
    local k = key()
    local c = new({ ratelimit = "pace" }, catalogue{
      ["test/paced"] = { write = false, limit = { min_interval = 300 } } })
    for _ = 1, 4 do assert(c:request("test/paced", { key = k })) end
    local t = log(k).times
    for i = 2, 4 do assert.truthy(t[i] - t[i - 1] >= 0.3) end
  end)

  it("follows Sharkey's X-RateLimit-Remaining/Reset so the server never says 429", function()
    local k = key()
    local c = new{ ratelimit = "pace" }
    for _ = 1, 6 do assert(c:request("test/bucket", { key = k, size = 2, drip = 0.3 })) end
    local l = log(k)
    assert.equal(6, l.count)
    for i = 1, 6 do assert.equal(200, l.statuses[i]) end
    -- without pacing the same burst meets 429s (and waits them out)
    local k2 = key()
    for _ = 1, 6 do assert(client:request("test/bucket", { key = k2, size = 2, drip = 0.3 })) end
    local seen429 = false
    for _, s in ipairs(log(k2).statuses) do seen429 = seen429 or s == 429 end
    assert.is_true(seen429)
  end)

  it("paces nothing for an endpoint without a limit", function()
    local k = key()
    local c = new({ ratelimit = "pace" }, catalogue{ ["test/paced"] = { write = false } })
    local sleeps, saved = 0, ratelimit._sleep
    ratelimit._sleep = function(s) sleeps = sleeps + 1; saved(s) end
    local ok, err = pcall(function()
      for _ = 1, 5 do assert(c:request("test/paced", { key = k })) end
    end)
    ratelimit._sleep = saved
    assert(ok, err)
    assert.equal(0, sleeps)
    assert.equal(5, log(k).count)
  end)
end)

describe("retries", function()
  it("a read that fails twice with 502 is sent 3 times and succeeds", function()
    local k = key()
    local res = assert(client:request("test/flaky", { key = k, fail = 2 }))
    assert.equal(3, res.n)
    assert.same({ 502, 502, 200 }, log(k).statuses)
  end)

  it("a write failing with 502 is sent exactly once", function()
    local k = key()
    local res, _, err = client:request("test/flaky-write", { key = k, fail = 2 })
    assert.is_nil(res)
    assert.equal("http", err.kind)
    assert.equal(502, err.status)
    assert.equal(1, log(k).count)
  end)

  it("idempotent = true lets a write retry; idempotent = false stops a read", function()
    local k = key()
    assert(client:request("test/flaky-write", { key = k, fail = 2 }, { idempotent = true }))
    assert.equal(3, log(k).count)
    local k2 = key()
    assert.is_nil(client:request("test/flaky", { key = k2, fail = 2 }, { idempotent = false }))
    assert.equal(1, log(k2).count)
  end)

  it("an endpoint the catalogue does not know is never repeated", function()
    local k = key()
    local c = new({}, { endpoints = {} })
    assert.is_nil(c:request("test/flaky", { key = k, fail = 2 }))
    assert.equal(1, log(k).count)
  end)

  it("stop after `retries` retries; retries = 0 disables them", function()
    local k = key()
    assert.is_nil(client:request("test/flaky", { key = k, fail = 5 }))
    assert.equal(3, log(k).count)
    local k2 = key()
    local c = new{ retries = 0 }
    assert.is_nil(c:request("test/flaky", { key = k2, fail = 1 }))
    assert.equal(1, log(k2).count)
    local k3 = key()
    assert(c:request("test/flaky", { key = k3, fail = 1 }, { retries = 1 }))
    assert.equal(2, log(k3).count)
  end)

  it("never repeat a 4xx", function()
    local k = key()
    local res, _, err = client:request("test/items", { key = k, limit = 500 })
    assert.is_nil(res)
    assert.equal(400, err.status)
    assert.equal(1, log(k).count)
  end)

  it("retry network errors of reads", function()
    local n = 0
    local real = require("misskey.transport.curl").new()
    local c = new{ transport = { request = function(req)
      n = n + 1
      if n < 3 then return nil, "connection reset", { kind = "network" } end
      return real.request(req)
    end } }
    local k = key()
    assert(c:request("test/flaky", { key = k, fail = 0 }))
    assert.equal(3, n)
    assert.equal(1, log(k).count)
  end)

  it("apply to client:batch and to paginate", function()
    local k1, k2 = key(), key()
    local results, errs = client:batch({
      { "test/flaky", { key = k1, fail = 1 } }, { "test/flaky", { key = k2, fail = 2 } },
    })
    assert.is_nil(next(errs))
    assert.equal(2, results[1].n)
    assert.equal(3, results[2].n)
    -- paginate: the page requests go through the same path
    local k3 = key()
    local c = new({}, catalogue{ ["test/flaky"] = { write = false, paginate = "offset", page_max = 10 } })
    local it = c:paginate("test/flaky", { key = k3, fail = 2 })
    assert.equal(nil, it:next()) -- the flaky route answers an object, not a page
    assert.equal(3, log(k3).count)
  end)
end)

describe("client:upload", function()
  local RATE_LIMITED = '{"error":{"message":"Rate limit exceeded.","code":"RATE_LIMIT_EXCEEDED",'
    .. '"id":"d5826d14-3982-4d2e-8011-b9e9f02499ef","kind":"client"}}'
  local function scripted(replies)
    local sent = 0
    return { request = function()
      sent = sent + 1
      return replies[math.min(sent, #replies)]
    end }, function() return sent end
  end

  it("waits out a 429 and sends the file again", function()
    local transport, sent = scripted{
      { status = 429, headers = { ["retry-after"] = "0", ["content-type"] = "application/json" }, body = RATE_LIMITED },
      { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"id":"f1"}' },
    }
    local c = new{ transport = transport }
    local file = assert(c:upload({ data = "abc", filename = "a.txt" }))
    assert.equal("f1", file.id)
    assert.equal(2, sent())
  end)

  it("is a write: a 502 is not repeated", function()
    local transport, sent = scripted{ { status = 502, headers = { ["content-type"] = "text/html" }, body = "bad" } }
    local c = new{ transport = transport }
    local res, _, err = c:upload({ data = "abc", filename = "a.txt" })
    assert.is_nil(res)
    assert.equal(502, err.status)
    assert.equal(1, sent())
  end)
end)

describe("the policy", function()
  it("classifies what may be retried", function()
    assert.is_true(ratelimit.retryable{ kind = "network" })
    assert.is_true(ratelimit.retryable{ kind = "timeout" })
    assert.is_true(ratelimit.retryable{ kind = "http", status = 502 })
    assert.is_true(ratelimit.retryable{ kind = "api", status = 500 })
    assert.is_false(ratelimit.retryable{ kind = "api", status = 400 })
    assert.is_false(ratelimit.retryable{ kind = "http", status = 404 })
    assert.is_false(ratelimit.retryable{ kind = "decode", status = 200 })
    assert.is_false(ratelimit.retryable{ kind = "http", reason = "too_large" })
  end)

  it("backs off exponentially with jitter, up to the cap", function()
    for n = 1, 10 do
      local d = math.min(5, 0.2 * 2 ^ (n - 1))
      local w = ratelimit.backoff(0.2, 5, n)
      assert.truthy(w >= d / 2 and w <= d, tostring(w))
    end
  end)
end)

describe("options", function()
  it("bad values raise naming the option", function()
    local function raises(pattern, opts)
      local ok, err = pcall(new, opts)
      assert.is_false(ok)
      assert.matches(pattern, err)
    end
    raises("ratelimit", { ratelimit = "sometimes" })
    raises("max_wait", { max_wait = -1 })
    raises("max_wait", { max_wait = "1" })
    raises("retries", { retries = 1.5 })
    raises("retries", { retries = -1 })
    raises("idempotent", { idempotent = true })
  end)

  it("per call", function()
    local function raises(pattern, opts)
      local ok, err = pcall(client.request, client, "test/flaky", {}, opts)
      assert.is_false(ok)
      assert.matches(pattern, err)
    end
    raises("idempotent", { idempotent = "yes" })
    raises("ratelimit", { ratelimit = 1 })
    raises("retries", { retries = "2" })
    raises("unknown option 'retry'", { retry = 2 })
  end)

  it("defaults: wait, 60 s, 2 retries", function()
    local policy = require("misskey.ratelimit").policy{}
    assert.equal("wait", policy.mode)
    assert.equal(60, policy.max_wait)
    assert.equal(2, policy.retries)
  end)
end)
