-- poll(2) over an engine's fds, for specs that drive the engine like a host
-- loop would: Debian's luaposix where it exists (Lua 5.1 and LuaJIT), else
-- the small spec/support/testpoll.c module (Debian has no luaposix for 5.4).
-- poll(fds, timeout_seconds) -> { [fd] = "r" | "w" | "rw" | "e" }, backend name
local ok, pposix = pcall(require, "posix.poll")

if ok then
  return function(fds, timeout)
    local set = {}
    for fd, interest in pairs(fds) do
      set[fd] = { events = { IN = interest:find("r") ~= nil, OUT = interest:find("w") ~= nil } }
    end
    local ms = timeout and math.ceil(timeout * 1000) or -1
    assert(pposix.poll(set, ms))
    local ready = {}
    for fd, s in pairs(set) do
      local r = s.revents or {}
      if r.ERR or r.HUP or r.NVAL then ready[fd] = "e"
      elseif r.IN and r.OUT then ready[fd] = "rw"
      elseif r.IN then ready[fd] = "r"
      elseif r.OUT then ready[fd] = "w" end
    end
    return ready, "luaposix"
  end
end

local testpoll = require "testpoll"
return function(fds, timeout)
  local ms = timeout and math.ceil(timeout * 1000) or -1
  return testpoll.poll(fds, ms), "testpoll"
end
