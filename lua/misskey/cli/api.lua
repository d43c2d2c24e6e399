--- misskey.cli.api: `misskey api` (any endpoint, the reply as indented
-- JSON), `misskey endpoints` (the bundled catalogue) and `misskey types` (a
-- server's LuaLS annotations, misskey.types). Part of misskey.cli.
local catalogue = require "misskey.catalogue"
local Client = require "misskey.client"
local json = require "misskey.json"
local common = require "misskey.cli.common"

local usage, failure, out, note = common.usage, common.failure, common.out, common.note
local guarded, client_for = common.guarded, common.client_for

local commands = {}

local function read_input(name)
  local text
  if name == "-" then
    text = io.stdin:read("*a")
  else
    local f, why = io.open(name, "rb")
    if not f then usage("misskey api: --input: " .. tostring(why)) end
    text = f:read("*a")
    f:close()
  end
  local value, why = json.decode(text or "")
  if type(value) ~= "table" or value[1] ~= nil then
    usage("misskey api: --input must hold a JSON object" .. (why and (" (" .. why .. ")") or ""))
  end
  return value
end

local function api_command(opts, args)
  local endpoint = args[1]
  if not endpoint then usage("misskey api: ENDPOINT expected (e.g. misskey api meta)") end
  local params = opts.input and read_input(opts.input) or {}
  for i = 2, #args do
    local a = args[i]
    local key, raw = a:match("^([^=:]+):=(.*)$")
    if key then
      local value, why = json.decode(raw)
      if value == nil and raw ~= "null" then
        usage(("misskey api: %s: not JSON (%s)"):format(a, tostring(why)))
      end
      params[key] = value == nil and json.null or value
    else
      local k, v = a:match("^([^=]+)=(.*)$")
      if not k then usage(("misskey api: %q is neither key=value nor key:=json"):format(a)) end
      params[k] = v
    end
  end
  local client = client_for("api", opts)
  local result, msg = guarded(client.request, client, endpoint, params)
  if result == nil then failure(msg) end
  if result ~= true then out(json.pretty(result)) end
  return 0
end

local function endpoints_command(_, args)
  if #args > 1 then usage("misskey endpoints: at most one PATTERN expected") end
  local pattern = args[1]
  local cat = catalogue.bundled()
  local rows, width = {}, 0
  for _, name in ipairs(catalogue.names(cat)) do
    local keep = pattern == nil or name:find(pattern, 1, true)
    if not keep then
      local ok, found = pcall(string.find, name, pattern)
      keep = ok and found
    end
    if keep then
      rows[#rows + 1] = name
      if #name > width then width = #name end
    end
  end
  if #rows == 0 then
    note("misskey endpoints: no endpoint matches " .. tostring(pattern))
    return 0
  end
  for _, name in ipairs(rows) do
    local e = catalogue.lookup(name, cat)
    local perm = type(e.permission) == "string" and e.permission or "-"
    out(("%-" .. width .. "s  %-28s %s"):format(name, perm, e.credential and "yes" or "no"))
  end
  return 0
end

local function types_command(opts, args)
  if #args > 0 then usage("misskey types: no arguments expected (the server is --host)") end
  -- No token is sent for /api.json: with --host the client is anonymous, so none is needed.
  local client = opts.host and guarded(Client.new, { host = opts.host, token = false })
    or client_for("types", opts)
  local types = require "misskey.types"
  local path = opts.output or types.default_path(client.host)
  local summary, msg = types.write(client, path)
  if not summary then failure("misskey types: " .. msg) end
  out(("%s: %d endpoints (%d results typed), %d entities, from %s (version %s)"):format(summary.path,
    summary.endpoints, summary.typed_results, summary.entities, client.base_url, summary.version or "unknown"))
  return 0
end

commands.api = {
  run = api_command,
  options = { host = 1, account = 1, input = 1, ["allow-plaintext-token"] = 0 },
  help = [[
usage: misskey api ENDPOINT [key=value ...] [key:=json ...] [--input FILE|-]
                   [--host HOST] [--account ACCOUNT]

Calls ENDPOINT (e.g. notes/create) and prints the reply as indented JSON.
  key=value    a string parameter
  key:=json    a raw JSON parameter (key:=10, key:=true, key:='["a"]')
  --input F    a JSON object of parameters from file F (- for stdin); key=value
               arguments are applied on top of it.]],
}
commands.endpoints = {
  run = endpoints_command,
  options = {},
  help = [[
usage: misskey endpoints [PATTERN]

Lists the endpoints of the bundled catalogue, one a line: the name, the
permission it needs ("-" for none) and whether it needs a token (yes/no).
PATTERN keeps the names containing it, or matching it as a Lua pattern
(misskey endpoints ^notes/, misskey endpoints registry).]],
}
commands.types = {
  run = types_command,
  options = { host = 1, account = 1, output = 1 },
  help = [[
usage: misskey types --host HOST [--output FILE]

Writes LuaLS annotations (lua-language-server) for the endpoints and entities
of HOST's own GET /api.json (a fork's, or a newer version's): every endpoint's
parameters and result, client.api and client:request's overloads. FILE
defaults to misskey-api-HOST.lua in the current directory; it replaces the
bundled types/misskey-api.lua in your .luarc.json (README "Editor support").
No token is sent. Without --host, the host of --account, MISSKEY_HOST or the
default account.]],
}

return commands
