--- The error object of every operational failure: `nil, message, err`.
-- `err.kind` is one of "network", "timeout", "http", "api", "decode", "invalid",
-- "auth", "pending", "task"; see README "Errors".
local errors = {}

--- The error object of every failure on the wire: calls return `nil, message, err`.
--- Match on `kind`, then on `code` for Misskey's own errors (never on `id`).
--- `tostring(err)` is the message. No field ever holds the token.
---@class misskey.Error
---@field kind "api"|"http"|"decode"|"network"|"timeout"|"invalid"|"auth"|"pending"|"task" what failed
---@field message string one line, the same as the second return value
---@field endpoint? string the endpoint or path of the call (every error of a call has it)
---@field status? integer api, http, decode, auth: the HTTP status of the reply
---@field code? string api: Misskey's error code, e.g. "RATE_LIMIT_EXCEEDED" (match on this)
---@field id? string api: Misskey's error id (differs per endpoint: do not match on it)
---@field info? table api: Misskey's `info` (for INVALID_PARAM: `param`, `reason`)
---@field api? table api: Misskey's whole error object (`code`, `message`, `id`, `kind`, `info`)
---@field permission? string api (PERMISSION_DENIED): the permission the endpoint needs, from the catalogue
---@field retry_after? number api, http: seconds to wait before sending again (429, 503)
---@field body? string http, decode, auth: a short excerpt of the reply's body
---@field curl_code? integer network, timeout, http too_large: libcurl's error code (60: untrusted certificate, 28: timeout)
---@field reason? string http: "too_large" (reply over max_size); invalid: what is wrong with a file ("format", "io", ...)
---@field param? string invalid: the parameter that failed validation, as a path ("poll.choices[2]"; "file" for upload)
---@field path? string invalid: the file concerned (upload, credential store, positions, types.write)
---@field suggestions? string[] the nearest names to an unknown one: invalid (validation), api and http (a 404 of an endpoint the catalogue does not know), invalid (a stream's unknown channel)
---@field channel? string timeout, invalid: the streaming channel concerned (unconfirmed connect, unknown name, dropped events)
---@field channel_id? string timeout: the id of that channel's connection
---@field close_code? integer network: the WebSocket close code
---@field closed? boolean network: the WebSocket was closed
---@field outbox? integer network: messages waiting for the socket when a stream refused another
---@field timeout? boolean timeout: set by waits that gave up (websocket receive, bot:wait_for)
---@field session? string pending: the auth session still waiting for approval
---@field traceback? string task: the traceback of the task's error
---@field cancelled? boolean task: the task was cancelled (a stop, not a failure)
---@field error? any task: the value the task raised; auth: the OAuth server's `error` code
local Error = { __name = "misskey.Error" }
Error.__index = Error
Error.__tostring = function(err) return err.message end

errors.Error = Error

--- Is `v` an error object made here?
---@param v any
---@return boolean
function errors.is(v)
  return getmetatable(v) == Error
end

--- Replaces every occurrence of `secret` in `s` with `***` (plain match, no patterns).
---@param s any a string (anything else comes back as it is)
---@param secret string|nil
---@return any
function errors.redact(s, secret)
  if type(s) ~= "string" or type(secret) ~= "string" or secret == "" then return s end
  local out, from = {}, 1
  while true do
    local i, j = s:find(secret, from, true)
    if not i then break end
    out[#out + 1] = s:sub(from, i - 1)
    out[#out + 1] = "***"
    from = j + 1
  end
  if from == 1 then return s end
  out[#out + 1] = s:sub(from)
  return table.concat(out)
end

-- `secrets` (a string or a list of them) as a list of non-empty strings, or nil.
local function secret_list(secrets)
  if type(secrets) == "string" then return secrets ~= "" and { secrets } or nil end
  if type(secrets) ~= "table" then return nil end
  local list = {}
  for i = 1, #secrets do
    local s = secrets[i]
    if type(s) == "string" and s ~= "" then list[#list + 1] = s end
  end
  return list[1] and list or nil
end

local function redact_each(s, list)
  for i = 1, #list do s = errors.redact(s, list[i]) end
  return s
end

--- errors.scrub(value, secrets) -> value: every occurrence of a secret becomes `***`.
-- A string comes back redacted. A table (an error) is redacted in place: every
-- string value in it and in every table it holds, however deep (a walk with its
-- own stack, not recursion; each table once, so cycles are safe). Keys are names,
-- not data, and stay: `err.code` must still be found.
-- `secrets` is a string or a list of strings; nil and "" are skipped.
---@param value any
---@param secrets string|string[]|nil
---@return any
function errors.scrub(value, secrets)
  local list = secret_list(secrets)
  if not list then return value end
  if type(value) == "string" then return redact_each(value, list) end
  if type(value) ~= "table" then return value end
  local seen, stack, n = { [value] = true }, { value }, 1
  while n > 0 do
    local t = stack[n]
    stack[n], n = nil, n - 1
    for k, v in next, t do
      if type(v) == "string" then
        local r = redact_each(v, list)
        if r ~= v then rawset(t, k, r) end -- an existing key: allowed while `next` walks
      elseif type(v) == "table" and not seen[v] then
        seen[v] = true
        n = n + 1
        stack[n] = v
      end
    end
  end
  return value
end

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

--- errors.scrubbed(secrets, ...) -> ...: a call's results, passed through. When
-- they are a failure (`nil, message, err`), the message and every field of err
-- come out with the secrets redacted (errors.scrub). Successful results are
-- never altered: an endpoint may legitimately return a token.
---@param secrets string|string[]|nil
---@return any ...
function errors.scrubbed(secrets, ...)
  if (...) ~= nil or secrets == nil then return ... end
  local n = select("#", ...)
  local out = { ... }
  for i = 2, n do out[i] = errors.scrub(out[i], secrets) end
  return unpack(out, 1, n)
end

--- A reply body as an error shows it: white space folded, at most 200
-- bytes and an ellipsis. Redact before cutting, so no half token is left.
---@param body string
---@return string
function errors.excerpt(body)
  body = body:gsub("%s+", " ")
  if #body > 200 then body = body:sub(1, 200) .. "…" end
  return body
end

--- Makes `message, err` for a failure of `kind`; `fields` become fields of err.
-- The message is one line, so `assert(client:request(...))` prints it whole.
---@param kind string
---@param message string
---@param fields? table
---@return string message
---@return misskey.Error err
function errors.new(kind, message, fields)
  local err = setmetatable({}, Error)
  if fields then
    for k, v in pairs(fields) do err[k] = v end
  end
  err.kind = kind
  err.message = (message:gsub("[\r\n]+", " "))
  return err.message, err
end

--- Returns `nil, message, err`: the shape every failing call returns.
---@param kind string
---@param message string
---@param fields? table
---@return nil
---@return string message
---@return misskey.Error err
function errors.fail(kind, message, fields)
  local msg, err = errors.new(kind, message, fields)
  return nil, msg, err
end

return errors
