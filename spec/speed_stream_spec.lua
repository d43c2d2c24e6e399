-- Per event (issue 17): the C engine's sockets decode each message where they read it
-- (ws:receive_value, ws:poll's decode mode), with no Lua string of it; the stream reads
-- its frames that way. Each value must be what json.decode gives for the same bytes.
local json = require "misskey.json"
local server = require "support.server"

local srv, transport

local function connect(path)
  return transport.websocket{ url = "ws://127.0.0.1:" .. srv.port .. "/" .. path, timeout = 5 }
end

local ARRAY_MT = getmetatable(json.array())

setup(function()
  srv = server.start{ script = "wsserver.py" }
  transport = require("misskey.transport.curl").new()
end)
teardown(function() srv:stop() end)

describe("ws:receive_value", function()
  it("gives json.decode's value for each message, text or binary", function()
    local ws = assert(connect("echo"))
    local texts = {
      '{"a":[1,2,{"b":null}],"c":"\\u00e9t\\u00e9","d":1.5,"e":[]}',
      '"just a string"', "12", "true", "[]",
      ("["):rep(50) .. ("]"):rep(50),
      json.encode{ text = ("ノート"):rep(3000), n = 1 }, -- longer than one read: copied from `in`
    }
    for _, text in ipairs(texts) do
      assert.is_true(ws:send(text))
      local value = ws:receive_value(5)
      assert.same(json.decode(text), value)
    end
    assert.is_true(ws:send('{"list":[1,2]}', "binary"))
    local value = ws:receive_value(5)
    assert.same({ 1, 2 }, value.list)
    assert.equal(ARRAY_MT, getmetatable(value.list)) -- arrays marked as json.decode marks them
    assert.is_true(ws:send("null"))
    assert.equal(json.null, ws:receive_value(5))
    ws:close()
  end)

  it("gives false for a message that is not JSON, and goes on", function()
    local ws = assert(connect("echo"))
    for _, text in ipairs{ "not json", "", '{"a":1} trailing', '{"a":' } do
      assert.is_true(ws:send(text))
      assert.is_false(ws:receive_value(5), text)
    end
    -- Bytes that are not UTF-8 in a binary message: what json.decode makes of them.
    local bad = '{"s":"\255\254"}'
    assert.is_true(ws:send(bad, "binary"))
    local got = ws:receive_value(5)
    local want = json.decode(bad)
    if want == nil then assert.is_false(got) else assert.same(want, got) end
    assert.is_true(ws:send('{"ok":true}'))
    assert.same({ ok = true }, ws:receive_value(5))
    ws:close()
  end)

  it("decodes a message that came in fragments", function()
    local ws = assert(connect("fragmented-json"))
    local value = ws:receive_value(5)
    assert.same({ a = { 1, 2 }, b = "wörld" }, value)
    ws:close()
  end)

  it("decodes what was queued before it was first used; ws:receive then raises", function()
    local ws = assert(connect("with-101")) -- "early bird" arrived with the 101, queued as a string
    assert.is_false(ws:receive_value(5))
    assert.error_matches(function() ws:receive(1) end, "ws:receive_value was used")
    ws:close()
  end)

  it("reports a timeout and a closed socket as ws:receive does", function()
    local ws = assert(connect("echo"))
    local v, msg, err = ws:receive_value(0.05)
    assert.is_nil(v)
    assert.equal("timeout", err.kind)
    assert.matches("no message within", msg)
    ws:close()
    local after, _, closed = ws:receive_value(1)
    assert.is_nil(after)
    assert.equal("network", closed.kind)
  end)

  it("leaves no long queue behind once a burst is read", function()
    local ws = assert(connect("long-burst")) -- 300 messages: more than a queue is kept for (256)
    for i = 0, 298 do assert.same({ n = i }, ws:receive_value(5)) end
    local burst = ws._queue -- this socket's own queue (a spec of the transport may look)
    assert.same({ n = 299 }, ws:receive_value(5))
    assert.are_not.equal(burst, ws._queue)
    assert.is_nil(next(ws._queue))
    assert.is_nil(ws:receive_value(0.01))
    ws:close()
  end)
end)
