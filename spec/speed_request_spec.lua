-- The request path's cheaper ways (issue 17): prepared requests (core.prepare,
-- engine:post), engine:finish (a plain script's wait stepped in C), error buffers kept
-- with pooled handles, and the catalogue asked only when a call needs it. Each must
-- give what the general path gives; nothing here measures time.
local core = require "misskey.core"
local catalogue = require "misskey.catalogue"
local loop = require "misskey.loop"
local misskey = require "misskey"
local new_client = require "support.client"
local server = require "support.server"

local srv

setup(function() srv = server.start() end)
teardown(function() srv:stop() end)
after_each(function() loop.cancel_all() end)

local function decode(s) return require("cjson").decode(s) end

-- Steps engine `e` until `t` is done (bounded).
local function drive(e, t)
  for _ = 1, 2000 do
    if t:done() then return end
    e:step(0.01)
  end
  error("transfer did not finish")
end

local PREPARED = {
  headers = { ["Content-Type"] = "application/json", Accept = "application/json", Authorization = "Bearer tok" },
  user_agent = "spec-agent/2", connect_timeout = 5, max_size = 1024 * 1024,
}

describe("core.prepare and engine:post", function()
  it("send what engine:request sends for the same request table", function()
    local e = core.engine()
    local p = core.prepare(PREPARED)
    local url = srv.url .. "/api/test/echo"
    local a = e:post(p, url, '{"x":1}', 5)
    local req = { method = "POST", url = url, body = '{"x":1}', timeout = 5 }
    for k, v in pairs(PREPARED) do req[k] = v end
    local b = e:request(req)
    drive(e, a)
    drive(e, b)
    local ea, eb = decode(select(3, a:result())), decode(select(3, b:result()))
    assert.equal("POST", ea.method)
    assert.equal('{"x":1}', ea.body)
    for _, name in ipairs{ "content-type", "accept", "authorization", "user-agent", "expect", "content-length" } do
      assert.equal(eb.headers[name], ea.headers[name], name)
    end
    assert.equal("spec-agent/2", ea.headers["user-agent"])
    assert.equal("Bearer tok", ea.headers.authorization)
    assert.is_nil(ea.headers.expect)
  end)

  it("keep the prepared request alive as long as a transfer uses it", function()
    local e = core.engine()
    local t = e:post(core.prepare(PREPARED), srv.url .. "/api/test/echo", "{}")
    collectgarbage()
    collectgarbage()
    drive(e, t)
    assert.equal("Bearer tok", decode(select(3, t:result())).headers.authorization)
  end)

  it("apply the prepared body limit and the call's timeout", function()
    local e = core.engine()
    local small = core.prepare{ max_size = 100 }
    local t = e:post(small, srv.url .. "/api/test/large", '{"n":5}')
    drive(e, t)
    assert.equal("too_large", select(3, t:result()))
    local slow = e:post(core.prepare{}, srv.url .. "/api/test/slow", '{"delay":2}', 0.1)
    drive(e, slow)
    assert.equal("timeout", select(3, slow:result()))
  end)

  it("reject what engine:request rejects, naming it", function()
    local e = core.engine()
    assert.has_error(function() core.prepare{ user_agent = "a\r\nX-Evil: 1" } end,
      "request option 'user_agent' must not contain a line break")
    assert.has_error(function() core.prepare{ headers = { ["X-A"] = "1\r\nX-Evil: 1" } } end,
      "invalid request header 'X-A'")
    assert.has_error(function() core.prepare{ headers = { ["X-A"] = 1 } } end,
      "request headers must map strings to strings")
    assert.has_error(function() core.prepare("x") end)
    local p = core.prepare{}
    assert.error_matches(function() e:post(p, "http://127.0.0.1/\0x", "{}") end, "NUL byte")
    assert.error_matches(function() e:post(p, srv.url, "{}", -1) end, "must be a number >= 0")
    assert.error_matches(function() e:post(p, srv.url, nil) end, "string expected")
    assert.error_matches(function() e:post({}, srv.url, "{}") end, "expected")
  end)
end)

describe("engine:finish", function()
  it("steps the engine until the transfer is done, or its seconds pass", function()
    local e = core.engine()
    local t = e:post(core.prepare{}, srv.url .. "/api/test/echo", "{}")
    assert.equal("done", e:finish(t))
    assert.equal(200, (t:result()))
    assert.equal("done", e:finish(t)) -- a finished transfer: at once
    local slow = e:post(core.prepare{}, srv.url .. "/api/test/slow", '{"delay":2}')
    assert.equal("timeout", e:finish(slow, 0.05))
    slow:cancel()
    assert.equal("done", e:finish(slow))
  end)

  it("declines (nil) while the engine serves anything else, so the caller steps it and sees all", function()
    local e = core.engine()
    local p = core.prepare{}
    local a = e:post(p, srv.url .. "/api/test/echo", "{}")
    local b = e:post(p, srv.url .. "/api/test/echo", "{}")
    assert.is_nil(e:finish(a)) -- another transfer
    drive(e, a)
    drive(e, b)
    local c = e:post(p, srv.url .. "/api/test/echo", "{}")
    local timer = e:timer(60)
    assert.is_nil(e:finish(c)) -- a timer
    e:cancel_timer(timer)
    local fd = require("testpoll").connect(srv.port)
    e:watch(fd, "r")
    assert.is_nil(e:finish(c)) -- a watched socket
    e:unwatch(fd)
    require("testpoll").close(fd)
    local other = core.engine()
    assert.is_nil(other:finish(c)) -- another engine's transfer
    assert.equal("done", e:finish(c))
  end)

  it("declines a WebSocket: its connect is waited for by stepping the engine", function()
    local e = core.engine()
    local ws = assert(e:websocket{ url = srv.url:gsub("^http", "ws") .. "/streaming", timeout = 5 })
    assert.is_nil(e:finish(ws))
    ws:cancel()
  end)

  it("rejects a bad timeout", function()
    local e = core.engine()
    local t = e:post(core.prepare{}, srv.url .. "/api/test/echo", "{}")
    assert.error_matches(function() e:finish(t, -1) end, "timeout must be a number >= 0")
    assert.error_matches(function() e:finish(t, 0 / 0) end, "timeout must be a number >= 0")
    assert.equal("done", e:finish(t))
  end)
end)

describe("a blocking call outside a task", function()
  local client
  before_each(function()
    client = new_client{ host = srv.url, token = "t" }
    assert(client:request("test/hold/reset"))
  end)

  it("still lets a task spawned before it run, and its timers fire", function()
    local slept = false
    local t = misskey.spawn(function()
      misskey.sleep(0.01)
      slept = true
      return assert(client:request("test/hold", { key = "task", delay = 0.3 })).key
    end)
    assert.equal("plain", assert(client:request("test/hold", { key = "plain", delay = 0.3 })).key)
    assert.is_true(slept)
    assert.equal("task", t:join())
    assert.equal(2, assert(client:request("test/hold/stats")).max_inflight) -- both held at once
  end)

  it("still lets a task spawned by an observer during the call run", function()
    local ran = false
    local observed = new_client({ host = srv.url, token = "speed-token" }, { on_event = function(ev)
      if ev.type == "request" and ev.endpoint == "test/echo" and not ran then
        misskey.spawn(function() ran = true end)
      end
    end })
    assert(observed:request("test/echo"))
    assert(observed:request("test/echo")) -- the task spawned during the first call runs during the second
    assert.is_true(ran)
  end)
end)

describe("pooled handles", function()
  it("keep each failure's own words, after successes and failures on the same handle", function()
    local client = new_client{ host = srv.url, token = false }
    assert(client:request("test/echo"))
    local _, msg1, err1 = client:request("test/slow", { delay = 2 }, { timeout = 0.05 })
    assert.equal("timeout", err1.kind)
    assert(client:request("test/echo"))
    local _, msg2, err2 = client:request("test/close")
    assert.equal("network", err2.kind)
    assert(client:request("test/echo"))
    assert.matches("timed out after 0.05 s", msg1)
    assert.matches("timed out after 0.05 s", err1.message) -- still its own words
    assert.equal(msg2, err2.message)
    assert.is_nil(msg2:find("timed out", 1, true))
  end)
end)

describe("the catalogue", function()
  local lookup
  before_each(function() lookup = catalogue.lookup end)
  after_each(function() catalogue.lookup = lookup end)

  it("is not asked by a call that succeeds, only by one that fails", function()
    local client = new_client{ host = srv.url, token = false }
    local asked = {}
    catalogue.lookup = function(endpoint, ...)
      asked[#asked + 1] = endpoint
      return lookup(endpoint, ...)
    end
    assert(client:request("test/echo"))
    assert(client:request("test/echo", { a = 1 }))
    assert.same({}, asked)
    assert.is_nil(client:request("test/status", { status = 500 }, { retries = 0 }))
    assert.same({ "test/status" }, asked)
  end)

  it("still says which failures may be retried, and gives pacing its limit", function()
    local client = new_client{ host = srv.url, token = false }
    client:use_catalogue{ endpoints = { ["test/flaky"] = { write = false }, ["test/flaky-write"] = { write = true } } }
    local k = "speed-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9))
    -- A read is retried after its 502 (the catalogue says it reads); a write is not.
    assert(client:request("test/flaky", { key = k .. "r", fail = 1 }, { retries = 1 }))
    local res, _, err = client:request("test/flaky-write", { key = k .. "w", fail = 1 }, { retries = 1 })
    assert.is_nil(res)
    assert.equal(502, err.status)
    local asked = 0
    catalogue.lookup = function(...)
      asked = asked + 1
      return lookup(...)
    end
    assert(client:request("test/echo", nil, { ratelimit = "pace" }))
    assert.equal(1, asked) -- pacing needs the entry before the call
  end)
end)
