-- A reader of LuaLS annotations, and the checks of spec/types_spec.lua.
--
-- lua-language-server is not packaged for Debian, so the suite reads the
-- annotation files itself: `---@class`, `---@field`, `---@alias`, `---@param`,
-- `---@return`, `---@type`, `---@overload` and the `function` definitions they
-- describe, with a parser of LuaLS's type expressions (unions, arrays, `?`,
-- `fun(...)`, `table<K, V>`, `{ k: T }`, literals). `check` then reports drift
-- between the annotations, the code and the docs as a list of problems.
local M = {}

local BUILTIN = {}
for w in ([[any nil boolean string number integer table function thread userdata lightuserdata
  true false unknown self]]):gmatch("%S+") do BUILTIN[w] = true end

-- ---- type expressions ----

-- Tokens of an annotation's text: names, strings, numbers, symbols; `#` and
-- anything after it is a description.
local function tokenize(s)
  local toks, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c:find("%s") then
      i = i + 1
    elseif c == "#" then
      break
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n and s:sub(j, j) ~= c do
        if s:sub(j, j) == "\\" then j = j + 1 end
        j = j + 1
      end
      toks[#toks + 1] = { t = "string", v = s:sub(i, j) }
      i = j + 1
    elseif s:sub(i, i + 2) == "..." then
      toks[#toks + 1] = { t = "name", v = "..." }
      i = i + 3
    elseif s:sub(i, i + 1) == "[]" then
      toks[#toks + 1] = { t = "sym", v = "[]" }
      i = i + 2
    elseif c:find("[%w_\128-\255]") then
      local j = s:find("[^%w_%.%*%-\128-\255]", i) or (n + 1)
      local v = s:sub(i, j - 1)
      toks[#toks + 1] = { t = v:find("^%-?%d+%.?%d*$") and "number" or "name", v = v }
      i = j
    elseif c == "-" and s:sub(i + 1, i + 1):find("%d") then
      local j = s:find("[^%d%.]", i + 1) or (n + 1)
      toks[#toks + 1] = { t = "number", v = s:sub(i, j - 1) }
      i = j
    else
      toks[#toks + 1] = { t = "sym", v = c }
      i = i + 1
    end
  end
  return toks
end

-- A parser over a token list: parse_type returns a node
-- { kind = "union", items } | { kind = "name", name, args } | { kind = "literal" }
-- | { kind = "array", of } | { kind = "fun", params, returns } | { kind = "table", fields } | { kind = "optional", of }
local Parser = {}
Parser.__index = Parser

local function parser(toks) return setmetatable({ toks = toks, i = 1 }, Parser) end
function Parser:peek(k) return self.toks[self.i + (k or 0)] end
function Parser:is(v, k)
  local t = self:peek(k)
  return t ~= nil and t.t == "sym" and t.v == v
end
function Parser:take() local t = self.toks[self.i]; self.i = self.i + 1; return t end
function Parser:expect(v)
  if not self:is(v) then
    local t = self:peek()
    error(("expected '%s', got '%s'"):format(v, t and t.v or "end"), 0)
  end
  return self:take()
end

function Parser:primary()
  local t = self:peek()
  if not t then error("a type expected, got the end", 0) end
  if t.t == "string" or t.t == "number" then
    self:take()
    return { kind = "literal", value = t.v }
  end
  if t.t == "sym" and t.v == "(" then
    self:take()
    local inner = self:type()
    self:expect(")")
    return inner
  end
  if t.t == "sym" and t.v == "{" then
    self:take()
    local fields = {}
    while not self:is("}") do
      local key
      if self:is("[") then
        self:take()
        key = self:type()
        self:expect("]")
      else
        local k = self:take()
        if not k or k.t ~= "name" then error("a field name expected in a table type", 0) end
        key = k.v
      end
      if self:is("?") then self:take() end
      self:expect(":")
      fields[#fields + 1] = { key = key, type = self:type() }
      if self:is(",") then self:take() else break end
    end
    self:expect("}")
    return { kind = "table", fields = fields }
  end
  if t.t == "name" and t.v == "fun" and self:is("(", 1) then
    self:take()
    self:take()
    local params = {}
    while not self:is(")") do
      local name = self:take()
      if not name or name.t ~= "name" then error("a parameter name expected in fun()", 0) end
      local p = { name = name.v }
      if self:is("?") then self:take(); p.optional = true end
      if self:is(":") then
        self:take()
        p.type = self:type()
      end
      params[#params + 1] = p
      if self:is(",") then self:take() else break end
    end
    self:expect(")")
    local returns = {}
    if self:is(":") then
      self:take()
      repeat
        returns[#returns + 1] = self:type()
        -- `, name:` after a return list is the enclosing fun's next parameter
        local more = self:is(",") and not (self:peek(1) and self:peek(1).t == "name"
          and (self:is(":", 2) or (self:is("?", 2) and self:is(":", 3))))
        if more then self:take() end
      until not more
    end
    return { kind = "fun", params = params, returns = returns }
  end
  if t.t == "name" then
    self:take()
    local node = { kind = "name", name = t.v }
    if self:is("<") then
      self:take()
      node.args = {}
      repeat
        node.args[#node.args + 1] = self:type()
        local more = self:is(",")
        if more then self:take() end
      until not more
      self:expect(">")
    end
    return node
  end
  error("a type expected, got '" .. t.v .. "'", 0)
end

function Parser:unit()
  local node = self:primary()
  while true do
    if self:is("[]") then
      self:take()
      node = { kind = "array", of = node }
    elseif self:is("?") then
      self:take()
      node = { kind = "optional", of = node }
    else
      return node
    end
  end
end

function Parser:type()
  local items = { self:unit() }
  while self:is("|") do
    self:take()
    items[#items + 1] = self:unit()
  end
  if #items == 1 then return items[1] end
  return { kind = "union", items = items }
end

--- Parses the type at the start of `text`; returns node, the rest of the tokens' parser.
function M.parse_type(text)
  local p = parser(tokenize(text))
  local node = p:type()
  return node, p
end

-- Every type name a node refers to, into `out` (name -> true).
local function names_of(node, out)
  if not node then return out end
  local k = node.kind
  if k == "name" then
    out[node.name] = true
    for _, a in ipairs(node.args or {}) do names_of(a, out) end
  elseif k == "union" then
    for _, x in ipairs(node.items) do names_of(x, out) end
  elseif k == "array" or k == "optional" then
    names_of(node.of, out)
  elseif k == "fun" then
    for _, p in ipairs(node.params) do names_of(p.type, out) end
    for _, r in ipairs(node.returns) do names_of(r, out) end
  elseif k == "table" then
    for _, f in ipairs(node.fields) do
      if type(f.key) == "table" then names_of(f.key, out) end
      names_of(f.type, out)
    end
  end
  return out
end
M.names_of = names_of

-- Lua source without comments and with strings blanked (same length), so a
-- scan for calls is not misled by their text.
local function code_only(src)
  local out, i, n = {}, 1, #src
  while i <= n do
    local c = src:sub(i, i)
    if src:sub(i, i + 1) == "--" then
      local eq = src:match("^%-%-%[(=*)%[", i)
      local j
      if eq then
        j = select(2, src:find("%]" .. eq .. "%]", i)) or n
      else
        j = (src:find("\n", i) or (n + 1)) - 1
      end
      out[#out + 1] = src:sub(i, j):gsub("[^\n]", " ")
      i = j + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n and src:sub(j, j) ~= c do
        if src:sub(j, j) == "\\" then j = j + 1 end
        j = j + 1
      end
      out[#out + 1] = c .. src:sub(i + 1, j - 1):gsub("[^\n]", "_") .. c
      i = j + 1
    elseif src:match("^%[=*%[", i) then
      local eq = src:match("^%[(=*)%[", i)
      local j = select(2, src:find("%]" .. eq .. "%]", i)) or n
      out[#out + 1] = src:sub(i, j):gsub("[^\n]", "_")
      i = j + 1
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end
M.code_only = code_only

-- ---- files ----

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function lines_of(text)
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

local function new_db()
  return { classes = {}, aliases = {}, refs = {}, functions = {}, problems = {}, files = {}, modules = {},
    declarations = {} }
end

local function class_entry(db, name, where)
  local c = db.classes[name]
  if not c then
    c = { name = name, parents = {}, fields = {}, methods = {}, where = where, assigned = {} }
    db.classes[name] = c
  end
  return c
end

local function problem(db, where, msg)
  db.problems[#db.problems + 1] = where .. ": " .. msg
end

-- Records the type names of `node` as references made at `where`.
local function refer(db, node, where, scope)
  for name in pairs(names_of(node, {})) do
    db.refs[#db.refs + 1] = { name = name, where = where, scope = scope }
  end
end

local function parse_at(db, text, where)
  local ok, node, p = pcall(M.parse_type, text)
  if not ok then
    problem(db, where, "cannot parse the type in '" .. text .. "': " .. tostring(node))
    return nil
  end
  return node, p
end

local BLOCK_OPEN = { ["function"] = true, ["if"] = true, ["do"] = true }

-- Does the function whose `function` keyword is the first one at or after
-- byte `from` of `code` (comments and strings blanked) return a value? A
-- `return` of that function itself (not of a nested one) followed by an
-- expression. Blocks are counted by keyword on a stack: function/if/do ... end
-- (`while` and `for` bring their own `do`), repeat ... until.
local function returns_value(code, from)
  local stack, started = {}, false
  local body = code:sub(from)
  for pos, word in body:gmatch("()%f[%w_]([%a_][%w_]*)") do
    if word == "function" then
      stack[#stack + 1] = "function"
      started = true
    elseif started and BLOCK_OPEN[word] then
      stack[#stack + 1] = word
    elseif started and word == "repeat" then
      stack[#stack + 1] = "repeat"
    elseif started and (word == "end" or word == "until") then
      stack[#stack] = nil
      if #stack == 0 then return false end
    elseif started and word == "return" then
      local functions = 0
      for i = 1, #stack do
        if stack[i] == "function" then functions = functions + 1 end
      end
      if functions == 1 then
        local c = body:match("^%s*(.)", pos + 6)
        local w = body:match("^%s*([%a_][%w_]*)", pos + 6)
        if c and c ~= ";" and w ~= "end" and w ~= "else" and w ~= "elseif" and w ~= "until" then return true end
      end
    end
  end
  return false
end

-- The module a source file is (`lua/misskey/x/init.lua` -> "misskey.x"), given the
-- directory the `misskey` package is in.
local function module_name(path, root)
  local rel = path:sub(#root + 2):gsub("%.lua$", ""):gsub("/", ".")
  return (rel:gsub("%.init$", ""))
end

--- Reads one file's annotations into `db`. `scope` is "types" (every name
-- must resolve) or "source" (only misskey.* names are checked); `module` is
-- the module a source file is.
function M.read_file(db, path, scope, module)
  local text = read(path)
  local lines = lines_of(text)
  local generated = text:find("^%-%-%-@meta[^\n]*\n%-%- GENERATED") ~= nil
  local file = { path = path, lines = lines, generated = generated, scope = scope, module = module,
    bind = {}, requires = {}, defs = {}, assigns = {}, classes = {} }
  db.files[#db.files + 1] = file
  if module then db.modules[module] = file end
  local code = scope == "source" and code_only(text) or nil
  local offsets, at = {}, 1
  for n, line in ipairs(lines) do
    offsets[n] = at
    at = at + #line + 1
  end
  local current -- the class the next ---@field lines belong to
  local function fresh() return { params = {}, param_types = {}, returns = 0, overloads = 0, doc = false } end
  local pending = fresh()
  local bind = file.bind -- local name -> class name (`---@class X` then `local T = {}`)
  local last_class
  for n, line in ipairs(lines) do
    local where = path .. ":" .. n
    local tag, rest = line:match("^%s*%-%-%-@(%w+)%s*(.*)$")
    if tag then
      if tag == "class" then
        local name, parents = rest:match("^([%w_%.%-]+)%s*:?%s*(.*)$")
        if not name then
          problem(db, where, "a ---@class without a name")
        else
          current = class_entry(db, name, where)
          last_class = name
          file.classes[#file.classes + 1] = { name = name, where = where }
          if not generated then
            db.declarations[name] = db.declarations[name] or {}
            table.insert(db.declarations[name], where)
          end
          for parent in (parents or ""):gmatch("[%w_%.%-]+") do
            current.parents[#current.parents + 1] = parent
            db.refs[#db.refs + 1] = { name = parent, where = where, scope = scope }
          end
        end
      elseif tag == "field" then
        if not current then
          problem(db, where, "a ---@field outside a class")
        else
          local key, tail = rest:match('^%[(%b"")%]%s*(.*)$')
          if key then
            key = key:sub(2, -2)
          else
            key, tail = rest:match("^([%w_]+)%s*(.*)$")
          end
          if not key then
            problem(db, where, "a ---@field without a name")
          else
            local optional = tail:sub(1, 1) == "?"
            if optional then tail = tail:sub(2) end
            local node = parse_at(db, tail, where)
            if node then
              refer(db, node, where, scope)
              local list = current.fields[key] or {}
              current.fields[key] = list
              list[#list + 1] = { type = node, optional = optional, where = where }
            end
          end
        end
      elseif tag == "alias" then
        local name, tail = rest:match("^([%w_%.%-]+)%s+(.*)$")
        if not name then
          problem(db, where, "a ---@alias without a name and a type")
        else
          local node = parse_at(db, tail, where)
          if node then
            refer(db, node, where, scope)
            db.aliases[name] = { type = node, where = where }
          end
        end
        current = nil
      elseif tag == "param" then
        local name, tail = rest:match("^([%w_%.]+)%??%s*(.*)$")
        if name then
          pending.params[#pending.params + 1] = name
          local node = parse_at(db, tail, where)
          if node then
            refer(db, node, where, scope)
            if node.kind == "name" then pending.param_types[name] = node.name end
          end
        else
          problem(db, where, "a ---@param without a name")
        end
      elseif tag == "return" then
        pending.returns = pending.returns + 1
        local node = parse_at(db, rest, where)
        if node then refer(db, node, where, scope) end
      elseif tag == "type" or tag == "overload" then
        if tag == "overload" then pending.overloads = pending.overloads + 1 end
        local node = parse_at(db, rest, where)
        if node then
          refer(db, node, where, scope)
          if tag == "type" then pending.type = node end
          if tag == "overload" and current then
            current.overloads = current.overloads or {}
            current.overloads[#current.overloads + 1] = node
          end
        end
      end
    elseif line:find("^%s*$") then
      -- A blank line ends a doc block: what was above it annotates nothing below.
      current, last_class = nil, nil
      pending = fresh()
    elseif line:find("^%s*%-%-") then
      if line:find("^%s*%-%-%-") then pending.doc = true end
    else
      current = nil
      local lname = line:match("^%s*local%s+([%w_]+)%s*=")
      if lname and last_class then bind[lname] = last_class end
      last_class = nil
      local rname, rmod = line:match("^%s*local%s+([%w_]+)%s*=%s*require%s*%(?%s*[\"']([%w_%.]+)[\"']%s*%)?%s*$")
      if rname then file.requires[rname] = rmod end
      local ret = line:match("^return%s+([%w_]+)%s*$")
      if ret then file.returns = ret end
      local owner, sep, fname, params = line:match("^%s*function%s+([%w_]+)([:.])([%w_]+)%s*%(([^)]*)%)")
      if not owner then
        fname, params = line:match("^%s*local%s+function%s+([%w_]+)%s*%(([^)]*)%)")
        if fname then owner, sep = "", "." end
      end
      if not owner then
        params = line:match("^%s*return%s+function%s*%(([^)]*)%)")
        if params then owner, sep, fname = "", ".", "(returned)" end
      end
      if owner then
        local list = {}
        for p in params:gmatch("[%w_%.]+") do list[#list + 1] = p end
        -- `---@param Name misskey.X` on a function: Name is that class inside it (a mixin's class).
        for _, p in ipairs(list) do
          local t = pending.param_types[p]
          if t and t:find("^misskey%.") then bind[p] = t end
        end
        local f = { owner = owner, name = fname, method = sep == ":", params = list, annotated = pending.params,
          returns = pending.returns, doc = pending.doc, typed = pending.type, where = where, scope = scope,
          file = file, line = n }
        if code then
          local kw = code:find("%f[%w_]function%f[^%w_]", offsets[n])
          f.returns_value = kw and returns_value(code, kw) or false
        end
        file.defs[#file.defs + 1] = f
        db.functions[#db.functions + 1] = f
      else
        local aowner, aname, expr = line:match("^%s*([%w_]+)%.([%w_]+)%s*=%s*([^=].-)%s*$")
        if aowner and not expr:find("^=") then
          file.assigns[#file.assigns + 1] = { owner = aowner, name = aname, expr = expr, typed = pending.type,
            where = where }
        end
      end
      pending = fresh()
    end
  end
end

local function list_files(dir)
  local out = {}
  local p = assert(io.popen("env -u LD_PRELOAD find '" .. dir .. "' -name '*.lua' | sort"))
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- The class a local name of `file` stands for: bound by ---@class or ---@param,
-- or a module required whose returned table is a class.
local function class_of(db, file, name)
  if file.bind[name] then return file.bind[name] end
  local mod = file.requires[name]
  local target = mod and db.modules[mod]
  return target and target.returns and target.bind[target.returns] or nil
end

-- The function a module's field `fname` is (`fname` nil: the function the module
-- returns), as a definition, or nil.
local function module_function(db, mod, fname)
  local target = db.modules[mod]
  if not target or not target.returns then return nil end
  for _, f in ipairs(target.defs) do
    if fname and f.owner == target.returns and f.name == fname then return f end
    if not fname and f.owner == "" and f.name == target.returns then return f end
  end
  return nil
end

-- Binds the sources' definitions and assignments to their classes.
local function resolve(db)
  for _, file in ipairs(db.files) do
    for _, f in ipairs(file.defs) do
      local cls = f.owner ~= "" and class_of(db, file, f.owner)
      if cls then
        f.class = cls
        class_entry(db, cls, f.where).methods[f.name] = f
      end
    end
    for _, a in ipairs(file.assigns) do
      local cls = class_of(db, file, a.owner)
      if cls then
        a.class = cls
        -- `T.name = X.fn` (X a required module), `require("m").fn`, `require "m"` (a module that is a function)
        local x, fname = a.expr:match("^([%w_]+)%.([%w_]+)$")
        local target
        if x and file.requires[x] then
          target = module_function(db, file.requires[x], fname)
        else
          local mod, fn = a.expr:match("^require%s*%(%s*[\"']([%w_%.]+)[\"']%s*%)%.([%w_]+)$")
          if not mod then mod = a.expr:match("^require%s*%(?%s*[\"']([%w_%.]+)[\"']%s*%)?$") end
          if mod then target = module_function(db, mod, fn) end
        end
        a.target = target
        class_entry(db, cls, a.where).assigned[a.name] = a
      end
    end
  end
end

--- Reads the annotation files under `types_dir` (and the sources under
-- `source_dir`, the `misskey` package's directory) into a new db.
function M.read(types_dir, source_dir)
  local db = new_db()
  for _, path in ipairs(list_files(types_dir)) do M.read_file(db, path, "types") end
  if source_dir then
    local root = source_dir:match("^(.*)/[^/]+$") or "."
    for _, path in ipairs(list_files(source_dir)) do
      M.read_file(db, path, "source", module_name(path, root))
    end
  end
  resolve(db)
  return db
end

-- ---- checks ----

local function defined(db, name)
  return BUILTIN[name] or db.classes[name] ~= nil or db.aliases[name] ~= nil
end

-- Every name referenced is defined (in sources: every misskey.* name).
local function check_refs(db)
  for _, r in ipairs(db.refs) do
    local name = r.name
    if name ~= "..." and not defined(db, name) and (r.scope == "types" or name:find("^misskey%.")) then
      problem(db, r.where, "undefined type " .. name)
    end
  end
end

-- A class's methods: its `function` definitions, its fields of function type, and
-- what the sources assign to it with an annotation (`---@type`, or an annotated
-- function of a module: `misskey.run = loop.run`).
local function methods_of(db, cname)
  local out = {}
  local c = db.classes[cname]
  if not c then return out end
  for name in pairs(c.methods) do out[name] = true end
  for name, list in pairs(c.fields) do
    for _, f in ipairs(list) do
      if f.type.kind == "fun" then out[name] = true end
    end
  end
  for name, a in pairs(c.assigned) do
    if (a.typed and a.typed.kind == "fun") or a.target then out[name] = true end
  end
  return out
end
-- Generated files hold annotations only: nothing in a server's document can become code.
local function check_generated(db)
  for _, f in ipairs(db.files) do
    if f.generated then
      for n, line in ipairs(f.lines) do
        if line ~= "" and not line:find("^%-%-") then
          problem(db, f.path .. ":" .. n, "a generated annotation file has a line of code")
        end
      end
    end
  end
end

-- A function's annotations cover it: a ---@param for every parameter and none for
-- a parameter it lacks, and a ---@return when it returns a value.
local function check_annotated(db, f, label)
  local annotated = {}
  for _, p in ipairs(f.annotated) do annotated[p] = true end
  local actual = {}
  for _, p in ipairs(f.params) do
    actual[p] = true
    if not annotated[p] then problem(db, f.where, ("%s: parameter '%s' has no ---@param"):format(label, p)) end
  end
  for _, p in ipairs(f.annotated) do
    if not actual[p] then problem(db, f.where, ("%s: ---@param '%s' names no parameter"):format(label, p)) end
  end
  if f.returns_value and f.returns == 0 then
    problem(db, f.where, label .. " returns a value but has no ---@return")
  end
end

local function public(name) return name:sub(1, 1) ~= "_" end

-- Every function of a class in types/ (the stubs) is annotated.
local function check_params(db)
  for _, f in ipairs(db.functions) do
    if f.scope == "types" and f.class then check_annotated(db, f, f.class .. ":" .. f.name) end
  end
end

-- One definition per class: a hand-written ---@class of a name appears once (the
-- generated files add overloads to the classes they extend).
local function check_definitions(db)
  for name, list in pairs(db.declarations) do
    if #list > 1 then problem(db, list[2], ("%s is defined twice (%s)"):format(name, table.concat(list, ", "))) end
  end
end

-- The sources' classes: every public function of a class is annotated, and every
-- class with functions in the sources is one the runtime check covers.
local function check_sources(db, runtime)
  local uncovered = {}
  for _, file in ipairs(db.files) do
    if file.scope == "source" then
      for _, f in ipairs(file.defs) do
        if f.class and public(f.name) then
          if runtime and not runtime[f.class] then uncovered[f.class] = uncovered[f.class] or f.where end
          check_annotated(db, f, f.class .. (f.method and ":" or ".") .. f.name)
        end
      end
      for _, a in ipairs(file.assigns) do
        if a.class and public(a.name) and a.target then
          local t = a.target
          check_annotated(db, t, ("%s.%s (%s)"):format(a.class, a.name, a.expr))
        end
      end
    end
  end
  for cls, where in pairs(uncovered) do
    problem(db, where, cls .. " has functions in the sources but no runtime object to check them against")
  end
end

-- The literal of a fun node's parameter `i`, unquoted, or nil.
local function literal_param(node, i)
  local p = node.params[i]
  local t = p and p.type
  if t and t.kind == "literal" and t.value:find('^"') then return t.value:sub(2, -2) end
  return nil
end

local function dotted(name)
  local parts = {}
  for seg in name:gmatch("[^/]+") do
    seg = seg:gsub("[^%w_]", "_")
    if seg:find("^%d") then seg = "_" .. seg end
    parts[#parts + 1] = seg
  end
  return table.concat(parts, ".")
end

-- Is the node plain `any`?
local function is_any(node)
  return node.kind == "name" and node.name == "any"
end

-- Every endpoint has a client:request overload whose result resolves to a
-- defined type, a params class, and a place in the client.api tree.
local function check_endpoints(db, endpoints, counts)
  local client = db.classes["misskey.Client"]
  local overloads = {}
  for _, f in ipairs(client and client.fields.request or {}) do
    local name = f.type.kind == "fun" and literal_param(f.type, 2)
    if name then
      if overloads[name] then problem(db, f.where, "a second client:request overload for " .. name) end
      overloads[name] = f
    end
  end
  local names = {}
  for name in pairs(endpoints) do names[#names + 1] = name end
  table.sort(names)
  counts.endpoints, counts.typed = #names, 0
  for _, name in ipairs(names) do
    local f = overloads[name]
    if not f then
      problem(db, "misskey.Client", "no client:request overload for the endpoint " .. name)
    else
      local result = f.type.returns[1]
      local unresolved = {}
      for n in pairs(names_of(result, {})) do
        if not defined(db, n) then unresolved[#unresolved + 1] = n end
      end
      table.sort(unresolved)
      if not result or is_any(result) then
        problem(db, f.where, "the result of " .. name .. " is not typed")
      elseif #unresolved > 0 then
        problem(db, f.where, ("the result of %s does not resolve: %s"):format(name, table.concat(unresolved, ", ")))
      else
        counts.typed = counts.typed + 1
      end
    end
    if not db.classes["misskey.api.params." .. dotted(name)] then
      problem(db, "types", "no class misskey.api.params." .. dotted(name))
    end
    local cls = "misskey.api"
    local segs = {}
    for seg in name:gmatch("[^/]+") do segs[#segs + 1] = seg end
    for i, seg in ipairs(segs) do
      local c = db.classes[cls]
      local field = c and c.fields[seg] and c.fields[seg][1]
      if not field then
        problem(db, "types", ("client.api.%s: %s has no field %s"):format(name:gsub("/", "."), cls, seg))
        break
      end
      if field.type.kind == "name" then
        cls = field.type.name
        if i == #segs and not (db.classes[cls] and db.classes[cls].overloads) then
          problem(db, "types", "client.api." .. name:gsub("/", ".") .. " is not callable")
        end
      elseif i < #segs then
        problem(db, "types", ("client.api.%s: %s.%s is a function"):format(name:gsub("/", "."), cls, seg))
        break
      end
    end
  end
  for name, f in pairs(overloads) do
    if not endpoints[name] then problem(db, f.where, "a client:request overload for an unknown endpoint " .. name) end
  end
end

-- misskey.Error has every field the code sets and the docs name, and every kind.
local function check_error(db, want_fields, want_kinds)
  local err = db.classes["misskey.Error"]
  if not err then
    problem(db, "types", "misskey.Error is not defined")
    return
  end
  for _, field in ipairs(want_fields) do
    if not err.fields[field.name] then
      problem(db, field.where, "misskey.Error has no field " .. field.name)
    end
  end
  local kind = err.fields.kind and err.fields.kind[1].type
  local kinds = {}
  for _, item in ipairs(kind and (kind.kind == "union" and kind.items or { kind }) or {}) do
    if item.kind == "literal" then kinds[item.value:sub(2, -2)] = true end
  end
  for _, k in ipairs(want_kinds) do
    if not kinds[k.name] then problem(db, k.where, "misskey.Error's kind lacks \"" .. k.name .. "\"") end
  end
end

-- The runtime's public functions and the annotated methods agree.
local function check_runtime(db, runtime)
  local cnames = {}
  for cname in pairs(runtime) do cnames[#cnames + 1] = cname end
  table.sort(cnames)
  for _, cname in ipairs(cnames) do
    local object = runtime[cname]
    local declared = methods_of(db, cname)
    local actual = {}
    for k, v in pairs(object) do
      if type(k) == "string" and type(v) == "function" and not k:find("^_") then actual[k] = true end
    end
    for name in pairs(actual) do
      if not declared[name] then problem(db, cname, cname .. ":" .. name .. " exists but is not annotated") end
    end
    for name in pairs(declared) do
      if not actual[name] and public(name) then
        problem(db, cname, "annotated method " .. cname .. ":" .. name .. " does not exist")
      end
    end
  end
end

--- check{ types_dir, source_dir, endpoints, runtime, error_fields, error_kinds } -> problems, db, counts
-- `endpoints`: the catalogue's endpoints (name -> entry). `runtime`: class name ->
-- the table of its methods. `error_fields`/`error_kinds`: { name, where } lists.
function M.check(opts)
  local db = M.read(opts.types_dir, opts.source_dir)
  local counts = {}
  check_refs(db)
  for name, c in pairs(db.classes) do
    for _, parent in ipairs(c.parents) do
      if not defined(db, parent) then problem(db, c.where, name .. " extends an undefined class " .. parent) end
    end
  end
  check_generated(db)
  check_params(db)
  check_definitions(db)
  if opts.source_dir then check_sources(db, opts.runtime) end
  if opts.endpoints then check_endpoints(db, opts.endpoints, counts) end
  if opts.error_fields then check_error(db, opts.error_fields, opts.error_kinds or {}) end
  if opts.runtime then check_runtime(db, opts.runtime) end
  local n = { classes = 0, aliases = 0, fields = 0 }
  for _, c in pairs(db.classes) do
    n.classes = n.classes + 1
    for _, list in pairs(c.fields) do n.fields = n.fields + #list end
  end
  for _ in pairs(db.aliases) do n.aliases = n.aliases + 1 end
  for k, v in pairs(n) do counts[k] = v end
  table.sort(db.problems)
  return db.problems, db, counts
end

-- ---- what the code and the docs say about errors ----


--- Fields and kinds the sources give errors: the keys of a table passed to
-- errors.fail/errors.new, `err.x = ...` assignments, and the literal kinds.
function M.error_facts(source_dir)
  local fields, kinds, seen, seen_kind = {}, {}, {}, {}
  for _, path in ipairs(list_files(source_dir)) do
    local src = read(path)
    local code = code_only(src)
    local function line_of(pos) return select(2, src:sub(1, pos):gsub("\n", "")) + 1 end
    local function add(name, pos)
      if not seen[name] then
        seen[name] = true
        fields[#fields + 1] = { name = name, where = path .. ":" .. line_of(pos) }
      end
    end
    for _, fname in ipairs{ "fail", "new" } do
      local from = 1
      while true do
        local s, e = code:find("errors%." .. fname .. "%s*%(", from)
        if not s then break end
        -- the call's arguments, to its closing parenthesis
        local depth, j = 1, e + 1
        while j <= #code and depth > 0 do
          local c = code:sub(j, j)
          if c == "(" or c == "{" then depth = depth + 1 elseif c == ")" or c == "}" then depth = depth - 1 end
          j = j + 1
        end
        local args = code:sub(e + 1, j - 2)
        local kind = src:sub(e + 1, j - 2):match('^%s*"(%l+)"')
        if kind and not seen_kind[kind] then
          seen_kind[kind] = true
          kinds[#kinds + 1] = { name = kind, where = path .. ":" .. line_of(s) }
        end
        -- the keys of a table literal among the arguments (its top level only)
        local t0 = args:find("{", 1, true)
        if t0 then
          local d, body = 0, {}
          for k = t0, #args do
            local c = args:sub(k, k)
            if c == "{" or c == "(" then d = d + 1 elseif c == "}" or c == ")" then d = d - 1 end
            if d == 0 then break end
            if d == 1 and c ~= "{" then body[#body + 1] = c elseif d > 1 then body[#body + 1] = " " end
          end
          for key in ("," .. table.concat(body)):gmatch(",%s*([%a_][%w_]*)%s*=[^=]") do add(key, s) end
        end
        from = j
      end
    end
    for pos, name in code:gmatch("()%f[%w_]err%.([%a_][%w_]*)%s*=[^=]") do add(name, pos) end
  end
  return fields, kinds
end

--- Fields the docs name: `err.x` anywhere, and the "fields" column of README's
--- table of error kinds; kinds: the first column of that table.
function M.doc_error_facts(paths)
  local fields, kinds, seen = {}, {}, {}
  for _, path in ipairs(paths) do
    local text = read(path)
    local n = 0
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
      n = n + 1
      local where = path .. ":" .. n
      for name in line:gmatch("%f[%w_]err%.([%a_][%w_]*)") do
        if not seen[name] then seen[name] = true fields[#fields + 1] = { name = name, where = where } end
      end
      local kind, rest = line:match('^| `"(%l+)"`[^|]*|[^|]*|(.*)|%s*$')
      if kind then
        kinds[#kinds + 1] = { name = kind, where = where }
        for name in rest:gsub("%b()", ""):gmatch("`([%a_][%w_]*)") do
          if not seen[name] then seen[name] = true fields[#fields + 1] = { name = name, where = where } end
        end
      end
    end
  end
  return fields, kinds
end

return M
