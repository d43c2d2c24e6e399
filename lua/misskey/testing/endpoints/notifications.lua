--- misskey.testing.endpoints.notifications: the notifications a user keeps
-- (made by the other areas' actions) and i/notifications, which reads them.
local json = require "misskey.json"
local params = require "misskey.testing.params"
local Fake = require "misskey.testing.fake"

local array = json.array
local ipairs = ipairs
local ID, BOOLEAN, object = params.ID, params.BOOLEAN, params.object

local endpoints = {}

-- Stores a notification for `user` and publishes it on the main channel.
function Fake:_notify(user, kind, from, fields)
  if from and from.id == user.id then return end
  local n = { id = self:_gen_id(), createdAt = self._clock, type = kind, userId = from and from.id,
              fields = fields or {}, isRead = false }
  local list = self._notifications[user.id] or {}
  self._notifications[user.id] = list
  list[#list + 1] = n
  self:_main(user, "notification", self:_pack_notification(n, user))
end

local NOTIFICATION_TYPES = { "note", "follow", "mention", "reply", "renote", "quote", "reaction", "pollEnded",
  "receiveFollowRequest", "followRequestAccepted", "roleAssigned", "achievementEarned", "app", "test" }

endpoints["i/notifications"] = {
  credential = true,
  params = object({
    { "limit", { type = "integer", minimum = 1, maximum = 100 } },
    { "sinceId", ID }, { "untilId", ID },
    { "sinceDate", { type = "integer" } }, { "untilDate", { type = "integer" } },
    { "markAsRead", BOOLEAN },
    { "includeTypes", { type = "array", items = { type = "string", enum = NOTIFICATION_TYPES } } },
    { "excludeTypes", { type = "array", items = { type = "string", enum = NOTIFICATION_TYPES } } },
  }),
  handler = function(self, ps, ctx)
    local list = self._notifications[ctx.user.id] or {}
    local include, exclude = {}, {}
    for _, t in ipairs(ps.includeTypes or {}) do include[t] = true end
    for _, t in ipairs(ps.excludeTypes or {}) do exclude[t] = true end
    local limit = ps.limit or 10
    local ascending = ps.sinceId ~= nil and ps.untilId == nil
    local out = array{}
    local from, to, step = #list, 1, -1
    if ascending then from, to, step = 1, #list, 1 end
    for i = from, to, step do
      local n = list[i]
      if (ps.sinceId == nil or n.id > ps.sinceId) and (ps.untilId == nil or n.id < ps.untilId)
         and (not ps.includeTypes or include[n.type]) and not exclude[n.type] then
        out[#out + 1] = self:_pack_notification(n, ctx.user)
        if #out >= limit then break end
      end
    end
    if ps.markAsRead ~= false then
      for _, n in ipairs(list) do n.isRead = true end
    end
    return out
  end,
}

return endpoints
