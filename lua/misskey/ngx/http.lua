--- misskey.ngx.http: HTTP/1.1 over nginx's cosockets, the request half of the
-- nginx transport (misskey.ngx.transport). `http.request(req)` takes the
-- client's request table and returns `{ status, headers, body }` or
-- `nil, message, err` with the curl transport's error kinds: "network",
-- "timeout", and "http" with reason "too_large" for a reply over max_size or
-- response headers over 64 KiB.
--
-- Connections are kept in keep-alive pools per host (setkeepalive: POOL_SIZE
-- idle connections, closed after IDLE seconds unused); TLS verifies the
-- server's certificate and name unless `insecure` (the trust store is nginx's
-- lua_ssl_trusted_certificate). Every read is bounded: the head to 64 KiB, a
-- chunk-size line to 1 KiB, the body to max_size. Timeouts: connect_timeout for
-- the connect and the TLS handshake, `timeout` for the whole exchange, and the
-- low-speed abort (less than low_speed_limit bytes/s over low_speed_time s).
-- A multipart body is streamed from its files, 64 KiB at a time.
local core = require "misskey.core"
local errors = require "misskey.errors"
local rt = require "misskey.ngx.runtime"

local host = rawget(_G, "ngx")

local http = {}

--- Idle connections kept per host and TLS mode (setkeepalive's pool size).
http.POOL_SIZE = 32
--- Seconds an idle pooled connection is kept open.
http.IDLE = 60
--- The connect timeout when the client sets none (libcurl's default).
http.CONNECT_TIMEOUT = 300

local HEAD_MAX = 64 * 1024 -- the curl transport's cap on a response's header block
local LINE_MAX = 1024      -- a chunk-size line
local READ = 64 * 1024     -- bytes asked for per read, and per file block sent
local LONG = 86400         -- "no limit", in seconds, for a cosocket timeout

local now = core.now

-- ------------------------------------------------------------------------
-- the request line and head

-- "http(s)://authority/target" -> scheme, host (no brackets), port, target, authority.
local function parse_url(url)
  local scheme, rest = url:match("^(https?)://(.*)$")
  if not scheme then return nil end
  local authority, target = rest:match("^([^/?#]*)(.*)$")
  target = target:gsub("#.*$", "")
  if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
  local name, port = authority:match("^%[([^%]]+)%]:?(%d*)$")
  if not name then name, port = authority:match("^([^:]+):?(%d*)$") end
  if not name or name == "" then return nil end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  return scheme, name, port, target, authority
end

-- Header names are HTTP tokens; values and the target carry no CR, LF or NUL (the C
-- layer refuses the same: a line break would add headers of someone's making).
local function check_head(req, target)
  if type(req.method) ~= "string" or not req.method:find("^[!#$%%&'*+%-.^_`|~%w]+$") then
    error("request option 'method' must be an HTTP token", 0)
  end
  if target:find("[%c ]") then error("request option 'url' must not contain spaces or control characters", 0) end
  if req.user_agent and req.user_agent:find("[\r\n%z]") then
    error("request option 'user_agent' must not contain a line break", 0)
  end
  for k, v in pairs(req.headers or {}) do
    if type(k) ~= "string" or type(v) ~= "string" then error("request headers must map strings to strings", 0) end
    if k == "" or not k:find("^[!#$%%&'*+%-.^_`|~%w]+$") or v:find("[\r\n%z]") then
      error("invalid request header '" .. k .. "'", 0)
    end
  end
end

-- ------------------------------------------------------------------------
-- multipart bodies

-- Quotes and backslashes in a name or file name are escaped, as libcurl's
-- CURLMIMEOPT_FORMESCAPE does for the curl transport.
local function quoted(s)
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

-- A file part's type when none is given: libcurl's guesses by extension, else octet-stream.
local TYPES = {
  gif = "image/gif", jpg = "image/jpeg", jpeg = "image/jpeg", png = "image/png", svg = "image/svg+xml",
  txt = "text/plain", htm = "text/html", html = "text/html", pdf = "application/pdf", xml = "application/xml",
}

local function part_string(part, i, key, header)
  local v = part[key]
  if v == nil then return nil end
  if type(v) ~= "string" then error(("request parts[%d].%s must be a string"):format(i, key), 0) end
  if header and v:find("[\r\n%z]") then
    error(("request parts[%d].%s must not contain a line break or a NUL byte"):format(i, key), 0)
  end
  return v
end

-- parts -> a list of pieces (strings, and { path, size } for files), the total length.
-- Files are only measured here; their bytes are read while the body is sent.
local function multipart(parts, boundary)
  local pieces, total = {}, 0
  local function add(p, n)
    pieces[#pieces + 1] = p
    total = total + n
  end
  for i = 1, #parts do
    local part = parts[i]
    if type(part) ~= "table" then error(("request parts[%d] must be a table"):format(i), 0) end
    local name = part_string(part, i, "name", true)
    local value, path, data = part_string(part, i, "value"), part_string(part, i, "path"), part_string(part, i, "data")
    local filename, ptype = part_string(part, i, "filename", true), part_string(part, i, "type", true)
    if not name or name == "" then error(("request parts[%d].name must be a non-empty string"):format(i), 0) end
    if (value and 1 or 0) + (path and 1 or 0) + (data and 1 or 0) ~= 1 then
      error(("request parts[%d] needs exactly one of value, path, data"):format(i), 0)
    end
    if path and path:find("%z") then error(("request parts[%d].path must not contain a NUL byte"):format(i), 0) end
    if path and not filename then
      filename = path:match("([^/]+)/*$") or path
      if filename:find("[\r\n]") then
        error(("request parts[%d].path has a line break: give a filename to send instead"):format(i), 0)
      end
    end
    local head = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=" .. quoted(name)
    if filename then
      head = head .. "; filename=" .. quoted(filename)
      ptype = ptype or TYPES[(filename:match("%.([%w]+)$") or ""):lower()] or "application/octet-stream"
    end
    if ptype then head = head .. "\r\nContent-Type: " .. ptype end
    head = head .. "\r\n\r\n"
    add(head, #head)
    if path then
      local f, why = io.open(path, "rb")
      if not f then error(("request parts[%d]: cannot read file '%s' (%s)"):format(i, path, tostring(why)), 0) end
      local size = f:seek("end")
      f:close()
      if not size then error(("request parts[%d]: cannot read file '%s'"):format(i, path), 0) end
      add({ path = path, size = size }, size)
    else
      local s = value or data
      add(s, #s)
    end
    add("\r\n", 2)
  end
  local tail = "--" .. boundary .. "--\r\n"
  add(tail, #tail)
  return pieces, total
end

-- ------------------------------------------------------------------------
-- one exchange

-- An exchange's failure: what the client turns into `nil, message, err`.
local function failure(kind, message, fields)
  fields = fields or {}
  fields.message, fields.kind = message, kind
  return fields
end

local Exchange = {}
Exchange.__index = Exchange

-- Seconds the next cosocket operation may take: what is left of the total timeout,
-- and at most what is left of the current low-speed window.
function Exchange:budget()
  local left = LONG
  if self.deadline then left = self.deadline - now() end
  if self.low_time then left = math.min(left, self.window_start + self.low_time - now()) end
  return left
end

-- After a read or write of `n` bytes (or none, when it timed out): the low-speed
-- check at the end of each window. Returns a failure, or nil.
function Exchange:moved(n)
  self.window_bytes = self.window_bytes + n
  local t = now()
  if self.deadline and t >= self.deadline then
    return failure("timeout", ("timed out after %g s"):format(self.timeout), { reason = "timeout" })
  end
  if self.low_time and t >= self.window_start + self.low_time then
    if self.window_bytes < self.low_limit * self.low_time then
      return failure("timeout", ("Operation too slow. Less than %d bytes/sec transferred the last %d seconds")
        :format(self.low_limit, self.low_time), { reason = "timeout" })
    end
    self.window_start, self.window_bytes = t, 0
  end
end

-- Sets the socket's timeouts for the next operation; nil and a failure when none is left.
function Exchange:arm()
  local left = self:budget()
  if left <= 0 then return self:moved(0) or failure("timeout", "timed out", { reason = "timeout" }) end
  local ms = math.max(1, math.floor(left * 1000))
  self.sock:settimeouts(ms, ms, ms)
end

-- Bytes of the reply not taken yet: self.buf from self.pos on (an index, so that taking
-- a line does not copy the rest).
function Exchange:left() return #self.buf - self.pos + 1 end

-- Reads once more from the socket (at most `max` bytes) into the buffer. Returns a failure, or nil.
function Exchange:fill(max)
  while true do
    local bad = self:arm()
    if bad then return bad end
    local data, err = self.sock:receiveany(max or READ)
    if data then
      self.buf = (self.pos > 1 and self.buf:sub(self.pos) or self.buf) .. data
      self.pos = 1
      self.got = self.got + #data
      return self:moved(#data)
    end
    if err ~= "timeout" then
      return failure("network", ("connection to %s failed while receiving: %s"):format(self.where, err),
        { reason = "network", closed = err == "closed" or nil })
    end
    bad = self:moved(0)
    if bad then return bad end
  end
end

-- The next line (without CRLF), reading as needed, at most `max` bytes.
-- -> line, bytes it spanned | nil, failure (`what()` when the line is longer than max)
function Exchange:line(max, what)
  while true do
    local e = self.buf:find("\n", self.pos, true)
    if e then
      local line = self.buf:sub(self.pos, e - 1):gsub("\r$", "")
      local n = e - self.pos + 1
      self.pos = e + 1
      return line, n
    end
    if self:left() > max then return nil, what() end
    local bad = self:fill()
    if bad then return nil, bad end
  end
end

-- Moves the next `n` bytes of the reply into the list `out`: the buffer's first, then
-- reads of at most what is still missing (so nothing past them is read).
-- Returns a failure, or nil.
function Exchange:copy(out, n)
  local have = self:left()
  if have > 0 then
    local k = math.min(have, n)
    out[#out + 1] = self.buf:sub(self.pos, self.pos + k - 1)
    self.pos = self.pos + k
    n = n - k
  end
  while n > 0 do
    local bad = self:arm()
    if bad then return bad end
    local data, err = self.sock:receiveany(math.min(READ, n))
    if data then
      out[#out + 1] = data
      n = n - #data
      self.got = self.got + #data
      bad = self:moved(#data)
      if bad then return bad end
    elseif err ~= "timeout" then
      return failure("network", ("connection to %s failed while receiving: %s"):format(self.where, err),
        { reason = "network", closed = err == "closed" or nil })
    else
      bad = self:moved(0)
      if bad then return bad end
    end
  end
end

-- Sends `data` (a cosocket sends all of it or fails); returns a failure, or nil.
function Exchange:send(data)
  local bad = self:arm()
  if bad then return bad end
  local n, err = self.sock:send(data)
  if n then return self:moved(#data) end
  if err ~= "timeout" then
    return failure("network", ("connection to %s failed while sending: %s"):format(self.where, err),
      { reason = "network", unsent = true })
  end
  bad = self:moved(0)
  if bad then return bad end
  -- a timeout: the cosocket does not say how much went out, so the connection is lost
  return failure("timeout", ("sending to %s timed out"):format(self.where), { reason = "timeout" })
end

-- Sends the request: its head, then the body (a string, or multipart pieces with files
-- streamed). Calls req.progress(sent, total) as the body goes out.
function Exchange:send_request(head, body, pieces, total)
  local bad = self:send(head)
  if bad then return bad end
  local progress, sent = self.req.progress, 0
  local function report(n)
    sent = sent + n
    if progress then progress(sent, total) end
  end
  if body and #body > 0 then
    bad = self:send(body)
    if bad then return bad end
    report(#body)
  elseif pieces then
    for _, piece in ipairs(pieces) do
      if type(piece) == "string" then
        bad = self:send(piece)
        if bad then return bad end
        report(#piece)
      else
        local f, why = io.open(piece.path, "rb")
        if not f then
          return failure("network", ("cannot read file '%s' while sending it (%s)"):format(piece.path, tostring(why)))
        end
        local left = piece.size
        while left > 0 do
          local block = f:read(math.min(READ, left))
          if not block or #block == 0 then break end
          left = left - #block
          bad = self:send(block)
          if bad then
            f:close()
            return bad
          end
          report(#block)
        end
        f:close()
        if left > 0 then
          return failure("network", ("file '%s' became shorter while it was sent"):format(piece.path))
        end
      end
    end
  end
end

-- The status line and header lines of the final response (1xx interim ones skipped),
-- counting every header byte against HEAD_MAX. -> status, headers, version | nil, failure
function Exchange:read_head()
  local used = 0
  local function too_big()
    return failure("http", ("response headers larger than the %d byte limit"):format(HEAD_MAX),
      { reason = "too_large", status = self.status })
  end
  local function take()
    local line, n = self:line(HEAD_MAX - used, too_big)
    if not line then return nil, n end
    used = used + n
    if used > HEAD_MAX then return nil, too_big() end
    return line
  end
  while true do
    local line, bad = take()
    if not line then return nil, bad end
    local version, status = line:match("^HTTP/(1%.[01]) (%d%d%d)")
    if not version then
      return nil, failure("network", ("%s sent no HTTP/1.x status line"):format(self.where), { reason = "network" })
    end
    status = tonumber(status)
    self.status = status
    local headers = {}
    local last
    while true do
      line, bad = take()
      if not line then return nil, bad end
      if line == "" then break end
      if line:find("^[ \t]") and last then -- an obsolete folded line continues the previous value
        headers[last] = headers[last] .. " " .. line:gsub("^[ \t]+", "")
      else
        local name, value = line:match("^([^:%s]+):[ \t]*(.-)[ \t]*$")
        if name then
          name = name:lower()
          headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
          last = name
        end
      end
    end
    if status >= 200 or status == 101 then return status, headers, version, used end
  end
end

-- Trailer lines after a chunked body, under the head's cap; added to `headers`.
-- Returns a failure, or nil.
function Exchange:read_trailers(headers, status)
  local used = self.head_used
  local function too_big()
    return failure("http", ("response headers larger than the %d byte limit"):format(HEAD_MAX),
      { reason = "too_large", status = status })
  end
  while true do
    local line, n = self:line(HEAD_MAX - used, too_big)
    if not line then return n end
    used = used + n
    if used > HEAD_MAX then return too_big() end
    if line == "" then return nil end
    local name, value = line:match("^([^:%s]+):[ \t]*(.-)[ \t]*$")
    if name then
      name = name:lower()
      headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
    end
  end
end

-- The body of the response: Content-Length, chunked or until the connection closes,
-- at most max_size bytes. -> body, reusable | nil, failure
function Exchange:read_body(status, headers, method)
  if method == "HEAD" or status == 204 or status == 304 or status < 200 then return "", true end
  local max = self.max_size
  local function too_large()
    return failure("http", ("response body larger than the %d byte limit (max_size)"):format(max),
      { reason = "too_large", status = status })
  end
  local function invalid(what)
    return failure("network", ("%s sent %s"):format(self.where, what), { reason = "network", status = status })
  end
  local parts, size = {}, 0
  local te = (headers["transfer-encoding"] or ""):lower()
  if te ~= "" and te ~= "identity" then
    if not te:find("chunked%s*$") then return nil, invalid("a body in a transfer coding other than chunked") end
    while true do
      local line, bad = self:line(LINE_MAX, function()
        return invalid(("a chunk-size line longer than %d bytes"):format(LINE_MAX))
      end)
      if not line then return nil, bad end
      local hex = line:match("^%s*(%x+)")
      if not hex or #hex > 12 then return nil, invalid("an invalid chunk size") end
      local n = tonumber(hex, 16)
      if n == 0 then break end
      size = size + n
      if size > max then return nil, too_large() end
      bad = self:copy(parts, n)
      if bad then return nil, bad end
      local crlf
      crlf, bad = self:line(2, function() return invalid("a chunk without its CRLF") end)
      if not crlf then return nil, bad end
      if crlf ~= "" then return nil, invalid("a chunk without its CRLF") end
    end
    local bad = self:read_trailers(headers, status)
    if bad then return nil, bad end
    return table.concat(parts), self:left() == 0
  end
  local length = headers["content-length"]
  if length then
    length = length:match("^%s*(%d+)%s*$")
    if not length or #length > 15 then return nil, invalid("an invalid Content-Length") end
    length = tonumber(length)
    if length > max then return nil, too_large() end
    local bad = self:copy(parts, length)
    if bad then
      if bad.closed then
        local got = 0
        for i = 1, #parts do got = got + #parts[i] end
        bad = invalid(("%d of %d body bytes, then closed the connection"):format(got, length))
      end
      return nil, bad
    end
    return table.concat(parts), self:left() == 0
  end
  -- Neither: the body ends when the server closes the connection.
  if self:left() > 0 then
    parts[1] = self.buf:sub(self.pos)
    size = #parts[1]
    self.pos = #self.buf + 1
  end
  while true do
    if size > max then return nil, too_large() end
    local bad = self:arm()
    if bad then return nil, bad end
    local data, err = self.sock:receiveany(READ)
    if data then
      parts[#parts + 1] = data
      size = size + #data
      bad = self:moved(#data)
      if bad then return nil, bad end
    elseif err == "closed" then
      return table.concat(parts), false
    elseif err ~= "timeout" then
      return nil, failure("network", ("connection to %s failed while receiving: %s"):format(self.where, err),
        { reason = "network" })
    else
      bad = self:moved(0)
      if bad then return nil, bad end
    end
  end
end

-- A failure's message for a connect or handshake error, with what to do about it.
local function connect_failure(where, err, tls)
  if err == "timeout" then
    return failure("timeout", ("connecting to %s timed out"):format(where), { reason = "timeout" })
  end
  local msg = ("cannot connect to %s: %s"):format(where, tostring(err))
  if tostring(err):find("no resolver defined", 1, true) then
    msg = msg .. " (nginx resolves host names only through its `resolver` directive: add one to nginx.conf)"
  elseif tls then
    msg = msg .. " (is the server's certificate trusted here? nginx.conf's lua_ssl_trusted_certificate says what is)"
  end
  return failure("network", msg, { reason = "network" })
end

--- http.handshake(sock, name, verify) -> true | nil, why: the TLS handshake, failing
-- closed. lua-resty-core 0.1.25 with ngx_lua 0.10.23 (Debian 12) raises an assertion
-- instead of returning the error when a handshake fails at once (a certificate
-- refused by a server on the same host): that is a failed handshake too.
---@param sock table a connected cosocket
---@param name string the server name (SNI and the certificate check)
---@param verify boolean
---@return boolean|nil ok
---@return string|nil why
function http.handshake(sock, name, verify)
  local ok, session, err = pcall(sock.sslhandshake, sock, nil, name, verify)
  if not ok then
    return nil, "the handshake failed (nginx gave no reason: the certificate was refused or the connection broke)"
  end
  if not session then return nil, tostring(err) end
  return true
end

-- Connects (from the pool when an idle connection is there) and shakes hands.
-- -> reused (true when the connection came from the pool) | nil, failure
function Exchange:connect(scheme, name, port)
  local sock = host.socket.tcp()
  self.sock = sock
  local ct = self.req.connect_timeout or http.CONNECT_TIMEOUT
  if self.deadline then ct = math.min(ct, self.deadline - now()) end
  local ms = math.max(1, math.floor(ct * 1000))
  sock:settimeouts(ms, ms, ms)
  local tls, verify = scheme == "https", not self.req.insecure
  -- One pool per host, port and TLS mode: a connection made without verification is
  -- never handed to a client that verifies.
  local pool = ("misskey %s:%d %s"):format(name, port, tls and (verify and "tls" or "tls-insecure") or "plain")
  local ok, err = sock:connect(name, port, { pool = pool, pool_size = http.POOL_SIZE })
  if not ok then return nil, connect_failure(self.where, err, false) end
  local reused = (sock:getreusedtimes() or 0) > 0
  if tls and not reused then
    local done
    done, err = http.handshake(sock, name, verify)
    if not done then
      sock:close()
      return nil, connect_failure(self.where, "TLS handshake failed: " .. tostring(err), true)
    end
  end
  self.window_start, self.window_bytes = now(), 0
  return reused
end

-- One request on one connection. -> response | nil, failure, retry (true: it failed
-- on a pooled connection before anything came back, and may be sent again).
local function exchange(req, u, head, pieces, total)
  local self = setmetatable({ req = req, buf = "", pos = 1, got = 0, where = u.authority, timeout = req.timeout,
    deadline = req.timeout and (u.start + req.timeout), max_size = req.max_size or math.huge,
    low_limit = req.low_speed_limit, low_time = req.low_speed_time }, Exchange)
  if not self.low_limit then self.low_time = nil end
  local reused, bad = self:connect(u.scheme, u.name, u.port)
  if reused == nil then return nil, bad end
  bad = self:send_request(head, req.body, pieces, total)
  if bad then
    self.sock:close()
    return nil, bad, reused and bad.unsent
  end
  local status, headers, version, used = self:read_head()
  if not status then
    self.sock:close()
    return nil, headers, reused and self.got == 0 and headers.closed
  end
  self.head_used = used
  local body, reusable = self:read_body(status, headers, req.method)
  if not body then
    self.sock:close()
    return nil, reusable
  end
  local conn = (headers.connection or ""):lower()
  local keep = reusable and status ~= 101 and not conn:find("close", 1, true)
    and (version == "1.1" or conn:find("keep%-alive"))
  if keep then
    self.sock:setkeepalive(http.IDLE * 1000, http.POOL_SIZE)
  else
    self.sock:close()
  end
  return { status = status, headers = headers, body = body }
end

--- http.request(req) -> { status, headers, body } | nil, message, err
-- `req`: method, url, headers, body or parts, timeout, connect_timeout, max_size,
-- user_agent, insecure, low_speed_limit/low_speed_time, progress(sent, total).
-- Runs the exchange so that cancelling the calling task aborts it.
---@param req table
---@return table|nil response
---@return string|nil message
---@return table|nil err
function http.request(req)
  rt.check_phase("an HTTP request")
  if req.ca_file then
    error("request option 'ca_file': inside nginx the trusted certificates are lua_ssl_trusted_certificate's", 0)
  end
  local scheme, name, port, target, authority = parse_url(req.url or "")
  if not scheme then error("request option 'url' must be an http:// or https:// URL", 0) end
  check_head(req, target)
  local lines = { ("%s %s HTTP/1.1\r\nHost: %s\r\n"):format(req.method, target, authority) }
  if req.user_agent then lines[#lines + 1] = "User-Agent: " .. req.user_agent .. "\r\n" end
  for k, v in pairs(req.headers or {}) do
    local lk = k:lower()
    if lk ~= "host" and lk ~= "content-length" and lk ~= "transfer-encoding" and lk ~= "connection" then
      lines[#lines + 1] = k .. ": " .. v .. "\r\n"
    end
  end
  local pieces, total
  if req.parts then
    local boundary = "------------------------" .. core.sha256(core.random(16), "hex"):sub(1, 24)
    pieces, total = multipart(req.parts, boundary)
    lines[#lines + 1] = "Content-Type: multipart/form-data; boundary=" .. boundary .. "\r\n"
  else
    total = req.body and #req.body or 0
  end
  if req.parts or req.body or (req.method ~= "GET" and req.method ~= "HEAD") then
    lines[#lines + 1] = ("Content-Length: %d\r\n"):format(total)
  end
  lines[#lines + 1] = "\r\n"
  local head = table.concat(lines)
  local u = { scheme = scheme, name = name, port = port, authority = authority, start = now() }
  local ok, res, bad = pcall(rt.io, function()
    local r, b, retry = exchange(req, u, head, pieces, total)
    if not r and retry then r, b = exchange(req, u, head, pieces, total) end -- a stale pooled connection
    return r, b
  end)
  if not ok then error(res, 0) end -- a progress function that raised, or misuse
  if res then return res end
  local fields, kind, message = bad, bad.kind or "network", bad.message
  fields.message, fields.kind = nil, nil
  if kind == "timeout" and req.timeout and message:find("^timed out") then
    message = ("timed out after %g s"):format(req.timeout)
  end
  fields.unsent, fields.closed = nil, nil
  return errors.fail(kind, message, fields)
end

http.parse_url = parse_url

return http
