--- Turns the `host` option into a base URL: a bare host means https, a full
-- base URL (http or https, no path) is taken as it is.
local baseurl = {}

-- host[:port], [ipv6][:port]; letters, digits, dots and hyphens only.
local function valid_authority(a)
  local name, port = a:match("^([%w%.%-]+)(:?%d*)$")
  if not name then name, port = a:match("^(%[[%x:%.]+%])(:?%d*)$") end
  if not name or name:find("^[%.%-]") or name:find("%.%.") then return false end
  if port == ":" then return false end
  if port ~= "" then
    local n = tonumber(port:sub(2))
    if n < 1 or n > 65535 then return false end
  end
  return true
end

--- Returns the base URL (no trailing slash) for `host`, or `nil, why`.
function baseurl.parse(host)
  if type(host) ~= "string" then return nil, "string expected, got " .. type(host) end
  if host == "" then return nil, "empty" end
  if host:find("%s") then return nil, "contains spaces" end
  local scheme, rest = host:match("^(%a[%w+.-]*)://(.*)$")
  if scheme then
    scheme = scheme:lower()
    if scheme ~= "https" and scheme ~= "http" then return nil, "scheme must be http or https" end
    rest = rest:gsub("/$", "")
  else
    scheme, rest = "https", host
  end
  if rest:find("@", 1, true) then return nil, "user info is not allowed" end
  if rest:find("[/?#]") then return nil, "a host may not have a path, query or fragment" end
  if not valid_authority(rest) then return nil, "not a valid host name" end
  return scheme .. "://" .. rest:lower()
end

return baseurl
