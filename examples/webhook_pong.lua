-- A webhook bot: "@bot ping" -> "@you pong", with no WebSocket: Misskey POSTs
-- each mention to this script's listener (misskey.webhook.listen).
--
-- With MISSKEY_HOST, MISSKEY_TOKEN and MISSKEY_HOOK_SECRET set, it listens on
-- 127.0.0.1:PORT/hook (--port, default 8080) until Ctrl-C. Register the webhook
-- once, with a URL at which the server reaches this listener:
--   client:request("i/webhooks/create", { name = "pong", url = "http://127.0.0.1:8080/hook",
--     secret = os.getenv("MISSKEY_HOOK_SECRET"), on = { "mention" } })
-- (A server refuses to deliver to a private address unless its config lists it in
-- allowedPrivateNetworks.) Otherwise it runs against misskey.testing's fake and
-- delivers @alice's mention to itself, as Misskey would, secret included.
--   --once   exit after one reply (what CI runs), printing it
local core = require "misskey.core"
local json = require "misskey.json"
local misskey = require "misskey"
local testing = require "misskey.testing"
local webhook = require "misskey.webhook"

local once, port = false, 8080
local i = 1
while arg and arg[i] do
  if arg[i] == "--once" then
    once = true
  elseif arg[i] == "--port" and tonumber(arg[i + 1]) then
    port = tonumber(arg[i + 1])
    i = i + 1
  else
    error("usage: webhook_pong.lua [--once] [--port N]")
  end
  i = i + 1
end

local client, fake, where = testing.demo_client()
print(where)
local secret = os.getenv("MISSKEY_HOOK_SECRET")
if fake then
  secret, port = core.base64url(core.random(24)), 0 -- any free port
elseif not secret or secret == "" then
  error("set MISSKEY_HOOK_SECRET to the webhook's secret")
end

local listener
listener = assert(webhook.listen{ port = port, path = "/hook", secret = secret, on = {
  mention = function(note)
    if not (note.text or ""):find("ping") then return end
    local reply = assert(client:request("notes/create", { text = "@" .. note.user.username .. " pong",
      replyId = note.id, visibility = note.visibility }))
    print(("replied to @%s: %s"):format(note.user.username, reply.createdNote.text))
    if once then listener:close() end
  end,
} })
print("listening on " .. listener.url)

if fake then
  -- What Misskey would do: alice mentions the bot, and the mention is POSTed to the webhook.
  local mention = fake:as("alice"):post("@me ping")
  local event = { server = fake.base_url, hookId = "demo", userId = "me", eventId = core.uuid(),
    createdAt = os.time() * 1000, type = "mention", body = { note = mention } }
  misskey.spawn(function()
    local res = assert(require("misskey.transport.curl").new().request{ method = "POST", url = listener.url,
      headers = { ["Content-Type"] = "application/json", ["X-Misskey-Hook-Secret"] = secret },
      body = json.encode(event), timeout = 10 })
    print("delivered: HTTP " .. res.status)
  end)
end

-- Until listener:close() (or Ctrl-C), and every task (the replies) is done.
misskey.run(function() listener:run() end)

if fake then
  local mention = fake:notes{ user = "alice", text = "ping" }[1]
  local reply = assert(fake:notes{ user = "me", replyId = mention.id }[1], "no reply in the fake")
  print(("in the fake: %s (reply to %s)"):format(reply.text, reply.replyId))
end
