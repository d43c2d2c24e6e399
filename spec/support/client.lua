-- misskey.new for specs with the environment hidden: no MISSKEY_HOST,
-- MISSKEY_TOKEN or credential store of the machine running the tests leaks in.
--   local new_client = require "support.client"
--   new_client({ host = srv.url, token = false }, { timeout = 1 })  -- defaults, then overrides
-- Errors from misskey.new are re-raised as they are (specs match their text).
local misskey = require "misskey"
local with_env = require "support.env"

return function(defaults, opts)
  local o = {}
  for k, v in pairs(defaults or {}) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return with_env({}, function() return misskey.new(o) end)
end
