--- misskey.testing.endpoints.registry: i/registry/get and i/registry/set, a
-- per-user store of JSON values by scope and key.
local json = require "misskey.json"
local params = require "misskey.testing.params"

local concat = table.concat
local object = params.object

local endpoints = {}

local SCOPE = { type = "array", items = { type = "string", pattern = { "^[a-zA-Z0-9_]+$", "^[%w_]+$" } } }

local function registry_of(self, user, scope)
  local key = concat(scope or {}, "\0")
  local r = self._registry[user.id] or {}
  self._registry[user.id] = r
  r[key] = r[key] or {}
  return r[key]
end

endpoints["i/registry/get"] = {
  credential = true,
  params = object({ { "key", { type = "string" } }, { "scope", SCOPE }, { "domain", { type = { "string", "null" } } } },
    { "key", "scope" }),
  errors = { NO_SUCH_KEY = { id = "ac3ed68a-62f0-422b-a7bc-d5e09e8f6a6a", message = "No such key." } },
  handler = function(self, ps, ctx)
    local r = registry_of(self, ctx.user, ps.scope)
    if r[ps.key] == nil then return nil, "NO_SUCH_KEY" end
    return json.decode(r[ps.key])
  end,
}

endpoints["i/registry/set"] = {
  credential = true,
  params = object({ { "key", { type = "string", minLength = 1 } }, { "scope", SCOPE },
                    { "domain", { type = { "string", "null" } } } }, { "key", "value", "scope" }),
  handler = function(self, ps, ctx)
    registry_of(self, ctx.user, ps.scope)[ps.key] = json.encode(ps.value)
    self:_main(ctx.user, "registryUpdated", { scope = ps.scope, key = ps.key, value = ps.value })
    return nil
  end,
}

return endpoints
