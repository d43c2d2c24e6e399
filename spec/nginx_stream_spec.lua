-- A stream inside nginx: spec/nginx/app.lua's init_worker starts it with
-- misskey.ngx.follow (one stream across the worker processes, in a timer, with a
-- positions file), and this spec drives the test server's streaming side: events
-- arrive, a dropped connection is reconnected and what it missed is backfilled, and
-- `nginx -s reload` hands the stream to the new worker processes without losing
-- an event. LuaJIT pass only (nginx runs LuaJIT), as spec/nginx_spec.lua.
local misskey = require "misskey"
local nginx = require "support.nginx"
local server = require "support.server"
local new_client = require "support.client"

if not rawget(_G, "jit") then return end
local missing = nginx.missing()
if missing then
  io.stderr:write("spec/nginx_stream_spec.lua: skipped: " .. missing .. "\n")
  it("streams inside nginx (skipped: " .. missing .. ")", function() pending(missing) end)
  return
end

local srv, ngx_, api

setup(function()
  srv = server.start()
  api = new_client{ host = srv.url, token = "tok", allow_plaintext_token = true }
  assert(api:request("test/stream/reset"))
  ngx_ = nginx.start{ upstream = srv.url, follow = true, workers = 2 }
end)

teardown(function()
  if ngx_ then ngx_:stop() end
  srv:stop()
end)

-- Polls /events until ok(events) (bounded: at most `seconds`, every 50 ms).
local function wait_for(what, ok, seconds)
  local events
  for _ = 1, math.floor((seconds or 10) / 0.05) do
    events = ngx_:get("/events")
    if ok(events) then return events end
    misskey.sleep(0.05)
  end
  error(("waited in vain for %s: %s\n%s"):format(what, require("misskey.json").encode(events), ngx_:log(60)), 2)
end

local function post(text) return assert(api:request("test/stream/post", { text = text })).id end

describe("a stream inside nginx (misskey.ngx.follow in a timer)", function()
  local ids = {}

  it("receives events, and its handlers call the API", function()
    wait_for("the first connection", function(e) return e.connected >= 1 end)
    ids[1], ids[2] = post("one"), post("two")
    local e = wait_for("two notes", function(ev) return #ev.notes >= 2 and ev.api >= 2 end)
    assert.same({ ids[1], ids[2] }, e.notes)
    assert.equal(1, #e.holders) -- one stream across the two worker processes
    assert.equal(1, assert(api:request("test/stream/state")).open)
  end)

  it("survives a dropped connection and backfills what it missed, each note once and in order", function()
    assert(api:request("test/stream/drop", { hold = true }))
    wait_for("the drop", function(e) return e.disconnected >= 1 end)
    ids[3], ids[4] = post("three"), post("four") -- no socket: only a backfill can bring them
    assert(api:request("test/stream/release"))
    local e = wait_for("the backfill", function(ev) return #ev.notes >= 4 end)
    assert.same({ ids[1], ids[2], ids[3], ids[4] }, e.notes)
    assert.equal(2, e.connected)
  end)

  it("a long-lived stream does not grow per event: 2 x 5000 events, the holder's memory flat", function()
    local holder = ngx_:get("/events").holders
    holder = holder[#holder]
    local function rss_kib()
      local f = assert(io.open("/proc/" .. holder .. "/statm"))
      local _, resident = f:read("*n", "*n")
      f:close()
      return resident * 4
    end
    local function burst(total)
      for _ = 1, 5 do
        assert(api:request("test/stream/emit", { channel = "homeTimeline", type = "burst", count = 1000 }))
      end
      wait_for(total .. " bursts", function(e) return e.bursts >= total end, 60)
    end
    burst(5000)
    local before = rss_kib()
    burst(10000)
    local grew = rss_kib() - before
    -- A new ngx_lua light thread per handler (never reused) grew the holder by 13 MiB over
    -- these 5000 events (ngx_lua keeps its records until the timer ends); pooled, by 0.
    assert.truthy(grew < 2048, ("grew by %d KiB"):format(grew))
  end)

  it("hands over on nginx -s reload from the saved position, losing no event", function()
    local before = ngx_:workers()
    ids[5] = post("five")
    wait_for("note five", function(ev) return #ev.notes >= 5 end)
    ngx_:reload()
    -- Posted while the old worker process closes its stream and the new one takes over.
    ids[6] = post("six")
    wait_for("a new holder", function(ev)
      local last = ev.holders[#ev.holders]
      for _, pid in ipairs(before) do if pid == last then return false end end
      return #ev.holders >= 2
    end, 20)
    ids[7] = post("seven")
    local e = wait_for("every note", function(ev) return #ev.notes >= 7 end)
    assert.same(ids, e.notes)
    -- Only the new holder's stream is open at the server.
    assert.equal(1, assert(api:request("test/stream/state")).open)
  end)
end)
