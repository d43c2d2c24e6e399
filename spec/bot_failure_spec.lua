-- bot:run when the bot's event source fails under it: the stream's reader task
-- raising (a bug, a transport that throws) must end bot:run with nil, msg, err,
-- as stream:run does, so that a unit with Restart=on-failure restarts the bot
-- instead of leaving it waiting for events that will never come.
local misskey = require "misskey"
local loop = require "misskey.loop"
local testing = require "misskey.testing"

after_each(function()
  loop.cancel_all()
end)

-- A client of `fake` whose WebSocket connect raises: the stream's reader task fails.
local function client_with_failing_stream(fake)
  local transport = {
    request = fake.transport.request,
    websocket = function() error("reader bug") end,
  }
  return misskey.new{ host = fake.base_url, token = "fake-token-me", transport = transport }
end

describe("bot:run when the stream's reader task fails", function()
  it("returns nil, msg, err (kind task) instead of waiting forever", function()
    local fake = testing.fake()
    local bot = misskey.bot(client_with_failing_stream(fake))
    local errors_seen, told = {}, {}
    bot:on("error", function(_, err)
      errors_seen[#errors_seen + 1] = err
      loop.signal(told)
    end)
    -- Bounds the spec: were run() to keep waiting, this stops the bot after 5 s
    -- and run() would return true. (A plain script's run waits for this task too.)
    loop.spawn(function()
      loop.wait_event(told, 5)
      bot:stop()
    end)
    local ok, msg, err = bot:run()
    assert.is_nil(ok)
    assert.matches("reader bug", msg, 1, true)
    assert.equal("task", err.kind)
    assert.matches("reader bug", tostring(errors_seen[1] and errors_seen[1].message), 1, true)
  end)

  it("inside misskey.run too: the task calling bot:run gets the failure", function()
    local fake = testing.fake()
    local bot = misskey.bot(client_with_failing_stream(fake))
    local got
    misskey.run(function()
      local guard = loop.spawn(function()
        loop.sleep(5)
        bot:stop()
      end)
      got = { bot:run() }
      guard:cancel()
    end)
    assert.is_nil(got[1])
    assert.matches("reader bug", got[2], 1, true)
    assert.equal("task", got[3].kind)
  end)

  it("a stream closed by the bot's own stop is no failure", function()
    local fake = testing.fake()
    local bot = misskey.bot(fake:client())
    bot:on("ready", function() bot:stop() end)
    local ok, msg = bot:run()
    assert.is_true(ok, msg)
  end)
end)
