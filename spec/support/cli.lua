-- bin/misskey as a subprocess on the interpreter under test, with XDG_CONFIG_HOME in `dir`
-- and no MISSKEY_HOST/MISSKEY_TOKEN of the machine running the tests.
--   local cli = require "support.cli"
--   local out, err, code = cli.run(dir, "whoami", { MISSKEY_HOST = url })
local server = require "support.server"

local M = {}
local q = server.shell_quote
M.interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
M.version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")

--- The shell command line (stdout and stderr not redirected).
function M.command(dir, args, env)
  local vars = { "XDG_CONFIG_HOME=" .. q(dir) }
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. q(v) end
  return ("env -u LD_PRELOAD -u MISSKEY_HOST -u MISSKEY_TOKEN %s %s -e "
    .. "'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path; "
    .. "package.cpath=\"./build/%s/?.so;\"..package.cpath' bin/misskey %s")
    :format(table.concat(vars, " "), M.interpreter, M.version, args)
end

--- Runs the command; returns stdout, stderr, exit status.
function M.run(dir, args, env, stdin)
  local errfile = os.tmpname()
  local cmd = M.command(dir, args, env) .. " 2>" .. q(errfile)
  if stdin then cmd = "printf %s " .. q(stdin) .. " | " .. cmd end
  local p = assert(io.popen(cmd .. "; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  local f = assert(io.open(errfile, "rb"))
  local err = f:read("*a")
  f:close()
  os.remove(errfile)
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  return (out:gsub("exit=%d+%s*$", "")), err, code
end

--- Runs `misskey login --host <host> ...`, calls approve(url) with the first URL it
-- prints, and returns everything it printed (stdout and stderr) and its exit status.
function M.login(dir, host, args, approve)
  local p = assert(io.popen(M.command(dir, "login --host " .. host .. " --interval 0.05 --timeout 10 " .. args)
    .. " 2>&1; echo \"exit=$?\""))
  local lines = {}
  for line in p:lines() do
    lines[#lines + 1] = line
    local url = line:match("^%s+(http%S+)$")
    if url then
      approve(url)
      break
    end
  end
  lines[#lines + 1] = p:read("*a")
  p:close()
  local out = table.concat(lines, "\n")
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

return M
