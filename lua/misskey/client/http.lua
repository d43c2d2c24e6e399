--- misskey.client.http: client:http, raw HTTP to the client's own host
-- (non-API paths: nodeinfo, OAuth, downloads). Part of the client: it adds the
-- method to the Client class (misskey.client calls it with the class).
local argcheck = require "misskey.argcheck"
local core = require "misskey.core"
local errors = require "misskey.errors"
local form = require "misskey.client.form"
local json = require "misskey.json"
local ratelimit = require "misskey.ratelimit"

local argerror = argcheck.argerror
local seconds_problem, count_problem = argcheck.seconds_problem, argcheck.count_problem
local MAX_SECONDS, MAX_BYTES = argcheck.MAX_SECONDS, argcheck.MAX_BYTES

--- client:http's request.
---@class misskey.HttpRequest
---@field method? string "GET" (default), "POST", ...
---@field path string starts with "/": always the client's own host
---@field query? table<string, string|number|boolean|(string|number|boolean)[]>
---@field headers? table<string, string>
---@field body? string
---@field timeout? number
---@field max_size? integer
---@field auth? boolean true sends the token as Authorization: Bearer (never sent otherwise)
---@field json? boolean ask for JSON and return the decoded body as a second value

local HTTP_KEYS = {
  method = true, path = true, query = true, headers = true, body = true, timeout = true, auth = true,
  json = true, max_size = true,
}

-- RFC 3986 unreserved characters stay; everything else is %XX.
local pct = core.urlencode

--- client:http's reply: every status is a reply.
---@class misskey.HttpResponse
---@field status integer
---@field headers table<string, string> names in lower case
---@field body string

local NIL_NULLS = { null = "nil" } -- json.decode's option for the client's null = "nil"

local function query_value(key, v)
  local text = form.text(v)
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

---@param Client misskey.Client the client class
return function(Client)
  --- client:http{ method = "GET", path = "/x", query = {}, headers = {}, body = "", timeout = s,
  --               auth = false, json = false, max_size = n } -> res[, value] | nil, message, err
  -- Raw HTTP to the client's own host. `res = { status, headers, body }` for every
  -- status (the caller interprets it); `nil, message, err` only when no reply
  -- came (network, timeout, a body over max_size). The token is sent only with
  -- `auth = true` (as `Authorization: Bearer`). With `json = true` a JSON reply is
  -- decoded into the second result.
  ---@param req misskey.HttpRequest
  ---@return misskey.HttpResponse|nil res every status is a reply
  ---@return any value_or_message the decoded body with json = true; the message on failure
  ---@return misskey.Error|nil err
  function Client:http(req)
    argcheck.self(self, Client, "client", "http")
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
      if type(v) ~= "string" or v:find(form.UNSAFE) then
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
        local body_ = errors.excerpt(errors.redact(res.body, self._token)) -- before the cut: no half token left
        return errors.scrubbed(self._token, errors.fail("decode", ("%s: invalid JSON in HTTP %d reply (%s)")
          :format(label, res.status, derr), { status = res.status, endpoint = path, body = body_ }))
      end
      return res, value
    end
    return res
  end
end
