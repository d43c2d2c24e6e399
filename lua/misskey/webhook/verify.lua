--- webhook.verify: is a delivery's `X-Misskey-Hook-Secret` the webhook's secret?
-- Misskey sends the secret itself in that header (no signature), so the check is
-- a comparison, made in constant time (core.equal_ct) so that timing tells a
-- guesser nothing about how much of a guess was right.
local core = require "misskey.core"
local errors = require "misskey.errors"

local HEADER = "x-misskey-hook-secret"

-- The header's value from a table whose names may be in any case. A header
-- given twice (two spellings of the name, or a list of values, as some hosts
-- give repeated headers) is ambiguous: refused like a wrong one.
local function find(headers)
  local found, count = nil, 0
  for name, value in pairs(headers) do
    if type(name) == "string" and #name == #HEADER and name:lower() == HEADER then
      found, count = value, count + 1
    end
  end
  if count > 1 or (found ~= nil and type(found) ~= "string") then return nil, "repeated" end
  if found == nil then return nil, "missing" end
  return found
end

--- webhook.verify(headers, secret) -> true | nil, message, err: the delivery
-- carries the webhook's secret (header names in any case). A missing, repeated or
-- wrong secret is `err.kind = "auth"` with `err.status = 401` and `err.reason`
-- "missing", "repeated" or "wrong". Neither the secret nor what was sent
-- appears in the error.
---@param headers table<string, string|string[]>
---@param secret string
---@return boolean|nil ok
---@return string|nil message
---@return table|nil err
local function verify(headers, secret)
  if type(headers) ~= "table" then
    error("bad argument #1 to 'verify' (table of headers expected, got " .. type(headers) .. ")", 2)
  end
  if type(secret) ~= "string" or secret == "" then
    error("bad argument #2 to 'verify' (the webhook's secret, a non-empty string, expected)", 2)
  end
  local given, why = find(headers)
  if not given then
    return errors.fail("auth", why == "missing" and "webhook: no X-Misskey-Hook-Secret header"
      or "webhook: X-Misskey-Hook-Secret given more than once", { status = 401, reason = why })
  end
  if not core.equal_ct(given, secret) then
    return errors.fail("auth", "webhook: wrong X-Misskey-Hook-Secret", { status = 401, reason = "wrong" })
  end
  return true
end

return verify
