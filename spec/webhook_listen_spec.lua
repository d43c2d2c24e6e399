-- misskey.webhook.listen over real sockets on 127.0.0.1. Deliveries are made by
-- this process itself, with the C core's HTTP client, while the listener runs in
-- the same scheduler; misbehaving peers are spec/support/webhook_peer.py, which
-- reports back as a delivery to a second ("control") listener, so nothing here
-- blocks on it. Every wait is bounded; specs assert on what was answered and
-- counted, never on wall-clock time.
local json = require "misskey.json"
local loop = require "misskey.loop"
local misskey = require "misskey"
local webhook = require "misskey.webhook"
local leak = require "support.leak"
local server = require "support.server"
local now = require("misskey.core").now

local SECRET = "listen-secret-4fJ2kQ"
local CONTROL = "control-secret-9Xw1"
local PYTHON = "env -u LD_PRELOAD /usr/bin/python3"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/"

local opened -- listeners to close when a run ends, whatever happened

local function open(opts)
  local l = assert(webhook.listen(opts))
  opened[#opened + 1] = l
  return l
end

-- Runs fn as a task under misskey.run; closes every listener it opened, then
-- re-raises fn's error (a failed assert) outside the scheduler.
local function run(fn)
  opened = {}
  local results
  misskey.run(function()
    results = { misskey.spawn(fn):join() }
    for _, l in ipairs(opened) do l:close() end
  end)
  local err = results[3]
  if results[1] == nil and err and err.kind == "task" then error(err.error or results[2], 0) end
end

local delivery = require("support.webhook_delivery").body
local HEADERS = require("support.webhook_delivery").headers(SECRET)

local function post(url, body, headers, method)
  -- made here, not when the file loads: busted loads every spec file before running any,
  -- and an engine made then would be garbage (and close its fds) during other files' specs
  local res, msg = require("misskey.transport.curl").new().request{ method = method or "POST", url = url,
    headers = headers or HEADERS, body = body, timeout = 10 }
  assert(res, msg)
  return res
end

-- The control listener and the peer script.
local reports

local function control()
  reports = {}
  return open{ secret = CONTROL, on = { peer = function(body)
    reports[body.phase] = body
    loop.signal(reports)
  end } }
end

local function wait_report(phase, limit)
  local stop = now() + (limit or 15)
  while not reports[phase] do
    local left = stop - now()
    if left <= 0 then error("no '" .. phase .. "' report from webhook_peer.py", 2) end
    loop.wait_event(reports, left)
  end
  return reports[phase]
end

local function peer(ctl, ...)
  local args = {}
  for i, a in ipairs{ ... } do args[i] = server.shell_quote(tostring(a)) end
  return assert(io.popen(("exec %s %s %d %s %s"):format(PYTHON, server.shell_quote(here .. "support/webhook_peer.py"),
    ctl.port, CONTROL, table.concat(args, " ")), "r"))
end

describe("webhook.listen", function()
  local old_handler, reported

  before_each(function()
    reported = {}
    old_handler = misskey.on_error(function(err) reported[#reported + 1] = err end)
  end)
  after_each(function() misskey.on_error(old_handler) end)

  it("answers every bad input with its status, and nothing reaches a handler", function()
    local calls = {}
    local function record(...) calls[#calls + 1] = { ... } end
    run(function()
      local l = open{ secret = SECRET, path = "/hook", on = { mention = record, ["*"] = record } }
      assert.matches("^http://127%.0%.0%.1:%d+/hook$", l.url)
      local function with(h)
        local t = {}
        for k, v in pairs(HEADERS) do t[k] = v end
        for k, v in pairs(h) do t[k] = v ~= false and v or nil end
        return t
      end
      local big = delivery{ body = { note = { id = "n", text = ("x"):rep(1024 * 1024) } } }
      local cases = {
        { "no secret", 401, delivery(), with{ ["X-Misskey-Hook-Secret"] = false } },
        { "wrong secret", 401, delivery(), with{ ["X-Misskey-Hook-Secret"] = "guess" } },
        { "two secrets", 401, delivery(), with{ ["x-misskey-hook-secret"] = "guess" } },
        { "not JSON", 400, "not json {" },
        { "a JSON array", 400, "[1,2]" },
        { "a type that is not a string", 400, delivery{ type = 5 } },
        { "no eventId", 400, delivery{ eventId = misskey.null } },
        { "not application/json", 415, delivery(), with{ ["Content-Type"] = "text/plain" } },
        { "oversized", 413, big },
        { "a GET", 405, nil, nil, "GET" },
        { "another path", 404, delivery(), nil, nil, "/other" },
      }
      for _, case in ipairs(cases) do
        local url = l.url:gsub("/hook$", case[6] or "/hook")
        local res = post(url, case[3], case[4], case[5])
        assert.equal(case[2], res.status, case[1])
        assert.equal("close", res.headers.connection)
        leak.assert_none(SECRET, res.body, res.headers)
      end
      -- a replayed event id: answered 204, handled once
      assert.equal(204, post(l.url, delivery{ eventId = "once" }).status)
      assert.equal(204, post(l.url, delivery{ eventId = "once" }).status)
      misskey.sleep(0) -- one round: the handlers started by the answers run
      local s = l:stats()
      assert.equal(1, s.handled)
      assert.equal(1, s.replayed)
      assert.equal(#cases, s.refused)
      assert.equal(#cases + 2, s.accepted)
      -- every connection is closed once its client is done with it (a bounded wait)
      for _ = 1, 200 do
        if l:stats().connections == 0 then break end
        misskey.sleep(0.01)
      end
      assert.equal(0, l:stats().connections)
    end)
    assert.equal(2, #calls)
    assert.same({ "note1" }, { calls[1][1].id })
    assert.equal("mention", calls[2][1])
    assert.same({}, reported)
  end)

  it("answers malformed HTTP, and reads no body before the secret is checked", function()
    local handled = 0
    run(function()
      local ctl = control()
      local l = open{ secret = SECRET, on = { ["*"] = function() handled = handled + 1 end } }
      local head = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      local good = delivery{ eventId = "expect" }
      local many = {}
      for i = 1, 150 do many[i] = "X-H" .. i .. ": v\r\n" end
      local requests = {
        "GARBAGE\r\n\r\n",
        "POST / HTTP/2.0\r\n\r\n",
        "POST /\r\n\r\n",
        head .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        head .. table.concat(many) .. "\r\n",
        head .. "X-Big: " .. ("b"):rep(20000) .. "\r\n\r\n",
        head .. "Bad Header: x\r\n\r\n",
        head .. "X-Nul: a\0b\r\n\r\n",
        head .. " folded\r\n\r\n",
        head .. "Content-Length: abc\r\n\r\n",
        head .. "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
        head .. "Content-Length: 99999999999999999999999\r\n\r\n",
        head .. "Expect: something\r\n\r\n",
        -- the wrong secret with a large body announced (and never sent): answered at once
        head .. "X-Misskey-Hook-Secret: nope\r\nContent-Length: 500000\r\n\r\n",
        -- the right secret, "Expect: 100-continue": the body is asked for, then sent
        { head .. "X-Misskey-Hook-Secret: " .. SECRET .. "\r\nExpect: 100-continue\r\nContent-Length: "
          .. #good .. "\r\n\r\n", good },
      }
      local p = peer(ctl, "raw", l.port, json.encode(requests))
      local answers = wait_report("raw").answers
      p:close()
      assert.same({
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 505 HTTP Version Not Supported",
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 411 Length Required",
        "HTTP/1.1 431 Request Header Fields Too Large",
        "HTTP/1.1 431 Request Header Fields Too Large",
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 413 Content Too Large",
        "HTTP/1.1 417 Expectation Failed",
        "HTTP/1.1 401 Unauthorized",
        "HTTP/1.1 100 Continue|HTTP/1.1 204 No Content",
      }, answers)
      misskey.sleep(0)
      assert.equal(1, l:stats().handled)
    end)
    assert.equal(1, handled)
  end)

  it("lets no idle or slow connection hold a real delivery back, at the cap or below it", function()
    for _, cap in ipairs{ 4, 64 } do
      local handled = 0
      run(function()
        local ctl = control()
        -- a long timeout: only the cap (dropping the oldest) or concurrency can let the delivery in
        local l = open{ secret = SECRET, timeout = 60, max_connections = cap,
          on = { mention = function() handled = handled + 1 end } }
        local p = peer(ctl, "hold", l.port, 10) -- 10 idle connections and a slowloris
        wait_report("ready")
        local res = post(l.url, delivery())
        assert.equal(204, res.status)
        misskey.sleep(0)
        local s = l:stats()
        assert.equal(1, s.handled)
        assert.equal(0, s.timed_out)
        if cap == 4 then
          assert.equal(12 - 4, s.dropped) -- 11 held + the delivery, 4 at a time
        else
          assert.equal(0, s.dropped)
          assert.is_true(s.connections >= 11) -- all still held: the delivery went past them
        end
        l:close()
        local results = wait_report("closed").results
        p:close()
        for i, r in ipairs(results) do assert.is_true(r == "reset" or r:sub(1, 4) == "eof:", i .. ": " .. r) end
      end)
      assert.equal(1, handled)
    end
  end)

  it("ends idle and slow connections at their deadline with a 408", function()
    run(function()
      local ctl = control()
      local l = open{ secret = SECRET, timeout = 0.5 }
      local p = peer(ctl, "hold", l.port, 3)
      wait_report("ready")
      local results = wait_report("closed").results
      p:close()
      assert.equal(4, #results)
      for i = 1, 3 do assert.equal("eof:HTTP/1.1 408 Request Timeout", results[i]) end
      -- the slowloris is still sending when it is closed: the kernel may reset it
      assert.is_true(results[4] == "reset" or results[4] == "eof:HTTP/1.1 408 Request Timeout", results[4])
      local s = l:stats()
      assert.equal(4, s.timed_out)
      assert.equal(0, s.connections)
    end)
  end)

  it("runs beside a stream and API calls in the same scheduler", function()
    local srv = server.start()
    local got = {}
    local ok, err = pcall(run, function()
      local client = misskey.new{ host = srv.url, token = "tok" }
      local l = open{ secret = SECRET, on = { mention = function(note) got.webhook = note.id end } }
      local s = client:stream()
      local tl = s:channel("homeTimeline")
      local tasks = {}
      tl:on("note", function(note)
        got.stream = note.text
        s:close()
      end)
      local function start(fn) tasks[#tasks + 1] = misskey.spawn(fn) end
      tl:on("connected", function()
        start(function() assert(client:request("test/stream/post", { text = "from the stream" })) end)
        start(function() got.status = post(l.url, delivery{ eventId = "beside" }).status end)
        start(function() got.i = assert(client:request("i")).id end)
      end)
      local guard = misskey.spawn(function()
        misskey.sleep(20)
        s:close()
      end)
      s:run()
      guard:cancel()
      for _, t in ipairs(tasks) do t:join() end -- the three ran concurrently; each is bounded by its timeout
      misskey.sleep(0) -- the webhook handler, started by the answer
    end)
    srv:stop()
    assert(ok, err)
    assert.equal("from the stream", got.stream)
    assert.equal(204, got.status)
    assert.equal("note1", got.webhook)
    assert.is_string(got.i)
  end)

  it("reports a handler's error to misskey.on_error, answers 204 and goes on", function()
    local calls = 0
    run(function()
      local l = open{ secret = SECRET, on = { mention = function(note)
        calls = calls + 1
        if note.text == "boom" then error("handler exploded") end
      end } }
      assert.equal(204, post(l.url, delivery{ eventId = "a", body = { note = { id = "n1", text = "boom" } } }).status)
      assert.equal(204, post(l.url, delivery{ eventId = "b" }).status)
      misskey.sleep(0)
    end)
    assert.equal(2, calls)
    assert.equal(1, #reported)
    assert.matches("handler exploded", reported[1].message)
  end)

  it("run() returns once a handler closes it; the port is then free", function()
    local l
    l = assert(webhook.listen{ secret = SECRET, on = { mention = function() l:close() end } })
    local port = l.port
    misskey.spawn(function() post(l.url, delivery{ eventId = "stop" }) end)
    assert.is_true(l:run())
    assert.is_false(l:close())
    local again = assert(webhook.listen{ secret = SECRET, port = port })
    assert.equal(port, again.port)
    again:close()
    misskey.run(function() end) -- nothing left behind
    assert.equal(0, loop.alive())
  end)

  it("binds loopback only unless allow_remote, and refuses bad options", function()
    local function msg(opts)
      local ok, err = pcall(function() webhook.listen(opts) end)
      assert.is_false(ok)
      return err
    end
    assert.matches("bad option 'host' to 'listen' %(0%.0%.0%.0 is not a loopback address: deliveries carry the "
      .. "webhook's secret in clear", msg{ secret = SECRET, host = "0.0.0.0" })
    assert.matches("not a loopback address", msg{ secret = SECRET, host = "192.0.2.1" })
    assert.matches("not a loopback address", msg{ secret = SECRET, host = "::" })
    assert.matches("bad option 'host' to 'listen' %(a numeric IP address", msg{ secret = SECRET, host = "example.com" })
    assert.matches("webhook_listen_spec.lua", msg{ secret = SECRET, host = "0.0.0.0" }) -- blamed on the caller
    assert.matches("bad option 'port' to 'listen'", msg{ secret = SECRET, port = 70000 })
    assert.matches("bad option 'timeout' to 'listen'", msg{ secret = SECRET, timeout = 0 })
    assert.matches("bad option 'max_connections' to 'listen'", msg{ secret = SECRET, max_connections = 0 })
    assert.matches("bad option 'max_head' to 'listen'", msg{ secret = SECRET, max_head = 10 })
    assert.matches("bad option 'path' to 'listen'", msg{ secret = SECRET, path = "hook" })
    assert.matches("bad option 'allow_remote' to 'listen'", msg{ secret = SECRET, allow_remote = "yes" })
    assert.matches("bad option 'secret' to 'listen'", msg{})
    assert.matches("bad option 'max_size' to 'listen'", msg{ secret = SECRET, max_size = 2 ^ 40 })
    -- allowed: it gets as far as bind (TEST-NET-1 is no address of this machine)
    local l, m, err = webhook.listen{ secret = SECRET, host = "192.0.2.1", allow_remote = true }
    assert.is_nil(l)
    assert.equal("network", err.kind)
    assert.matches("^webhook listener: cannot listen on 192%.0%.2%.1:0", m)
    -- a port in use is an operational failure, not a raise
    local first = assert(webhook.listen{ secret = SECRET, host = "localhost" })
    assert.equal("127.0.0.1", first.host)
    local second, m2, err2 = webhook.listen{ secret = SECRET, port = first.port }
    assert.is_nil(second)
    assert.equal("network", err2.kind)
    assert.matches("Address already in use", m2)
    leak.assert_none(SECRET, second, m2, err2)
    first:close()
    misskey.run(function() end)
  end)
end)

describe("examples/webhook_pong.lua", function()
  it("--once replies pong to a mention it delivers to its own listener, in the fake", function()
    local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
    local p = assert(io.popen(("env -u MISSKEY_HOST -u MISSKEY_TOKEN -u LD_PRELOAD timeout 30 %s -e "
      .. "'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path; "
      .. "package.cpath=\"./build/%s/?.so;\"..package.cpath' examples/webhook_pong.lua --once 2>&1; echo \"exit=$?\"")
      :format(interpreter, version)))
    local out = p:read("*a")
    p:close()
    assert.matches("exit=0%s*$", out)
    assert.matches("listening on http://127%.0%.0%.1:%d+/hook", out)
    assert.matches("delivered: HTTP 204", out)
    assert.matches("replied to @alice: @alice pong", out)
    assert.matches("in the fake: @alice pong %(reply to ", out)
  end)
end)
