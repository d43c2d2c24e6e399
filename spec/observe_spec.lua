-- client:emit, the one seam every observed event goes through (on_event option).
local new_client = require "support.client"

local TOKEN = "ObSeRvEtOkEn0123456789abcdefXYZ"

describe("on_event", function()
  it("is refused when not a function, naming the option", function()
    assert.error_matches(function()
      new_client({ host = "http://127.0.0.1:1", token = TOKEN, on_event = "log" })
    end, "bad option 'on_event' %(function expected, got string%)")
  end)

  it("receives each emitted event with host and time, the token redacted from every string field", function()
    local seen = {}
    local c = new_client({ host = "http://127.0.0.1:1", token = TOKEN,
      on_event = function(ev) seen[#seen + 1] = ev end })
    assert.is_true(c:observed())
    c:emit({ type = "request", endpoint = "i", detail = "url ?i=" .. TOKEN .. "&x", status = 200 })
    assert.equal(1, #seen)
    assert.equal("request", seen[1].type)
    assert.equal("127.0.0.1:1", seen[1].host)
    assert.equal("number", type(seen[1].time))
    assert.equal("url ?i=***&x", seen[1].detail)
    assert.equal(200, seen[1].status)
  end)

  it("keeps working when the observer raises, and reports it on stderr without the token", function()
    local c = new_client({ host = "http://127.0.0.1:1", token = TOKEN,
      on_event = function() error("observer broke with " .. TOKEN) end })
    local written = {}
    -- luacheck: ignore 122 (io.stderr is swapped to read what emit writes)
    local saved = io.stderr
    local sink = { write = function(_, ...) for _, s in ipairs{ ... } do written[#written + 1] = s end end }
    io.stderr = sink -- luacheck: ignore 122
    local ok = pcall(c.emit, c, { type = "request" })
    io.stderr = saved -- luacheck: ignore 122
    assert.is_true(ok)
    local text = table.concat(written)
    assert.matches("on_event raised", text)
    assert.not_matches(TOKEN, text, 1, true)
  end)

  it("costs nothing without an observer", function()
    local c = new_client({ host = "http://127.0.0.1:1", token = TOKEN })
    assert.is_false(c:observed())
    local ev = { type = "request", detail = TOKEN }
    c:emit(ev)
    assert.is_nil(ev.host) -- untouched: nobody reads it
  end)
end)
