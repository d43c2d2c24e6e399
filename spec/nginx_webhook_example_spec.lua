-- examples/openresty/webhook_bot: the bot behind nginx, run by nginx from its own
-- nginx.conf (the port, pid and temporary paths moved to a temporary folder;
-- everything else as shipped) against the test server: worker process 0 registers
-- the webhook, the server delivers a mention to nginx, and the bot's reply reaches
-- notes/create. LuaJIT pass only.
local misskey = require "misskey"
local nginx = require "support.nginx"
local server = require "support.server"
local new_client = require "support.client"

if not rawget(_G, "jit") then return end
local missing = nginx.missing()
if missing then
  io.stderr:write("spec/nginx_webhook_example_spec.lua: skipped: " .. missing .. "\n")
  it("the webhook bot behind nginx (skipped: " .. missing .. ")", function() pending(missing) end)
  return
end

local TOKEN = "ExampleBotToken1" -- 16 letters and digits: a native token
local SECRET = "an-example-secret-of-enough-length"

local srv, ngx_, admin, template

setup(function()
  srv = server.start()
  admin = new_client{ host = srv.url, token = false }
  assert(admin:request("test/miauth/approve", { session = "example-bot", token = TOKEN, username = "hookbot" }))
  template = nginx.example_template("examples/openresty/webhook_bot/nginx.conf")
  local root = assert(io.popen("pwd")):read("*l")
  ngx_ = nginx.start{ template = template, prefix = root .. "/examples/openresty/webhook_bot/",
    env = { MISSKEY_HOST = srv.url, MISSKEY_TOKEN = TOKEN, MISSKEY_HOOK_SECRET = SECRET,
      MISSKEY_HOOK_URL = "http://127.0.0.1:${PORT}/hook" } }
end)

teardown(function()
  if ngx_ then ngx_:stop() end
  server.remove_dir(template:match("^(.*)/"))
  srv:stop()
end)

describe("examples/openresty/webhook_bot", function()
  it("registers its webhook from one worker process and answers a delivered mention", function()
    local bot = new_client{ host = srv.url, token = TOKEN }
    local hooks
    for _ = 1, 200 do
      hooks = assert(bot:request("i/webhooks/list"))
      if #hooks > 0 then break end
      misskey.sleep(0.05)
    end
    assert.equal(1, #hooks, ngx_:log())
    assert.equal(ngx_.url .. "/hook", hooks[1].url)
    assert.equal(SECRET, hooks[1].secret)
    assert.same({ "mention", "reply" }, hooks[1].on)
    -- A worker process whose bot has not started yet answers 503, and Misskey would try again
    -- later: so does this spec, until a delivery is answered 204 (at most 50 tries).
    local note = { id = "9examplenote", text = "@hookbot ping", userId = "9alice", visibility = "public",
      user = { id = "9alice", username = "alice", host = misskey.null } }
    local statuses = {}
    for _ = 1, 50 do
      local before = #assert(admin:request("test/webhooks/log"))
      assert(admin:request("test/webhooks/deliver", { username = "hookbot", type = "mention",
        body = { note = note } }))
      local log
      for _ = 1, 200 do
        log = assert(admin:request("test/webhooks/log"))
        local last = log[#log]
        if #log > before and (type(last.status) == "number" or type(last.error) == "string") then break end
        misskey.sleep(0.05)
      end
      statuses[#statuses + 1] = log[#log].status
      if log[#log].status == 204 then break end
      assert.equal(503, log[#log].status)
      misskey.sleep(0.1)
    end
    assert.equal(204, statuses[#statuses])
    local reply
    for _ = 1, 200 do
      for _, n in ipairs(assert(admin:request("test/notes/list"))) do
        if n.text == "@alice pong" then reply = n end
      end
      if reply then break end
      misskey.sleep(0.05)
    end
    assert.truthy(reply, "no reply reached notes/create\n" .. ngx_:log())
  end)
end)
