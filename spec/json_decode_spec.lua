-- json.decode, the C decoder of misskey.core (src/json.c): grammar, arrays, strings,
-- numbers, limits, and agreement with lua-cjson on random documents.
-- (Lua 5.1 string literals: decimal escapes only, no \x or \u{}.)
local json = require "misskey.json"
local cjson = require "cjson"
local core = require "misskey.core"
local locale = require "support.locale"

local math_type = rawget(math, "type")          -- nil on Lua 5.1 / LuaJIT
local has_integers = math_type ~= nil

local function decode_error(text)
  local v, err = json.decode(text)
  assert.is_nil(v, text)
  assert.is_string(err, text)
  return err
end

-- The text is rejected at 1-based character pos with a message containing why.
local function rejects(text, pos, why)
  local err = decode_error(text)
  local prefix = ("invalid JSON at character %d: "):format(pos)
  assert.equal(prefix, err:sub(1, #prefix), ("%q -> %s"):format(text, err))
  if why then
    assert.truthy(err:find(why, #prefix + 1, true), ("%q -> %s (wanted %q)"):format(text, err, why))
  end
end

-- Counts the tables marked as arrays in a decoded value; checks that marked tables
-- hold exactly 1..n and unmarked ones only string keys.
local function count_arrays(v)
  if type(v) ~= "table" then return 0 end
  local count, n = 0, 0
  if json.is_array(v) then
    count = 1
    for k in pairs(v) do
      n = n + 1
      assert.equal("number", type(k))
    end
    assert.equal(#v, n)
  else
    assert.is_nil(getmetatable(v))
    for k in pairs(v) do assert.equal("string", type(k)) end
  end
  for _, x in pairs(v) do count = count + count_arrays(x) end
  return count
end

describe("json.decode (misskey.core)", function()
  it("is the C closure from core.json_decoder", function()
    assert.equal("function", type(core.json_decoder))
    assert.is_nil(debug.getinfo(json.decode, "S").source:find("%.lua$"))
    -- a decoder with another array marker, for another user
    local mt = { __jsontype = "array", mine = true }
    local decode = core.json_decoder(mt)
    assert.equal(mt, getmetatable(decode("[]")))
    assert.equal(mt, getmetatable(decode('{"a":[1]}').a))
    assert.has_error(function() core.json_decoder("x") end)
  end)

  describe("grammar", function()
    it("accepts any top-level value with whitespace around it", function()
      assert.equal("x", json.decode(' \t\n\r"x"\r\n\t '))
      assert.equal(true, json.decode("true"))
      assert.equal(false, json.decode(" false"))
      assert.equal(json.null, json.decode("null "))
      assert.equal(-12, json.decode("-12"))
      assert.equal(0.5, json.decode("0.5"))
      assert.same({}, json.decode(" [ ] "))
      assert.same({ a = { 1, { b = json.null } } }, json.decode(' { "a" : [ 1 , { "b" : null } ] } '))
    end)

    it("rejects what RFC 8259 does not allow, saying where", function()
      rejects("", 1, "unexpected end of text, expected a value")
      rejects("   ", 4, "unexpected end of text")
      rejects('{"a":1} x', 9, "unexpected text after the value")
      rejects("[1] [2]", 5, "unexpected text after the value")
      rejects("1 2", 3, "unexpected text after the value")
      rejects('"a"b', 4, "unexpected text after the value")
      rejects("NaN", 1, "expected a value")
      rejects("[-NaN]", 2, "invalid number")
      rejects("Infinity", 1, "expected a value")
      rejects("-Infinity", 1, "invalid number")
      rejects("[1, Infinity]", 5, "expected a value")
      rejects("0x10", 1, "invalid number")
      rejects("[0X1F]", 2, "invalid number")
      rejects("012", 1, "invalid number")
      rejects("[-01]", 2, "invalid number")
      rejects("00", 1, "invalid number")
      rejects("+1", 1, "expected a value")
      rejects("[+1]", 2, "expected a value")
      rejects(".5", 1, "expected a value")
      rejects("1.", 1, "invalid number")
      rejects("1.e5", 1, "invalid number")
      rejects("1e", 1, "invalid number")
      rejects("1e+", 1, "invalid number")
      rejects("[1E-]", 2, "invalid number")
      rejects("-", 1, "invalid number")
      rejects("1.5.2", 1, "invalid number")
      rejects("1x", 1, "invalid number")
      rejects("'a'", 1, "expected a value")
      rejects("{'a':1}", 2, "expected a string key or '}'")
      rejects('{"a":\'b\'}', 6, "expected a value")
      rejects("[1,]", 4, "expected a value")
      rejects("[1,2,,3]", 6, "expected a value")
      rejects("[,1]", 2, "expected a value")
      rejects('{"a":1,}', 8, "expected a string key")
      rejects('{"a":[],}', 9, "expected a string key")
      rejects("{,}", 2, "expected a string key or '}'")
      rejects('{"a" 1}', 6, "expected ':'")
      rejects('{"a"}', 5, "expected ':'")
      rejects('{"a":}', 6, "expected a value")
      rejects("{1:2}", 2, "expected a string key or '}'")
      rejects('{"a":1 "b":2}', 8, "expected ',' or '}'")
      rejects("[1 2]", 4, "expected ',' or ']'")
      rejects('[1:2]', 3, "expected ',' or ']'")
      rejects("[1}", 3, "expected ',' or ']'")
      rejects('{"a":1]', 7, "expected ',' or '}'")
      rejects("[", 2, "unexpected end of text, expected a value")
      rejects("[1", 3, "unexpected end of text, expected ',' or ']'")
      rejects("[1,", 4, "unexpected end of text, expected a value")
      rejects("{", 2, "unexpected end of text, expected a string key or '}'")
      rejects('{"a"', 5, "unexpected end of text, expected ':'")
      rejects('{"a":', 6, "unexpected end of text, expected a value")
      rejects('{"a":1', 7, "unexpected end of text, expected ',' or '}'")
      rejects("]", 1, "expected a value")
      rejects("nul", 1, "expected a value")
      rejects("tru", 1, "expected a value")
      rejects("[falsey]", 2, "expected a value")
      rejects("[nulls]", 2, "expected a value")
      rejects("True", 1, "expected a value")
      rejects("[\0]", 2, "expected a value")
      rejects("1\0", 2, "unexpected text after the value")
      rejects("\239\187\191{}", 1, "expected a value")     -- a UTF-8 byte-order mark
    end)

    it("rejects bad strings, saying where", function()
      rejects('"abc', 1, "unterminated string")
      rejects('["abc\\"]', 2, "unterminated string")
      rejects('"a\\', 1, "unterminated string")
      rejects('["a\tb"]', 4, "control character in a string")
      rejects('"a\nb"', 3, "control character in a string")
      rejects('"\0"', 2, "control character in a string")
      rejects('"ab\31"', 4, "control character in a string")
      rejects('"a\\x41"', 3, "invalid escape")
      rejects('"\\a"', 2, "invalid escape")
      rejects('"\\\'"', 2, "invalid escape")
      rejects('"\\U0041"', 2, "invalid escape")
      rejects('"\\0"', 2, "invalid escape")
      rejects('"ab\\u12"', 4, "invalid \\u escape")
      rejects('"\\u12G4"', 2, "invalid \\u escape")
      rejects('"\\u"', 2, "invalid \\u escape")
      rejects('"\\ud83d\\u12"', 8, "invalid \\u escape")   -- a high surrogate, then a bad escape
      rejects('{"a\\q":1}', 4, "invalid escape")
      rejects('{"a\1":1}', 4, "control character in a string")
    end)

    it("allows 1000 nested arrays and objects, not 1001", function()
      local ok = string.rep("[", 1000) .. string.rep("]", 1000)
      assert.is_table(json.decode(ok))
      rejects(string.rep("[", 1001) .. string.rep("]", 1001), 1001, "nested too deep")
      local objects = string.rep('{"a":', 1000) .. "1" .. string.rep("}", 1000)
      local v = json.decode(objects)
      for _ = 1, 999 do v = v.a end
      assert.equal(1, v.a)
      rejects(string.rep('{"a":', 1001) .. "1" .. string.rep("}", 1001), 5001, "nested too deep")
      rejects(string.rep('[{"a":', 501) .. "1" .. string.rep("}]", 501), 6 * 500 + 1, "nested too deep")
      -- unclosed, far too deep: an error, not a crash
      rejects(string.rep("[", 100000), 1001, "nested too deep")
    end)

    it("fits 1000 levels that each hold many items in Lua's C stack (8000 slots on 5.1)", function()
      for _, items in ipairs { 1, 8, 63, 64, 65, 100 } do
        local arrays, objects, close_a, close_o = {}, {}, {}, {}
        local pairs_text = {}
        for i = 1, items do pairs_text[i] = '"k' .. i .. '":' .. i .. "," end
        local keys = table.concat(pairs_text)
        for d = 1, 1000 do
          arrays[d] = "[" .. string.rep('"x",', items)
          objects[d] = "{" .. keys .. '"z":'
          close_a[d], close_o[d] = "]", "}"
        end
        local a = assert(json.decode(table.concat(arrays) .. "0" .. table.concat(close_a)))
        local o = assert(json.decode(table.concat(objects) .. "0" .. table.concat(close_o)))
        for _ = 1, 999 do
          assert.equal(items + 1, #a)
          assert.equal(items, o["k" .. items])
          a, o = a[items + 1], o.z
        end
        assert.equal(0, a[items + 1])
        assert.equal(0, o.z)
      end
    end)
  end)

  describe("arrays and objects", function()
    it("marks every array, empty and nested ones too; objects stay plain", function()
      local v = json.decode('[[],{},[[]],{"a":[],"b":{"c":[[],[{}]]}},[1,[2,[3]]]]')
      assert.equal(11, count_arrays(v))
      assert.is_true(json.is_array(v))
      assert.is_true(json.is_array(v[1]))
      assert.is_false(json.is_array(v[2]))
      assert.is_nil(getmetatable(v[2]))
      assert.is_true(json.is_array(v[3][1]))
      assert.is_true(json.is_array(v[4].a))
      assert.is_nil(next(v[4].a))
      assert.is_true(json.is_array(v[4].b.c[1]))
      assert.is_false(json.is_array(v[4].b.c[2][1]))
      local again = json.decode(json.encode(v))     -- arrays re-encode as arrays, objects as objects
      assert.same(v, again)
      assert.equal(11, count_arrays(again))
      assert.equal("[]", json.encode(json.decode("[ \n\t\r ]")))
      assert.equal("{}", json.encode(json.decode("{ \n\t\r }")))
    end)

    it("keeps the last of duplicate keys, in a chunk and across chunks", function()
      assert.same({ a = 3, b = 2 }, json.decode('{"a":1,"b":2,"a":3}'))
      assert.same({ a = json.null }, json.decode('{"a":1,"a":null}'))
      local parts = { '"dup":"first"' }
      for i = 1, 200 do parts[#parts + 1] = ('"k%d":%d'):format(i, i) end
      parts[#parts + 1] = '"dup":"last"'
      parts[#parts + 1] = '"k100":"again"'
      local v = json.decode("{" .. table.concat(parts, ",") .. "}")
      assert.equal("last", v.dup)
      assert.equal("again", v.k100)
      assert.equal(199, v.k199)
    end)

    it("decodes a large array (100,000 items)", function()
      local items = {}
      for i = 1, 100000 do items[i] = tostring(i) end
      local v = json.decode("[" .. table.concat(items, ",") .. "]")
      assert.equal(100000, #v)
      assert.is_true(json.is_array(v))
      for i = 1, 100000, 997 do assert.equal(i, v[i]) end
      assert.equal(100000, v[100000])
      local nested = json.decode("[" .. string.rep("[],", 99999) .. "[]]")
      assert.equal(100000, #nested)
      assert.is_true(json.is_array(nested[100000]))
    end)

    it("decodes a large object (10,000 keys)", function()
      local items = {}
      for i = 1, 10000 do items[i] = ('"key%d":{"n":%d,"s":"v%d"}'):format(i, i, i) end
      local v = json.decode("{" .. table.concat(items, ",") .. "}")
      local count = 0
      for _ in pairs(v) do count = count + 1 end
      assert.equal(10000, count)
      for i = 1, 10000, 331 do
        assert.equal(i, v["key" .. i].n)
        assert.equal("v" .. i, v["key" .. i].s)
      end
    end)
  end)

  describe("strings", function()
    it("decodes every escape", function()
      assert.equal('"\\/\8\12\10\13\9', json.decode([["\"\\\/\b\f\n\r\t"]]))
      assert.equal("a/b", json.decode([["a\/b"]]))
      assert.equal("A\127", json.decode([["\u0041\u007F"]]))
      assert.equal("\195\169\195\169", json.decode([["\u00e9\u00E9"]]))          -- é: 2 bytes
      assert.equal("\226\130\172", json.decode([["\u20ac"]]))                   -- €: 3 bytes
      assert.equal("\239\191\191", json.decode([["\uffff"]]))                   -- U+FFFF
      assert.equal("\224\160\128", json.decode([["\u0800"]]))                   -- smallest 3-byte
      assert.equal("\223\191", json.decode([["\u07ff"]]))                       -- largest 2-byte
      assert.equal("x\n\"y\"\\", json.decode([["x\n\"y\"\\"]]))
      assert.equal(string.rep("\\", 50), json.decode('"' .. string.rep("\\\\", 50) .. '"'))
      assert.equal("key\tkey", next(json.decode([[{"key\tkey":1}]])))
    end)

    it("keeps escapes and plain runs in order in long strings", function()
      local parts, want = {}, {}
      for i = 1, 300 do
        parts[#parts + 1] = ("plain text %d "):format(i)
        want[#want + 1] = ("plain text %d "):format(i)
        parts[#parts + 1] = ({ [[\n]], [[\"]], [[\u00e9]], [[\ud83d\ude00]], [[\\]] })[i % 5 + 1]
        want[#want + 1] = ({ "\n", '"', "\195\169", "\240\159\152\128", "\\" })[i % 5 + 1]
      end
      assert.equal(table.concat(want), json.decode('"' .. table.concat(parts) .. '"'))
    end)

    it("decodes \\u0000 to a NUL byte, with nothing else changed", function()
      local v = json.decode([["\u0000"]])
      assert.equal("\0", v)
      assert.equal("a\0b\0", json.decode([["a\u0000b\u0000"]]))
      local w = json.decode([=[["\u0000"]]=])
      assert.equal(1, #w)
      assert.equal("\0", w[1])
      assert.is_true(json.is_array(w))
      local x = json.decode([[{"a\u0000b":[],"c":"\u0000"}]])
      assert.is_true(json.is_array(x["a\0b"]))
      assert.equal("\0", x.c)
    end)

    it("joins surrogate pairs and turns lone surrogates into U+FFFD", function()
      local smile, fffd = "\240\159\152\128", "\239\191\189"       -- U+1F600, U+FFFD
      assert.equal(smile, json.decode([["\ud83d\ude00"]]))
      assert.equal(smile, json.decode([["\uD83D\uDE00"]]))
      assert.equal("\240\144\128\128", json.decode([["\ud800\udc00"]]))        -- U+10000
      assert.equal("\244\143\191\191", json.decode([["\udbff\udfff"]]))        -- U+10FFFF
      assert.equal(fffd, json.decode([["\ud83d"]]))                            -- high, then the end
      assert.equal(fffd .. "x", json.decode([["\ud83dx"]]))                    -- high, then a letter
      assert.equal(fffd .. "\n", json.decode([["\ud83d\n"]]))                  -- high, then an escape
      assert.equal(fffd .. "A", json.decode([["\ud83d\u0041"]]))               -- high, then a non-surrogate
      assert.equal(fffd .. smile, json.decode([["\ud83d\ud83d\ude00"]]))       -- high, high, low
      assert.equal(fffd, json.decode([["\ude00"]]))                            -- low alone
      assert.equal(fffd .. fffd, json.decode([["\ude00\ud83d"]]))              -- low, high
      assert.same({ fffd, "ok" }, json.decode([=[["\udfff","ok"]]=]))
    end)

    it("keeps well-formed UTF-8 and turns other raw bytes into U+FFFD", function()
      local s = "\128\255\254 \227\129\130 \240\159\141\163 \192\175"
      local fffd = "\239\191\189"
      local want = fffd:rep(3) .. " \227\129\130 \240\159\141\163 " .. fffd:rep(2)
      assert.equal(want, json.decode('"' .. s .. '"'))
      assert.equal(want .. "\n", json.decode('"' .. s .. '\\n"'))
      assert.equal(1, json.decode('{"' .. s .. '":1}')[want])
    end)

    it("decodes strings of every length around the 8-byte scan", function()
      for n = 0, 40 do
        local s = string.rep("x", n)
        assert.equal(s, json.decode('"' .. s .. '"'))
        assert.equal(s .. '"', json.decode('"' .. s .. '\\""'))
        assert.equal(s .. "\0", json.decode('"' .. s .. '\\u0000"'))
        rejects('"' .. s .. "\1" .. '"', n + 2, "control character")
        rejects('"' .. s, 1, "unterminated string")
        rejects('"' .. s .. "\\", 1, "unterminated string")
      end
    end)
  end)

  describe("numbers", function()
    it("reads integers exactly to the limits of 64 bits on Lua 5.3+", function()
      if not has_integers then
        assert.equal(2 ^ 53, json.decode("9007199254740992"))
        assert.equal(2 ^ 63, json.decode("9223372036854775807"))
        assert.equal(-2 ^ 63, json.decode("-9223372036854775808"))
        return
      end
      local maxint, minint = rawget(math, "maxinteger"), rawget(math, "mininteger")
      local cases = {
        ["0"] = 0, ["7"] = 7, ["-7"] = -7,
        ["9007199254740993"] = 9007199254740993,                    -- 2^53 + 1: not a double
        ["1234567890123456789"] = 1234567890123456789,
        ["9223372036854775807"] = maxint,
        ["-9223372036854775807"] = -maxint,
        ["-9223372036854775808"] = minint,
      }
      for text, want in pairs(cases) do
        local v = json.decode(text)
        assert.equal("integer", math_type(v), text)
        assert.equal(want, v, text)
      end
      local v = json.decode('{"id":9223372036854775807,"list":[-9223372036854775808]}')
      assert.equal(maxint, v.id)
      assert.equal(minint, v.list[1])
    end)

    it("reads numbers beyond 64 bits as floats", function()
      for text, want in pairs {
        ["18446744073709551616"] = 2 ^ 64, ["9223372036854775808"] = 2 ^ 63,
        ["-9223372036854775809"] = -2 ^ 63, ["123456789012345678901234567890"] = 1.2345678901234568e29,
        ["-18446744073709551616"] = -2 ^ 64,
      } do
        local v = json.decode(text)
        assert.equal(want, v, text)
        if has_integers then assert.equal("float", math_type(v), text) end
      end
    end)

    it("makes integers of integral floats on Lua 5.3+ (1.0, 1e3)", function()
      for text, want in pairs {
        ["1.0"] = 1, ["1e3"] = 1000, ["1E3"] = 1000, ["1e+3"] = 1000, ["-2.5e1"] = -25, ["100e-2"] = 1,
        ["0.0"] = 0, ["0e10"] = 0, ["1.8e12"] = 1800000000000, ["9007199254740993.0"] = 2 ^ 53,
        ["4611686018427387904.0"] = 2 ^ 62, ["-9223372036854775808.0"] = -2 ^ 63,
      } do
        local v = json.decode(text)
        assert.equal(want, v, text)
        if has_integers then assert.equal("integer", math_type(v), text) end
      end
      for _, text in ipairs { "1.5", "1e-3", "9223372036854775808.0", "1e19", "1e300", "-1e300" } do
        local v = json.decode(text)
        assert.equal(tonumber(text), v, text)
        if has_integers then assert.equal("float", math_type(v), text) end
      end
    end)

    it("rounds floats correctly", function()
      local cases = {
        { "0.1", 1 / 10 }, { "-0.1", -1 / 10 }, { "0.3", 3 / 10 }, { "1.5", 1.5 }, { "4.35", 435 / 100 },
        { "5e-324", 2 ^ -1074 }, { "-5e-324", -2 ^ -1074 },
        { "2.2250738585072014e-308", 2 ^ -1022 },                       -- the smallest normal
        { "2.2250738585072011e-308", 2 ^ -1022 - 2 ^ -1074 },           -- the largest subnormal
        { "1.7976931348623157e308", (2 - 2 ^ -52) * 2 ^ 1023 },          -- the largest double
        { "9007199254740993.0", 2 ^ 53 },                               -- a tie, to even
        { "9007199254740995.0", 2 ^ 53 + 4 },                           -- a tie, to even
        { "1e23", 1e23 }, { "1e22", 1e22 }, { "1e-22", 1e-22 }, { "123.456e2", 12345.6 },
        { "3.141592653589793", math.pi }, { "1e-310", tonumber("1e-310") },
        { "0.1e1", 1 }, { "12e30", 1.2e31 }, { "0.000001", 1e-6 },
        { "8.98846567431158e307", 2 ^ 1023 },
        { "2.4703282292062328e-324", 2 ^ -1074 },                       -- just above half the least
        { "1e-400", 0 }, { "0." .. string.rep("0", 400) .. "1e400", 0.1 },
        { string.rep("9", 308), tonumber(string.rep("9", 308)) },
      }
      for _, case in ipairs(cases) do
        local text, want = case[1], case[2]
        local v = json.decode(text)
        assert.equal(want, v, text)
        assert.equal(tonumber(text), v, text)         -- Lua's own reader (strtod) agrees
        assert.equal(cjson.decode(text), v, text)
      end
      -- exponents too long to add up: read whole, never folded into a small one
      local zeros = string.rep("0", 100005)
      assert.is_nil(json.decode("0." .. zeros .. "1e1000000")) -- infinity: out of range
      assert.equal(1e9, json.decode("0." .. zeros .. "1e100015"))
      assert.equal(0, json.decode("1" .. zeros .. "e-1000000"))
      assert.equal(1e-9, json.decode("1" .. zeros .. "e-100014"))
      assert.equal(1e-310, json.decode("1e-310"))      -- subnormal
      assert.truthy(json.decode("1e-310") > 0)
      -- round trips through the encoder
      for _, x in ipairs { 0.1, 1 / 3, 2 ^ -1074, 2 ^ -1022, 1.7976931348623157e308, 1e-310, 123.456, -2.5e-8 } do
        assert.equal(x, json.decode(json.encode(x)))
      end
    end)

    it("reads the C locale's '.' whatever LC_NUMERIC the host set", function()
      local texts = { "0.5", "1.25e-300", "3.14159265358979323846", "2.2250738585072011e-308",
        "1.7976931348623157e308", "[1.5,-0.25,1e-7]" }
      local got = {}
      local comma = locale.with_decimal_comma(function()
        for i, text in ipairs(texts) do got[i] = { json.decode(text) } end
      end)
      if not comma then
        pending(locale.MISSING)
        return
      end
      for i, text in ipairs(texts) do
        assert.same({ cjson.decode(text) }, got[i], text .. " under " .. comma)
      end
      assert.equal(0.5, got[1][1])
      assert.equal(3.141592653589793, got[3][1])
    end)
  end)

  it("round-trips a realistic Misskey note", function()
    local function user(i, host)
      return {
        id = "9abc00000" .. i, name = "ベンチ用アカウント " .. i .. " :blobcat:", username = "user_" .. i,
        host = host or json.null,
        avatarUrl = "https://misskey.example/proxy/avatar.webp?url=https%3A%2F%2Fmedia%2Fa.png&avatar=1",
        avatarBlurhash = "eHFiS:M{00~qt7j[M{?bWBof00t7RjofRj~q%Mj[Rjay00WBt7ay", avatarDecorations = json.array(),
        isBot = false, isCat = true, emojis = {}, onlineStatus = "unknown",
        badgeRoles = json.array { { name = "Supporter", iconUrl = json.null, displayOrder = 10 } },
      }
    end
    local note = {
      id = "9u8y7t6r5e", createdAt = "2024-05-01T12:34:56.789Z", userId = "9abc000001", user = user(1),
      text = "今日のベンチマーク :blobcat: #misskey https://example.com/posts/101\n"
        .. "\"quoted\" and \\escaped\\ text, tab\there. 🎉🍣 \0 NUL and \1 control",
      cw = json.null, visibility = "public", localOnly = false, reactionAcceptance = json.null,
      renoteCount = 3, repliesCount = 0, reactionCount = 7,
      reactions = { ["👍"] = 2, [":blobcat@.:"] = 4, [":awesome@mi.example.net:"] = 1 },
      reactionEmojis = { ["awesome@mi.example.net"] = "https://mi.example.net/emoji/awesome.webp" },
      emojis = {}, tags = json.array { "misskey", "lua" }, mentions = json.array(),
      fileIds = json.array { "9fil000031" },
      files = json.array { {
        id = "9fil000031", createdAt = "2025-03-02T12:01:07.123Z", name = "IMG_0013.jpg", type = "image/jpeg",
        md5 = "d41d8cd98f00b204e9800998ecf8427e", size = 124456, isSensitive = false,
        blurhash = "eJF5,AxuD%IU~qRjRjWBj[of00ofxuayRj%MRjWBayj[ayj[ofayWB",
        properties = { width = 1920, height = 1080.5 }, url = "https://media.misskey.example/files/a.jpg",
        thumbnailUrl = json.null, comment = "夕方の空", folderId = json.null, folder = json.null,
        userId = json.null, user = json.null,
      } },
      replyId = json.null, renoteId = "9u8y7t6r5d", clippedCount = 0,
      renote = { id = "9u8y7t6r5d", text = "renoted", user = user(2, "mi.example.net"), files = json.array(),
        poll = { multiple = false, expiresAt = 1800000000000,
          choices = json.array {
            { text = "はい", votes = 10, isVoted = false }, { text = "", votes = 0, isVoted = true },
          } } },
      uri = "https://mi.example.net/notes/9u8y7t6r5e", url = json.null, myReaction = "👍",
    }
    local text = json.encode(note)
    local back = json.decode(text)
    assert.same(note, back)
    assert.is_true(json.is_array(back.user.avatarDecorations))
    assert.is_true(json.is_array(back.mentions))
    assert.is_true(json.is_array(back.renote.files))
    assert.is_true(json.is_array(back.renote.poll.choices))
    assert.is_false(json.is_array(back.emojis))
    assert.equal(json.pretty(note), json.pretty(back))
    assert.equal(#text, #json.encode(back))
    if has_integers then
      assert.equal("integer", math_type(back.renote.poll.expiresAt))
      assert.equal("float", math_type(back.files[1].properties.height))
    end
    -- as a streaming event, with whitespace and escaped non-ASCII as another server might send it
    local event = json.decode('{ "type" : "channel", "body" : { "id" : "1", "type" : "note", "body" : '
      .. text .. ' } }\n')
    assert.same(note, event.body.body)
    local escaped = json.decode([[{"text":"\u4eca\u65e5\u306e \ud83c\udf89","emojis":{},"tags":[]}]])
    assert.equal("今日の 🎉", escaped.text)
    assert.is_true(json.is_array(escaped.tags))
  end)

  it("agrees with lua-cjson on random documents", function()
    -- Park-Miller minimal standard generator: the same documents on every Lua.
    local seed = 20240501
    local function rand(n)
      seed = (seed * 16807) % 2147483647
      return seed % n + 1
    end
    local function ws()
      local r = rand(12)
      return r == 1 and " " or r == 2 and "\n  " or r == 3 and "\t\r\n" or ""
    end
    local PIECES = {
      "a", "Misskey", " ", "猫", "🍣", "café", "[]", "{}", ",", ":", "'", "/", "\127",
      [[\"]], [[\\]], [[\/]], [[\b]], [[\f]], [[\n]], [[\r]], [[\t]], [[\u0000]], [[\u001f]], [[\u00e9]],
      [[\u4e2d]], [[\uFFFF]], [[\ud83d\ude00]], [[\uD834\uDD1E]], [[\u0041]],
    }
    local function gen_string()
      local parts = {}
      for i = 1, rand(8) - 1 do parts[i] = PIECES[rand(#PIECES)] end
      if rand(10) == 1 then parts[#parts + 1] = string.rep("long text ", rand(30)) end
      return '"' .. table.concat(parts) .. '"'
    end
    local function digits(n)
      local t = {}
      for i = 1, n do t[i] = tostring(rand(10) - 1) end
      return table.concat(t)
    end
    local function gen_number()
      local r = rand(9)
      local sign = rand(4) == 1 and "-" or ""
      if r == 1 then return sign .. tostring(rand(1000) - 1) end
      if r == 2 then return sign .. tostring(rand(2147483646)) .. digits(rand(6) - 1) end  -- < 2^53
      if r == 3 then return sign .. tostring(rand(9)) .. "." .. digits(rand(17)) end
      if r == 4 then return sign .. tostring(rand(999)) .. "." .. digits(rand(4)) .. "e" .. tostring(rand(50) - 25) end
      if r == 5 then return sign .. "0." .. digits(rand(25)) .. "E" .. (rand(2) == 1 and "+" or "-") .. rand(330) end
      if r == 6 then                                               -- a random double, 17 digits
        local m = (rand(2 ^ 26) - 1) * 2 ^ 27 + (rand(2 ^ 27) - 1)
        return sign .. string.format("%.17g", m * 2 ^ (rand(2000) - 1075))
      end
      if r == 7 then return sign .. string.format("%.17g", rand(2147483646) / (rand(1000) + 1)) end
      if r == 8 then return sign .. digits(1):gsub("0", "1") .. digits(rand(30)) .. "e-" .. rand(40) end
      return sign .. "0"
    end
    local arrays
    local function gen_value(depth)
      local r = rand(depth > 6 and 6 or 9)
      if r == 1 then return gen_string() end
      if r == 2 or r == 3 then return gen_number() end
      if r == 4 then return ({ "true", "false", "null" })[rand(3)] end
      if r == 5 then return gen_string() end
      if r == 6 then return gen_number() end
      if r == 7 or r == 8 then
        arrays = arrays + 1
        local items = {}
        for i = 1, rand(6) - 1 do items[i] = ws() .. gen_value(depth + 1) .. ws() end
        if rand(20) == 1 then for i = #items + 1, #items + 100 do items[i] = gen_number() end end
        return "[" .. ws() .. table.concat(items, ",") .. "]"
      end
      local items = {}
      for i = 1, rand(7) - 1 do
        -- unique keys: a duplicate would drop a value (and the arrays counted in it)
        items[i] = ws() .. '"k' .. i .. PIECES[rand(#PIECES)] .. '"' .. ws() .. ":" .. ws() .. gen_value(depth + 1)
          .. ws()
      end
      return "{" .. ws() .. table.concat(items, ",") .. "}"
    end
    local function same(a, b, path)
      if type(b) == "number" and b == 0 and 1 / b < 0 then -- cjson's -0.0: a float, sign kept
        assert.is_true(type(a) == "number" and a == 0 and 1 / a < 0, path .. ": -0 lost its sign")
        if has_integers then assert.equal("float", math_type(a), path) end
        return
      end
      if type(a) == "number" and type(b) == "number" then
        assert.is_true(a == b, path .. ": " .. string.format("%.17g ~= %.17g", a, b))
        if has_integers then
          local integral = rawget(math, "tointeger")(b) ~= nil
          assert.equal(integral and "integer" or "float", math_type(a), path)
        end
        return
      end
      assert.equal(type(b), type(a), path)
      if type(a) ~= "table" then
        assert.is_true(a == b, path)
        return
      end
      for k, v in pairs(b) do same(a[k], v, path .. "." .. tostring(k)) end
      for k in pairs(a) do assert.is_true(b[k] ~= nil, path .. ": extra " .. tostring(k)) end
    end
    -- cjson reads 1e400 as infinity; this decoder refuses it (no encoder writes it back).
    local function has_inf(v)
      if type(v) == "number" then return v == math.huge or v == -math.huge end
      if type(v) == "table" then
        for _, x in pairs(v) do if has_inf(x) then return true end end
      end
      return false
    end
    local refused = 0
    for n = 1, 400 do
      arrays = 0
      local text = ws() .. gen_value(0) .. ws()
      local ok, want = pcall(cjson.decode, text)
      assert.is_true(ok, text)
      local got, err = json.decode(text)
      if has_inf(want) then
        assert.is_nil(got, text)
        assert.matches("number out of range", err)
        refused = refused + 1
      else
        assert.is_nil(err, text)
        same(got, want, "doc" .. n)
        assert.equal(arrays, count_arrays(got), text)
      end
    end
    assert.truthy(refused < 40, refused .. " documents refused")
  end)

  describe("errors", function()
    it("raises only for a non-string argument", function()
      for _, v in ipairs { 1, true, {}, print } do
        local ok, err = pcall(json.decode, v)
        assert.is_false(ok)
        assert.matches("json.decode: expected a string, got " .. type(v), err, 1, true)
      end
      local ok, err = pcall(json.decode)
      assert.is_false(ok)
      assert.matches("expected a string, got no value", err, 1, true)
    end)

    it("leaves no state behind between calls", function()
      rejects('{"a":[1,2,"x\\q"]}', 13, "invalid escape")
      assert.same({ a = { 1, 2, "x\n" } }, json.decode('{"a":[1,2,"x\\n"]}'))
      rejects(string.rep("[", 1001), 1001, "nested too deep")
      assert.is_table(json.decode(string.rep("[", 1000) .. string.rep("]", 1000)))
    end)
  end)
end)
