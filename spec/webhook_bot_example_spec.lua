-- examples/webhook_bot.lua (README "Webhooks", "A bot on webhooks") runs in
-- its bounded mode against the in-process fake, as a separate process on the
-- interpreter under test: the fake delivers @alice's mention to the bot's
-- receiver and the bot's reply must be in the fake.
describe("examples/webhook_bot.lua", function()
  it("--once answers a mention the fake delivers by webhook, and leaves the credential store alone", function()
    local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
    local config = os.tmpname()
    os.remove(config)
    local p = assert(io.popen(("env -u MISSKEY_HOST -u MISSKEY_TOKEN -u LD_PRELOAD XDG_CONFIG_HOME=%s timeout 30 %s -e "
      .. "'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path; "
      .. "package.cpath=\"./build/%s/?.so;\"..package.cpath' examples/webhook_bot.lua --once 2>&1; echo \"exit=$?\"")
      :format(config, interpreter, version)))
    local out = p:read("*a")
    p:close()
    assert.matches("exit=0%s*$", out)
    assert.matches("@me takes webhook deliveries at https://bot%.example/hook", out)
    assert.matches("replied to @alice: @alice pong", out)
    assert.matches("in the fake: @alice pong %(reply to %w+, delivered with status 204%)", out)
    assert.is_nil(io.open(config .. "/misskey/credentials.json"), "the demo wrote a credential store")
  end)
end)
