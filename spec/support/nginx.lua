-- Starts and stops nginx with the library inside, for spec/nginx_*_spec.lua.
--
--   local nginx = require "support.nginx"
--   local ngx = nginx.start{ upstream = srv.url, workers = 1 }  -- ngx.url, ngx.pid, ngx.dir
--   local value = ngx:get("/call", { endpoint = "meta" })      -- the JSON the handler answered
--   ngx:reload()                                                -- SIGHUP: a new generation of workers
--   ngx:stop()
--
-- The config is spec/nginx/nginx.conf with its ${...} fields filled in, in a new
-- temporary folder given to nginx with -p; the spec's settings go to spec_config.lua
-- there (spec/nginx/app.lua reads them). nginx runs under spec/support/nginx_guard.py,
-- which stops it when this process dies or closes the pipe: no nginx outlives a run.
-- Requests go through this process's own misskey client (libcurl) to 127.0.0.1.
local json = require "misskey.json"
local server = require "support.server"
local new_client = require "support.client"

local M = {}

local PYTHON = "env -u LD_PRELOAD /usr/bin/python3"
M.BINARY = "/usr/sbin/nginx"
M.MODULE = "/usr/lib/nginx/modules/ngx_http_lua_module.so"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/support/"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function shell(cmd)
  local h = assert(io.popen(cmd, "r"))
  local out = h:read("*a")
  h:close()
  return (out:gsub("%s+$", ""))
end

--- Why nginx cannot run the specs here (nil when it can): nginx, its Lua module and
-- misskey.core for LuaJIT must be installed and built (make deps; make LUA=luajit).
function M.missing()
  for _, path in ipairs{ M.BINARY, M.MODULE, "build/luajit/misskey/core.so" } do
    local f = io.open(path, "rb")
    if not f then return path .. " is missing (make deps; make LUA=luajit)" end
    f:close()
  end
end

local Nginx = {}
Nginx.__index = Nginx

--- nginx:get(path[, query]) -> the decoded JSON reply (a failed request raises, with the error log).
function Nginx:get(path, query, timeout)
  local res, msg = self.client:http{ path = path, query = query, timeout = timeout or 60 }
  if not res then error(("nginx %s: %s\n%s"):format(path, msg, self:log()), 2) end
  local value = json.decode(res.body)
  if res.status ~= 200 or value == nil then
    error(("nginx %s: HTTP %d: %s\n%s"):format(path, res.status, res.body, self:log()), 2)
  end
  return value, res
end

--- nginx:raw(path[, query]) -> the reply of client:http (status, headers, body) or nil, msg, err.
function Nginx:raw(path, query)
  return self.client:http{ path = path, query = query, timeout = 60 }
end

--- The tail of nginx's error log (for failure messages).
function Nginx:log(lines)
  return shell("tail -n " .. (lines or 40) .. " " .. server.shell_quote(self.dir .. "/error.log") .. " 2>&1")
end

--- The pids of the worker processes (children of the master).
function Nginx:workers()
  local list = {}
  for pid in shell("ps -o pid= --ppid " .. self.pid):gmatch("%d+") do list[#list + 1] = tonumber(pid) end
  return list
end

--- nginx -s reload: SIGHUP to the master (new workers start, the old ones exit gracefully).
function Nginx:reload()
  os.execute("kill -HUP " .. self.pid)
end

--- Stops nginx (through its guard) and removes the folder. Safe to call twice.
function Nginx:stop()
  if self.handle then
    os.execute("kill " .. self.guard .. " 2>/dev/null")
    self.handle:close() -- pclose: waits for the guard, which waits for nginx
    self.handle = nil
    server.remove_dir(self.dir)
  end
end

-- Lua source for a value (the settings file).
local function literal(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  for k, x in pairs(v) do parts[#parts + 1] = ("[%q] = %s"):format(k, literal(x)) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

--- nginx.start{ upstream = url, ws = url, workers = 1, follow = false, trust = cert path, settings = {},
-- template = path, prefix = path, env = {} } -> a running nginx. `settings` go to spec_config.lua (with
-- upstream, ws, follow and dir); `template` replaces spec/nginx/nginx.conf (the same ${...} fields),
-- `prefix` the temporary folder as nginx's -p, and `env` is nginx's environment on top of this one's
-- (${PORT} in a value: nginx's port).
function M.start(opts)
  opts = opts or {}
  local why = M.missing()
  if why then error("support.nginx: " .. why, 2) end
  local dir = server.temp_dir()
  os.execute("mkdir -p " .. server.shell_quote(dir .. "/tmp"))
  local root = shell("pwd")
  local settings = { upstream = opts.upstream, ws = opts.ws, follow = opts.follow or false, dir = dir }
  for k, v in pairs(opts.settings or {}) do settings[k] = v end
  write(dir .. "/spec_config.lua", "return " .. literal(settings) .. "\n")
  local port, guard, line, handle
  for _ = 1, 5 do -- a free port can be taken between the look and the listen: try another
    port = server.free_port()
    local user = shell("id -un") == "root" and "user root root;" or ""
    local conf = read(opts.template or "spec/nginx/nginx.conf"):gsub("%${(%u+)}", {
      ROOT = root, DIR = dir, PORT = tostring(port), WORKERS = tostring(opts.workers or 1), USER = user,
      TRUST = opts.trust and ("lua_ssl_trusted_certificate %s;"):format(opts.trust) or "",
    })
    write(dir .. "/nginx.conf", conf)
    local guard_py = server.shell_quote(here .. "nginx_guard.py")
    local q = server.shell_quote
    local env = ""
    for k, v in pairs(opts.env or {}) do env = env .. k .. "=" .. q((v:gsub("%${PORT}", tostring(port)))) .. " " end
    handle = assert(io.popen(env .. "exec " .. PYTHON .. " " .. guard_py .. " " .. port .. " " .. M.BINARY
      .. " -p " .. q(opts.prefix or (dir .. "/")) .. " -e " .. q(dir .. "/error.log")
      .. " -c " .. q(dir .. "/nginx.conf"), "r"))
    line = handle:read("*l") or ""
    guard = tonumber(line:match("^PID %d+ GUARD (%d+)$"))
    if guard then break end
    handle:close()
    handle = nil
  end
  if not handle then
    local log = shell("tail -n 30 " .. server.shell_quote(dir .. "/error.log") .. " 2>&1")
    server.remove_dir(dir)
    error("support.nginx: nginx did not start (" .. tostring(line) .. ")\n" .. log, 2)
  end
  return setmetatable({
    handle = handle, guard = guard, pid = tonumber(line:match("%d+")), port = port, dir = dir,
    url = "http://127.0.0.1:" .. port,
    client = new_client{ host = "http://127.0.0.1:" .. port, token = false, retries = 0 },
  }, Nginx)
end

--- nginx.example_template(conf) -> the path of a copy of an example's nginx.conf made fit for
-- nginx.start's `template`: its port, pid, temp paths, log and user become ${...} fields. The caller
-- removes the copy's folder (server.remove_dir of the path's folder).
function M.example_template(conf)
  local text, n = read(conf):gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:${PORT};")
  assert(n == 1, conf .. ": no `listen 127.0.0.1:8080;` to replace")
  text = text:gsub("pid run/nginx%.pid;", "pid ${DIR}/nginx.pid;"):gsub(" run/", " ${DIR}/tmp/")
    :gsub("error_log stderr notice;", "error_log ${DIR}/error.log info;"):gsub("\nworker_processes 2;", "%0\n${USER}")
  local template = server.temp_dir() .. "/nginx.conf"
  write(template, text)
  return template
end

return M
