-- The hostile-server specs of spec/hostile_http_spec.lua and spec/hostile_ws_spec.lua
-- where they apply to the nginx transport: nginx runs each scenario
-- (spec/nginx/scenarios.lua) against the test servers and answers its outcome as
-- JSON. What only concerns libcurl or the C engine (curl's own caps, engine:close,
-- the proxy tunnel) stays in those files. LuaJIT pass only, as spec/nginx_spec.lua.
local json = require "misskey.json"
local nginx = require "support.nginx"
local server = require "support.server"

if not rawget(_G, "jit") then return end
local missing = nginx.missing()
if missing then
  io.stderr:write("spec/nginx_hostile_spec.lua: skipped: " .. missing .. "\n")
  it("hostile servers inside nginx (skipped: " .. missing .. ")", function() pending(missing) end)
  return
end

local srv, wss, ngx_

setup(function()
  srv = server.start()
  wss = server.start{ script = "wsserver.py" }
  ngx_ = nginx.start{ upstream = srv.url, ws = wss.url:gsub("^http", "ws") }
end)

teardown(function()
  if ngx_ then ngx_:stop() end
  wss:stop()
  srv:stop()
end)

local function run(name) return ngx_:get("/scenario", { name = name }, 120) end

describe("hostile HTTP servers, inside nginx", function()
  it("20 gzip bombs: each refused (not decompressed: bad JSON; or too_large), memory flat", function()
    local out = run("bomb")
    assert.equal(20, #out.kinds)
    for _, kind in ipairs(out.kinds) do assert.truthy(kind == "decode/nil" or kind == "http/too_large", kind) end
    assert.truthy(out.grew < 16, ("the worker grew by %.1f MiB"):format(out.grew))
  end)

  it("endless header lines, trailers and interim responses stop at the 64 KiB cap", function()
    for _, name in ipairs{ "endless-headers", "endless-trailers", "endless-continue" } do
      local out = run(name)
      assert.is_false(out.ok, name)
      assert.equal("http", out.err.kind, name)
      assert.equal("too_large", out.err.reason, name)
      assert.matches("response headers larger than the 65536 byte limit", out.message, 1, true)
    end
  end)

  it("a reply that stalls is cut by the low-speed abort, a timeout", function()
    local out = run("dribble")
    assert.is_false(out.ok)
    assert.equal("timeout", out.err.kind)
    assert.matches("Operation too slow", out.message)
  end)

  it("a token echoed in an error reply is in no field", function()
    local out = run("echo_token")
    assert.is_false(out.ok)
    assert.not_matches("hostile%-token", json.encode(out))
    assert.equal("token=***", out.err.body)
  end)
end)

describe("hostile WebSocket servers, inside nginx", function()
  it("upgrade replies that break RFC 6455 fail the connect, naming why", function()
    local out = run("upgrades")
    local why = {
      ["nul-header"] = "NUL byte", ["nul-status"] = "NUL byte", ["no-upgrade"] = "no Upgrade: websocket",
      ["wrong-upgrade"] = "no Upgrade: websocket", ["no-connection"] = "no Connection: upgrade",
      extension = "extension the client did not offer", ["long-head"] = "too long",
      ["bad-accept"] = "Sec-WebSocket-Accept", refuse401 = "HTTP 401",
    }
    for path, text in pairs(why) do
      assert.is_false(out[path].opened, path)
      assert.matches(text, out[path].message, 1, true)
    end
    assert.equal("auth", out.refuse401.err.kind)
    assert.equal(401, out.refuse401.err.status)
  end)

  it("frames no server may send fail the connection with the close code due", function()
    local out = run("frames")
    local codes = { masked = 1002, ["reserved-bits"] = 1002, ["bad-opcode"] = 1002, ["fragmented-control"] = 1002,
      ["invalid-utf8"] = 1007, oversized = 1009 }
    for path, code in pairs(codes) do
      assert.is_nil(out[path].value, path)
      assert.equal("network", out[path].err.kind, path)
      assert.equal(code, out[path].err.close_code, path)
    end
  end)

  it("a ping flood while nothing is read keeps one pong pending: memory flat", function()
    local out = run("ping_flood")
    assert.equal("done", out.value)
    assert.truthy(out.buffered <= 2 * (125 + 6), "buffered " .. out.buffered)
    assert.truthy(out.grew < 16, ("the worker grew by %.1f MiB"):format(out.grew))
  end)

  it("a server that never reads: more than 4 MiB waiting fails the socket with 1008", function()
    -- Twice, after the scenarios above: a request that reuses an earlier one's memory in
    -- nginx must not be confused with it.
    for _ = 1, 2 do
      local out = run("not_reading")
      assert.equal("network", out.err.kind)
      assert.equal(1008, out.err.close_code)
      assert.matches("not reading", out.message)
      assert.truthy(out.sent < 24 * 1024 * 1024, "sent " .. out.sent)
      assert.equal(0, out.buffered)
    end
  end)

  it("a refused upgrade that echoes the token: client:stream reports it redacted from every field", function()
    local out = run("refuse_echo")
    assert.is_nil(out.ok)
    assert.equal("http", out.err.kind)
    assert.equal(400, out.err.status)
    assert.matches("%*%*%*", out.err.body)
    out.token = nil
    assert.not_matches("hostile%-token", json.encode(out))
  end)
end)
