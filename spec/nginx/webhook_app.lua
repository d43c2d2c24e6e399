-- The application of spec/nginx/webhook.conf: a webhook handler (/hook) whose
-- handlers write what they saw into a lua_shared_dict (read back at /calls), and
-- a bot behind nginx (/bot) made in every worker process, taking mentions from
-- the test server's deliveries and replying through its API. Settings (the
-- test server's URL, the bot's token and secret) come from spec_config.lua.
local json = require "misskey.json"
local misskey = require "misskey"
local webhook = require "misskey.ngx.webhook"
local config = require "spec_config"

local app = {}
local calls = ngx.shared.webhook_calls

local function record(what)
  what.pid = ngx.worker.pid()
  calls:set("call:" .. assert(calls:incr("n", 1, 0)), json.encode(what))
end

local receive = webhook.handler{
  secret = config.secret, seen = "webhook_events", max_size = 64 * 1024,
  on = {
    mention = function(note, event)
      record{ type = "mention", note = note.id, event = event.eventId }
      if note.text == "boom" then error("the handler raised on purpose") end
    end,
    ["*"] = function(type, _, event)
      if type ~= "mention" then record{ type = type, event = event.eventId } end
    end,
  },
}

local bot_hook

function app.init_worker()
  bot_hook = webhook.bot(function()
    local client = misskey.new{ host = config.upstream, token = config.bot_token, allow_plaintext_token = true }
    local b = misskey.bot(client, { stream = false })
    b:command("ping", function(ctx) assert(ctx:reply("pong from " .. ngx.worker.pid())) end)
    b:on("mention", function(_, note) record{ type = "bot mention", note = note.id } end)
    b:webhook{ url = config.bot_url, listen = false, register = false, secret = config.bot_secret,
      store = webhook.store("webhook_events") }
    return b
  end, { retry = 1 })
end

function app.hook() receive() end

function app.bot() bot_hook() end

-- GET /misuse: what misuse raises inside nginx (each message, in order).
function app.misuse()
  local out = {}
  local function try(fn)
    local ok, msg = pcall(fn)
    out[#out + 1] = ok and "no error" or tostring(msg)
  end
  try(function() webhook.handler{ secret = "s" } end)
  try(function() webhook.handler{ secret = "s", seen = "no_such_dict" } end)
  try(function() webhook.handler{ secret = "s", seen = "webhook_events", store = webhook.store("webhook_events") } end)
  try(function() webhook.handler{ seen = "webhook_events" } end)
  try(function() webhook.handler{ secret = "s", seen = "webhook_events", max_size = 0 } end)
  try(function() webhook.handler{ secret = "s", seen = "webhook_events", colour = 1 } end)
  try(function() webhook.store("webhook_events", -1) end)
  try(function() webhook.store("no_such_dict") end)
  try(function() webhook.handler{ secret = "s", seen = "webhook_events", ttl = 0 } end)
  try(function() webhook.bot(42) end)
  try(function() webhook.bot(function() end, { grace = "long" }) end)
  try(function() webhook.serve("not a function") end)
  try(function()
    local b = misskey.bot(misskey.new{ host = config.upstream, token = false }, { stream = false })
    b:webhook{ url = "http://127.0.0.1:9/hook", secret = "s", listen = { port = 0 } }
  end)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(json.encode(out))
end

-- GET /calls: what the handlers saw, in order.
function app.calls()
  local out = {}
  for i = 1, calls:get("n") or 0 do
    local entry = calls:get("call:" .. i) -- nil for a moment: counted, not yet written (another worker)
    if entry then out[#out + 1] = json.decode(entry) end
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(json.encode(json.array(out)))
end

return app
