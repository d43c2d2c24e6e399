--- misskey.client.upload: client:upload, drive/files/create as
-- multipart/form-data, the file streamed from disk. Part of the client: it
-- adds the method to the Client class (misskey.client calls it with the class).
local argcheck = require "misskey.argcheck"
local catalogue = require "misskey.catalogue"
local errors = require "misskey.errors"
local form = require "misskey.client.form"
local json = require "misskey.json"
local ratelimit = require "misskey.ratelimit"

local argerror = argcheck.argerror
local seconds_problem, MAX_SECONDS = argcheck.seconds_problem, argcheck.MAX_SECONDS

local UPLOAD_OPTIONS = { timeout = true, progress = true }
local FILE_KEYS = { path = true, data = true, filename = true, type = true }

--- In-memory bytes (or a path with another name or type) for client:upload.
---@class misskey.UploadFile
---@field data? string the bytes
---@field path? string a file to stream from disk
---@field filename? string the name Misskey stores
---@field type? string the content type

local UPLOAD_ENDPOINT = "drive/files/create"
local UPLOAD_CALL = { idempotent = false } -- a write: 429s are waited out, nothing else is repeated

local function basename(path)
  return path:match("([^/]+)/*$") or path
end

-- A field value as multipart text: Misskey casts "true"/"false" and numbers
-- back (docs/protocol.md section 4). (misskey.null never gets here: it leaves the field out.)
local function field_text(key, v)
  local text = form.text(v)
  if text then return text end
  argerror(2, "upload", ("fields.%s must be a string, number or boolean, got %s"):format(key, tostring(v)), 2)
end

-- Names go into the part headers (see misskey.client.form; quotes and backslashes are escaped).
local HEADER_UNSAFE = form.UNSAFE

-- The file argument's path: no NUL (the file opened would be another one), and a last
-- component without line breaks unless a filename replaces it.
local function check_path(path, filename)
  if path == "" then argerror(1, "upload", "file path is empty", 3) end
  if path:find("%z") then argerror(1, "upload", "file path contains a NUL byte", 3) end
  if not filename and basename(path):find(HEADER_UNSAFE) then
    argerror(1, "upload", "the file's name has a line break: give { path = ..., filename = ... }", 3)
  end
end

-- The file argument -> the `file` part (not yet checked on disk) and the
-- default of the `name` field (the file name; none for nameless data).
local function file_part(file)
  if type(file) == "string" then
    check_path(file)
    return { name = "file", path = file, filename = basename(file) }, basename(file)
  end
  if type(file) ~= "table" then
    argerror(1, "upload", "a file path or { data = ..., filename = ... } expected, got " .. type(file), 2)
  end
  for k in pairs(file) do
    if not FILE_KEYS[k] then argerror(1, "upload", "unknown field '" .. tostring(k) .. "'", 2) end
  end
  for k in pairs(FILE_KEYS) do
    if file[k] ~= nil and type(file[k]) ~= "string" then
      argerror(1, "upload", ("field '%s' must be a string, got %s"):format(k, type(file[k])), 2)
    end
  end
  if (file.path == nil) == (file.data == nil) then
    argerror(1, "upload", "give exactly one of path and data", 2)
  end
  for _, k in ipairs{ "filename", "type" } do
    if file[k] and file[k]:find(HEADER_UNSAFE) then
      argerror(1, "upload", ("field '%s' must not contain CR, LF or NUL"):format(k), 2)
    end
  end
  if file.path then check_path(file.path, file.filename) end
  -- In-memory data without a filename is a browser's Blob: Misskey stores no name.
  local filename = file.filename or (file.path and basename(file.path))
  return { name = "file", path = file.path, data = file.data, type = file.type, filename = filename or "blob" },
    filename
end

-- A path that cannot be read fails like any other call (`nil, message, err`),
-- before anything is sent: it is a fact of the disk, not a programming error.
local function unreadable(path)
  local f, why = io.open(path, "rb")
  if f then
    local ok, rerr = f:read(0) -- a directory opens, but reading it fails
    f:close()
    if ok == nil and rerr then why = path .. ": " .. tostring(rerr) else return nil end
  end
  return tostring(why)
end

---@param Client misskey.Client the client class
return function(Client)
  --- client:upload(file, fields, opts) -> DriveFile | nil, message, err
  -- `file` is a path (string; streamed from disk, never read into memory) or a
  -- table `{ path = ... | data = "bytes", filename = "x.txt", type = "mime/type" }`.
  -- `fields` are drive/files/create's other parameters (name, folderId, comment,
  -- isSensitive, force, ...); `name` defaults to the file name. `opts.timeout`
  -- bounds the call, `opts.progress(sent, total)` reports the bytes sent.
  ---@param file string|misskey.UploadFile a path (a string is always a path), or `{ data = ... }`
  ---@param fields? table the endpoint's other parameters (name, folderId, comment, isSensitive, force)
  ---@param opts? { timeout?: number, progress?: fun(sent: integer, total: integer) }
  ---@return misskey.DriveFile|nil file
  ---@return string|nil message
  ---@return misskey.Error|nil err
  function Client:upload(file, fields, opts)
    argcheck.self(self, Client, "client", "upload")
    local part, default_name = file_part(file)
    if fields ~= nil and type(fields) ~= "table" then
      argerror(2, "upload", "fields must be a table, got " .. type(fields))
    end
    if opts ~= nil and type(opts) ~= "table" then
      argerror(3, "upload", "options table expected, got " .. type(opts))
    end
    opts = opts or {}
    for k in pairs(opts) do
      if not UPLOAD_OPTIONS[k] then argerror(3, "upload", "unknown option '" .. tostring(k) .. "'") end
    end
    local bad_timeout = opts.timeout ~= nil and seconds_problem(opts.timeout, MAX_SECONDS)
    if bad_timeout then argerror(3, "upload", "option 'timeout': " .. bad_timeout) end
    if opts.progress ~= nil and type(opts.progress) ~= "function" then
      argerror(3, "upload", "option 'progress' must be a function(sent, total)")
    end
    -- Text fields first (the server reads them after streaming the file), `i`
    -- first of all as misskey-js does, then the others in sorted order.
    local values, keys = {}, {}
    for k, v in pairs(fields or {}) do
      if type(k) ~= "string" then argerror(2, "upload", "field names must be strings") end
      if k:find(HEADER_UNSAFE) then
        local shown = k:gsub("%c", function(c) return "\\" .. c:byte() end) -- the same on every Lua
        argerror(2, "upload", ('field name "%s" must not contain CR, LF or NUL'):format(shown))
      end
      if k == "i" or k == "file" then
        argerror(2, "upload", ("field '%s' is set by upload itself"):format(k))
      end
      if v ~= json.null then
        values[k] = field_text(k, v)
        keys[#keys + 1] = k
      end
    end
    if values.name == nil and default_name and (fields == nil or fields.name == nil) then
      values.name = default_name
      keys[#keys + 1] = "name"
    end
    table.sort(keys)
    local parts, headers = {}, { Accept = "application/json" }
    if self._token then
      if self._auth == "header" then
        headers.Authorization = "Bearer " .. self._token
      else
        parts[1] = { name = "i", value = self._token }
      end
    end
    for _, k in ipairs(keys) do parts[#parts + 1] = { name = k, value = values[k] } end
    parts[#parts + 1] = part
    if part.path then
      local why = unreadable(part.path)
      if why then
        return errors.fail("invalid", errors.redact(("%s: cannot read the file to upload (%s)"):format(
          UPLOAD_ENDPOINT, why), self._token), { endpoint = UPLOAD_ENDPOINT, param = "file", path = part.path })
      end
    end
    -- 429s are waited out as for client:request (Misskey checks the limit before
    -- storing anything); a write, so never retried after other failures.
    local function attempt()
      local res, msg, err = self:_send(UPLOAD_ENDPOINT, {
        method = "POST", url = self.base_url .. "/api/" .. UPLOAD_ENDPOINT, headers = headers, parts = parts,
        timeout = opts.timeout or self._timeout, progress = opts.progress,
      })
      if not res then return nil, nil, msg, err end
      return res, self:_interpret(UPLOAD_ENDPOINT, res, self._null_nil)
    end
    if self:observed() then attempt = ratelimit.observing(attempt) end
    return errors.scrubbed(self._token, ratelimit.run(self._policy, self, UPLOAD_ENDPOINT, UPLOAD_CALL,
      catalogue.lookup(UPLOAD_ENDPOINT, self._catalogue), attempt))
  end
end
