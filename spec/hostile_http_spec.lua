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
-- (default ROUNDS) without ever calling collectgarbage; resident memory may end at most
-- `limit` MiB (default 16) above where it was after the warm-up. Returns the growth in MiB.
local function bounded(fn, rounds, limit)
  limit = limit or 16
  fn(0)
  local start = rss_mib()
  local peak = start
  for i = 1, rounds or ROUNDS do
    fn(i)
    peak = math.max(peak, rss_mib())
  end
  local grew = rss_mib() - start
  if not UNDER_TOOL then
    assert.truthy(grew <= limit, ("resident memory grew by %.1f MiB (peak +%.1f MiB) over %d rounds"):format(
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

  -- Four transfers in flight may each hold up to max_size before they fail, and glibc may keep
  -- that peak (its mmap threshold rises after large frees): 4 x 8 MiB on top of the usual 16 is
  -- what "flat" means here. Holding every bomb until its __gc would be 40 x 8 MiB.
  it("a batch of 40 gzip bombs keeps resident memory flat", function()
    local concurrency = 4
    local c = new{ max_size = MAX }
    local calls = {}
    for i = 1, ROUNDS do calls[i] = { "test/bomb", { mib = 1024 } } end
    bounded(function(i)
      local these = i == 0 and { calls[1] } or calls -- a warm-up of one, then one batch of 40
      local results, errs = c:batch(these, { concurrency = concurrency })
      for k = 1, #these do
        assert.is_nil(results[k])
        assert.equal("too_large", errs[k].reason)
      end
    end, 1, 16 + concurrency * MAX / 1048576)
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

-- Drives `e` until every transfer in `ts` is done (bounded); returns the seconds it took.
local function finish(e, ts, limit)
  local t0 = core.now()
  local deadline = t0 + (limit or 20)
  for _, t in ipairs(ts) do
    while not t:done() do
      assert(core.now() < deadline, "transfers did not finish in time")
      e:step(0.5)
    end
  end
  return core.now() - t0
end

describe("the low-speed abort", function()
  it("fires about a second after a stall, not when libcurl's 5-second average notices", function()
    -- Headers and a byte, then 30 s of silence. libcurl's own check averaged the speed over the
    -- last 5 s, so the burst kept it "fast" and the abort came 6 s late (after ~6 s here).
    local c = new{ low_speed = { bytes = 1, seconds = 1 } }
    local t0 = core.now()
    local res, msg, err = c:request("test/dribble", { bytes = 2, interval = 30 })
    local took = core.now() - t0
    assert.is_nil(res)
    assert.equal("timeout", err.kind, msg)
    assert.equal(28, err.curl_code)
    assert.equal("test/dribble: Operation too slow. Less than 1 bytes/sec transferred the last 1 seconds "
      .. "(curl error 28)", msg)
    assert.truthy(took >= 1, ("aborted after %.2f s, before its setting"):format(took))
    assert.truthy(took < 4.5, ("aborted after %.2f s"):format(took))
  end)

  it("leaves a transfer alone while its bytes keep up", function()
    local c = new{ low_speed = { bytes = 1, seconds = 1 } }
    local body = assert(c:http{ method = "POST", path = "/api/test/dribble", body = '{"bytes":12,"interval":0.2}' })
    assert.equal(("."):rep(12), body.body)
  end)

  it("does not count the wait of a transfer queued for a connection (engine:limit)", function()
    local e = core.engine()
    e:limit(1, 1)
    local function dribble()
      return e:request{ url = srv.url .. "/api/test/dribble", body = '{"bytes":8,"interval":0.25}',
                        low_speed_time = 1, low_speed_limit = 1 }
    end
    local first, second = dribble(), dribble() -- the second waits ~2 s for the first's connection
    finish(e, { first, second })
    assert.equal(200, (first:result(true, true)), select(2, first:result()))
    assert.equal(200, (second:result(true, true)), select(2, second:result()))
    e:close()
  end)
end)

describe("numbers from Lua in the C layer", function()
  -- Out-of-range float-to-integer casts are undefined behaviour (`make asan` runs UBSan's
  -- float-cast-overflow check); they are clamped, and each huge value means "as much as
  -- can be".
  it("a huge low_speed_limit makes every transfer too slow", function()
    local e = core.engine()
    local t = e:request{ url = srv.url .. "/api/test/slow", body = '{"delay":3}',
                         low_speed_time = 1, low_speed_limit = 1e300 }
    finish(e, { t })
    local ok, msg, reason = t:result()
    assert.is_nil(ok)
    assert.equal("timeout", reason)
    assert.matches("too slow", msg)
    e:close()
  end)

  it("huge timeouts, connect timeouts and size caps are as good as none", function()
    local e = core.engine()
    local ts = {}
    for i, v in ipairs{ 1e300, math.huge, 2 ^ 63, 2 ^ 64 } do
      ts[i] = e:request{ url = srv.url .. "/api/test/echo", body = "{}", timeout = v, connect_timeout = v,
                         max_size = v, low_speed_time = v }
    end
    finish(e, ts)
    for _, t in ipairs(ts) do assert.equal(200, (t:result())) end
    e:close()
  end)
end)

describe("option checks (numbers that would overflow in C)", function()
  it("client options: timeouts, max_size, low_speed and max_connections have upper bounds", function()
    for _, v in ipairs{ math.huge, 1e300, 1e6 + 1 } do
      assert.has_error(function() new{ timeout = v } end,
        ("bad option 'timeout' (a number of seconds > 0 and <= 1000000 expected, got %s)"):format(tostring(v)))
      assert.has_error(function() new{ connect_timeout = v } end,
        ("bad option 'connect_timeout' (a number of seconds > 0 and <= 1000000 expected, got %s)"):format(
          tostring(v)))
      assert.has_error(function() new{ low_speed = { bytes = 1, seconds = v } } end,
        ("bad option 'low_speed.seconds' (an integer from 1 to 1000000 expected, got %s)"):format(tostring(v)))
    end
    for _, v in ipairs{ math.huge, 1e300, 2 ^ 53 + 2, 1.5, 0 } do
      assert.has_error(function() new{ max_size = v } end,
        ("bad option 'max_size' (an integer from 1 to 2^53 expected, got %s)"):format(tostring(v)))
      assert.has_error(function() new{ low_speed = { bytes = v, seconds = 1 } } end,
        ("bad option 'low_speed.bytes' (an integer from 1 to 2^53 expected, got %s)"):format(tostring(v)))
    end
    assert.has_error(function() new{ max_connections = 1e300 } end,
      "bad option 'max_connections' (an integer from 1 to 65536 expected, got 1e+300)")
    -- The bounds themselves are fine.
    new{ timeout = 1e6, connect_timeout = 0.001, max_size = 2 ^ 53, low_speed = { bytes = 2 ^ 53, seconds = 1e6 } }
  end)

  it("per-call timeouts and client:http's max_size too", function()
    local c = new()
    assert.has_error(function() c:request("meta", nil, { timeout = math.huge }) end,
      "bad argument #3 to 'request' (option 'timeout': a number of seconds > 0 and <= 1000000 expected, got "
      .. tostring(math.huge) .. ")")
    assert.has_error(function() c:upload({ data = "x" }, nil, { timeout = 1e300 }) end,
      "bad argument #3 to 'upload' (option 'timeout': a number of seconds > 0 and <= 1000000 expected, got 1e+300)")
    assert.has_error(function() c:http{ path = "/", timeout = 1e300 } end,
      "bad argument #1 to 'http' (timeout: a number of seconds > 0 and <= 1000000 expected, got 1e+300)")
    assert.has_error(function() c:http{ path = "/", max_size = math.huge } end,
      "bad argument #1 to 'http' (max_size: an integer from 1 to 2^53 expected, got " .. tostring(math.huge) .. ")")
  end)
end)

describe("user_agent", function()
  it("with a line break or NUL raises naming the option; nothing is sent", function()
    for _, ua in ipairs{ "ua\r\nX-Injected: 1", "ua\nX-Injected: 1", "ua\rX", "ua\0X" } do
      assert.has_error(function() new{ user_agent = ua } end,
        "bad option 'user_agent' (must not contain CR, LF or NUL)")
    end
  end)

  it("is refused by the C layer too", function()
    local e = core.engine()
    for _, ua in ipairs{ "ua\r\nX-Injected: 1", "ua\nX", "ua\0X" } do
      assert.has_error(function() e:request{ url = srv.url .. "/api/test/echo", user_agent = ua } end)
    end
    assert.has_error(function() e:request{ url = srv.url .. "/api/test/echo", user_agent = "ua\r\nX-Injected: 1" } end,
      "request option 'user_agent' must not contain a line break")
    assert.has_error(function() e:request{ url = srv.url .. "/api/test/echo", user_agent = "ua\0X" } end,
      "request option 'user_agent' must not contain a NUL byte")
    assert.has_error(function() e:request{ url = srv.url .. "/api/test/echo\0.evil" } end,
      "request option 'url' must not contain a NUL byte")
    assert.has_error(function() e:request{ url = srv.url .. "/api/test/echo", method = "GET / HTTP/1.1\r\nX: 1" } end,
      "request option 'method' must be an HTTP token")
    assert.equal(0, e:pending())
    e:close()
  end)

  it("an ordinary one arrives as given", function()
    local echo = assert(new{ user_agent = "my-bot/1.0 (+https://example.com/bot)" }:request("test/echo"))
    assert.equal("my-bot/1.0 (+https://example.com/bot)", echo.headers["user-agent"])
    assert.is_nil(echo.headers["x-injected"])
  end)
end)

describe("multipart names and file names", function()
  local client

  setup(function() client = new{ token = "tok" } end)

  it("quotes and backslashes arrive exactly (escaped on the wire, not cut or %-encoded)", function()
    for _, name in ipairs{ [[a.png\]], [[we\ird"na\me.png]], 'q"uote.txt', [[x\\]] } do
      local file = assert(client:upload({ data = "x", filename = name }, { ['fi"e\\ld'] = "v" }))
      assert.equal(name, file.test.filename)
      assert.equal("v", file.test.fields['fi"e\\ld'])
    end
  end)

  it("a NUL, CR or LF in a file name, a type or a field name raises naming it", function()
    local function fails(file, fields, message)
      assert.has_error(function() client:upload(file, fields) end, message)
    end
    fails({ data = "x", filename = "a.png\0.exe" }, nil,
      "bad argument #1 to 'upload' (field 'filename' must not contain CR, LF or NUL)")
    fails({ data = "x", filename = "a\r\nContent-Type: text/html" }, nil,
      "bad argument #1 to 'upload' (field 'filename' must not contain CR, LF or NUL)")
    fails({ data = "x", type = "text/plain\r\nX: 1" }, nil,
      "bad argument #1 to 'upload' (field 'type' must not contain CR, LF or NUL)")
    fails({ data = "x" }, { ["na\0me"] = "v" },
      [[bad argument #2 to 'upload' (field name "na\0me" must not contain CR, LF or NUL)]])
    fails(dir .. "/a.png\0.exe", nil, "bad argument #1 to 'upload' (file path contains a NUL byte)")
    fails({ path = dir .. "/a.png\0.exe", filename = "a.png" }, nil,
      "bad argument #1 to 'upload' (file path contains a NUL byte)")
    fails(dir .. "/line\nbreak.png", nil,
      "bad argument #1 to 'upload' (the file's name has a line break: give { path = ..., filename = ... })")
  end)

  it("a file whose name has a line break goes out under the filename given", function()
    local path = dir .. "/line\nbreak.txt"
    local f = assert(io.open(path, "wb"))
    f:write("content")
    f:close()
    local file = assert(client:upload({ path = path, filename = "plain.txt" }))
    assert.equal("plain.txt", file.test.filename)
    assert.equal(7, file.size)
  end)

  it("a NUL in a field value arrives whole (its length is used)", function()
    local file = assert(client:upload({ data = "x", filename = "x.txt" }, { comment = "a\0b" }))
    assert.equal("a\0b", file.test.fields.comment)
  end)

  it("the C layer refuses what it would cut or break", function()
    local e = core.engine()
    local url = srv.url .. "/api/drive/files/create"
    local function bad(part, message)
      assert.has_error(function() e:request{ url = url, parts = { part } } end, message)
    end
    bad({ name = "file", data = "x", filename = "a.png\0.exe" },
      "request parts[1].filename must not contain a line break or a NUL byte")
    bad({ name = "fi\0le", data = "x" }, "request parts[1].name must not contain a line break or a NUL byte")
    bad({ name = "file", data = "x", type = "a\0b" },
      "request parts[1].type must not contain a line break or a NUL byte")
    bad({ name = "file", path = dir .. "/x\0y" }, "request parts[1].path must not contain a NUL byte")
    bad({ name = "file", path = dir .. "/x\ny" },
      "request parts[1].path has a line break: give a filename to send instead")
    assert.equal(0, e:pending())
    e:close()
  end)
end)

describe("upload progress", function()
  it("is never called before the total is known, so (0, 0) never comes", function()
    -- A client of its own engine with one connection: the upload waits in libcurl's queue
    -- behind a slow request, and the progress ticks come while nothing is known yet.
    local e = core.engine()
    local c = new{ engine = e, max_connections = 1, token = "tok" }
    local slow = e:request{ url = srv.url .. "/api/test/slow", body = '{"delay":0.6}' }
    local calls = {}
    local file = assert(c:upload({ data = ("x"):rep(100000), filename = "x.bin" }, nil, {
      progress = function(sent, total) calls[#calls + 1] = { sent, total } end,
    }))
    assert.is_true(slow:done())
    assert.equal(100000, file.size)
    assert.truthy(#calls >= 1, "progress never called")
    for _, call in ipairs(calls) do
      assert.truthy(call[2] > 100000, ("progress(%d, %d)"):format(call[1], call[2]))
    end
    assert.equal(calls[#calls][2], calls[#calls][1])
    e:close()
  end)

  it("a progress function that raises cancels the upload: the error comes out of upload", function()
    local e = core.engine()
    local c = new{ engine = e, max_connections = 1, token = "tok" }
    local slow = e:request{ url = srv.url .. "/api/test/slow", body = '{"delay":0.3}' }
    local ok, err = pcall(c.upload, c, { data = ("x"):rep(100000), filename = "x.bin" }, nil, {
      progress = function() error("stop here", 0) end,
    })
    assert.is_false(ok)
    assert.equal("stop here", err)
    assert.is_true(slow:done())
    assert.equal(0, e:pending()) -- the upload's transfer is gone, not left running
    e:close()
  end)
end)

describe("randomness", function()
  -- A shim (spec/support/failrandom.c) preloaded into a child interpreter makes getrandom fail,
  -- and /dev/urandom with it (libuuid's fallback before its weak one).
  local LUA = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  local shim
  local CHILD = [[
    local core = require "misskey.core"
    local ok, r = pcall(core.random, 16)
    io.write("random ", tostring(ok), " ", ok and #r or r, "\n")
    ok, r = pcall(core.uuid)
    io.write("uuid ", tostring(ok), " ", r, "\n")
  ]]

  setup(function()
    shim = dir .. "/failrandom.so"
    local ok = os.execute("env -u LD_PRELOAD cc -shared -fPIC -o " .. server.shell_quote(shim)
      .. " spec/support/failrandom.c -ldl")
    assert(ok == true or ok == 0, "could not build spec/support/failrandom.c")
  end)

  -- Runs CHILD with getrandom failing as `how` (nil: working), bounded by `timeout 20`.
  local function child(how)
    -- Under make asan the sanitizer runtime must stay first; valgrind's preloads must go.
    local with = preload:find("asan", 1, true) and (preload .. " " .. shim) or shim
    local prelude = ("package.path = %q; package.cpath = %q\n"):format(package.path, package.cpath)
    local h = assert(io.popen("env " .. (how and "FAILRANDOM=" .. how or "-u FAILRANDOM")
      .. " LD_PRELOAD=" .. server.shell_quote(with) .. " timeout 20 " .. LUA .. " -e "
      .. server.shell_quote(prelude .. CHILD) .. " 2>/dev/null; echo \"exit $?\"", "r"))
    local out = h:read("*a")
    h:close()
    return out
  end

  it("works through the shim when getrandom works", function()
    local out = child(nil)
    assert.matches("random true 16\n", out, 1, true)
    assert.matches("uuid true %x+%-%x+%-4%x+%-[89ab]%x+%-%x+\n", out)
    assert.matches("exit 0", out, 1, true)
  end)

  it("a failing kernel source is an error: no weaker UUID", function()
    local out = child("ENOSYS")
    assert.matches("random false getrandom: Function not implemented\n", out, 1, true)
    assert.matches("uuid false uuid: the kernel's random source failed (getrandom: Function not implemented); "
      .. "refusing a weaker one\n", out, 1, true)
    assert.matches("exit 0", out, 1, true)
  end)

  it("endless EINTR gives up after a bounded number of tries instead of spinning", function()
    local out = child("EINTR")
    assert.matches("random false getrandom: Interrupted system call\n", out, 1, true)
    assert.matches("uuid false uuid: the kernel's random source failed", out, 1, true)
    assert.matches("exit 0", out, 1, true) -- not 124: timeout did not have to stop it
  end)

  it("a WebSocket connect fails at once instead of spinning when the kernel's source fails", function()
    local WS_CHILD = [[
      local core = require "misskey.core"
      local ws, msg = core.engine():websocket{ url = "ws://127.0.0.1:9/streaming" }
      io.write("ws ", tostring(ws), " ", tostring(msg), "\n")
    ]]
    local saved = CHILD
    CHILD = WS_CHILD
    local out = child("EINTR")
    CHILD = saved
    assert.matches("ws nil websocket: the kernel's random source failed (Interrupted system call)\n", out, 1, true)
    assert.matches("exit 0", out, 1, true) -- not 124: the old loop retried getrandom forever
  end)

  it("core.random checks its count before converting it", function()
    for _, n in ipairs{ 1e300, math.huge, 0 / 0, 1.5, 0, 4097 } do
      assert.has_error(function() core.random(n) end,
        "bad argument #1 to 'random' (a byte count from 1 to 4096 expected)")
    end
  end)
end)
