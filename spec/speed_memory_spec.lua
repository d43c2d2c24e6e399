-- Memory (issue 17): what a process pays for `require "misskey"` and `misskey.new`, before
-- its first call. lua-cjson is not loaded (json.null is the decoder's own null), and the
-- default User-Agent names the libcurl the core was built against instead of asking the
-- loaded one (curl_version_info makes every library libcurl links resident: ~240 KiB).
-- No module folds a power such as `2 ^ 53` at load: that calls libm's pow, whose code and
-- tables (~200 KiB) then stay resident in a process that never does floating-point maths.
local cli = require "support.cli"
local core = require "misskey.core"
local json = require "misskey.json"

-- Runs Lua code in a fresh interpreter under test (the tree's modules first); its stdout.
local function fresh(code)
  local cmd = ("env -u LD_PRELOAD %s -e 'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path; "
    .. "package.cpath=\"./build/%s/?.so;\"..package.cpath' -e %q 2>&1"):format(cli.interpreter, cli.version, code)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- Lua code that sets `resident_kb(name)`: the resident KiB of the mappings of library `name`
-- (Linux), or nil.
local RESIDENT_KB = [[
  local function resident_kb(name)
    local f = io.open("/proc/self/smaps", "r")
    if not f then return nil end
    local kb, inside = 0, false
    for line in f:lines() do
      local path = line:match("^%x+%-%x+ %S+ %S+ %S+ %S+%s*(.*)")
      if path then inside = path:find("/" .. name .. "[.-]") ~= nil
      elseif inside then kb = kb + (tonumber(line:match("^Rss:%s*(%d+)")) or 0) end
    end
    f:close()
    return kb
  end
]]

describe("a process with misskey loaded", function()
  it("has not loaded lua-cjson, and json.null is still cjson's null", function()
    local out = fresh([[
      local misskey = require "misskey"
      local client = misskey.new { host = "http://127.0.0.1:9", token = "t" }
      assert(client and require("misskey.json").decode("[null]")[1] == misskey.null)
      print(package.loaded.cjson == nil and "no cjson" or "cjson loaded")]])
    assert.equal("no cjson\n", out)
    assert.equal(require("cjson").null, json.null) -- one value for a user who mixes them
    assert.equal("userdata", type(json.null))
  end)

  it("names the libcurl it was built against in the default User-Agent", function()
    local built = core.curl_built_version()
    assert.matches("^%d+%.%d+%.%d+", built)
    -- Debian's libcurl and its headers come from one source package
    assert.equal(core.curl_version(), built)
    local out = fresh([[
      local client = require("misskey").new { host = "http://127.0.0.1:9", token = "t" }
      print(client._user_agent)]])
    assert.truthy(out:find("libcurl/" .. built, 1, true), out)
  end)

  it("has made no more of libm resident than the interpreter had (no pow folded at load)", function()
    -- LuaJIT reads a literal such as 0.5 with libm's help: the baseline has read some.
    local out = fresh(RESIDENT_KB .. [[
      assert(loadstring or load)("return 0.5, 1.7976931348623157e308, 1e-300")()
      local before = resident_kb("libm")
      local misskey = require "misskey"
      misskey.new { host = "http://127.0.0.1:9", token = "t" }
      print(before and ("libm %d KiB, then %d KiB"):format(before, resident_kb("libm")) or "no smaps")]])
    if out == "no smaps\n" then return pending("no /proc/self/smaps here") end
    local before, after = out:match("^libm (%d+) KiB, then (%d+) KiB")
    assert.truthy(before, out)
    assert.equal(before, after, out)
  end)
end)
