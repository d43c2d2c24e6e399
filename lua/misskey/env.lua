--- misskey.env: the process environment, read in one place. Credentials
-- (MISSKEY_HOST, MISSKEY_TOKEN), the proxies that decide whether a token
-- would travel in clear, the credential store, the schema cache, the stream's
-- positions and the `misskey` command all read it here, so a spec can give
-- them an environment of its own with one call (spec/support/env.lua's
-- `with_env`), never the machine's.
--
--   env.get(name)      a variable's value, nil when unset or empty
--   env.dir(kind)      an XDG base directory: "config", "cache" or "state"
--   env.replace(fn)    reads through fn(name) from now on; returns the previous reader
local env = {}

local read = os.getenv

--- A variable's value; nil when it is unset or empty (an empty MISSKEY_HOST
-- means none, as an empty XDG_CONFIG_HOME does).
---@param name string
---@return string|nil
function env.get(name)
  local v = read(name)
  if v == "" then return nil end
  return v
end

-- The XDG base directory variables and their defaults under $HOME.
local XDG = {
  config = { "XDG_CONFIG_HOME", "/.config" },
  cache = { "XDG_CACHE_HOME", "/.cache" },
  state = { "XDG_STATE_HOME", "/.local/state" },
}

--- An XDG base directory: $XDG_<KIND>_HOME when it is an absolute path (the
-- specification says to ignore a relative one), else its default under $HOME;
-- nil and why when neither is set.
---@param kind "config"|"cache"|"state"
---@return string|nil dir
---@return string|nil why
function env.dir(kind)
  local spec = XDG[kind]
  if not spec then error("bad argument #1 to 'dir' (\"config\", \"cache\" or \"state\" expected)", 2) end
  local xdg = env.get(spec[1])
  if xdg and xdg:sub(1, 1) == "/" then return xdg end
  local home = env.get("HOME")
  if home then return home .. spec[2] end
  return nil, ("neither %s nor HOME is set"):format(spec[1])
end

--- Reads the environment through `fn(name)` from now on (a spec's own
-- environment); `nil` goes back to os.getenv. Returns the previous reader.
---@param fn? fun(name: string): string|nil
---@return fun(name: string): string|nil
function env.replace(fn)
  local previous = read
  read = fn or os.getenv
  return previous
end

return env
