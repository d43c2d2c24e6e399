--- misskey.cli.account: `misskey login` (MiAuth, the legacy app flow, OAuth
-- with a loopback listener or a pasted redirect), `logout`, `accounts`,
-- `whoami` and `token`. Part of misskey.cli.
local auth = require "misskey.auth"
local Client = require "misskey.client"
local credentials = require "misskey.credentials"
local env = require "misskey.env"
local common = require "misskey.cli.common"

local usage, failure, out, note = common.usage, common.failure, common.out, common.note
local guarded, client_for, need_token = common.guarded, common.client_for, common.need_token
local account_name, is_terminal, number_opt = common.account_name, common.is_terminal, common.number_opt

local commands = {}

local function accounts_command(_, args)
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

local function logout_command(_, args)
  if #args > 1 then usage("misskey logout: at most one ACCOUNT expected") end
  local key, msg = credentials.remove(args[1])
  if not key then failure(msg) end
  out("removed " .. key .. " from the credential store")
  return 0
end

local function whoami_command(opts, args)
  if #args > 0 then usage("misskey whoami: no arguments expected") end
  local client = client_for("whoami", opts)
  need_token("whoami", client)
  local me, msg = client:request("i")
  if not me then failure(msg) end
  out(account_name(client, me) .. (type(me.name) == "string" and ("  (" .. me.name .. ")") or ""))
  return 0
end

local function token_command(opts, args)
  if #args > 0 then usage("misskey token: no arguments expected") end
  -- Nothing is sent: the token is printed even where plain http would refuse to send it.
  opts["allow-plaintext-token"] = true
  local client = client_for("token", opts)
  need_token("token", client)
  out(client:token())
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
  -- RFC 9207: the redirect must name the server this sign-in began with (Misskey always does).
  local issuer = type(md.issuer) == "string" and md.issuer ~= "" and md.issuer or nil
  local require_iss = issuer ~= nil and md.authorization_response_iss_parameter_supported == true
  -- A loopback redirect_uri (http://127.0.0.1:PORT/... or localhost): listen on
  -- exactly that port for the browser's redirect; anything else: paste it.
  local port = redirect:match("^http://127%.0%.0%.1:(%d+)/") or redirect:match("^http://localhost:(%d+)/")
  local listener, lerr
  if port then listener, lerr = guarded(auth.oauth_listen, tonumber(port)) end
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
    iss = q.iss, issuer = issuer, require_iss = require_iss,
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

local function login_command(opts, args)
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

commands.login = {
  run = login_command,
  options = {
    host = 1, permission = 1, method = 1, name = 1, timeout = 1, interval = 1, default = 0,
    ["client-id"] = 1, ["redirect-uri"] = 1, ["allow-plaintext-token"] = 0,
  },
  help = [[
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
}
commands.logout = {
  run = logout_command,
  options = {},
  help = [[
usage: misskey logout [ACCOUNT]

Removes ACCOUNT ("@user@host"; default: the default account) from the credential
store. The token itself stays valid on the server: revoke it in the web UI
(Settings > Security/API) if it may have leaked.]],
}
commands.accounts = {
  run = accounts_command,
  options = {},
  help = [[
usage: misskey accounts

Lists the stored accounts; * marks the default.]],
}
commands.whoami = {
  run = whoami_command,
  options = { host = 1, account = 1, ["allow-plaintext-token"] = 0 },
  help = [[
usage: misskey whoami [--host HOST] [--account ACCOUNT]

Calls `i` and prints @user@host and the display name.]],
}
commands.token = {
  run = token_command,
  options = { host = 1, account = 1 },
  help = [[
usage: misskey token [--host HOST] [--account ACCOUNT]

Prints the token that the other commands would use. Keep it secret.]],
}

return commands
