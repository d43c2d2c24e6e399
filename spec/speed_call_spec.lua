-- Per call (issue 17): what engine:post does to cost libcurl less on every API call, and that
-- each of these sends exactly what engine:request sends for the same request. A prepared
-- request keeps its URLs parsed (src/urlcache.c, CURLOPT_CURLU), and sends its User-Agent
-- among its headers unless a proxy variable is set (a CONNECT gets only CURLOPT_USERAGENT's).
-- Nothing here measures time.
local core = require "misskey.core"
local json = require "misskey.json"
local new_client = require "support.client"
local server = require "support.server"

local LUA = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")

local srv

setup(function() srv = server.start() end)
teardown(function() srv:stop() end)

local function decode(s) return require("cjson").decode(s) end

-- Steps engine `e` until every transfer of `list` is done (bounded).
local function drive(e, list)
  for _ = 1, 2000 do
    local all = true
    for _, t in ipairs(list) do all = all and t:done() end
    if all then return end
    e:step(0.01)
  end
  error("transfers did not finish")
end

-- The echo route's view of a finished transfer.
local function echoed(t)
  local status, _, body = t:result()
  assert(status, _)
  return decode(body)
end

local UA = "spec-agent/3"
local PREPARED = { headers = { ["Content-Type"] = "application/json" }, user_agent = UA }

describe("engine:post's parsed URLs", function()
  it("reach each URL's own path and query, more URLs in flight at once than the cache keeps", function()
    local e = core.engine()
    local p = core.prepare(PREPARED)
    local list = {}
    for i = 1, 20 do -- the cache keeps 8: URLs still in use are replaced under running transfers
      list[i] = e:post(p, ("%s/echo/u%d?n=%d"):format(srv.url, i, i), ('{"i":%d}'):format(i))
    end
    p = nil -- luacheck: ignore (the transfers keep it, and their URLs, alive)
    collectgarbage()
    drive(e, list)
    for i, t in ipairs(list) do
      local r = echoed(t)
      assert.equal("/echo/u" .. i, r.path)
      assert.equal("n=" .. i, r.query)
      assert.equal(i, r.json.i)
    end
    e:close()
  end)

  it("send a URL as engine:request sends it: escapes, query and port as given", function()
    local e = core.engine()
    local p = core.prepare(PREPARED)
    local url = srv.url .. "/echo/a%20b/%7Ec?x=1%2F2&y=%E3%81%82"
    for _ = 1, 3 do -- parsed, then from the cache twice
      local a = e:post(p, url, "{}")
      local b = e:request{ method = "POST", url = url, body = "{}", user_agent = UA,
        headers = PREPARED.headers }
      drive(e, { a, b })
      local ra, rb = echoed(a), echoed(b)
      assert.equal(rb.path, ra.path)
      assert.equal(rb.query, ra.query)
      assert.equal(rb.headers.host, ra.headers.host)
      assert.equal("/echo/a%20b/%7Ec", ra.path)
    end
    e:close()
  end)

  it("a pooled handle that last posted a parsed URL goes to the URL of its next request", function()
    local e = core.engine()
    local p = core.prepare(PREPARED)
    for i = 1, 3 do
      local a = e:post(p, srv.url .. "/echo/prepared", "{}")
      drive(e, { a })
      assert.equal("/echo/prepared", echoed(a).path)
      -- The same kind of request (a POST, same user agent): the handle keeps its options.
      local b = e:request{ method = "POST", url = srv.url .. "/echo/plain" .. i, body = "{}", user_agent = UA,
        headers = PREPARED.headers }
      drive(e, { b })
      assert.equal("/echo/plain" .. i, echoed(b).path)
      local c = e:request{ method = "GET", url = srv.url .. "/echo/get" .. i }
      drive(e, { c })
      assert.equal("/echo/get" .. i, echoed(c).path)
    end
    e:close()
  end)

  it("a URL libcurl rejects fails as it does through engine:request", function()
    local e = core.engine()
    local p = core.prepare(PREPARED)
    for _, url in ipairs{ "http://[::1/api/x", "http://exa mple.invalid/api/x", "nosuch://host/api/x" } do
      local a = e:post(p, url, "{}")
      local b = e:request{ method = "POST", url = url, body = "{}", user_agent = UA, headers = PREPARED.headers }
      drive(e, { a, b })
      local sa, ma, ra, ca = a:result()
      local sb, mb, rb, cb = b:result()
      assert.is_nil(sa, url)
      assert.is_nil(sb, url)
      assert.equal(mb, ma)
      assert.equal(rb, ra)
      assert.equal(cb, ca)
    end
    e:close()
  end)
end)

-- Runs `code` in a child interpreter with `env` (and no other proxy variables); its output.
local function child(code, env)
  local prelude = ("package.path = %q; package.cpath = %q\n"):format(package.path, package.cpath)
  local cmd = "env -u no_proxy -u NO_PROXY -u all_proxy -u ALL_PROXY -u http_proxy -u https_proxy "
    .. env .. " " .. LUA .. " -e " .. server.shell_quote(prelude .. code) .. " 2>&1"
  local h = assert(io.popen(cmd, "r"))
  local out = h:read("*a")
  h:close()
  return out
end

describe("engine:post's Accept-Encoding", function()
  -- Learnt from the head libcurl sent for the prepared request's first call, then among its
  -- headers: the same header as libcurl's own, once, and replies are still decompressed.
  it("is libcurl's own, on the first call and on every later one, new handles and pooled ones", function()
    local e = core.engine()
    local p = core.prepare(PREPARED)
    local url = srv.url .. "/api/test/echo"
    local mine = e:request{ method = "GET", url = url }
    drive(e, { mine })
    local libcurls = echoed(mine).headers["accept-encoding"]
    assert.is_string(libcurls)
    for round = 1, 4 do
      local list = {}
      for i = 1, round do list[i] = e:post(p, url, "{}") end -- several in flight from the 2nd round
      collectgarbage() -- the probing transfer is gone before its handle serves again
      drive(e, list)
      for _, t in ipairs(list) do
        assert.equal(libcurls, echoed(t).headers["accept-encoding"], round)
      end
    end
    e:close()
  end)

  it("still has replies decompressed", function()
    local e = core.engine()
    local p = core.prepare(PREPARED)
    for _ = 1, 3 do
      local t = e:post(p, srv.url .. "/api/test/gzip", '{"size":5000}')
      drive(e, { t })
      local r = echoed(t)
      assert.equal(5000, r.size)
      assert.is_string(r.acceptEncoding)
      assert.matches("gzip", r.acceptEncoding)
    end
    e:close()
  end)

  it("is the request's own when its headers have one", function()
    local e = core.engine()
    local p = core.prepare{ headers = { ["accept-encoding"] = "identity" }, user_agent = UA }
    for _ = 1, 3 do
      local t = e:post(p, srv.url .. "/api/test/echo", "{}")
      drive(e, { t })
      assert.equal("identity", echoed(t).headers["accept-encoding"])
    end
    e:close()
  end)

  it("leaves nothing of the reading on the handle: no output, nothing of it in later requests", function()
    local out = child(([[
      local core = require "misskey.core"
      local e = core.engine()
      local p = core.prepare{ headers = { ["Content-Type"] = "application/json" }, user_agent = "x/1" }
      local ok = 0
      for i = 1, 6 do
        local t = i %% 3 == 0 and e:request{ method = "POST", url = %q, body = "{}", user_agent = "x/1" }
          or e:post(p, %q, "{}") -- the handle the first post read on serves the next as it is
        for _ = 1, 500 do
          if t:done() then break end
          e:step(0.05)
        end
        if t:result() == 200 then ok = ok + 1 end
        collectgarbage()
      end
      io.write("ok " .. ok)
    ]]):format(srv.url .. "/api/test/echo", srv.url .. "/api/test/echo"), "")
    assert.equal("ok 6", out) -- CURLOPT_VERBOSE left on would have written to stderr
  end)
end)

describe("engine:post's User-Agent", function()
  it("is sent once, as engine:request sends it, with none of the empty or overridden ones", function()
    local e = core.engine()
    local cases = {
      { prepared = PREPARED, ua = UA },
      { prepared = { headers = { ["User-Agent"] = "own/1" }, user_agent = UA }, ua = "own/1" },
      { prepared = { headers = {}, user_agent = "" }, ua = nil },
      { prepared = { headers = {} }, ua = nil },
    }
    for i, case in ipairs(cases) do
      local p = core.prepare(case.prepared)
      local req = { method = "POST", url = srv.url .. "/api/test/echo", body = "{}" }
      for k, v in pairs(case.prepared) do req[k] = v end
      for _ = 1, 2 do -- a new handle, then a pooled one
        local a, b = e:post(p, req.url, "{}"), e:request(req)
        drive(e, { a, b })
        local ra, rb = echoed(a), echoed(b)
        assert.equal(rb.headers["user-agent"], ra.headers["user-agent"], i)
        assert.equal(case.ua, ra.headers["user-agent"], i)
        -- a header sent twice would arrive joined with ", "
        assert.is_nil((ra.headers["user-agent"] or ""):find(",", 1, true), i)
      end
    end
    e:close()
  end)

  it("with a proxy variable set, reaches a proxy's CONNECT as engine:request's does", function()
    local proxy = server.start{ script = "connect_proxy.py" }
    -- https through the proxy: a CONNECT, to a port where nothing listens (the proxy answers 502).
    local out = child(([[
      local core = require "misskey.core"
      local e = core.engine()
      local req = { method = "POST", url = %q, body = "{}", user_agent = %q,
        headers = { ["Content-Type"] = "application/json", Authorization = "Bearer secret" } }
      local a = e:post(core.prepare(req), req.url, "{}")
      local b = e:request(req)
      for _ = 1, 500 do
        if a:done() and b:done() then break end
        e:step(0.05)
      end
      io.write(a:done() and b:done() and "done" or "running")
    ]]):format("https://proxied.example:1/api/x", UA), "https_proxy=" .. proxy.url)
    local res = assert(new_client{ host = proxy.url, token = false }:http{ path = "/log" })
    proxy:stop()
    assert.equal("done", out)
    local heads = json.decode(res.body)
    assert.equal(2, #heads)
    for _, head in ipairs(heads) do
      assert.matches("^CONNECT proxied%.example:1 HTTP/1%.1\r\n", head)
      assert.matches("\r\nUser%-Agent: spec%-agent/3\r\n", head)
      assert.is_nil(head:find("secret", 1, true))
      assert.is_nil(head:find("application/json", 1, true))
    end
  end)
end)

describe("the engine's and the transfers' methods", function()
  -- They check their arguments' types against metatables they carry, not by name: each must
  -- still take only its own type, and raise as luaL_checkudata does for anything else.
  it("take only their own userdata, and raise naming the type expected", function()
    local e = core.engine()
    local p = core.prepare(PREPARED)
    local t = e:post(p, srv.url .. "/api/test/echo", "{}")
    drive(e, { t })
    local file = io.tmpfile()
    for _, wrong in ipairs{ t, p, file, "x", 1, false } do
      assert.has_error(function() e.finish(wrong, t) end)
      assert.has_error(function() e.post(wrong, p, srv.url, "{}") end)
      local ok, msg = pcall(e.step, wrong, 0)
      assert.is_false(ok)
      assert.matches("misskey.Engine expected", msg)
    end
    for _, wrong in ipairs{ e, p, file, "x", 1, false } do
      local ok, msg = pcall(t.done, wrong)
      assert.is_false(ok)
      assert.matches("misskey.Transfer expected", msg)
      ok, msg = pcall(t.result, wrong)
      assert.is_false(ok)
      assert.matches("misskey.Transfer expected", msg)
    end
    for _, wrong in ipairs{ t, e, file, "x" } do
      local ok, msg = pcall(e.post, e, wrong, srv.url, "{}")
      assert.is_false(ok)
      assert.matches("misskey.Prepared expected", msg)
    end
    -- engine:finish on something that is not a transfer of it: nil at once (its caller steps)
    assert.is_nil(e:finish(p))
    assert.equal("done", e:finish(t))
    file:close()
    e:close()
    assert.has_error(function() e:step(0) end, "attempt to use a closed engine")
    assert.has_error(function() e:post(p, srv.url, "{}") end, "attempt to use a closed engine")
  end)
end)

-- setenv/unsetenv for this process, where the interpreter offers them (LuaJIT's ffi, luaposix).
local function env_setter()
  if rawget(_G, "jit") then
    local ffi = require "ffi"
    pcall(ffi.cdef, "int setenv(const char *, const char *, int); int unsetenv(const char *);")
    return function(name, value)
      if value then ffi.C.setenv(name, value, 1) else ffi.C.unsetenv(name) end
    end
  end
  local ok, stdlib = pcall(require, "posix.stdlib")
  if ok then return function(name, value) stdlib.setenv(name, value) end end
  return nil
end

describe("a prepared request made with no proxy variable set", function()
  local setenv = env_setter()
  local NAMES = { "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY" }

  it("goes straight to the server, also once a proxy variable appears; engine:request still reads it", function()
    if not setenv then
      pending("needs setenv (LuaJIT's ffi or luaposix)")
      return
    end
    local saved = {}
    for _, name in ipairs(NAMES) do saved[name] = os.getenv(name) end
    local e = core.engine()
    finally(function()
      for _, name in ipairs(NAMES) do setenv(name, saved[name]) end
      e:close()
    end)
    for _, name in ipairs(NAMES) do setenv(name, nil) end
    local url = srv.url .. "/api/test/echo"
    local direct = core.prepare(PREPARED)
    setenv("http_proxy", "http://127.0.0.1:" .. server.free_port()) -- nothing listens there
    for _ = 1, 2 do -- a new handle, then a pooled one
      local a = e:post(direct, url, '{"direct":true}')
      local b = e:request{ method = "POST", url = url, body = "{}", user_agent = UA, headers = PREPARED.headers }
      local c = e:post(core.prepare(PREPARED), url, "{}") -- made with the variable set: libcurl's proxies
      drive(e, { a, b, c })
      assert.is_true(echoed(a).json.direct)
      for _, t in ipairs{ b, c } do
        local status, msg, _, code = t:result()
        assert.is_nil(status)
        assert.equal(7, code, msg) -- CURLE_COULDNT_CONNECT: to the proxy
      end
    end
  end)
end)
