-- Host loops at exit: a program that drives misskey from luv and stops the
-- driver must end with status 0 (Debian's luv 1.44 crashed in its loop
-- finalizer when the driver's handles were still closing at exit). Each case
-- is a separate process on the interpreter under test.
local server = require "support.server"

local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")

local has = function(m) return (pcall(require, m)) end

-- The README's luv program, exactly as printed there.
local function readme_luv_block()
  local f = assert(io.open("README.md", "r"))
  local text = f:read("*a")
  f:close()
  local section = assert(text:match("\n### Other event loops\n(.-)\n##"), "README has no 'Other event loops'")
  for block in section:gmatch("```lua\n(.-)```") do
    if block:find("misskey.loop.luv", 1, true) then return block end
  end
  error("no luv code block under README's 'Other event loops'")
end

-- Runs `source` as a script; returns its output and exit status.
local function run(source, env)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  local home = server.temp_dir() -- no credential store of the machine running the tests
  local cmd = ("env -u MISSKEY_TOKEN -u LD_PRELOAD -u XDG_CONFIG_HOME HOME=%s %s %s -e "
    .. "'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path; "
    .. "package.cpath=\"./build/%s/?.so;\"..package.cpath' %s 2>&1; echo \"exit=$?\"")
    :format(home, env or "", interpreter, version, path)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  server.remove_dir(home)
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

local srv
setup(function() srv = server.start() end)
teardown(function() srv:stop() end)

-- Debian 12 ships lua-luv for 5.1-5.4; LuaJIT loads the 5.1 build.
local luv_it = has("luv") and it or pending

describe("luv at exit", function()
  luv_it("the README's program runs its request and exits 0", function()
    local out, code = run(readme_luv_block(), "MISSKEY_HOST=" .. srv.url)
    assert.equal(0, code, out)
    assert.matches("^Test\n", out)
  end)

  luv_it("exits 0 when a task stops the driver inside uv.run()", function()
    local out, code = run([[
      local uv = require "luv"
      local misskey = require "misskey"
      local d = require("misskey.loop.luv").start(uv)
      misskey.spawn(function() misskey.sleep(0.01); d.stop(); print("stopped") end)
      uv.run()
    ]])
    assert.equal(0, code, out)
    assert.matches("stopped", out)
  end)

  luv_it("exits 0 when the driver is stopped without the loop ever running", function()
    local out, code = run([[
      local uv = require "luv"
      local d = require("misskey.loop.luv").start(uv)
      d.stop()
      d.stop() -- twice is harmless
      print("stopped")
    ]])
    assert.equal(0, code, out)
    assert.matches("stopped", out)
  end)

  luv_it("exits 0 when a luv timer of the program stops the driver", function()
    local out, code = run([[
      local uv = require "luv"
      local misskey = require "misskey"
      local d = require("misskey.loop.luv").start(uv)
      misskey.spawn(function() misskey.sleep(5) end)
      local t = uv.new_timer()
      t:start(10, 0, function() t:close(); d.stop(); misskey.stop() end)
      uv.run()
      print("stopped")
    ]])
    assert.equal(0, code, out)
    assert.matches("stopped", out)
  end)
end)
