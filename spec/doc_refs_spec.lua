-- Comments send a reader to README or docs/ sections that exist, and never
-- outside the repository (notes that live elsewhere are restated in docs/).
local function lines_of(path)
  local f = assert(io.open(path))
  local out = {}
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

local function files(where)
  local p = assert(io.popen("find " .. where .. " -name '*.lua' -o -name '*.py' | sort"))
  local list = {}
  for path in p:lines() do list[#list + 1] = path end
  p:close()
  return list
end

-- The generated catalogue says where it came from.
local EXEMPT = { ["lua/misskey/endpoints.lua"] = true }

local function comments()
  local out = {}
  for _, where in ipairs{ "lua", "spec", "examples", "bin" } do
    for _, path in ipairs(files(where)) do
      if not EXEMPT[path] then
        for n, line in ipairs(lines_of(path)) do
          local text = path:find("%.py$") and line:match("#(.*)$") or line:match("%-%-(.*)$")
          if text then out[#out + 1] = { where = path .. ":" .. n, text = text } end
        end
      end
    end
  end
  return out
end

local function headings(path)
  local list = {}
  for _, line in ipairs(lines_of(path)) do
    local h = line:match("^#+%s+(.*)$")
    if h then list[#list + 1] = h:lower() end
  end
  return list
end

local function has_heading(path, name)
  for _, h in ipairs(headings(path)) do
    if h:find(name:lower(), 1, true) then return true end
  end
  return false
end

describe("comments", function()
  local all = comments()

  it("cite README and docs/ sections that exist", function()
    local missing = {}
    for _, c in ipairs(all) do
      for name in c.text:gmatch('README,? "([^"]+)"') do
        if not has_heading("README.md", name) then missing[#missing + 1] = c.where .. ': README "' .. name .. '"' end
      end
      for doc, name in c.text:gmatch('(docs/[%w_]+%.md),? "([^"]+)"') do
        if not has_heading(doc, name) then missing[#missing + 1] = c.where .. ": " .. doc .. ' "' .. name .. '"' end
      end
      for doc, n in c.text:gmatch("(docs/[%w_]+%.md) section (%d+)") do
        if not has_heading(doc, n .. ".") then missing[#missing + 1] = c.where .. ": " .. doc .. " section " .. n end
      end
    end
    assert.same({}, missing)
  end)

  it("never point outside the repository", function()
    local outside = {}
    for _, c in ipairs(all) do
      local t = c.text
      if t:find("%.%./shared") or t:find("/work/") or t:find("design%.md")
         or (t:find("protocol%.md") and not t:find("docs/protocol%.md")) then
        outside[#outside + 1] = c.where .. ":" .. t
      end
    end
    assert.same({}, outside)
  end)
end)

describe("docs/architecture.md's module map", function()
  it("names every Lua file of the library (a folder line covers the fake's files)", function()
    local f = assert(io.open("docs/architecture.md"))
    local text = f:read("*a")
    f:close()
    local map = text:match("## Layers\n\n```\n(.-)```")
    assert.is_string(map)
    local missing = {}
    for _, path in ipairs(files("lua/misskey")) do
      local listed = map:find(path, 1, true)
        or path:find("^lua/misskey/testing/") and map:find("lua/misskey/testing/ ", 1, true)
        or path:find("^lua/misskey/cli/") and map:find("lua/misskey/cli/*.lua", 1, true)
        or path:find("^lua/misskey/loop/") and map:find("lua/misskey/loop/*.lua", 1, true)
      if not listed then missing[#missing + 1] = path end
    end
    assert.same({}, missing)
  end)
end)
