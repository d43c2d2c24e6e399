--- misskey.testing.endpoints.users: i, users/show.
local json = require "misskey.json"
local common = require "misskey.testing.common"
local params = require "misskey.testing.params"

local array = json.array
local ipairs = ipairs
local present = common.present
local ID, ID_LIST, object = params.ID, params.ID_LIST, params.object

local endpoints = {}

endpoints["i"] = {
  credential = true,
  handler = function(self, _, ctx)
    return self:_pack_user_detailed(ctx.user, ctx.user)
  end,
}

endpoints["users/show"] = {
  params = {
    allOf = {
      { anyOf = {
        object({ { "userId", ID } }, { "userId" }),
        object({ { "userIds", ID_LIST } }, { "userIds" }),
        object({ { "username", { type = "string" } } }, { "username" }),
      } },
      object({ { "host", { type = { "string", "null" } } } }),
    },
  },
  errors = {
    FAILED_TO_RESOLVE_REMOTE_USER = { id = "ef7b9be4-9cba-4e6f-ab41-90ed171c7d3c",
                                      message = "Failed to resolve remote user.", kind = "server" },
    NO_SUCH_USER = { id = "4362f8dc-731f-4ad8-a694-be5a88922a24", message = "No such user.", status = 404 },
  },
  handler = function(self, ps, ctx)
    if ps.userIds ~= nil then
      local out = array{}
      for _, id in ipairs(ps.userIds) do
        local u = self._by_id[id]
        if u then out[#out + 1] = self:_pack_user_detailed(u, ctx.user) end
      end
      return out
    end
    local user
    if ps.userId ~= nil then
      user = self._by_id[ps.userId]
    else
      if present(ps.host) and ps.host:lower() ~= self.host then return nil, "FAILED_TO_RESOLVE_REMOTE_USER" end
      user = self._by_name[ps.username:lower()]
    end
    if not user then return nil, "NO_SUCH_USER" end
    return self:_pack_user_detailed(user, ctx.user)
  end,
}

return endpoints
