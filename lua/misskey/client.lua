--- The Client: one Misskey server, one token, and the calls to its API.
-- Misuse raises naming the argument; every failure on the wire returns
-- `nil, message, err` (see misskey.errors).
--
-- This file holds the class, its interface and the request path
-- (client:request). Its other parts: misskey.client.options (misskey.new's
-- options and credentials), misskey.client.upload, misskey.client.http, and
-- misskey.client.form (text for form fields, queries and headers).
--
-- The fields starting with `_` are the client's own. Other modules of the
-- library use only its declared interface: the public methods and fields
-- (README), and these, which are for the library itself:
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
local hints = require "misskey.client.hints"
local options = require "misskey.client.options"
local ratelimit = require "misskey.ratelimit"

--- One Misskey server, one token, and the calls to its API (misskey.new). The
--- generated types/misskey-api.lua adds `api` and one `request` overload per endpoint.
---@class misskey.Client
---@field host string the server, normalised ("https://misskey.example")
---@field base_url string the base URL every request starts with
---@field allow_plaintext_token boolean whether the token may cross a network over plain http
---@field request fun(self: misskey.Client, endpoint: string, params?: table, opts?: misskey.CallOptions): any, string?, misskey.Error? # the decoded reply (true for 204), or nil, message, err
local Client = { __name = "misskey.Client" }
Client.__index = Client

local VERSION = "0.1.0"
Client._VERSION = VERSION

local argerror = argcheck.argerror
local call_options, NO_OPTIONS = options.call, options.NO_OPTIONS

--- misskey.new(opts) -> client. See README "Client options".
---@param opts? misskey.ClientOptions
---@return misskey.Client
function Client.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then argcheck.argerror(1, "new", "options table expected, got " .. type(opts)) end
  local client = setmetatable(options.fields(opts, VERSION), Client)
  -- client.api.notes.create{...}: names through the client's catalogue (misskey.api).
  client.api = require("misskey.api").new(client, nil)
  client._urls, client._nurls = {}, 0 -- endpoint -> its URL (see api_url)
  local transport = client._transport
  if type(transport.prepare) == "function" and type(transport.post) == "function" then
    -- What every API call sends but its URL, body and timeout, checked and built once
    -- for the transport's cheaper path (transport.post: the curl transport's).
    local http = client._http_options
    client._prepared = transport.prepare{
      headers = client:_json_headers(), user_agent = client._user_agent, connect_timeout = client._connect_timeout,
      max_size = client._max_size, low_speed_limit = http.low_speed_limit, low_speed_time = http.low_speed_time,
      ca_file = http.ca_file, insecure = http.insecure,
    }
  end
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
---@return misskey.Error|nil err
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
---@return boolean
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

-- Seconds to wait before retrying, from the reply (see misskey.ratelimit.hint).
local function retry_after(headers, info)
  return (ratelimit.hint(headers, info))
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
        { status = status, endpoint = endpoint, body = errors.excerpt(body) })
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
    -- hints: suggestions for an unknown endpoint, the permission a PERMISSION_DENIED lacks.
    return hints.failure(self._catalogue, errors.fail("api", msg, {
      status = status, endpoint = endpoint, code = apierr.code, id = apierr.id, info = info,
      api = apierr, retry_after = wait,
    }))
  end
  local ctype = headers["content-type"] or "no content type"
  return hints.failure(self._catalogue, errors.fail("http", ("%s: HTTP %d (%s): %s"):format(endpoint, status, ctype,
    errors.excerpt(body)), { status = status, endpoint = endpoint, body = errors.excerpt(body),
    retry_after = retry_after(headers) }))
end

-- Sends one request through the transport; redacts the token from failures.
function Client:_send(endpoint, req, label)
  req.user_agent = self._user_agent
  req.connect_timeout = self._connect_timeout
  req.max_size = req.max_size or self._max_size
  for k, v in pairs(self._http_options) do req[k] = v end
  local res, msg, err = self._transport.request(req)
  return self:_sent(endpoint, res, msg, err, label)
end

-- A transport's answer: res, or `nil, message, err` with the endpoint (or `label`) and the
-- token redacted from every failure.
function Client:_sent(endpoint, res, msg, err, label)
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

-- The headers of a JSON API call (with the token when `auth = "header"`): a new table
-- each time, for a transport that may keep or change what it is given.
function Client:_json_headers()
  local headers = { ["Content-Type"] = "application/json", Accept = "application/json" }
  if self._token and self._auth == "header" then headers.Authorization = "Bearer " .. self._token end
  return headers
end

-- One POST of an API call: the transport's response, or `nil, message, err`. Through the
-- transport's prepared path when it has one (no request table, no headers table per call).
local function post(self, endpoint, url, encoded, timeout)
  local prepared = self._prepared
  if prepared then
    local res, msg, err = self._transport.post(prepared, url, encoded, timeout)
    if res then return res end
    return self:_sent(endpoint, nil, msg, err)
  end
  return self:_send(endpoint, {
    method = "POST", url = url, headers = self:_json_headers(), body = encoded, timeout = timeout,
  })
end

-- One API call on the wire: reply, value | reply, nil, message, err (for misskey.ratelimit).
-- A function of the module, not a closure per call: a batch keeps its results, and every
-- byte of garbage a call leaves makes the collector mark them again sooner.
local function post_attempt(self, endpoint, url, encoded, timeout)
  local res, msg, err = post(self, endpoint, url, encoded, timeout)
  if not res then return nil, nil, msg, err end
  return res, self:_interpret(endpoint, res)
end

-- The same, leaving a reply's null object members out (the `null = "nil"` option): a
-- function of its own, so the default path carries no extra argument.
local function post_attempt_nil_nulls(self, endpoint, url, encoded, timeout)
  local res, msg, err = post(self, endpoint, url, encoded, timeout)
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

-- The JSON body of a call: a copy of params with `i` = the token (unless the token goes in
-- a header). The body of a call without params is the same every time: made once.
local function encode_params(self, params)
  if params == nil then
    local bare = self._bare_body
    if bare then return bare end
  end
  local body = {}
  if params then
    for k, v in pairs(params) do body[k] = v end
  end
  if self._token and self._auth ~= "header" then body.i = self._token end
  local ok, encoded = pcall(json.encode, body, "params")
  if not ok then error(errors.redact(encoded, self._token), 3) end
  if params == nil then self._bare_body = encoded end
  return encoded
end

-- The catalogue entry of an endpoint (its rate limit, whether it writes), for
-- misskey.ratelimit, which asks only when a call fails or paces: a script whose calls
-- succeed never loads the bundled catalogue (~640 KB of Lua heap, which every cycle of
-- the collector would mark again).
local function endpoint_entry(self, endpoint)
  return catalogue.lookup(endpoint, self._catalogue)
end

-- The URL of an endpoint, kept per client (at most 4096 of them, for programs that make up names).
local function api_url(self, endpoint)
  local url = self.base_url .. "/api/" .. endpoint
  if self._nurls < 4096 then
    self._urls[endpoint], self._nurls = url, self._nurls + 1
  end
  return url
end

--- client:request(endpoint, params, opts) -> value | true (204) | nil, message, err
-- `params` is a table of the endpoint's parameters; `opts.timeout` (seconds) bounds this call.
---@param endpoint string
---@param params? table
---@param opts? misskey.CallOptions
---@return any value the decoded reply (true for 204), or nil
---@return string|nil message
---@return misskey.Error|nil err
function Client:request(endpoint, params, opts)
  if getmetatable(self) ~= Client then check_client(self, "request") end
  if not known_endpoints[endpoint] then check_endpoint(endpoint) end
  if params ~= nil and type(params) ~= "table" then
    argerror(2, "request", "params must be a table, got " .. type(params))
  end
  if opts == nil then opts = NO_OPTIONS else opts = call_options(opts) end
  local validate = opts.validate
  if validate == nil then validate = self._validate end
  if validate then
    local msg, err = self:_check(endpoint, params)
    if msg then return nil, msg, err end
  end
  local encoded = params == nil and self._bare_body or encode_params(self, params)
  local url = self._urls[endpoint] or api_url(self, endpoint)
  -- misskey.ratelimit repeats the attempt for 429s and retries. Its own fields, not
  -- self:observed(): a method call is a measurable part of a call nobody observes.
  -- A failure leaves with the token redacted from every field, wherever a server echoed it.
  local attempt = self._attempt
  if not attempt or opts ~= NO_OPTIONS and opts.null ~= nil then attempt = choose_attempt(self, opts) end
  local value, msg, err = ratelimit.run(self._policy, self, endpoint, opts, endpoint_entry, attempt, url, encoded,
    opts.timeout or self._timeout)
  if value ~= nil then return value end
  return errors.scrubbed(self._token, value, msg, err)
end

-- client:upload, client:http and client:software, each in a file of its own.
require("misskey.client.upload")(Client)
require("misskey.client.http")(Client)
require("misskey.client.software")(Client)

--- client:paginate(endpoint, params, opts) -> iterator (see misskey.paginate).
---@param endpoint string
---@param params? table
---@param opts? misskey.PaginateOptions
---@return misskey.Paginator
function Client:paginate(endpoint, params, opts)
  check_client(self, "paginate")
  local it = require("misskey.paginate").new(self, endpoint, params, opts) -- not a tail call: see misskey.argcheck
  return it
end

--- client:schema() -> { software, version, endpoints = n, source = "server"|"cache" } | nil, message, err
-- Loads the server's own catalogue (GET /api.json, cached on disk per host and
-- version); from then on this client's validation and client.api follow it.
---@return { software: string, version: string, endpoints: integer, source: "server"|"cache", path?: string }|nil info
---@return string|nil message
---@return misskey.Error|nil err
function Client:schema()
  check_client(self, "schema")
  local summary, msg, err = require("misskey.catalogue.server").fetch(self) -- no tail call: see misskey.argcheck
  return summary, msg, err
end

--- client:batch(calls, { concurrency = 8, timeout = s }) -> results, errs (see misskey.batch).
---@param calls table[] calls[k] = { endpoint, params }
---@param opts? { concurrency?: integer, timeout?: number }
---@return table results results[k] for calls[k]; results.n = #calls
---@return table errs errs[k] = err for the calls that failed
function Client:batch(calls, opts)
  check_client(self, "batch")
  local results, errs = require("misskey.batch")(self, calls, opts) -- not a tail call: see misskey.argcheck
  return results, errs
end

--- client:stream(opts) -> Stream: the Streaming API over one WebSocket (see misskey.stream).
-- opts: reconnect (true), backoff ({ min = 1, max = 60 } s), watchdog (120 s),
-- confirm_timeout (10 s), backfill (true); an unknown option raises.
---@param opts? misskey.StreamOptions
---@return misskey.Stream
function Client:stream(opts)
  check_client(self, "stream")
  local stream = require("misskey.stream").new(self, opts) -- not a tail call: see misskey.argcheck
  return stream
end

return Client
