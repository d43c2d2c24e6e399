--- OpenAPI document -> endpoint catalogue (the format of misskey.endpoints).
--
-- Shared by tools/gen-endpoints.lua (which adds what only endpoints.json
-- knows: rate limits, error statuses, moderator/admin) and client:schema()
-- (which converts a server's own `GET /api.json`). Pure data in, pure data
-- out; `openapi.serialize` writes a catalogue as a deterministic Lua literal
-- (every key sorted, integers as digits, the same bytes on every Lua).
local openapi = {}

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local sort, concat = table.sort, table.concat
local format = string.format
local setfenv, loadstring = rawget(_G, "setfenv"), rawget(_G, "loadstring") -- Lua 5.1 / LuaJIT

-- Endpoints that pass as reads (permission read:* or no credential) but must
-- not be retried blindly: each one creates, consumes or sends something.
openapi.NOT_IDEMPOTENT = {
  ["admin/accounts/create"] = "creates the first administrator account",
  ["admin/system-webhook/test"] = "sends a webhook request on every call",
  ["app/create"] = "creates a new app (a new secret) on every call",
  ["auth/session/generate"] = "creates a new authentication session on every call",
  ["auth/session/userkey"] = "consumes the session: a second call fails",
  ["i/webhooks/test"] = "sends a webhook request on every call",
  ["request-reset-password"] = "sends a password reset e-mail on every call",
  ["reset-db"] = "wipes the database (test servers only)",
  ["reset-password"] = "consumes the reset token",
  ["sw/unregister"] = "deletes a push subscription",
  ["verify-email"] = "consumes the verification code",
}

-- Errors every endpoint lists; the catalogue keeps the endpoint's own ones.
local COMMON_ERRORS = {
  INVALID_PARAM = true, CREDENTIAL_REQUIRED = true, AUTHENTICATION_FAILED = true, I_AM_AI = true,
  INTERNAL_ERROR = true, RATE_LIMIT_EXCEEDED = true, ACCESS_DENIED = true, PERMISSION_DENIED = true,
  YOUR_ACCOUNT_SUSPENDED = true, YOUR_ACCOUNT_MOVED = true, ROLE_PERMISSION_DENIED = true,
  FILE_REQUIRED = true,
}

local function int(v)
  if type(v) == "number" and v % 1 == 0 and v > -2^53 and v < 2^53 then
    return tonumber(format("%d", v)) -- an integer on Lua 5.3+, a float on 5.1
  end
  return v
end

local function is_null(v) return type(v) == "userdata" or type(v) == "lightuserdata" end

local function first_line(s)
  if type(s) ~= "string" then return nil end
  for line in s:gmatch("[^\n]+") do
    line = line:gsub("^%s+", ""):gsub("%s+$", "")
    if line ~= "" then
      if line == "No description provided." or line:find("^%*%*") then return nil end
      if #line > 200 then line = line:sub(1, 197) .. "..." end
      return line
    end
  end
  return nil
end

local function sorted_list(t)
  local out = {}
  for _, v in ipairs(t) do if type(v) == "string" then out[#out + 1] = v end end
  sort(out)
  return out
end

-- A count the validator prints with %d (a length, a number of items), or nil.
local function count_of(v)
  if type(v) == "number" and v >= 0 and v % 1 == 0 and v < 2^53 then return int(v) end
  return nil
end

local function scalar(v)
  local t = type(v)
  if t == "string" or t == "boolean" then return v end
  if t == "number" then return int(v) end
  return nil
end

--- One JSON schema -> the flat form validation needs (see misskey.schema).
function openapi.flatten(s)
  local out = {}
  if type(s) ~= "table" then return out end
  local t = s.type
  if type(t) == "table" then
    local types = {}
    for _, x in ipairs(t) do
      if x == "null" then out.nullable = true elseif type(x) == "string" then types[#types + 1] = x end
    end
    if #types == 1 then out.type = types[1] elseif #types > 1 then out.type = types end
  elseif type(t) == "string" then
    out.type = t
  end
  if s.nullable == true then out.nullable = true end
  if type(s.enum) == "table" then
    local enum = {}
    for _, v in ipairs(s.enum) do
      if is_null(v) then out.nullable = true else enum[#enum + 1] = scalar(v) end
    end
    out.enum = enum
  end
  if s.default ~= nil then out.default = scalar(s.default) end
  if type(s.minimum) == "number" then out.minimum = int(s.minimum) end
  if type(s.maximum) == "number" then out.maximum = int(s.maximum) end
  out.min_length, out.max_length = count_of(s.minLength), count_of(s.maxLength)
  if type(s.pattern) == "string" then out.pattern = s.pattern end
  if s.format == "misskey:id" then out.id = true elseif type(s.format) == "string" then out.format = s.format end
  if type(s.items) == "table" then out.items = openapi.flatten(s.items) end
  out.min_items, out.max_items = count_of(s.minItems), count_of(s.maxItems)
  if s.uniqueItems == true then out.unique = true end
  if type(s.properties) == "table" then
    local props = {}
    for k, v in pairs(s.properties) do
      if type(k) == "string" then props[k] = openapi.flatten(v) end
    end
    out.properties = props
    if type(s.required) == "table" and #s.required > 0 then out.required = sorted_list(s.required) end
  end
  if s.additionalProperties == true then out.additional = true end
  local alts = s.anyOf or s.oneOf
  if type(alts) == "table" then
    local any = {}
    for i, alt in ipairs(alts) do any[i] = openapi.flatten(alt) end
    out.any_of = any
  end
  if type(s.allOf) == "table" then
    local all = {}
    for i, sub in ipairs(s.allOf) do all[i] = openapi.flatten(sub) end
    out.all_of = all
  end
  local doc = first_line(s.description)
  if doc then out.doc = doc end
  return out
end

-- The top-level request schema -> params, required, any_of_required.
local function collect(s, entry, top)
  if type(s) ~= "table" then return end
  if type(s.properties) == "table" then
    for k, v in pairs(s.properties) do
      if type(k) == "string" and entry.params[k] == nil then entry.params[k] = openapi.flatten(v) end
    end
  end
  if type(s.required) == "table" then
    for _, k in ipairs(s.required) do
      if type(k) == "string" then
        if top then entry._required[k] = true else entry._alt_required[#entry._alt_required + 1] = k end
      end
    end
  end
  if s.additionalProperties == true then entry.additional = true end
  if type(s.allOf) == "table" then
    for _, sub in ipairs(s.allOf) do collect(sub, entry, top) end
  end
  local alts = s.anyOf or s.oneOf
  if type(alts) == "table" then
    for _, alt in ipairs(alts) do
      local saved = entry._alt_required
      entry._alt_required = {}
      collect(alt, entry, false)
      if #entry._alt_required > 0 then
        entry.any_of_required = entry.any_of_required or {}
        entry.any_of_required[#entry.any_of_required + 1] = sorted_list(entry._alt_required)
      end
      entry._alt_required = saved
    end
  end
end

--- Fills params, required, any_of_required, paginate, page_max from a request schema.
function openapi.apply_params(entry, schema)
  entry.params = {}
  entry._required, entry._alt_required = {}, {}
  collect(schema, entry, true)
  local req = {}
  for k in pairs(entry._required) do req[#req + 1] = k end
  sort(req)
  entry.required = req
  entry._required, entry._alt_required = nil, nil
  local p = entry.params
  if p.sinceId or p.untilId then
    entry.paginate = "id"
  elseif p.offset then
    entry.paginate = "offset"
  end
  if p.sinceDate or p.untilDate then entry.date = true end
  if entry.paginate and p.limit then
    entry.page_max = p.limit.maximum
    entry.page_default = p.limit.default
  end
end

--- Is the endpoint a read that is safe to retry?
function openapi.is_write(name, entry)
  if openapi.NOT_IDEMPOTENT[name] then return true end
  local perm = entry.permission
  if not entry.credential then return false end
  return not (type(perm) == "string" and perm:find("^read:") ~= nil)
end

local function description_facts(desc)
  local facts = {}
  if type(desc) ~= "string" then return facts end
  facts.credential = desc:match("%*%*Credential required%*%*: %*(%a+)%*")
  facts.permission = desc:match("%*%*Permission%*%*: %*([^*]+)%*")
  facts.secure = desc:find("**Internal Endpoint**", 1, true) ~= nil
  return facts
end

--- One OpenAPI path item -> (name, entry), or nil if it is not an API operation.
function openapi.convert_operation(path, item)
  if type(item) ~= "table" then return nil end
  local op = item.post or item.get
  if type(op) ~= "table" then return nil end
  local name = path:gsub("^/", "")
  local facts = description_facts(op.description)
  local entry = {
    credential = facts.credential == "Yes",
    permission = facts.permission,
    secure = facts.secure or false,
    moderator = false, admin = false,
    get = type(item.get) == "table",
    multipart = false,
  }
  local responses = type(op.responses) == "table" and op.responses or {}
  local ok200, ok204 = responses["200"] ~= nil, responses["204"] ~= nil
  entry.returns = (ok200 and ok204) and "200|204" or (ok204 and 204 or 200)
  if responses["429"] ~= nil then entry.rate_limited = true end
  local schema
  local body = type(op.requestBody) == "table" and op.requestBody.content
  if type(body) == "table" then
    -- A server's document: a media type that is not an object has no schema.
    local form, plain = body["multipart/form-data"], body["application/json"]
    if form then
      entry.multipart = true
      schema = type(form) == "table" and form.schema or nil
    elseif type(plain) == "table" then
      schema = plain.schema
    end
  end
  openapi.apply_params(entry, schema)
  -- Errors: the examples of the error responses, minus the ones every endpoint has.
  local errs = {}
  for status, res in pairs(responses) do
    local code = tonumber(status)
    local content = type(res) == "table" and type(res.content) == "table" and res.content["application/json"]
    local examples = type(content) == "table" and content.examples
    if code and code >= 400 and type(examples) == "table" then
      for ecode in pairs(examples) do
        if not COMMON_ERRORS[ecode] and (errs[ecode] == nil or errs[ecode] > code) then errs[ecode] = int(code) end
      end
    end
  end
  entry.errors = errs
  entry.doc = first_line(op.description)
  entry.write = openapi.is_write(name, entry)
  return name, entry
end

--- An OpenAPI document (decoded JSON) -> catalogue.
-- `opts.permissions`: the permission list to carry (api.json has none).
function openapi.convert(doc, opts)
  opts = opts or {}
  if type(doc) ~= "table" or type(doc.paths) ~= "table" then
    return nil, "not an OpenAPI document (no paths)"
  end
  local endpoints, n = {}, 0
  for path, item in pairs(doc.paths) do
    if type(path) == "string" then
      local name, entry = openapi.convert_operation(path, item)
      if name then endpoints[name], n = entry, n + 1 end
    end
  end
  if n == 0 then return nil, "the OpenAPI document lists no operations" end
  local info = type(doc.info) == "table" and doc.info or {}
  return {
    source = { software = opts.software or "misskey", version = tostring(info.version or "unknown") },
    permissions = opts.permissions or {},
    endpoints = endpoints,
  }
end

-- ---- serialization ----

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or repeat return
  then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\"
    elseif c == "\n" then return "\\n" elseif c == "\t" then return "\\t" end
    return format("\\%03d", c:byte())
  end) .. '"'
end

local function number(v)
  if v ~= v or v == math.huge or v == -math.huge then error("cannot serialize " .. tostring(v)) end
  if v % 1 == 0 and v > -2^53 and v < 2^53 then return format("%d", v) end
  return format("%.17g", v)
end

local function key(k)
  if type(k) == "string" and k:find("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  if type(k) == "string" then return "[" .. quote(k) .. "]" end
  return "[" .. number(k) .. "]"
end

local function is_list(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n > 0 and n == #t
end

local function keys_of(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  sort(ks, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta == "number" end
    return a < b
  end)
  return ks
end

local ser

-- Tables at depth < `multiline` are written one field a line; deeper ones inline.
ser = function(v, depth, indent, out, multiline)
  local t = type(v)
  if t == "string" then out[#out + 1] = quote(v)
  elseif t == "number" then out[#out + 1] = number(v)
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "table" then
    local list = is_list(v)
    if next(v) == nil then out[#out + 1] = "{}" return end
    local inline = depth >= multiline
    if list then
      local scalars = true
      for _, x in ipairs(v) do if type(x) == "table" then scalars = false end end
      inline = inline or scalars
    end
    local pad = inline and "" or ("\n" .. indent .. "  ")
    out[#out + 1] = "{"
    local first = true
    local items = list and {} or keys_of(v)
    if list then for i = 1, #v do items[i] = i end end
    for _, k in ipairs(items) do
      out[#out + 1] = first and (inline and " " or pad) or (inline and ", " or ("," .. pad))
      first = false
      if not list then out[#out + 1] = key(k) .. " = " end
      ser(v[k], depth + 1, indent .. "  ", out, multiline)
    end
    out[#out + 1] = inline and " }" or ((",\n") .. indent .. "}")
  else
    error("cannot serialize a " .. t)
  end
end

--- catalogue -> Lua source (`return { ... }`), deterministic.
function openapi.serialize(catalogue, header)
  local out = {}
  if header then out[1] = header .. "\n" end
  out[#out + 1] = "return "
  ser(catalogue, 0, "", out, 4)
  out[#out + 1] = "\n"
  return concat(out)
end

--- Loads a serialized catalogue without giving it access to anything.
function openapi.load(source, name)
  if type(source) ~= "string" or source:byte(1) == 27 then return nil, "not a catalogue" end
  local fn, err
  if setfenv then
    fn, err = loadstring(source, name)
    if fn then setfenv(fn, {}) end
  else
    fn, err = load(source, name, "t", {})
  end
  if not fn then return nil, err end
  local ok, cat = pcall(fn)
  if not ok then return nil, tostring(cat) end
  if type(cat) ~= "table" or type(cat.endpoints) ~= "table" then return nil, "not a catalogue" end
  return cat
end

return openapi
