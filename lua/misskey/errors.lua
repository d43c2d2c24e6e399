--- The error object of every operational failure: `nil, message, err`.
-- `err.kind` is one of "network", "timeout", "http", "api", "decode", "invalid",
-- "auth", "pending", "task"; see README "Errors".
local errors = {}

local Error = { __name = "misskey.Error" }
Error.__index = Error
Error.__tostring = function(err) return err.message end

errors.Error = Error

--- Is `v` an error object made here?
function errors.is(v)
  return getmetatable(v) == Error
end

--- Replaces every occurrence of `secret` in `s` with `***` (plain match, no patterns).
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
function errors.fail(kind, message, fields)
  local msg, err = errors.new(kind, message, fields)
  return nil, msg, err
end

return errors
