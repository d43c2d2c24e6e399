-- The scheduler, batches and the engine's timers and foreign sockets. Concurrency
-- is proven by the test server's counters (requests held at once, arrival
-- order, disconnects), never by wall-clock timing.
local misskey = require "misskey"
local new_client = require "support.client"
local server = require "support.server"
local testpoll = require "testpoll"

local srv, client

local function stats() return assert(client:request("test/hold/stats")) end

-- Waits (bounded) until the server's hold counters satisfy `pred`.
local function until_stats(pred)
  for _ = 1, 200 do
    local s = stats()
    if pred(s) then return s end
    misskey.sleep(0.02)
  end
  error("server counters never reached the expected state")
end

setup(function()
  srv = server.start()
  client = new_client{ host = srv.url, token = "t" }
end)
teardown(function() srv:stop() end)
before_each(function() assert(client:request("test/hold/reset")) end)

describe("misskey.run and tasks", function()
  it("returns the main function's results", function()
    local a, b = misskey.run(function(x) return x + 1, "two" end, 1)
    assert.equal(2, a)
    assert.equal("two", b)
  end)

  it("runs requests of several tasks at once", function()
    local keys = {}
    misskey.run(function()
      local tasks = {}
      for i = 1, 5 do
        tasks[i] = misskey.spawn(function()
          return assert(client:request("test/hold", { key = i, delay = 0.4 })).key
        end)
      end
      for i = 1, 5 do keys[i] = tasks[i]:join() end
    end)
    assert.same({ 1, 2, 3, 4, 5 }, keys)
    assert.equal(5, stats().max_inflight)
  end)

  it("a task that raises leaves its siblings running; join returns nil, msg, err", function()
    -- The failing task ends before anyone joins it: the handler is told, and a later join still gets it.
    local handled
    local old = misskey.on_error(function(err) handled = err end)
    local sibling_result, joined
    misskey.run(function()
      local failing = misskey.spawn(function() error("kaput") end)
      local sibling = misskey.spawn(function()
        return assert(client:request("test/hold", { key = "s", delay = 0.1 })).key
      end)
      sibling_result = sibling:join()
      joined = { failing:join() }
    end)
    misskey.on_error(old)
    assert.equal("s", sibling_result)
    assert.is_nil(joined[1])
    assert.matches("kaput", joined[2])
    assert.equal("task", joined[3].kind)
    assert.matches("stack traceback", joined[3].traceback)
    -- It failed while nobody waited on it, so the handler saw it as well.
    assert.equal(joined[3], handled)
  end)

  it("an error nobody joins goes to the handler", function()
    local handled
    local old = misskey.on_error(function(err) handled = err end)
    misskey.run(function()
      misskey.spawn(function() error("nobody listens") end)
      misskey.sleep(0.01)
    end)
    misskey.on_error(old)
    assert.equal("task", handled.kind)
    assert.matches("nobody listens", handled.message)
  end)

  it("cancel aborts the task's transfer and the server sees the connection close", function()
    local joined
    misskey.run(function()
      local t = misskey.spawn(function() return client:request("test/hold", { key = "c", delay = 10 }) end)
      until_stats(function(s) return s.inflight == 1 end)
      assert.is_true(t:cancel())
      joined = { t:join() }
      until_stats(function(s) return s.cancelled == 1 end)
    end)
    assert.is_nil(joined[1])
    assert.equal("task cancelled", joined[2])
    assert.is_true(joined[3].cancelled)
    assert.equal(0, misskey.engine():pending())
    assert.equal(0, stats().completed)
  end)

  it("timers wake tasks in deadline order", function()
    local order = {}
    misskey.run(function()
      misskey.spawn(function() misskey.sleep(0.2); order[#order + 1] = "slow" end)
      misskey.spawn(function() misskey.sleep(0.05); order[#order + 1] = "fast" end)
      misskey.spawn(function() order[#order + 1] = "now" end)
    end)
    assert.same({ "now", "fast", "slow" }, order)
  end)

  it("a foreign socket wakes the loop", function()
    local reply
    misskey.run(function()
      local fd = testpoll.connect(srv.port)
      testpoll.write(fd, "POST /api/meta HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
      local ev = require("misskey.loop").await_socket(fd, "r", 10)
      reply = { ev, testpoll.read(fd) }
      testpoll.close(fd)
    end)
    assert.equal("r", reply[1])
    assert.matches("^HTTP/1%.1 200", reply[2])
  end)

  it("misskey.stop ends run and cancels what is left", function()
    local sleeper
    misskey.run(function()
      sleeper = misskey.spawn(function() misskey.sleep(60) end)
      misskey.sleep(0.01)
      misskey.stop()
    end)
    assert.equal("cancelled", sleeper.status)
    local t = misskey.engine():timeout() -- the sleeper's 60 s timer is gone (curl's own may be due)
    assert.truthy(t == nil or t < 30)
  end)

  it("gather returns first values and errs in order", function()
    local results, errs = misskey.run(function()
      return misskey.gather(
        function() return assert(client:request("test/hold", { key = "a", delay = 0.2 })).key end,
        function() error("bad") end,
        function() return assert(client:request("test/hold", { key = "c", delay = 0.1 })).key end)
    end)
    assert.equal(3, results.n)
    assert.equal("a", results[1])
    assert.is_nil(results[2])
    assert.equal("task", errs[2].kind)
    assert.equal("c", results[3])
  end)

  it("join and sleep work in a plain script without run", function()
    local t = misskey.spawn(function() return assert(client:request("test/hold", { key = "p", delay = 0.05 })).key end)
    assert.equal("p", t:join())
    misskey.sleep(0.01)
  end)

  it("misskey.step drives tasks from a frame loop", function()
    local t = misskey.spawn(function() return assert(client:request("test/hold", { key = "f", delay = 0.1 })).key end)
    local frames = 0
    while misskey.step(0.01) > 0 and frames < 1000 do frames = frames + 1 end
    assert.equal("f", t:join())
    assert.truthy(frames > 1)
  end)

  it("spawn_now runs fn at once; one that returns is done, one that waits goes on as a task", function()
    local loop = require "misskey.loop"
    local order = {}
    local handled
    local old = misskey.on_error(function(err) handled = err end)
    misskey.run(function()
      local base = loop.alive()
      local me = loop.current()
      local inner
      local quick = loop.spawn_now(function(x)
        order[#order + 1] = "quick " .. x
        inner = loop.current()
      end, 1)
      order[#order + 1] = "after quick"
      assert.equal(quick, inner) -- a task of its own
      assert.not_equal(me, inner)
      assert.equal("done", quick.status)
      assert.equal(base, loop.alive())
      local slow = loop.spawn_now(function()
        order[#order + 1] = "slow start"
        misskey.sleep(0.01)
        order[#order + 1] = "slow end"
        return "slow"
      end)
      order[#order + 1] = "after slow start"
      assert.equal("waiting", slow.status)
      local yielding = loop.spawn_now(function()
        coroutine.yield() -- a plain yield: runs again next round
        order[#order + 1] = "yielded"
      end)
      assert.equal("ready", yielding.status)
      local failing = loop.spawn_now(function() error("kaput") end)
      assert.equal("failed", failing.status)
      -- quick calls between them reuse a coroutine, and nest
      for i = 2, 3 do
        loop.spawn_now(function(x)
          loop.spawn_now(function() order[#order + 1] = "nested " .. x end)
        end, i)
      end
      assert.equal("slow", slow:join())
      yielding:join()
    end)
    misskey.on_error(old)
    assert.same({ "quick 1", "after quick", "slow start", "after slow start", "nested 2", "nested 3", "yielded",
      "slow end" }, order)
    assert.matches("kaput", handled.message)
    assert.equal(0, require("misskey.loop").alive())
    assert.has_error(function() require("misskey.loop").spawn_now(1) end)
  end)

  it("cancelling a task that runs (it started the caller with spawn_now) takes effect when it waits",
    function()
      local loop = require "misskey.loop"
      local log = {}
      misskey.run(function()
        local outer
        outer = misskey.spawn(function()
          loop.spawn_now(function()
            assert.is_true(outer:cancel()) -- outer runs (it started this one): cancelled at its next wait
            log[#log + 1] = "inner"
          end)
          log[#log + 1] = "outer goes on"
          misskey.sleep(0.01)
          log[#log + 1] = "never"
        end)
        local _, msg = outer:join()
        log[#log + 1] = msg
        -- a spawn_now task asked to cancel while it ran, that then returned, is reused clean
        local me
        loop.spawn_now(function()
          me = loop.current()
          loop.spawn_now(function() me:cancel() end)
        end)
        local again = loop.spawn_now(function()
          misskey.sleep(0.01)
          log[#log + 1] = "reused and not cancelled"
        end)
        assert.equal(me, again)
        again:join()
      end)
      assert.same({ "inner", "outer goes on", "task cancelled", "reused and not cancelled" }, log)
      assert.equal(0, require("misskey.loop").alive())
    end)

  it("rejects bad arguments", function()
    assert.has_error(function() misskey.spawn(42) end, "bad argument #1 to 'spawn' (function expected, got number)")
    assert.has_error(function() misskey.sleep(-1) end)
    assert.has_error(function() misskey.run() end)
    assert.has_error(function() misskey.on_error(1) end)
  end)
end)

describe("client:batch", function()
  it("returns results in input order with at most `concurrency` in flight", function()
    local calls = {}
    for i = 1, 12 do calls[i] = { "test/hold", { key = i, delay = 0.15 } } end
    calls[5] = { "test/error/internal", {} }
    local results, errs = client:batch(calls, { concurrency = 3 })
    assert.equal(12, results.n)
    for i = 1, 12 do
      if i == 5 then
        assert.is_nil(results[5])
        assert.equal("INTERNAL_ERROR", errs[5].code)
      else
        assert.equal(i, results[i].key)
      end
    end
    local s = stats()
    assert.equal(3, s.max_inflight)
    assert.equal(11, s.completed)
  end)

  it("works inside a task too", function()
    local results = misskey.run(function()
      return client:batch({ { "test/hold", { key = "x", delay = 0.1 } }, { "test/hold", { key = "y", delay = 0.1 } } })
    end)
    assert.equal("x", results[1].key)
    assert.equal("y", results[2].key)
    assert.equal(2, stats().max_inflight)
  end)

  it("reuses connections", function()
    local before = assert(client:request("test/count")).connections
    local calls = {}
    for i = 1, 20 do calls[i] = { "test/count" } end
    client:batch(calls, { concurrency = 2 })
    local after = assert(client:request("test/count")).connections
    assert.truthy(after - before <= 2, ("%d new connections"):format(after - before))
  end)

  it("raises on misuse", function()
    assert.has_error(function() client:batch("x") end)
    assert.has_error(function() client:batch({ { 42 } }) end)
    assert.has_error(function() client:batch({}, { concurrency = 0 }) end)
    assert.has_error(function() client:batch({}, { speed = 1 }) end)
    assert.has_error(function() client:batch({ { "test/echo", { f = print } } }) end)
  end)
end)

describe("engine timers and sockets", function()
  it("reports timers in deadline order and cancels them", function()
    local e = require("misskey.core").engine()
    local late = e:timer(0.05)
    local early = e:timer(0.01)
    local gone = e:timer(0.02)
    assert.is_true(e:cancel_timer(gone))
    assert.is_false(e:cancel_timer(gone))
    assert.truthy(e:timeout() <= 0.01)
    local fired = {}
    for _ = 1, 100 do
      local _, timers = e:step(1)
      for _, id in ipairs(timers) do fired[#fired + 1] = id end
      if #fired == 2 then break end
    end
    assert.same({ early, late }, fired)
    assert.is_nil(e:timeout())
  end)

  it("pollfd, asked for after sockets are watched, is readable when one of them is ready", function()
    local e = require("misskey.core").engine()
    local fd = testpoll.connect(srv.port)
    e:watch(fd, "w")                      -- watched before the epoll set exists
    local pfd = e:pollfd()
    assert.equal(pfd, e:pollfd())         -- one fd for the engine's life
    assert.equal("r", testpoll.poll({ [pfd] = "r" }, 2000)[pfd])
    e:unwatch(fd)
    assert.is_nil(testpoll.poll({ [pfd] = "r" }, 0)[pfd])
    testpoll.close(fd)
  end)

  it("lists watched sockets in fds() and reports them ready", function()
    local e = require("misskey.core").engine()
    local fd = testpoll.connect(srv.port)
    e:watch(fd, "w")
    assert.equal("w", e:fds()[fd])
    local _, _, sockets = e:step(1)
    assert.equal("w", sockets[fd])
    assert.is_true(e:unwatch(fd))
    assert.is_nil(e:fds()[fd])
    testpoll.close(fd)
    assert.has_error(function() e:watch(fd, "x") end)
  end)
end)

describe("signals", function()
  it("Ctrl-C (SIGINT) ends a blocking wait at once with the interpreter's 'interrupted!'", function()
    local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
    local cmd = ("env -u LD_PRELOAD timeout -s INT 0.3 %s -e \"package.path='./lua/?.lua;./lua/?/init.lua;'"
      .. "..package.path; package.cpath='./build/%s/?.so;'..package.cpath; "
      .. "require('misskey').sleep(30); print('slept through')\" 2>&1"):format(interpreter, version)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    assert.matches("interrupted!", out)
    assert.is_nil(out:find("slept through", 1, true))
  end)
end)
