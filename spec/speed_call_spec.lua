-- Per call (issue 17): what engine:post does to cost libcurl less on every API call, and that
-- each of these sends exactly what engine:request sends for the same request. A prepared
-- request keeps its URLs parsed (src/urlcache.c, CURLOPT_CURLU). Nothing here measures time.
local core = require "misskey.core"
local server = require "support.server"

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
