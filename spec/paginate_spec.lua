-- client:paginate against the test server's 1,000 items (spec/support/server.py,
-- test/items and test/items-offset), with a small catalogue of its own: the
-- specs never depend on the generated endpoint catalogue.
local misskey = require "misskey"
local paginate = require "misskey.paginate"
local new_client = require "support.client"
local server = require "support.server"

local CATALOGUE = { endpoints = {
  ["test/items"] = { credential = false, write = false, returns = 200, paginate = "id", date = true, page_max = 100,
    params = { limit = { type = "integer", minimum = 1, maximum = 100, default = 10 } } },
  ["test/items-offset"] = { credential = false, write = false, returns = 200, paginate = "offset", page_max = 100,
    params = { limit = { type = "integer", minimum = 1, maximum = 100, default = 10 } } },
  ["test/items-small"] = { write = false, paginate = "id", page_max = 30 },
  ["test/log"] = { write = false },
  ["meta"] = { write = false },
} }

local srv, client
local key_n = 0

local function new(opts)
  local c = new_client({ host = srv.url, token = false }, opts)
  c:use_catalogue(CATALOGUE)
  return c
end

-- A fresh key for the server's request log.
local function key()
  key_n = key_n + 1
  return "p" .. key_n .. "-" .. tostring(os.time())
end

local function log(k)
  return assert(client:request("test/log", { key = k }))
end

local function walk(it)
  local out = {}
  for item in it do out[#out + 1] = item end
  return out
end

setup(function()
  srv = server.start()
  client = new()
end)
teardown(function() srv:stop() end)

describe("client:paginate by id", function()
  it("walks all 1,000 items newest first, each once", function()
    local k = key()
    local items = walk(client:paginate("test/items", { key = k }))
    assert.equal(1000, #items)
    for i, item in ipairs(items) do
      assert.equal(1001 - i, item.n)
      if i > 1 then assert.is_true(item.id < items[i - 1].id) end
    end
    local l = log(k)
    assert.equal(11, l.count) -- 10 full pages of 100, then an empty one
    assert.equal(100, l.params[1].limit)
    assert.is_nil(l.params[1].untilId)
    assert.equal(items[100].id, l.params[2].untilId)
  end)

  it("walks oldest first with direction = \"newer\" (sinceId pages come in ascending order)", function()
    local k = key()
    local it = client:paginate("test/items", { key = k }, { direction = "newer", page_size = 64 })
    local items = walk(it)
    assert.equal(1000, #items)
    for i, item in ipairs(items) do assert.equal(i, item.n) end
    local l = log(k)
    assert.equal(17, l.count) -- 15 full pages of 64, one of 40, and the empty one that ends the walk
    assert.equal("0", l.params[1].sinceId)
    assert.equal(items[64].id, l.params[2].sinceId)
    assert.is_nil(it:error())
  end)

  it("is callable, has next(), and works as a generic-for iterator on this Lua", function()
    local it = client:paginate("test/items", { key = key() }, { max = 3 })
    assert.equal(1000, it:next().n)
    assert.equal(999, it().n)
    local rest = {}
    for item in it do rest[#rest + 1] = item.n end
    assert.same({ 998 }, rest)
    assert.is_nil(it:next())
    assert.matches("misskey.Paginator", tostring(it))
  end)

  it("stops after max items and asks only for what is left", function()
    local k = key()
    local items = walk(client:paginate("test/items", { key = k }, { max = 250 }))
    assert.equal(250, #items)
    assert.equal(751, items[250].n)
    local l = log(k)
    assert.equal(3, l.count)
    assert.equal(50, l.params[3].limit)
  end)

  it("caps page_size at the endpoint's page_max; an empty page ends the walk", function()
    local k = key()
    local items = walk(client:paginate("test/items", { key = k, sinceId = "0" }, { direction = "newer",
      page_size = 1000 }))
    assert.equal(1000, #items)
    local l = log(k)
    for i = 1, l.count do assert.equal(100, l.params[i].limit) end
    -- 10 full pages, then an empty one
    assert.equal(11, l.count)
    local k2 = key()
    local it = client:paginate("test/items", { key = k2, limit = 7 }, { max = 20 })
    assert.equal(20, #walk(it))
    assert.same({ 7, 7, 6 }, { log(k2).params[1].limit, log(k2).params[2].limit, log(k2).params[3].limit })
  end)

  it("keeps the caller's untilId and sinceId as bounds", function()
    local all = walk(client:paginate("test/items", { key = key() }, { direction = "newer", max = 20 }))
    local items = walk(client:paginate("test/items", { key = key(), sinceId = all[5].id, untilId = all[16].id }))
    assert.equal(10, #items)
    assert.equal(15, items[1].n)
    assert.equal(6, items[10].n)
  end)
end)

describe("cursors", function()
  it("resume after 350 items in a new iterator: nothing skipped or repeated", function()
    local it = client:paginate("test/items", { key = key() }, { page_size = 40, max = 900 })
    local first = {}
    for _ = 1, 350 do first[#first + 1] = it:next() end
    local cursor = it:cursor()
    assert.is_string(cursor)
    assert.truthy(#cursor < 40, cursor)
    -- The first iterator has a page buffered past 350: the cursor does not care.
    local it2 = client:paginate("test/items", { key = key() }, { page_size = 40, cursor = cursor })
    local rest = walk(it2)
    assert.equal(650, #rest) -- a resumed walk takes its own max: none, so all the rest
    assert.equal(1000 - 350, rest[1].n)
    for i = 2, #rest do assert.equal(rest[i - 1].n - 1, rest[i].n) end
    assert.equal(1, rest[#rest].n)
  end)

  it("resume in another process", function()
    local it = client:paginate("test/items", { key = key() }, { direction = "newer" })
    for _ = 1, 350 do it:next() end
    local cursor = it:cursor()
    local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
    local script = ([[
      package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
      package.cpath = "./build/%s/?.so;" .. package.cpath
      local c = require("misskey").new{ host = %q, token = false }
      c:use_catalogue{ endpoints = { ["test/items"] = { write = false, paginate = "id", page_max = 100 } } }
      local it = c:paginate("test/items", {}, { cursor = %q })
      local n = 0
      for item in it do n = n + 1; io.write(item.n, " ") end
      io.write("count=", n, " err=", tostring(it:error()), "\n")
    ]]):format(version, srv.url, cursor)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local p = assert(io.popen(("env -u MISSKEY_HOST -u MISSKEY_TOKEN -u LD_PRELOAD %s %s 2>&1")
      :format(interpreter, path)))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    assert.matches("count=650 err=nil", out, 1, true)
    local nums = {}
    for n in out:match("^(.-)count="):gmatch("(%d+) ") do nums[#nums + 1] = tonumber(n) end
    assert.equal(650, #nums)
    for i, n in ipairs(nums) do assert.equal(350 + i, n) end
  end)

  it("made before any item starts from the beginning; after the end it finds nothing new", function()
    local it = client:paginate("test/items", { key = key() }, { direction = "newer" })
    local c0 = it:cursor()
    assert.equal(1000, #walk(it))
    assert.equal(0, #walk(client:paginate("test/items", {}, { cursor = it:cursor() })))
    assert.equal(1000, #walk(client:paginate("test/items", {}, { cursor = c0 })))
  end)

  it("a walk resumed after one that had max takes its own max (none: all the rest)", function()
    local it = client:paginate("test/items", {}, { max = 5 })
    walk(it)
    local c = it:cursor()
    assert.equal(995, #walk(client:paginate("test/items", {}, { cursor = c })))
    local more = walk(client:paginate("test/items", {}, { cursor = c, max = 3 }))
    assert.same({ 995, 994, 993 }, { more[1].n, more[2].n, more[3].n })
  end)

  it("are refused for another endpoint, when damaged, or against the options", function()
    local c = client:paginate("test/items", {}, { max = 5 }):cursor()
    assert.has_error(function() client:paginate("test/items-small", {}, { cursor = c }) end)
    assert.has_error(function() client:paginate("test/items", {}, { cursor = c .. "x" }) end)
    assert.has_error(function() client:paginate("test/items", {}, { cursor = "1io..." }) end)
    assert.has_error(function() client:paginate("test/items", {}, { cursor = 12 }) end)
    local ok, err = pcall(client.paginate, client, "test/items", {}, { cursor = c, direction = "newer" })
    assert.is_false(ok)
    assert.matches("direction", err)
  end)
end)

describe("offset endpoints", function()
  it("walk with offset += page size", function()
    local k = key()
    local items = walk(client:paginate("test/items-offset", { key = k }, { page_size = 100 }))
    assert.equal(1000, #items)
    for i, item in ipairs(items) do assert.equal(1001 - i, item.n) end
    local l = log(k)
    assert.equal(11, l.count)
    assert.equal(0, l.params[1].offset)
    assert.equal(100, l.params[2].offset)
    assert.equal(1000, l.params[11].offset)
  end)

  it("resume from a cursor", function()
    local it = client:paginate("test/items-offset", {}, { page_size = 30 })
    for _ = 1, 45 do it:next() end
    local rest = walk(client:paginate("test/items-offset", {}, { cursor = it:cursor(), max = 2 }))
    assert.same({ 955, 954 }, { rest[1].n, rest[2].n })
  end)
end)

describe("date cursors", function()
  it("walk all items by createdAt both ways, though two items share each millisecond", function()
    local k = key()
    local older = walk(client:paginate("test/items", { key = k }, { by = "date", page_size = 33 }))
    assert.equal(1000, #older)
    for i, item in ipairs(older) do assert.equal(1001 - i, item.n) end
    assert.is_number(log(k).params[2].untilDate)
    local newer = walk(client:paginate("test/items", {}, { by = "date", direction = "newer", page_size = 33 }))
    assert.equal(1000, #newer)
    for i, item in ipairs(newer) do assert.equal(i, item.n) end
  end)

  it("resume from a cursor in the middle of a millisecond", function()
    local it = client:paginate("test/items", {}, { by = "date", direction = "newer", page_size = 10 })
    for _ = 1, 351 do it:next() end -- 351: the first of the pair at one millisecond
    local rest = walk(client:paginate("test/items", {}, { cursor = it:cursor() }))
    assert.equal(649, #rest)
    assert.equal(352, rest[1].n)
  end)

  it("parse ISO dates to unix ms", function()
    assert.equal(0, paginate.parse_date("1970-01-01T00:00:00.000Z"))
    assert.equal(1779321600123, paginate.parse_date("2026-05-21T00:00:00.123Z"))
    assert.equal(1779321600000 - 9 * 3600000, paginate.parse_date("2026-05-21T00:00:00+09:00"))
    assert.equal(951782400000, paginate.parse_date("2000-02-29T00:00:00Z"))
    assert.is_nil(paginate.parse_date("yesterday"))
  end)
end)

describe("errors", function()
  it("stop the walk; the error is kept and the cursor resumes after the last item", function()
    -- A transport that fails the third request.
    local n = 0
    local real = require("misskey.transport.curl").new()
    local c = new{ transport = { request = function(req)
      n = n + 1
      if n == 3 then return nil, "connection reset", { kind = "network" } end
      return real.request(req)
    end } }
    local it = c:paginate("test/items", {}, { page_size = 10, retries = 0 })
    local items = walk(it)
    assert.equal(20, #items)
    local msg, err = it:error()
    assert.matches("connection reset", msg)
    assert.equal("network", err.kind)
    assert.equal(err, it.err)
    assert.is_nil(it:next())
    local rest = walk(client:paginate("test/items", {}, { cursor = it:cursor(), max = 1 }))
    assert.equal(980, rest[1].n)
  end)

  it("an API error in the middle (page size over the server's maximum)", function()
    local cat = { endpoints = { ["test/items"] = { write = false, paginate = "id", page_max = 500 } } }
    local c = new()
    c:use_catalogue(cat)
    local it = c:paginate("test/items", {}, { page_size = 200 })
    assert.is_nil(it:next())
    assert.equal("INVALID_PARAM", it.err.code)
  end)
end)

describe("misuse raises", function()
  it("a non-paginated or unknown endpoint", function()
    local ok, err = pcall(client.paginate, client, "meta", {})
    assert.is_false(ok)
    assert.matches("not paginated", err)
    ok, err = pcall(client.paginate, client, "no/such", {})
    assert.is_false(ok)
    assert.matches("unknown endpoint", err)
    ok, err = pcall(client.paginate, client, "test/items-offset", {}, { by = "date" })
    assert.is_false(ok)
    assert.matches("cannot be paginated by date", err)
  end)

  it("bad options and params", function()
    local function raises(pattern, ...)
      local ok, err = pcall(client.paginate, client, ...)
      assert.is_false(ok)
      assert.matches(pattern, err)
    end
    raises("unknown option 'nope'", "test/items", {}, { nope = 1 })
    raises("page_size", "test/items", {}, { page_size = 0 })
    raises("max", "test/items", {}, { max = -1 })
    raises("direction", "test/items", {}, { direction = "up" })
    raises("by", "test/items", {}, { by = "name" })
    raises("params must be a table", "test/items", "x")
    raises("endpoint must be a string", 12)
    raises("untilId", "test/items", { untilId = "x" }, { direction = "newer" })
    raises("direction", "test/items-offset", {}, { direction = "newer" })
    local ok, err = pcall(client.paginate, "test/items")
    assert.is_false(ok)
    assert.matches("bad self", err)
  end)

  it("with an empty catalogue every endpoint is unknown", function()
    local c = new()
    c:use_catalogue{ endpoints = {} }
    assert.has_error(function() c:paginate("test/items") end)
  end)
end)

describe("in a task", function()
  it("yields while it fetches", function()
    local ticks = 0
    local items
    misskey.run(function()
      local ticker = misskey.spawn(function()
        while not items do
          ticks = ticks + 1
          misskey.sleep(0.001)
        end
      end)
      local it, got = client:paginate("test/items", {}, { page_size = 50 }), {}
      while true do -- it:next(), not `for`: Lua 5.1 cannot yield inside a for iterator
        local item = it:next()
        if not item then break end
        got[#got + 1] = item
      end
      items = got
      ticker:join()
    end)
    assert.equal(1000, #items)
    assert.truthy(ticks > 1)
  end)

  it("a for loop works in a task where the Lua can yield in it, and raises clearly on Lua 5.1", function()
    local puc51 = _VERSION == "Lua 5.1" and not rawget(_G, "jit")
    local n, _, err = misskey.run(function()
      return #walk(client:paginate("test/items", {}, { max = 150 }))
    end)
    if puc51 then
      assert.is_nil(n)
      assert.matches("it:next%(%)", err.message)
    else
      assert.equal(150, n)
    end
  end)
end)
