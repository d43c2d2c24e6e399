-- The OAuth redirect's loopback listener waits through the scheduler (the
-- waiting seam): while accept() waits, other tasks run, here the "browser"
-- itself, a task of this process that fetches the redirect with the library's
-- own HTTP client. A listener that blocked in its own poll (the C listener it
-- replaced) would never let that task run, and accept would time out.
local auth = require "misskey.auth"
local loop = require "misskey.loop"
local misskey = require "misskey"
local server = require "support.server"

local function get(url)
  -- Per call, not at load time: an engine made when the file loads would be
  -- garbage during other files' specs.
  return require("misskey.transport.curl").new().request{ method = "GET", url = url, timeout = 10 }
end

describe("the OAuth redirect listener on the scheduler", function()
  after_each(function() loop.cancel_all() end)

  it("lets other tasks run while accept waits; a task's request is the redirect", function()
    local port = server.free_port()
    local l = assert(auth.oauth_listen(port))
    local base = "http://127.0.0.1:" .. port
    local answers = {}
    local target
    misskey.run(function()
      misskey.spawn(function()
        -- Wrong ones first (each answered 400, the wait goes on), then the redirect.
        for _, path in ipairs{ "/cb?code=1&state=WRONG", "/other?code=1&state=S1", "/cb?code=abc&state=S1" } do
          local res, msg = get(base .. path)
          answers[#answers + 1] = res and res.status or msg
        end
      end)
      target = l:accept(20, { path = "/cb", state = "S1" })
    end)
    l:close()
    assert.equal("/cb?code=abc&state=S1", target)
    assert.same({ 400, 400, 200 }, answers)
  end)

  it("in a plain script, accept drives the scheduler: timers fire while it waits", function()
    local port = server.free_port()
    local l = assert(auth.oauth_listen(port))
    local ticks = 0
    local ticker = misskey.spawn(function()
      for _ = 1, 5 do
        misskey.sleep(0.01)
        ticks = ticks + 1
      end
    end)
    local target, why = l:accept(0.3, { path = "/cb", state = "S1" })
    l:close()
    ticker:cancel()
    assert.is_nil(target)
    assert.equal("timeout", why)
    assert.equal(5, ticks)
  end)
end)
