--- misskey.client.hints: what a failed call's error gains from the catalogue
-- (the server's after client:schema(), else the bundled one). Only failures
-- come here, so a call that succeeds pays nothing for it.
--
-- * A 404 for an endpoint the catalogue does not know: `err.suggestions`, the
--   nearest names, and a message that names them. Misskey 2026.5.4 answers an
--   unknown POST route with Fastify's own 404
--   (`{"message":"Route POST:/api/notes/craete not found",...}`, no Misskey
--   error); a GET, and older servers, answer UNKNOWN_API_ENDPOINT. Nothing is
--   refused before sending: a newer server may know a name the catalogue does not.
-- * PERMISSION_DENIED: `err.permission`, the permission the endpoint needs.
local catalogue = require "misskey.catalogue"

local hints = {}

--- hints.failure(cat, nil, message, err) -> nil, message, err, with `err`
-- (and its message) completed from the catalogue `cat` (nil: the bundled one):
-- what errors.fail returns, passed through.
---@param cat table|nil
---@param value nil
---@param _ string the message (err.message, which this may change, is returned)
---@param err misskey.Error
---@return nil
---@return string message
---@return misskey.Error err
function hints.failure(cat, value, _, err)
  local endpoint = err.endpoint
  if err.status == 404 and (err.kind == "http" or err.code == "UNKNOWN_API_ENDPOINT")
     and not catalogue.lookup(endpoint, cat) then
    local suggestions = catalogue.suggest(endpoint, cat)
    err.suggestions = suggestions
    if err.kind == "http" then
      -- Fastify's body says no more than this; err.body keeps it.
      err.message = ("%s: HTTP 404, no such endpoint on this server%s"):format(endpoint,
        catalogue.did_you_mean(suggestions))
    else
      err.message = err.message .. catalogue.did_you_mean(suggestions)
    end
  elseif err.code == "PERMISSION_DENIED" then
    local entry = catalogue.lookup(endpoint, cat)
    local permission = entry and entry.permission
    -- A server's catalogue (client:schema()) comes from its /api.json: only a name shaped as one.
    if type(permission) == "string" and #permission <= 128 and permission:find("^[%w:_%-%.]+$") then
      err.permission = permission
      err.message = ("%s (the endpoint needs the permission %s)"):format(err.message, permission)
    end
  end
  return value, err.message, err
end

return hints
