--- webhook.handler: one delivery in, one answer out, for any Lua HTTP host.
--
-- The order is fixed: method, secret (401), size (413), content type (415),
-- parse (400), dedupe (a replay: 204, no handler), then the answer 204 goes
-- back and the handlers run after it, each in a task of its own.
--
-- Why answer first: Misskey gives a delivery 5 seconds (HttpRequestService's
-- default timeout), then counts it failed and retries it after 1, 3 and 7
-- minutes. A handler that replies to a mention makes API calls, which can take
-- longer (rate limits, a slow server): run before the answer, it would turn a
-- delivery that arrived into a failure and a retry. And a handler that raises
-- must not become a 5xx, which Misskey retries, running the handler again. The
-- event is remembered before the answer, so a retry that crosses the answer is
-- a replay too. The price: an event whose handler dies with the process is not
-- delivered again (at most once, as the stream gives events).
local argcheck = require "misskey.argcheck"
local event = require "misskey.webhook.event"
local loop = require "misskey.loop"
local seen = require "misskey.webhook.seen"
local verify = require "misskey.webhook.verify"

local handler = {}

---@class misskey.webhook.HandlerOptions
---@field secret string the webhook's secret (X-Misskey-Hook-Secret)
---@field on? table<string, function> handlers by event type, and "*" for every event
---@field store? table remembers handled event ids: add(id) -> true (new) | false (known)
---@field remember? integer the default store's size (10000)
---@field max_size? integer the cap on a body, in bytes (1 MiB)
---@field null? "nil"|"null" "nil": null members are left out of events
---@field spawn? fun(fn: function, ...) starts a handler (default misskey.spawn)

local TEXT = { ["Content-Type"] = "text/plain; charset=utf-8" }
local NONE = {}

local Receiver = { __name = "misskey.webhook.Receiver" }
Receiver.__index = Receiver

-- misskey.argcheck's wording; `level` counts from this wrapper's caller as there.
local function opterror(fname, name, what, level)
  argcheck.opterror(name, what, level, fname)
end

-- The value of header `name` (lower case) in a table whose names may be in any case.
local function header(headers, name)
  local v = headers[name]
  if v ~= nil then return v end
  for k, value in pairs(headers) do
    if type(k) == "string" and #k == #name and k:lower() == name then return value end
  end
end

local function is_json_type(v)
  if type(v) ~= "string" then return false end
  v = v:lower()
  return v:find("^%s*application/json%s*$") ~= nil or v:find("^%s*application/json%s*;") ~= nil
end

local function check_on(on, fname, level)
  if type(on) ~= "table" then opterror(fname, "on", "a table of handlers expected, got " .. type(on), level + 1) end
  for name, fn in pairs(on) do
    if type(name) ~= "string" or not (name == "*" or name:find("^%a[%w_%-%.:]*$")) then
      opterror(fname, "on", "handler names are event types or \"*\", got " .. tostring(name), level + 1)
    end
    if type(fn) ~= "function" then
      opterror(fname, "on", ("on.%s must be a function, got %s"):format(name, type(fn)), level + 1)
    end
  end
end

--- Checks the options shared by webhook.handler and webhook.listen (raising,
-- naming the option) and makes the receiver both use.
---@param opts table
---@param fname string
---@param level integer
---@return table
function handler.receiver(opts, fname, level)
  level = level + 1
  if type(opts) ~= "table" then error(("bad argument #1 to '%s' (table of options expected)"):format(fname), level) end
  if type(opts.secret) ~= "string" or opts.secret == "" then
    opterror(fname, "secret", "the webhook's secret, a non-empty string, expected", level)
  end
  check_on(opts.on or {}, fname, level)
  local max = opts.max_size
  if max == nil then max = event.MAX_SIZE end
  if type(max) ~= "number" or max ~= max or max < 1 or max % 1 ~= 0 then
    opterror(fname, "max_size", "an integer number of bytes >= 1 expected, got " .. tostring(max), level)
  end
  local store = opts.store
  if store == nil then
    local ok, s = pcall(seen.new, opts.remember)
    if not ok then opterror(fname, "remember", "an integer >= 1 expected, got " .. tostring(opts.remember), level) end
    store = s
  elseif type(store) ~= "table" or type(store.add) ~= "function" then
    opterror(fname, "store", "an object with add(id) expected (see misskey.webhook.seen)", level)
  end
  local spawn = opts.spawn or loop.spawn
  if type(spawn) ~= "function" then opterror(fname, "spawn", "a function expected, got " .. type(spawn), level) end
  if opts.null ~= nil and opts.null ~= "nil" and opts.null ~= "null" then
    opterror(fname, "null", "\"nil\" or \"null\" expected", level)
  end
  return setmetatable({
    secret = opts.secret, on = opts.on or {}, store = store, spawn = spawn,
    parse_opts = { max_size = max, null = opts.null },
    max_size = max,
    stats = { handled = 0, replayed = 0, refused = 0 },
  }, Receiver)
end

local function refuse(self, status, message, extra)
  self.stats.refused = self.stats.refused + 1
  local headers = TEXT
  if extra then
    headers = { ["Content-Type"] = TEXT["Content-Type"] }
    for k, v in pairs(extra) do headers[k] = v end
  end
  return status, headers, message .. "\n"
end

--- What can be decided from the head alone (method and secret): status,
-- headers, body of a refusal, or nil to go on. The listener calls it before it
-- reads a body, so a peer without the secret never makes it read one.
---@param method string
---@param headers table
---@return integer|nil status
---@return table|nil headers
---@return string|nil body
function Receiver:head(method, headers)
  if method ~= "POST" then return refuse(self, 405, "webhook deliveries are POSTs", { Allow = "POST" }) end
  local ok, msg = verify(headers, self.secret)
  if not ok then return refuse(self, 401, msg) end
  local ctype = header(headers, "content-type")
  if ctype ~= nil and not is_json_type(ctype) then
    return refuse(self, 415, "webhook: a content-type of application/json expected")
  end
  return nil
end

-- Starts the handlers of an event: on[type](payload, event), then
-- on["*"](type, payload, event).
function Receiver:dispatch(e)
  local payload = event.payload(e)
  local fn = self.on[e.type]
  if fn then self.spawn(fn, payload, e) end
  local any = self.on["*"]
  if any then self.spawn(any, e.type, payload, e) end
end

--- One delivery: status, headers, body of the answer. Handlers are started
-- (spawned) before this returns, and run once the caller gives way: after the
-- answer, in a host that sends it before its next scheduler round.
---@param method string
---@param headers table
---@param body string|nil|fun(max_size: integer): string|nil, integer|nil, string|nil
---@return integer status
---@return table headers
---@return string body
function Receiver:handle(method, headers, body)
  local status, h, b = self:head(method, headers)
  if status then return status, h, b end
  if type(body) == "function" then
    -- A host that reads the body on demand (misskey.ngx.webhook): only now that
    -- the method and the secret passed, and with the cap, so it can refuse early.
    local got, why, msg = body(self.max_size)
    if type(got) ~= "string" then
      return refuse(self, why == 413 and 413 or 400, msg or "webhook: the body could not be read")
    end
    body = got
  end
  body = body or ""
  if type(body) ~= "string" then error("bad argument #3 to webhook handler (string body expected)", 3) end
  local e, msg, err = event.parse(body, self.parse_opts)
  if not e then return refuse(self, err.status, msg) end
  local new = self.store:add(e.eventId)
  if new == false then
    self.stats.replayed = self.stats.replayed + 1
    return 204, NONE, ""
  end
  self.stats.handled = self.stats.handled + 1
  self:dispatch(e)
  return 204, NONE, ""
end

--- webhook.handler{ secret = …, on = { mention = fn, ["*"] = fn, … } }
-- -> function(method, headers, body) -> status, headers, body.
-- For any Lua HTTP host that gives a request's method, headers (names in any
-- case) and body (or a function(max_size) -> body | nil, 413 or 400, message,
-- called only once the method and the secret passed): it answers 204 (handled, or a replay), 400 (malformed), 401
-- (secret), 405 (not a POST), 413 (over max_size) or 415 (not JSON), and never
-- a 5xx. A handler `on[type]` is called as fn(payload, event), payload being
-- event.note, event.user or event.body; `on["*"]` as fn(type, payload, event)
-- for every event. Each runs as a task (misskey.spawn, or `spawn`), after the
-- answer once the host gives way; one that raises is reported to
-- misskey.on_error. Options: `store` (see misskey.webhook.seen), `remember`
-- (the default store's size), `max_size` (1 MiB), `null = "nil"`, `spawn`.
---@param opts misskey.webhook.HandlerOptions
---@return fun(method: string, headers: table, body: string|function|nil): integer, table, string
function handler.new(opts)
  local r = handler.receiver(opts, "handler", 2)
  return function(method, headers, body)
    if type(method) ~= "string" then error("bad argument #1 to webhook handler (method string expected)", 2) end
    if type(headers) ~= "table" then error("bad argument #2 to webhook handler (table of headers expected)", 2) end
    return r:handle(method, headers, body)
  end
end

return handler
