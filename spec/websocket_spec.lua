-- The WebSocket client (src/ws.c, src/wsframe.c) over real sockets against a
-- raw server that also breaks RFC 6455 on purpose (spec/support/wsserver.py),
-- and the frame codec against known vectors.
local core = require "misskey.core"
local misskey = require "misskey"
local server = require "support.server"
local json = require "misskey.json"

local srv, transport

local function log()
  local res = assert(misskey.new{ host = "http://127.0.0.1:" .. srv.port, token = false }:http{ path = "/log" })
  return json.decode(res.body)
end

local function connect(path, extra)
  local req = { url = "ws://127.0.0.1:" .. srv.port .. "/" .. path, timeout = 5 }
  for k, v in pairs(extra or {}) do req[k] = v end
  return transport.websocket(req)
end

setup(function()
  srv = server.start{ script = "wsserver.py" }
  transport = require("misskey.transport.curl").new()
end)
teardown(function() srv:stop() end)

describe("websocket codec", function()
  it("parses the RFC 6455 examples", function()
    -- 5.7: a single-frame unmasked text message "Hello"
    local used, fin, op, payload = core._ws_parse("\129\005\072\101\108\108\111")
    assert.same({ 7, true, 1, "Hello" }, { used, fin, op, payload })
    -- a fragment: "Hel" without FIN, then a continuation "lo"
    assert.same({ 5, false, 1, "Hel" }, { core._ws_parse("\001\003\072\101\108") })
    assert.same({ 4, true, 0, "lo" }, { core._ws_parse("\128\002\108\111") })
    -- 256 bytes with the 16-bit length, 65536 with the 64-bit one
    local used2, _, _, p2 = core._ws_parse("\130\126\001\000" .. ("b"):rep(256))
    assert.equal(260, used2)
    assert.equal(256, #p2)
    local used3 = core._ws_parse("\130\127\000\000\000\000\000\001\000\000" .. ("c"):rep(65536))
    assert.equal(65546, used3)
  end)

  it("asks for more bytes when a frame is incomplete", function()
    assert.equal(0, core._ws_parse(""))
    assert.equal(0, core._ws_parse("\129"))
    assert.equal(0, core._ws_parse("\129\005Hel"))
    assert.equal(0, core._ws_parse("\130\126\001"))
  end)

  it("refuses what a server must not send", function()
    assert.equal(-1002, core._ws_parse("\193\000"))              -- RSV1 without an extension
    assert.equal(-1002, core._ws_parse("\131\000"))              -- opcode 3 is reserved
    assert.equal(-1002, core._ws_parse("\129\129\000\000\000\000x")) -- masked by the server
    assert.equal(-1002, core._ws_parse("\009\000"))              -- a fragmented ping
    assert.equal(-1002, core._ws_parse("\137\126\000\128" .. ("p"):rep(128))) -- a control frame > 125
    assert.equal(-1002, core._ws_parse("\129\126\000\005hello")) -- a 16-bit length for 5 bytes
    assert.equal(-1009, core._ws_parse("\129\010helloworld", 5)) -- over the cap
  end)

  it("encodes masked client frames with the given mask", function()
    -- RFC 6455 5.7: "Hello" masked with 37 fa 21 3d
    assert.equal("\129\133\055\250\033\061\127\159\077\081\088", core._ws_encode(1, "Hello", "\055\250\033\061"))
    local big = core._ws_encode(2, ("x"):rep(70000), "\0\0\0\0")
    assert.equal("\130\255\0\0\0\0\0\1\017\112\0\0\0\0", big:sub(1, 14))
    assert.equal(70014, #big)
  end)

  it("validates UTF-8 strictly", function()
    assert.is_true(core._utf8_valid("plain ascii"))
    assert.is_true(core._utf8_valid("wörld ✓ 🎉"))
    assert.is_false(core._utf8_valid("\255"))
    assert.is_false(core._utf8_valid("\192\175"))          -- overlong '/'
    assert.is_false(core._utf8_valid("\237\160\128"))      -- a surrogate
    assert.is_false(core._utf8_valid("\244\144\128\128"))  -- past U+10FFFF
    assert.is_false(core._utf8_valid("\226\130"))          -- cut short
    -- every position of a sequence within and across the eight-byte ASCII steps
    for pad = 0, 17 do
      local a = ("a"):rep(pad)
      for _, ok in ipairs{ "é", "日本", "🎉", "\224\160\128", "\237\159\191", "\240\144\128\128", "\244\143\191\191" } do
        assert.is_true(core._utf8_valid(a .. ok .. a), pad .. " " .. ok)
        assert.is_true(core._utf8_valid(a .. ok .. ok .. "x" .. a .. ok), pad .. " " .. ok)
      end
      for _, bad in ipairs{ "\128", "\193\191", "\224\159\191", "\237\160\128", "\240\143\191\191",
                            "\244\144\128\128", "\245\128\128\128", "\230\151", "\195" } do
        assert.is_false(core._utf8_valid(a .. bad .. a), pad .. " " .. bad:byte())
        assert.is_false(core._utf8_valid(a .. "日" .. bad), pad .. " " .. bad:byte())
      end
    end
  end)
end)

describe("websocket client", function()
  it("sends masked text and receives the echo; closes with a handshake", function()
    local ws = assert(connect("echo?i=tok&_t=1"))
    assert.is_true(ws:send("hello"))
    assert.equal("hello", ws:receive(5))
    assert.is_true(ws:send(("é"):rep(40000)))
    assert.equal(("é"):rep(40000), ws:receive(5))
    ws:close(1000, "bye")
    local l = log()
    assert.equal(0, l.unmasked)
    assert.equal(1000, l.closes[#l.closes])
    assert.equal("/echo?i=tok&_t=1", l.targets[#l.targets]) -- the query string reaches the server
  end)

  it("answers a ping with a pong", function()
    local ws = assert(connect("ping"))
    assert.equal("got pong:are-you-there", ws:receive(5))
    ws:close()
  end)

  it("assembles a fragmented message with a ping between the fragments", function()
    local ws = assert(connect("fragmented"))
    assert.equal("Hello, fragmented wörld", ws:receive(5))
    ws:close()
    local pongs = log().pongs
    assert.equal("mid", pongs[#pongs])
  end)

  it("takes 64-bit and 16-bit lengths", function()
    local ws = assert(connect("big"))
    assert.equal(("x"):rep(70000), ws:receive(5))
    local bin = ws:receive(5)
    assert.equal(300, #bin)
    assert.equal("\0\1\2", bin:sub(1, 3))
    ws:close()
  end)

  it("keeps a frame that arrives in the same packet as the 101", function()
    local ws = assert(connect("with-101"))
    assert.equal("early bird", ws:receive(5))
    ws:close()
  end)

  local function fails_with(path, code, extra)
    local ws = assert(connect(path, extra))
    local msg, _, err = ws:receive(5)
    assert.is_nil(msg)
    assert.equal("network", err.kind)
    assert.equal(code, err.close_code)
    -- the server saw our close frame with that code
    local closes = log().closes
    assert.equal(code, closes[#closes])
  end

  it("closes with 1007 on invalid UTF-8 in text", function() fails_with("invalid-utf8", 1007) end)
  it("closes with 1002 on an unknown opcode", function() fails_with("bad-opcode", 1002) end)
  it("closes with 1002 on reserved bits", function() fails_with("reserved-bits", 1002) end)
  it("closes with 1002 on a masked server frame", function() fails_with("masked", 1002) end)
  it("closes with 1002 on a fragmented control frame", function() fails_with("fragmented-control", 1002) end)
  it("closes with 1009 on a message over max_message", function()
    fails_with("oversized", 1009, { max_message = 1000 })
  end)

  it("echoes the server's close and reports its code and reason", function()
    local ws = assert(connect("server-close"))
    local msg, text, err = ws:receive(5)
    assert.is_nil(msg)
    assert.equal(1001, err.close_code)
    assert.matches("going away", text)
    local closes = log().closes
    assert.equal(1001, closes[#closes])
  end)

  it("reports a dropped connection", function()
    local ws = assert(connect("drop"))
    assert.equal("bye", ws:receive(5))
    local msg, _, err = ws:receive(5)
    assert.is_nil(msg)
    assert.equal(1006, err.close_code)
  end)

  it("an upgrade refused with 401 is err.kind auth with the status", function()
    local ws, msg, err = connect("refuse401")
    assert.is_nil(ws)
    assert.equal("auth", err.kind)
    assert.equal(401, err.status)
    assert.matches("401", msg)
  end)

  it("refuses a wrong Sec-WebSocket-Accept", function()
    local ws, msg, err = connect("bad-accept")
    assert.is_nil(ws)
    assert.equal("network", err.kind)
    assert.matches("Sec%-WebSocket%-Accept", msg)
  end)

  it("times out a receive with nothing to read", function()
    local ws = assert(connect("echo"))
    local msg, _, err = ws:receive(0.05)
    assert.is_nil(msg)
    assert.equal("timeout", err.kind)
    ws:close()
  end)

  it("a refused TCP connection is a network error", function()
    local ws, _, err = transport.websocket{ url = "ws://127.0.0.1:" .. server.free_port() .. "/", timeout = 5 }
    assert.is_nil(ws)
    assert.equal("network", err.kind)
  end)

  it("receives inside scheduler tasks while others run", function()
    local got = {}
    misskey.run(function()
      local a = misskey.spawn(function()
        local ws = assert(connect("echo"))
        ws:send("from a")
        got.a = ws:receive(5)
        ws:close()
      end)
      local b = misskey.spawn(function()
        local ws = assert(connect("echo"))
        ws:send("from b")
        got.b = ws:receive(5)
        ws:close()
      end)
      a:join()
      b:join()
    end)
    assert.same({ a = "from a", b = "from b" }, got)
  end)
end)
