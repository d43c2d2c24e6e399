-- A webhook delivery's body and headers as Misskey sends them, for the webhook specs.
--
--   local delivery = require "support.webhook_delivery"
--   delivery.body{ eventId = "ev-2" }   -- a mention delivery, JSON, with those fields replaced
--   delivery.headers(SECRET)            -- Content-Type and the secret header
local json = require "misskey.json"

local M = {}

function M.body(fields)
  local e = { server = "http://127.0.0.1:3000", hookId = "hook1", userId = "user1",
    eventId = "ev-1", createdAt = 1796525404028, type = "mention",
    body = { note = { id = "note1", text = "@bot hi" } } }
  for k, v in pairs(fields or {}) do e[k] = v end
  return json.encode(e)
end

function M.headers(secret)
  return { ["Content-Type"] = "application/json", ["X-Misskey-Hook-Secret"] = secret }
end

return M
