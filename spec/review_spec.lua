-- Gaps found by the acceptance review of issues 13 and 14, one describe each: what
-- the library still did wrong after those issues' fixes, proved against the test
-- servers (spec/support/wsserver.py) and, for the kernel's random source, in a
-- child interpreter with spec/support/failrandom.c preloaded.
local baseurl = require "misskey.baseurl"
local new_client = require "support.client"
local server = require "support.server"
local with_env = require "support.env"

local LUA = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")

describe("a WebSocket connect when the kernel's random source fails", function()
  local dir, shim

  setup(function()
    dir = server.temp_dir()
    shim = dir .. "/failrandom.so"
    local ok = os.execute("env -u LD_PRELOAD cc -shared -fPIC -o " .. server.shell_quote(shim)
      .. " spec/support/failrandom.c -ldl")
    assert(ok == true or ok == 0, "could not build spec/support/failrandom.c")
  end)
  teardown(function() server.remove_dir(dir) end)

  it("is nil, msg, err from the transport and from stream:run, not an internal error", function()
    local code = [[
      local t = require("misskey.transport.curl").new()
      local ws, msg, err = t.websocket{ url = "ws://127.0.0.1:9/streaming", timeout = 2 }
      io.write("ws ", tostring(ws), " ", tostring(err and err.kind), " ", tostring(msg), "\n")
      require("misskey.env").replace(function() return nil end)
      local s = require("misskey").new{ host = "http://127.0.0.1:9", token = "tok" }:stream{ reconnect = false }
      local ok, m, e = s:run()
      io.write("run ", tostring(ok), " ", tostring(e and e.kind), " ", tostring(m), "\n")
    ]]
    -- Under make asan the sanitizer runtime must stay first; valgrind's preloads must go.
    local preload = os.getenv("LD_PRELOAD") or ""
    local with = preload:find("asan", 1, true) and (preload .. " " .. shim) or shim
    local prelude = ("package.path = %q; package.cpath = %q\n"):format(package.path, package.cpath)
    local h = assert(io.popen("env FAILRANDOM=EINTR LD_PRELOAD=" .. server.shell_quote(with) .. " timeout 20 "
      .. LUA .. " -e " .. server.shell_quote(prelude .. code) .. " 2>/dev/null; echo \"exit $?\"", "r"))
    local out = h:read("*a")
    h:close()
    local why = "websocket: the kernel's random source failed (Interrupted system call)"
    assert.matches("ws nil network " .. why .. "\n", out, 1, true)
    assert.matches("run nil network " .. why .. "\n", out, 1, true)
    assert.matches("exit 0", out, 1, true)
  end)
end)

describe("stream:run when the stream's reader task fails", function()
  it("returns the failure instead of true (a unit with Restart=on-failure must see it)", function()
    local transport = {
      request = function() return nil, "unused", { kind = "network" } end,
      websocket = function() error("reader bug") end,
    }
    local s = new_client{ host = "https://misskey.example", token = "tok", transport = transport }:stream()
    local ok, msg, err = s:run()
    assert.is_nil(ok)
    assert.matches("reader bug", msg, 1, true)
    assert.equal("task", err.kind)
  end)
end)

describe("an upgrade reply dripped one byte at a time", function()
  local srv
  setup(function() srv = server.start{ script = "wsserver.py" } end)
  teardown(function() srv:stop() end)

  it("times out at the connect's deadline instead of waiting anew after each byte", function()
    local t = require("misskey.transport.curl").new()
    -- The server takes about 13 s for the whole 101, a byte every 0.1 s.
    local ws, msg, err = t.websocket{ url = "ws://127.0.0.1:" .. srv.port .. "/drip-101", timeout = 1 }
    assert.is_nil(ws, "the upgrade completed: the deadline was restarted by each byte")
    assert.equal("timeout", err.kind, msg)
    assert.matches("upgrade timed out", msg, 1, true)
  end)
end)

describe("the plain-http check of a proxy address", function()
  -- libcurl takes the host before any '/', '?' or '#' (checked with curl 7.88): what
  -- follows may hold an '@' that is no user info.
  it("reads the proxy's host as libcurl does, not after an '@' in its path, query or fragment", function()
    for _, proxy in ipairs{ "http://10.9.9.9:3128#@127.0.0.1", "http://10.9.9.9:3128?@127.0.0.1",
                            "http://10.9.9.9:3128/@127.0.0.1", "10.9.9.9:3128#@127.0.0.1" } do
      local why = baseurl.cleartext("http://127.0.0.1:3000", function(name)
        return name == "http_proxy" and proxy or nil
      end)
      assert.matches("through the proxy 10.9.9.9", tostring(why), 1, true)
    end
    -- user info still counts: the host is after the last '@' before the path
    assert.is_nil(baseurl.cleartext("http://127.0.0.1:3000", function(name)
      return name == "http_proxy" and "http://user:p@ss@127.0.0.1:3128/" or nil
    end))
  end)
end)

describe("a server's OpenAPI document with values of the wrong kind", function()
  local json = require "misskey.json"
  local openapi = require "misskey.openapi"
  local schema = require "misskey.schema"

  -- One endpoint per shape that used to raise from Lua: in client:schema() itself, or
  -- later in client:request's validation of every call to that endpoint.
  local DOC = [[{"openapi":"3.1.0","info":{"version":"2026.1.0"},"paths":{
    "/form":{"post":{"requestBody":{"content":{"multipart/form-data":true}}}},
    "/plain":{"post":{"requestBody":{"content":{"application/json":null}}}},
    "/types":{"post":{"requestBody":{"content":{"application/json":{"schema":
      {"type":"object","properties":{"a":{"type":["string",{},7,null]}}}}}}}},
    "/lengths":{"post":{"requestBody":{"content":{"application/json":{"schema":
      {"type":"object","properties":{"a":{"type":"string","minLength":1.5,"maxLength":-2},
                                     "b":{"type":"array","minItems":0.5,"maxItems":"3"}}}}}}}},
    "/keys":{"post":{"requestBody":{"content":{"application/json":{"schema":
      {"allOf":[{"properties":[{"type":"string"}]},{"properties":{"a":{"type":"string"}}}]}}}}}}}}]]

  it("is taken by client:schema() and validated against without an internal error", function()
    local function reply(value)
      return { status = 200, headers = { ["content-type"] = "application/json" }, body = json.encode(value) }
    end
    local transport = { request = function(req)
      local path = req.url:match("^https?://[^/]+(/[^?]*)")
      if path == "/nodeinfo/2.1" then return reply{ software = { name = "misskey", version = "2026.1.0" } } end
      if path == "/api/meta" then return reply{ version = "2026.1.0" } end
      if path == "/api.json" then
        return { status = 200, headers = { ["content-type"] = "application/json" }, body = DOC }
      end
      return { status = 404, headers = {}, body = "" }
    end }
    local ok, info = with_env({}, function() -- no cache directory: nothing is written
      local c = require("misskey").new{ host = "https://schema.example", token = false, transport = transport }
      return pcall(c.schema, c)
    end)
    assert.is_true(ok, tostring(info))
    assert.equal(5, info.endpoints)

    local cat = assert(openapi.convert(json.decode(DOC)))
    local cases = {
      { "types", { a = 1 } }, { "types", { a = "x" } },
      { "lengths", { a = "" } }, { "lengths", { a = ("x"):rep(9) } }, { "lengths", { b = json.array{} } },
      { "keys", { zzz = 1 } }, { "keys", { a = "x" } }, { "form", { a = 1 } },
    }
    for _, case in ipairs(cases) do
      local fine, msg = pcall(schema.validate, cat.endpoints[case[1]], case[2])
      assert.is_true(fine, case[1] .. ": " .. tostring(msg))
    end
  end)
end)
