-- The server's side of a WebSocket upgrade, for specs that feed core.ws_codec by hand.
local core = require "misskey.core"

local M = {}

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

--- base64(SHA-1(key .. GUID)) (RFC 6455 4.2.2), from the url-safe unpadded form core offers.
function M.accept_for(key)
  local b = core.base64url(core.sha1(key .. GUID)):gsub("%-", "+"):gsub("_", "/")
  return b .. ("="):rep((4 - #b % 4) % 4)
end

--- The 101 reply to the request that sent `key`, then `extra` (bytes that came with it).
function M.reply(key, extra)
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Accept: " .. M.accept_for(key) .. "\r\n\r\n" .. (extra or "")
end

return M
