-- JSON edge cases that must be consistent between the decoder and both encoders:
-- -0 keeps its sign, numbers beyond a double are refused on decode (never accepted
-- by one side and refused by the other), lone surrogate escapes and ill-formed raw
-- UTF-8 follow one rule (U+FFFD), json.encode refuses ill-formed UTF-8 naming the
-- path; and the `null = "nil"` option (json.decode's, the client's, a call's).
local json = require "misskey.json"
local misskey = require "misskey"
local new_client = require "support.client"
local server = require "support.server"

local math_type = rawget(math, "type")
local FFFD = "\239\191\189"

local function is_negative_zero(v)
  return type(v) == "number" and v == 0 and 1 / v < 0
end

-- Whatever json.decode accepts, both encoders write and json.pretty prints, and the
-- text decodes to the same value again (compared as json.pretty's text: keys sorted).
local function round_trips(text)
  local v = json.decode(text)
  if v == nil then return false end
  local lua_text = json._encode_lua(v)
  local c_text = json._encode_c(v)
  if c_text ~= nil then assert.equal(lua_text, c_text, text) end
  assert.equal(json.pretty(v), json.pretty(json.decode(lua_text)), text)
  return true
end

describe("-0", function()
  it("decodes as the float -0.0 on every Lua", function()
    for _, text in ipairs{ "-0", "-0.0", "-0e3", "-0E-2", "-0.000" } do
      local v = json.decode(text)
      assert.is_true(is_negative_zero(v), text)
      if math_type then assert.equal("float", math_type(v), text) end
    end
    assert.is_true(is_negative_zero(json.decode("[-0]")[1]))
    assert.is_true(is_negative_zero(json.decode('{"x":-0}').x))
    -- 0 stays 0 (an integer on 5.3+)
    assert.is_false(is_negative_zero(json.decode("0")))
  end)

  it("encodes as -0 with both encoders, and comes back with its sign", function()
    local negzero = -1 / math.huge
    assert.equal("-0", json._encode_c(negzero))
    assert.equal("-0", json._encode_lua(negzero))
    assert.equal('{"a":[-0]}', json.encode({ a = { negzero } }))
    assert.is_true(is_negative_zero(json.decode(json.encode(json.decode("-0")))))
    assert.equal("-0", json.pretty(negzero))
  end)
end)

describe("numbers beyond a double's range", function()
  it("are refused on decode with a clear error at their position", function()
    for text, at in pairs{ ["1e400"] = 1, ["-1e400"] = 1, ['{"a":[1,1e309]}'] = 9,
      [string.rep("9", 400)] = 1, ["1.8e308"] = 1 } do
      local v, err = json.decode(text)
      assert.is_nil(v, text)
      assert.equal(("invalid JSON at character %d: number out of range (a double ends at 1.8e308)"):format(at),
        err, text)
    end
  end)

  it("the largest doubles and underflow to 0 still decode, and encode back", function()
    assert.is_true(round_trips("1.7976931348623157e308"))
    assert.is_true(round_trips("-1.7976931348623157e308"))
    assert.equal(0, json.decode("1e-400"))
    assert.is_true(round_trips("[1e-400,5e-324]"))
  end)

  it("a server reply with one is a decode failure, not a raise", function()
    local transport = { request = function()
      return { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"n":1e400}' }
    end }
    local c = new_client{ host = "http://127.0.0.1:9", token = false, transport = transport }
    local res, msg, err = c:request("meta")
    assert.is_nil(res)
    assert.equal("decode", err.kind)
    assert.matches("number out of range", msg)
  end)
end)

describe("UTF-8", function()
  local cases = {
    { '"\\ud800"', FFFD },                              -- a lone high surrogate escape
    { '"\\udc00x"', FFFD .. "x" },                      -- a lone low one
    { '"\237\160\128"', FFFD:rep(3) },                  -- the same surrogate, raw (CESU-8)
    { '"a\255b"', "a" .. FFFD .. "b" },                 -- a byte that never starts UTF-8
    { '"\128"', FFFD },                                 -- a continuation byte alone
    { '"\192\175"', FFFD:rep(2) },                      -- an overlong '/'
    { '"\224\128\175"', FFFD:rep(3) },                  -- an overlong, 3 bytes
    { '"\244\144\128\128"', FFFD:rep(4) },              -- above U+10FFFF
    { '"\226\130"', FFFD },                             -- cut short: one U+FFFD for the part
    { '"\226\130x"', FFFD .. "x" },
    { '"\240\159\141"', FFFD },
    { '"\\u00e9\195"', "é" .. FFFD },                   -- an escape, then a raw ill-formed byte
    { '"\195\\u00a9"', FFFD .. "©" },                   -- a raw lead byte, then an escape
    { '"猫🍣 café \239\191\191 \244\143\191\191"', "猫🍣 café \239\191\191 \244\143\191\191" }, -- all well-formed
  }

  it("lone surrogate escapes and ill-formed raw bytes both become U+FFFD", function()
    for _, case in ipairs(cases) do
      assert.equal(case[2], json.decode(case[1]), case[1])
      assert.is_true(round_trips(case[1]), case[1])
    end
  end)

  it("in keys too", function()
    local v = json.decode('{"k\255":1,"\\udfffk":2}')
    assert.equal(1, v["k" .. FFFD])
    assert.equal(2, v[FFFD .. "k"])
    assert.is_true(round_trips('{"k\255":1,"\\udfffk":2}'))
  end)

  it("every length around the 8-byte scan, with the bad byte anywhere", function()
    for n = 0, 20 do
      for at = 0, n do
        local raw = ("x"):rep(at) .. "\255" .. ("y"):rep(n - at)
        local want = ("x"):rep(at) .. FFFD .. ("y"):rep(n - at)
        assert.equal(want, json.decode('"' .. raw .. '"'), raw)
        assert.equal(want .. "\n", json.decode('"' .. raw .. '\\n"'), raw)
      end
    end
  end)

  it("a long string of bad bytes is repaired in full", function()
    local v = json.decode('"' .. ("\255"):rep(100000) .. '"')
    assert.equal(300000, #v)
    assert.equal(FFFD:rep(100000), v)
  end)

  it("json.encode refuses ill-formed UTF-8, naming the parameter's path", function()
    local params = { text = "ok", poll = { choices = { "yes", "n\255o" } } }
    assert.is_nil(json._encode_c(params))
    assert.error_matches(function() json.encode(params, "params") end,
      "params.poll.choices[2]: invalid UTF-8 in a string (byte 2)", 1, true)
    assert.error_matches(function() json.encode({ a = { ["b\192\175"] = 1 } }, "params") end,
      "params.a: invalid UTF-8 in a key (byte 2)", 1, true)
    assert.error_matches(function() json.encode("\237\160\128") end,
      "value: invalid UTF-8 in a string (byte 1)", 1, true)
    assert.error_matches(function() json.pretty({ x = "\255" }) end, "value.x: invalid UTF-8", 1, true)
  end)

  it("client:request raises on such params before sending anything", function()
    local sent = 0
    local c = new_client{ host = "http://127.0.0.1:9", token = false,
      transport = { request = function() sent = sent + 1 end } }
    assert.error_matches(function() c:request("notes/create", { text = "caf\233" }) end,
      "params.text: invalid UTF-8 in a string (byte 4)", 1, true)
    assert.equal(0, sent)
  end)

  it("whatever decodes also encodes (random strings of bytes)", function()
    local seed = 20261206
    local function rand(n)
      seed = (seed * 16807) % 2147483647
      return seed % n + 1
    end
    local pieces = { "a", " ", "é", "猫", "🍣", "\\ud83d", "\\ude00", "\\ud83d\\ude00", "\\u00e9", "\\n", "\\\\" }
    for _ = 1, 2000 do
      local out = {}
      for i = 1, rand(12) do
        out[i] = rand(2) == 1 and string.char(127 + rand(128)) or pieces[rand(#pieces)]
      end
      local text = '["' .. table.concat(out) .. '",-0,1e308]'
      assert.is_true(round_trips(text), text)
    end
  end)
end)

describe("null = \"nil\"", function()
  local DOC = '{"host":null,"name":"a","list":[1,null,3],"user":{"host":null,"id":"x"},"d":1,"d":null}'

  it("json.decode leaves null object members out; arrays and the root keep misskey.null", function()
    local v = json.decode(DOC, { null = "nil" })
    assert.is_nil(v.host)
    assert.equal("a", v.name)
    assert.equal(3, #v.list)
    assert.equal(json.null, v.list[2])
    assert.is_nil(v.user.host)
    assert.equal("x", v.user.id)
    assert.is_nil(v.d) -- a later null still removes an earlier value, as the last key wins
    assert.equal(json.null, json.decode("null", { null = "nil" }))
    local keep = json.decode(DOC, { null = "sentinel" })
    assert.equal(json.null, keep.host)
    assert.equal(json.null, json.decode(DOC).user.host)
  end)

  it("bad options raise naming the option", function()
    assert.error_matches(function() json.decode("{}", { null = "none" }) end,
      "json.decode: option 'null' must be \"nil\" or \"sentinel\"", 1, true)
    assert.error_matches(function() json.decode("{}", { nul = "nil" }) end, "unknown option 'nul'", 1, true)
    assert.error_matches(function() json.decode("{}", "nil") end, "options table expected, got string", 1, true)
  end)

  describe("as a client option", function()
    local srv
    setup(function() srv = server.start() end)
    teardown(function() srv:stop() end)

    it("per client, over the curl transport (the in-place decode) and client:http", function()
      local c = new_client{ host = srv.url, token = false, null = "nil" }
      local meta = assert(c:request("meta"))
      assert.is_nil(meta.maintainerName)
      assert.equal("Test", meta.name)
      local _, value = assert(c:http{ path = "/api/meta", method = "POST", body = "{}", json = true })
      assert.is_nil(value.maintainerName)
      -- the default keeps misskey.null
      local d = new_client{ host = srv.url, token = false }
      assert.equal(misskey.null, assert(d:request("meta")).maintainerName)
    end)

    it("per call, either way, and through a transport that gives a body string", function()
      local fake = require("misskey.testing").fake()
      local c = fake:client()
      local user = assert(c:request("users/show", { username = "alice" }, { null = "nil" }))
      assert.is_nil(user.host)
      assert.equal("(local)", user.host or "(local)")
      assert.equal(misskey.null, assert(c:request("users/show", { username = "alice" })).host)
      local nil_client = fake:client{ null = "nil" }
      assert.is_nil(assert(nil_client:request("users/show", { username = "alice" })).host)
      assert.equal(misskey.null,
        assert(nil_client:request("users/show", { username = "alice" }, { null = "sentinel" })).host)
      local results = nil_client:batch({ { "users/show", { username = "alice" } } })
      assert.is_nil(results[1].host)
    end)

    it("bad values raise naming the option", function()
      assert.error_matches(function() new_client{ host = srv.url, null = "none" } end,
        "bad option 'null' (expected \"nil\" or \"sentinel\", got none)", 1, true)
      local c = new_client{ host = srv.url, token = false }
      assert.error_matches(function() c:request("meta", nil, { null = false }) end,
        "bad argument #3 to 'request' (option 'null' must be \"nil\" or \"sentinel\")", 1, true)
    end)
  end)
end)

describe("misskey api ... | pretty", function()
  it("prints a reply with the edge cases and exits 0", function()
    local srv = server.start()
    local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
    local home = server.temp_dir()
    local cmd = ("env -u LD_PRELOAD -u MISSKEY_TOKEN XDG_CONFIG_HOME=%s MISSKEY_HOST=%s %s -e "
      .. "'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path; "
      .. "package.cpath=\"./build/%s/?.so;\"..package.cpath' bin/misskey api test/echo "
      .. [['s:="a\ud800b"' 'z:=-0' 'big:=1.7976931348623157e308' 2>&1; echo "exit=$?"]])
      :format(home, srv.url, interpreter, version)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    server.remove_dir(home)
    srv:stop()
    assert.matches("exit=0%s*$", out)
    -- the test server echoes the JSON it got: the lone surrogate went out as U+FFFD, -0 as -0
    assert.matches('"s": "a' .. FFFD .. 'b"', out, 1, true)
    assert.matches('\\"z\\":-0', out, 1, true) -- in the echoed request body
  end)
end)
