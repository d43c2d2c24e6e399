-- Starts and stops the local test server (spec/support/server.py) for specs.
-- Standard library only, so it runs on Lua 5.1, 5.4 and LuaJIT.
--
--   local server = require "support.server"
--   local srv = server.start()   -- srv.port, srv.pid, srv.host, srv.url
--   local tls = server.start{ tls = server.self_signed() }  -- https://127.0.0.1:<port>
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

-- server.start{ tls = { cert = path, key = path } } serves https (srv.url is https://...).
function M.start(opts)
  opts = opts or {}
  local args = ""
  if opts.tls then
    args = " --tls " .. shell_quote(opts.tls.cert) .. " " .. shell_quote(opts.tls.key)
  end
  -- `exec` makes python replace the shell, so its parent is this Lua process
  -- and it exits by itself if this process dies without calling stop().
  local script = opts.script or "server.py" -- or "wsserver.py", the raw WebSocket server
  local handle = assert(io.popen("exec " .. PYTHON .. " " .. shell_quote(here .. script) .. args, "r"))
  local line = handle:read("*l")
  local port, pid = (line or ""):match("^PORT (%d+) PID (%d+)$")
  if not port then
    handle:close()
    error("support.server: test server did not start (first stdout line: "
      .. (line and ("%q"):format(line) or "none")
      .. "); run `" .. PYTHON .. " " .. here .. script .. "` to see its error", 2)
  end
  return setmetatable({
    handle = handle,
    port = tonumber(port),
    pid = tonumber(pid),
    host = "127.0.0.1:" .. port,
    url = (opts.tls and "https" or "http") .. "://127.0.0.1:" .. port,
  }, Server)
end

-- A fresh self-signed certificate for 127.0.0.1 (CN and IP SAN) in a new temp
-- directory: returns { dir, cert, key }; remove it with server.remove_dir(c.dir).
function M.self_signed()
  local dir = M.temp_dir()
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  local ok = os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
    .. " -addext subjectAltName=IP:127.0.0.1 -keyout " .. shell_quote(key) .. " -out " .. shell_quote(cert)
    .. " >/dev/null 2>&1")
  if ok ~= true and ok ~= 0 then
    M.remove_dir(dir)
    error("support.server: openssl could not make a certificate", 2)
  end
  return { dir = dir, cert = cert, key = key }
end

-- A new private temp directory (mktemp -d).
function M.temp_dir()
  local handle = assert(io.popen("mktemp -d /tmp/misskey-spec.XXXXXX", "r"))
  local dir = handle:read("*l")
  handle:close()
  if not dir or dir == "" then error("support.server: mktemp -d failed", 2) end
  return dir
end

-- Removes a directory made by temp_dir (only those: a guard against accidents).
function M.remove_dir(dir)
  assert(type(dir) == "string" and dir:find("^/tmp/misskey%-spec%.[%w]+$"), "not a spec temp dir")
  os.execute("rm -rf " .. shell_quote(dir))
end

M.shell_quote = shell_quote

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
