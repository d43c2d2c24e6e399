-- loop.wait_event / loop.signal: the scheduler's condition primitive (used by
-- the fake WebSocket of misskey.testing and by misskey.bot).
local loop = require "misskey.loop"
local misskey = require "misskey"

describe("loop.wait_event and loop.signal", function()
  it("wakes a task waiting on a key when another task signals it", function()
    local key, got = {}, {}
    misskey.run(function()
      local a = misskey.spawn(function() got.a = loop.wait_event(key) end)
      local b = misskey.spawn(function() got.b = loop.wait_event(key, 30) end)
      misskey.sleep(0)
      assert.equal(2, loop.signal(key))
      a:join()
      b:join()
    end)
    assert.same({ a = "signal", b = "signal" }, got)
    assert.equal(0, loop.signal(key))
  end)

  it("times out, and a later signal finds nobody", function()
    local key = {}
    local r = misskey.run(function() return loop.wait_event(key, 0.01) end)
    assert.equal("timeout", r)
    assert.equal(0, loop.signal(key))
  end)

  it("blocks outside a task, running the tasks that signal", function()
    local key = "a string key works too"
    misskey.spawn(function()
      misskey.sleep(0.01)
      loop.signal(key)
    end)
    assert.equal("signal", loop.wait_event(key, 5))
    assert.equal(0, loop.alive())
  end)

  it("forgets the waiter of a cancelled task", function()
    local key = {}
    local t = misskey.spawn(function() loop.wait_event(key) end)
    misskey.step(0)
    assert.is_true(t:cancel())
    assert.equal(0, loop.signal(key))
  end)

  it("rejects a nil key and a bad timeout", function()
    assert.has_error(function() loop.wait_event(nil) end, "bad argument #1 to 'wait_event' (a key expected, got nil)")
    assert.has_error(function() loop.wait_event({}, -1) end)
  end)
end)
