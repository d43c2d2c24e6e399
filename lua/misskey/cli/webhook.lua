--- misskey.cli.webhook: `misskey webhook list|create|delete|test|listen`, the
-- account's webhooks (misskey.webhook.account: secrets made from the C core's
-- random source and kept in the credential store, never printed) and a
-- listener that prints what is delivered as JSON Lines. Part of misskey.cli.
local account = require "misskey.webhook.account"
local env = require "misskey.env"
local json = require "misskey.json"
local credentials = require "misskey.credentials"
local common = require "misskey.cli.common"

local usage, failure, out, note = common.usage, common.failure, common.out, common.note
local guarded, client_for, need_token = common.guarded, common.client_for, common.need_token

local commands = {}

--- The events `create` subscribes to without --on: those a bot takes.
local DEFAULT_EVENTS = { "mention", "reply", "renote", "follow", "followed", "unfollow" }
--- The variable `listen` takes the secret from, before the store.
local SECRET_VARIABLE = "MISSKEY_WEBHOOK_SECRET"

local function client_with_token(opts)
  local client = client_for("webhook", opts)
  need_token("webhook", client)
  return client
end

-- A webhook as printed: the server's record without its secret.
local function printable(hook)
  local copy = {}
  for k, v in pairs(hook) do
    if k ~= "secret" then copy[k] = v end
  end
  return copy
end

local function list_command(opts, args)
  if #args ~= 0 then usage("misskey webhook list: no arguments expected") end
  local client = client_with_token(opts)
  local hooks, msg = guarded(account.list, client)
  if not hooks then failure(msg) end
  for _, hook in ipairs(hooks) do
    if type(hook) == "table" then out(json.encode(printable(hook))) end
  end
  return 0
end

local function split_events(text)
  local list = {}
  for e in text:gmatch("[^,%s]+") do list[#list + 1] = e end
  return list
end

local function create_command(opts, args)
  if #args ~= 2 then usage("misskey webhook create: NAME and URL expected") end
  local name, url = args[1], args[2]
  if #name > 100 then usage("misskey webhook create: NAME is at most 100 characters") end
  local why = account.check_url(url, opts["allow-plaintext-secret"] == true)
  if why then
    usage("misskey webhook create: URL: " .. why:gsub("pass allow_plaintext_secret = true",
      "add --allow-plaintext-secret"))
  end
  local events = DEFAULT_EVENTS
  if opts.on then
    events = split_events(opts.on)
    guarded(account.check_events, events, 1)
  end
  local client = client_with_token(opts)
  local hook, msg = guarded(account.register, client, { name = name, url = url, events = events,
    allow_plaintext_secret = opts["allow-plaintext-secret"] == true })
  if not hook then failure("misskey webhook create: " .. msg) end
  out(json.encode(printable(hook)))
  note(("misskey webhook create: its secret is kept in the credential store (%s)")
    :format(tostring(credentials.path())))
  return 0
end

local function delete_command(opts, args)
  if #args ~= 1 then usage("misskey webhook delete: NAME or ID expected") end
  local client = client_with_token(opts)
  local ok, msg = guarded(account.remove, client, args[1])
  if ok == nil then failure("misskey webhook delete: " .. msg) end
  if not ok then failure(("misskey webhook delete: no webhook %s on this account"):format(args[1])) end
  return 0
end

local function test_command(opts, args)
  if #args ~= 1 then usage("misskey webhook test: NAME or ID expected") end
  local event_type = opts.type or "mention"
  guarded(account.check_events, { event_type }, 1)
  local client = client_with_token(opts)
  local hook, msg = guarded(account.find, client, args[1])
  if hook == nil then failure("misskey webhook test: " .. msg) end
  if not hook then failure(("misskey webhook test: no webhook %s on this account"):format(args[1])) end
  local ok, err
  ok, msg, err = guarded(client.request, client, "i/webhooks/test", { webhookId = hook.id, type = event_type })
  if not ok then
    if type(err) == "table" and err.code == "ACCESS_DENIED" then
      failure("misskey webhook test: i/webhooks/test takes only a native token (the one a web login gives);"
        .. " this token is a MiAuth, app or OAuth one, which the server refuses (ACCESS_DENIED). Use a native"
        .. " token for this command, or make a real event happen (a mention of the account).")
    end
    failure("misskey webhook test: " .. msg)
  end
  note(("misskey webhook test: a %s delivery to %s is on its way (tried once)"):format(event_type, tostring(hook.url)))
  return 0
end

-- The secret deliveries must carry: $MISSKEY_WEBHOOK_SECRET, else the one kept for --name.
local function listen_secret(opts)
  local secret = env.get(SECRET_VARIABLE)
  if secret and not opts.name then return secret end
  if not opts.name then
    usage("misskey webhook listen: --name NAME (the webhook whose kept secret deliveries carry) or "
      .. SECRET_VARIABLE .. " expected")
  end
  local client = client_with_token(opts)
  local kept, msg = guarded(account.secret, client, opts.name)
  if not kept then
    failure(msg and ("misskey webhook listen: " .. msg)
      or ("misskey webhook listen: no secret is kept for the webhook %s of this account (create it with"
        .. " `misskey webhook create`)"):format(opts.name))
  end
  return kept
end

local function listen_command(opts, args)
  if #args ~= 0 then usage("misskey webhook listen: no arguments expected") end
  local port = tonumber(opts.port)
  if not port or port % 1 ~= 0 or port < 0 or port > 65535 then
    usage("misskey webhook listen: --port N (0 to 65535; 0: a free one) expected")
  end
  local count
  if opts.count then
    count = tonumber(opts.count)
    if not count or count < 1 or count % 1 ~= 0 then
      usage("misskey webhook listen: --count must be a whole number > 0")
    end
  end
  local secret = listen_secret(opts)
  local webhook = require "misskey.webhook"
  local seen, listener = 0, nil
  local listener_opts = {
    secret = secret, host = opts.host, port = port, path = opts.path, allow_remote = opts["allow-remote"] or nil,
    on = { ["*"] = function(_, _, event)
      if count and seen >= count then return end
      seen = seen + 1
      out(json.encode(event.body))
      io.stdout:flush()
      if count and seen >= count then listener:close() end
    end },
  }
  local msg
  listener, msg = guarded(webhook.listen, listener_opts)
  if not listener then failure("misskey webhook listen: " .. msg) end
  note("misskey webhook listen: listening on " .. listener.url)
  io.stderr:flush()
  listener:run()
  return 0
end

local SUBCOMMANDS = { list = list_command, create = create_command, delete = delete_command, test = test_command,
                      listen = listen_command }

commands.webhook = {
  run = function(opts, args)
    local sub = table.remove(args, 1)
    if not sub then usage("misskey webhook: list, create, delete, test or listen expected") end
    local run = SUBCOMMANDS[sub]
    if not run then usage("misskey webhook: unknown subcommand " .. sub .. " (list, create, delete, test, listen)") end
    return run(opts, args)
  end,
  options = { host = 1, account = 1, on = 1, type = 1, name = 1, port = 1, path = 1, count = 1,
              ["allow-remote"] = 0, ["allow-plaintext-token"] = 0, ["allow-plaintext-secret"] = 0 },
  help = [[
usage: misskey webhook SUBCOMMAND [options] [--host HOST] [--account ACCOUNT]

The account's webhooks, which Misskey POSTs its events to:
  list                     one JSON line per webhook (its secret never printed)
  create NAME URL          create the webhook NAME, or update it (the same name is the same
                           webhook): Misskey delivers to URL, with a secret made here and kept in
                           the credential store. Plain http only to this machine (the secret travels
                           in clear) unless --allow-plaintext-secret
      --on EVENTS          what it delivers, e.g. mention,reply (default mention, reply, renote,
                           follow, followed, unfollow; also note, reaction)
  delete NAME|ID           delete it and forget its secret
  test NAME|ID             ask the server for one test delivery (dummy data, tried once); needs a
                           native token (a web login's): MiAuth, app and OAuth tokens are refused
      --type TYPE          its event type (default mention)
  listen --port N          listen on 127.0.0.1:N and print the body of each delivery that carries
                           the secret as one JSON line (e.g. {"note":{...}}), until interrupted
      --name NAME          the webhook whose kept secret deliveries carry (or $MISSKEY_WEBHOOK_SECRET)
      --path PATH          answer 404 to any other path
      --host ADDRESS       another address to bind (not loopback: only with --allow-remote)
      --count N            exit after N deliveries]],
}

return commands
