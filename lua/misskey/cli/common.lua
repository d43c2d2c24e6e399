--- misskey.cli.common: what every `misskey` command uses: the exits (usage
-- error 2, failure 1, nothing configured 3, raised and caught by cli.main),
-- output, the command's client, and option values. Part of misskey.cli.
local argcheck = require "misskey.argcheck"
local Client = require "misskey.client"
local credentials = require "misskey.credentials"
local env = require "misskey.env"

local common = {}

-- A usage error (exit 2), a failure (exit 1) or nothing configured (exit 3), raised inside main
-- and caught there.
local Exit = {}
common.Exit = Exit
local function usage(msg) error(setmetatable({ code = 2, msg = msg }, Exit), 0) end
local function failure(msg) error(setmetatable({ code = 1, msg = msg }, Exit), 0) end
local function not_configured(msg) error(setmetatable({ code = 3, msg = msg }, Exit), 0) end

local SETUP = "log in with `misskey login --host HOST`, or set MISSKEY_HOST and MISSKEY_TOKEN"

local function out(s) io.stdout:write(s, "\n") end
local function note(s) io.stderr:write(s, "\n") end
common.usage, common.failure, common.not_configured, common.out, common.note = usage, failure, not_configured, out, note

local function number_opt(command, opts, name, default)
  if opts[name] == nil then return default end
  local n = tonumber(opts[name])
  if not n or argcheck.seconds_problem(n) then
    usage(("misskey %s: --%s must be a number of seconds > 0"):format(command, name))
  end
  return n
end

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

-- Library misuse (a bad host, an unknown permission) raises: for the command it is a usage error.
local function guarded(fn, ...)
  local res = { n = select("#", ...), pcall(fn, ...) }
  if not res[1] then
    if getmetatable(res[2]) == Exit then error(res[2], 0) end
    -- The library's wording names its option; here the flag does the same.
    usage((tostring(res[2]):gsub("^[^:]*:%d+: ", ""):gsub("pass allow_plaintext_token = true",
      "add --allow-plaintext-token")))
  end
  return unpack(res, 2, 4)
end

-- The command's client. With nothing configured at all (no --host, --account,
-- MISSKEY_HOST or default account) it says how to configure one (exit 3).
local function client_for(command, opts)
  if not opts.host and not opts.account and not env.get("MISSKEY_HOST") then
    local entry, msg, err = credentials.get()
    if not entry then
      if err and err.reason ~= "unknown" then failure(msg) end
      not_configured(("misskey %s: no account is configured: %s"):format(command, SETUP))
    end
  end
  return guarded(Client.new, { host = opts.host, account = opts.account,
    allow_plaintext_token = opts["allow-plaintext-token"] or nil })
end

local function need_token(command, client)
  if not client:token() then
    not_configured(("misskey %s: no token for %s: %s"):format(command, client.base_url, SETUP))
  end
end

local function account_name(client, user)
  return credentials.key(user.username or "?", client.base_url)
end

-- Is file descriptor `fd` (1 or 2) a terminal? `test -t` in a child shell, which inherits ours.
local function is_terminal(fd)
  local term = env.get("TERM")
  if not term or term == "dumb" then return false end
  local a, _, c = os.execute("test -t " .. fd)
  return a == 0 or (a == true and (c == nil or c == 0))
end

local function human_size(n)
  if n < 1024 then return ("%d B"):format(n) end
  if n < 1024 * 1024 then return ("%.1f KiB"):format(n / 1024) end
  return ("%.1f MiB"):format(n / (1024 * 1024))
end

--- A progress(sent, total) function drawing a bar on stderr (or nil when stderr is no terminal),
-- and a function ending the bar's line. `to` (a file) draws there, terminal or not.
function common.progress_bar(label, to)
  if not to and not is_terminal(2) then return nil, function() end end
  to = to or io.stderr
  local drawn = false
  local function draw(sent, total)
    local width = 30
    local frac = total > 0 and math.min(sent / total, 1) or 1
    local full = math.floor(frac * width + 0.5)
    to:write(("\r%s [%s%s] %3d%% %s"):format(label, ("#"):rep(full), ("-"):rep(width - full),
      math.floor(frac * 100 + 0.5), human_size(sent)))
    to:flush()
    drawn = true
  end
  return draw, function() if drawn then to:write("\n") end end
end

common.SETUP = SETUP
common.number_opt, common.guarded, common.client_for = number_opt, guarded, client_for
common.need_token, common.account_name, common.is_terminal = need_token, account_name, is_terminal

return common
