-- misskey.seenset: the two-generation set behind the stream's and the bot's
-- repeat checks. It keeps at least the last `size` keys and at most 2 * `size`.
local seenset = require "misskey.seenset"

describe("misskey.seenset", function()
  it("remembers the last `size` keys at least, and forgets older generations whole", function()
    local s = seenset.new()
    assert.is_false(seenset.has(s, "a"))
    for i = 1, 3 do seenset.add(s, i, 3) end
    assert.equal(3, seenset.count(s))
    seenset.add(s, 4, 3) -- a new generation: 1..3 become the older one
    for i = 1, 4 do assert.is_true(seenset.has(s, i)) end
    assert.equal(4, seenset.count(s))
    for i = 5, 7 do seenset.add(s, i, 3) end -- the generation of 4..6 is full at 6; 7 starts the next
    assert.is_false(seenset.has(s, 1))
    for i = 4, 7 do assert.is_true(seenset.has(s, i)) end
    assert.equal(4, seenset.count(s))
  end)

  it("never holds more than 2 * size keys", function()
    local s = seenset.new()
    for i = 1, 10000 do
      seenset.add(s, i, 100)
      assert(seenset.count(s) <= 200)
    end
    for i = 9901, 10000 do assert.is_true(seenset.has(s, i)) end
  end)

  it("remember() adds a new key and refuses a known one", function()
    local s = seenset.new()
    assert.is_true(seenset.remember(s, "x", 2))
    assert.is_false(seenset.remember(s, "x", 2))
    assert.is_true(seenset.remember(s, "y", 2))
    assert.is_true(seenset.remember(s, "z", 2)) -- x and y are the older generation now
    assert.is_false(seenset.remember(s, "x", 2))
    assert.is_true(seenset.remember(s, "w", 2))
    assert.is_false(seenset.remember(s, "y", 2))
    assert.is_true(seenset.remember(s, "v", 2)) -- z, w are the older generation: x and y are forgotten
    assert.is_true(seenset.remember(s, "x", 2))
  end)

  it("takes the size at each add, so a module's limit may change while sets exist", function()
    local s = seenset.new()
    for i = 1, 5 do seenset.add(s, i, 10) end
    seenset.add(s, 6, 2) -- over the new size: a new generation
    assert.equal(6, seenset.count(s))
    seenset.add(s, 7, 2)
    seenset.add(s, 8, 2)
    assert.is_false(seenset.has(s, 1))
  end)
end)
