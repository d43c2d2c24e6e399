--- misskey.client.options: what misskey.new makes of its options. Every
-- option is checked (misuse raises naming it), the credentials are resolved
-- (explicit, then MISSKEY_HOST + MISSKEY_TOKEN, then the credential store),
-- a token that would cross a network in clear is refused, and the result is
-- the new client's fields. Part of the client (misskey.client).
local argcheck = require "misskey.argcheck"
local baseurl = require "misskey.baseurl"
local core = require "misskey.core"
local env = require "misskey.env"
local form = require "misskey.client.form"
local loop = require "misskey.loop"
local ratelimit = require "misskey.ratelimit"

local options = {}

--- Options of misskey.new (README "Client options"); an unknown one raises.
---@class misskey.ClientOptions
---@field host? string a host name (https implied) or a base URL
---@field token? string|false the API token; false: anonymous even with MISSKEY_TOKEN set
---@field auth? "body"|"header" where the token goes (default "body")
---@field timeout? number seconds for a whole call
---@field connect_timeout? number seconds to connect
---@field low_speed? { bytes: integer, seconds: integer }|false abort a transfer slower than this
---@field max_size? integer largest accepted reply in bytes (default 64 MiB)
---@field max_connections? integer connections kept per host
---@field ca_file? string PEM file of the CAs to trust instead of the system's
---@field insecure? boolean turn TLS verification off (dangerous)
---@field user_agent? string the User-Agent header
---@field transport? table `{ request = function(req) ... end }` in place of libcurl
---@field engine? userdata a C engine of its own
---@field ratelimit? "wait"|"throw"|"pace" what a 429 does (default "wait")
---@field max_wait? number the most seconds one call waits out 429s (default 60)
---@field retries? integer resends of a read after a network error, timeout or 5xx (default 2)
---@field on_event? fun(event: table) called with one table per request, retry, wait, reconnect
---@field null? "nil"|"sentinel" JSON null members of replies: left out, or misskey.null (default)
---@field validate? boolean check every call's parameters before sending
---@field allow_plaintext_token? boolean let the token cross a network over plain http
---@field account? string a stored account, "@user@host"

local opterror = argcheck.opterror
local count_problem = argcheck.count_problem
local MAX_SECONDS, MAX_BYTES = argcheck.MAX_SECONDS, argcheck.MAX_BYTES

-- Options a client accepts; anything else raises.
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

options.OPTIONS, options.CALL_OPTIONS = OPTIONS, CALL_OPTIONS

local DEFAULT_MAX_SIZE = 64 * 1024 * 1024

-- Levels (see misskey.argcheck): Client.new calls options.fields, which raises
-- at level 2; the helpers it calls, at level 3.

-- The option `name` of misskey.new: seconds > 0, at most a week and a half.
local function check_seconds(opts, name, level)
  argcheck.seconds_option(opts, name, MAX_SECONDS, level + 1)
end

local function check_count(v, name, max, level)
  local why = count_problem(v, max)
  if why then opterror(name, why, level + 1) end
end

-- Abort a transfer that moves fewer than `bytes` per second for `seconds`: a
-- stalled connection otherwise blocks forever when no timeout is set. 60 s is
-- the read timeout of nginx's proxy_pass, which fronts most Misskey servers:
-- a reply silent that long would have been cut there anyway.
local DEFAULT_LOW_SPEED = { bytes = 1, seconds = 60 }

-- ca_file, insecure and low_speed -> the transport fields they become.
local function check_http_options(opts)
  local out = {}
  local ca_file, insecure, low = opts.ca_file, opts.insecure, opts.low_speed
  if ca_file ~= nil then
    if type(ca_file) ~= "string" or ca_file == "" then opterror("ca_file", "a file path expected", 3) end
    local f, why = io.open(ca_file, "r")
    if not f then opterror("ca_file", "cannot open: " .. tostring(why), 3) end
    f:close()
    out.ca_file = ca_file
  end
  if insecure ~= nil and type(insecure) ~= "boolean" then
    opterror("insecure", "boolean expected, got " .. type(insecure), 3)
  end
  if insecure and ca_file then opterror("insecure", "cannot be combined with ca_file", 3) end
  out.insecure = insecure or nil
  if low == nil then low = DEFAULT_LOW_SPEED end
  if low ~= false then
    if type(low) ~= "table" then opterror("low_speed", "{ bytes = n, seconds = s } or false expected", 3) end
    for k in pairs(low) do
      if k ~= "bytes" and k ~= "seconds" then opterror("low_speed", "unknown field '" .. tostring(k) .. "'", 3) end
    end
    check_count(low.bytes, "low_speed.bytes", MAX_BYTES, 3)
    check_count(low.seconds, "low_speed.seconds", MAX_SECONDS, 3)
    out.low_speed_limit, out.low_speed_time = low.bytes, low.seconds
  end
  return out
end

local function default_user_agent(version, product)
  -- the libcurl the core was built against: asking the loaded one costs ~240 KiB of RSS (core.c)
  return ("lua-misskey/%s %s"):format(version, product or "libcurl/" .. core.curl_built_version())
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
      opterror("account", 'an account name such as "@me@misskey.example" expected', 3)
    end
    local entry, why = require("misskey.credentials").get(opts.account)
    if not entry then opterror("account", why, 3) end
    host, stored = opts.host or entry.host, entry
  elseif opts.token == nil and not (env_host and env_token) then
    -- The store is read only when it can supply something; a broken store
    -- (say, a world-readable file) is an error only when it is needed for the host.
    local entry, why, err = require("misskey.credentials").get()
    if entry then
      stored = entry
      host = host or entry.host
    elseif host == nil and err and err.reason ~= "unknown" then
      opterror("host", "no host given, and " .. why, 3)
    end
  end
  if host == nil then
    opterror("host", "a host is required: pass host = ..., set MISSKEY_HOST, or log in with `misskey login`", 3)
  end
  local base, why = baseurl.parse(host)
  if not base then opterror("host", why .. ": " .. ("%q"):format(tostring(host)), 3) end
  local token, source, from = opts.token, "token", nil
  if token == nil and env_host and env_token and baseurl.parse(env_host) == base then
    token, source = env_token, "MISSKEY_TOKEN"
  end
  if token == nil and stored and baseurl.parse(stored.host) == base then
    token, source, from = stored.token, "the stored account " .. stored.key, stored
  end
  if token == false then token = nil end
  if token ~= nil and type(token) ~= "string" then
    opterror("token", "string expected, got " .. type(token), 3)
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
    opterror("allow_plaintext_token", "boolean expected, got " .. type(allow), 3)
  end
  if allow or not token or (stored and stored.allow_plaintext_token == true) then return allow or false end
  local why = baseurl.cleartext(base, env.get)
  if why then
    opterror("host", ("%s: %s, so the token (from %s) would travel unencrypted, readable and usable by anyone "
      .. "on the way; use https, or pass allow_plaintext_token = true to send it anyway"):format(base, why, source), 3)
  end
  return false
end

--- options.fields(opts, version) -> the fields of a new client (Client.new
-- gives them its metatable): the base URL, the token and where it came from,
-- the transport, the HTTP options and the rate-limit policy.
---@param opts misskey.ClientOptions misskey.new's options (a table: Client.new checked that)
---@param version string the library's version, for the default User-Agent
---@return table
function options.fields(opts, version)
  argcheck.known_options(opts, OPTIONS, 2)
  local base, token, source, stored = resolve_credentials(opts)
  local allow_plaintext = check_cleartext(opts, base, token, source, stored)
  local auth = opts.auth or "body"
  if auth ~= "body" and auth ~= "header" then opterror("auth", 'expected "body" or "header"', 2) end
  check_seconds(opts, "timeout", 2)
  check_seconds(opts, "connect_timeout", 2)
  if opts.max_size ~= nil then check_count(opts.max_size, "max_size", MAX_BYTES, 2) end
  local http_options = check_http_options(opts)
  if opts.validate ~= nil and type(opts.validate) ~= "boolean" then
    opterror("validate", "boolean expected, got " .. type(opts.validate), 2)
  end
  local bad, why = ratelimit.problem(opts)
  if bad then opterror(bad, why, 2) end
  if opts.user_agent ~= nil and type(opts.user_agent) ~= "string" then
    opterror("user_agent", "string expected", 2)
  end
  -- It is sent as a header: a line break would add headers of the caller's making.
  if opts.user_agent and opts.user_agent:find(form.UNSAFE) then
    opterror("user_agent", "must not contain CR, LF or NUL", 2)
  end
  if opts.on_event ~= nil and type(opts.on_event) ~= "function" then
    opterror("on_event", "function expected, got " .. type(opts.on_event), 2)
  end
  if opts.null ~= nil and opts.null ~= "nil" and opts.null ~= "sentinel" then
    opterror("null", 'expected "nil" or "sentinel", got ' .. tostring(opts.null), 2)
  end
  local transport = opts.transport
  if transport ~= nil and (type(transport) ~= "table" or type(transport.request) ~= "function") then
    opterror("transport", "a table with a request function expected", 2)
  end
  if transport == nil and loop.runtime then
    -- The host runtime's own (inside nginx: cosockets); it refuses the options it cannot honour.
    transport = require(loop.runtime.transport).new(opts)
  elseif transport == nil then
    transport = require("misskey.transport.curl").new(opts.engine)
  elseif opts.engine ~= nil then
    opterror("engine", "cannot be combined with transport", 2)
  end
  local cap = opts.max_connections
  if cap ~= nil then
    check_count(cap, "max_connections", 65536, 2)
    if not transport.engine then opterror("max_connections", "needs the libcurl transport", 2) end
    -- A cap of the engine: it applies to every client sharing that engine.
    transport.engine:limit(cap)
  end
  return {
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
    _user_agent = opts.user_agent or default_user_agent(version, transport.product),
    _transport = transport,
    _policy = ratelimit.policy(opts), -- 429s, retries, pacing: misskey.ratelimit's, per client
    _validate = opts.validate or false,
    _catalogue = nil, -- the bundled catalogue (misskey.endpoints) until client:schema()
    _on_event = opts.on_event or false, -- false, not nil: observed() then finds it in the client, not via __index
    _null_nil = opts.null == "nil", -- replies' null object members left out (see json.decode)
  }
end

--- Options of one call: client:request(endpoint, params, opts), client.api.x.y(params, opts).
---@class misskey.CallOptions
---@field timeout? number seconds for this call
---@field validate? boolean check the parameters against the catalogue before sending
---@field null? "nil"|"sentinel" JSON null members of the reply: left out, or misskey.null
---@field ratelimit? "wait"|"throw"|"pace" what a 429 does
---@field max_wait? number the most seconds this call waits out 429s
---@field retries? integer how many times a read is sent again after a network error, timeout or 5xx
---@field idempotent? boolean true: safe to send again (retries a write); false: never retry

local NO_OPTIONS = setmetatable({}, { __newindex = function() error("call options are read-only", 2) end })

--- options.call(opts) -> the options of one call (client:request's third
-- argument), checked; an empty read-only table for nil. Client:request calls
-- it, so it raises at level 2.
---@param opts misskey.CallOptions|nil
---@return misskey.CallOptions
function options.call(opts)
  if opts == nil then return NO_OPTIONS end
  local argerror = argcheck.argerror
  if type(opts) ~= "table" then argerror(3, "request", "options table expected, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not CALL_OPTIONS[k] then argerror(3, "request", "unknown option '" .. tostring(k) .. "'", 2) end
  end
  local why = opts.timeout ~= nil and argcheck.seconds_problem(opts.timeout, MAX_SECONDS)
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
options.NO_OPTIONS = NO_OPTIONS

return options
