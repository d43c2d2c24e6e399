-- A follow-back bot: whoever follows the bot is followed back and greeted.
--
-- Runs against MISSKEY_HOST with MISSKEY_TOKEN when both are set; otherwise
-- against misskey.testing's in-process fake, where @alice follows the bot (@me)
-- as soon as it is connected.
--   --once   exit after following one user back (what CI runs)
local misskey = require "misskey"
local testing = require "misskey.testing"

local once = false
for _, a in ipairs(arg or {}) do
  if a == "--once" then once = true else error("usage: follow_back_bot.lua [--once]") end
end

local client, fake, where = testing.demo_client()
print(where)
if fake then
  -- In the fake @me and @alice follow each other: start from alice not followed.
  assert(fake:as("me"):unfollow("alice"))
  assert(fake:as("alice"):unfollow("me"))
end

local bot = misskey.bot(client)

bot:on("followed", function(ctx, user)
  local ok, _, err = ctx.client:request("following/create", { userId = user.id })
  if ok then
    print(("followed @%s back"):format(user.username))
  elseif err and err.code == "ALREADY_FOLLOWING" then
    print(("already following @%s"):format(user.username))
  else
    io.stderr:write("follow back failed: ", tostring(err), "\n")
  end
  if once then ctx.bot:stop() end
end)

bot:on("ready", function(_, me)
  print(("listening as @%s for new followers"):format(me.username))
  if fake then assert(fake:as("alice"):follow(me.username)) end
end)

bot:on("error", function(_, err) io.stderr:write("bot: ", tostring(err), "\n") end)

assert(bot:run())

if fake then
  local alice = assert(client:request("users/show", { username = "alice" }))
  assert(alice.isFollowing, "the bot does not follow @alice")
  print(("in the fake: @me follows @alice: %s"):format(tostring(alice.isFollowing)))
end
