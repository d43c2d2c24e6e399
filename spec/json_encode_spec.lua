-- json.encode's C fast path (core.json_encoder, src/json.c) against the Lua encoder
-- of lua/misskey/json.lua: the same bytes for every value the C path accepts, nil
-- for everything else (then the Lua encoder raises with the path, as before).
-- (Lua 5.1 string literals: decimal escapes only, no \x or \u{}.)
local json = require "misskey.json"
local core = require "misskey.core"
local locale = require "support.locale"

local encode_c, encode_lua = json._encode_c, json._encode_lua
local math_type = rawget(math, "type")          -- nil on Lua 5.1 / LuaJIT
local tointeger = rawget(math, "tointeger")
local maxinteger, mininteger = rawget(math, "maxinteger"), rawget(math, "mininteger")
local huge = math.huge

-- Both encoders give text, and the same text.
local function agree(v, what)
  local c = encode_c(v)
  local l = encode_lua(v)
  assert.is_string(c, what or l)
  assert.equal(l, c, what)
  return c
end

-- The C path declines; json.encode then does what the Lua encoder does (the same
-- text, or the same error).
local function declines(v, what)
  assert.is_nil(encode_c(v), what)
  local ok1, r1 = pcall(json.encode, v, "params")
  local ok2, r2 = pcall(encode_lua, v, "params")
  assert.equal(ok2, ok1, what)
  assert.equal(r2, r1, what)
  return r1
end

-- a == b as JSON data: numbers by value (1 == 1.0), tables by content.
local function same_data(a, b, path)
  path = path or "value"
  if type(a) ~= "table" then
    if a ~= b then error(("%s: %s ~= %s"):format(path, tostring(a), tostring(b))) end
    return
  end
  assert(type(b) == "table", path .. ": not a table")
  local n = 0
  for k, v in pairs(a) do
    n = n + 1
    same_data(v, b[k], path .. "." .. tostring(k))
  end
  for _ in pairs(b) do n = n - 1 end
  assert(n == 0, path .. ": different keys")
  assert(json.is_array(a) == json.is_array(b) or next(a) ~= nil, path .. ": [] and {} confused")
end

describe("json.encode's C path (core.json_encoder)", function()
  it("is a C closure, and json.encode uses it", function()
    assert.equal("C", debug.getinfo(encode_c, "S").what)
    assert.equal('{"i":"token"}', encode_c({ i = "token" }))
    assert.has_error(function() core.json_encoder("x") end)
    -- another encoder with another array marker: only that one makes arrays
    local mt = {}
    local encode = core.json_encoder(mt)
    assert.equal("[]", encode(setmetatable({}, mt)))
    assert.equal("[1,2]", encode(setmetatable({ 1, 2 }, mt)))
    assert.is_nil(encode(json.array()))
  end)

  it("gives the Lua encoder's text for the usual values", function()
    local null, array = json.null, json.array
    local cases = {
      { i = "abcdefghijklmnopqrstuvwxyz012345" }, {}, array(), { 1, 2, 3 }, array { "a" },
      { a = array(), b = {}, c = { array(), {} } }, "", "x", "a\"b\\c/d", "\0\1\8\9\10\11\12\13\31\127",
      "猫🍣 café", 0, 1, -1, 3.0, -0.0, 0.1, 0.5, 1 / 3, 1e300, -1e-300, 1e21, 2 ^ 53,
      2 ^ 53 - 1, 2 ^ 53 + 2, 2 ^ 60, 1.8e12, 4.9406564584124654e-324, 2.2250738585072014e-308,
      1.7976931348623157e308, true, false, null, { n = null }, array { null, null },
      { ['key "quoted"\n'] = { ["/"] = "\\" } },
    }
    for i, v in ipairs(cases) do agree(v, "case " .. i) end
    agree(nil, "nil")
    assert.equal("null", encode_c(nil))
    assert.equal("null", encode_c())
    assert.equal("-0", encode_c(-1 / huge)) -- not the literal -0.0: Lua 5.1 shares one constant with 0
    assert.equal('"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\127"', encode_c("\0\1\8\9\10\11\12\13\31\127"))
  end)

  it("writes integers at the edges as the Lua encoder does", function()
    local values = { 2 ^ 31 - 1, -2 ^ 31, 2 ^ 32, 2 ^ 53 - 1, -(2 ^ 53 - 1), 2 ^ 53, -(2 ^ 53), 2 ^ 63, -2 ^ 63,
      2 ^ 64 }
    if tointeger then
      local big = tointeger(2 ^ 53)
      for _, x in ipairs { maxinteger, mininteger, maxinteger - 1, mininteger + 1, big - 1, big, big + 1,
        -big - 1, tointeger(2 ^ 62) } do
        values[#values + 1] = x
      end
      assert.equal("9223372036854775807", encode_c(maxinteger))
      assert.equal("-9223372036854775808", encode_c(mininteger))
      assert.equal("9007199254740993", encode_c(big + 1))
    end
    for _, x in ipairs(values) do agree(x, tostring(x)) end
    assert.equal("9007199254740991", encode_c(2 ^ 53 - 1))
    assert.equal("9007199254740992", encode_c(2 ^ 53))
  end)

  it("declines what is not plain data, and json.encode still raises as before", function()
    local co = coroutine.create(function() end)
    assert.equal("params: cannot encode a function", declines(print))
    assert.equal("params[1]: cannot encode a thread", declines({ co }))
    assert.equal("params.f: cannot encode a userdata", declines({ f = io.stdout }))
    assert.equal("params.a.b: cannot encode NaN", declines({ a = { b = 0 / 0 } }))
    assert.equal("params.x: cannot encode inf", declines({ x = huge }))
    assert.equal("params.x[2]: cannot encode -inf", declines({ x = { 1, -huge } }))
    assert.equal("params.poll.choices[3]: cannot encode a function",
      declines({ poll = { choices = { "a", "b", function() end } } }))
    assert.equal("params.t: cannot encode a non-string key (boolean true)", declines({ t = { [true] = 1 } }))
    assert.equal("params.t: cannot encode a non-string key (number 1.5)", declines({ t = { [1.5] = 1 } }))
    assert.equal("params.t: cannot encode a non-string key (number 0)", declines({ t = { [0] = 1 } }))
    assert.equal("params: cannot encode a non-string key (table)", declines({ [{}] = 1 }))
    assert.equal("params.t: cannot encode a table that mixes array items and string keys",
      declines({ t = { 1, 2, a = 3 } }))
    assert.equal("params.list: cannot encode a sparse array (no value at index 2)", declines({ list = { 1, nil, 3 } }))
    assert.equal("params.list: cannot encode a sparse array (no value at index 1)", declines({ list = { [2] = "x" } }))
    local holes = {}
    holes[1], holes[2], holes[4] = 1, 2, 4
    assert.equal("params: cannot encode a sparse array (no value at index 3)", declines(holes))
    local marked = json.array { 1, 2 }
    marked.x = 1
    assert.equal("params: cannot encode a table that mixes array items and string keys", declines(marked))
    local empty = json.array()
    empty.x = 1
    assert.equal("params: cannot encode an array (json.array) with string keys", declines(empty))
    local t = {}
    t.x = t
    assert.equal("params.x: cycle detected", declines(t))
    local a = { list = {} }
    a.list[1] = { back = a }
    assert.equal("params.list[1].back: cycle detected", declines(a))
  end)

  it("leaves tables with other metatables to the Lua encoder", function()
    assert.equal("[]", declines(setmetatable({}, { __jsontype = "array" })))     -- dkjson's marker
    assert.equal("[1]", declines(setmetatable({ 1 }, { __jsontype = "array" })))
    assert.equal('{"a":1}', declines(setmetatable({ a = 1 }, {})))
    assert.equal('{"a":{"b":1}}', declines({ a = setmetatable({ b = 1 }, { __index = function() return 2 end }) }))
    declines(setmetatable({ 1, 2 }, { __len = function() return 5 end, __index = function() return 0 end }))
    declines(setmetatable({}, { __mode = "k" }))
  end)

  it("nests 1000 tables and declines a deeper one", function()
    local ok = {}
    for _ = 2, 1000 do ok = { ok } end
    assert.equal(string.rep("[", 999) .. "{}" .. string.rep("]", 999), agree(ok))
    local marked = json.array()
    for _ = 2, 1000 do marked = { a = marked } end
    agree(marked)
    assert.equal("params" .. string.rep("[1]", 1000) .. ": cannot encode more than 1000 nested tables",
      declines({ ok }))
  end)

  it("builds long texts (the buffer grows)", function()
    local parts = {}
    for i = 0, 127 do parts[#parts + 1] = string.char(i) end
    local s = string.rep(table.concat(parts) .. "猫🍣", 700)            -- 100 KB, 25% escaped
    assert.equal(encode_lua(s), encode_c(s))
    local list = {}
    for i = 1, 5000 do list[i] = { id = tostring(i), n = i, f = i / 7, s = string.rep("x", i % 50) } end
    local text = agree(list)
    assert.truthy(#text > 200000)
    same_data(list, json.decode(text))
  end)

  it("agrees with the Lua encoder on random values, and round-trips them", function()
    local seed = 20261130
    local function rand(n)                      -- 1..n (Park-Miller: exact in doubles, any Lua)
      seed = (seed * 16807) % 2147483647
      return seed % n + 1
    end
    local function pick(list) return list[rand(#list)] end

    -- Well-formed UTF-8 only: the encoders refuse the rest (spec/json_edge_spec.lua).
    local pieces = { "a", "Z", "0", " ", "/", '"', "\\", "\0", "\1", "\8", "\9", "\10", "\12", "\13", "\27",
      "\31", "\127", "é", "猫", "🍣", "\239\191\191", "\244\143\191\191", "hello world", "ーー", "\\u0000" }
    local function rand_string()
      local r = rand(10)
      if r == 1 then return "" end
      local n = r <= 8 and rand(12) or rand(300)
      local out = {}
      for i = 1, n do
        if rand(3) == 1 then out[i] = string.char(rand(128) - 1) else out[i] = pick(pieces) end
      end
      return table.concat(out)
    end

    local specials = { -1 / huge, 0.0, 0.1, 0.2, 0.3, 0.1 + 0.2, 1e300, -1e300, 1e-300, 2 ^ 53 + 1.0, 2 ^ 53 - 1.0,
      2 ^ 53 + 2.0, -(2 ^ 53 + 2.0), 1e21, 1e22, 1e23, 1e15 + 0.5, 2 ^ -1074, -2 ^ -1074, 3 * 2 ^ -1074, 2 ^ -1022,
      2 ^ -1022 - 2 ^ -1074, 1.7976931348623157e308, -1.7976931348623157e308, 123456789012345.6, 9.5, 0.5,
      12345678901234.5, 1e14, 1e15, 1e16, 1e17, 5e-324, 4.35, 2 / 3, math.pi, -math.pi * 1e-200 }
    local function rand_float()
      local r = rand(8)
      if r == 1 then return pick(specials) end
      local m = (rand(2 ^ 26) - 1) * 2 ^ 27 + (rand(2 ^ 27) - 1)             -- up to 53 bits
      if r == 2 then return math.floor(m / 2 ^ rand(53)) * 2 ^ -1074 end    -- subnormals, the smallest normals
      if r == 3 then                                                        -- short decimals
        return tonumber(("%d.%de%d"):format(rand(99999) - 1, rand(99999), rand(80) - 40))
      end
      if r == 4 then return (rand(2000001) - 1000001) + 0.0 end              -- integral floats
      if r == 5 then return m / 2 ^ rand(60) end
      local x = m * 2 ^ (rand(2040) - 1080)                                  -- every magnitude
      if x == huge then x = m end
      return rand(2) == 1 and x or -x
    end
    local function rand_integer()
      local r = rand(4)
      if r == 1 then return rand(201) - 101 end
      if r == 2 then return (rand(2 ^ 26) - 1) * 2 ^ 27 + rand(2 ^ 27) - 2 ^ 52 end
      if tointeger then
        if r == 3 then return pick { maxinteger, mininteger, maxinteger - rand(1000), mininteger + rand(1000) } end
        return tointeger(rand(2 ^ 30)) * tointeger(rand(2 ^ 30)) * pick { 1, -1, 3, 7 }
      end
      return pick { 2 ^ 53 - 1, -(2 ^ 53 - 1), 2 ^ 31, -2 ^ 31, 2 ^ 52 + 0.0 }
    end

    local rand_value
    local function rand_table(depth)
      local r = rand(6)
      if r == 1 then return rand(2) == 1 and json.array() or {} end
      if r <= 3 then
        local t = {}
        for i = 1, rand(8) do t[i] = rand_value(depth + 1) end
        return rand(2) == 1 and json.array(t) or t
      end
      local t = {}
      for _ = 1, rand(8) do t[rand_string()] = rand_value(depth + 1) end
      return t
    end
    rand_value = function(depth)
      local r = rand(depth >= 5 and 9 or 12)
      if r <= 2 then return rand_string() end
      if r <= 4 then return rand_float() end
      if r <= 5 then return rand_integer() end
      if r == 6 then return rand(2) == 1 end
      if r == 7 then return json.null end
      if r <= 9 then return pick { "id", 0, 1.5, true } end
      return rand_table(depth)
    end

    local floats_seen, declined = 0, 0
    for i = 1, 4000 do
      local v = i <= 1000 and rand_float() or i <= 1500 and rand_integer() or rand_table(0)
      if math_type and math_type(v) == "float" then floats_seen = floats_seen + 1 end
      local c, text = encode_c(v), encode_lua(v)
      if c == nil then
        declined = declined + 1                 -- a float half-way between two texts (see below)
      else
        assert.equal(text, c, "value " .. i)
      end
      assert.equal(text, json.encode(v))
      local back = json.decode(text)
      same_data(v, back, "value " .. i)
      c = encode_c(back)
      if c then assert.equal(encode_lua(back), c) end
    end
    if math_type then assert.truthy(floats_seen > 900) end
    assert.truthy(declined < 40, declined .. " declined")
  end)

  it("declines floats half-way between two texts of the chosen precision", function()
    -- libc rounds such ties to even and LuaJIT's string.format away from zero, so the
    -- Lua encoder's text depends on the Lua: the C path leaves them to it.
    for _, v in ipairs { 524749.17431640625, -524749.17431640625, 116953656813445.625, 526557.62158203125 } do
      local text = declines(v)
      assert.equal(v, tonumber(text))
      assert.equal(v, json.decode(text))
      assert.equal("{\"x\":[" .. text .. "]}", declines({ x = { v } }))
    end
    -- their neighbours, and short exact fractions, are not ties
    for _, v in ipairs { 524749.17431640625 + 2 ^ -33, 524749.17431640625 - 2 ^ -33, 116953656813445.625 + 2 ^ -6,
      0.625, 2 ^ -1074 } do
      agree(v)
    end
  end)

  it("writes '.' whatever LC_NUMERIC the host set, like the Lua encoder", function()
    local values = { 0.5, -2.25, 0.1, 1 / 3, 1e-7, 1.5e-300, 2 ^ -1074, 1e21, 123456.789, { 1.5, { x = 0.25 } } }
    local got = {}
    local comma = locale.with_decimal_comma(function()
      for i, v in ipairs(values) do got[i] = { encode_c(v), encode_lua(v), json.pretty(v) } end
    end)
    if not comma then
      pending(locale.MISSING)
      return
    end
    for i, v in ipairs(values) do
      local c, l, p = got[i][1], got[i][2], got[i][3]
      assert.equal(encode_lua(v), c, comma)       -- the same text as in the C locale
      assert.equal(l, c, comma)
      assert.equal(json.pretty(v), p, comma)
      if type(v) ~= "table" then assert.is_nil(c:find(",", 1, true), c) end
    end
    assert.equal("0.5", got[1][1])
    assert.equal("[1.5,{\"x\":0.25}]", got[10][1])
  end)
end)
