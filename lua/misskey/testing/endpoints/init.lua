--- misskey.testing.endpoints: the fake's endpoint handlers, one file per area.
--
-- testing.endpoints[name] = {
--   credential = true,          -- CREDENTIAL_REQUIRED without a token
--   params = schema,            -- validated before the handler (INVALID_PARAM as ajv reports it;
--                               -- misskey.testing.params, misskey.validate)
--   check = function(params) -> nil | param, reason   -- extra validation (e.g. if/then)
--   errors = { CODE = { id =, message =, status =?, kind =? } },  -- the endpoint's own errors
--   multipart = true,           -- multipart/form-data: text parts as params, ps.file (not validated)
--   handler = function(fake, params, ctx) -> value (200 JSON) | nil (204) | nil, CODE, info?
-- }
-- ctx = { user = the authenticated user's record or nil, endpoint = name, request = req }.
-- CODE is looked up in the endpoint's `errors`, then in testing.COMMON_ERRORS.
-- A fake's own table, fake.endpoints, falls back to testing.endpoints: set
-- fake.endpoints[name] to add or replace a handler for one fake (false removes one).
local pairs, ipairs = pairs, ipairs

local AREAS = { "meta", "users", "notes", "timeline", "drive", "following", "reactions", "notifications", "registry",
                "webhooks" }

local endpoints = {}
for _, area in ipairs(AREAS) do
  for name, spec in pairs(require("misskey.testing.endpoints." .. area)) do endpoints[name] = spec end
end

return endpoints
