-- The one way specs give the library an environment of their own (misskey.env
-- is the seam every module reads the environment through):
--   local with_env = require "support.env"
--   with_env({ XDG_CONFIG_HOME = dir }, function() ... end)  -- during fn only, even if it raises
--   with_env{ MISSKEY_HOST = "..." }                          -- from now on, until with_env.reset()
-- Only the variables given exist; the machine's MISSKEY_HOST, MISSKEY_TOKEN,
-- HOME, proxies and credential store never leak in.
local env = require "misskey.env"

local with_env = {}
local outside -- the reader before a with_env(vars) without fn: with_env.reset() puts it back

local function reader(vars)
  return function(name) return vars[name] end
end

--- Puts the environment back as it was before the first with_env(vars) without fn.
function with_env.reset()
  if outside then
    env.replace(outside)
    outside = nil
  end
end

local function finish(previous, ok, ...)
  env.replace(previous)
  if not ok then error((...), 0) end
  return ...
end

return setmetatable(with_env, {
  __call = function(_, vars, fn)
    local previous = env.replace(reader(vars))
    if fn == nil then
      outside = outside or previous
      return
    end
    return finish(previous, pcall(fn))
  end,
})
