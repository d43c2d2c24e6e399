-- Token-leak checks for specs: where a secret hides in anything a failure hands
-- out (every string value in it, nested tables included, and its tostring; keys
-- are names, as misskey.errors.scrub treats them).
--   local leak = require "support.leak"
--   leak.assert_none(TOKEN, client:request("x"))   -- all results: nil, message, err
local M = {}

-- The path of the first string in `value` that holds `secret`, or nil.
function M.find(value, secret, path, seen)
  path = path or "value"
  if type(value) == "string" then
    return value:find(secret, 1, true) and path or nil
  end
  if type(value) ~= "table" then return nil end
  seen = seen or {}
  if seen[value] then return nil end
  seen[value] = true
  if getmetatable(value) and getmetatable(value).__tostring then
    local text = tostring(value)
    if text:find(secret, 1, true) then return "tostring(" .. path .. ")" end
  end
  for k, v in next, value do
    local where = M.find(v, secret, path .. "." .. tostring(k), seen)
    if where then return where end
  end
  return nil
end

-- Fails naming the field when any argument holds `secret` anywhere.
function M.assert_none(secret, ...)
  for i = 1, select("#", ...) do
    local where = M.find((select(i, ...)), secret, "#" .. i)
    if where then error(("the secret leaks in %s"):format(where), 2) end
  end
end

return M
