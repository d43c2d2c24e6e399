-- The LuaLS annotations: the library's own classes in its sources (lua/misskey/)
-- and the generated types/misskey-api.lua and types/misskey-streaming.lua, checked
-- against the code and the docs by spec/support/annotations.lua; drift seeded into
-- a copy must be caught. Then misskey.types, which writes the annotations of any server.
local A = require "support.annotations"
local misskey = require "misskey"
local json = require "misskey.json"
local types = require "misskey.types"

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

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("env -u LD_PRELOAD mkdir -p '" .. p .. "'"))
  return p
end

local function rmdir(p) os.execute("env -u LD_PRELOAD rm -rf '" .. p .. "'") end

local DOCS = { "README.md", "docs/architecture.md", "docs/security.md", "docs/unattended.md" }

-- The tables of the runtime's classes (their methods), from objects made without
-- any network: every class of the sources with public functions is one of these.
local function runtime()
  local auth = require "misskey.auth"
  local bot = require "misskey.bot"
  local loop = require "misskey.loop"
  local testing = require "misskey.testing"
  local webhook = require "misskey.webhook"
  local c = misskey.new{ host = "http://127.0.0.1:9", token = false }
  local s = c:stream()
  local ch = s:channel("homeTimeline")
  local it = c:paginate("notes/timeline", {})
  local listener = assert(webhook.listen{ secret = "s", port = 0 })
  local r = {
    ["misskey"] = misskey,
    ["misskey.Client"] = getmetatable(c), ["misskey.Stream"] = getmetatable(s),
    ["misskey.stream.Channel"] = getmetatable(ch), ["misskey.Paginator"] = getmetatable(it),
    ["misskey.Task"] = loop.Task,
    ["misskey.Bot"] = bot.Bot, ["misskey.bot.Context"] = bot.Context, ["misskey.bot.Store"] = bot.Store,
    ["misskey.auth"] = auth, ["misskey.auth.Session"] = getmetatable(auth.miauth{ host = "misskey.example" }),
    ["misskey.credentials"] = require "misskey.credentials",
    ["misskey.testing"] = testing, ["misskey.testing.Fake"] = getmetatable(testing.fake()),
    ["misskey.testing.Actor"] = testing.Actor, ["misskey.testing.WebSocket"] = testing.WebSocket,
    ["misskey.webhook"] = webhook, ["misskey.webhook.Listener"] = getmetatable(listener),
    ["misskey.webhook.Seen"] = getmetatable(webhook.seen()),
  }
  listener:close()
  s:close()
  return r
end

-- What the sources and the docs say about errors (read once).
local fields, kinds
local function check(dir, src)
  if not fields then
    fields, kinds = A.error_facts("lua/misskey")
    local dfields, dkinds = A.doc_error_facts(DOCS)
    for _, f in ipairs(dfields) do fields[#fields + 1] = f end
    for _, k in ipairs(dkinds) do kinds[#kinds + 1] = k end
  end
  return A.check{
    types_dir = dir, source_dir = src or "lua/misskey", endpoints = require("misskey.endpoints").endpoints,
    runtime = runtime(), error_fields = fields, error_kinds = kinds,
  }
end

local function has(problems, pattern)
  for _, p in ipairs(problems) do
    if p:find(pattern, 1, true) then return true end
  end
  return false, "no problem mentions '" .. pattern .. "' in:\n" .. table.concat(problems, "\n")
end

describe("the type parser of the checker", function()
  it("reads LuaLS type expressions and stops where a description starts", function()
    local node = A.parse_type("fun(self: misskey.Client, endpoint: \"notes/create\", params?: P, "
      .. "opts?: misskey.CallOptions): misskey.Note[]|nil, string?, misskey.Error? # a description")
    assert.equal("fun", node.kind)
    assert.equal(4, #node.params)
    assert.equal('"notes/create"', node.params[2].type.value)
    assert.equal(3, #node.returns)
    local names = A.names_of(node, {})
    assert.truthy(names["misskey.Note"] and names["misskey.Error"] and names.P and names["misskey.CallOptions"])
    local t, rest = A.parse_type('"a"|"b"|misskey.Null what it is')
    assert.equal(3, #t.items)
    assert.equal("what", rest:peek().v)
    node = A.parse_type("table<string, (string|number)[]>|{ a: integer, [string]: boolean }?")
    assert.equal("union", node.kind)
    node = A.parse_type("fun(handler: fun(body: misskey.Note), n: integer): boolean")
    assert.equal(2, #node.params)
    assert.equal(1, #node.returns)
  end)

  it("reports what it cannot parse", function()
    assert.has_error(function() A.parse_type("fun(a: ") end)
    assert.has_error(function() A.parse_type("|string") end)
    local dir = tmpdir()
    write(dir .. "/bad.lua", "---@meta\n---@class misskey.X\n---@field a fun(: string\n")
    local problems = A.check{ types_dir = dir }
    rmdir(dir)
    assert(has(problems, "bad.lua:3: cannot parse the type"))
  end)
end)

describe("types/", function()
  it("agrees with the code and the docs: every endpoint's result typed, every type defined", function()
    local problems, db, counts = check("types")
    assert.same({}, problems)
    assert.equal(434, counts.endpoints)
    assert.equal(434, counts.typed)
    -- what the issue asks for, by example
    local client = db.classes["misskey.Client"]
    local timeline
    for _, f in ipairs(client.fields.request) do
      if f.type.params[2] and f.type.params[2].type.value == '"notes/timeline"' then timeline = f.type end
    end
    local result = timeline.returns[1]
    assert.equal("array", result.items[1].kind)
    assert.equal("misskey.Note", result.items[1].of.name)
    assert.truthy(db.classes["misskey.Note"].fields.text)
    assert.truthy(db.classes["misskey.api.params.notes.create.poll"].fields.choices)
    assert.same({ "misskey.UserLite", "misskey.UserDetailedNotMeOnly", "misskey.MeDetailedOnly" },
      db.classes["misskey.MeDetailed"].parents)
  end)

  it("types streaming: channel names, each channel's events and their payloads", function()
    local _, db = check("types")
    local stream = db.classes["misskey.Stream"]
    local by_name = {}
    for _, f in ipairs(stream.fields.channel) do
      local p = f.type.params[2].type
      if p.kind == "literal" then by_name[p.value:sub(2, -2)] = f.type.returns[1].name end
    end
    assert.equal("misskey.channels.homeTimeline", by_name.homeTimeline)
    local alias = db.aliases["misskey.ChannelName"].type
    assert.equal(17, #alias.items) -- every channel of streaming.json but main
    for _, item in ipairs(alias.items) do
      assert.truthy(by_name[item.value:sub(2, -2)], item.value .. " has no stream:channel overload")
    end
    local function handler_of(cls, event)
      for _, f in ipairs(db.classes[cls].fields.on) do
        local ev = f.type.params[2].type
        if ev.kind == "literal" and ev.value == '"' .. event .. '"' then return f.type.params[3].type end
      end
    end
    assert.equal("misskey.Note", handler_of("misskey.channels.homeTimeline", "note").params[1].type.name)
    assert.equal("misskey.Notification", handler_of("misskey.Stream", "notification").params[1].type.name)
    assert.equal("misskey.EmojiDetailed",
      db.classes["misskey.channels.broadcast.emojiAdded"].fields.emoji[1].type.name)
  end)

  it("annotates the library's own classes in the sources, each defined once", function()
    local _, db = check("types")
    for _, cls in ipairs{ "misskey.Client", "misskey.Error", "misskey.Stream", "misskey.stream.Channel",
        "misskey.Paginator", "misskey.Task", "misskey.Bot", "misskey.bot.Context", "misskey.bot.Store",
        "misskey.auth.Session", "misskey.credentials", "misskey.testing.Fake", "misskey.testing.Actor",
        "misskey.webhook.Listener", "misskey.ClientOptions", "misskey.CallOptions", "misskey.StreamOptions" } do
      local where = db.declarations[cls]
      assert(where and #where == 1, cls .. " is not defined exactly once")
      assert.matches("^lua/misskey/", where[1])
    end
    assert.equal("fun", db.classes["misskey.Client"].fields.request[1].type.kind)
    assert.truthy(db.classes["misskey.Error"].fields.permission)
    assert.equal("misskey.Client", db.classes["misskey.Client"].methods.upload.class) -- client/upload.lua
    assert.equal("misskey.testing.Fake", db.classes["misskey.testing.Fake"].methods.notes.class)
  end)

  describe("with drift seeded into a copy", function()
    local dir

    before_each(function()
      dir = tmpdir()
      assert(os.execute("env -u LD_PRELOAD mkdir -p '" .. dir .. "/types' '" .. dir .. "/lua'"
        .. " && env -u LD_PRELOAD cp types/*.lua '"
        .. dir .. "/types/' && env -u LD_PRELOAD cp -r lua/misskey '" .. dir .. "/lua/'"))
    end)
    after_each(function() rmdir(dir) end)

    local function seed(file, from, to)
      local path = dir .. "/" .. file
      local text = read(path)
      local i, j = text:find(from, 1, true)
      assert(i, "the seed's text is not in " .. file .. ": " .. from)
      write(path, text:sub(1, i - 1) .. to .. text:sub(j + 1))
    end

    local function check_copy() return check(dir .. "/types", dir .. "/lua/misskey") end

    it("is clean before anything is seeded", function()
      assert.same({}, (check_copy()))
    end)

    it("finds a method of the code that lost its annotation", function()
      seed("lua/misskey/client/upload.lua", "function Client:upload(file, fields, opts)",
        "local function upload(file, fields, opts)")
      assert(has(check_copy(), "misskey.Client:upload exists but is not annotated"))
    end)

    it("finds an annotated method the code does not have", function()
      seed("lua/misskey/bot.lua", "---@field store misskey.bot.Store", "---@field store misskey.bot.Store\n"
        .. "---@field frobnicate fun(self: misskey.Bot)")
      seed("lua/misskey/testing/actor.lua", "return Actor", "--- Gone.\n---@return integer\n"
        .. "function Actor:wave() return 1 end\n\nreturn Actor")
      local problems = check_copy()
      assert(has(problems, "annotated method misskey.Bot:frobnicate does not exist"))
      assert(has(problems, "annotated method misskey.testing.Actor:wave does not exist"))
    end)

    it("finds a parameter or a result without an annotation, and a ---@param that names no parameter", function()
      seed("lua/misskey/client.lua", "---@param event table\nfunction Client:emit(event)",
        "---@param ev table\nfunction Client:emit(event)")
      seed("lua/misskey/testing/init.lua", "---@return misskey.testing.Fake\nfunction Fake:reset()",
        "function Fake:reset()")
      seed("lua/misskey/stream/channel.lua", "  ---@param event string\n  ---@param fn? function\n",
        "  ---@param fn? function\n")
      local problems = check_copy()
      assert(has(problems, "misskey.Client:emit: parameter 'event' has no ---@param"))
      assert(has(problems, "misskey.Client:emit: ---@param 'ev' names no parameter"))
      assert(has(problems, "misskey.testing.Fake:reset returns a value but has no ---@return"))
      assert(has(problems, "misskey.stream.Channel:off: parameter 'event' has no ---@param"))
    end)

    it("follows a module's function assigned to a class (misskey.run = loop.run)", function()
      seed("lua/misskey/loop.lua", "---@param fn function\n---@param ... any fn's arguments\n---@return any ... fn's "
        .. "results\nfunction loop.run(fn, ...)", "function loop.run(fn, ...)")
      local problems = check_copy()
      assert(has(problems, "misskey.run (loop.run): parameter 'fn' has no ---@param"))
      assert(has(problems, "misskey.run (loop.run) returns a value but has no ---@return"))
    end)

    it("finds a class defined twice, and a class of the sources the runtime check does not cover", function()
      seed("lua/misskey/env.lua", "\nreturn ", "\n--- Again.\n---@class misskey.Task\n---@field status string\n\n"
        .. "--- Not checked.\n---@class misskey.Frob\nlocal Frob = {}\n\n--- x.\n---@return integer\n"
        .. "function Frob:x() return 1 end\n\nreturn ")
      local problems = check_copy()
      assert(has(problems, "misskey.Task is defined twice"))
      assert(has(problems, "misskey.Frob has functions in the sources but no runtime object"))
    end)

    it("finds an undefined type", function()
      seed("lua/misskey/client/upload.lua", "---@return misskey.DriveFile|nil file",
        "---@return misskey.DriveFiel|nil file")
      assert(has(check_copy(), "undefined type misskey.DriveFiel"))
    end)

    it("finds an endpoint whose result does not resolve, or has no overload", function()
      seed("types/misskey-api.lua", 'endpoint: "notes/timeline", params?: misskey.api.params.notes.timeline, '
        .. "opts?: misskey.CallOptions): misskey.Note[]|nil", 'endpoint: "notes/timeline", params?: '
        .. "misskey.api.params.notes.timeline, opts?: misskey.CallOptions): misskey.Noet[]|nil")
      seed("types/misskey-api.lua", '---@field request fun(self: misskey.Client, endpoint: "ping"',
        "---@field ping_ fun(self")
      local problems = check_copy()
      assert(has(problems, "the result of notes/timeline does not resolve: misskey.Noet"))
      assert(has(problems, "no client:request overload for the endpoint ping"))
    end)

    it("finds a field of misskey.Error the code sets or the docs name, and a missing kind", function()
      seed("lua/misskey/errors.lua", "---@field retry_after? number", "---@field retry_afterr? number")
      seed("lua/misskey/errors.lua", "---@field permission? string", "---@field permissionn? string")
      seed("lua/misskey/errors.lua", '"invalid"|"auth"|', '"auth"|')
      local problems = check_copy()
      assert(has(problems, "misskey.Error has no field retry_after"))
      assert(has(problems, "misskey.Error has no field permission"))
      assert(has(problems, "misskey.Error's kind lacks \"invalid\""))
    end)

    it("finds a line of code in a generated file", function()
      seed("types/misskey-api.lua", "---@class misskey.Note\n", "---@class misskey.Note\nos.exit(1)\n")
      assert(has(check_copy(), "a generated annotation file has a line of code"))
    end)
  end)
end)

-- A small document with the shapes Misskey's has: nullable members, enums,
-- arrays of references, nested objects, a discriminated oneOf, an allOf.
local function document()
  local null = json.null
  local function op(params, result, extra)
    local o = {
      description = "**Credential required**: *No*",
      responses = result and { ["200"] = { content = { ["application/json"] = { schema = result } } } }
        or { ["204"] = { description = "OK (without any results)" } },
    }
    if params then o.requestBody = { content = { ["application/json"] = { schema = params } } } end
    for k, v in pairs(extra or {}) do o[k] = v end
    return { post = o }
  end
  local note = { ["$ref"] = "#/components/schemas/Note" }
  return {
    openapi = "3.1.0",
    info = { version = "2099.1.0" },
    components = { schemas = {
      UserLite = { type = "object", properties = { id = { type = "string", format = "id" },
        host = { type = { "string", "null" }, description = "The local host is represented with `null`." } },
        required = { "id", "host" } },
      MeDetailed = { type = "object", allOf = { { ["$ref"] = "#/components/schemas/UserLite" },
        { type = "object", properties = { isAdmin = { type = "boolean" } }, required = { "isAdmin" } } } },
      Note = { type = "object", properties = {
        id = { type = "string", format = "id" },
        text = { type = { "string", "null" } },
        visibility = { type = "string", enum = { "public", "home" } },
        reply = { oneOf = { note, { type = "null" } } },
        user = { ["$ref"] = "#/components/schemas/UserLite" },
        files = { type = "array", items = { ["$ref"] = "#/components/schemas/Missing" } },
        poll = { type = { "object", "null" }, properties = { multiple = { type = "boolean" } } },
        reactions = { type = "object", additionalProperties = { type = "number" } },
        acceptance = { type = { "string", "null" }, enum = { "likeOnly", null } },
      }, required = { "id", "text", "visibility", "user" } },
      Notification = { type = "object", oneOf = {
        { type = "object", properties = { type = { type = "string", enum = { "mention" } }, note = note } },
        { type = "object", properties = { type = { type = "string", enum = { "follow" } },
          user = { ["$ref"] = "#/components/schemas/UserLite" } } },
      } },
      DriveFile = { type = "object", properties = { id = { type = "string" } }, required = { "id" } },
      Error = { type = "object", properties = { error = { type = "object", properties = {
        code = { type = "string" } } } } },
    } },
    paths = {
      ["/notes/create"] = op({ type = "object", properties = {
        text = { type = { "string", "null" }, minLength = 1, maxLength = 3000 },
        poll = { type = { "object", "null" }, properties = { choices = { type = "array", items = { type = "string" },
          minItems = 2 } }, required = { "choices" } },
      } }, { type = "object", properties = { createdNote = note }, required = { "createdNote" } }),
      ["/notes/timeline"] = op({ type = "object", properties = { limit = { type = "integer", default = 10 } } },
        { type = "array", items = note }),
      ["/notes/delete"] = op({ type = "object", properties = { noteId = { type = "string", format = "misskey:id" } },
        required = { "noteId" } }),
      ["/users/show"] = op({ type = "object", anyOf = {
        { type = "object", properties = { userId = { type = "string" } }, required = { "userId" } },
        { type = "object", properties = { userIds = { type = "array", items = { type = "string" } } },
          required = { "userIds" } } } },
        { oneOf = { { ["$ref"] = "#/components/schemas/MeDetailed" }, { type = "array",
          items = { ["$ref"] = "#/components/schemas/UserLite" } } } }),
      ["/i/registry/get-all"] = op(nil, { type = "object" }),
    },
  }
end

-- The problems found in the files of `dir`.
local function in_dir(problems, dir)
  local out = {}
  for _, p in ipairs(problems) do
    if p:sub(1, #dir + 1) == dir .. "/" then out[#out + 1] = p end
  end
  return out
end

local function lines_of(text)
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

describe("misskey.types.generate", function()
  it("types entities, parameters, results and client:request from a document", function()
    local text, counts = assert(types.generate{ document = document() })
    local function line(s) assert.truthy(text:find("\n" .. s .. "\n", 1, true), "no line: " .. s) end
    line("---@class misskey.Note")
    line("---@field text? string|misskey.Null")
    line('---@field visibility "public"|"home"')
    line("---@field reply? misskey.Note|misskey.Null")
    line("---@field files? any[]") -- a reference to no component
    line("---@field poll? misskey.Note.poll|misskey.Null")
    line("---@field reactions? table<string, number>")
    line('---@field acceptance? "likeOnly"|misskey.Null')
    line("---@class misskey.MeDetailed: misskey.UserLite")
    line("---@alias misskey.Notification misskey.Notification.mention|misskey.Notification.follow")
    line("---@class misskey.ErrorResponse") -- the component Error: misskey.Error is the library's
    line("---@field poll? misskey.api.params.notes.create.poll|misskey.Null")
    line("---@field choices string[] # 2.. items")
    line("---@field text? string|misskey.Null # 1..3000 characters")
    line("---@field createdNote misskey.Note")
    line('---@field request fun(self: misskey.Client, endpoint: "notes/timeline", params?: '
      .. "misskey.api.params.notes.timeline, opts?: misskey.CallOptions): misskey.Note[]|nil, string?, misskey.Error?")
    line('---@field request fun(self: misskey.Client, endpoint: "notes/delete", params: '
      .. "misskey.api.params.notes.delete, opts?: misskey.CallOptions): true|nil, string?, misskey.Error?")
    line('---@field request fun(self: misskey.Client, endpoint: "users/show", params: '
      .. "misskey.api.params.users.show, opts?: misskey.CallOptions): misskey.MeDetailed|misskey.UserLite[]|nil, "
      .. "string?, misskey.Error?")
    line('---@field ["get-all"] fun(params?: misskey.api.params.i.registry.get_all, opts?: misskey.CallOptions): '
      .. "table|nil, string?, misskey.Error? # i/registry/get-all: no credential")
    assert.equal(5, counts.endpoints)
    assert.equal(5, counts.typed_results)
    assert.equal(6, counts.entities)
    -- With the library's own annotations (the sources) beside it, every name resolves.
    local dir = tmpdir()
    write(dir .. "/api.lua", text)
    local problems, _, c = A.check{ types_dir = dir, source_dir = "lua/misskey",
      endpoints = assert(require("misskey.openapi").convert(document())).endpoints }
    problems = in_dir(problems, dir) -- the sources name entities this small document lacks
    rmdir(dir)
    assert.same({}, problems)
    assert.equal(5, c.typed)
  end)

  it("writes the same text on every run (and every Lua: the generator's spec compares 5.1 and 5.4)", function()
    assert.equal(types.generate{ document = document() }, types.generate{ document = document() })
  end)

  it("turns a hostile document into comments only", function()
    local doc = document()
    local s = doc.components.schemas
    s.Note.description = "line one\nos.exit(1)\r\n]] os.exit(2) --[["
    s.Note.properties["x\nos.exit(3)"] = { type = "string", enum = { 'a"\nos.exit(4)', "b\\" } }
    s["Evil\nos.exit(5)"] = { type = "object", properties = { a = { type = "string" } } }
    s.Loop = { ["$ref"] = "#/components/schemas/Loop" }
    local deep = { type = "string" }
    for _ = 1, 500 do deep = { type = "object", properties = { d = deep } } end
    s.Deep = deep
    doc.info.version = "1\nos.exit(6)"
    doc.paths["/notes/create"].post.description = "**Credential required**: *No*\nos.exit(7)"
    local text = assert(types.generate{ document = doc, source = "evil\nos.exit(8)" })
    for n, line in ipairs(lines_of(text)) do
      assert(line == "" or line:find("^%-%-"), "line " .. n .. " is code: " .. line)
    end
    assert.truthy(text:find('---@field ["x\\010os.exit(3)"]? "a\\"\\010os.exit(4)"|"b\\\\"', 1, true))
    assert.truthy(text:find("---@alias misskey.Loop any\n", 1, true))
    local dir = tmpdir()
    write(dir .. "/api.lua", text)
    local problems = in_dir(A.check{ types_dir = dir, source_dir = "lua/misskey" }, dir)
    rmdir(dir)
    assert.same({}, problems)
  end)

  it("raises on misuse naming the option, and returns nil, why for a document without paths", function()
    assert.has_error(function() types.generate() end,
      "bad argument #1 to 'generate' (options table expected, got nil)")
    assert.has_error(function() types.generate{ document = "x" } end,
      "bad argument #1 to 'generate' (option 'document' must be a decoded OpenAPI document, got string)")
    assert.has_error(function() types.generate{ document = {}, color = 1 } end,
      "bad argument #1 to 'generate' (unknown option 'color')")
    local text, why = types.generate{ document = { info = {} } }
    assert.is_nil(text)
    assert.equal("not an OpenAPI document (no paths)", why)
  end)
end)

describe("misskey.types.write", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmdir(dir) end)

  -- A server as a transport (nothing leaves the process) that records what it was sent.
  local function server(reply)
    local seen = {}
    local t = {
      request = function(req)
        seen[#seen + 1] = req
        return reply(req)
      end,
    }
    return misskey.new{ host = "https://types.example", token = "SECRET-TOKEN", transport = t }, seen
  end

  it("writes a server's annotations from its /api.json, sending no token", function()
    local body = json.encode(document())
    local client, seen = server(function()
      return { status = 200, headers = { ["content-type"] = "application/json" }, body = body }
    end)
    local summary = assert(types.write(client, dir .. "/misskey-api-types.example.lua"))
    assert.equal(dir .. "/misskey-api-types.example.lua", summary.path)
    assert.equal("2099.1.0", summary.version)
    assert.equal(5, summary.endpoints)
    assert.equal(5, summary.typed_results)
    assert.equal(6, summary.entities)
    local text = read(summary.path)
    assert.matches("^%-%-%-@meta _\n%-%- GENERATED by misskey%.types%.write from types%.example "
      .. "%(GET /api%.json, version 2099%.1%.0%)", text)
    assert.truthy(text:find('endpoint: "notes/timeline"', 1, true))
    assert.equal(1, #seen)
    assert.equal("GET", seen[1].method)
    assert.equal("https://types.example/api.json", seen[1].url)
    assert.is_nil((seen[1].body or ""):find("SECRET", 1, true))
    for k, v in pairs(seen[1].headers or {}) do
      assert.is_nil(tostring(v):find("SECRET", 1, true), "the token went in header " .. k)
    end
    assert.equal("misskey-api-types.example.lua", types.default_path(client.host))
  end)

  it("returns nil, message, err for a server without a document, and for a file it cannot write", function()
    local client = server(function() return { status = 404, headers = {}, body = "not here" } end)
    local ok, msg, err = types.write(client, dir .. "/x.lua")
    assert.is_nil(ok)
    assert.equal("GET /api.json: HTTP 404, no OpenAPI document", msg)
    assert.equal("http", err.kind)
    assert.equal(404, err.status)
    client = server(function()
      return { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"paths": [' }
    end)
    ok, msg, err = types.write(client, dir .. "/x.lua")
    assert.is_nil(ok)
    assert.equal("decode", err.kind)
    assert.matches("invalid JSON", msg)
    client = server(function()
      return { status = 200, headers = { ["content-type"] = "application/json" }, body = json.encode(document()) }
    end)
    ok, msg, err = types.write(client, dir .. "/no/such/dir/x.lua")
    assert.is_nil(ok)
    assert.equal("invalid", err.kind)
    assert.equal(dir .. "/no/such/dir/x.lua", err.path)
    assert.matches("types: cannot write", msg)
  end)

  it("raises on misuse naming the argument", function()
    assert.has_error(function() types.write(nil, "x") end, "bad argument #1 to 'write' (client expected, got nil)")
    local client = misskey.new{ host = "https://types.example", token = false }
    assert.has_error(function() types.write(client) end, "bad argument #2 to 'write' (file path expected, got nil)")
  end)
end)
