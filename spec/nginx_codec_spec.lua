-- core.ws_codec: the WebSocket protocol without I/O that misskey.ngx.websocket
-- drives over cosockets. Plain Lua here (every Lua version, and under ASan and
-- valgrind): the bytes a server would send are fed in by hand.
local core = require "misskey.core"

local reply = require("support.ws_upgrade").reply

-- An unmasked server frame.
local function frame(opcode, payload, fin)
  local n = #payload
  local head = string.char((fin == false and 0 or 0x80) + opcode)
  if n < 126 then
    head = head .. string.char(n)
  elseif n < 65536 then
    head = head .. string.char(126, math.floor(n / 256), n % 256)
  else
    head = head .. string.char(127, 0, 0, 0, 0, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
      math.floor(n / 256) % 256, n % 256)
  end
  return head .. payload
end

local function open_codec(max)
  local c = core.ws_codec(max)
  local key = assert(c:key())
  local state, rest = c:upgrade(reply(key))
  assert.equal("open", state)
  assert.equal("", rest)
  return c
end

describe("core.ws_codec", function()
  it("checks the upgrade reply against its key, fed in pieces", function()
    local c = core.ws_codec()
    local key = assert(c:key())
    assert.equal(24, #key)
    local whole = reply(key, frame(1, "hi"))
    assert.equal("more", (c:upgrade(whole:sub(1, 20))))
    local state, rest = c:upgrade(whole:sub(21))
    assert.equal("open", state)
    assert.equal(frame(1, "hi"), rest) -- what followed the head: frames already
    assert.equal("open", c:state())
  end)

  it("refuses a wrong accept value, and reports another status with its head", function()
    local c = core.ws_codec()
    c:key()
    local state, why = c:upgrade(reply("not-the-key"))
    assert.equal("invalid", state)
    assert.matches("Accept", why)
    local d = core.ws_codec()
    d:key()
    local st, status, head = d:upgrade("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
    assert.equal("refused", st)
    assert.equal(401, status)
    assert.matches("^HTTP/1.1 401", head)
  end)

  it("holds at most 64 KiB of a reply head that never ends", function()
    local c = core.ws_codec()
    c:key()
    local state
    for _ = 1, 100 do -- bounded: 100 x 1 KiB
      state = c:upgrade("X-Junk: " .. ("a"):rep(1014) .. "\r\n")
      if state ~= "more" then break end
    end
    assert.equal("invalid", state)
    assert.truthy(c:memory() <= 128 * 1024)
  end)

  it("assembles messages across feeds and fragments, and reports control frames", function()
    local c = open_codec()
    local queue = {}
    local bytes = frame(1, "hel", false) .. frame(9, "p1") .. frame(0, "lo") .. frame(2, "\0\1")
    local tail, events = c:feed(bytes:sub(1, 4), queue, 0)
    assert.equal(0, tail)
    assert.is_nil(events)
    tail, events = c:feed(bytes:sub(5), queue, tail)
    assert.equal(2, tail)
    assert.same({ "hello", "\0\1" }, queue)
    assert.same({ { "ping", "p1" } }, events)
    tail, events = c:feed(frame(8, "\3\232bye"), queue, tail)
    assert.equal(2, tail)
    assert.same({ { "close", "bye", 1000 } }, events)
    assert.equal("closed", c:state())
  end)

  it("a message over max_message is a protocol error with close code 1009, not memory", function()
    local c = open_codec(1000)
    local _, events = c:feed(frame(1, ("x"):rep(600), false) .. frame(0, ("y"):rep(600)), {}, 0)
    assert.equal("error", events[1][1])
    assert.equal(1009, events[1][3])
    assert.truthy(c:memory() < 4096)
  end)

  it("a masked or reserved-bit server frame is an error with 1002", function()
    local c = open_codec()
    local _, events = c:feed(string.char(0x81, 0x82, 1, 2, 3, 4, 5, 6), {}, 0)
    assert.same("error", events[1][1])
    assert.equal(1002, events[1][3])
    local d = open_codec()
    _, events = d:feed(string.char(0xC1, 0), {}, 0)
    assert.equal(1002, events[1][3])
  end)

  it("encodes masked client frames and checks close codes", function()
    local c = open_codec()
    local f = assert(c:encode("hello"))
    assert.equal(0x81, f:byte(1))
    assert.equal(0x80 + 5, f:byte(2)) -- masked, 5 bytes
    assert.equal(2 + 4 + 5, #f)
    -- The payload is the mask XOR the text: unmask it.
    local mask, out = { f:byte(3, 6) }, {}
    for i = 1, 5 do
      local b, m, r, bit = f:byte(6 + i), mask[(i - 1) % 4 + 1], 0, 1
      for _ = 1, 8 do
        if (b % 2) ~= (m % 2) then r = r + bit end
        b, m, bit = math.floor(b / 2), math.floor(m / 2), bit * 2
      end
      out[i] = string.char(r)
    end
    assert.equal("hello", table.concat(out))
    assert.equal(0x8A, assert(c:encode("x", "pong")):byte(1))
    assert.equal(0x88, assert(c:close_frame(1000, "bye")):byte(1))
    assert.equal(2 + 4, #assert(c:close_frame())) -- no body
    assert.has_error(function() c:close_frame(1005) end)
    assert.has_error(function() c:encode("x", "nope") end)
  end)
end)
