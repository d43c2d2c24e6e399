--- Getting a token: MiAuth, the legacy app flow and OAuth 2.0 with PKCE.
-- See README "Getting a token". Every function that talks to a server takes
-- `host` as a host name, a base URL or a client (misskey.new) to go through.
-- Over plain http to another machine a flow that brings back a token, secret or
-- code raises before it starts, unless `allow_plaintext_token = true` (in the
-- options, or the client's). Misuse raises; operational failures return `nil, message, err`, where
-- `err.kind` is "pending" (not approved yet), "timeout", "auth" (OAuth refused
-- or a state mismatch) or the client's usual kinds.
-- @usage
-- local s = auth.miauth{ host = "misskey.example", name = "my bot", permission = { "read:account" } }
-- print("open " .. s.url)
-- local token, user = assert(s:wait{ timeout = 300, save = true })
local argcheck = require "misskey.argcheck"
local catalogue = require "misskey.catalogue"
local Client = require "misskey.client"
local core = require "misskey.core"
local credentials = require "misskey.credentials"
local errors = require "misskey.errors"
local json = require "misskey.json"
local loop = require "misskey.loop"

--- Getting a token (require "misskey.auth"): MiAuth, the legacy app flow, OAuth 2.0 with PKCE.
---@class misskey.auth
local auth = {}

--- Misskey's permission names (85, Misskey's order) from the bundled catalogue.
auth.permissions = catalogue.permissions

--- A server to go through: a host name, a base URL, or a client (misskey.new).
---@alias misskey.auth.Host string|misskey.Client
--- Options of the waits (session:wait, auth.app_wait).
---@class misskey.auth.WaitOptions
---@field timeout? number seconds in all (default 300)
---@field interval? number seconds between two checks (default 2)
---@field save? boolean store the account in the credential store as soon as the token arrives

local argerror = argcheck.argerror

-- `level`: see misskey.argcheck (1: called by the public function itself).
local function check_keys(fname, opts, allowed, level)
  level = (level or 1) + 1
  if type(opts) ~= "table" then argerror(1, fname, "options table expected, got " .. type(opts), level) end
  for k in pairs(opts) do
    if not allowed[k] then argerror(1, fname, "unknown option '" .. tostring(k) .. "'", level) end
  end
end

local function check_string(fname, opts, key, required)
  local v = opts[key]
  if v == nil and not required then return end
  if type(v) ~= "string" or (v == "" and required) then
    argerror(1, fname, ("option '%s' must be a %sstring"):format(key, required and "non-empty " or ""), 2)
  end
end

-- RFC 9207's options (auth.oauth_start, auth.oauth_session, auth.oauth_exchange): the issuer
-- the redirect must name, and whether a redirect naming none is refused.
local function check_issuer(fname, opts)
  check_string(fname, opts, "issuer", false)
  if opts.require_iss ~= nil and type(opts.require_iss) ~= "boolean" then
    argerror(1, fname, "option 'require_iss' must be a boolean", 2)
  end
  if opts.require_iss and opts.issuer == nil then
    argerror(1, fname, "option 'require_iss' needs option 'issuer' (the metadata's issuer)", 2)
  end
end

-- A client to go through: the given one, or an anonymous one for `host`. A flow
-- whose token (or app secret, or code) would cross a network unencrypted is
-- refused before it starts, unless the client allows it (`public`: nothing secret
-- travels, as for the OAuth metadata).
local function client_for(fname, host, allow_plaintext, public)
  local client = host
  if getmetatable(host) ~= Client then
    if type(host) ~= "string" or host == "" then
      argerror(1, fname, "host (a host name, base URL or client) expected, got " .. type(host), 2)
    end
    if allow_plaintext ~= nil and type(allow_plaintext) ~= "boolean" then
      argerror(1, fname, "option 'allow_plaintext_token' must be a boolean", 2)
    end
    client = Client.new{ host = host, token = false, allow_plaintext_token = allow_plaintext }
  end
  local why = not public and client:cleartext()
  if why and not client.allow_plaintext_token then
    argerror(1, fname, ("%s: %s, so the token would travel unencrypted, readable and usable by anyone on the "
      .. "way; use https, or pass allow_plaintext_token = true to do it anyway")
      :format(client.base_url, why), 2)
  end
  return client
end

-- Misskey's permission names as a set (made on first use).
local known_permissions

-- The message for the names of `list` that are not Misskey's permissions, each with the
-- nearest valid names, or nil when every name is known.
local function unknown_permissions(list)
  if not known_permissions then
    known_permissions = {}
    for _, p in ipairs(auth.permissions()) do known_permissions[p] = true end
  end
  local parts = {}
  for _, name in ipairs(list) do
    if not known_permissions[name] then
      parts[#parts + 1] = name .. catalogue.did_you_mean(catalogue.nearest(name, auth.permissions()))
    end
  end
  if #parts == 0 then return nil end
  return ("unknown permission%s: %s; not in Misskey's list (strict = false lets a fork's own through)")
    :format(#parts > 1 and "s" or "", table.concat(parts, ", "))
end

-- The permission list: names checked (C) for their shape and duplicates dropped, then
-- against Misskey's list, with the nearest valid names, unless strict = false.
local function check_permissions(fname, permission, strict)
  if permission == nil then return {} end
  if type(permission) == "string" then
    local list = {}
    for name in permission:gmatch("[^,%s]+") do list[#list + 1] = name end
    permission = list
  end
  if type(permission) ~= "table" then argerror(1, fname, "permission must be a list of names", 2) end
  local ok, list = pcall(core.check_permissions, permission, auth.permissions(), false)
  if not ok then
    list = tostring(list):gsub("^permission: ", "")
    argerror(1, fname, list, 2)
  end
  local unknown = strict ~= false and unknown_permissions(list)
  if unknown then argerror(1, fname, unknown, 2) end
  return list
end

local function poll(fname, once, opts)
  if opts == nil then opts = {} end
  check_keys(fname, opts, { timeout = true, interval = true, save = true }, 2)
  local timeout, interval = opts.timeout or 300, opts.interval or 2
  for _, k in ipairs{ "timeout", "interval" } do
    local why = opts[k] ~= nil and argcheck.seconds_problem(opts[k])
    if why then argerror(1, fname, ("option '%s': %s"):format(k, why), 2) end
  end
  local deadline = core.now() + timeout
  while true do
    local left = deadline - core.now()
    local token, user, err = once(math.max(left, 1))
    if token then return token, user end
    if err.kind ~= "pending" then return nil, user, err end
    left = deadline - core.now()
    if left <= 0 then
      return errors.fail("timeout", ("%s: not approved within %g s (%s)"):format(fname, timeout, user),
        { endpoint = err.endpoint })
    end
    loop.sleep(math.min(interval, left))
  end
end

-- Stores a fresh token at once (it is handed out only once). On a failed save the
-- token is still returned, the save's message and err after it.
local function saved(client, token, user, save)
  if not token or not save then return token, user end
  local key, msg, err = credentials.add{ host = client.base_url, token = token, user = user,
    allow_plaintext_token = client:cleartext() ~= nil or nil }
  if not key then return token, user, msg, err end
  return token, user
end

-- ---- MiAuth ----

--- A MiAuth session (auth.miauth): send the user to `url`, then check or wait.
---@class misskey.auth.Session
---@field session string a fresh UUID v4
---@field url string the page to send the user to
---@field permission string[] the permissions asked for
---@field base_url string
---@field host string
local Session = { __name = "misskey.auth.Session" }
Session.__index = Session

function Session:__tostring()
  return ("misskey.auth.Session (%s)"):format(self.url or self.session)
end

--- Options of auth.miauth.
---@class misskey.auth.MiAuthOptions
---@field host misskey.auth.Host
---@field name? string the app's name shown to the user
---@field icon? string the app's icon URL
---@field callback? string where Misskey sends the user after approval
---@field permission? string[]|string the permissions asked for (a list, or "a,b")
---@field strict? boolean false: let names outside Misskey's list through (a fork's own)
---@field allow_plaintext_token? boolean let the token cross a network over plain http

local MIAUTH_OPTIONS = {
  host = true, name = true, icon = true, callback = true, permission = true, strict = true,
  allow_plaintext_token = true,
}

--- auth.miauth{ host, name, icon, callback, permission = { ... }, strict = true,
--               allow_plaintext_token = false } -> session
-- `session.session` is a fresh UUID v4, `session.url` the page to send the user to.
-- Permission names outside Misskey's list raise unless `strict = false` (a fork's own).
---@param opts misskey.auth.MiAuthOptions
---@return misskey.auth.Session
function auth.miauth(opts)
  check_keys("miauth", opts, MIAUTH_OPTIONS)
  for _, k in ipairs{ "name", "icon", "callback" } do check_string("miauth", opts, k) end
  local client = client_for("miauth", opts.host, opts.allow_plaintext_token)
  local permission = check_permissions("miauth", opts.permission, opts.strict)
  local session = core.uuid()
  local url = core.miauth_url{
    base = client.base_url, session = session, name = opts.name, icon = opts.icon, callback = opts.callback,
    permission = permission, strict = false, -- checked above
  }
  return setmetatable({
    session = session, url = url, permission = permission, base_url = client.base_url, host = client.host,
    _client = client,
  }, Session)
end

local SESSION_OPTIONS = { host = true, session = true, allow_plaintext_token = true }

--- auth.miauth_session{ host, session, allow_plaintext_token = false } -> session
-- The session of a MiAuth sign-in started earlier (auth.miauth), from its id: for a
-- web application, whose callback (`?session=<id>`) comes in another request, maybe
-- another process. Only `check` and `wait` are meaningful on it (`url` is not known).
---@param opts { host: string|table, session: string, allow_plaintext_token?: boolean }
---@return table session
function auth.miauth_session(opts)
  check_keys("miauth_session", opts, SESSION_OPTIONS)
  local id = opts.session
  -- It goes into the check's URL path: a UUID's characters only.
  if type(id) ~= "string" or not id:find("^[%w%-]+$") or #id > 128 then
    argerror(1, "miauth_session", "option 'session' must be a MiAuth session id (letters, digits and '-')")
  end
  local client = client_for("miauth_session", opts.host, opts.allow_plaintext_token)
  return setmetatable({ session = id, base_url = client.base_url, host = client.host, _client = client }, Session)
end

local PENDING = "the session is not approved: Misskey answers the same for a pending, unknown or already-used session"

--- session:check([{ timeout = s }]) -> token, user | nil, message, err (err.kind "pending")
-- POSTs /api/miauth/<session>/check once. Misskey hands the token out exactly once.
---@param opts? { timeout?: number }
---@return string|nil token
---@return misskey.UserDetailed|string|nil user_or_message
---@return misskey.Error|nil err
function Session:check(opts)
  argcheck.self(self, Session, "session", "check")
  local endpoint = "miauth/" .. self.session .. "/check"
  local res, value, err = self._client:http{
    method = "POST", path = "/api/" .. endpoint, headers = { ["Content-Type"] = "application/json" },
    body = "{}", json = true, timeout = opts and opts.timeout,
  }
  if not res then return nil, value, err end
  if res.status ~= 200 or type(value) ~= "table" then
    return errors.fail("http", ("%s: HTTP %d (%s)"):format(endpoint, res.status,
      res.headers["content-type"] or "no content type"), { status = res.status, endpoint = endpoint })
  end
  if value.ok == true and type(value.token) == "string" then return value.token, value.user end
  return errors.fail("pending", endpoint .. ": " .. PENDING, { endpoint = endpoint, session = self.session })
end

--- session:wait{ timeout = 300, interval = 2, save = false } -> token, user | nil, message, err
-- Polls check() (misskey.sleep between: yields in a task, blocks in a script) until
-- approved or `timeout` seconds pass (err.kind "timeout"). `save = true` stores the
-- account in the credential store as soon as the token arrives.
---@param opts? misskey.auth.WaitOptions
---@return string|nil token
---@return misskey.UserDetailed|string|nil user_or_message
---@return misskey.Error|nil err
function Session:wait(opts)
  argcheck.self(self, Session, "session", "wait")
  local token, user, err = poll("wait", function(t) return self:check{ timeout = t } end, opts)
  if not token then return nil, user, err end
  return saved(self._client, token, user, opts and opts.save)
end

-- ---- Legacy app flow ----

--- Options of auth.app_create.
---@class misskey.auth.AppOptions
---@field host misskey.auth.Host
---@field name string
---@field description? string
---@field permission? string[]|string
---@field callback? string
---@field strict? boolean
---@field allow_plaintext_token? boolean

local APP_OPTIONS = {
  host = true, name = true, description = true, permission = true, callback = true, strict = true,
  allow_plaintext_token = true,
}

--- auth.app_create{ host, name, description, permission, callback, strict, allow_plaintext_token }
-- -> app | nil, message, err
-- `app.id`, `app.secret` (keep the secret private).
---@param opts misskey.auth.AppOptions
---@return misskey.App|nil app
---@return string|nil message
---@return misskey.Error|nil err
function auth.app_create(opts)
  check_keys("app_create", opts, APP_OPTIONS)
  check_string("app_create", opts, "name", true)
  check_string("app_create", opts, "callback")
  if opts.description ~= nil and type(opts.description) ~= "string" then
    argerror(1, "app_create", "option 'description' must be a string")
  end
  local client = client_for("app_create", opts.host, opts.allow_plaintext_token)
  local permission = check_permissions("app_create", opts.permission, opts.strict)
  return client:request("app/create", {
    name = opts.name, description = opts.description or "", permission = json.array(permission),
    callbackUrl = opts.callback,
  })
end

local function check_secret(fname, secret, n)
  if type(secret) ~= "string" or secret == "" then
    argerror(n, fname, (n == 2 and "app secret" or "session token") .. " expected", 2)
  end
end

--- auth.app_session(host, secret) -> { token, url } | nil, message, err
-- Send the user to `url`; then auth.app_userkey with `token`.
---@param host misskey.auth.Host
---@param secret string the app's secret
---@return misskey.api.results.auth.session.generate|nil session
---@return string|nil message
---@return misskey.Error|nil err
function auth.app_session(host, secret)
  local client = client_for("app_session", host)
  check_secret("app_session", secret, 2)
  return errors.scrubbed(secret, client:request("auth/session/generate", { appSecret = secret }))
end

--- auth.app_userkey(host, secret, session_token) -> api_token, user | nil, message, err
-- api_token = sha256hex(accessToken .. secret). err.kind "pending" until the user accepts.
---@param host misskey.auth.Host
---@param secret string the app's secret
---@param token string the session's token
---@return string|nil api_token
---@return misskey.UserDetailedNotMe|string|nil user_or_message
---@return misskey.Error|nil err
function auth.app_userkey(host, secret, token)
  local client = client_for("app_userkey", host)
  check_secret("app_userkey", secret, 2)
  check_secret("app_userkey", token, 3)
  local endpoint = "auth/session/userkey"
  local res, msg, err = errors.scrubbed({ secret, token },
    client:request(endpoint, { appSecret = secret, token = token }))
  if not res then
    if err.kind == "api" and err.code == "PENDING_SESSION" then
      err.kind = "pending"
      err.message = endpoint .. ": the user has not accepted the app yet (PENDING_SESSION)"
      return nil, err.message, err
    end
    return nil, msg, err
  end
  if type(res) ~= "table" or type(res.accessToken) ~= "string" then
    return errors.fail("decode", endpoint .. ": no accessToken in the reply", { endpoint = endpoint })
  end
  return core.sha256(res.accessToken .. secret, "hex"), res.user
end

--- auth.app_wait(host, secret, session_token, { timeout, interval, save }) -> api_token, user | nil, message, err
---@param host misskey.auth.Host
---@param secret string the app's secret
---@param token string the session's token
---@param opts? misskey.auth.WaitOptions
---@return string|nil api_token
---@return misskey.UserDetailedNotMe|string|nil user_or_message
---@return misskey.Error|nil err
function auth.app_wait(host, secret, token, opts)
  local client = client_for("app_wait", host)
  local api_token, user, err = poll("app_wait", function()
    return auth.app_userkey(client, secret, token)
  end, opts)
  if not api_token then return nil, user, err end
  return saved(client, api_token, user, opts and opts.save)
end

-- ---- OAuth 2.0, authorization code with PKCE S256 ----

local function form(pairs_)
  local out = {}
  for i = 1, #pairs_, 2 do
    local v = pairs_[i + 1]
    if v ~= nil and v ~= "" then out[#out + 1] = pairs_[i] .. "=" .. core.urlencode(v) end
  end
  return table.concat(out, "&")
end

--- auth.oauth_discover(host) -> metadata | nil, message, err
-- RFC 8414 metadata from /.well-known/oauth-authorization-server.
---@param host misskey.auth.Host
---@return table|nil metadata
---@return string|nil message
---@return misskey.Error|nil err
function auth.oauth_discover(host)
  local client = client_for("oauth_discover", host, nil, true)
  local path = "/.well-known/oauth-authorization-server"
  local res, value, err = client:http{ path = path, json = true }
  if not res then return nil, value, err end
  if res.status ~= 200 or type(value) ~= "table" then
    return errors.fail("http", ("GET %s: HTTP %d: the server has no OAuth 2.0 metadata (Misskey >= 2023.9.0)")
      :format(path, res.status), { status = res.status, endpoint = path })
  end
  return value
end

--- Options of auth.oauth_start.
---@class misskey.auth.OAuthStartOptions
---@field host misskey.auth.Host
---@field client_id string a URL of yours (Misskey fetches it)
---@field redirect_uri string one the client_id page declares
---@field permission? string[]|string
---@field strict? boolean
---@field authorization_endpoint? string from auth.oauth_discover (default host/oauth/authorize)
---@field allow_plaintext_token? boolean
---@field token_path? string the token endpoint's path, kept for session:finish (default "/oauth/token")
---@field issuer? string the metadata's `issuer`: a redirect naming another in `iss` is refused (RFC 9207)
---@field require_iss? boolean refuse a redirect without `iss` (the metadata's `authorization_response_iss_parameter_supported`)
--- An OAuth sign-in under way (auth.oauth_start, auth.oauth_session): send the user to `url`;
--- keep `session:save()` until the redirect comes back, then `session:finish(redirect)`.
---@class misskey.auth.OAuthSession
---@field url? string the page to send the user to (nil on a session rebuilt by auth.oauth_session)
---@field state string
---@field verifier string the PKCE secret: keep it on the server
---@field challenge string
---@field client_id string
---@field redirect_uri string
---@field token_path? string
---@field issuer? string
---@field require_iss? boolean
---@field base_url string
local OAuthSession = { __name = "misskey.auth.OAuthSession" }
OAuthSession.__index = OAuthSession

-- Names the server only: the verifier and state stay out of logs and error messages.
function OAuthSession:__tostring()
  return ("misskey.auth.OAuthSession (%s)"):format(self.base_url)
end

local START_OPTIONS = {
  host = true, client_id = true, redirect_uri = true, permission = true, strict = true,
  authorization_endpoint = true, token_path = true, allow_plaintext_token = true, issuer = true, require_iss = true,
}

--- auth.oauth_start{ host, client_id, redirect_uri, permission, strict, authorization_endpoint,
--                    token_path, issuer, require_iss, allow_plaintext_token }
-- -> session { url, state, verifier, challenge }. Finish it with session:finish(redirect), or keep
-- session:save() (another request, another process) and rebuild it with auth.oauth_session; or pass
-- `state` and `verifier` to oauth_exchange yourself.
---@param opts misskey.auth.OAuthStartOptions
---@return misskey.auth.OAuthSession
function auth.oauth_start(opts)
  check_keys("oauth_start", opts, START_OPTIONS)
  check_string("oauth_start", opts, "client_id", true)
  check_string("oauth_start", opts, "redirect_uri", true)
  check_string("oauth_start", opts, "authorization_endpoint")
  check_string("oauth_start", opts, "token_path")
  check_issuer("oauth_start", opts)
  local client = client_for("oauth_start", opts.host, opts.allow_plaintext_token)
  local permission = check_permissions("oauth_start", opts.permission, opts.strict)
  local verifier = core.base64url(core.random(32)) -- 43 characters (RFC 7636 4.1)
  local state = core.base64url(core.random(16))
  local challenge = core.base64url(core.sha256(verifier))
  local endpoint = opts.authorization_endpoint or client.base_url .. "/oauth/authorize"
  local url = endpoint .. (endpoint:find("?", 1, true) and "&" or "?") .. form{
    "response_type", "code", "client_id", opts.client_id, "redirect_uri", opts.redirect_uri,
    "scope", table.concat(permission, " "), "state", state,
    "code_challenge", challenge, "code_challenge_method", "S256",
  }
  return setmetatable({
    url = url, state = state, verifier = verifier, challenge = challenge, client_id = opts.client_id,
    redirect_uri = opts.redirect_uri, token_path = opts.token_path, issuer = opts.issuer,
    require_iss = opts.require_iss or nil, base_url = client.base_url, _client = client,
  }, OAuthSession)
end

--- A redirect URL's query (auth.oauth_parse_redirect).
---@class misskey.auth.OAuthRedirect
---@field code? string
---@field state? string
---@field iss? string the issuer that sent the redirect (RFC 9207)
---@field error? string
---@field error_description? string

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- auth.oauth_listen(port) -> listener | nil, message: listens on
-- 127.0.0.1:port for the browser's redirect to a loopback redirect URI;
-- `listener:accept(timeout, { path, state })` waits for it through the
-- scheduler and returns the request target (misskey.auth.redirect).
---@param port integer 1 to 65535: the redirect URI's port
---@return table|nil listener
---@return string|nil message
function auth.oauth_listen(port)
  local listener, msg = require("misskey.auth.redirect").listen(port)
  return listener, msg
end

--- auth.oauth_parse_redirect(url) -> { code, state, iss, error, error_description } from a redirect URL's query.
---@param url string
---@return misskey.auth.OAuthRedirect
function auth.oauth_parse_redirect(url)
  if type(url) ~= "string" then argerror(1, "oauth_parse_redirect", "URL string expected") end
  local query = url:match("%?([^#]*)") or ""
  local out = {}
  for k, v in query:gmatch("([^&=]+)=?([^&]*)") do out[unescape(k)] = unescape(v) end
  return out
end

--- Options of auth.oauth_exchange.
---@class misskey.auth.OAuthExchangeOptions
---@field host misskey.auth.Host
---@field code string from the redirect
---@field state? string from the redirect
---@field expected_state string the one oauth_start made
---@field verifier string the one oauth_start made
---@field client_id string
---@field redirect_uri string
---@field token_path? string default "/oauth/token"
---@field iss? string from the redirect
---@field issuer? string the metadata's `issuer`: checked against `iss` (RFC 9207)
---@field require_iss? boolean refuse a redirect without `iss`
---@field allow_plaintext_token? boolean

local EXCHANGE_OPTIONS = {
  host = true, code = true, state = true, expected_state = true, verifier = true, client_id = true,
  redirect_uri = true, token_path = true, allow_plaintext_token = true, iss = true, issuer = true, require_iss = true,
}

-- A redirect's text in a message: one line of printable characters, cut short.
local function shown(v)
  if type(v) ~= "string" then return nil end
  v = v:gsub("%c", "?")
  if #v > 200 then v = v:sub(1, 200) .. "..." end
  return v
end

-- RFC 9207: why a redirect's `iss` is refused, or nil. Without it, a server that redirects the
-- user to another server's consent page could have that server's code sent to its own token
-- endpoint (a mix-up). Misskey names itself in every redirect and says so in its metadata.
local function wrong_issuer(iss, issuer, require_iss)
  if issuer == nil then return nil end
  if iss == nil then
    return require_iss and "the redirect names no issuer (iss), which this server always sends; start again" or nil
  end
  if iss ~= issuer then
    return ("the redirect names another issuer (iss %s, expected %s): a mix-up of servers; start again")
      :format(shown(iss) or type(iss), shown(issuer))
  end
  return nil
end

--- auth.oauth_exchange{ host, code, state, expected_state, verifier, client_id, redirect_uri,
--                       token_path, iss, issuer, require_iss, allow_plaintext_token }
-- -> token, reply | nil, message, err. A state that differs from expected_state, or (given
-- `issuer`) an `iss` other than it, is refused before anything is sent (err.kind "auth"); so is
-- a refusal by the server.
---@param opts misskey.auth.OAuthExchangeOptions
---@return string|nil token
---@return table|string|nil reply_or_message the token endpoint's whole reply
---@return misskey.Error|nil err
function auth.oauth_exchange(opts)
  check_keys("oauth_exchange", opts, EXCHANGE_OPTIONS)
  for _, k in ipairs{ "code", "verifier", "client_id", "redirect_uri", "expected_state" } do
    check_string("oauth_exchange", opts, k, true)
  end
  check_issuer("oauth_exchange", opts)
  local client = client_for("oauth_exchange", opts.host, opts.allow_plaintext_token)
  local path = opts.token_path or "/oauth/token"
  if opts.state ~= opts.expected_state then
    return errors.fail("auth", "OAuth: the state in the redirect does not match the one sent "
      .. "(a stale or forged redirect); start again", { endpoint = path })
  end
  local mixup = wrong_issuer(opts.iss, opts.issuer, opts.require_iss)
  if mixup then return errors.fail("auth", "OAuth: " .. mixup, { endpoint = path }) end
  local res, value, err = client:http{
    method = "POST", path = path, json = true,
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    body = form{
      "grant_type", "authorization_code", "code", opts.code, "redirect_uri", opts.redirect_uri,
      "client_id", opts.client_id, "code_verifier", opts.verifier,
    },
  }
  -- The code and the verifier stay out of every field of every failure.
  local secrets = { opts.code, opts.verifier, core.urlencode(opts.code), core.urlencode(opts.verifier) }
  if not res then return errors.scrubbed(secrets, nil, value, err) end
  if res.status ~= 200 or type(value) ~= "table" or type(value.access_token) ~= "string" then
    local e = type(value) == "table" and value or {}
    local what = type(e.error) == "string" and e.error or "no access_token"
    if type(e.error_description) == "string" then what = what .. ": " .. e.error_description end
    return errors.scrubbed(secrets, errors.fail("auth", ("POST %s: OAuth token request refused (HTTP %d): %s")
      :format(path, res.status, what), { status = res.status, endpoint = path, error = e.error }))
  end
  return value.access_token, value
end

-- ---- OAuth across requests: a session saved in one, finished in another ----

--- What session:save() gives and auth.oauth_session takes: plain strings (JSON, a
--- lua_shared_dict, a server-side store). Holds the verifier: keep it on the server.
---@class misskey.auth.OAuthSaved
---@field host string|misskey.Client the server's base URL (or a client to go through)
---@field client_id string
---@field redirect_uri string
---@field state string
---@field verifier string
---@field token_path? string
---@field issuer? string
---@field require_iss? boolean
---@field allow_plaintext_token? boolean

local SAVED_OPTIONS = {
  host = true, client_id = true, redirect_uri = true, state = true, verifier = true, token_path = true,
  allow_plaintext_token = true, issuer = true, require_iss = true,
}

--- session:save() -> { host, client_id, redirect_uri, state, verifier, token_path, issuer, require_iss,
--                     allow_plaintext_token }
-- What auth.oauth_session needs to finish the sign-in later, maybe in another process.
---@return misskey.auth.OAuthSaved
function OAuthSession:save()
  argcheck.self(self, OAuthSession, "session", "save")
  local c = self._client
  return {
    host = self.base_url, client_id = self.client_id, redirect_uri = self.redirect_uri, state = self.state,
    verifier = self.verifier, token_path = self.token_path, issuer = self.issuer, require_iss = self.require_iss,
    allow_plaintext_token = (c:cleartext() and c.allow_plaintext_token) and true or nil,
  }
end

--- auth.oauth_session{ host, client_id, redirect_uri, state, verifier, token_path, issuer, require_iss,
--                      allow_plaintext_token }
-- -> session. The OAuth sign-in that auth.oauth_start began, rebuilt from session:save(): for a web
-- application, whose redirect comes in another request. Only `finish` is meaningful on it (`url` is nil).
-- Misuse raises naming the option, never showing its value.
---@param opts misskey.auth.OAuthSaved
---@return misskey.auth.OAuthSession
function auth.oauth_session(opts)
  check_keys("oauth_session", opts, SAVED_OPTIONS)
  for _, k in ipairs{ "client_id", "redirect_uri", "state" } do check_string("oauth_session", opts, k, true) end
  check_string("oauth_session", opts, "token_path")
  check_issuer("oauth_session", opts)
  local v = opts.verifier
  -- RFC 7636 4.1: 43 to 128 unreserved characters.
  if type(v) ~= "string" or #v < 43 or #v > 128 or v:find("[^%w%-%._~]") then
    argerror(1, "oauth_session", "option 'verifier' must be a PKCE code verifier (43 to 128 letters, digits, '-._~')")
  end
  local client = client_for("oauth_session", opts.host, opts.allow_plaintext_token)
  return setmetatable({
    state = opts.state, verifier = v, challenge = core.base64url(core.sha256(v)), client_id = opts.client_id,
    redirect_uri = opts.redirect_uri, token_path = opts.token_path, issuer = opts.issuer,
    require_iss = opts.require_iss or nil, base_url = client.base_url, _client = client,
  }, OAuthSession)
end

-- Compares every byte whatever the first difference, so the time taken tells nothing of the state.
local function same_state(given, kept)
  if type(given) ~= "string" or #given ~= #kept then return false end
  local diff = 0
  for i = 1, #kept do
    if given:byte(i) ~= kept:byte(i) then diff = diff + 1 end
  end
  return diff == 0
end

local function refused(message, fields)
  return errors.fail("auth", "OAuth: " .. message, fields)
end

--- session:finish(redirect) -> token, reply | nil, message, err
-- `redirect` is the address the browser came back to (or its path and query), or its query as a
-- table (ngx.req.get_uri_args(), a framework's parsed query). A redirect with another state, an
-- `iss` other than the session's issuer (or none, with require_iss), an error (the user said no)
-- or no code is refused before anything is sent (err.kind "auth",
-- never raised: the redirect comes from the browser); then the code is exchanged as
-- auth.oauth_exchange does. The code and the verifier appear in no failure.
---@param redirect string|table
---@return string|nil token
---@return table|string|nil reply_or_message the token endpoint's whole reply
---@return misskey.Error|nil err
function OAuthSession:finish(redirect)
  argcheck.self(self, OAuthSession, "session", "finish")
  local q = redirect
  if type(redirect) == "string" then
    q = auth.oauth_parse_redirect(redirect)
  elseif type(redirect) ~= "table" then
    argerror(1, "finish", "redirect address or query table expected, got " .. type(redirect))
  end
  local path = self.token_path or "/oauth/token"
  -- The state first, even on an error: a forged redirect says nothing about this sign-in.
  if not same_state(q.state, self.state) then
    return refused("the state in the redirect does not match the one sent (a stale or forged redirect); start again",
      { endpoint = path })
  end
  -- Then the issuer, also before an error: a mix-up's error response is no answer of this server.
  local mixup = wrong_issuer(q.iss, self.issuer, self.require_iss)
  if mixup then return refused(mixup, { endpoint = path }) end
  if q.error ~= nil then
    local what = shown(q.error) or "error"
    local desc = shown(q.error_description)
    return refused(("the sign-in was refused (%s%s)"):format(what, desc and ": " .. desc or ""),
      { endpoint = path, error = shown(q.error) })
  end
  local code = q.code
  if type(code) ~= "string" or code == "" or #code > 4096 then
    return refused("the redirect carries no usable code; start again", { endpoint = path })
  end
  return auth.oauth_exchange{
    host = self._client, code = code, state = self.state, expected_state = self.state, verifier = self.verifier,
    client_id = self.client_id, redirect_uri = self.redirect_uri, token_path = self.token_path,
  }
end

return auth
