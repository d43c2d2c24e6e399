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

-- The host of a base URL or proxy address, without scheme, user info, port or brackets.
-- The authority ends at the first '/', '?' or '#', as libcurl reads it: an '@' after
-- one of those is no user info ("http://10.0.0.1:3128#@127.0.0.1" is 10.0.0.1).
local function host_of(url)
  local rest = url:gsub("^%a[%w+.-]*://", ""):gsub("[/?#].*$", "")
  rest = rest:match("^.*@(.*)$") or rest
  return (rest:match("^%[(.-)%]") or rest:match("^[^:]*")):lower()
end

--- Is the host of `base` (a base URL from baseurl.parse) this machine:
-- 127.0.0.0/8, ::1 or localhost? Other spellings (127.1, 0:0:...:1) are not.
---@param base string
---@return boolean
function baseurl.is_loopback(base)
  local host = host_of(base)
  if host == "localhost" or host == "::1" then return true end
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  return tonumber(a) == 127 and tonumber(b) <= 255 and tonumber(c) <= 255 and tonumber(d) <= 255
end

-- Does no_proxy (libcurl's reading: "*", or names and addresses separated by commas,
-- a name also covering its subdomains) exempt `host`?
local function no_proxy_covers(list, host)
  for entry in (list or ""):gmatch("[^,%s]+") do
    entry = entry:lower():gsub("^%.", "")
    if entry == "*" or entry == host or (#host > #entry and host:sub(-#entry - 1) == "." .. entry) then
      return true
    end
  end
  return false
end

--- Why a token sent to `base` would cross a network unencrypted, or nil: plain
-- http to another machine, or to this one through a proxy on another machine
-- (libcurl sends even loopback requests through http_proxy / all_proxy).
-- `getenv` reads the environment (proxies).
---@param base string
---@param getenv fun(name: string): string|nil
---@return string|nil
function baseurl.cleartext(base, getenv)
  if not base:find("^http://") then return nil end
  if not baseurl.is_loopback(base) then return "plain http to a host that is not this machine" end
  local function env(name)
    local v = getenv(name)
    if v == "" then return nil end
    return v
  end
  local proxy = env("http_proxy") or env("all_proxy") or env("ALL_PROXY")
  if not proxy or no_proxy_covers(env("no_proxy") or env("NO_PROXY"), host_of(base)) then return nil end
  local phost = host_of(proxy)
  if baseurl.is_loopback("http://" .. (phost:find(":") and "[" .. phost .. "]" or phost)) then return nil end
  return "plain http through the proxy " .. phost .. " (http_proxy/all_proxy), which is not this machine"
end

return baseurl
