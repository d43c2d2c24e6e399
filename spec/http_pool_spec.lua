-- Pooled easy handles (src/engine.c, src/http.c): a plain POST on a handle that served the
-- very same kind of request keeps its curl options instead of curl_easy_reset + every setopt.
-- Whatever kind of request a handle served before, the next one sends exactly what it asks
-- for: nothing of an earlier request's method, body, headers, parts or user agent carries over.
local core = require "misskey.core"
local json = require "misskey.json"
local server = require "support.server"

local srv, e

setup(function()
  srv = server.start()
  e = core.engine() -- one engine: sequential requests take turns with the same pooled handle
end)
teardown(function()
  e:close()
  srv:stop()
end)

-- One request on the shared engine; the echo route's view of it (or the failure).
local function send(opts)
  opts.url = opts.url or (srv.url .. "/api/test/echo")
  local t = e:request(opts)
  for _ = 1, 500 do
    if t:done() then break end
    e:step(0.1)
  end
  assert.is_true(t:done(), "no reply")
  local status, _, body = t:result()
  if not status then return nil, _ end
  if opts.method == "HEAD" then return { method = "HEAD", status = status } end
  return assert(json.decode(body))
end

local function post(body, extra)
  local opts = { method = "POST", body = body, user_agent = "agent-1",
    headers = { ["Content-Type"] = "application/json" } }
  for k, v in pairs(extra or {}) do opts[k] = v end
  if opts.user_agent == false then opts.user_agent = nil end -- none at all
  return send(opts)
end

local function is_plain_post(r, body, ua)
  assert.equal("POST", r.method)
  assert.equal(body, r.body)
  assert.equal(ua, r.headers["user-agent"])
  assert.equal("application/json", r.headers["content-type"])
end

describe("pooled easy handles", function()
  it("a POST like the last keeps the handle's options, and its own URL, body and headers", function()
    is_plain_post(post('{"n":1}', { headers = { ["Content-Type"] = "application/json", ["X-One"] = "1" } }),
      '{"n":1}', "agent-1")
    local r = post('{"n":2}', { headers = { ["Content-Type"] = "application/json", ["X-Two"] = "2" },
      url = srv.url .. "/echo/second" })
    is_plain_post(r, '{"n":2}', "agent-1")
    assert.equal("/echo/second", r.path)
    assert.equal("2", r.headers["x-two"])
    assert.is_nil(r.headers["x-one"])
  end)

  it("another user agent, or none, is set up anew", function()
    is_plain_post(post("a"), "a", "agent-1")
    is_plain_post(post("b", { user_agent = "agent-2" }), "b", "agent-2")
    local r = post("c", { user_agent = false })
    assert.equal("POST", r.method)
    assert.is_nil(r.headers["user-agent"])
    is_plain_post(post("d"), "d", "agent-1")
  end)

  it("nothing of a HEAD, GET, PUT, upload or progress request carries over to a POST", function()
    local others = {
      { method = "HEAD" },
      { method = "GET", headers = { ["X-Get"] = "1" } },
      { method = "PUT", body = "put body" },
      { method = "POST", parts = { { name = "file", data = "bytes", filename = "f.txt" } } },
      { method = "POST", body = "with progress", progress = true },
      { method = "DELETE" },
    }
    for i, other in ipairs(others) do
      is_plain_post(post("before " .. i), "before " .. i, "agent-1")
      local r = assert(send(other))
      assert.equal(other.method, r.method)
      r = post("after " .. i)
      is_plain_post(r, "after " .. i, "agent-1")
      assert.is_nil(r.headers["x-get"])
      assert.is_true(r.length == #("after " .. i))
    end
  end)

  it("a request that failed leaves a handle that the next POST sets up anew", function()
    is_plain_post(post("x"), "x", "agent-1")
    local r, msg = post("too big a reply for 10 bytes", { max_size = 10 })
    assert.is_nil(r)
    assert.matches("larger than the 10 byte limit", msg)
    is_plain_post(post("y"), "y", "agent-1")
  end)
end)
