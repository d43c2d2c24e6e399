-- The waiting seam: every wait goes through misskey.loop, so a wait in one
-- task never holds up the others. loop.await_task (a task's end, with a
-- timeout), a task set's graceful wait that is told instead of polling, and
-- the credential store's lock waited for through the scheduler.
local core = require "misskey.core"
local credentials = require "misskey.credentials"
local loop = require "misskey.loop"
local misskey = require "misskey"
local server = require "support.server"
local taskset = require "misskey.taskset"
local with_env = require "support.env"

-- A failed case must not leave tasks behind: misskey.run waits for every task.
after_each(function() loop.cancel_all() end)

-- Steps the scheduler without waiting until cond() holds, at most `rounds` times.
local function steps_until(cond, rounds)
  for _ = 1, rounds do
    if cond() then return true end
    loop.step(0)
  end
  return cond()
end

describe("loop.await_task", function()
  it("returns done when the task ends, timeout when it does not in time", function()
    local key, got = {}, {}
    local t = misskey.spawn(function() loop.wait_event(key) end)
    local w = misskey.spawn(function()
      got[1] = loop.await_task(t, 0.01)
      loop.signal(key)
      got[2] = loop.await_task(t, 5)
    end)
    for _ = 1, 100 do
      if w.status ~= "waiting" and w.status ~= "ready" then break end
      loop.step(0.05)
    end
    assert.same({ "timeout", "done" }, got)
    assert.equal("done", loop.await_task(t)) -- an ended task: at once
  end)

  it("only watches: a failure nobody joins is still reported", function()
    local reported = {}
    local saved = loop.on_error(function(err) reported[#reported + 1] = err.message end)
    local ok, err = pcall(misskey.run, function()
      local t = misskey.spawn(function() misskey.sleep(0); error("boom") end)
      assert.equal("done", loop.await_task(t, 5))
      assert.equal("failed", t.status)
    end)
    loop.on_error(saved)
    assert(ok, err)
    assert.equal(1, #reported)
    assert.matches("boom", reported[1])
  end)

  it("forgets its watcher when the watching task is cancelled", function()
    local key = {}
    local watched = misskey.spawn(function() loop.wait_event(key) end)
    local watcher = misskey.spawn(function() loop.await_task(watched) end)
    loop.step(0)
    assert.equal(1, #watched.joiners)
    watcher:cancel()
    assert.equal(0, #watched.joiners)
    loop.signal(key)
    assert.is_true(steps_until(function() return watched.status == "done" end, 10))
  end)
end)

describe("taskset:wait", function()
  it("returns as soon as the tasks end, told by them, not by looking again later", function()
    local set, key = taskset.new(), {}
    set:spawn(function() loop.wait_event(key) end)
    set:spawn(function() loop.wait_event(key) end)
    local result
    local waiter = misskey.spawn(function() result = set:wait(60) end)
    loop.step(0)
    assert.is_nil(result)
    loop.signal(key)
    -- No time passes: with a poll the wait would still sleep; told, it is done within a few rounds.
    assert.is_true(steps_until(function() return result ~= nil end, 10))
    assert.is_true(result)
    assert.equal("done", waiter.status)
  end)

  it("gives up after its seconds, and skips `except`", function()
    local set, key = taskset.new(), {}
    local t = set:spawn(function() loop.wait_event(key) end)
    local got = {}
    misskey.run(function()
      got[1] = set:wait(0.01)
      got[2] = set:wait(5, t)
      loop.signal(key) -- so that run, which waits for every task, ends
    end)
    assert.same({ false, true }, got)
    assert.equal("done", t.status)
  end)
end)

describe("the credential store's lock", function()
  local dir
  before_each(function()
    dir = server.temp_dir()
    with_env{ XDG_CONFIG_HOME = dir }
  end)
  after_each(function()
    with_env.reset()
    server.remove_dir(dir)
  end)

  it("is waited for through the scheduler: other tasks run, and the holder can let go", function()
    assert(credentials.check()) -- makes the directory
    local held = assert(core.lock_private(assert(credentials.path()) .. ".lock"))
    local order = {}
    local key, msg = misskey.run(function()
      local adder = misskey.spawn(function()
        return credentials.add{ host = "https://a.example", token = "T", username = "alice" }
      end)
      misskey.spawn(function()
        misskey.sleep(0.05)
        order[#order + 1] = "holder ran while add waited"
        held:unlock()
      end)
      return adder:join()
    end)
    assert.equal("@alice@a.example", key, msg)
    assert.same({ "holder ran while add waited" }, order)
  end)
end)
