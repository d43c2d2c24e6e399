-- What both WebSocket clients (ws:poll over libcurl, core.ws_codec for nginx) share: the read
-- side (src/wsread.c) and the close arguments. What they do is in the specs of each
-- (websocket_spec, ws_buffers_spec, hostile_ws_spec, nginx_codec_spec); this file holds where
-- the two copies disagreed before they were merged: a feed unwound by an error raised while
-- its messages were pushed lost the rest of its bytes (ws:poll failed the stream with 1011,
-- core.ws_codec read on as if nothing was missing), and codec:close_frame named the wrong
-- argument when one was bad.
local core = require "misskey.core"

local reply = require("support.ws_upgrade").reply

local function open_codec()
  local c = core.ws_codec()
  local key = assert(c:key())
  local state = c:upgrade(reply(key))
  assert.equal("open", state)
  return c
end

-- An unmasked server text frame of fewer than 126 bytes.
local function text_frame(s)
  return string.char(0x81, #s) .. s
end

-- Lua 5.1 and LuaJIT let an error raised by a finalizer out of the allocation that ran it:
-- the one way a spec has to unwind a feed in the middle, as a memory error would. (5.4 turns
-- such an error into a warning.)
local newproxy = rawget(_G, "newproxy")

describe("what both WebSocket clients share", function()
  local collector = {}
  before_each(function()
    collector.pause = collectgarbage("setpause", 100)
    collector.stepmul = collectgarbage("setstepmul", 200)
    collectgarbage("setpause", collector.pause)
    collectgarbage("setstepmul", collector.stepmul)
  end)
  after_each(function()
    collectgarbage("setpause", collector.pause)
    collectgarbage("setstepmul", collector.stepmul)
    collectgarbage("restart")
  end)

  it("core.ws_codec fails the stream with 1011 after a feed was unwound, as ws:poll does", function()
    if not newproxy then
      pending("needs an error raised from a finalizer (Lua 5.1, LuaJIT)")
      return
    end
    local c = open_codec()
    local messages = {}
    for i = 1, 200 do messages[i] = text_frame("message " .. i) end
    local bytes = table.concat(messages)
    local queue, feed, protected, gc = {}, c.feed, pcall, collectgarbage -- nothing left to look up
    collectgarbage("collect")
    collectgarbage("stop")
    -- Garbage whose finalizer raises; the next collection step (the first allocation in feed:
    -- pause 0, a whole cycle per step) runs it.
    do
      local p = newproxy(true)
      getmetatable(p).__gc = function() error("unwound by a finalizer", 0) end
    end
    collectgarbage("setpause", 0)
    collectgarbage("setstepmul", 1e9)
    gc("restart")
    local ok, err = protected(feed, c, bytes, queue, 0)
    collectgarbage("setpause", collector.pause)
    collectgarbage("setstepmul", collector.stepmul)
    assert.is_false(ok)
    assert.equal("unwound by a finalizer", err)
    assert.is_nil(queue[200]) -- the feed stopped before its last message

    -- The stream lost bytes: the next feed says so instead of going on.
    local tail, events = c:feed(text_frame("after"), queue, 0)
    assert.equal(0, tail)
    assert.same({ { "error", "a read was cut short by a memory error", 1011 } }, events)
    assert.equal("closed", c:state())
    assert.equal(0, c:memory())
  end)

  it("names the bad argument of ws:close and codec:close_frame alike", function()
    local c = open_codec()
    local e = core.engine()
    local w = e:websocket { url = "ws://127.0.0.1:1/" } -- never polled: no connection is made
    for _, close in ipairs {
      function(code, reason) local frame = c:close_frame(code, reason); return frame end, -- (a tail call
      function(code, reason) w:close(code, reason) end,                                   -- loses the name)
    } do
      local ok, err = pcall(close, 1005)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[%w_]+' %(a close code is 1000%-1003", err)
      ok, err = pcall(close, 1000, "\255")
      assert.is_false(ok)
      assert.matches("bad argument #2 to '[%w_]+' %(a close reason is UTF%-8 text", err)
    end
    w:cancel()
    e:close()
  end)

  it("core.ws_codec goes on after feeds that were not unwound", function()
    local c = open_codec()
    local queue = {}
    local tail = c:feed(text_frame("a") .. text_frame("b"):sub(1, 2), queue, 0)
    tail = c:feed(text_frame("b"):sub(3), queue, tail)
    assert.equal(2, tail)
    assert.same({ "a", "b" }, queue)
    assert.equal("open", c:state())
  end)
end)
