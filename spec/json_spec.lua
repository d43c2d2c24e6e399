local json = require "misskey.json"
local cjson = require "cjson"

local has_integers = rawget(math, "type") ~= nil   -- Lua 5.3+

-- pcall(f, ...) that returns the error message (or fails if f did not raise).
local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

local function encode_error(value, name)
  return error_of(json.encode, value, name)
end

-- Encoded objects have no fixed key order: compare decoded values instead.
local function same_json(expected_text, actual_text)
  assert.same(cjson.decode(expected_text), cjson.decode(actual_text))
end

describe("misskey.json", function()
  describe("null", function()
    it("is cjson.null", function()
      assert.equal(cjson.null, json.null)
    end)

    it("encodes as null", function()
      assert.equal("null", json.encode(json.null))
      assert.equal('{"a":null}', json.encode({ a = json.null }))
      assert.equal("[null,1]", json.encode(json.array { json.null, 1 }))
      assert.equal("null", json.encode(nil))
    end)

    it("decodes to json.null", function()
      assert.equal(json.null, json.decode("null"))
      assert.equal(json.null, json.decode('{"a":null}').a)
      local t = json.decode("[null,null]")
      assert.equal(2, #t)
      assert.equal(json.null, t[1])
    end)
  end)

  describe("array", function()
    it("marks and returns the table", function()
      local t = { 1, 2 }
      assert.equal(t, json.array(t))
      assert.is_true(json.is_array(t))
      assert.is_true(json.is_array(json.array()))
      assert.same({}, json.array())
      assert.equal(t, json.array(t))        -- marking twice is fine
    end)

    it("is_array is false for unmarked tables and non-tables", function()
      assert.is_false(json.is_array({ 1, 2 }))
      assert.is_false(json.is_array({}))
      assert.is_false(json.is_array("x"))
      assert.is_false(json.is_array(nil))
    end)

    it("json.array{} encodes as [] and {} as {}", function()
      assert.equal("[]", json.encode(json.array {}))
      assert.equal("[]", json.encode(json.array()))
      assert.equal("{}", json.encode({}))
      assert.equal('{"a":[]}', json.encode({ a = json.array() }))
      same_json('{"a":[],"b":{}}', json.encode({ a = json.array(), b = {} }))
    end)

    it("refuses non-tables and tables with another metatable", function()
      assert.matches("expected a table, got string", error_of(json.array, "x"))
      local t = setmetatable({}, {})
      assert.matches("already has a metatable", error_of(json.array, t))
    end)

    it("honours dkjson-style __jsontype markers", function()
      local t = setmetatable({}, { __jsontype = "array" })
      assert.is_true(json.is_array(t))
      assert.equal("[]", json.encode(t))
    end)

    it("rejects string keys in a marked array", function()
      local t = json.array { 1, 2 }
      t.x = 1
      assert.equal("params: cannot encode a table that mixes array items and string keys",
        encode_error(t, "params"))
      local e = json.array()
      e.x = 1
      assert.equal("params: cannot encode an array (json.array) with string keys", encode_error(e, "params"))
    end)
  end)

  describe("encode", function()
    describe("strings", function()
      it("escapes quote, backslash and control characters", function()
        assert.equal([["a\"b\\c"]], json.encode('a"b\\c'))
        assert.equal([["\b\f\n\r\t"]], json.encode("\b\f\n\r\t"))
        assert.equal([["\u0000\u0001\u001f"]], json.encode("\0\1\31"))
        assert.equal([["x\u000by"]], json.encode("x\11y"))
      end)

      it("escapes every control character below 0x20 and nothing else ASCII", function()
        for i = 0, 127 do
          local c = string.char(i)
          local out = json.encode(c)
          if i < 32 or c == '"' or c == "\\" then
            assert.equal("\\", out:sub(2, 2), "byte " .. i)
          else
            assert.equal('"' .. c .. '"', out, "byte " .. i)
          end
          assert.equal(c, cjson.decode(out))
        end
      end)

      it("does not escape /", function()
        assert.equal('"https://example.com/a/b"', json.encode("https://example.com/a/b"))
      end)

      it("passes UTF-8 through and refuses other bytes, naming the path", function()
        assert.equal('"猫🍣 café"', json.encode("猫🍣 café"))
        assert.error_matches(function() json.encode({ t = "\255\254" }, "params") end,
          "params.t: invalid UTF-8 in a string (byte 1)", 1, true)
      end)

      it("escapes object keys the same way", function()
        assert.equal('{"a\\"b\\n/":1}', json.encode({ ['a"b\n/'] = 1 }))
      end)

      it("round-trips through cjson", function()
        local s = "line1\nline2\t\"q\" \\ / \0 end 猫"
        assert.equal(s, cjson.decode(json.encode(s)))
        assert.equal(s, json.decode(json.encode(s)))
      end)
    end)

    describe("numbers", function()
      it("writes integers as plain digits", function()
        assert.equal("0", json.encode(0))
        assert.equal("123", json.encode(123))
        assert.equal("-42", json.encode(-42))
        assert.equal("3", json.encode(3.0))
      end)

      it("writes millisecond timestamps and large counts without exponent", function()
        assert.equal("1800000000000", json.encode(1.8e12))
        assert.equal("1800000000000", json.encode(1800000000000))
        assert.equal("123456789012", json.encode(123456789012))
        assert.equal("9007199254740991", json.encode(2 ^ 53 - 1))
        assert.equal("-9007199254740991", json.encode(-(2 ^ 53 - 1)))
        assert.equal("9007199254740992", json.encode(2 ^ 53))
        assert.equal('{"expiresAt":1800000000000}', json.encode({ expiresAt = 1.8e12 }))
      end)

      it("writes the full integer range on Lua 5.3+", function()
        if not has_integers then return end
        local maxint, minint = rawget(math, "maxinteger"), rawget(math, "mininteger")
        assert.equal("9223372036854775807", json.encode(maxint))
        assert.equal("-9223372036854775808", json.encode(minint))
      end)

      it("writes floats with the shortest text that reads back equal", function()
        assert.equal("1.5", json.encode(1.5))
        assert.equal("0.1", json.encode(0.1))
        assert.equal("-2.25", json.encode(-2.25))
        assert.equal("1e+20", json.encode(1e20))
        assert.equal("1.5e-07", json.encode(1.5e-7))
        for _, x in ipairs { 1 / 3, 2 / 3, math.pi, 1e300, -1e-300, 0.1 + 0.2, 2 ^ 60 + 0.0, 4.35 } do
          local s = json.encode(x)
          assert.equal(x, tonumber(s), s)
          assert.equal(x, cjson.decode(s), s)
        end
        assert.equal("0.30000000000000004", json.encode(0.1 + 0.2))
      end)

      it("raises on NaN and infinities, naming the path", function()
        assert.equal("params.a.b: cannot encode NaN", encode_error({ a = { b = 0 / 0 } }, "params"))
        assert.equal("params.x: cannot encode inf", encode_error({ x = math.huge }, "params"))
        assert.equal("params.x[2]: cannot encode -inf",
          encode_error({ x = { 1, -math.huge } }, "params"))
        assert.equal("value: cannot encode NaN", encode_error(0 / 0))
      end)
    end)

    it("encodes booleans", function()
      assert.equal("true", json.encode(true))
      assert.equal("[true,false]", json.encode({ true, false }))
    end)

    describe("tables", function()
      it("encodes sequences as arrays", function()
        assert.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
        assert.equal('[["a"],{"b":1}]', json.encode({ { "a" }, { b = 1 } }))
        local t = {}
        for i = 1, 1000 do t[i] = i * 1000 end
        local back = cjson.decode(json.encode(t))
        assert.equal(1000, #back)
        assert.equal(1000000, back[1000])
      end)

      it("encodes string-keyed tables as objects", function()
        same_json('{"a":1,"b":"x","c":{"d":[1,2]}}', json.encode({ a = 1, b = "x", c = { d = { 1, 2 } } }))
      end)

      it("allows the same table twice when it is not a cycle", function()
        local shared = { 1 }
        same_json('{"a":[1],"b":[1]}', json.encode({ a = shared, b = shared }))
      end)

      it("round-trips a Misskey-like note", function()
        local note = {
          id = "9u8y7t6r5e", createdAt = "2024-05-01T00:00:00.000Z", text = "hi :blobcat:\n/path",
          cw = json.null, visibility = "public", localOnly = false, renoteCount = 3,
          reactions = { ["👍"] = 2, [":blobcat@.:"] = 1 }, fileIds = json.array(), emojis = {},
          tags = json.array { "lua" }, poll = { choices = json.array { { text = "a", votes = 0 } },
            expiresAt = json.null, multiple = true },
        }
        local back = json.decode(json.encode(note))
        assert.same(note, back)
        assert.is_true(json.is_array(back.fileIds))
        assert.is_true(json.is_array(back.tags))
        assert.is_true(json.is_array(back.poll.choices))
        assert.is_false(json.is_array(back.emojis))
        assert.equal(json.pretty(note), json.pretty(back))
      end)
    end)

    describe("errors", function()
      it("names the path of a function", function()
        local params = { poll = { choices = { "a", "b", function() end } } }
        assert.equal("params.poll.choices[3]: cannot encode a function", encode_error(params, "params"))
      end)

      it("names the root as value by default", function()
        assert.equal("value: cannot encode a function", encode_error(function() end))
        assert.equal("value.f: cannot encode a function", encode_error({ f = print }))
      end)

      it("rejects userdata other than null, and threads", function()
        assert.equal("params.f: cannot encode a userdata", encode_error({ f = io.stdout }, "params"))
        assert.equal("params[1]: cannot encode a thread",
          encode_error({ coroutine.create(function() end) }, "params"))
      end)

      it("quotes keys that are not identifiers", function()
        assert.equal('params["foo-bar"][1]: cannot encode a function',
          encode_error({ ["foo-bar"] = { print } }, "params"))
        assert.equal('params["a\\"b"]: cannot encode a function', encode_error({ ['a"b'] = print }, "params"))
        assert.equal('params._ok9: cannot encode a function', encode_error({ _ok9 = print }, "params"))
      end)

      it("detects cycles", function()
        local t = {}
        t.x = t
        assert.equal("params.x: cycle detected", encode_error(t, "params"))
        local a = { list = {} }
        a.list[1] = { back = a }
        assert.equal("params.list[1].back: cycle detected", encode_error(a, "params"))
        assert.equal("value.x: cycle detected", error_of(json.pretty, t))
      end)

      it("rejects sparse arrays", function()
        assert.equal("params.list: cannot encode a sparse array (no value at index 2)",
          encode_error({ list = { 1, nil, 3 } }, "params"))
        assert.equal("params.list: cannot encode a sparse array (no value at index 1)",
          encode_error({ list = { [2] = "x" } }, "params"))
        local holes = {}
        holes[1], holes[2], holes[4] = 1, 2, 4
        assert.equal("params: cannot encode a sparse array (no value at index 3)", encode_error(holes, "params"))
      end)

      it("rejects tables mixing array items and string keys", function()
        assert.equal("params.t: cannot encode a table that mixes array items and string keys",
          encode_error({ t = { 1, 2, a = 3 } }, "params"))
      end)

      it("rejects non-string keys", function()
        assert.equal("params.t: cannot encode a non-string key (boolean true)",
          encode_error({ t = { [true] = 1 } }, "params"))
        assert.equal("params.t: cannot encode a non-string key (number 1.5)",
          encode_error({ t = { [1.5] = 1 } }, "params"))
        assert.equal("params.t: cannot encode a non-string key (number 0)",
          encode_error({ t = { [0] = 1 } }, "params"))
        assert.equal("params: cannot encode a non-string key (table)", encode_error({ [{}] = 1 }, "params"))
      end)

      it("limits nesting to 1000 tables", function()
        local ok = {}
        for _ = 2, 1000 do ok = { ok } end
        local text = json.encode(ok)
        assert.equal(string.rep("[", 999) .. "{}" .. string.rep("]", 999), text)
        assert.is_table(json.decode(text))     -- and cjson's limit agrees
        local deep = { ok }
        local err = encode_error(deep, "params")
        assert.equal("params" .. string.rep("[1]", 1000) .. ": cannot encode more than 1000 nested tables", err)
        assert.equal(err:gsub("^params", "value"), error_of(json.pretty, deep))
      end)

      it("requires the name to be a string", function()
        assert.matches("name must be a string", error_of(json.encode, {}, 42))
      end)
    end)
  end)

  describe("decode", function()
    it("decodes scalars and containers", function()
      assert.equal("x", json.decode('"x"'))
      assert.equal(true, json.decode("true"))
      assert.equal(1.5, json.decode("1.5"))
      assert.same({ a = { 1, 2 }, b = "c" }, json.decode('{"a":[1,2],"b":"c"}'))
    end)

    it("returns integers on Lua 5.3+", function()
      local v = json.decode('{"n":123,"f":1.5,"list":[1,2.5,{"ms":1800000000000}],"neg":-7}')
      assert.equal(123, v.n)
      assert.equal(1.5, v.f)
      assert.equal(1800000000000, v.list[3].ms)
      assert.equal(-7, v.neg)
      assert.equal(123, json.decode("123"))
      if has_integers then
        local mtype = rawget(math, "type")
        assert.equal("integer", mtype(json.decode("123")))
        assert.equal("integer", mtype(v.n))
        assert.equal("float", mtype(v.f))
        assert.equal("integer", mtype(v.list[1]))
        assert.equal("float", mtype(v.list[2]))
        assert.equal("integer", mtype(v.list[3].ms))
        assert.equal("integer", mtype(v.neg))
        assert.equal("float", mtype(json.decode("1e300")))
        assert.equal("float", mtype(json.decode("1.5")))
      end
    end)

    it("re-encodes decoded integers without a fraction", function()
      assert.equal('{"n":1800000000000}', json.encode(json.decode('{"n":1800000000000}')))
      assert.equal("[1,2,3]", json.encode(json.decode("[1,2,3]")))
    end)

    it("marks decoded arrays, including empty ones", function()
      assert.is_true(json.is_array(json.decode("[1,2]")))
      assert.is_true(json.is_array(json.decode("[]")))
      assert.is_false(json.is_array(json.decode("{}")))
      assert.equal("[]", json.encode(json.decode("[]")))
      assert.equal("{}", json.encode(json.decode("{}")))
      assert.equal("[[],{},[[]]]", json.encode(json.decode("[[],{},[[]]]")))
      local v = json.decode('{"files":[],"emojis":{},"tags":["a"],"poll":{"choices":[]}}')
      assert.is_true(json.is_array(v.files))
      assert.equal(0, #v.files)
      assert.is_nil(next(v.files))
      assert.is_false(json.is_array(v.emojis))
      assert.is_true(json.is_array(v.poll.choices))
      same_json('{"files":[],"emojis":{},"tags":["a"],"poll":{"choices":[]}}', json.encode(v))
    end)

    it("recognises empty arrays with whitespace inside", function()
      local v = json.decode('{"a":[ ],"b":[\n\t\r ],"c":[ 1 ]}')
      assert.is_true(json.is_array(v.a))
      assert.is_true(json.is_array(v.b))
      assert.is_nil(next(v.a))
      assert.same({ 1 }, v.c)
    end)

    it("leaves [] inside strings alone", function()
      local v = json.decode('{"text":"x = [] and [ ]","[]":[],"list":["[]",[]]}')
      assert.equal("x = [] and [ ]", v.text)
      assert.is_true(json.is_array(v["[]"]))
      assert.equal("[]", v.list[1])
      assert.is_true(json.is_array(v.list[2]))
      assert.is_nil(next(v.list[2]))
      local w = json.decode('["\\"[]", "\\\\", [], "a\\\\[]"]')
      assert.same({ '"[]', "\\", {}, "a\\[]" }, w)
      assert.is_true(json.is_array(w[3]))
    end)

    it("leaves many [] inside strings alone", function()
      local items = {}
      for i = 1, 20 do items[i] = '{"text":"[] ' .. i .. '","files":[]}' end
      local v = json.decode("[" .. table.concat(items, ",") .. "]")
      assert.equal(20, #v)
      for i = 1, 20 do
        assert.equal("[] " .. i, v[i].text)
        assert.is_true(json.is_array(v[i].files))
        assert.is_nil(next(v[i].files))
      end
    end)

    it("does not confuse a decoded NUL string with an empty array", function()
      local v = json.decode('["\\u0000"]')
      assert.equal(1, #v)
      assert.equal("\0", v[1])
      -- A NUL in the text changes nothing: empty arrays are still marked.
      local w = json.decode('{"a":[],"b":"\\u0000"}')
      assert.equal("\0", w.b)
      assert.is_nil(next(w.a))
      assert.is_true(json.is_array(w.a))
    end)

    it("returns nil and a message on invalid JSON", function()
      for _, text in ipairs { "", "{", "[1,]", '{"a":1} x', "nul", "[NaN]", "Infinity", "0x10", "'a'",
        '{"a":[],}', '["[]",', '[[]', "[\0]" } do
        local v, err = json.decode(text)
        assert.is_nil(v, text)
        assert.is_string(err, text)
      end
    end)

    it("reports errors at the positions of the original text, as cjson counts them", function()
      for _, text in ipairs { '[[], [], 1,]', '{"a":[],"b":[]', '["[]", [], x]' } do
        local _, err = json.decode(text)
        local _, expected = pcall(cjson.decode, text)
        assert.equal(expected:match("at character (%d+)"), err:match("^invalid JSON at character (%d+): "))
      end
    end)

    it("returns nil and a message when nested too deep", function()
      local v, err = json.decode(string.rep("[", 1001) .. string.rep("]", 1001))
      assert.is_nil(v)
      assert.is_string(err)
    end)

    it("raises when text is not a string", function()
      assert.matches("expected a string, got nil", error_of(json.decode, nil))
      assert.matches("expected a string, got table", error_of(json.decode, {}))
    end)

    it("does not change the global cjson settings", function()
      assert.is_true(cjson.decode_invalid_numbers())
      assert.equal(1000, cjson.decode_max_depth())
    end)
  end)

  describe("pretty", function()
    it("indents by two spaces with sorted keys", function()
      local v = { b = { 1, 2.5 }, a = "x/y\n", c = json.array(), d = {}, e = { g = json.null, f = 1.8e12 }, h = true }
      assert.equal(table.concat({
        "{",
        '  "a": "x/y\\n",',
        '  "b": [',
        "    1,",
        "    2.5",
        "  ],",
        '  "c": [],',
        '  "d": {},',
        '  "e": {',
        '    "f": 1800000000000,',
        '    "g": null',
        "  },",
        '  "h": true',
        "}",
      }, "\n"), json.pretty(v))
    end)

    it("prints decoded data faithfully", function()
      local text = '{"z":[],"a":{},"n":[1,{"k":"v"}],"i":42}'
      assert.equal('{\n  "a": {},\n  "i": 42,\n  "n": [\n    1,\n    {\n      "k": "v"\n    }\n  ],\n  "z": []\n}',
        json.pretty(json.decode(text)))
    end)

    it("prints scalars", function()
      assert.equal('"x"', json.pretty("x"))
      assert.equal("1", json.pretty(1))
      assert.equal("null", json.pretty(json.null))
      assert.equal("[]", json.pretty(json.array()))
      assert.equal("{}", json.pretty({}))
    end)

    it("raises like encode", function()
      assert.equal("params.a[1]: cannot encode a function", error_of(json.pretty, { a = { print } }, "params"))
      assert.equal("value.n: cannot encode NaN", error_of(json.pretty, { n = 0 / 0 }))
    end)
  end)
end)
