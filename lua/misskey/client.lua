--- The Client: one Misskey server, one token, and the calls to its API.
-- Misuse raises naming the argument; every failure on the wire returns
-- `nil, message, err` (see misskey.errors).
--
-- The fields starting with `_` are the client's own. Other modules of the
-- library use only its declared interface: the public methods and fields
-- (README "Client methods"), and these, which are for the library itself:
--   client:token()               the token it sends, or nil (the CLI, positions' file names)
--   client:catalogue()           its catalogue after client:schema(), else nil (the bundled one)
--   client:use_catalogue(cat)    names, validation and rate limits follow `cat` (client:schema())
--   client:streaming_request(o)  the WebSocket request of a stream, and the secrets it carries
--   client:websocket(req)        opens it through the client's transport
--   client:emit(event), client:observed(), client:cleartext()
local argcheck = require "misskey.argcheck"
local baseurl = require "misskey.baseurl"
local catalogue = require "misskey.catalogue"
local core = require "misskey.core"
local env = require "misskey.env"
local errors = require "misskey.errors"
local json = require "misskey.json"
local decode_body = json._decode_body
local ratelimit = require "misskey.ratelimit"

local Client = { __name = "misskey.Client" }
Client.__index = Client

local VERSION = "0.1.0"
Client._VERSION = VERSION

-- Options a client accepts; anything else raises (a feature that has not
-- landed yet is unknown too).
local OPTIONS = {
  host = true, token = true, auth = true, timeout = true, connect_timeout = true,
  user_agent = true, transport = true, engine = true, max_size = true, max_connections = true,
}
local CALL_OPTIONS = { timeout = true }
-- Rate limits and retries (misskey.ratelimit): per client, and per call.
OPTIONS.ratelimit, OPTIONS.max_wait, OPTIONS.retries = true, true, true
CALL_OPTIONS.ratelimit, CALL_OPTIONS.max_wait, CALL_OPTIONS.retries, CALL_OPTIONS.idempotent = true, true, true, true
-- Parameter validation against the catalogue (misskey.schema), per client and per call.
OPTIONS.validate, CALL_OPTIONS.validate = true, true
-- HTTP hardening options (TLS, low-speed abort); see check_http_options.
OPTIONS.ca_file, OPTIONS.insecure, OPTIONS.low_speed = true, true, true
-- An account of the credential store (misskey.credentials), "@user@host".
OPTIONS.account = true
-- Observability: a function called with one table per event (see Client:emit).
OPTIONS.on_event = true
-- Sending the token over plain http to another machine: refused unless this is true.
OPTIONS.allow_plaintext_token = true
-- JSON null in replies: misskey.null ("sentinel", the default) or left out ("nil"); per client and per call.
OPTIONS.null, CALL_OPTIONS.null = true, true

local DEFAULT_MAX_SIZE = 64 * 1024 * 1024

-- The environment is misskey.env's. This alias is for misskey.testing's demo
-- client until it reads misskey.env itself; nothing else may use it.
Client._getenv = env.get

local argerror, opterror = argcheck.argerror, argcheck.opterror
local seconds_problem, count_problem = argcheck.seconds_problem, argcheck.count_problem
local MAX_SECONDS, MAX_BYTES = argcheck.MAX_SECONDS, argcheck.MAX_BYTES

-- The option `name` of misskey.new (`level`: see misskey.argcheck).
local function check_seconds(opts, name, level)
  argcheck.seconds_option(opts, name, MAX_SECONDS, (level or 1) + 1)
end

-- Abort a transfer that moves fewer than `bytes` per second for `seconds`: a
-- stalled connection otherwise blocks forever when no timeout is set. 60 s is
-- the read timeout of nginx's proxy_pass, which fronts most Misskey servers:
-- a reply silent that long would have been cut there anyway.
local DEFAULT_LOW_SPEED = { bytes = 1, seconds = 60 }

local function check_count(v, name, max, level)
  local why = count_problem(v, max)
  if why then opterror(name, why, (level or 1) + 1) end
end

-- ca_file, insecure and low_speed -> the transport fields they become.
local function check_http_options(opts)
  local out = {}
  local ca_file, insecure, low = opts.ca_file, opts.insecure, opts.low_speed
  if ca_file ~= nil then
    if type(ca_file) ~= "string" or ca_file == "" then opterror("ca_file", "a file path expected", 2) end
    local f, why = io.open(ca_file, "r")
    if not f then opterror("ca_file", "cannot open: " .. tostring(why), 2) end
    f:close()
    out.ca_file = ca_file
  end
  if insecure ~= nil and type(insecure) ~= "boolean" then
    opterror("insecure", "boolean expected, got " .. type(insecure), 2)
  end
  if insecure and ca_file then opterror("insecure", "cannot be combined with ca_file", 2) end
  out.insecure = insecure or nil
  if low == nil then low = DEFAULT_LOW_SPEED end
  if low ~= false then
    if type(low) ~= "table" then opterror("low_speed", "{ bytes = n, seconds = s } or false expected", 2) end
    for k in pairs(low) do
      if k ~= "bytes" and k ~= "seconds" then opterror("low_speed", "unknown field '" .. tostring(k) .. "'", 2) end
    end
    check_count(low.bytes, "low_speed.bytes", MAX_BYTES, 2)
    check_count(low.seconds, "low_speed.seconds", MAX_SECONDS, 2)
    out.low_speed_limit, out.low_speed_time = low.bytes, low.seconds
  end
  return out
end

local function default_user_agent()
  return ("lua-misskey/%s libcurl/%s"):format(VERSION, core.curl_version())
end

-- Credentials: explicit arguments win; then MISSKEY_HOST and MISSKEY_TOKEN,
-- and the environment's token only goes to the environment's host; then the
-- credential store's default account (only for its own host). `account`
-- names a stored account instead (explicit host/token still win).
-- Returns the base URL, the token, where the token came from ("token",
-- "MISSKEY_TOKEN" or the account's key) and the stored account it came from.
local function resolve_credentials(opts)
  local env_host, env_token = env.get("MISSKEY_HOST"), env.get("MISSKEY_TOKEN")
  local host, stored = opts.host or env_host, nil
  if opts.account ~= nil then
    if type(opts.account) ~= "string" or opts.account == "" then
      opterror("account", 'an account name such as "@me@misskey.example" expected', 2)
    end
    local entry, why = require("misskey.credentials").get(opts.account)
    if not entry then opterror("account", why, 2) end
    host, stored = opts.host or entry.host, entry
  elseif opts.token == nil and not (env_host and env_token) then
    -- The store is read only when it can supply something; a broken store
    -- (say, a world-readable file) is an error only when it is needed for the host.
    local entry, why, err = require("misskey.credentials").get()
    if entry then
      stored = entry
      host = host or entry.host
    elseif host == nil and err and err.reason ~= "unknown" then
      opterror("host", "no host given, and " .. why, 2)
    end
  end
  if host == nil then
    opterror("host", "a host is required: pass host = ..., set MISSKEY_HOST, or log in with `misskey login`", 2)
  end
  local base, why = baseurl.parse(host)
  if not base then opterror("host", why .. ": " .. ("%q"):format(tostring(host)), 2) end
  local token, source, from = opts.token, "token", nil
  if token == nil and env_host and env_token and baseurl.parse(env_host) == base then
    token, source = env_token, "MISSKEY_TOKEN"
  end
  if token == nil and stored and baseurl.parse(stored.host) == base then
    token, source, from = stored.token, "the stored account " .. stored.key, stored
  end
  if token == false then token = nil end
  if token ~= nil and type(token) ~= "string" then
    opterror("token", "string expected, got " .. type(token), 2)
  end
  if token == "" then token = nil end
  return base, token, source, from
end

-- A token never crosses a network in clear unless the caller says so: by
-- `allow_plaintext_token = true`, or by the stored account it came from (which
-- records the same choice made at `misskey login`).
local function check_cleartext(opts, base, token, source, stored)
  local allow = opts.allow_plaintext_token
  if allow ~= nil and type(allow) ~= "boolean" then
    opterror("allow_plaintext_token", "boolean expected, got " .. type(allow), 2)
  end
  if allow or not token or (stored and stored.allow_plaintext_token == true) then return allow or false end
  local why = baseurl.cleartext(base, env.get)
  if why then
    opterror("host", ("%s: %s, so the token (from %s) would travel unencrypted, readable and usable by anyone "
      .. "on the way; use https, or pass allow_plaintext_token = true to send it anyway"):format(base, why, source), 2)
  end
  return false
end

--- misskey.new(opts) -> client. See README "Client options".
function Client.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then argerror(1, "new", "options table expected, got " .. type(opts)) end
  argcheck.known_options(opts, OPTIONS)
  local base, token, source, stored = resolve_credentials(opts)
  local allow_plaintext = check_cleartext(opts, base, token, source, stored)
  local auth = opts.auth or "body"
  if auth ~= "body" and auth ~= "header" then opterror("auth", 'expected "body" or "header"') end
  check_seconds(opts, "timeout")
  check_seconds(opts, "connect_timeout")
  if opts.max_size ~= nil then check_count(opts.max_size, "max_size", MAX_BYTES) end
  local http_options = check_http_options(opts)
  if opts.idempotent ~= nil then error("bad option 'idempotent' (unknown option)", 3) end
  if opts.validate ~= nil and type(opts.validate) ~= "boolean" then
    opterror("validate", "boolean expected, got " .. type(opts.validate))
  end
  local bad, why = ratelimit.problem(opts)
  if bad then opterror(bad, why) end
  if opts.user_agent ~= nil and type(opts.user_agent) ~= "string" then
    opterror("user_agent", "string expected")
  end
  -- It is sent as a header: a line break would add headers of the caller's making.
  if opts.user_agent and opts.user_agent:find("[\r\n%z]") then
    opterror("user_agent", "must not contain CR, LF or NUL")
  end
  if opts.on_event ~= nil and type(opts.on_event) ~= "function" then
    opterror("on_event", "function expected, got " .. type(opts.on_event))
  end
  if opts.null ~= nil and opts.null ~= "nil" and opts.null ~= "sentinel" then
    opterror("null", 'expected "nil" or "sentinel", got ' .. tostring(opts.null))
  end
  local transport = opts.transport
  if transport ~= nil and (type(transport) ~= "table" or type(transport.request) ~= "function") then
    opterror("transport", "a table with a request function expected")
  end
  if transport == nil then
    transport = require("misskey.transport.curl").new(opts.engine)
  elseif opts.engine ~= nil then
    opterror("engine", "cannot be combined with transport")
  end
  local cap = opts.max_connections
  if cap ~= nil then
    check_count(cap, "max_connections", 65536)
    if not transport.engine then opterror("max_connections", "needs the libcurl transport") end
    -- A cap of the engine: it applies to every client sharing that engine.
    transport.engine:limit(cap)
  end
  local client = setmetatable({
    base_url = base,
    host = base:match("://(.*)$"),
    -- Public and read-only: misskey.auth checks it before a login over plain http.
    allow_plaintext_token = allow_plaintext or (stored ~= nil and stored.allow_plaintext_token == true),
    _token = token,
    _auth = auth,
    _timeout = opts.timeout,
    _connect_timeout = opts.connect_timeout,
    _max_size = opts.max_size or DEFAULT_MAX_SIZE,
    _http_options = http_options,
    _user_agent = opts.user_agent or default_user_agent(),
    _transport = transport,
    _policy = ratelimit.policy(opts), -- 429s, retries, pacing: misskey.ratelimit's, per client
    _validate = opts.validate or false,
    _catalogue = nil, -- the bundled catalogue (misskey.endpoints) until client:schema()
    _on_event = opts.on_event or false, -- false, not nil: observed() then finds it in the client, not via __index
    _null_nil = opts.null == "nil", -- replies' null object members left out (see json.decode)
  }, Client)
  -- client.api.notes.create{...}: names through the client's catalogue (misskey.api).
  client.api = require("misskey.api").new(client, nil)
  return client
end

--- client:token() -> the token this client sends, or nil when it is anonymous.
-- For the library's own modules (the `misskey token` command, the name of a
-- positions file); an application has the token it gave misskey.new.
---@return string|nil
function Client:token()
  return self._token
end

--- client:catalogue() -> the catalogue this client's names, validation and
-- rate limits follow: the server's own after client:schema(), else nil (the
-- bundled one, misskey.catalogue).
---@return table|nil
function Client:catalogue()
  return self._catalogue
end

--- client:use_catalogue(cat): from now on this client's names (client.api),
-- validation and rate limits follow `cat` (a catalogue in misskey.endpoints'
-- format; nil: the bundled one). client:schema() calls it.
---@param cat table|nil
function Client:use_catalogue(cat)
  if cat ~= nil and (type(cat) ~= "table" or type(cat.endpoints) ~= "table") then
    argerror(1, "use_catalogue", "a catalogue ({ endpoints = { ... } }) or nil expected")
  end
  self._catalogue = cat
  self.api = require("misskey.api").new(self, cat)
end

--- client:streaming_request([{ max_message = n }]) -> req, secrets | nil, why:
-- what transport.websocket needs to open this client's streaming connection
-- (ws(s)://host/streaming, the token as `?i=` or an Authorization header as the
-- `auth` option says, the client's timeouts and TLS options), and the strings
-- no error may ever carry (the token, and the token as the URL spells it).
-- nil and why when the client's transport has no websocket function.
---@param opts? { max_message?: integer }
---@return table|nil req
---@return string[]|string|nil secrets_or_why
function Client:streaming_request(opts)
  if type(self._transport.websocket) ~= "function" then
    return nil, "the client's transport has no websocket function"
  end
  local url = self.base_url:gsub("^http", "ws") .. "/streaming"
  local token, headers, secrets = self._token, nil, nil
  if token then
    secrets = { token, core.urlencode(token) }
    if self._auth == "header" then
      headers = { Authorization = "Bearer " .. token }
    else
      url = url .. "?i=" .. secrets[2]
    end
  end
  local http = self._http_options
  return {
    url = url, headers = headers, timeout = self._timeout or 30, connect_timeout = self._connect_timeout,
    ca_file = http.ca_file, insecure = http.insecure, max_message = opts and opts.max_message,
  }, secrets
end

--- client:websocket(req) -> ws | nil, message, err: opens a WebSocket through
-- the client's transport (req from client:streaming_request).
---@param req table
---@return table|nil ws
---@return string|nil message
---@return table|nil err
function Client:websocket(req)
  local ws, msg, err = self._transport.websocket(req)
  return ws, msg, err
end

function Client:__tostring()
  return ("misskey.Client (%s, %s)"):format(self.base_url, self._token and "token ***" or "anonymous")
end

--- client:emit(event): hands `event` (a table with a `type` string) to the
-- client's `on_event` function, if it has one. Modules that make requests,
-- retries, rate-limit waits, reconnects and backfills report them here. The
-- event gets `host` and `time` (monotonic seconds); every string field is
-- redacted of the token first, so an observer never sees it. An observer
-- that raises does not break the work it observes: its error goes to stderr.
---@param event table
function Client:emit(event)
  local observer = self._on_event
  if not observer then return end
  local token = self._token
  if token then
    for k, v in pairs(event) do
      if type(v) == "string" then event[k] = errors.redact(v, token) end
    end
  end
  event.host = self.host
  event.time = event.time or core.now()
  local ok, why = pcall(observer, event)
  if not ok then
    io.stderr:write("misskey: on_event raised: ", errors.redact(tostring(why), token), "\n")
  end
end

--- client:cleartext() -> why | nil: the reason a token this client sends would
-- cross a network unencrypted (plain http to another machine, or through a
-- proxy on one), whether or not `allow_plaintext_token` allows it.
---@return string|nil
function Client:cleartext()
  return baseurl.cleartext(self.base_url, env.get)
end

--- client:observed() -> true when an `on_event` function is set (emitters may
-- skip building an event nobody reads).
function Client:observed()
  return not not self._on_event
end

local function check_client(self, fname)
  argcheck.self(self, Client, "client", fname, 2)
end

-- Names that passed check_endpoint: the patterns cost more than the rest of a
-- call's checks. Bounded, for programs that make up names.
local known_endpoints, nknown = {}, 0

-- Misskey endpoint names: segments of letters, digits, '_' and '-' joined by '/'.
local function check_endpoint(endpoint)
  if known_endpoints[endpoint] then return end
  if type(endpoint) ~= "string" then
    argerror(1, "request", "endpoint must be a string, got " .. type(endpoint), 2)
  end
  if endpoint:sub(1, 1) == "/" then
    argerror(1, "request", ("endpoint must not start with '/': %q"):format(endpoint), 2)
  end
  if not endpoint:find("^[%w_%-]+$") and not endpoint:find("^[%w_%-]+[%w_%-/]*[%w_%-]$")
     or endpoint:find("//", 1, true) then
    argerror(1, "request", ("not an endpoint name: %q"):format(endpoint), 2)
  end
  if nknown < 4096 then
    known_endpoints[endpoint], nknown = true, nknown + 1
  end
end

local NO_OPTIONS = setmetatable({}, { __newindex = function() error("call options are read-only", 2) end })

local function check_call_options(opts)
  if opts == nil then return NO_OPTIONS end
  if type(opts) ~= "table" then argerror(3, "request", "options table expected, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not CALL_OPTIONS[k] then argerror(3, "request", "unknown option '" .. tostring(k) .. "'", 2) end
  end
  local why = opts.timeout ~= nil and seconds_problem(opts.timeout, MAX_SECONDS)
  if why then argerror(3, "request", "option 'timeout': " .. why, 2) end
  local bad, problem = ratelimit.problem(opts)
  if bad then argerror(3, "request", ("option '%s' (%s)"):format(bad, problem), 2) end
  if opts.validate ~= nil and type(opts.validate) ~= "boolean" then
    argerror(3, "request", "option 'validate' must be a boolean", 2)
  end
  if opts.null ~= nil and opts.null ~= "nil" and opts.null ~= "sentinel" then
    argerror(3, "request", "option 'null' must be \"nil\" or \"sentinel\"", 2)
  end
  return opts
end

-- Seconds to wait before retrying, from the reply (see misskey.ratelimit.hint).
local function retry_after(headers, info)
  return (ratelimit.hint(headers, info))
end

local function excerpt(body)
  body = body:gsub("%s+", " ")
  if #body > 200 then body = body:sub(1, 200) .. "…" end
  return body
end

local NIL_NULLS = { null = "nil" }

-- Turns a transport response into a result or `nil, message, err`; `drop_nulls`: a
-- reply's null object members are left out (the `null = "nil"` option).
function Client:_interpret(endpoint, res, drop_nulls)
  local status = res.status
  if status >= 200 and status < 300 then
    if status == 204 then return true end
    local value, derr
    local transfer = rawget(res, "_transfer")
    if transfer and rawget(res, "body") == nil then
      -- The curl transport's reply, decoded where libcurl left it: no Lua string of the body.
      value, derr = decode_body(transfer, true, drop_nulls)
    elseif (res.body or "") == "" then
      return true
    elseif drop_nulls then
      value, derr = json.decode(res.body, NIL_NULLS)
    else
      value, derr = json.decode(res.body)
    end
    if value == nil then
      -- Failures never carry the token, even where a server echoes it back.
      local body = errors.redact(res.body, self._token)
      return errors.fail("decode", ("%s: invalid JSON in HTTP %d reply (%s)"):format(endpoint, status, derr),
        { status = status, endpoint = endpoint, body = excerpt(body) })
    end
    return value
  end
  local headers = res.headers or {} -- read only here: the curl transport parses them on first use
  local body = errors.redact(res.body or "", self._token)
  local decoded = body:find("^%s*{") and json.decode(body)
  local apierr = type(decoded) == "table" and decoded.error
  if type(apierr) == "table" and type(apierr.code) == "string" then
    local info = type(apierr.info) == "table" and apierr.info or nil
    local wait = retry_after(headers, info)
    local msg = ("%s: %s (HTTP %d): %s"):format(endpoint, apierr.code, status, tostring(apierr.message or ""))
    if info and info.param then msg = msg .. (" [%s: %s]"):format(tostring(info.param), tostring(info.reason)) end
    if wait then msg = msg .. (" (retry after %g s)"):format(wait) end
    return errors.fail("api", msg, {
      status = status, endpoint = endpoint, code = apierr.code, id = apierr.id, info = info,
      api = apierr, retry_after = wait,
    })
  end
  local ctype = headers["content-type"] or "no content type"
  return errors.fail("http", ("%s: HTTP %d (%s): %s"):format(endpoint, status, ctype, excerpt(body)),
    { status = status, endpoint = endpoint, body = excerpt(body), retry_after = retry_after(headers) })
end

-- Sends one request through the transport; redacts the token from failures.
function Client:_send(endpoint, req, label)
  req.user_agent = self._user_agent
  req.connect_timeout = self._connect_timeout
  req.max_size = req.max_size or self._max_size
  for k, v in pairs(self._http_options) do req[k] = v end
  local res, msg, err = self._transport.request(req)
  if not res then
    if not errors.is(err) then
      -- A transport of the user's may return a plain table: keep its fields.
      local fields = type(err) == "table" and err or {}
      err = select(2, errors.new(fields.kind or "network", tostring(msg or "transport failed"), fields))
    end
    err.endpoint = endpoint
    local text = err.message
    if err.curl_code == 60 then -- CURLE_PEER_FAILED_VERIFICATION
      text = text .. "; the server's certificate is not trusted here (see the ca_file option)"
    end
    err.message = errors.redact(("%s: %s"):format(label or endpoint, text), self._token)
    return nil, err.message, err
  end
  return res
end

-- Validation before sending (opts.validate): `message, err` of kind "invalid", or nil.
function Client:_check(endpoint, params)
  local schema = require "misskey.schema"
  local entry = catalogue.lookup(endpoint, self._catalogue)
  if not entry then
    local msg, suggestions = catalogue.unknown_message(endpoint, self._catalogue)
    return errors.new("invalid", endpoint .. ": " .. msg, { endpoint = endpoint, suggestions = suggestions })
  end
  local msg, param = schema.validate(entry, params)
  if not msg then
    msg = schema.check_token(entry, self._token)
    param = msg and "i" or nil
  end
  if msg then
    return errors.new("invalid", errors.redact(endpoint .. ": " .. msg, self._token),
      { endpoint = endpoint, param = param })
  end
  return nil
end

-- One API call on the wire: reply, value | reply, nil, message, err (for misskey.ratelimit).
-- A function of the module, not a closure per call: a batch keeps its results, and every
-- byte of garbage a call leaves makes the collector mark them again sooner.
local function post_attempt(self, endpoint, url, headers, encoded, timeout)
  local res, msg, err = self:_send(endpoint, {
    method = "POST", url = url, headers = headers, body = encoded, timeout = timeout,
  })
  if not res then return nil, nil, msg, err end
  return res, self:_interpret(endpoint, res)
end

-- The same, leaving a reply's null object members out (the `null = "nil"` option): a
-- function of its own, so the default path carries no extra argument.
local function post_attempt_nil_nulls(self, endpoint, url, headers, encoded, timeout)
  local res, msg, err = self:_send(endpoint, {
    method = "POST", url = url, headers = headers, body = encoded, timeout = timeout,
  })
  if not res then return nil, nil, msg, err end
  return res, self:_interpret(endpoint, res, true)
end

-- The attempt function of a call: by the `null` option (the call's, else the client's),
-- wrapped to report each attempt when someone observes. Without an observer or a call's
-- own `null`, the choice is the client's for good and is kept in `_attempt`, so the
-- usual call makes it with one field read.
local function choose_attempt(self, opts)
  local null = opts.null
  if null == nil then null = self._null_nil and "nil" or "sentinel" end
  local attempt = null == "nil" and post_attempt_nil_nulls or post_attempt
  if self._on_event then return ratelimit.observing(attempt) end
  if opts.null == nil then self._attempt = attempt end
  return attempt
end

--- client:request(endpoint, params, opts) -> value | true (204) | nil, message, err
-- `params` is a table of the endpoint's parameters; `opts.timeout` (seconds) bounds this call.
function Client:request(endpoint, params, opts)
  check_client(self, "request")
  check_endpoint(endpoint)
  if params ~= nil and type(params) ~= "table" then
    argerror(2, "request", "params must be a table, got " .. type(params))
  end
  opts = check_call_options(opts)
  local validate = opts.validate
  if validate == nil then validate = self._validate end
  if validate then
    local msg, err = self:_check(endpoint, params)
    if msg then return nil, msg, err end
  end
  local body = {}
  for k, v in pairs(params or {}) do body[k] = v end
  local headers = { ["Content-Type"] = "application/json", Accept = "application/json" }
  if self._token then
    if self._auth == "header" then
      headers.Authorization = "Bearer " .. self._token
    else
      body.i = self._token
    end
  end
  local ok, encoded = pcall(json.encode, body, "params")
  if not ok then error(errors.redact(encoded, self._token), 2) end
  local url, timeout = self.base_url .. "/api/" .. endpoint, opts.timeout or self._timeout
  -- misskey.ratelimit repeats the attempt for 429s and retries. Its own fields, not
  -- self:observed(): a method call is a measurable part of a call nobody observes.
  -- A failure leaves with the token redacted from every field, wherever a server echoed it.
  local attempt = self._attempt
  if not attempt or opts ~= NO_OPTIONS and opts.null ~= nil then attempt = choose_attempt(self, opts) end
  return errors.scrubbed(self._token, ratelimit.run(self._policy, self, endpoint, opts,
    catalogue.lookup(endpoint, self._catalogue), attempt, url, headers, encoded, timeout))
end

-- ---- client:upload: drive/files/create as multipart/form-data ----

local UPLOAD_OPTIONS = { timeout = true, progress = true }
local FILE_KEYS = { path = true, data = true, filename = true, type = true }
local UPLOAD_ENDPOINT = "drive/files/create"
local UPLOAD_CALL = { idempotent = false } -- a write: 429s are waited out, nothing else is repeated

local function basename(path)
  return path:match("([^/]+)/*$") or path
end

-- A string, boolean or finite number as text (integers without ".0"); nil otherwise.
local function scalar_text(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "boolean" then return tostring(v) end
  if t == "number" and v == v and v ~= math.huge and v ~= -math.huge then
    if v % 1 == 0 and v > -2^53 and v < 2^53 then return ("%d"):format(v) end
    return ("%.17g"):format(v)
  end
  return nil
end

-- A field value as multipart text: Misskey casts "true"/"false" and numbers
-- back (protocol.md 4). (misskey.null never gets here: it leaves the field out.)
local function field_text(key, v)
  local text = scalar_text(v)
  if text then return text end
  argerror(2, "upload", ("fields.%s must be a string, number or boolean, got %s"):format(key, tostring(v)), 2)
end

-- Names go into the part headers as C strings: a NUL would cut them short ("a.png\0.exe" went
-- out as "a.png") and a line break would end the header. (Quotes and backslashes are escaped.)
local HEADER_UNSAFE = "[\r\n%z]"

-- The file argument's path: no NUL (the file opened would be another one), and a last
-- component without line breaks unless a filename replaces it.
local function check_path(path, filename)
  if path == "" then argerror(1, "upload", "file path is empty", 3) end
  if path:find("%z") then argerror(1, "upload", "file path contains a NUL byte", 3) end
  if not filename and basename(path):find(HEADER_UNSAFE) then
    argerror(1, "upload", "the file's name has a line break: give { path = ..., filename = ... }", 3)
  end
end

-- The file argument -> the `file` part (not yet checked on disk) and the
-- default of the `name` field (the file name; none for nameless data).
local function file_part(file)
  if type(file) == "string" then
    check_path(file)
    return { name = "file", path = file, filename = basename(file) }, basename(file)
  end
  if type(file) ~= "table" then
    argerror(1, "upload", "a file path or { data = ..., filename = ... } expected, got " .. type(file), 2)
  end
  for k in pairs(file) do
    if not FILE_KEYS[k] then argerror(1, "upload", "unknown field '" .. tostring(k) .. "'", 2) end
  end
  for k in pairs(FILE_KEYS) do
    if file[k] ~= nil and type(file[k]) ~= "string" then
      argerror(1, "upload", ("field '%s' must be a string, got %s"):format(k, type(file[k])), 2)
    end
  end
  if (file.path == nil) == (file.data == nil) then
    argerror(1, "upload", "give exactly one of path and data", 2)
  end
  for _, k in ipairs{ "filename", "type" } do
    if file[k] and file[k]:find(HEADER_UNSAFE) then
      argerror(1, "upload", ("field '%s' must not contain CR, LF or NUL"):format(k), 2)
    end
  end
  if file.path then check_path(file.path, file.filename) end
  -- In-memory data without a filename is a browser's Blob: Misskey stores no name.
  local filename = file.filename or (file.path and basename(file.path))
  return { name = "file", path = file.path, data = file.data, type = file.type, filename = filename or "blob" },
    filename
end

-- A path that cannot be read fails like any other call (`nil, message, err`),
-- before anything is sent: it is a fact of the disk, not a programming error.
local function unreadable(path)
  local f, why = io.open(path, "rb")
  if f then
    local ok, rerr = f:read(0) -- a directory opens, but reading it fails
    f:close()
    if ok == nil and rerr then why = path .. ": " .. tostring(rerr) else return nil end
  end
  return tostring(why)
end

--- client:upload(file, fields, opts) -> DriveFile | nil, message, err
-- `file` is a path (string; streamed from disk, never read into memory) or a
-- table `{ path = ... | data = "bytes", filename = "x.txt", type = "mime/type" }`.
-- `fields` are drive/files/create's other parameters (name, folderId, comment,
-- isSensitive, force, ...); `name` defaults to the file name. `opts.timeout`
-- bounds the call, `opts.progress(sent, total)` reports the bytes sent.
function Client:upload(file, fields, opts)
  check_client(self, "upload")
  local part, default_name = file_part(file)
  if fields ~= nil and type(fields) ~= "table" then
    argerror(2, "upload", "fields must be a table, got " .. type(fields))
  end
  if opts ~= nil and type(opts) ~= "table" then
    argerror(3, "upload", "options table expected, got " .. type(opts))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not UPLOAD_OPTIONS[k] then argerror(3, "upload", "unknown option '" .. tostring(k) .. "'") end
  end
  local bad_timeout = opts.timeout ~= nil and seconds_problem(opts.timeout, MAX_SECONDS)
  if bad_timeout then argerror(3, "upload", "option 'timeout': " .. bad_timeout) end
  if opts.progress ~= nil and type(opts.progress) ~= "function" then
    argerror(3, "upload", "option 'progress' must be a function(sent, total)")
  end
  -- Text fields first (the server reads them after streaming the file), `i`
  -- first of all as misskey-js does, then the others in sorted order.
  local values, keys = {}, {}
  for k, v in pairs(fields or {}) do
    if type(k) ~= "string" then argerror(2, "upload", "field names must be strings") end
    if k:find(HEADER_UNSAFE) then
      local shown = k:gsub("%c", function(c) return "\\" .. c:byte() end) -- the same on every Lua
      argerror(2, "upload", ('field name "%s" must not contain CR, LF or NUL'):format(shown))
    end
    if k == "i" or k == "file" then
      argerror(2, "upload", ("field '%s' is set by upload itself"):format(k))
    end
    if v ~= json.null then
      values[k] = field_text(k, v)
      keys[#keys + 1] = k
    end
  end
  if values.name == nil and default_name and (fields == nil or fields.name == nil) then
    values.name = default_name
    keys[#keys + 1] = "name"
  end
  table.sort(keys)
  local parts, headers = {}, { Accept = "application/json" }
  if self._token then
    if self._auth == "header" then
      headers.Authorization = "Bearer " .. self._token
    else
      parts[1] = { name = "i", value = self._token }
    end
  end
  for _, k in ipairs(keys) do parts[#parts + 1] = { name = k, value = values[k] } end
  parts[#parts + 1] = part
  if part.path then
    local why = unreadable(part.path)
    if why then
      return errors.fail("invalid", errors.redact(("%s: cannot read the file to upload (%s)"):format(
        UPLOAD_ENDPOINT, why), self._token), { endpoint = UPLOAD_ENDPOINT, param = "file", path = part.path })
    end
  end
  -- 429s are waited out as for client:request (Misskey checks the limit before
  -- storing anything); a write, so never retried after other failures.
  local function attempt()
    local res, msg, err = self:_send(UPLOAD_ENDPOINT, {
      method = "POST", url = self.base_url .. "/api/" .. UPLOAD_ENDPOINT, headers = headers, parts = parts,
      timeout = opts.timeout or self._timeout, progress = opts.progress,
    })
    if not res then return nil, nil, msg, err end
    return res, self:_interpret(UPLOAD_ENDPOINT, res, self._null_nil)
  end
  if self:observed() then attempt = ratelimit.observing(attempt) end
  return errors.scrubbed(self._token, ratelimit.run(self._policy, self, UPLOAD_ENDPOINT, UPLOAD_CALL,
    catalogue.lookup(UPLOAD_ENDPOINT, self._catalogue), attempt))
end

-- ---- client:http: raw HTTP to the client's host (non-API URLs) ----

local HTTP_KEYS = {
  method = true, path = true, query = true, headers = true, body = true, timeout = true, auth = true,
  json = true, max_size = true,
}

-- RFC 3986 unreserved characters stay; everything else is %XX.
local pct = core.urlencode

local function query_value(key, v)
  local text = scalar_text(v)
  if text then return text end
  argerror(1, "http", ("query.%s must be a string, number, boolean or a list of them"):format(key), 3)
end

-- { b = "2", a = { "x", "y" } } -> "a=x&a=y&b=2" (sorted keys: deterministic).
local function encode_query(query)
  if type(query) ~= "table" then argerror(1, "http", "query must be a table, got " .. type(query), 2) end
  local keys = {}
  for k in pairs(query) do
    if type(k) ~= "string" then argerror(1, "http", "query keys must be strings", 2) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = query[k]
    if type(v) == "table" then
      for i = 1, #v do out[#out + 1] = pct(k) .. "=" .. pct(query_value(k, v[i])) end
    else
      out[#out + 1] = pct(k) .. "=" .. pct(query_value(k, v))
    end
  end
  return table.concat(out, "&")
end

local function is_json_type(ctype)
  ctype = (ctype or ""):lower()
  return ctype:find("^application/json") ~= nil or ctype:find("^application/[%w%.%-]+%+json") ~= nil
end

--- client:http{ method = "GET", path = "/x", query = {}, headers = {}, body = "", timeout = s,
--               auth = false, json = false, max_size = n } -> res[, value] | nil, message, err
-- Raw HTTP to the client's own host. `res = { status, headers, body }` for every
-- status (the caller interprets it); `nil, message, err` only when no reply
-- came (network, timeout, a body over max_size). The token is sent only with
-- `auth = true` (as `Authorization: Bearer`). With `json = true` a JSON reply is
-- decoded into the second result.
function Client:http(req)
  check_client(self, "http")
  if type(req) ~= "table" then argerror(1, "http", "request table expected, got " .. type(req)) end
  for k in pairs(req) do
    if not HTTP_KEYS[k] then argerror(1, "http", "unknown field '" .. tostring(k) .. "'") end
  end
  local method, path, body = req.method or "GET", req.path, req.body
  if type(method) ~= "string" or not method:find("^%u+$") then
    argerror(1, "http", "method must be an upper-case HTTP method such as \"GET\"")
  end
  if type(path) ~= "string" then argerror(1, "http", "path must be a string, got " .. type(path)) end
  if path:sub(1, 1) ~= "/" then
    argerror(1, "http", ("path must start with '/' (the client's host is implied): %q"):format(path))
  end
  if path:find("[%s%c#]") then
    argerror(1, "http", ("path must not contain spaces, control characters or '#': %q"):format(path))
  end
  if body ~= nil and type(body) ~= "string" then
    argerror(1, "http", "body must be a string, got " .. type(body))
  end
  if body and (method == "GET" or method == "HEAD") then
    argerror(1, "http", method .. " cannot carry a body")
  end
  local t, m = req.timeout, req.max_size
  local why = t ~= nil and seconds_problem(t, MAX_SECONDS)
  if why then argerror(1, "http", "timeout: " .. why) end
  why = m ~= nil and count_problem(m, MAX_BYTES)
  if why then argerror(1, "http", "max_size: " .. why) end
  for _, k in ipairs{ "auth", "json" } do
    if req[k] ~= nil and type(req[k]) ~= "boolean" then
      argerror(1, "http", k .. " must be a boolean, got " .. type(req[k]))
    end
  end
  local headers, lower = {}, {}
  if req.headers ~= nil and type(req.headers) ~= "table" then
    argerror(1, "http", "headers must be a table, got " .. type(req.headers))
  end
  for k, v in pairs(req.headers or {}) do
    if type(k) ~= "string" or not k:find("^[!#$%%&'*+%-.^_`|~%w]+$") then
      argerror(1, "http", "header names must be HTTP tokens, got " .. ("%q"):format(tostring(k)))
    end
    if type(v) ~= "string" or v:find("[\r\n%z]") then
      argerror(1, "http", ("headers[%q] must be a string without line breaks"):format(k))
    end
    headers[k], lower[k:lower()] = v, true
  end
  if req.auth then
    if not self._token then argerror(1, "http", "auth = true but the client has no token") end
    if lower.authorization then argerror(1, "http", "auth = true and an Authorization header") end
    headers.Authorization = "Bearer " .. self._token
  end
  if req.json and not lower.accept then headers.Accept = "application/json" end
  local url = self.base_url .. path
  if req.query ~= nil then
    local qs = encode_query(req.query)
    if qs ~= "" then url = url .. (path:find("?", 1, true) and "&" or "?") .. qs end
  end
  local label = method .. " " .. path
  local observed = self:observed()
  local t0 = observed and ratelimit._now()
  local res, msg, err = self:_send(path, {
    method = method, url = url, headers = headers, body = body, timeout = t or self._timeout, max_size = m,
  }, label)
  if observed then
    -- Any status is an answer here (the caller interprets it): ok means a reply came.
    self:emit{ type = "request", endpoint = path, method = method, status = res and res.status or err.status,
      elapsed = ratelimit._now() - t0, attempt = 1, ok = res ~= nil, kind = not res and err.kind or nil }
  end
  if not res then return errors.scrubbed(self._token, nil, msg, err) end
  res.headers = res.headers or {}
  res.body = res.body or ""
  if req.json and res.body ~= "" and is_json_type(res.headers["content-type"]) then
    local value, derr = json.decode(res.body, self._null_nil and NIL_NULLS or nil)
    if value == nil then
      local body_ = excerpt(errors.redact(res.body, self._token)) -- before the cut: no half token left
      return errors.scrubbed(self._token, errors.fail("decode", ("%s: invalid JSON in HTTP %d reply (%s)")
        :format(label, res.status, derr), { status = res.status, endpoint = path, body = body_ }))
    end
    return res, value
  end
  return res
end

--- client:paginate(endpoint, params, opts) -> iterator (see misskey.paginate).
function Client:paginate(endpoint, params, opts)
  check_client(self, "paginate")
  local it = require("misskey.paginate").new(self, endpoint, params, opts) -- not a tail call: see misskey.argcheck
  return it
end

--- client:schema() -> { software, version, endpoints = n, source = "server"|"cache" } | nil, message, err
-- Loads the server's own catalogue (GET /api.json, cached on disk per host and
-- version); from then on this client's validation and client.api follow it.
function Client:schema()
  check_client(self, "schema")
  local summary, msg, err = require("misskey.catalogue.server").fetch(self) -- no tail call: see misskey.argcheck
  return summary, msg, err
end

--- client:batch(calls, { concurrency = 8, timeout = s }) -> results, errs (see misskey.batch).
function Client:batch(calls, opts)
  check_client(self, "batch")
  local results, errs = require("misskey.batch")(self, calls, opts) -- not a tail call: see misskey.argcheck
  return results, errs
end

--- client:stream(opts) -> Stream: the Streaming API over one WebSocket (see misskey.stream).
-- opts: reconnect (true), backoff ({ min = 1, max = 60 } s), watchdog (120 s),
-- confirm_timeout (10 s), backfill (true); an unknown option raises.
function Client:stream(opts)
  check_client(self, "stream")
  local stream = require("misskey.stream").new(self, opts) -- not a tail call: see misskey.argcheck
  return stream
end

return Client
