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
