-- Per event (issue 17): the decoder tries each object key first against the key that
-- followed the previous one last time (objects of one kind list their keys in one order).
-- A wrong guess must never show: each text below comes after one that set up a guess the
-- text nearly, but not quite, matches.
-- (Lua 5.1 string literals: decimal escapes only, no \x or \u{}.)
local json = require "misskey.json"

-- Decodes `first` (to set up the guesses), then returns the decode of `text`.
local function after(first, text)
  assert.is_table(json.decode(first))
  return json.decode(text)
end

describe("json.decode's guessed keys", function()
  it("reads a key that the guessed key is a prefix of, or that is a prefix of it", function()
    local shape = '{"id":1,"name":2,"abcdefghijklmnopqrstu":3}'
    assert.same({ id = 1, names = 2, abcdefghijklmnopqrstuv = 3 },
      after(shape, '{"id":1,"names":2,"abcdefghijklmnopqrstuv":3}'))
    assert.same({ id = 1, nam = 2, abcdefghijklmnopqrst = 3 },
      after(shape, '{"id":1,"nam":2,"abcdefghijklmnopqrst":3}'))
    assert.same({ id = 1, nameX = 2, abcdefghijXlmnopqrstu = 3 },
      after(shape, '{"id":1,"nameX":2,"abcdefghijXlmnopqrstu":3}'))
  end)

  it("reads a key whose escapes spell the guessed key, and one with an escape after it", function()
    local shape = '{"id":1,"name":2}'
    assert.same({ id = 1, name = 2 }, after(shape, '{"id":1,"na\\u006de":2}'))
    assert.same({ id = 1, ['name"'] = 2 }, after(shape, '{"id":1,"name\\"":2}'))
    assert.same({ id = 1, ["name\n"] = 2 }, after(shape, '{"id":1,"name\\n":2}'))
  end)

  it("fails a text cut inside or right after a guessed key as an unguessed one", function()
    local shape = '{"ab":{"cd":1,"efghijklm":2}}'
    local cuts = {
      ['{"ab":{"cd":1,"efghijklm'] = "invalid JSON at character 15: unterminated string",
      ['{"ab":{"cd":1,"efghijklm"'] = "invalid JSON at character 26: unexpected end of text, expected ':'",
      ['{"ab":{"cd'] = "invalid JSON at character 8: unterminated string",
      ['{"ab":{"cd"'] = "invalid JSON at character 12: unexpected end of text, expected ':'",
    }
    for cut, want in pairs(cuts) do
      json.decode(shape)
      local value, message = json.decode(cut)
      assert.is_nil(value)
      assert.equal(want, message)
    end
  end)

  it("does not guess in a text that is not well-formed UTF-8 (keys repaired, not read from the cache)", function()
    local shape = '{"id":1,"name":2}'
    assert.same({ id = 1, name = "\239\191\189" }, after(shape, '{"id":1,"name":"\255"}'))
    assert.same({ id = 1, ["name\239\191\189"] = 2 }, after(shape, '{"id":1,"name\255":2}'))
  end)

  it("stays right when the guessed key's slot was given to another key", function()
    local shape = '{"alpha":1,"beta":2,"gamma":3}'
    json.decode(shape)
    local many = {}
    for i = 1, 2000 do many[#many + 1] = ('"k%d":%d'):format(i, i) end
    local evict = json.decode("{" .. table.concat(many, ",") .. "}")
    assert.equal(2000, evict.k2000)
    assert.same({ alpha = 1, beta = 2, gamma = 3 }, json.decode(shape))
    assert.same({ alpha = 1, k1999 = 2, gamma = 3 }, json.decode('{"alpha":1,"k1999":2,"gamma":3}'))
  end)

  it("follows objects whose keys come in another order, or repeat", function()
    local shape = '[{"a":1,"b":2,"c":3},{"c":3,"b":2,"a":1},{"a":1,"a":2,"b":3}]'
    local want = { { a = 1, b = 2, c = 3 }, { a = 1, b = 2, c = 3 }, { a = 2, b = 3 } }
    for _ = 1, 3 do
      local got = json.decode(shape)
      assert.same(want, { got[1], got[2], got[3] })
    end
  end)
end)
