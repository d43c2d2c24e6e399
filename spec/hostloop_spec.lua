-- misskey driven from other event loops: luv (Neovim, luvit), cqueues, copas,
-- and a frame loop through misskey.step. Each runs concurrent requests and a
-- timer through that loop; the test server proves the requests overlapped.
local misskey = require "misskey"
local new_client = require "support.client"
local server = require "support.server"

local srv, client

setup(function()
  srv = server.start()
  client = new_client{ host = srv.url }
end)
teardown(function() srv:stop() end)
before_each(function() assert(client:request("test/hold/reset")) end)

-- Spawns `n` held requests and a timer; returns the table they fill.
local function start_work(n)
  local got = { keys = {}, timer = false }
  for i = 1, n do
    misskey.spawn(function()
      local r = assert(client:request("test/hold", { key = i, delay = 0.3 }))
      got.keys[#got.keys + 1] = r.key
    end)
  end
  misskey.spawn(function()
    misskey.sleep(0.05)
    got.timer = true
  end)
  return got
end

local function check(got, n)
  table.sort(got.keys)
  local want = {}
  for i = 1, n do want[i] = i end
  assert.same(want, got.keys)
  assert.is_true(got.timer)
  assert.equal(n, assert(client:request("test/hold/stats")).max_inflight)
  assert.equal(0, misskey.step(0))
end

local has = function(m) return (pcall(require, m)) end

describe("host loops", function()
  -- Debian 12 ships lua-luv for 5.1, 5.2, 5.3, 5.4 (LuaJIT uses the 5.1 build).
  local luv_it = has("luv") and it or pending
  luv_it("luv drives requests and timers; uv.run() returns when misskey is idle", function()
    local uv = require "luv"
    local driver = require("misskey.loop.luv").start(uv)
    local got = start_work(4)
    uv.run()
    driver.stop()
    uv.run("nowait") -- lets libuv finish closing the driver's handles
    check(got, 4)
  end)

  -- lua-cqueues is packaged for 5.1-5.4 on this Debian (LuaJIT uses the 5.1 build).
  local cq_it = has("cqueues") and it or pending
  cq_it("cqueues drives requests and timers next to its own coroutines", function()
    local cqueues = require "cqueues"
    local cq = cqueues.new()
    require("misskey.loop.cqueues").start(cq)
    local got = start_work(4)
    local own = false
    cq:wrap(function()
      cqueues.sleep(0.01)
      own = true
    end)
    assert(cq:loop())
    check(got, 4)
    assert.is_true(own)
  end)

  -- Debian 12's lua-copas package (1.2.0; the module is Copas 1.1.7) is built for Lua 5.1 and 5.2
  -- (LuaJIT loads the 5.1 one), not 5.4.
  local copas_it = has("copas") and it or pending
  copas_it("copas drives requests and timers", function()
    local copas = require "copas"
    local adapter = require "misskey.loop.copas"
    local got = start_work(4)
    local own = false
    copas.addthread(function() own = true end)
    adapter.loop(copas)
    check(got, 4)
    assert.is_true(own)
  end)

  it("a frame loop drives everything through misskey.step", function()
    local got = start_work(4)
    local frames = 0
    while misskey.step(1 / 60) > 0 do
      frames = frames + 1
      assert(frames < 10000, "never finished")
    end
    check(got, 4)
    assert.truthy(frames > 2)
  end)
end)
