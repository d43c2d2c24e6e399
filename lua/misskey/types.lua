--- LuaLS annotations (meta stubs for lua-language-server) from an OpenAPI document.
--
-- `types.generate{ document = doc }` turns a decoded `/api.json` into one file
-- of annotations: every entity of `components.schemas` as a class, every
-- endpoint's parameters and result, the `client.api` tree and the overloads of
-- `client:request`. tools/gen-endpoints.lua writes types/misskey-api.lua with
-- it; `types.write(client, path)` does the same for any server, so forks and
-- newer versions get completion for their own endpoints.
--
-- The output is comment lines only, whatever the document holds (descriptions
-- become one line, names are reduced to safe characters, literals escaped):
-- nothing a server sends can turn into code. It is the same bytes on every Lua.
local openapi = require "misskey.openapi"

local types = {}

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local concat, sort = table.concat, table.sort
local format = string.format

-- Inline schemas nested deeper than this are typed `any` (a hostile document
-- cannot exhaust the C stack).
local MAX_DEPTH = 24
-- Descriptions are cut to one line of at most this many bytes.
local MAX_DOC = 200

-- Names of the library's own classes: a component with one of these names is
-- renamed, so `misskey.Error` stays the error object of every failure.
local RESERVED = {
  Error = "ErrorResponse", Client = true, Null = true, CallOptions = true, Stream = true, Paginator = true,
  Task = true, TaskSet = true, Bot = true, ChannelName = true, api = true, channels = true, stream = true,
}

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or repeat return
  then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local function is_null(v) return type(v) == "userdata" or type(v) == "lightuserdata" end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  sort(keys)
  return keys
end

--- `s` as one line of text without control characters, at most `max` bytes
-- (cut at a character boundary), or nil when nothing is left.
function types.one_line(s, max)
  if type(s) ~= "string" then return nil end
  s = s:gsub("%c+", " "):gsub("^%s+", ""):gsub("%s+$", "")
  max = max or MAX_DOC
  if #s > max then
    local cut = max - 3
    while cut > 0 and (s:byte(cut + 1) or 0) >= 0x80 and (s:byte(cut + 1) or 0) < 0xC0 do cut = cut - 1 end
    s = s:sub(1, cut) .. "..."
  end
  return s ~= "" and s or nil
end
local one_line = types.one_line

-- The first non-empty line of a description.
local function first_line(s)
  if type(s) ~= "string" then return nil end
  for line in s:gmatch("[^\r\n]+") do
    local l = one_line(line)
    if l then return l end
  end
  return nil
end

-- A number as LuaLS reads it, the same on every Lua.
local function number(v)
  if v ~= v or v == math.huge or v == -math.huge then return nil end
  if v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 then return format("%d", v) end
  return format("%.14g", v)
end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' or c == "\\" then return "\\" .. c end
    return format("\\%03d", c:byte())
  end) .. '"'
end

--- A field name as `---@field` takes it: bare, or `["quoted"]`.
function types.field_key(k)
  if k:find("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  return "[" .. quote(k) .. "]"
end
local field_key = types.field_key

-- One part of a class name: letters, digits and '_' only, not starting with a digit.
local function segment(s)
  s = tostring(s):gsub("[^%w_]", "_")
  if s == "" or s:find("^%d") then s = "_" .. s end
  return s
end

--- The dotted form of an endpoint name in class names: `i/registry/get-all` -> `i.registry.get_all`.
function types.dotted(name)
  local parts = {}
  for seg in name:gmatch("[^/]+") do parts[#parts + 1] = segment(seg) end
  return concat(parts, ".")
end
local dotted = types.dotted

--- The class name of component `name` of `components.schemas` (`Note` -> `misskey.Note`).
function types.entity_class(name)
  local r = RESERVED[name]
  if r == true then return "misskey." .. segment(name) .. "Entity" end
  return "misskey." .. segment(r or name)
end

-- ---- the generator state: claimed names and blocks of lines ----

local function claim(g, name)
  if not g.used[name] then
    g.used[name] = true
    return name
  end
  local i = 2
  while g.used[name .. "_" .. i] do i = i + 1 end
  name = name .. "_" .. i
  g.used[name] = true
  return name
end

local function add_block(g, lines)
  g.blocks[#g.blocks + 1] = lines
  return #g.blocks
end

-- The class a `$ref` names, or "any" for a reference outside components.schemas.
local function ref_class(g, ref)
  local name = ref:match("^#/components/schemas/(.+)$")
  return name and g.entities[name] or "any"
end

local function render(parts, null)
  local out, any = {}, false
  for i = 1, #parts do
    if parts[i] == "any" then any = true end
    out[#out + 1] = parts[i]
  end
  if any then return "any" end
  if null then out[#out + 1] = "misskey.Null" end
  if #out == 0 then return "any" end
  return concat(out, "|")
end

-- Does `t` have a `|` outside brackets and quotes (so that `t[]` needs parentheses)?
local function is_union(t)
  local depth, quoted, i = 0, false, 1
  while i <= #t do
    local c = t:sub(i, i)
    if quoted then
      if c == "\\" then i = i + 1 elseif c == '"' then quoted = false end
    elseif c == '"' then quoted = true
    elseif c == "(" or c == "<" or c == "[" then depth = depth + 1
    elseif c == ")" or c == ">" or c == "]" then depth = depth - 1
    elseif c == "|" and depth == 0 then return true end
    i = i + 1
  end
  return false
end

local function array_of(t)
  if is_union(t) then return "(" .. t .. ")[]" end
  return t .. "[]"
end

-- Is `alt` an inline object with `key` a one-value string enum?
local function tag_of(alt, key)
  local p = type(alt) == "table" and type(alt.properties) == "table" and alt.properties[key]
  local enum = type(p) == "table" and p.enum
  if type(enum) == "table" and #enum == 1 and type(enum[1]) == "string" then return enum[1] end
  return nil
end

-- Names of oneOf/anyOf alternatives: the value of a common one-value enum
-- property (Notification's `type`), else their positions.
local function variant_labels(alts)
  local labels = {}
  local first = alts[1]
  if type(first) == "table" and type(first.properties) == "table" then
    for _, key in ipairs(sorted_keys(first.properties)) do
      local seen, ok = {}, true
      for i, alt in ipairs(alts) do
        local tag = tag_of(alt, key)
        if not tag or seen[tag] then ok = false break end
        seen[tag], labels[i] = true, segment(tag)
      end
      if ok then return labels end
    end
  end
  for i = 1, #alts do labels[i] = "_" .. i end
  return labels
end

local describe -- (schema, mode) -> " # text" or ""

local ty -- (g, schema, name, depth) -> parts, null

-- A class for an inline object: its fields (and nested classes, after it).
local function make_class(g, name, doc, parents, props, required, depth)
  local cname = claim(g, name)
  local lines = {}
  local slot = add_block(g, lines)
  doc = first_line(doc)
  if doc then lines[#lines + 1] = "--- " .. doc end
  lines[#lines + 1] = "---@class " .. cname .. (#parents > 0 and (": " .. concat(parents, ", ")) or "")
  local req = {}
  if type(required) == "table" then
    for _, k in ipairs(required) do if type(k) == "string" then req[k] = true end end
  end
  for _, k in ipairs(sorted_keys(props)) do
    local p = props[k]
    local parts, null = ty(g, p, cname .. "." .. segment(k), depth + 1)
    local optional = not req[k] or (g.mode == "result" and null)
    lines[#lines + 1] = format("---@field %s%s %s%s", field_key(k), optional and "?" or "",
      render(parts, null), describe(p, g.mode))
  end
  lines[#lines + 1] = ""
  g.blocks[slot] = lines
  return cname
end

-- Properties and required names of an allOf (and of one-of groups inside it,
-- whose properties are optional: which group applies is the caller's choice).
local function merge_all_of(list, props, required, parents, g)
  for _, sub in ipairs(list) do
    if type(sub) == "table" then
      if type(sub["$ref"]) == "string" then
        local c = ref_class(g, sub["$ref"])
        if c ~= "any" then parents[#parents + 1] = c end
      end
      if type(sub.properties) == "table" then
        for k, v in pairs(sub.properties) do if props[k] == nil then props[k] = v end end
        if type(sub.required) == "table" then
          for _, k in ipairs(sub.required) do required[#required + 1] = k end
        end
      end
      local alts = sub.anyOf or sub.oneOf
      if type(alts) == "table" then
        for _, alt in ipairs(alts) do
          if type(alt) == "table" and type(alt.properties) == "table" then
            for k, v in pairs(alt.properties) do if props[k] == nil then props[k] = v end end
          end
        end
      end
      if type(sub.allOf) == "table" then merge_all_of(sub.allOf, props, required, parents, g) end
    end
  end
end

local function literal(v)
  if type(v) == "string" then return quote(v) end
  if type(v) == "number" then return number(v) end
  if type(v) == "boolean" then return tostring(v) end
  return nil
end

ty = function(g, s, name, depth)
  local parts, seen, null = {}, {}, false
  local function add(p)
    if p and not seen[p] then seen[p], parts[#parts + 1] = true, p end
  end
  if type(s) ~= "table" or depth > MAX_DEPTH then return { "any" }, false end
  if s.nullable == true then null = true end
  if type(s["$ref"]) == "string" then
    add(ref_class(g, s["$ref"]))
    return parts, null
  end
  if type(s.allOf) == "table" and #s.allOf > 0 then
    local props, required, parents = {}, {}, {}
    merge_all_of(s.allOf, props, required, parents, g)
    if type(s.properties) == "table" then
      for k, v in pairs(s.properties) do if props[k] == nil then props[k] = v end end
    end
    if type(s.required) == "table" then
      for _, k in ipairs(s.required) do required[#required + 1] = k end
    end
    if #parents == 1 and next(props) == nil then
      add(parents[1])
    else
      add(make_class(g, name, s.description, parents, props, required, depth))
    end
    return parts, null
  end
  local alts = s.oneOf or s.anyOf
  if type(alts) == "table" and #alts > 0 then
    local labels = variant_labels(alts)
    for i, alt in ipairs(alts) do
      local p, n = ty(g, alt, name .. "." .. labels[i], depth + 1)
      for _, x in ipairs(p) do add(x) end
      null = null or n
    end
    return parts, null
  end
  local t = s.type
  local list = type(t) == "table" and t or (type(t) == "string" and { t }) or nil
  if not list then
    if type(s.properties) == "table" then list = { "object" }
    elseif type(s.enum) == "table" then list = { "enum" }
    elseif type(s.items) == "table" then list = { "array" }
    else return { "any" }, null end
  end
  local enum_done = false
  for _, tt in ipairs(list) do
    if tt == "null" then
      null = true
    elseif type(s.enum) == "table" and not enum_done and tt ~= "array" and tt ~= "object" then
      enum_done = true
      for _, v in ipairs(s.enum) do
        if is_null(v) then null = true else add(literal(v) or "any") end
      end
    elseif tt == "string" or tt == "integer" or tt == "number" or tt == "boolean" then
      add(tt)
    elseif tt == "array" then
      if type(s.prefixItems) == "table" and #s.prefixItems > 0 then
        local ip, inull = {}, false
        for _, item in ipairs(s.prefixItems) do
          local p, n = ty(g, item, name, depth + 1)
          for _, x in ipairs(p) do ip[#ip + 1] = x end
          inull = inull or n
        end
        add(array_of(render(ip, inull)))
      else
        add(array_of(render(ty(g, s.items, name, depth + 1))))
      end
    elseif tt == "object" then
      if type(s.properties) == "table" and next(s.properties) ~= nil then
        add(make_class(g, name, s.description, {}, s.properties, s.required, depth))
      elseif type(s.additionalProperties) == "table" then
        add("table<string, " .. render(ty(g, s.additionalProperties, name, depth + 1)) .. ">")
      else
        add("table")
      end
    elseif tt ~= "enum" then
      add("any")
    end
  end
  return parts, null
end

local FORMATS = { ["misskey:id"] = "a Misskey id", id = "a Misskey id", ["date-time"] = "date-time", url = "URL",
  uri = "URI", email = "e-mail address" }

describe = function(p, mode)
  if type(p) ~= "table" then return "" end
  local c = {}
  local doc = first_line(p.description)
  if doc then c[#c + 1] = doc end
  if type(p.format) == "string" and FORMATS[p.format] then c[#c + 1] = FORMATS[p.format] end
  if mode == "param" then
    local function n(v) return type(v) == "number" and number(v) or nil end
    local minl, maxl = n(p.minLength), n(p.maxLength)
    if minl or maxl then c[#c + 1] = format("%s..%s characters", minl or "0", maxl or "") end
    local min, max = n(p.minimum), n(p.maximum)
    if min or max then c[#c + 1] = format("%s..%s", min or "", max or "") end
    local mini, maxi = n(p.minItems), n(p.maxItems)
    if mini or maxi then c[#c + 1] = format("%s..%s items", mini or "0", maxi or "") end
    local d = p.default
    if type(d) == "string" then c[#c + 1] = "default " .. quote(d)
    elseif type(d) == "number" and number(d) then c[#c + 1] = "default " .. number(d)
    elseif type(d) == "boolean" then c[#c + 1] = "default " .. tostring(d) end
  end
  local text = one_line(concat(c, "; "), MAX_DOC * 2)
  return text and (" # " .. text) or ""
end

-- ---- endpoints ----

-- "100 per h, 1 s apart" from a catalogue entry's limit.
local function rate(e)
  local l = type(e.limit) == "table" and e.limit
  if not l then return nil end
  local parts = {}
  if type(l.max) == "number" and type(l.duration) == "number" and l.duration > 0 then
    local d = l.duration
    local function per(n, u) return format("%d %s", d / n, u) end
    local unit = (d % 3600000 == 0 and per(3600000, "h")) or (d % 60000 == 0 and per(60000, "min"))
      or (d % 1000 == 0 and per(1000, "s")) or per(1, "ms")
    parts[#parts + 1] = format("%d per %s", l.max, (unit:gsub("^1 ", "")))
  end
  if type(l.min_interval) == "number" then parts[#parts + 1] = format("%g s apart", l.min_interval / 1000) end
  return #parts > 0 and concat(parts, ", ") or nil
end

-- "notes/create: <doc>; permission write:notes; rate limit 300 per h".
local function summary(name, e)
  local s = {}
  if type(e.doc) == "string" then s[#s + 1] = e.doc end
  local perm = type(e.permission) == "string" and e.permission
  s[#s + 1] = perm and ("permission " .. perm) or (e.credential and "credential" or "no credential")
  if e.secure then s[#s + 1] = "native token only" end
  if e.admin then s[#s + 1] = "admin" elseif e.moderator then s[#s + 1] = "moderator" end
  local r = rate(e)
  if r then s[#s + 1] = "rate limit " .. r end
  return one_line(name .. ": " .. concat(s, "; "), MAX_DOC * 2)
end

local function operation(doc, name)
  local item = type(doc.paths) == "table" and doc.paths["/" .. name]
  if type(item) ~= "table" then return nil end
  local op = item.post or item.get
  return type(op) == "table" and op or nil
end

local function request_schema(op)
  local body = type(op.requestBody) == "table" and op.requestBody.content
  if type(body) ~= "table" then return nil end
  local c = body["application/json"] or body["multipart/form-data"]
  return type(c) == "table" and c.schema or nil
end

local function result_schema(op)
  local res = type(op.responses) == "table" and op.responses["200"]
  local content = type(res) == "table" and res.content
  local c = type(content) == "table" and content["application/json"]
  return type(c) == "table" and c.schema or nil
end

-- The top-level parameters: properties of the schema, of its allOf parts and
-- of its anyOf/oneOf alternatives, the first definition of a name winning
-- (the catalogue's rule, misskey.openapi).
local function collect_params(s, props, depth)
  if type(s) ~= "table" or depth > MAX_DEPTH then return end
  if type(s.properties) == "table" then
    for k, v in pairs(s.properties) do if props[k] == nil then props[k] = v end end
  end
  if type(s.allOf) == "table" then
    for _, sub in ipairs(s.allOf) do collect_params(sub, props, depth + 1) end
  end
  local alts = s.anyOf or s.oneOf
  if type(alts) == "table" then
    for _, alt in ipairs(alts) do collect_params(alt, props, depth + 1) end
  end
end

local function result_type(g, name, e, op)
  local schema = op and result_schema(op)
  local t
  if schema then
    g.mode = "result"
    local rname = "misskey.api.results." .. dotted(name)
    g.used[rname] = nil -- reserved for this result: an inline object takes it
    t = render(ty(g, schema, rname, 0))
    if e.returns ~= 200 and t ~= "any" then t = t .. "|true" end
  elseif e.returns == 204 then
    t = "true"
  else
    t = "any"
  end
  return t
end

local function ret(t)
  if t == "any" then return "any, string?, misskey.Error?" end
  return t .. "|nil, string?, misskey.Error?"
end

--- types.generate{ document = doc[, catalogue = cat][, source = text][, generator = text]} -> text, counts | nil, why
-- `document`: a decoded OpenAPI document (`GET /api.json`). `catalogue`: its
-- conversion (misskey.openapi, perhaps with endpoints.json's facts added), made
-- here when absent; it gives the endpoint list, required parameters and the
-- summaries (permission, credential, rate limit). `source` names the server
-- in the header ("Misskey 2026.5.4"); `generator` names what made the file.
---@param opts { document: table, catalogue?: table, source?: string, generator?: string }
---@return string|nil text
---@return table|string counts_or_why counts: classes, aliases, fields, endpoints, typed_results, entities
function types.generate(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'generate' (options table expected, got " .. type(opts) .. ")", 2)
  end
  for k in pairs(opts) do
    if k ~= "document" and k ~= "catalogue" and k ~= "source" and k ~= "generator" then
      error("bad argument #1 to 'generate' (unknown option '" .. tostring(k) .. "')", 2)
    end
  end
  local doc = opts.document
  if type(doc) ~= "table" then
    error("bad argument #1 to 'generate' (option 'document' must be a decoded OpenAPI document, got "
      .. type(doc) .. ")", 2)
  end
  if opts.catalogue ~= nil and type(opts.catalogue) ~= "table" then
    error("bad argument #1 to 'generate' (option 'catalogue' must be a table)", 2)
  end
  for _, k in ipairs{ "source", "generator" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      error("bad argument #1 to 'generate' (option '" .. k .. "' must be a string)", 2)
    end
  end
  local cat = opts.catalogue
  if not cat then
    local why
    cat, why = openapi.convert(doc)
    if not cat then return nil, why end
  end
  if type(cat.endpoints) ~= "table" then return nil, "the catalogue has no endpoints" end

  local g = { used = {}, blocks = {}, entities = {}, mode = "result" }
  for _, reserved in ipairs{ "misskey.Client", "misskey.Error", "misskey.Null", "misskey.CallOptions",
    "misskey.Stream", "misskey.Paginator", "misskey.api" } do
    g.used[reserved] = true
  end
  local components = type(doc.components) == "table" and type(doc.components.schemas) == "table"
    and doc.components.schemas or {}
  local cnames = sorted_keys(components)
  for _, name in ipairs(cnames) do g.entities[name] = claim(g, types.entity_class(name)) end
  local names = sorted_keys(cat.endpoints)
  for _, name in ipairs(names) do
    claim(g, "misskey.api.params." .. dotted(name))
    claim(g, "misskey.api.results." .. dotted(name))
  end
  local counts = { classes = 0, aliases = 0, fields = 0, endpoints = #names, typed_results = 0, entities = #cnames }

  -- Entities: a class, or an alias for a union or a plain type.
  add_block(g, { "-- ---- Entities (components.schemas) ----", "" })
  for _, name in ipairs(cnames) do
    local s, cname = components[name], g.entities[name]
    g.mode = "result"
    local is_object = type(s) == "table" and not s.oneOf and not s.anyOf and not s["$ref"]
      and (type(s.properties) == "table" or type(s.allOf) == "table")
    if is_object then
      g.used[cname] = nil -- make_class claims it
      local parts = ty(g, s, cname, 0)
      if parts[1] ~= cname then -- an allOf of one reference: an alias of it
        g.used[cname] = true
        add_block(g, { "---@alias " .. cname .. " " .. render(parts, false), "" })
      end
    else
      local lines = {}
      add_block(g, lines)
      local parts, null = ty(g, s, cname, 0)
      local text = render(parts, null)
      for _, p in ipairs(parts) do
        if p == cname then text = "any" end -- a hostile self-reference
      end
      local doc_line = type(s) == "table" and first_line(s.description)
      if doc_line then lines[#lines + 1] = "--- " .. doc_line end
      lines[#lines + 1] = "---@alias " .. cname .. " " .. text
      lines[#lines + 1] = ""
    end
  end

  -- Endpoint parameters and results.
  add_block(g, { "-- ---- Endpoint parameters and results ----", "" })
  local results = {}
  for _, name in ipairs(names) do
    local e = cat.endpoints[name]
    local op = operation(doc, name)
    local pclass = "misskey.api.params." .. dotted(name)
    local lines = {}
    local slot = add_block(g, lines)
    local edoc = type(e.doc) == "string" and one_line(e.doc)
    lines[#lines + 1] = "--- Parameters of " .. name .. (edoc and (": " .. edoc) or "")
    lines[#lines + 1] = "---@class " .. pclass
    local props = {}
    collect_params(op and request_schema(op), props, 0)
    local req = {}
    if type(e.required) == "table" then for _, k in ipairs(e.required) do req[k] = true end end
    g.mode = "param"
    for _, k in ipairs(sorted_keys(props)) do
      local p = props[k]
      local parts, null = ty(g, p, pclass .. "." .. segment(k), 1)
      lines[#lines + 1] = format("---@field %s%s %s%s", field_key(k), req[k] and "" or "?", render(parts, null),
        describe(p, "param"))
    end
    lines[#lines + 1] = ""
    g.blocks[slot] = lines
    results[name] = result_type(g, name, e, op)
    if results[name] ~= "any" then counts.typed_results = counts.typed_results + 1 end
  end

  -- The client.api tree: one class per prefix.
  local function sig(name)
    local e = cat.endpoints[name]
    local optional = (type(e.required) ~= "table" or #e.required == 0) and not e.any_of_required
    return format("fun(params%s: misskey.api.params.%s, opts?: misskey.CallOptions): %s", optional and "?" or "",
      dotted(name), ret(results[name]))
  end
  local function node_class(prefix)
    return prefix == "" and "misskey.api" or ("misskey.api." .. dotted(prefix))
  end
  local children = { [""] = {} }
  for _, name in ipairs(names) do
    local prefix = ""
    for seg in name:gmatch("[^/]+") do
      local full = prefix == "" and seg or (prefix .. "/" .. seg)
      children[prefix] = children[prefix] or {}
      children[prefix][seg] = full
      prefix = full
    end
  end
  add_block(g, { "-- ---- client.api ----", "" })
  for _, prefix in ipairs(sorted_keys(children)) do
    local lines = {}
    if prefix == "" then
      lines[#lines + 1] = "--- The endpoints by name; also callable: client.api(\"i/registry/get-all\", params, opts)."
    end
    lines[#lines + 1] = "---@class " .. node_class(prefix)
    if prefix == "" then
      lines[#lines + 1] = "---@overload fun(name: string, params?: table, opts?: misskey.CallOptions): "
        .. "any, string?, misskey.Error?"
    elseif cat.endpoints[prefix] then
      lines[#lines + 1] = "---@overload " .. sig(prefix)
    end
    for _, seg in ipairs(sorted_keys(children[prefix])) do
      local full = children[prefix][seg]
      local e = cat.endpoints[full]
      if children[full] then
        lines[#lines + 1] = format("---@field %s %s%s", field_key(seg), node_class(full),
          e and (" # " .. summary(full, e)) or "")
      else
        lines[#lines + 1] = format("---@field %s %s # %s", field_key(seg), sig(full), summary(full, e))
      end
    end
    lines[#lines + 1] = ""
    add_block(g, lines)
  end

  -- client:request, one overload per endpoint (LuaLS picks it by the literal name).
  local lines = {
    "-- ---- client:request ----",
    "",
    "---@class misskey.Client",
    "---@field api misskey.api the endpoints by name: client.api.notes.create{ text = \"hi\" }",
  }
  for _, name in ipairs(names) do
    local e = cat.endpoints[name]
    local optional = (type(e.required) ~= "table" or #e.required == 0) and not e.any_of_required
    lines[#lines + 1] = format("---@field request fun(self: misskey.Client, endpoint: %s, params%s: "
      .. "misskey.api.params.%s, opts?: misskey.CallOptions): %s", quote(name), optional and "?" or "",
      dotted(name), ret(results[name]))
  end
  lines[#lines + 1] = ""
  add_block(g, lines)

  local out = {
    "---@meta _",
    "-- GENERATED by " .. (one_line(opts.generator) or "misskey.types") .. " from "
      .. (one_line(opts.source) or ("an OpenAPI document, version " .. (one_line(tostring(
        type(doc.info) == "table" and doc.info.version or "unknown")) or "unknown"))) .. "; do not edit.",
    "-- LuaLS annotations: the entities, every endpoint's parameters and result, client.api and",
    "-- client:request (README \"Editor support\"). The library's own classes (misskey.Client,",
    "-- misskey.Error, ...) are annotated in its sources, lua/misskey/.",
    "-- A member that may be JSON null is `T|misskey.Null` and optional: with the client option",
    "-- null = \"nil\" it is left out.",
    "",
  }
  for _, block in ipairs(g.blocks) do
    for _, line in ipairs(block) do
      out[#out + 1] = line
      if line:find("^%-%-%-@class ") then counts.classes = counts.classes + 1
      elseif line:find("^%-%-%-@alias ") then counts.aliases = counts.aliases + 1
      elseif line:find("^%-%-%-@field ") then counts.fields = counts.fields + 1 end
    end
  end
  return concat(out, "\n"), counts
end

--- types.default_path(host) -> "misskey-api-HOST.lua": a file name for a server's stubs.
---@param host string
---@return string
function types.default_path(host)
  if type(host) ~= "string" then
    error("bad argument #1 to 'default_path' (host expected, got " .. type(host) .. ")", 2)
  end
  local h = host:gsub("^%a+://", ""):gsub("[^%w%.%-]", "_")
  return "misskey-api-" .. h .. ".lua"
end

--- types.write(client, path) -> summary | nil, message, err
-- Fetches the server's `GET /api.json` through `client` (no token is sent) and
-- writes its annotations to `path` (replaced whole: written beside it, then
-- renamed). `summary` = { path, version, endpoints, typed_results, classes,
-- aliases, fields, entities }. Network, HTTP and decoding failures come back
-- as `nil, message, err`; so does a file that cannot be written (kind
-- "invalid", err.path).
---@param client misskey.Client
---@param path string
---@return table|nil summary
---@return string|nil message
---@return misskey.Error|nil err
function types.write(client, path)
  if type(client) ~= "table" or type(client.http) ~= "function" then
    error("bad argument #1 to 'write' (client expected, got " .. type(client) .. ")", 2)
  end
  if type(path) ~= "string" or path == "" then
    error("bad argument #2 to 'write' (file path expected, got " .. type(path) .. ")", 2)
  end
  local errors = require "misskey.errors"
  local res, doc, err = client:http{ method = "GET", path = "/api.json", json = true }
  if not res then return nil, doc, err end
  if res.status ~= 200 or type(doc) ~= "table" then
    return errors.fail("http", format("GET /api.json: HTTP %d, no OpenAPI document", res.status),
      { status = res.status, endpoint = "/api.json" })
  end
  local version = type(doc.info) == "table" and doc.info.version
  local text, counts = types.generate{
    document = doc,
    source = format("%s (GET /api.json, version %s)", tostring(client.host), tostring(version or "unknown")),
    generator = "misskey.types.write",
  }
  if not text then
    return errors.fail("decode", "GET /api.json: " .. tostring(counts), { status = res.status, endpoint = "/api.json" })
  end
  local tmp = path .. ".tmp"
  local f, oerr = io.open(tmp, "wb")
  local ok, werr = f ~= nil, oerr
  if f then
    ok, werr = f:write(text)
    f:close()
    if ok then ok, werr = os.rename(tmp, path) end
    if not ok then os.remove(tmp) end
  end
  if not ok then
    return errors.fail("invalid", "types: cannot write " .. path .. " (" .. tostring(werr) .. ")",
      { path = path, reason = "io" })
  end
  return {
    path = path, version = version and tostring(version) or nil, endpoints = counts.endpoints,
    typed_results = counts.typed_results, classes = counts.classes, aliases = counts.aliases,
    fields = counts.fields, entities = counts.entities,
  }
end

return types
