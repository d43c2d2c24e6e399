-- Starts and stops the local test server (spec/support/server.py) for specs.
-- Standard library only, so it runs on Lua 5.1, 5.4 and LuaJIT.
--
--   local server = require "support.server"
--   local srv = server.start()   -- srv.port, srv.pid, srv.host, srv.url
--   ...
--   srv:stop()
--   local port = server.free_port()  -- nothing listens there: "connection refused"

local M = {}

-- The python3 on PATH has no aiohttp. `env -u LD_PRELOAD`: under `make asan`
-- the sanitizer runtime is preloaded for Lua, not for the server.
local PYTHON = "env -u LD_PRELOAD /usr/bin/python3"

-- Directory of this file, so the server is found whatever busted's cwd is
-- (busted loads it as "./spec/support/server.lua" from the repo root).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/support/"

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local Server = {}
Server.__index = Server

-- Kills the server and waits for it to exit. Safe to call more than once.
function Server:stop()
  if self.handle then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    self.handle:close() -- pclose: waits until the process is gone
    self.handle = nil
  end
end

function M.start()
  -- `exec` makes python replace the shell, so its parent is this Lua process
  -- and it exits by itself if this process dies without calling stop().
  local handle = assert(io.popen("exec " .. PYTHON .. " " .. shell_quote(here .. "server.py"), "r"))
  local line = handle:read("*l")
  local port, pid = (line or ""):match("^PORT (%d+) PID (%d+)$")
  if not port then
    handle:close()
    error("support.server: test server did not start (first stdout line: "
      .. (line and ("%q"):format(line) or "none")
      .. "); run `" .. PYTHON .. " " .. here .. "server.py` to see its error", 2)
  end
  return setmetatable({
    handle = handle,
    port = tonumber(port),
    pid = tonumber(pid),
    host = "127.0.0.1:" .. port,
    url = "http://127.0.0.1:" .. port,
  }, Server)
end

-- A 127.0.0.1 port with no listener, found by binding port 0 and letting go.
function M.free_port()
  local handle = assert(io.popen(PYTHON .. " -c 'import socket; s = socket.socket(); "
    .. "s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1]); s.close()'", "r"))
  local port = tonumber(handle:read("*l") or "")
  handle:close()
  if not port then
    error("support.server: could not find a free port", 2)
  end
  return port
end

return M
