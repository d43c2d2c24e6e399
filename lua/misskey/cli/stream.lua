--- misskey.cli.stream: `misskey stream`, a channel's events as JSON Lines.
-- Part of misskey.cli.
local json = require "misskey.json"
local common = require "misskey.cli.common"

local usage, failure, out, note = common.usage, common.failure, common.out, common.note
local guarded, client_for = common.guarded, common.client_for

local commands = {}

local function stream_command(opts, args)
  if #args ~= 1 then usage("misskey stream: exactly one CHANNEL expected (e.g. homeTimeline)") end
  local name = args[1]
  if not name:find("^%w+$") then usage("misskey stream: bad channel name " .. name) end
  local count
  if opts.count then
    count = tonumber(opts.count)
    if not count or count < 1 or count % 1 ~= 0 then usage("misskey stream: --count must be a whole number > 0") end
  end
  local params
  if opts.params then
    local why
    params, why = json.decode(opts.params)
    if type(params) ~= "table" or params[1] ~= nil then
      usage("misskey stream: --params must be a JSON object" .. (why and (" (" .. why .. ")") or ""))
    end
    if name == "main" then usage("misskey stream: the main channel takes no --params") end
  end
  local client = client_for("stream", opts)
  local stream = guarded(client.stream, client, { reconnect = count == nil })
  local seen, failed = 0, nil
  local function print_event(event, body)
    if count and seen >= count then return end
    seen = seen + 1
    out(('{"channel":%s,"type":%s,"body":%s}'):format(json.encode(name), json.encode(event),
      json.encode(body == nil and json.null or body)))
    io.stdout:flush()
    if count and seen >= count then stream:close() end
  end
  stream:on("error", function(err)
    if type(err) == "table" and (err.channel or err.kind == "auth") then
      failed = err.message or tostring(err)
      stream:close()
    else
      note("misskey stream: " .. tostring(type(err) == "table" and err.message or err))
    end
  end)
  if name == "main" then
    stream:on("*", print_event)
  else
    guarded(stream.channel, stream, name, params):on("*", print_event)
  end
  local ok, msg = stream:run()
  if failed then failure("misskey stream: " .. failed) end
  if not ok then failure(msg) end
  return 0
end

commands.stream = {
  run = stream_command,
  options = { host = 1, account = 1, params = 1, count = 1, ["allow-plaintext-token"] = 0 },
  help = [[
usage: misskey stream CHANNEL [--params JSON] [--count N] [--host HOST] [--account ACCOUNT]

Connects to CHANNEL (homeTimeline, localTimeline, globalTimeline, hybridTimeline,
main, ...) and prints each event as one JSON line:
  {"channel":"homeTimeline","type":"note","body":{...}}
until interrupted (Ctrl-C) or N events have been printed.
  --params JSON  the channel's parameters, a JSON object ('{"withRenotes":false}')
  --count N      exit after N events]],
}

return commands
