--- misskey.client.form: what goes into multipart fields, query strings and
-- header values (client:upload, client:http, the User-Agent). Part of the client.
local form = {}

--- Characters a header value must not hold: a line break would end the header
-- (and add headers of someone else's making), and names go into multipart part
-- headers as C strings, where a NUL would cut them short ("a.png\0.exe" went
-- out as "a.png").
form.UNSAFE = "[\r\n%z]"

local INT_LIMIT = 9007199254740992.0 -- 2^53 (written out: see argcheck.MAX_BYTES)

--- A string, boolean or finite number as text (integers without ".0"); nil otherwise.
---@param v any
---@return string|nil
function form.text(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "boolean" then return tostring(v) end
  if t == "number" and v == v and v ~= math.huge and v ~= -math.huge then
    if v % 1 == 0 and v > -INT_LIMIT and v < INT_LIMIT then return ("%d"):format(v) end
    return ("%.17g"):format(v)
  end
  return nil
end

return form
