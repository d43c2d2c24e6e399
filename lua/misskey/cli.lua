--- The `misskey` command (bin/misskey is a thin launcher). See README "The misskey command".
-- `cli.main(argv)` returns the exit status: 0 success, 1 an API, network or
-- credential-store failure, 2 a usage error, 3 no account configured (no host,
-- or no token for it). Only `misskey token` prints a token (and `misskey login`,
-- to a terminal, a fresh token that could be kept nowhere else).
local argcheck = require "misskey.argcheck"
local catalogue = require "misskey.catalogue"
local Client = require "misskey.client"
local auth = require "misskey.auth"
local credentials = require "misskey.credentials"
local env = require "misskey.env"
local json = require "misskey.json"

local cli = {}

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
  endpoints  list the endpoints of the bundled catalogue

Host and token come from --host/--account, then MISSKEY_HOST + MISSKEY_TOKEN,
then the credential store's default account. A token is never sent over plain
http to another machine unless --allow-plaintext-token is given.
Exit status: 0 ok, 1 failure, 2 usage error, 3 no account configured.
`misskey COMMAND --help` describes a command.]]

local HELP = {
  login = [[
usage: misskey login [--host HOST] [--permission a,b] [--method miauth|app|oauth]
                     [--name NAME] [--timeout SECONDS] [--default]
                     [--client-id URL --redirect-uri URI]   (oauth)
                     [--allow-plaintext-token]

Prints a URL to open in a browser, waits until you approve it there, and stores
the account ("@user@host") in the credential store. The first account stored
becomes the default; --default makes this one the default.
  --host        the server (default: MISSKEY_HOST)
  --permission  comma-separated permission names (default: every non-admin one)
  --method      miauth (default), app (legacy app flow) or oauth (OAuth 2.0 + PKCE)
  --timeout     seconds to wait for the approval (default 300)
  --client-id, --redirect-uri   oauth: your client's id (a URL) and redirect URI;
                after approving, paste the address the browser was sent to.
  --allow-plaintext-token   allow a host on plain http that is not this machine
                (the token then travels unencrypted); the account remembers it.
The credential store is checked before anything is asked of the server; if it
still cannot take the token, the token is kept in a new 0600 file instead.]],
  logout = [[
usage: misskey logout [ACCOUNT]

Removes ACCOUNT ("@user@host"; default: the default account) from the credential
store. The token itself stays valid on the server: revoke it in the web UI
(Settings > Security/API) if it may have leaked.]],
  accounts = [[
usage: misskey accounts

Lists the stored accounts; * marks the default.]],
  whoami = [[
usage: misskey whoami [--host HOST] [--account ACCOUNT]

Calls `i` and prints @user@host and the display name.]],
  token = [[
usage: misskey token [--host HOST] [--account ACCOUNT]

Prints the token that the other commands would use. Keep it secret.]],
  api = [[
usage: misskey api ENDPOINT [key=value ...] [key:=json ...] [--input FILE|-]
                   [--host HOST] [--account ACCOUNT]

Calls ENDPOINT (e.g. notes/create) and prints the reply as indented JSON.
  key=value    a string parameter
  key:=json    a raw JSON parameter (key:=10, key:=true, key:='["a"]')
  --input F    a JSON object of parameters from file F (- for stdin); key=value
               arguments are applied on top of it.]],
  post = [[
usage: misskey post TEXT [--file PATH] [--cw TEXT] [--visibility V]
                    [--host HOST] [--account ACCOUNT]

Posts a note and prints its id and address.
  --file PATH     upload PATH to the drive first and attach it
  --cw TEXT       content warning (the TEXT is hidden behind it)
  --visibility V  public (default), home, followers or specified]],
  upload = [[
usage: misskey upload PATH [--name NAME] [--comment TEXT] [--sensitive]
                      [--host HOST] [--account ACCOUNT]

Uploads PATH to the drive (drive/files/create) and prints the file's id, name
and size. A progress bar goes to stderr when stderr is a terminal.]],
  stream = [[
usage: misskey stream CHANNEL [--params JSON] [--count N] [--host HOST] [--account ACCOUNT]

Connects to CHANNEL (homeTimeline, localTimeline, globalTimeline, hybridTimeline,
main, ...) and prints each event as one JSON line:
  {"channel":"homeTimeline","type":"note","body":{...}}
until interrupted (Ctrl-C) or N events have been printed.
  --params JSON  the channel's parameters, a JSON object ('{"withRenotes":false}')
  --count N      exit after N events]],
  endpoints = [[
usage: misskey endpoints [PATTERN]

Lists the endpoints of the bundled catalogue, one a line: the name, the
permission it needs ("-" for none) and whether it needs a token (yes/no).
PATTERN keeps the names containing it, or matching it as a Lua pattern
(misskey endpoints ^notes/, misskey endpoints registry).]],
}

local OPTIONS = {
  login = { host = 1, permission = 1, method = 1, name = 1, timeout = 1, interval = 1, default = 0,
            ["client-id"] = 1, ["redirect-uri"] = 1 },
  logout = {}, accounts = {},
  whoami = { host = 1, account = 1 }, token = { host = 1, account = 1 },
  api = { host = 1, account = 1, input = 1 },
  post = { host = 1, account = 1, file = 1, cw = 1, visibility = 1 },
  upload = { host = 1, account = 1, name = 1, comment = 1, sensitive = 0 },
  stream = { host = 1, account = 1, params = 1, count = 1 },
  endpoints = {},
}
-- Every command that talks to a host may be allowed plain http (see USAGE).
for _, c in ipairs{ "login", "whoami", "api", "post", "upload", "stream" } do
  OPTIONS[c]["allow-plaintext-token"] = 0
end

-- A usage error (exit 2), a failure (exit 1) or nothing configured (exit 3), raised inside main
-- and caught there.
local Exit = {}
local function usage(msg) error(setmetatable({ code = 2, msg = msg }, Exit), 0) end
local function failure(msg) error(setmetatable({ code = 1, msg = msg }, Exit), 0) end
local function not_configured(msg) error(setmetatable({ code = 3, msg = msg }, Exit), 0) end

local SETUP = "log in with `misskey login --host HOST`, or set MISSKEY_HOST and MISSKEY_TOKEN"

local function out(s) io.stdout:write(s, "\n") end
local function note(s) io.stderr:write(s, "\n") end

local function parse(command, argv, from)
  local spec, opts, args = OPTIONS[command], {}, {}
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

-- ---- commands ----

local commands = {}

function commands.accounts(_, args)
  if #args > 0 then usage("misskey accounts: no arguments expected") end
  local store, msg, err = credentials.load()
  if not store then failure(msg) end
  if msg and not err then failure(msg) end
  local keys = credentials.list(store)
  if #keys == 0 then
    note("no stored accounts (log in with `misskey login`)")
    return 0
  end
  for _, key in ipairs(keys) do
    out((key == store.default and "* " or "  ") .. key .. "  " .. tostring(store.accounts[key].host))
  end
  return 0
end

function commands.logout(_, args)
  if #args > 1 then usage("misskey logout: at most one ACCOUNT expected") end
  local key, msg = credentials.remove(args[1])
  if not key then failure(msg) end
  out("removed " .. key .. " from the credential store")
  return 0
end

function commands.whoami(opts, args)
  if #args > 0 then usage("misskey whoami: no arguments expected") end
  local client = client_for("whoami", opts)
  need_token("whoami", client)
  local me, msg = client:request("i")
  if not me then failure(msg) end
  out(account_name(client, me) .. (type(me.name) == "string" and ("  (" .. me.name .. ")") or ""))
  return 0
end

function commands.token(opts, args)
  if #args > 0 then usage("misskey token: no arguments expected") end
  -- Nothing is sent: the token is printed even where plain http would refuse to send it.
  opts["allow-plaintext-token"] = true
  local client = client_for("token", opts)
  need_token("token", client)
  out(client:token())
  return 0
end

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

function commands.api(opts, args)
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

-- ---- post, upload, stream, endpoints ----

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
function cli.progress_bar(label, to)
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

local function upload(client, path, fields)
  local progress, done = cli.progress_bar(path:match("[^/]*$"))
  local file, msg = guarded(client.upload, client, path, fields, { progress = progress })
  done()
  if not file then failure(msg) end
  return file
end

local VISIBILITY = { public = true, home = true, followers = true, specified = true }

function commands.post(opts, args)
  if #args ~= 1 then usage("misskey post: exactly one TEXT expected (quote it)") end
  if opts.visibility and not VISIBILITY[opts.visibility] then
    usage("misskey post: --visibility must be public, home, followers or specified")
  end
  local client = client_for("post", opts)
  need_token("post", client)
  local params = { text = args[1], cw = opts.cw, visibility = opts.visibility }
  if opts.file then
    local file = upload(client, opts.file)
    params.fileIds = { file.id }
  end
  local res, msg = guarded(client.request, client, "notes/create", params)
  if not res then failure(msg) end
  local created = type(res) == "table" and res.createdNote
  if type(created) ~= "table" or type(created.id) ~= "string" then
    failure("misskey post: the server's reply has no createdNote")
  end
  out(created.id .. "  " .. client.base_url .. "/notes/" .. created.id)
  return 0
end

function commands.upload(opts, args)
  if #args ~= 1 then usage("misskey upload: exactly one PATH expected") end
  local client = client_for("upload", opts)
  need_token("upload", client)
  local fields = { name = opts.name, comment = opts.comment }
  if opts.sensitive then fields.isSensitive = true end
  local file = upload(client, args[1], fields)
  out(("%s  %s  %s bytes"):format(tostring(file.id), tostring(file.name ~= json.null and file.name or "-"),
    tostring(file.size)))
  return 0
end

function commands.stream(opts, args)
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

function commands.endpoints(_, args)
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

local function default_permissions()
  local all = auth.permissions()
  local list = {}
  for _, p in ipairs(all) do
    if not p:find(":admin:", 1, true) then list[#list + 1] = p end
  end
  return list
end

local function same_origin_path(url, base)
  if type(url) ~= "string" or url:sub(1, #base + 1) ~= base .. "/" then return nil end
  return url:sub(#base + 1)
end

local function login_oauth(client, opts, permission)
  local id, redirect = opts["client-id"], opts["redirect-uri"]
  if not id or not redirect then usage("misskey login --method oauth: --client-id and --redirect-uri are required") end
  local md, msg = auth.oauth_discover(client)
  if not md then failure(msg) end
  local start = guarded(auth.oauth_start, {
    host = client, client_id = id, redirect_uri = redirect, permission = permission,
    authorization_endpoint = type(md.authorization_endpoint) == "string" and md.authorization_endpoint or nil,
  })
  -- A loopback redirect_uri (http://127.0.0.1:PORT/... or localhost): listen on
  -- exactly that port for the browser's redirect; anything else: paste it.
  local port = redirect:match("^http://127%.0%.0%.1:(%d+)/") or redirect:match("^http://localhost:(%d+)/")
  local listener, lerr
  if port then listener, lerr = require("misskey.core").listen(tonumber(port)) end
  -- Only a GET to this path carrying our state (and a code or an error) ends the wait.
  local redirect_path = redirect:match("^http://[^/]+(/[^?#]*)")
  if port and not listener then failure("misskey login: " .. lerr) end
  out("Open this URL in a browser and approve the app:")
  out("  " .. start.url)
  io.stdout:flush()
  local line
  if listener then
    note("Waiting for the browser's redirect to " .. redirect .. " ...")
    local target, aerr = listener:accept(tonumber(opts.timeout) or 300, { path = redirect_path, state = start.state })
    listener:close()
    if not target then failure("misskey login: no redirect came (" .. tostring(aerr) .. ")") end
    line = "http://127.0.0.1:" .. port .. target
  else
    note("Then paste here the address your browser was sent to (" .. redirect .. "?code=...):")
    line = io.stdin:read("*l")
  end
  if not line or line == "" then failure("misskey login: no redirect address given") end
  local q = auth.oauth_parse_redirect(line)
  if q.error then failure("misskey login: the server refused: " .. q.error) end
  if not q.code then failure("misskey login: no code in the pasted address") end
  local token, emsg = auth.oauth_exchange{
    host = client, code = q.code, state = q.state, expected_state = start.state, verifier = start.verifier,
    client_id = id, redirect_uri = redirect, token_path = same_origin_path(md.token_endpoint, client.base_url),
  }
  if not token then failure(emsg) end
  return token
end

-- The store could not take a fresh token (which the server hands out once):
-- keep it in a new 0600 file and say where, or show it on a terminal; never lose it silently.
local function keep_token(base_url, token, why)
  local path, rerr = credentials.rescue(token)
  if path then
    failure(("misskey login: approved, but the token could not be stored: %s\n"
      .. "The token is kept in %s (mode 0600). Use it with MISSKEY_HOST=%s MISSKEY_TOKEN=\"$(cat %s)\", "
      .. "and fix the credential store before logging in again."):format(why, path, base_url, path))
  end
  if is_terminal(1) then
    out("The token (keep it secret): " .. token)
    failure(("misskey login: approved, but the token could not be stored (%s) nor kept in a file (%s); "
      .. "it is printed above"):format(why, rerr))
  end
  failure(("misskey login: approved, but the token could not be stored (%s) nor kept in a file (%s); "
    .. "revoke it in the web UI (Settings > Security/API) and log in again"):format(why, rerr))
end

function commands.login(opts, args)
  if #args > 0 then usage("misskey login: no arguments expected (use --host HOST)") end
  local method = opts.method or "miauth"
  if method ~= "miauth" and method ~= "app" and method ~= "oauth" then
    usage("misskey login: --method must be miauth, app or oauth")
  end
  local host = opts.host or env.get("MISSKEY_HOST")
  if not host or host == "" then usage("misskey login: --host HOST expected (or set MISSKEY_HOST)") end
  local permission = default_permissions()
  if opts.permission then
    permission = {}
    for p in opts.permission:gmatch("[^,%s]+") do permission[#permission + 1] = p end
  end
  local timeout = number_opt("login", opts, "timeout", 300)
  local interval = number_opt("login", opts, "interval", 2)
  local name = opts.name or "misskey (Lua command line)"
  local allow = opts["allow-plaintext-token"] or nil
  local client = guarded(Client.new, { host = host, token = false, allow_plaintext_token = allow })
  local cleartext = client:cleartext()
  if cleartext and not allow then
    usage(("misskey login: %s: %s, so the token would travel unencrypted, readable and usable by anyone on "
      .. "the way; use https, or add --allow-plaintext-token to do it anyway"):format(client.base_url, cleartext))
  end
  -- MiAuth and the app flow hand a token out exactly once: a store that cannot
  -- take it must fail now, before the user approves anything.
  local ok, smsg = credentials.check()
  if not ok then failure("misskey login: the credential store cannot take a token: " .. smsg) end
  local wait = { timeout = timeout, interval = interval }
  local token, user, msg
  if method == "miauth" then
    local s = guarded(auth.miauth, { host = client, name = name, permission = permission })
    out("Open this URL in a browser and approve the app:")
    out("  " .. s.url)
    io.stdout:flush()
    note(("Waiting for the approval (up to %g s)..."):format(timeout))
    token, user = s:wait(wait)
    if not token then failure(user) end
  elseif method == "app" then
    local app
    app, msg = guarded(auth.app_create, { host = client, name = name, permission = permission,
      description = "misskey command-line client" })
    if not app then failure(msg) end
    local session
    session, msg = auth.app_session(client, app.secret)
    if not session then failure(msg) end
    out("Open this URL in a browser and approve the app:")
    out("  " .. tostring(session.url))
    io.stdout:flush()
    note(("Waiting for the approval (up to %g s)..."):format(timeout))
    token, user = auth.app_wait(client, app.secret, session.token, wait)
    if not token then failure(user) end
  else
    token = login_oauth(client, opts, permission)
  end
  if type(user) ~= "table" or type(user.username) ~= "string" then
    local c = Client.new{ host = client.base_url, token = token, auth = "header", allow_plaintext_token = allow }
    user, msg = c:request("i")
    if not user then keep_token(client.base_url, token, "cannot ask the server whose token it is: " .. msg) end
  end
  local key
  key, msg = credentials.add{ host = client.base_url, token = token, user = user, default = opts.default,
    allow_plaintext_token = cleartext and true or nil }
  if not key then keep_token(client.base_url, token, msg) end
  out("logged in as " .. key .. " (stored in " .. tostring(credentials.path()) .. ")")
  return 0
end

--- cli.main(argv) -> exit status (0, 1 or 2). argv is the script's `arg` table.
function cli.main(argv)
  argv = argv or {}
  local command = argv[1]
  if command == nil or command == "--help" or command == "-h" or command == "help" then
    local target = command == "help" and argv[2]
    if target and HELP[target] then out(HELP[target]) else out(USAGE) end
    return command == nil and 2 or 0
  end
  if not commands[command] then
    note("misskey: unknown command '" .. command .. "'\n" .. USAGE)
    return 2
  end
  local ok, code = pcall(function()
    local opts, args = parse(command, argv, 2)
    if opts.help then
      out(HELP[command])
      return 0
    end
    return commands[command](opts, args)
  end)
  if ok then return code end
  if getmetatable(code) == Exit then
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
