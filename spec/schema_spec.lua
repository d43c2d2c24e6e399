-- misskey.schema (validation, suggestions, permissions, tokens), client.api,
-- the validate option and client:schema() with its disk cache.
local misskey = require "misskey"
local json = require "misskey.json"
local schema = require "misskey.schema"
local server = require "support.server"
local with_env = require "support.env"

local NATIVE = "AbCdEfGh01234567"                    -- 16 characters: a web login token
local APP = "SeCrEtToKeN0123456789abcdefABCDE"       -- 32: a MiAuth token

-- A client whose transport records requests and answers `{}` (or `reply`).
local function fake(opts, reply)
  local sent = {}
  local o = {
    host = "misskey.example", token = NATIVE,
    transport = {
      request = function(req)
        sent[#sent + 1] = req
        return { status = 200, headers = { ["content-type"] = "application/json" }, body = reply or '{"ok":true}' }
      end,
    },
  }
  for k, v in pairs(opts or {}) do o[k] = v end
  return with_env({}, function() return misskey.new(o) end), sent
end

describe("require 'misskey'", function()
  it("does not load the catalogue until it is used", function()
    local lua = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
    local p = assert(io.popen(lua .. [[ -e "package.path='./lua/?.lua;./lua/?/init.lua;'..package.path" ]]
      .. [[-e "package.cpath='./build/]] .. (rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+"))
      .. [[/?.so;'..package.cpath" ]]
      .. [[-e "local m = require 'misskey'; io.write(tostring(package.loaded['misskey.endpoints'] ~= nil), ' ');]]
      .. [[m.permissions_for{'notes/create'}; io.write(tostring(package.loaded['misskey.endpoints'] ~= nil))"]]))
    local out = p:read("*a")
    p:close()
    assert.equal("false true", out)
  end)
end)

describe("schema.validate", function()
  local create = schema.lookup("notes/create")

  local function invalid(entry, params, pattern, param)
    local msg, p = schema.validate(entry, params)
    assert.is_string(msg)
    assert.matches(pattern, msg, 1, true)
    assert.equal(param, p)
  end

  it("accepts valid parameters, `i` and misskey.null where nullable", function()
    assert.is_nil(schema.validate(create, { text = "hello", visibility = "home", i = "token" }))
    assert.is_nil(schema.validate(create, { text = json.null, renoteId = "9xyz0123ab" }))
    assert.is_nil(schema.validate(create, { fileIds = misskey.array{ "a1", "b2" }, poll = { choices = { "x", "y" } } }))
    assert.is_nil(schema.validate(schema.lookup("meta"), nil))
  end)

  it("names a missing required parameter", function()
    invalid(schema.lookup("notes/show"), {}, "parameter 'noteId' is required", "noteId")
    invalid(schema.lookup("users/show"), { host = "x" }, "one of these parameters is required: 'userId' or", "userId")
    invalid(create, { poll = { multiple = true } }, "parameter 'poll.choices' is required", "poll.choices")
  end)

  it("checks types, null only where nullable", function()
    invalid(create, { text = 3 }, "parameter 'text' must be a string, got integer", "text")
    invalid(create, { localOnly = "yes" }, "parameter 'localOnly' must be a boolean, got string", "localOnly")
    invalid(create, { visibility = json.null }, "parameter 'visibility' must not be null", "visibility")
    invalid(create, { fileIds = { a = 1 } }, "parameter 'fileIds' must be an array, got object", "fileIds")
    invalid(create, { poll = { "x" } }, "parameter 'poll' must be an object", "poll")
    invalid(schema.lookup("notes/timeline"), { limit = 1.5 }, "parameter 'limit' must be an integer", "limit")
  end)

  it("checks enums and ranges", function()
    invalid(create, { visibility = "friends" },
      'must be one of "public", "home", "followers", "specified", got "friends"', "visibility")
    invalid(schema.lookup("notes/timeline"), { limit = 101 }, "parameter 'limit' must be <= 100, got 101", "limit")
    invalid(schema.lookup("notes/timeline"), { limit = 0 }, "parameter 'limit' must be >= 1, got 0", "limit")
  end)

  it("counts lengths in characters (code points), as the server does", function()
    assert.is_nil(schema.validate(create, { cw = ("é"):rep(100) }))        -- 200 bytes, 100 characters
    assert.is_nil(schema.validate(create, { cw = ("😀"):rep(100) }))       -- 400 bytes
    invalid(create, { cw = ("é"):rep(101) }, "parameter 'cw' must be at most 100 characters, got 101", "cw")
    invalid(create, { text = "" }, "parameter 'text' must be at least 1 characters, got 0", "text")
  end)

  it("checks items: count, uniqueness and each item", function()
    local ids = {}
    for i = 1, 17 do ids[i] = "id" .. i end
    invalid(create, { fileIds = ids }, "parameter 'fileIds' must have at most 16 items, got 17", "fileIds")
    invalid(create, { fileIds = { "a", "a" } }, "parameter 'fileIds' must not repeat \"a\"", "fileIds")
    invalid(create, { poll = { choices = { "x", "" } } }, "parameter 'poll.choices[2]' must be at least 1 characters",
      "poll.choices[2]")
    invalid(create, { poll = { choices = { "x" } } }, "parameter 'poll.choices' must have at least 2 items",
      "poll.choices")
  end)

  it("checks the misskey:id pattern", function()
    invalid(schema.lookup("notes/show"), { noteId = "9xyz-01" }, "parameter 'noteId' must be a Misskey id", "noteId")
    invalid(create, { fileIds = { "ok1", "no/2" } }, "parameter 'fileIds[2]' must be a Misskey id", "fileIds[2]")
  end)

  it("refuses unknown parameters, naming them", function()
    invalid(create, { txet = "hi" }, "unknown parameter 'txet' (known: channelId, cw,", "txet")
    invalid(schema.lookup("meta"), { detail = true, foo = 1 }, "unknown parameter 'foo'", "foo")
    invalid(create, { poll = { choices = { "a", "b" }, bogus = 1 } }, "unknown parameter 'poll.bogus'", "poll.bogus")
  end)

  it("accepts any of the alternatives of anyOf/oneOf", function()
    local rel = schema.lookup("users/relation")
    assert.is_nil(schema.validate(rel, { userId = "abc" }))
    assert.is_nil(schema.validate(rel, { userId = { "abc", "def" } }))
    invalid(rel, { userId = 3 }, "parameter 'userId'", "userId")
  end)
end)

describe("schema.suggest, lookup and permissions_for", function()
  it("suggests the nearest names", function()
    assert.equal("notes/create", schema.suggest("note/create")[1])
    assert.equal("notes/create", schema.suggest("notes/crate")[1])
    assert.equal("i/registry/get-all", schema.suggest("i/registry/getall")[1])
    assert.same({}, schema.suggest("zzzzzzzzzzzzzzzzzzzzzzzz"))
    assert.is_nil(schema.lookup("no/such"))
    assert.is_table(schema.lookup("i/registry/get-all"))
  end)

  it("derives permissions, sorted and unique", function()
    assert.same({ "write:drive", "write:notes" }, misskey.permissions_for{ "notes/create", "drive/files/create" })
    assert.same({ "read:account", "write:notes" },
      misskey.permissions_for{ "notes/create", "i", "notes/delete", "meta" })
    assert.same({}, misskey.permissions_for{ "meta" })
  end)

  it("raises on an unknown endpoint, with suggestions", function()
    local ok, err = pcall(misskey.permissions_for, { "notes/create", "note/show" })
    assert.is_false(ok)
    assert.matches("unknown endpoint 'note/show' (did you mean 'notes/show'", err, 1, true)
    assert.has_error(function() misskey.permissions_for(42) end)
  end)
end)

describe("schema.check_token", function()
  it("refuses a non-native token for a secure endpoint", function()
    local apps = schema.lookup("i/apps")
    assert.is_true(apps.secure)
    assert.is_nil(schema.check_token(apps, NATIVE))
    assert.matches("native", schema.check_token(apps, APP))
    assert.matches("native", schema.check_token(apps, ("a"):rep(64)))
    assert.matches("native", schema.check_token(apps, "AbCdEfGh0123456-")) -- 16, but not alphanumeric
    assert.is_nil(schema.check_token(schema.lookup("notes/create"), APP))
    assert.is_true(schema.is_native(NATIVE))
    assert.is_false(schema.is_native(APP))
  end)
end)

describe("client validate option", function()
  it("rejects bad parameters before sending, with kind 'invalid'", function()
    local c, sent = fake{ validate = true }
    local res, msg, err = c:request("notes/create", { visibility = "friends" })
    assert.is_nil(res)
    assert.matches("^notes/create: parameter 'visibility' must be one of", msg)
    assert.equal("invalid", err.kind)
    assert.equal("visibility", err.param)
    assert.equal("notes/create", err.endpoint)
    assert.equal(0, #sent)
    assert.is_true(assert(c:request("notes/create", { text = "hi" })).ok)
    assert.equal(1, #sent)
  end)

  it("is off by default and per call either way", function()
    local c, sent = fake()
    assert.truthy(c:request("notes/create", { visibility = "friends" }))
    local _, _, err = c:request("notes/create", { visibility = "friends" }, { validate = true })
    assert.equal("invalid", err.kind)
    local v = fake{ validate = true }
    assert.truthy(v:request("notes/create", { visibility = "friends" }, { validate = false }))
    assert.equal(1, #sent)
    assert.has_error(function() c:request("meta", {}, { validate = "yes" }) end)
    assert.has_error(function() fake{ validate = 1 } end)
  end)

  it("names suggestions for an unknown endpoint", function()
    local c, sent = fake{ validate = true }
    local _, msg, err = c:request("note/create", { text = "x" })
    assert.equal("invalid", err.kind)
    assert.matches("unknown endpoint 'note/create' (did you mean 'notes/create'", msg, 1, true)
    assert.equal("notes/create", err.suggestions[1])
    assert.equal(0, #sent)
  end)

  it("refuses a secure endpoint with an app token, without the token in the message", function()
    local c, sent = fake{ validate = true, token = APP }
    local _, msg, err = c:request("i/apps", {})
    assert.equal("invalid", err.kind)
    assert.equal("i", err.param)
    assert.matches("native", msg)
    assert.is_nil(msg:find(APP, 1, true))
    assert.equal(0, #sent)
  end)
end)

describe("client.api", function()
  it("calls endpoints by name, with hyphens through brackets", function()
    local c, sent = fake()
    assert.is_true(c.api.notes.create{ text = "hi" }.ok)
    assert.equal("https://misskey.example/api/notes/create", sent[1].url)
    assert.equal("hi", json.decode(sent[1].body).text)
    c.api.i.registry["get-all"]{ scope = misskey.array{ "a" } }
    assert.equal("https://misskey.example/api/i/registry/get-all", sent[2].url)
    c.api("i/registry/get-all", { scope = misskey.array{} }, { timeout = 5 })
    assert.equal("https://misskey.example/api/i/registry/get-all", sent[3].url)
    assert.equal(5, sent[3].timeout)
    c.api.notes{}                                  -- "notes" is an endpoint and a prefix
    assert.equal("https://misskey.example/api/notes", sent[4].url)
    c.api.notes:show{ noteId = "abc" }             -- a method-style call works too
    assert.equal("abc", json.decode(sent[5].body).noteId)
    c.api.meta()
    assert.equal("https://misskey.example/api/meta", sent[6].url)
  end)

  it("returns what client:request returns, failures included", function()
    local c = fake({ validate = true })
    local res, msg, err = c.api.notes.create{ visibility = "x" }
    assert.is_nil(res)
    assert.matches("visibility", msg)
    assert.equal("invalid", err.kind)
  end)

  it("raises for unknown names, with suggestions", function()
    local c = fake()
    local ok, err = pcall(function() return c.api.note end)
    assert.is_false(ok)
    assert.matches("unknown endpoint 'note' (did you mean 'notes'", err, 1, true)
    ok, err = pcall(function() c.api.notes.crate{} end)
    assert.is_false(ok)
    assert.matches("unknown endpoint 'notes/crate' (did you mean 'notes/create'", err, 1, true)
    ok, err = pcall(function() c.api.i.registry() end) -- a prefix, not an endpoint
    assert.is_false(ok)
    assert.matches("unknown endpoint 'i/registry'", err, 1, true)
    ok, err = pcall(c.api, "notes/crate", {})
    assert.is_false(ok)
    assert.matches("did you mean 'notes/create'", err, 1, true)
    assert.has_error(function() c.api(42) end)
    assert.has_error(function() c.api.notes = 1 end)
  end)
end)

describe("client:schema()", function()
  local srv, dir

  setup(function()
    srv = server.start()
    dir = os.tmpname()
    os.remove(dir)
  end)
  teardown(function()
    srv:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  local env = function() return { XDG_CACHE_HOME = dir } end

  local function schema_count(c)
    return assert(c:request("test/schema-count")).api_json
  end

  it("loads the server's catalogue, caches it, and reuses the cache", function()
    with_env(env(), function()
      local c = misskey.new{ host = srv.url, token = NATIVE }
      -- In the bundled 2026.5.4 catalogue, absent from this (2025.7.0) server.
      assert.is_table(c.api.channels.mute.create)
      assert.is_table(schema.lookup("channels/mute/create"))
      local before = schema_count(c)
      local info = assert(c:schema())
      assert.equal("server", info.source)
      assert.equal("misskey", info.software)
      assert.equal("2026.5.4", info.version) -- meta's version wins over nodeinfo's
      assert.equal(20, info.endpoints)
      assert.equal(before + 1, schema_count(c))
      -- Now this client's names and validation follow the server.
      assert.has_error(function() return c.api.channels.mute end)
      local _, msg, err = c:request("channels/mute/create", {}, { validate = true })
      assert.equal("invalid", err.kind)
      assert.matches("unknown endpoint 'channels/mute/create'", msg, 1, true)
      assert.equal("2026.5.4", c.api.meta().version)
      local _, _, verr = c:request("notes/create", { visibility = "x" }, { validate = true })
      assert.equal("visibility", verr.param)
      -- Other clients keep the bundled catalogue.
      local other = misskey.new{ host = srv.url }
      assert.is_table(other.api.channels.mute.create)
      -- The cache file is there.
      local path = dir .. "/misskey/schema-127.0.0.1_" .. srv.port .. "-misskey-2026.5.4.json"
      assert.equal(path, info.path)
      local f = assert(io.open(path, "rb"))
      local cached = require("misskey.json").decode(f:read("*a")) -- data, not code
      f:close()
      assert.equal("127.0.0.1:" .. srv.port, cached.host)
      assert.equal("2026.5.4", cached.version)
      -- A second client of the same host and version: from the cache, api.json not fetched.
      local c2 = misskey.new{ host = srv.url }
      local info2 = assert(c2:schema())
      assert.equal("cache", info2.source)
      assert.equal(20, info2.endpoints)
      assert.equal(before + 1, schema_count(c2))
      assert.has_error(function() return c2.api.channels.mute end)
      assert.equal("write:notes", c2:catalogue().endpoints["notes/create"].permission)
    end)
  end)

  it("ignores a damaged cache file", function()
    with_env(env(), function()
      local c = misskey.new{ host = srv.url }
      local path = dir .. "/misskey/schema-127.0.0.1_" .. srv.port .. "-misskey-2026.5.4.json"
      local f = assert(io.open(path, "wb"))
      f:write('{"format": "misskey-catalogue/1", "catalogue": ')
      f:close()
      local info = assert(c:schema())
      assert.equal("server", info.source)
    end)
  end)
end)
