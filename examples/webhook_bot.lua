-- A bot on webhooks only (no WebSocket): "@bot ping" -> "@you pong".
--
-- With MISSKEY_HOST and MISSKEY_TOKEN set, it registers its webhook on the
-- account (bot:webhook: the webhook "misskey-lua-bot", created or updated, its
-- secret made here and kept in the credential store) and takes deliveries on
-- the built-in listener, 127.0.0.1:PORT/hook, until SIGTERM or Ctrl-C.
--   --port N     the listener's port (default 8080)
--   --url URL    where the server reaches the listener (default
--                http://127.0.0.1:PORT/hook: a server delivers to a private
--                address only when its config allows it; behind a TLS proxy,
--                your https:// URL)
--   --remove     delete the webhook (and forget its secret) on the way out
-- Otherwise it runs against misskey.testing's fake: the fake delivers
-- @alice's mention to the bot's receiver in-process, as Misskey would,
-- secret included (fake:route, no sockets).
--   --once       exit after one reply (what CI runs), printing it
local core = require "misskey.core"
local misskey = require "misskey"
local testing = require "misskey.testing"

local once, remove, port, url = false, false, 8080, nil
local i = 1
while arg and arg[i] do
  if arg[i] == "--once" then
    once = true
  elseif arg[i] == "--remove" then
    remove = true
  elseif arg[i] == "--port" and tonumber(arg[i + 1]) then
    port, i = tonumber(arg[i + 1]), i + 1
  elseif arg[i] == "--url" and arg[i + 1] then
    url, i = arg[i + 1], i + 1
  else
    error("usage: webhook_bot.lua [--once] [--remove] [--port N] [--url URL]")
  end
  i = i + 1
end

local client, fake, where = testing.demo_client()
print(where)

local bot = misskey.bot(client, { stream = false })   -- webhooks are its only source

bot:command("ping", function(ctx)
  local note = assert(ctx:reply("pong"))
  print(("replied to @%s: %s"):format(ctx.user.username, note.text))
  if once then ctx.bot:stop() end
end, { description = "answers pong" })

bot:on("error", function(_, err) io.stderr:write("bot: ", tostring(err), "\n") end)

if fake then
  -- The fake has no sockets: its deliveries go to the bot's receiver function.
  -- A secret of our own, so the demo leaves nothing in the credential store.
  local hook = "https://bot.example/hook"
  bot:webhook{ url = hook, listen = false, events = { "mention" }, secret = core.base64url(core.random(32)) }
  fake:route(hook, bot:webhook_handler())
else
  bot:webhook{ url = url, listen = { port = port, path = "/hook" }, events = { "mention", "reply" } }
end

bot:on("ready", function(_, me)
  print(("@%s takes webhook deliveries at %s; mention it with \"ping\""):format(me.username, bot.webhook_url))
  if fake then fake:as("alice"):post("@" .. me.username .. " ping") end
end)

-- Under systemd: SIGTERM stops it cleanly, letting a reply in progress finish;
-- a failure (the webhook could not be registered, the port is taken) returns
-- nil, msg, err, so Restart=on-failure starts it again.
local ok, msg = bot:run{ stop_on = { "TERM", "INT" }, grace = 10 }
if remove and not fake then print("webhook removed:", bot:remove_webhook()) end
if not ok then
  io.stderr:write("webhook_bot: ", tostring(msg), "\n")
  os.exit(1)
end

if fake then
  local mention = fake:notes{ user = "alice", text = "ping" }[1]
  local reply = assert(fake:notes{ user = "me", replyId = mention.id }[1], "no reply in the fake")
  print(("in the fake: %s (reply to %s, delivered with status %s)"):format(reply.text, reply.replyId,
    tostring(fake.deliveries[1].status)))
end
