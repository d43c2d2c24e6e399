-- The rockspec installs every Lua module and C source of the tree: a module
-- missing from it would work here and be absent for luarocks users.
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function list(cmd)
  local out, p = {}, assert(io.popen(cmd))
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

describe("misskey-scm-1.rockspec", function()
  local rockspec = read("misskey-scm-1.rockspec")

  it("names every Lua module under lua/", function()
    local files = list("find lua -name '*.lua' | sort")
    assert.truthy(#files > 5)
    for _, file in ipairs(files) do
      local name = file:gsub("^lua/", ""):gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.truthy(rockspec:find(('["%s"] = "%s"'):format(name, file), 1, true), file .. " is not in the rockspec")
    end
  end)

  it("compiles every C source under src/", function()
    for _, file in ipairs(list("ls src/*.c")) do
      assert.truthy(rockspec:find('"' .. file .. '"', 1, true), file .. " is not in the rockspec")
    end
  end)
end)
