--- misskey.ngx.transport: the client's transport inside nginx, which the ngx
-- runtime names for misskey.new (client options choose it when no transport is
-- given): HTTP/1.1 over cosockets (misskey.ngx.http) and WebSockets
-- (misskey.ngx.websocket). The options that only mean something to libcurl
-- raise here, naming the option and what to do instead.
local argcheck = require "misskey.argcheck"
local http = require "misskey.ngx.http"
local websocket = require "misskey.ngx.websocket"

local transport = {}

local host = rawget(_G, "ngx")

--- transport.new(opts) -> the transport of a client made with misskey.new(opts).
-- (misskey.new -> client options -> here: raises at level 3, see misskey.argcheck.)
---@param opts table misskey.new's options
---@return table transport
function transport.new(opts)
  if opts.engine ~= nil then
    argcheck.opterror("engine", "there is no C engine inside nginx: the client uses nginx's cosockets", 3)
  end
  if opts.ca_file ~= nil then
    argcheck.opterror("ca_file", "inside nginx the trusted certificates are the lua_ssl_trusted_certificate"
      .. " directive's (nginx.conf); use that instead", 3)
  end
  return {
    request = http.request,
    --- transport.websocket(req) -> ws | nil, msg, err (see misskey.ngx.websocket)
    websocket = function(req)
      local ws, msg, err = websocket.connect(req) -- no tail call: argcheck's levels
      return ws, msg, err
    end,
    -- The default User-Agent names what carries the requests.
    product = ("ngx_lua/%d.%d.%d"):format(math.floor(host.config.ngx_lua_version / 1000000),
      math.floor(host.config.ngx_lua_version / 1000) % 1000, host.config.ngx_lua_version % 1000),
  }
end

return transport
