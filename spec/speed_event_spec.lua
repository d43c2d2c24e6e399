-- Per event (issue 17): the decoder (src/json.c) keeps short string values it met twice
-- (512 slots, found by length and first and last 8 bytes, the middle compared too), as it
-- keeps object keys. What it builds must not change, and what it holds must stay bounded.
-- (Lua 5.1 string literals: decimal escapes only, no \x or \u{}.)
local json = require "misskey.json"

-- Each value twice in a row (the second time it is cached), then the array again (from the cache).
local function roundtrip(values)
  local parts = {}
  for _, v in ipairs(values) do
    local s = json.encode(v)
    parts[#parts + 1] = s
    parts[#parts + 1] = s
  end
  local doc = "[" .. table.concat(parts, ",") .. "]"
  for _ = 1, 3 do
    local got = json.decode(doc)
    assert.equal(#parts, #got)
    for i, v in ipairs(values) do
      assert.equal(v, got[2 * i - 1], ("%q"):format(v))
      assert.equal(v, got[2 * i], ("%q"):format(v))
    end
  end
end

describe("json.decode's value cache", function()
  it("tells apart values that share their length and first and last eight bytes", function()
    for len = 17, 100 do
      local values = {}
      for i = 1, 20 do -- alike but for one byte in the middle
        values[i] = ("a"):rep(8) .. ("m"):rep(len - 17) .. string.char(64 + i) .. ("z"):rep(8)
      end
      roundtrip(values)
    end
  end)

  it("gives back every value of every length, short, long, UTF-8 and ASCII", function()
    local values = {}
    for len = 1, 100 do
      values[#values + 1] = ("v"):rep(len)
      values[#values + 1] = ("v"):rep(len - 1) .. "w" -- differs in the last byte only
      values[#values + 1] = "w" .. ("v"):rep(len - 1) -- in the first only
      values[#values + 1] = ("\227\129\130"):rep(len) -- あ..., 3 bytes each
    end
    roundtrip(values)
  end)

  it("reads a short value at the very end of the text as inside a longer one", function()
    for len = 1, 9 do
      local v = ("q"):rep(len)
      assert.equal(v, json.decode('"' .. v .. '"'))
      assert.same({ v, v, v }, json.decode(('["%s","%s","%s"]'):format(v, v, v)))
      assert.equal(v, json.decode('"' .. v .. '"'))
      assert.equal(v, json.decode('"' .. v .. '"'))
    end
  end)

  it("keeps escaped values and values of a text that is not UTF-8 as they were", function()
    assert.same({ "a\"b", "a\"b", "ab", "ab" }, json.decode('["a\\"b","a\\"b","a\\u0062","ab"]'))
    local bad = json.decode('["x\255","x\255","x\255"]')
    assert.same({ "x\239\191\189", "x\239\191\189", "x\239\191\189" }, bad)
    assert.same({ "x\239\191\189", "x\239\191\189" }, json.decode('["x\239\191\189","x\239\191\189"]'))
  end)

  it("holds no more than its slots, whatever values a peer makes up, each sent twice", function()
    local function fresh(round)
      local parts = {}
      for i = 1, 500 do
        local v = ('"r%d-%d-%s"'):format(round, i, ("p"):rep(80)) -- 90-odd bytes: still cached
        parts[#parts + 1] = v
        parts[#parts + 1] = v
      end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for round = 1, 100 do json.decode(fresh(round)) end
    collectgarbage("collect")
    collectgarbage("collect")
    local base = collectgarbage("count")
    for round = 101, 300 do assert.equal(1000, #json.decode(fresh(round))) end -- 100,000 values, ~9 MiB
    collectgarbage("collect")
    collectgarbage("collect")
    -- 512 values of at most 96 bytes are ~70 KiB
    assert.is_true(collectgarbage("count") - base < 512, "the heap grew by "
      .. (collectgarbage("count") - base) .. " KiB")
  end)
end)

describe("ws:receive_value", function()
  local server = require "support.server"
  local srv, transport
  setup(function()
    srv = server.start{ script = "wsserver.py" }
    transport = require("misskey.transport.curl").new()
  end)
  teardown(function() srv:stop() end)
  local function connect(path)
    return assert(transport.websocket{ url = "ws://127.0.0.1:" .. srv.port .. "/" .. path, timeout = 5 })
  end

  describe("decoding where the message was read", function()
    -- The decoder stops on a NUL: the byte after each message is made one while it decodes,
    -- and must be given back, or the next frame's header is lost.
    it("decodes each of 100 messages read at once, and the frames after each stay whole", function()
      local ws = connect("burst")
      for i = 0, 99 do assert.same({ n = i }, ws:receive_value(5)) end
      ws:close()
    end)

    it("decodes a message that fills a whole read, and the one after it", function()
      local ws = connect("fill-read")
      assert.equal(("f"):rep(65530), ws:receive_value(5))
      assert.same({ after = 1 }, ws:receive_value(5))
      ws:close()
    end)
  end)

  describe("the queue", function()
    -- A busy socket's polls each bring up to ~27 notes (100 short messages here): a new queue
    -- per poll grew its array anew each time (on glibc, an allocation of 1 KiB or more
    -- consolidated every block Lua had freed).
    it("is kept for the next poll after a burst of up to 256 messages", function()
      local ws = connect("burst")
      local queue
      for i = 0, 99 do
        assert.same({ n = i }, ws:receive_value(5))
        if i == 0 then queue = ws._queue end -- this socket's own queue (a spec of the transport may look)
      end
      assert.equal(queue, ws._queue)
      assert.is_nil(next(ws._queue)) -- every message handed out is gone from it
      ws:close()
    end)
  end)
end)

describe("the UTF-8 check's 3-byte path", function()
  local core = require "misskey.core"
  -- Unicode's table 3-7 for a lead byte E0..EF: E0 needs A0..BF next, ED 80..9F, others 80..BF;
  -- then one more continuation byte.
  local function valid3(c, b1, b2)
    local lo, hi = 0x80, 0xBF
    if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    return b1 >= lo and b1 <= hi and b2 >= 0x80 and b2 <= 0xBF
  end

  it("finds the first byte >= 0x80 wherever it is in a long ASCII run", function()
    for pos = 0, 80 do
      local a, b = ("a"):rep(pos), ("b"):rep(80 - pos)
      assert.is_true(core._utf8_valid(a .. "\195\169" .. b), pos) -- é
      assert.is_false(core._utf8_valid(a .. "\255" .. b), pos)
      assert.is_false(core._utf8_valid(a .. "\195" .. b), pos) -- cut short by ASCII
      assert.is_false(core._utf8_valid(a .. "\128" .. b), pos) -- a continuation byte alone
    end
  end)

  it("judges every lead byte E0..EF with every next byte as Unicode does, alone, amid text and cut short", function()
    local char = string.char
    for c = 0xE0, 0xEF do
      for b1 = 0, 255 do
        for _, b2 in ipairs{ 0x00, 0x41, 0x7F, 0x80, 0x95, 0xBF, 0xC0, 0xE3, 0xFF } do
          local seq, want = char(c, b1, b2), valid3(c, b1, b2)
          assert.equal(want, core._utf8_valid(seq), ("%02X %02X %02X"):format(c, b1, b2))
          assert.equal(want, core._utf8_valid("a" .. seq .. "\227\129\130z"), ("%02X %02X %02X amid"):format(c, b1, b2))
        end
        assert.is_false(core._utf8_valid(char(c, b1)))
        assert.is_false(core._utf8_valid("\227\129\130" .. char(c, b1)))
      end
    end
  end)
end)

describe("a channel event's way to its handlers", function()
  local misskey = require "misskey"
  local loop = require "misskey.loop"

  -- Frames as the reader hands them to the stream (Stream:_message, the reader's own step).
  local function deliver(stream, ch, frames)
    loop.run(function()
      for _, body in ipairs(frames) do
        stream:_message{ type = "channel", body = { id = ch.id, type = "note", body = body } }
      end
    end)
  end

  it("calls on and once handlers with exactly the body, and \"*\" with the event and the body", function()
    local client = misskey.new { host = "http://127.0.0.1:1", token = "t" }
    local stream = client:stream { backfill = false, reconnect = false }
    local ch = stream:channel("homeTimeline")
    local got = {}
    ch:on("note", function(...) got[#got + 1] = { "on", select("#", ...), ... } end)
    ch:once("note", function(...) got[#got + 1] = { "once", select("#", ...), ... } end)
    ch:on("*", function(...) got[#got + 1] = { "*", select("#", ...), ... } end)
    local a, b = { id = "a" }, { id = "b" }
    deliver(stream, ch, { a, b })
    assert.same({ { "on", 1, a }, { "once", 1, a }, { "*", 2, "note", a }, { "on", 1, b }, { "*", 2, "note", b } }, got)
    stream:close()
  end)
end)

describe("json.decode's key cache, by sets of slots", function()
  it("decodes right keys that share a set, more of them than a set holds, again and again", function()
    -- 300 keys over 64 sets of 4: many sets get more keys than slots, in changing orders
    local keys = {}
    for i = 1, 300 do keys[i] = "k" .. i end
    for round = 1, 4 do
      local parts, want = {}, {}
      for i = 1, #keys do
        local k = keys[(i * round * 7) % #keys + 1]
        parts[#parts + 1] = ('"%s":{"%s":%d}'):format(k, k, i)
        want[k] = { [k] = i }
      end
      assert.same(want, json.decode("{" .. table.concat(parts, ",") .. "}"))
    end
  end)
end)

describe("json.decode's words", function()
  it("reads true, false and null, and refuses each with any one byte changed, cut short or run on", function()
    for word, value in pairs{ ["true"] = true, ["false"] = false, null = json.null } do
      assert.equal(value, json.decode(word))
      assert.same({ value, value }, json.decode("[" .. word .. "," .. word .. "]"))
      for i = 1, #word do
        local bad = word:sub(1, i - 1) .. "x" .. word:sub(i + 1)
        assert.is_nil(json.decode(bad), bad)
        assert.is_nil(json.decode("[" .. bad .. "]"), bad)
        assert.is_nil(json.decode(word:sub(1, i - 1)), word:sub(1, i - 1))
      end
      assert.is_nil(json.decode(word .. "x"))
      assert.is_nil(json.decode("[" .. word .. "e]"))
    end
  end)
end)

describe("loop.spawn_now1", function()
  local loop = require "misskey.loop"

  it("runs fn(a) at once with exactly that argument, its parked tasks apart from spawn_now's", function()
    local got = {}
    local function one(...) got[#got + 1] = { "one", select("#", ...), ... } end
    local function many(...) got[#got + 1] = { "many", select("#", ...), ... } end
    loop.run(function()
      for i = 1, 40 do
        assert.equal("done", loop.spawn_now1(one, i).status)
        loop.spawn_now(many, i, nil, "x")
        loop.spawn_now(many)
      end
    end)
    assert.equal(120, #got)
    for i = 1, 40 do
      assert.same({ "one", 1, i }, got[3 * i - 2])
      assert.same({ "many", 3, i, nil, "x" }, got[3 * i - 1])
      assert.same({ "many", 0 }, got[3 * i])
    end
  end)

  it("goes on as a task when fn waits, and reports fn's error instead of raising it", function()
    local order, errs = {}, {}
    local old = loop.on_error(function(err) errs[#errs + 1] = tostring(err) end)
    loop.run(function()
      local task = loop.spawn_now1(function(a)
        order[#order + 1] = "start " .. a
        loop.sleep(0)
        order[#order + 1] = "end " .. a
      end, "w")
      order[#order + 1] = "caller"
      assert.is_not.equal("done", task.status)
      loop.await_task(task)
      loop.spawn_now1(function(a) error("boom " .. a, 0) end, "e")
      loop.spawn_now1(function(a) order[#order + 1] = "after " .. a end, "z") -- a new coroutine, or a parked one
    end)
    loop.on_error(old)
    assert.same({ "start w", "caller", "end w", "after z" }, order)
    assert.equal(1, #errs)
    assert.matches("boom e", errs[1])
  end)
end)
