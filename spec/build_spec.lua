-- The Makefile: a plain `make` only builds; the README's two commands (and CI) install
-- what is missing first. Checked with dry runs (`make -n`) against a stamp that does not
-- exist, i.e. as on a fresh machine; nothing is built or installed here.
local function dry(target)
  local p = assert(io.popen("env -u LD_PRELOAD make -n --no-print-directory " .. target
    .. " DEPS_STAMP=build/.no-such-deps-stamp MODULE=build/.no-such-module.so 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

describe("the Makefile", function()
  it("builds with a plain make and installs nothing", function()
    local out = dry("all")
    assert.matches("-shared -o build/.no-such-module.so", out, 1, true)
    assert.not_matches("apt-get", out, 1, true)
  end)

  it("runs make deps first for make demo and make test", function()
    for _, target in ipairs{ "demo", "test" } do
      assert.matches("apt-get install", dry(target), 1, true)
    end
  end)

  it("has .ci/run install what is missing before anything else", function()
    local f = assert(io.open(".ci/run", "rb"))
    local ci = f:read("*a")
    f:close()
    local deps = ci:find("\nmake deps", 1, true)
    assert.is_number(deps)
    assert.is_nil(ci:sub(1, deps):find("\nmake [a-z]"))
  end)
end)
