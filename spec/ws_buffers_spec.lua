-- What a WebSocket keeps between reads (src/ws.c): bytes are read into the engine's one
-- scratch buffer and parsed there, a socket keeps only a frame cut off at a read's end, and
-- buffers go back once drained. Many idle streams in one process (a bot that follows many
-- servers) used to hold a 64-128 KiB read buffer each, and a burst's size for good.
local core = require "misskey.core"
local server = require "support.server"

local srv

setup(function() srv = server.start{ script = "wsserver.py" } end)
teardown(function() srv:stop() end)

local function url(path) return "ws://127.0.0.1:" .. srv.port .. "/" .. path end

-- One round: wait for the socket (at most 1 s), then poll it.
local function round(e, ws, q, tail)
  local fd = ws:fd()
  if not fd then return tail, nil end
  e:watch(fd, ws:buffered() > 0 and "rw" or "r")
  e:step(1)
  e:unwatch(fd)
  local new, want, events = ws:poll(q, tail)
  for _, ev in ipairs(events or {}) do
    if ev[1] == "error" or ev[1] == "eof" or ev[1] == "close" then error("socket ended: " .. tostring(ev[2])) end
  end
  return new, want
end

local function open(e, path)
  local ws = e:websocket{ url = url(path) }
  for _ = 1, 50 do
    if ws:done() then break end
    e:step(0.1)
  end
  local q, tail = {}, 0
  for _ = 1, 50 do
    local want, events
    tail, want, events = ws:poll(q, tail)
    for _, ev in ipairs(events or {}) do
      if ev[1] == "open" then return ws, q, tail end
    end
    assert(want, "closed before the upgrade")
    e:watch(ws:fd(), want)
    e:step(1)
    e:unwatch(ws:fd())
  end
  error("no upgrade")
end

-- A message of `n` bytes, different for each k, with multi-byte UTF-8 in it.
local function message(k, n)
  local unit = ("%d:é日本🎉;"):format(k)
  local text = unit:rep(math.ceil(n / #unit)):sub(1, n)
  return (text:gsub("[\128-\255]+$", "")) -- a sequence cut at the end is not UTF-8
end

-- Sends every message, then polls until as many came back (bounded in rounds).
local function echo_all(e, ws, q, tail, msgs)
  for _, m in ipairs(msgs) do assert(ws:send(m)) end
  for _ = 1, 2000 do
    if tail >= #msgs then break end
    tail = round(e, ws, q, tail)
  end
  return tail
end

describe("WebSocket read buffers", function()
  it("an idle socket keeps no read buffer once its messages are handed out", function()
    local e = core.engine()
    local ws, q, tail = open(e, "echo")
    local msgs = {}
    for k = 1, 200 do msgs[k] = message(k, 2400) end -- ~480 KB: many reads, most cut mid-frame
    tail = echo_all(e, ws, q, tail, msgs)
    assert.equal(#msgs, tail)
    -- Before: the read buffer kept 64-512 KiB for the socket's life.
    assert.is_true(ws:_memory() <= 2048, "holds " .. ws:_memory() .. " bytes")
    ws:close()
    e:close()
  end)

  it("messages cut anywhere across reads arrive whole, big ones included", function()
    local e = core.engine()
    local ws, q, tail = open(e, "echo")
    local msgs, sizes = {}, { 1, 125, 126, 2400, 65535, 65536, 70000, 3, 200000, 17, 4000 }
    for k = 1, 120 do msgs[k] = message(k, sizes[k % #sizes + 1] + k) end
    tail = echo_all(e, ws, q, tail, msgs)
    assert.equal(#msgs, tail)
    for k = 1, #msgs do
      if q[k] ~= msgs[k] then error(("message %d differs (%d bytes, %d sent)"):format(k, #q[k], #msgs[k])) end
    end
    assert.is_true(ws:_memory() <= 2048, "holds " .. ws:_memory() .. " bytes")
    ws:close()
    e:close()
  end)

  it("the sockets of one engine share the scratch buffer without mixing their messages", function()
    local e = core.engine()
    local socks = {}
    for i = 1, 8 do
      local ws, q, tail = open(e, "echo")
      socks[i] = { ws = ws, q = q, tail = tail, msgs = {} }
      for k = 1, 40 do socks[i].msgs[k] = message(i * 1000 + k, 1000 + 97 * k) end
      for k = 1, 40 do assert(ws:send(socks[i].msgs[k])) end
    end
    for _ = 1, 2000 do -- every socket polled in turn, as the scheduler does
      local left = 0
      for _, s in ipairs(socks) do
        if s.tail < #s.msgs then
          s.tail = round(e, s.ws, s.q, s.tail)
          left = left + 1
        end
      end
      if left == 0 then break end
    end
    for i, s in ipairs(socks) do
      assert.equal(#s.msgs, s.tail)
      for k = 1, #s.msgs do
        if s.q[k] ~= s.msgs[k] then error(("socket %d, message %d differs"):format(i, k)) end
      end
      s.ws:close()
    end
    e:close()
  end)

  -- A poll decodes every message it reads before any handler sees the first, so all of
  -- them are alive at once: at 256 KiB per poll a garbage collection in a burst met ~100
  -- decoded notes (~16% more CPU per note event on Lua 5.4 than at 64 KiB).
  it("a poll reads at most 64 KiB, so a burst is decoded a little at a time", function()
    local e = core.engine()
    local ws, q, tail = open(e, "big-burst")
    local array_mt = {}
    local most, stopped, more = 0, false, false
    for _ = 1, 2000 do
      if tail >= 200 then break end
      if not more then
        e:watch(ws:fd(), "r")
        e:step(1)
        e:unwatch(ws:fd())
      end
      local new, want
      new, want, _, more = ws:poll(q, tail, array_mt)
      assert(want, "closed in the burst")
      most = math.max(most, new - tail)
      stopped = stopped or more
      tail = new
    end
    assert.equal(200, tail)
    assert.equal(199, q[200].n)
    -- A read of 64 KiB holds at most 28 of these 2,407-byte frames (27 whole and the end
    -- of one cut off by the previous read).
    assert.is_true(most <= 28, most .. " messages in one poll")
    assert.is_true(stopped, "no poll stopped at its limit") -- a read of the whole limit happened
    ws:close()
    e:close()
  end)
end)
