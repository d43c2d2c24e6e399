--- The process's default engine (the C core's curl multi handle, sockets and
-- timers), made on first use. Kept here so the transport and the scheduler
-- share it without requiring each other.
local core = require "misskey.core"

local engine = {}

local default_engine

--- engine.default() -> the process's default engine (made on the first call).
---@return userdata
function engine.default()
  if not default_engine then default_engine = core.engine() end
  return default_engine
end

return engine
