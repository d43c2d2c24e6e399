-- misskey.catalogue: the one loader of the bundled catalogue, with one failure
-- rule (it raises when the catalogue cannot be loaded), and the questions
-- asked of any catalogue.
local catalogue = require "misskey.catalogue"

-- A fresh copy of the module, with misskey.endpoints replaced by `loader`
-- (package.preload), so its first load can be watched failing.
local function fresh(loader)
  local saved_loaded, saved_preload = package.loaded["misskey.endpoints"], package.preload["misskey.endpoints"]
  package.loaded["misskey.endpoints"], package.preload["misskey.endpoints"] = nil, loader
  local ok, result = pcall(function()
    local copy = dofile("lua/misskey/catalogue.lua")
    return { pcall(copy.bundled) }
  end)
  package.loaded["misskey.endpoints"], package.preload["misskey.endpoints"] = saved_loaded, saved_preload
  assert(ok, result)
  return result[1], result[2]
end

describe("misskey.catalogue", function()
  it("loads the bundled catalogue once, on first use", function()
    local cat = catalogue.bundled()
    assert.equal(cat, catalogue.bundled())
    assert.equal(cat, require "misskey.endpoints")
    assert.equal(cat.permissions, catalogue.permissions())
  end)

  it("raises, naming the module, when the catalogue is damaged or not a catalogue", function()
    local ok, err = fresh(function() error("syntax error near 'x'") end)
    assert.is_false(ok)
    assert.matches("misskey.endpoints) cannot be loaded", err, 1, true)
    assert.matches("syntax error near 'x'", err, 1, true)
    ok, err = fresh(function() return { permissions = {} } end)
    assert.is_false(ok)
    assert.matches("not a catalogue", err, 1, true)
  end)

  it("answers for the bundled catalogue or a given one", function()
    local small = { endpoints = { ["notes/create"] = { permission = "write:notes" }, ["i"] = {} } }
    assert.is_table(catalogue.lookup("notes/create"))
    assert.is_nil(catalogue.lookup("notes/show", small))
    assert.is_nil(catalogue.lookup(42))
    assert.same({ "i", "notes/create" }, catalogue.names(small))
    assert.is_true(catalogue.is_prefix("notes", small))
    assert.is_false(catalogue.is_prefix("note", small))
    assert.same({ "notes/create" }, catalogue.suggest("note/create", small))
    assert.equal("unknown endpoint 'note/create' (did you mean 'notes/create'?)",
      (catalogue.unknown_message("note/create", small)))
    assert.same({ "write:notes" }, catalogue.permissions_for({ "notes/create", "i" }, small))
    assert.has_error(function() catalogue.permissions_for{ "nope/nope" } end)
  end)

  it("is the only module that loads misskey.endpoints", function()
    local p = assert(io.popen("find lua -name '*.lua' | sort"))
    local files = {}
    for path in p:lines() do
      local f = assert(io.open(path))
      for line in f:lines() do
        local code = line:gsub("%-%-.*$", "") -- comments may name it
        if code:find("[\"']misskey%.endpoints[\"']") then files[#files + 1] = path break end
      end
      f:close()
    end
    p:close()
    assert.same({ "lua/misskey/catalogue.lua" }, files)
  end)
end)
