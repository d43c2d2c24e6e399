-- The bot of examples/openresty/webhook_bot/nginx.conf: "@bot ping" -> "@you pong".
--
-- Every nginx worker process makes its own bot (misskey.ngx.webhook.bot, in a
-- timer started from init_worker_by_lua) and answers the deliveries it is
-- given with it; the handled event ids are in the lua_shared_dict
-- webhook_events, so a retry is recognised whichever worker process takes it.
-- Worker process 0 registers the webhook on the account (idempotent by name;
-- the secret is MISSKEY_HOOK_SECRET, the same in every worker process).
local misskey = require "misskey"
local webhook = require "misskey.ngx.webhook"

local M = {}
local serve

local function make()
  local client = misskey.new{ host = os.getenv("MISSKEY_HOST"), token = os.getenv("MISSKEY_TOKEN") }
  local bot = misskey.bot(client, { stream = false })     -- webhooks are its only source
  bot:command("ping", function(ctx) assert(ctx:reply("pong")) end, { description = "answers pong" })
  bot:on("error", function(_, err) ngx.log(ngx.ERR, "bot: ", tostring(err)) end)
  bot:webhook{
    url = os.getenv("MISSKEY_HOOK_URL") or "http://127.0.0.1:8080/hook",
    secret = assert(os.getenv("MISSKEY_HOOK_SECRET"), "set MISSKEY_HOOK_SECRET (a long random string)"),
    events = { "mention", "reply" },
    listen = false,                                       -- nginx takes the deliveries
    register = ngx.worker.id() == 0,                      -- one worker process registers
    store = webhook.store("webhook_events"),
  }
  return bot
end

function M.init_worker() serve = webhook.bot(make) end

function M.hook() serve() end

return M
