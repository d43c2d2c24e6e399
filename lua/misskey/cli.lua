--- The `misskey` command (bin/misskey is a thin launcher). See README "The misskey command".
-- `cli.main(argv)` returns the exit status: 0 success, 1 an API, network or
-- credential-store failure, 2 a usage error, 3 no account configured (no host,
-- or no token for it). Only `misskey token` prints a token (and `misskey login`,
-- to a terminal, a fresh token that could be kept nowhere else).
--
-- The commands live in groups, a file each (misskey.cli.account, .api, .post,
-- .stream, .webhook): every command is { run = fn(opts, args) -> status, options = {
-- name = 1 (takes a value) | 0 (a flag) }, help = text }. misskey.cli.common
-- holds what they share.
local common = require "misskey.cli.common"

local cli = {}

local usage, out, note = common.usage, common.out, common.note

local USAGE = [[
usage: misskey COMMAND [options]

commands:
  login      get a token in the browser and store it (MiAuth, legacy app or OAuth)
  logout     forget a stored account
  accounts   list the stored accounts (* marks the default)
  whoami     show the account a token belongs to
  token      print the token (the only command that prints one)
  api        call an API endpoint and print the JSON reply
  post       post a note (optionally with a file)
  upload     upload a file to the drive
  stream     print the events of a streaming channel as JSON Lines
  webhook    the account's webhooks (list, create, delete, test) and a listener that prints deliveries
  endpoints  list the endpoints of the bundled catalogue
  types      write LuaLS annotations for a server's own endpoints (its /api.json)

Host and token come from --host/--account, then MISSKEY_HOST + MISSKEY_TOKEN,
then the credential store's default account. A token is never sent over plain
http to another machine unless --allow-plaintext-token is given.
Exit status: 0 ok, 1 failure, 2 usage error, 3 no account configured.
`misskey COMMAND --help` describes a command.]]

local commands = {}
for _, group in ipairs{ "account", "api", "post", "stream", "webhook" } do
  for name, command in pairs(require("misskey.cli." .. group)) do commands[name] = command end
end

--- A progress(sent, total) function drawing a bar on stderr (or nil when stderr is no terminal),
-- and a function ending the bar's line. `to` (a file) draws there, terminal or not.
cli.progress_bar = common.progress_bar

local function parse(command, argv, from)
  local spec, opts, args = commands[command].options, {}, {}
  local i = from
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      opts.help = true
    elseif a:sub(1, 2) == "--" and #a > 2 then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local arity = spec[name]
      if arity == nil then usage(("misskey %s: unknown option --%s"):format(command, name)) end
      if arity == 1 and value == nil then
        i = i + 1
        value = argv[i]
        if value == nil then usage(("misskey %s: --%s needs a value"):format(command, name)) end
      elseif arity == 0 then
        if value ~= nil then usage(("misskey %s: --%s takes no value"):format(command, name)) end
        value = true
      end
      opts[name] = value
    else
      args[#args + 1] = a
    end
    i = i + 1
  end
  return opts, args
end

--- cli.main(argv) -> exit status (0, 1 or 2). argv is the script's `arg` table.
function cli.main(argv)
  argv = argv or {}
  local command = argv[1]
  if command == nil or command == "--help" or command == "-h" or command == "help" then
    local target = command == "help" and argv[2]
    if target and commands[target] then out(commands[target]) else out(USAGE) end
    return command == nil and 2 or 0
  end
  if not commands[command] then
    note("misskey: unknown command '" .. command .. "'\n" .. USAGE)
    return 2
  end
  local ok, code = pcall(function()
    local opts, args = parse(command, argv, 2)
    if opts.help then
      out(commands[command].help)
      return 0
    end
    return commands[command].run(opts, args)
  end)
  if ok then return code end
  if getmetatable(code) == common.Exit then
    note(code.msg)
    if code.code == 2 and not code.msg:find("--help", 1, true) then
      note("(misskey " .. command .. " --help for usage)")
    end
    return code.code
  end
  note("misskey " .. command .. ": internal error: " .. tostring(code))
  return 1
end

return cli
