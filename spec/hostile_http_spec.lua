-- Hostile HTTP peers over real 127.0.0.1 sockets (spec/support/server.py's test/bomb and
-- test/endless-*): the memory a transfer holds in C, the cap on response headers.
local core = require "misskey.core"
local new_client = require "support.client"
local server = require "support.server"

local srv, dir

local function new(opts)
  return new_client({ host = srv.url, token = false, retries = 0 }, opts)
end

-- Under `make asan` (ASan keeps freed memory in quarantine) and `make valgrind` the resident
-- size is the tool's: the loops still run there, for the tools, but fewer and unmeasured.
local preload = os.getenv("LD_PRELOAD") or ""
local UNDER_TOOL = preload:find("asan", 1, true) or preload:find("vgpreload", 1, true)
local ROUNDS = UNDER_TOOL and 4 or 40

local PAGE = (function()
  local h = assert(io.popen("getconf PAGESIZE", "r"))
  local n = tonumber(h:read("*l"))
  h:close()
  return n or 4096
end)()

-- Resident memory of this process in MiB (/proc/self/statm counts pages).
local function rss_mib()
  local f = assert(io.open("/proc/self/statm", "r"))
  local _, resident = f:read("*n", "*n")
  f:close()
  return resident * PAGE / 1048576
end

-- Runs fn(0) (a warm-up: connections, curl's own first allocations), then fn(1 .. rounds)
-- (default ROUNDS) without ever calling collectgarbage; resident memory may end at most 16 MiB
-- above where it was after the warm-up. Returns the growth in MiB.
local function bounded(fn, rounds)
  fn(0)
  local start = rss_mib()
  local peak = start
  for i = 1, rounds or ROUNDS do
    fn(i)
    peak = math.max(peak, rss_mib())
  end
  local grew = rss_mib() - start
  if not UNDER_TOOL then
    assert.truthy(grew <= 16, ("resident memory grew by %.1f MiB (peak +%.1f MiB) over %d rounds"):format(
      grew, peak - start, rounds or ROUNDS))
  end
  return grew
end

local MAX = 8 * 1024 * 1024 -- max_size in these specs: each bomb stops at 8 MiB

local function too_large(res, msg, err)
  assert.is_nil(res)
  assert.is_table(err, msg)
  assert.equal("http", err.kind, msg)
  assert.equal("too_large", err.reason, msg)
end

setup(function()
  srv = server.start()
  dir = server.temp_dir()
end)

teardown(function()
  srv:stop()
  server.remove_dir(dir)
end)

describe("memory held in C by replies", function()
  it("40 gzip bombs through client:request keep resident memory flat", function()
    local c = new{ max_size = MAX }
    bounded(function() too_large(c:request("test/bomb", { mib = 1024 })) end)
  end)

  it("40 gzip bombs through client:http keep resident memory flat", function()
    local c = new{ max_size = MAX }
    bounded(function()
      too_large(c:http{ method = "POST", path = "/api/test/bomb", body = '{"mib":1024}' })
    end)
  end)

  it("40 uploads answered with a gzip bomb keep resident memory flat", function()
    local c = new{ max_size = MAX, token = "tok" }
    bounded(function() too_large(c:upload({ data = "x", filename = "x.txt" }, { testBomb = true })) end)
  end)

  it("a batch of 40 gzip bombs keeps resident memory flat", function()
    local c = new{ max_size = MAX }
    local calls = {}
    for i = 1, ROUNDS do calls[i] = { "test/bomb", { mib = 1024 } } end
    bounded(function(i)
      local these = i == 0 and { calls[1] } or calls -- a warm-up of one, then one batch of 40
      local results, errs = c:batch(these, { concurrency = 4 })
      for k = 1, #these do
        assert.is_nil(results[k])
        assert.equal("too_large", errs[k].reason)
      end
    end, 1)
  end)

  it("40 error replies over max_size (HTTP 500 bombs) keep resident memory flat", function()
    local c = new{ max_size = MAX }
    bounded(function() too_large(c:request("test/bomb", { mib = 1024, status = 500 })) end)
  end)

  it("40 large replies decoded in place keep resident memory flat", function()
    local c = new()
    bounded(function()
      local value = assert(c:request("test/gzip", { size = 2 * 1024 * 1024 }))
      assert.equal(2 * 1024 * 1024, value.size)
    end)
  end)

  it("40 large replies never read (engine:request alone) keep resident memory flat", function()
    -- Nothing frees these but the collector: the engine tells it about the C memory they hold.
    local e = core.engine()
    bounded(function()
      local t = e:request{ url = srv.url .. "/api/test/gzip", body = '{"size":4194304}' }
      local deadline = os.time() + 20
      while not t:done() do
        assert(os.time() < deadline, "transfer did not finish")
        e:step(1)
      end
      assert.equal(200, (t:result(true, true)))
    end)
    e:close()
  end)

  it("a failed or cancelled transfer has freed its headers and body: reading them raises", function()
    local e = core.engine()
    local t = e:request{ url = srv.url .. "/api/test/bomb", body = '{"mib":64}', max_size = 1024 * 1024 }
    local deadline = os.time() + 20
    while not t:done() do
      assert(os.time() < deadline, "transfer did not finish")
      e:step(1)
    end
    local ok, msg, reason, _, status = t:result()
    assert.is_nil(ok)
    assert.equal("too_large", reason, msg)
    assert.equal(200, status) -- what arrived is still reported
    assert.has_error(function() t:headers() end, "transfer has no headers: it failed")
    assert.has_error(function() t:body() end, "transfer has no body: it failed")
    local running = e:request{ url = srv.url .. "/api/test/slow", body = '{"delay":5}' }
    e:step(0.05)
    running:cancel()
    assert.has_error(function() running:headers() end, "transfer has no headers: it was cancelled")
    e:close()
  end)
end)

describe("response headers", function()
  it("endless header lines stop at the 64 KiB cap, as a too_large http error", function()
    local res, msg, err = new():request("test/endless-headers", { mib = 64 })
    too_large(res, msg, err)
    assert.equal("test/endless-headers: response headers larger than the 65536 byte limit", msg)
    assert.equal(200, err.status)
  end)

  it("endless trailers (which curl does not cap) stop at the same cap", function()
    local res, msg, err = new():request("test/endless-trailers", { mib = 64 })
    too_large(res, msg, err)
    assert.matches("response headers larger than the 65536 byte limit", msg)
  end)

  it("endless interim (100 Continue) responses are cut off too", function()
    local res, msg, err = new():request("test/endless-continue", { mib = 64 })
    assert.is_nil(res)
    assert.is_table(err, msg)
    assert.matches("[Hh]eaders", msg)
  end)

  it("headers under the cap arrive whole, repeatable", function()
    local headers = {}
    for i = 1, 40 do headers["X-Big-" .. i] = ("v"):rep(1000) end
    local res = assert(new():http{ method = "POST", path = "/api/test/status",
      body = require("misskey.json").encode{ status = 200, body = "ok", headers = headers } })
    assert.equal(("v"):rep(1000), res.headers["x-big-40"])
  end)
end)
