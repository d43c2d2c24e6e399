-- How the modules under lua/misskey/ depend on each other, read from their
-- source: no require cycle (lazy or not), no module reading a client's private
-- fields (the client's declared interface is the way in), one module that
-- reads the environment (misskey.env), and one that waits (misskey.loop), which
-- alone with misskey.ngx (its implementation inside nginx) tests the host.
local ROOT = "lua/"


local function files()
  local p = assert(io.popen("find " .. ROOT .. "misskey -name '*.lua' | sort"))
  local list = {}
  for path in p:lines() do list[#list + 1] = path end
  p:close()
  return list
end

local function module_name(path)
  return (path:sub(#ROOT + 1):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", "."))
end

-- The file's code without comments (a `--` inside a string on a require line does not occur here).
local function code_of(path)
  local f = assert(io.open(path))
  local out = {}
  for line in f:lines() do
    if not line:find("^%s*%-%-") then out[#out + 1] = (line:gsub("%s%-%-[^\"']*$", "")) end
  end
  f:close()
  return table.concat(out, "\n")
end

local modules = {} -- name -> { path, code, requires = { name = true } }
for _, path in ipairs(files()) do
  local name = module_name(path)
  if name ~= "misskey.endpoints" then -- generated data: requires nothing
    local code = code_of(path)
    local requires = {}
    for target in code:gmatch("require%s*%(?%s*[\"']([%w%._]+)[\"']") do requires[target] = true end
    for target in code:gmatch("pcall%(%s*require%s*,%s*[\"']([%w%._]+)[\"']") do requires[target] = true end
    modules[name] = { path = path, code = code, requires = requires }
  end
end

describe("the module structure", function()
  it("finds the modules and their requires", function()
    assert.is_table(modules["misskey.client"])
    assert.is_true(modules["misskey.client"].requires["misskey.ratelimit"])
    assert.is_true(modules["misskey"].requires["misskey.client"])
  end)

  it("has no require cycle, lazy or not", function()
    local state, stack, cycles = {}, {}, {}
    local function visit(name)
      state[name] = "open"
      stack[#stack + 1] = name
      for target in pairs(modules[name].requires) do
        if modules[target] then
          if state[target] == "open" then
            local from
            for i = 1, #stack do if stack[i] == target then from = i end end
            local cycle = {}
            for i = from, #stack do cycle[#cycle + 1] = stack[i] end
            cycle[#cycle + 1] = target
            cycles[#cycles + 1] = table.concat(cycle, " -> ")
          elseif not state[target] then
            visit(target)
          end
        end
      end
      stack[#stack] = nil
      state[name] = "done"
    end
    local names = {}
    for name in pairs(modules) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do if not state[name] then visit(name) end end
    assert.same({}, cycles)
  end)

  it("reads a client's private fields only inside the client", function()
    local reaches = {}
    for name, m in pairs(modules) do
      if name ~= "misskey.client" and not name:find("^misskey%.client%.") then
        for field in m.code:gmatch("[%w_]*client%._[%a_]+") do reaches[#reaches + 1] = name .. ": " .. field end
        for field in m.code:gmatch("require%(\"misskey%.client\"%)%._[%a_]+") do
          reaches[#reaches + 1] = name .. ": " .. field
        end
      end
    end
    table.sort(reaches)
    assert.same({}, reaches)
  end)

  it("waits only through misskey.loop: no other module steps an engine or sets its timers or watches", function()
    local waiters = {}
    for name, m in pairs(modules) do
      if name ~= "misskey.loop" and (m.code:find(":step%(") or m.code:find(":timer%(") or m.code:find(":watch%(")) then
        waiters[#waiters + 1] = name
      end
    end
    table.sort(waiters)
    assert.same({}, waiters)
  end)

  it("only the runtimes test which host they run in: no other module reads nginx's `ngx`", function()
    local testers = {}
    for name, m in pairs(modules) do
      local runtime = name == "misskey.loop" or name == "misskey.ngx" or name:find("^misskey%.ngx%.")
      if not runtime and (m.code:find("%f[%w_]ngx%.") or m.code:find("[\"']ngx[\"']")) then
        testers[#testers + 1] = name
      end
    end
    table.sort(testers)
    assert.same({}, testers)
  end)

  it("reads the environment only through misskey.env", function()
    local readers = {}
    for name, m in pairs(modules) do
      if name ~= "misskey.env" and (m.code:find("os%.getenv") or m.code:find("_getenv")) then
        readers[#readers + 1] = name
      end
    end
    table.sort(readers)
    assert.same({}, readers)
  end)
end)
