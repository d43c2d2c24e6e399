-- The hostile-server scenarios of spec/hostile_http_spec.lua and
-- spec/hostile_ws_spec.lua, run inside nginx through the nginx transport:
-- scenarios.run(name, config) plays one against the test servers
-- (config.upstream: spec/support/server.py, config.ws: spec/support/wsserver.py)
-- and returns its outcome as plain data for spec/nginx_hostile_spec.lua.
local misskey = require "misskey"
local json = require "misskey.json"

local scenarios = {}

local TOKEN = "hostile-token-0123456789"

local function plain(err)
  if type(err) ~= "table" then return err end
  local out = {}
  for k, v in pairs(err) do
    if type(v) ~= "function" and k ~= "traceback" then out[k] = v end
  end
  return out
end

-- Resident memory of this nginx worker process, in MiB.
local function rss_mib()
  local f = assert(io.open("/proc/self/statm", "r"))
  local _, resident = f:read("*n", "*n")
  f:close()
  return resident * 4096 / 1048576
end

local function client(config, opts)
  local o = { host = config.upstream, token = TOKEN, allow_plaintext_token = true, retries = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return misskey.new(o)
end

local function outcome(value, msg, err)
  return { ok = value ~= nil, message = msg, err = plain(err) }
end

local function ws_connect(config, path, extra)
  local req = { url = config.ws .. "/" .. path, timeout = 5 }
  for k, v in pairs(extra or {}) do req[k] = v end
  return require("misskey.ngx.transport").new{}.websocket(req)
end

-- A plain HTTP GET of the WebSocket server's control paths (/release, /push, /log).
local function control(config, path)
  local res = assert(misskey.new{ host = config.ws:gsub("^ws", "http"), token = false }:http{ path = path })
  return json.decode(res.body)
end

local S = {}

-- 20 gzip bombs (a 1 GiB reply, max_size 8 MiB): each fails as too_large or, not
-- decompressed, as bad JSON; the worker process's memory stays flat.
function S.bomb(config)
  local c = client(config, { max_size = 8 * 1024 * 1024 })
  local kinds = {}
  c:request("test/bomb", { mib = 1024 })
  collectgarbage()
  local before = rss_mib()
  for i = 1, 20 do
    local value, _, err = c:request("test/bomb", { mib = 1024 })
    kinds[i] = value == nil and (err.kind .. "/" .. tostring(err.reason)) or "ok"
  end
  collectgarbage()
  return { kinds = kinds, grew = rss_mib() - before }
end

-- Response heads that never end: the 64 KiB cap, as http / too_large.
for _, name in ipairs{ "endless-headers", "endless-trailers", "endless-continue" } do
  S[name] = function(config) return outcome(client(config):request("test/" .. name, { mib = 64 })) end
end

-- A reply that stalls after its first byte: the low-speed abort, a timeout.
function S.dribble(config)
  return outcome(client(config, { low_speed = { bytes = 1, seconds = 1 } })
    :request("test/dribble", { bytes = 2, interval = 30 }))
end

-- A server that echoes the token in an error reply: redacted from every field.
function S.echo_token(config)
  return outcome(client(config):request("test/status", { status = 500, body = "token=" .. TOKEN }))
end

-- Upgrade replies that break RFC 6455: each connect fails, nothing opens.
function S.upgrades(config)
  local out = {}
  for _, path in ipairs{ "nul-header", "nul-status", "no-upgrade", "wrong-upgrade", "no-connection", "extension",
    "long-head", "bad-accept", "refuse401" } do
    local ws, msg, err = ws_connect(config, path)
    if ws then ws:close() end
    out[path] = { opened = ws ~= nil, message = msg, err = plain(err) }
  end
  return out
end

-- Frames no server may send: each fails the connection with the close code due.
function S.frames(config)
  local out = {}
  for _, path in ipairs{ "masked", "reserved-bits", "bad-opcode", "invalid-utf8", "fragmented-control",
    "oversized" } do
    local ws = assert(ws_connect(config, path, { max_message = 1000 }))
    local value, msg, err = ws:receive(5)
    ws:close()
    out[path] = { value = value, message = msg, err = plain(err) }
  end
  return out
end

-- 8 MiB of pings while the server reads nothing: one pong kept pending, memory flat.
function S.ping_flood(config)
  collectgarbage()
  local before = rss_mib()
  local ws = assert(ws_connect(config, "ping-flood"))
  local value, msg = ws:receive(60)
  local buffered = ws:buffered()
  local grew = rss_mib() - before
  control(config, "/release")
  ws:close()
  return { value = value, message = msg, buffered = buffered, grew = grew }
end

-- A server that never reads: more than 4 MiB waiting fails the socket with 1008.
function S.not_reading(config)
  local ws = assert(ws_connect(config, "hold"))
  local chunk = ("y"):rep(64 * 1024)
  local sent, msg, err = 0, nil, nil
  for _ = 1, 1000 do -- 64 MiB at most
    local ok
    ok, msg, err = ws:send(chunk)
    if not ok then break end
    sent = sent + #chunk
    misskey.sleep(0) -- the writer's turn
  end
  local buffered = ws:buffered()
  control(config, "/release")
  ws:close()
  return { sent = sent, message = msg, err = plain(err), buffered = buffered }
end

-- A refused upgrade that echoes the target (?i=<token>) in its body: client:stream
-- reports it with the token redacted from every field.
function S.refuse_echo(config)
  control(config, "/set-streaming/refuse-echo")
  local c = client({ upstream = config.ws:gsub("^ws", "http") })
  local s = c:stream{ reconnect = false }
  local seen = {}
  s:on("error", function(err) seen[#seen + 1] = plain(err) end)
  s:on("disconnected", function(m, err) seen[#seen + 1] = { m, plain(err) } end)
  local ok, msg, err = s:run()
  control(config, "/set-streaming/echo")
  return { ok = ok, message = msg, err = plain(err), seen = seen, token = TOKEN }
end

--- scenarios.run(name, config) -> the outcome (a table), or { unknown = name }.
function scenarios.run(name, config)
  local fn = S[name]
  if not fn then return { unknown = name } end
  return fn(config)
end

return scenarios
