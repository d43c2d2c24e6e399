-- A ping bot: "@bot ping" -> "@you pong" (in thread, with your note's visibility).
--
-- Runs against MISSKEY_HOST with MISSKEY_TOKEN when both are set; otherwise
-- against misskey.testing's in-process fake, where @alice mentions the bot
-- (@me) as soon as it is connected.
--   --once   exit after handling one command (what CI runs), printing the reply
local misskey = require "misskey"
local testing = require "misskey.testing"

local once = false
for _, a in ipairs(arg or {}) do
  if a == "--once" then once = true else error("usage: ping_bot.lua [--once]") end
end

local client, fake, where = testing.demo_client()
print(where)

local bot = misskey.bot(client)

bot:command("ping", function(ctx, args)
  local note = assert(ctx:reply(#args > 0 and ("pong " .. table.concat(args, " ")) or "pong"))
  print(("replied to @%s: %s"):format(ctx.user.username, note.text))
  if once then ctx.bot:stop() end
end, { description = "answers pong", cooldown = 5 })

bot:on("ready", function(_, me)
  print(("listening as @%s; mention me with \"ping\""):format(me.username))
  if fake then fake:as("alice"):post("@" .. me.username .. " ping") end
end)

bot:on("error", function(_, err) io.stderr:write("bot: ", tostring(err), "\n") end)

-- Under systemd (or Ctrl-C): SIGTERM/SIGINT stop it cleanly, letting a reply in progress finish.
assert(bot:run{ stop_on = { "TERM", "INT" }, grace = 10 })

if fake then
  -- The effect, checked in the fake: the bot's reply exists, in the thread of alice's mention.
  local mention = fake:notes{ user = "alice", text = "ping" }[1]
  local reply = assert(fake:notes{ user = "me", replyId = mention.id }[1], "no reply in the fake")
  print(("in the fake: %s (reply to %s)"):format(reply.text, reply.replyId))
end
