-- The WebSocket client against hostile servers and proxies: upgrade replies that
-- break HTTP or RFC 6455 4.1, a ping flood, a server that never reads, invalid
-- close codes, refused upgrades that echo the token, an http_proxy, an engine
-- closed under an open socket, and option values out of range. The servers are
-- spec/support/wsserver.py (the path picks the misbehaviour) and
-- spec/support/connect_proxy.py.
local core = require "misskey.core"
local json = require "misskey.json"
local server = require "support.server"
local new_client = require "support.client"
local leak = require "support.leak"

local TOKEN = "WsToKeN0123456789abcdefABCDEFGHIJ"
local LUA = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
local MiB = 1024 * 1024

local srv, transport

setup(function()
  srv = server.start{ script = "wsserver.py" }
  transport = require("misskey.transport.curl").new()
end)
teardown(function() srv:stop() end)

-- GET on the WebSocket server's control routes (/log, /release, /push, /set-streaming/...).
local function control(path)
  local res = assert(new_client{ host = srv.url, token = false }:http{ path = path })
  return json.decode(res.body)
end

local function url(path) return "ws://127.0.0.1:" .. srv.port .. "/" .. path end

local function connect(path, extra)
  local req = { url = url(path), timeout = 5 }
  for k, v in pairs(extra or {}) do req[k] = v end
  return transport.websocket(req)
end

-- A socket opened on an engine of its own, stepped here (bounded), for what the
-- transport hides: the poll's `want`, and engine:close() under an open socket.
local function raw_open(e, path)
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

local function pid()
  local f = assert(io.open("/proc/self/stat"))
  local line = f:read("*l")
  f:close()
  return line:match("^(%d+)")
end

-- Open descriptors but pipes: the popen's own pipe shows both its ends until the
-- parent closes the one it does not keep, which raced with `ls` (a flaky +1).
local function open_fds()
  local h = assert(io.popen("ls -l /proc/" .. pid() .. "/fd | grep -vc -e 'pipe:' -e '^total'"))
  local n = tonumber(h:read("*a"))
  h:close()
  return n
end

-- Resident memory of this process in bytes (/proc/self/statm counts pages).
local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local resident = f:read("*a"):match("^%d+ (%d+)")
  f:close()
  return tonumber(resident) * 4096
end

-- Runs `code` in a child interpreter (a crash fails the spec instead of killing
-- busted): returns what it wrote and its exit status.
local function child(code, env)
  local prelude = ("package.path = %q; package.cpath = %q\n"):format(package.path, package.cpath)
  local cmd = "env -u no_proxy -u NO_PROXY -u all_proxy -u ALL_PROXY -u http_proxy -u https_proxy "
    .. (env or "") .. " " .. LUA .. " -e " .. server.shell_quote(prelude .. code) .. " 2>&1; echo \" EXIT:$?\""
  local h = assert(io.popen(cmd, "r"))
  local out = h:read("*a")
  h:close()
  return out:match("^(.-) EXIT:(%d+)%s*$")
end

describe("upgrade replies", function()
  local ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" -- RFC 6455 1.3, for the key dGhlIHNhbXBsZSBub25jZQ==
  local function reply(extra)
    return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      .. "Sec-WebSocket-Accept: " .. ACCEPT .. "\r\n" .. (extra or "") .. "\r\n"
  end

  it("a NUL byte in a header line or the status line fails the connect, in a child that must not crash", function()
    for _, path in ipairs{ "nul-header", "nul-status" } do
      local out, status = child(([[
        local t = require("misskey.transport.curl").new()
        local ws, msg, err = t.websocket{ url = %q, timeout = 5 }
        io.write(ws and "OPEN" or (err.kind .. ": " .. msg))
      ]]):format(url(path)))
      assert.equal("0", status, path .. ": " .. tostring(out))
      assert.equal("network: websocket: websocket upgrade reply contains a NUL byte", out)
    end
  end)

  it("client:stream against such a server reports the failure (what `misskey stream` runs)", function()
    control("/set-streaming/nul-header")
    local ok, msg, err = new_client{ host = srv.url, token = TOKEN }:stream{ reconnect = false }:run()
    control("/set-streaming/echo")
    assert.is_nil(ok)
    assert.equal("network", err.kind)
    assert.matches("NUL byte", msg)
  end)

  it("a 101 without Upgrade: websocket, Connection: upgrade or with an extension not offered is refused", function()
    local cases = {
      ["no-upgrade"] = "no Upgrade: websocket", ["wrong-upgrade"] = "no Upgrade: websocket",
      ["no-connection"] = "no Connection: upgrade", extension = "extension the client did not offer",
      ["long-head"] = "too long",
    }
    for path, why in pairs(cases) do
      local ws, msg, err = connect(path)
      assert.is_nil(ws, path)
      assert.equal("network", err.kind)
      assert.matches(why, msg, 1, true)
    end
  end)

  it("takes token lists and any case in Upgrade and Connection", function()
    local ws = assert(connect("token-lists"))
    assert.is_true(ws:send("lists"))
    assert.equal("lists", ws:receive(5))
    ws:close()
  end)

  it("the parser, on its own: statuses, header lines, the accept key, bytes after the head", function()
    local r = core._ws_reply
    assert.same({ "open", 101, #reply(), nil }, { r(reply(), ACCEPT) })
    assert.same({ "open", 101, #reply() }, { r(reply() .. "\129\005Hello\0", ACCEPT) }) -- frames after it
    assert.equal("more", (r(reply():sub(1, -2), ACCEPT)))
    assert.equal("more", (r("", ACCEPT)))
    assert.same({ "refused", 401, 29 }, { r("HTTP/1.1 401 Unauthorized\r\n\r\nbody", ACCEPT) })
    assert.same({ "refused", 400, 16 }, { r("HTTP/1.0 400\r\n\r\n", ACCEPT) })
    for _, bad in ipairs{ "HTTP/2 101 x\r\n\r\n", "HTTP/1.1 1010 x\r\n\r\n", "HTTP/1.1 10 x\r\n\r\n",
                          "HTTP/1.1 +01 x\r\n\r\n", "ICY 200 OK\r\n\r\n", "\r\n\r\n", "HTTP/1.1 101\0\r\n\r\n" } do
      assert.equal("invalid", (r(bad, ACCEPT)), bad)
    end
    assert.equal("invalid", (r("HTTP/1.1 101 x\r\nX: a\0", ACCEPT))) -- a NUL before the end of the head
    local function why(s) return select(4, r(s, ACCEPT)) end
    assert.matches("NUL", why(reply("X-A: a\0b\r\n")))
    assert.matches("folds", why(reply(" folded\r\n")))
    assert.matches("malformed", why(reply("no colon\r\n")))
    assert.matches("malformed", why(reply(": empty name\r\n")))
    assert.matches("Accept", why(reply("Sec-WebSocket-Accept: " .. ACCEPT .. "\r\n"))) -- two of them
    assert.matches("Accept", why(reply():gsub("Accept: s3pP", "Accept: s3pQ")))
    assert.matches("subprotocol", why(reply("Sec-WebSocket-Protocol: chat\r\n")))
    assert.equal("open", (r(reply("Sec-WebSocket-Extensions:\r\n"), ACCEPT))) -- empty: none chosen
    assert.matches("too long", why("HTTP/1.1 101 x\r\n" .. ("x"):rep(70000)))
    assert.equal("more", (r("HTTP/1.1 101 x\r\n" .. ("x"):rep(60000), ACCEPT)))
  end)
end)

describe("a server that floods pings and never reads", function()
  it("keeps one pong pending, not one per ping: memory stays flat", function()
    collectgarbage()
    local before = rss()
    local ws = assert(connect("ping-flood"))
    -- 8 MiB of empty pings (4 Mi of them) arrive before "done"; every pong we owe stays here.
    assert.equal("done", ws:receive(60))
    local grown = rss() - before
    -- One pong per ping, 6 bytes each, was 24 MiB less what the kernel took (53 MiB
    -- with the event per ping); now the growth is under 1 MiB.
    assert.is_true(grown < 8 * MiB, ("grew by %.1f MiB"):format(grown / MiB))
    assert.is_true(ws:buffered() <= 2 * (125 + 6), "buffered " .. ws:buffered())
    control("/release")
    ws:close()
    local pongs = control("/log").pongs
    assert.is_true(#pongs >= 1)
  end)
end)

describe("a server that does not read", function()
  it("above the high-water mark, nothing is read until the sends drain", function()
    local e = core.engine()
    local ws, q = raw_open(e, "hold")
    local chunk = ("x"):rep(64 * 1024)
    for _ = 1, 400 do -- the kernel's buffers take some MiB first; then well past the mark
      if ws:buffered() > MiB then break end
      assert(ws:send(chunk))
    end
    assert.is_true(ws:buffered() > MiB)
    control("/push") -- the server sends "pushed"
    local fd = ws:fd()
    e:watch(fd, "r")
    local _, _, ready = e:step(5)
    e:unwatch(fd)
    assert.equal("r", ready[fd]) -- it is there to read ...
    local tail, want, events = ws:poll(q, 0)
    assert.equal(0, tail) -- ... and is left in the socket
    assert.equal("w", want)
    assert.is_nil(events)
    control("/release") -- the server reads everything now
    for _ = 1, 500 do
      e:watch(fd, want)
      e:step(5)
      e:unwatch(fd)
      tail, want = ws:poll(q, tail)
      if tail > 0 or not want then break end
    end
    assert.equal("pushed", q[1])
    ws:close()
    e:close()
  end)

  it("fails the connection with 1008 once more than 4 MiB wait to be sent", function()
    local ws = assert(connect("hold"))
    local chunk = ("y"):rep(64 * 1024)
    local sent, msg, err = 0, nil, nil
    for _ = 1, 1000 do -- 64 MiB: the kernel's buffers hold some MiB, 4 MiB more must fail
      local ok
      ok, msg, err = ws:send(chunk)
      if not ok then break end
      sent = sent + #chunk
    end
    assert.is_table(err, "every send succeeded")
    assert.equal("network", err.kind)
    assert.equal(1008, err.close_code)
    assert.matches("not reading", msg)
    assert.is_true(sent < 24 * MiB, "sent " .. sent) -- what the kernel took, and 4 MiB
    assert.equal(0, ws:buffered()) -- released at once
    local none, _, again = ws:receive(1)
    assert.is_nil(none)
    assert.equal(1008, again.close_code)
    control("/release")
  end)
end)

describe("close frames", function()
  -- The code of the close frame the server got in answer on `path`: ours is sent
  -- before receive returns, but the server may read it after answering /log.
  local function close_reply(path)
    for _ = 1, 100 do
      local replies = control("/log").close_replies or {}
      if replies[path] ~= nil then return replies[path] end
    end
    error("the server saw no close frame on " .. path)
  end

  it("fails the connection with 1002 on a close code no endpoint may send", function()
    for _, code in ipairs{ 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535 } do
      local ws = assert(connect("close-" .. code))
      local msg, text, err = ws:receive(5)
      assert.is_nil(msg)
      assert.equal(1002, err.close_code, code .. ": " .. text)
      assert.equal(1002, close_reply("close-" .. code), code)
    end
  end)

  it("echoes the codes a server may send", function()
    for _, code in ipairs{ 1000, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999 } do
      local ws = assert(connect("close-" .. code))
      local _, _, err = ws:receive(5)
      assert.equal(code, err.close_code)
      assert.equal(code, close_reply("close-" .. code))
    end
  end)

  it("ws:close refuses a code or reason it may not send", function()
    local e = core.engine()
    local ws = raw_open(e, "echo")
    assert.has_error(function() ws:close(1005) end,
      "bad argument #1 to 'close' (a close code is 1000-1003, 1007-1014 or 3000-4999)")
    assert.has_error(function() ws:close(70000) end)
    assert.has_error(function() ws:close(1000, ("r"):rep(124)) end)
    assert.has_error(function() ws:close(1000, "\255") end)
    ws:close(4000, ("r"):rep(123))
    e:close()
  end)
end)

describe("engine:close() under open WebSockets", function()
  it("releases their sockets, curl state and buffers at once", function()
    collectgarbage() -- sockets of earlier specs that are only waiting for their finalizer
    local before, kept = open_fds(), {}
    for i = 1, 20 do
      local e = core.engine()
      kept[i] = raw_open(e, "echo")
      e:close()
    end
    -- The leak was one fd per engine (20). A little slack: a descriptor of the test
    -- server's pipe or of an earlier spec may open or close meanwhile.
    local after = open_fds()
    assert.is_true(after <= before + 3, after .. " fds, " .. before .. " before")
    for _, ws in ipairs(kept) do
      assert.equal("closed", ws:state())
      assert.equal(0, ws:_memory())
      local _, want, events = ws:poll({}, 0)
      assert.is_nil(want)
      assert.same({ { "error", "its engine was closed" } }, events)
    end
  end)

  it("a closed socket holds no buffers; a big message leaves none behind", function()
    local e = core.engine()
    local ws, q, tail = raw_open(e, "echo")
    assert(ws:send(("m"):rep(3 * MiB), "binary"))
    for _ = 1, 500 do
      local want
      e:watch(ws:fd(), ws:buffered() > 0 and "rw" or "r")
      e:step(5)
      e:unwatch(ws:fd())
      tail, want = ws:poll(q, tail)
      if tail > 0 or not want then break end
    end
    assert.equal(3 * MiB, #q[1])
    assert.is_true(ws:_memory() <= 256 * 1024, "holds " .. ws:_memory())
    ws:close()
    e:close()
    assert.equal(0, ws:_memory())
  end)
end)

describe("refused upgrades that echo the request target", function()
  local function stream_failure(scenario, auth)
    control("/set-streaming/" .. scenario)
    local client = new_client{ host = srv.url, token = TOKEN, auth = auth }
    local stream = client:stream{ reconnect = false }
    local seen = {}
    stream:on("error", function(err) seen[#seen + 1] = err end)
    stream:on("disconnected", function(msg, err) seen[#seen + 1] = { msg, err } end)
    local ok, msg, err = stream:run()
    control("/set-streaming/echo")
    return ok, msg, err, seen
  end

  for _, scenario in ipairs{ "refuse-echo", "redirect301", "redirect302" } do
    it(scenario .. ": the token is in no field of any error", function()
      local ok, msg, err, seen = stream_failure(scenario)
      assert.is_nil(ok)
      assert.equal("http", err.kind)
      leak.assert_none(TOKEN, msg, err, seen)
      assert.matches("%*%*%*", err.body) -- the echo was there, redacted
    end)
  end

  it("the transport itself hands the reply head on (it does not know the token)", function()
    local ws, _, err = connect("redirect302?i=" .. TOKEN)
    assert.is_nil(ws)
    assert.equal(302, err.status)
    assert.matches("Location: https://127.0.0.1/redirect302%?i=" .. TOKEN, err.body)
  end)
end)

describe("through an http_proxy", function()
  it("tunnels with CONNECT: the proxy never sees the target or the token", function()
    local proxy = server.start{ script = "connect_proxy.py" }
    -- The host never resolves: the proxy tunnels any CONNECT to 127.0.0.1 at that port.
    local out, status = child(([[
      local t = require("misskey.transport.curl").new()
      local ws, msg = t.websocket{ url = %q, timeout = 5 }
      if not ws then io.write("FAILED " .. msg) return end
      ws:send("through")
      io.write(ws:receive(5) or "nothing")
      ws:close()
    ]]):format("ws://proxied.example:" .. srv.port .. "/echo?i=" .. TOKEN), "http_proxy=" .. proxy.url)
    local res = assert(new_client{ host = proxy.url, token = false }:http{ path = "/log" })
    proxy:stop()
    assert.equal("0", status)
    assert.equal("through", out)
    local heads = json.decode(res.body)
    assert.equal(1, #heads)
    assert.matches("^CONNECT proxied%.example:" .. srv.port .. " HTTP/1%.1\r\n", heads[1])
    leak.assert_none(TOKEN, heads)
    local targets = control("/log").targets
    assert.equal("/echo?i=" .. TOKEN, targets[#targets]) -- the server, at the tunnel's end, got it
  end)
end)

describe("websocket options out of range", function()
  it("raise naming the option, in Lua and in C", function()
    local ws_connect = require("misskey.transport.websocket").connect
    local engine = core.engine()
    for _, case in ipairs{
      { "max_message", -1 }, { "max_message", 0 / 0 }, { "max_message", "1" },
      { "connect_timeout", 0 }, { "connect_timeout", -1 }, { "connect_timeout", 0 / 0 }, { "timeout", 0 },
      { "url", "http://127.0.0.1/" }, { "headers", "x" },
    } do
      local req = { url = url("echo") }
      req[case[1]] = case[2]
      local ok, err = pcall(ws_connect, engine, req)
      assert.is_false(ok)
      assert.matches("bad option '" .. case[1] .. "' to 'websocket'", err, 1, true)
      if case[1] == "max_message" or case[1] == "connect_timeout" then
        ok, err = pcall(engine.websocket, engine, req)
        assert.is_false(ok)
        assert.matches("'" .. case[1] .. "'", err, 1, true)
      end
    end
    engine:close()
  end)

  it("huge values are clamped, never cast out of range", function()
    for _, v in ipairs{ 1e300, math.huge } do
      local ws = assert(connect("echo", { max_message = v, connect_timeout = v }))
      assert(ws:send("big limits"))
      assert.equal("big limits", ws:receive(5))
      ws:close()
    end
  end)
end)
