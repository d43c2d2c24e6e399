-- Memory (issue 17): what a process pays for `require "misskey"` and `misskey.new`, before
-- its first call. lua-cjson is not loaded (json.null is the decoder's own null), and the
-- default User-Agent names the libcurl the core was built against instead of asking the
-- loaded one (curl_version_info makes every library libcurl links resident: ~240 KiB).
-- No module folds a power such as `2 ^ 53` at load: that calls libm's pow, whose code and
-- tables (~200 KiB) then stay resident in a process that never does floating-point maths.
-- GnuTLS, which libcurl's librtmp and libldap link but nothing here calls, is left
-- uninitialised at load (src/gnutls_skip.c): its constructor made ~640 KiB of it resident.
local cli = require "support.cli"
local core = require "misskey.core"
local json = require "misskey.json"

-- Runs Lua code in a fresh interpreter under test (the tree's modules first); its stdout.
local function fresh_env(vars, code)
  local cmd = ("env -u LD_PRELOAD " .. vars .. " %s -e 'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path; "
    .. "package.cpath=\"./build/%s/?.so;\"..package.cpath' -e %q 2>&1"):format(cli.interpreter, cli.version, code)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end
local function fresh(code) return fresh_env("", code) end

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

  it("leaves GnuTLS's set-up at load undone: no more of it resident than GnuTLS's own switch leaves", function()
    local code = RESIDENT_KB .. [[
      require "misskey.core"
      print(resident_kb("libgnutls") or "no smaps")]]
    local ours = fresh(code)
    if ours == "no smaps\n" then return pending("no /proc/self/smaps here") end
    local switched = fresh_env("GNUTLS_NO_IMPLICIT_INIT=1", code)
    assert.truthy(tonumber(ours), ours)
    assert.truthy(tonumber(switched), switched)
    assert.is_true(tonumber(ours) <= tonumber(switched), ("GnuTLS resident: %d KiB, %d KiB with its init switched off")
      :format(tonumber(ours), tonumber(switched)))
  end)

  it("leaves GnuTLS usable by a library that initialises it, as GnuTLS asks (librtmp, libldap do)", function()
    if not rawget(_G, "jit") then return pending("needs LuaJIT's FFI") end
    local out = fresh([[
      require "misskey.core"
      local ffi = require "ffi"
      ffi.cdef "int gnutls_global_init(void); int gnutls_rnd(int level, void *data, size_t len);"
      local ok, gnutls = pcall(ffi.load, "libgnutls.so.30")
      if not ok then print("no gnutls") return end
      local buf = ffi.new("uint8_t[16]")
      print(gnutls.gnutls_rnd(0, buf, 16), gnutls.gnutls_global_init(), gnutls.gnutls_rnd(0, buf, 16))]])
    if out == "no gnutls\n" then return pending("no libgnutls.so.30 here") end
    -- before its init GnuTLS refuses (GNUTLS_E_LIB_IN_ERROR_STATE), after it works
    assert.equal("-402\t0\t0\n", out)
  end)
end)
