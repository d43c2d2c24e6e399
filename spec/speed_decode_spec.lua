-- Per event (issue 17): what makes the decoder (src/json.c) build a note faster must not
-- change what it builds. Each decoder keeps a cache of object keys (256 slots, replaced
-- as new keys come), makes each object's table at the size the last object under the
-- same key had, and unescapes short strings on the C stack instead of in a buffer the
-- size of the whole text.
-- (Lua 5.1 string literals: decimal escapes only, no \x or \u{}.)
local json = require "misskey.json"
local core = require "misskey.core"

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- The Lua heap's growth (KiB) while f runs, the collector stopped.
local function heap_growth(f)
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  local keep = f()
  local grown = collectgarbage("count") - before
  collectgarbage("restart")
  return grown, keep
end

describe("json.decode's key cache", function()
  it("tells apart keys that share their first and last eight bytes", function()
    for len = 17, 45 do
      local text, want = {}, {}
      for i = 1, 20 do -- 20 keys of one length, alike but for one byte in the middle
        local key = ("a"):rep(8) .. ("m"):rep(len - 17) .. string.char(64 + i) .. ("z"):rep(8)
        text[#text + 1] = ('"%s":%d'):format(key, i)
        want[key] = i
      end
      local doc = "{" .. table.concat(text, ",") .. "}"
      assert.same(want, json.decode(doc))
      assert.same(want, json.decode(doc)) -- the second time from the cache
    end
  end)

  it("gives back every key of every length, short, long, UTF-8 and ASCII, decoded again and again", function()
    local keys = {}
    for len = 1, 48 do
      keys[#keys + 1] = ("k"):rep(len)
      keys[#keys + 1] = ("\227\129\130"):rep(len) -- あ..., 3 bytes each
      keys[#keys + 1] = ("x"):rep(len - 1) .. "\0" -- a NUL last, inside the tail word
    end
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = json.encode(k) .. ":" .. i end
    local doc = "{" .. table.concat(parts, ",") .. "}"
    for _ = 1, 3 do
      local v = json.decode(doc)
      assert.equal(#keys, count(v))
      for i, k in ipairs(keys) do assert.equal(i, v[k], ("%q"):format(k)) end
    end
  end)

  it("keeps decoding right when far more keys come than it holds", function()
    local parts = {}
    for i = 1, 5000 do parts[i] = ('"key%d":%d'):format(i, i) end
    local doc = "{" .. table.concat(parts, ",") .. "}"
    for _ = 1, 2 do
      local v = json.decode(doc)
      assert.equal(5000, count(v))
      for i = 1, 5000, 97 do assert.equal(i, v["key" .. i]) end
    end
  end)

  it("holds no more than its slots, whatever keys a peer makes up", function()
    local function fresh(round)
      local parts = {}
      for i = 1, 1000 do parts[i] = ('"r%d-%d":0'):format(round, i) end
      return "{" .. table.concat(parts, ",") .. "}"
    end
    -- a first 100,000 keys, so that Lua's string table has grown to what the next need
    for round = 1, 100 do json.decode(fresh(round)) end
    collectgarbage("collect")
    collectgarbage("collect")
    local base = collectgarbage("count")
    for round = 101, 200 do json.decode(fresh(round)) end -- 100,000 more, ~4 MiB of strings
    collectgarbage("collect")
    collectgarbage("collect")
    -- 256 cached keys are ~20 KiB
    assert.is_true(collectgarbage("count") - base < 512, "the heap grew by "
      .. (collectgarbage("count") - base) .. " KiB")
  end)

  it("repairs keys of a text that is not well-formed UTF-8, and caches nothing of them", function()
    local v = json.decode('{"a\255":1,"b":2}')
    assert.equal(1, v["a\239\191\189"])
    assert.equal(2, v.b)
    assert.is_nil(v["a\255"])
    assert.same({ ["a\239\191\189"] = 3 }, json.decode('{"a\239\191\189":3}'))
  end)

  it("takes escaped keys as they are meant", function()
    assert.same({ ["a\"b"] = 1, ab = 2, ["\n"] = 3 }, json.decode('{"a\\"b":1,"a\\u0062":2,"\\n":3}'))
  end)

  it("is shared by a decoder made with another's, and refuses anything else as that", function()
    local mt = { __jsontype = "array" }
    local first = core.json_decoder(mt)
    local second = core.json_decoder(mt, nil, first)
    assert.same({ abc = 1 }, first('{"abc":1}'))
    assert.same({ abc = 2, l = {} }, second('{"abc":2,"l":[]}'))
    assert.equal(mt, getmetatable(second('{"l":[]}').l))
    assert.has_error(function() core.json_decoder(mt, nil, print) end,
      "bad argument #3 to 'json_decoder' (a decoder from core.json_decoder expected)")
    assert.has_error(function() core.json_decoder(mt, nil, {}) end)
  end)
end)

describe("json.decode's table sizes", function()
  it("builds objects of changing shapes under one key as they are", function()
    local parts = {}
    for i = 1, 300 do
      local members = {}
      for j = 1, (i * 37) % 41 do members[j] = ('"m%d":%d'):format(j, j) end
      parts[i] = '{"user":{' .. table.concat(members, ",") .. '},"n":' .. i .. "}"
    end
    local v = json.decode("[" .. table.concat(parts, ",") .. "]")
    assert.equal(300, #v)
    for i = 1, 300 do
      assert.equal(i, v[i].n)
      assert.equal((i * 37) % 41, count(v[i].user))
    end
  end)

  it("keeps the last of duplicate keys, and with null = \"nil\" a null removes the first", function()
    local v = json.decode('{"a":1,"b":2,"a":3,"c":null,"b":null}', { null = "nil" })
    assert.same({ a = 3 }, v)
    v = json.decode('{"a":1,"a":null}')
    assert.equal(json.null, v.a)
  end)

  it("gives a small object after a large one under the same key no more room than the large one had", function()
    -- one object of 500 members under "a", then 20,000 of one member: the 500 slots
    -- are given to one table at most
    local big = {}
    for i = 1, 500 do big[i] = ('"k%d":1'):format(i) end
    local parts = { '{"a":{' .. table.concat(big, ",") .. "}}" }
    for i = 2, 20001 do parts[i] = '{"a":{"x":1}}' end
    local doc = "[" .. table.concat(parts, ",") .. "]"
    local grown = heap_growth(function() return json.decode(doc) end)
    -- 20,000 small objects in two tables each: far below 20,000 tables of 500 slots (> 300 MiB)
    assert.is_true(grown < 8 * 1024, ("the decoded value took %.0f KiB"):format(grown))
  end)
end)

describe("json.decode's escaped strings", function()
  it("unescapes strings of every length around the C stack buffer's size", function()
    local esc = { '\\n', '\\"', '\\\\', '\\u00e9', '\\ud83c\\udf63', '\\/' }
    local out = { "\n", '"', "\\", "\195\169", "\240\159\141\163", "/" }
    for len = 490, 530, 3 do
      for k = 1, #esc do
        for _, at in ipairs { 1, math.floor(len / 2), len } do
          local text = ('"%s%s%s"'):format(("p"):rep(at - 1), esc[k], ("q"):rep(len - at))
          local want = ("p"):rep(at - 1) .. out[k] .. ("q"):rep(len - at)
          assert.equal(want, json.decode(text))
          assert.equal(want, json.decode("[" .. text .. "," .. text .. "]")[2])
        end
      end
      local many = ('"%s"'):format(('a\\t'):rep(len)) -- escapes all the way past it
      assert.equal(("a\t"):rep(len), json.decode(many))
    end
  end)

  it("needs no buffer the size of the text for a short escaped string in a long text", function()
    local doc = '{"text":"a \\"quoted\\" word\\n"}' .. (" "):rep(4 * 1024 * 1024)
    local grown, v = heap_growth(function() return json.decode(doc) end)
    assert.equal('a "quoted" word\n', v.text)
    assert.is_true(grown < 256, ("decoding took %.0f KiB of heap"):format(grown))
  end)
end)
