--- misskey.testing.http: fake.transport.request(req), answered as Misskey's
-- ApiServerService and ApiCallService would: route lookup, POST only,
-- Fastify's JSON body parsing, the token (a Bearer header before the body's
-- `i`), rate limits (fake:limit), parameter validation, then the endpoint's
-- handler (misskey.testing.endpoints), its result or error shaped by
-- misskey.testing.replies. Every request is recorded in fake.requests.
local json = require "misskey.json"
local common = require "misskey.testing.common"
local params = require "misskey.testing.params"
local replies = require "misskey.testing.replies"
local Fake = require "misskey.testing.fake"

local is_array = json.is_array
local type, ipairs, tostring, error, pcall = type, ipairs, tostring, error, pcall
local floor = math.floor
local format = string.format
local COMMON_ERRORS = replies.COMMON_ERRORS

local function network_error(msg)
  return nil, msg, { kind = "network" }
end

--- Answers one transport request, as Misskey's ApiServerService and
-- ApiCallService would: fake.transport.request(req) calls this.
---@param req table the transport's request (method, url, headers, body)
---@return table|nil res { status, headers, body }
---@return string|nil message
---@return table|nil err
function Fake:handle(req)
  if type(req) ~= "table" or type(req.url) ~= "string" then
    error("bad argument #1 to 'request' (a request table with a url expected)", 2)
  end
  local base, path = req.url:match("^(https?://[^/?#]+)(.*)$")
  if not base or base:lower() ~= self.base_url then
    return network_error(("fake: no server at %s (this fake is %s)"):format(tostring(base or req.url), self.base_url))
  end
  path = path:gsub("[?#].*$", "")
  local method = (req.method or "POST"):upper()
  local endpoint = path:match("^/api/(.+)$")
  local record = { method = method, path = path, endpoint = endpoint, auth = "none" }
  self.requests[#self.requests + 1] = record
  local res = self:_answer(req, record)
  record.status = res.status
  return res
end

function Fake:_answer(req, record)
  local method, endpoint = record.method, record.endpoint
  if not endpoint then
    if method == "GET" and (record.path == "/nodeinfo/2.1" or record.path == "/nodeinfo/2.0") then
      -- What the fake runs (client:software()): Misskey, the version of `meta`.
      return replies.json(200, { version = record.path:sub(-3), software = { name = "misskey",
        version = self._opts.version or common.VERSION }, protocols = { "activitypub" } })
    end
    return replies.fastify(404, nil, ("Route %s:%s not found"):format(method, record.path))
  end
  local spec = self.endpoints[endpoint]
  local function fail(code, info)
    local def = spec and spec.errors and spec.errors[code] or COMMON_ERRORS[code]
    if not def then
      error(("misskey.testing: endpoint %s returned the unknown error code %s"):format(endpoint, tostring(code)))
    end
    record.error = code
    return replies.api_error(code, def, info)
  end
  if not spec then return fail("UNKNOWN_API_ENDPOINT") end
  if method ~= "POST" then return replies.bare(405) end

  if spec.multipart then
    if type(req.parts) ~= "table" then return replies.bare(400) end
    return self:_answer_multipart(req, record, spec, fail)
  end

  -- Fastify parses the JSON body before Misskey sees it.
  local body = req.body
  if body == nil or body:find("^%s*$") then
    return replies.fastify(400, "FST_ERR_CTP_EMPTY_JSON_BODY",
      "Body cannot be empty when content-type is set to 'application/json'")
  end
  local ps = json.decode(body)
  if ps == nil then
    return replies.fastify(400, "FST_ERR_CTP_INVALID_JSON_BODY",
      "Body is not valid JSON but content-type is set to 'application/json'")
  end

  -- The token: a Bearer header beats the body's `i` (ApiCallService.handleRequest).
  local is_object = type(ps) == "table" and not is_array(ps)
  local token = common.bearer(req.headers)
  if token then
    record.auth = "header"
  elseif is_object and ps.i ~= nil then
    token = ps.i
    record.auth = "body"
  end
  if is_object then
    ps.i = nil
    record.params = common.deep_copy(ps)
  end
  if token ~= nil and type(token) ~= "string" then return replies.bare(400) end
  local user, refused = self:_admit(token, record, spec, fail)
  if refused then return refused end

  if not is_object then
    return fail("INVALID_PARAM", { param = "#/type", reason = "must be object" })
  end
  if spec.params then
    local p, r = params.check(spec.params, ps)
    if p then return fail("INVALID_PARAM", { param = p, reason = r }) end
  end
  if spec.check then
    local p, r = spec.check(ps)
    if p then return fail("INVALID_PARAM", { param = p, reason = r }) end
  end

  local result, code, info = spec.handler(self, ps, { user = user, endpoint = endpoint, request = req })
  if code ~= nil then return fail(code, info) end
  if result == nil then return replies.no_content() end
  return replies.json(200, result)
end

-- Authentication, then the credential rule and the rate limit, in the
-- server's order: the token's user (or nil), or nil and the refusal.
function Fake:_admit(token, record, spec, fail)
  local user
  if token ~= nil then
    user = self._by_token[token]
    if not user then
      record.error = "AUTHENTICATION_FAILED"
      return nil, replies.auth_failed()
    end
    record.user = user.username
  end
  if spec.credential and not user then return nil, fail("CREDENTIAL_REQUIRED") end
  local limited = self:_limited(record.endpoint, fail)
  if limited then return nil, limited end
  return user
end

-- multipart/form-data (drive/files/create): text parts become params (text, as
-- Misskey receives them), the file part becomes ps.file = { filename, size, type, data? }.
function Fake:_answer_multipart(req, record, spec, fail)
  local ps, file, token = {}, nil, nil
  for _, part in ipairs(req.parts) do
    if part.name == "file" and (part.path or part.data) then
      local data, size = part.data, part.data and #part.data
      if part.path then
        local f = io.open(part.path, "rb")
        if not f then return replies.bare(500) end
        size = f:seek("end")
        f:close()
      end
      file = { filename = part.filename, size = size, type = part.type, data = data }
    elseif part.name == "i" then
      token = part.value
    elseif type(part.name) == "string" then
      ps[part.name] = part.value
    end
  end
  local bearer = common.bearer(req.headers)
  if bearer then
    token = bearer
    record.auth = "header"
  elseif token ~= nil then
    record.auth = "body"
  end
  record.params = common.deep_copy(ps)
  local user, refused = self:_admit(token, record, spec, fail)
  if refused then return refused end
  ps.file = file
  if type(req.progress) == "function" and file then pcall(req.progress, file.size, file.size) end
  local result, code, info = spec.handler(self, ps, { user = user, endpoint = record.endpoint, request = req })
  if code ~= nil then return fail(code, info) end
  return replies.json(200, result)
end

--- The next `n` calls of `endpoint` (after authentication, as Misskey's
-- limiter runs) answer 429 RATE_LIMIT_EXCEEDED as Misskey 2026.5.4 does:
-- `Retry-After: s` (whole seconds, default 1) and info { remaining, reset,
-- resetMs, total } on the fake clock. Nothing is done for a refused call.
---@param endpoint string
---@param n integer
---@param seconds integer?
function Fake:limit(endpoint, n, seconds)
  if type(endpoint) ~= "string" then error("bad argument #1 to 'limit' (endpoint name expected)", 2) end
  if type(n) ~= "number" or n < 0 or n % 1 ~= 0 then
    error("bad argument #2 to 'limit' (an integer >= 0 expected)", 2)
  end
  seconds = seconds or 1
  if type(seconds) ~= "number" or seconds < 0 or seconds % 1 ~= 0 then
    error("bad argument #3 to 'limit' (whole seconds >= 0 expected)", 2)
  end
  self._limits[endpoint] = { n = n, seconds = seconds }
end

-- A 429 when fake:limit holds the endpoint, else nil.
function Fake:_limited(endpoint, fail)
  local held = self._limits[endpoint]
  if not held or held.n <= 0 then return nil end
  held.n = held.n - 1
  local reset = self._clock + held.seconds * 1000
  local res = fail("RATE_LIMIT_EXCEEDED", { remaining = 0, reset = floor(reset / 1000), resetMs = reset, total = 1 })
  res.headers["retry-after"] = format("%d", held.seconds)
  return res
end

return Fake
