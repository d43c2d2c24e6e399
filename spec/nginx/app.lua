-- The application nginx runs for the specs (spec/nginx/nginx.conf): every request
-- is one small program using the library inside a request handler (or a timer), and
-- its outcome goes back as JSON for spec/nginx_*_spec.lua to check. The settings
-- (the test servers' URLs, the temporary folder) are in spec_config.lua, written
-- by spec/support/nginx.lua next to the config.
local misskey = require "misskey"
local json = require "misskey.json"
local config = require "spec_config"

local app = {}

local dict = ngx.shared.misskey_spec

-- An error as plain data (every field, for the specs to compare with libcurl's).
local function plain(err)
  if type(err) ~= "table" then return err end
  local out = {}
  for k, v in pairs(err) do
    if type(v) ~= "function" and k ~= "traceback" then out[k] = v end
  end
  return out
end

local function reply(value, status)
  ngx.status = status or 200
  ngx.header["Content-Type"] = "application/json"
  ngx.say(json.encode(value))
end

-- A query argument of the request (none in a timer).
local function arg(name)
  if ngx.get_phase() == "timer" then return nil end
  local v = ngx.var["arg_" .. name]
  return v and ngx.unescape_uri(v)
end

local function client(opts)
  local o = { host = arg("host") or config.upstream, token = arg("token") or "tok", allow_plaintext_token = true }
  for k, v in pairs(opts or {}) do o[k] = v end
  if arg("insecure") then o.insecure = true end
  return misskey.new(o)
end

local function outcome(value, msg, err)
  return { value = value, message = msg, err = plain(err) }
end

local routes = {}

-- One API call: ?endpoint=&params=<json>&opts=<json>&client=<json options>.
function routes.call()
  local params = arg("params") and json.decode(arg("params"))
  local opts = arg("opts") and json.decode(arg("opts"))
  local c = client(arg("client") and json.decode(arg("client")))
  return outcome(c:request(arg("endpoint"), params, opts))
end

-- client:http: ?path=&method=&body=
function routes.http()
  local res, msg, err = client():http{ method = arg("method") or "GET", path = arg("path"), body = arg("body") }
  if not res then return outcome(nil, msg, err) end
  return { status = res.status, headers = res.headers, body = res.body }
end

-- A batch of ?n= calls of ?endpoint= (params { key = i }), all in flight at once.
function routes.batch()
  local n = tonumber(arg("n")) or 50
  local calls = {}
  for i = 1, n do calls[i] = { arg("endpoint") or "test/gate/wait", { key = i } } end
  local results, errs = client():batch(calls, { concurrency = n })
  local failed, list = {}, {}
  for k, e in pairs(errs) do failed[tostring(k)] = plain(e) end
  for i = 1, n do list[i] = results[i] or json.null end
  return { pid = ngx.worker.pid(), count = #list, results = list, errs = failed }
end

-- Answered while a batch waits in the same worker process: it tells the test server first.
function routes.second()
  assert(client():request("test/gate/mark", { label = "second" }))
  return { pid = ngx.worker.pid() }
end

-- misskey.spawn / gather / sleep in a request handler.
function routes.gather()
  local c = client()
  local order = {}
  local slow = misskey.spawn(function()
    misskey.sleep(0.2)
    order[#order + 1] = "slow"
    return "slept"
  end)
  local results, errs = misskey.gather(slow, function()
    local meta = assert(c:request("meta"))
    order[#order + 1] = "meta"
    return meta.version
  end, function() error("boom", 0) end)
  return { results = { results[1], results[2] }, n = results.n, err3 = plain(errs[3]), order = order }
end

-- client:paginate over notes/timeline, ?max=
function routes.paginate()
  local ids = {}
  for note in client():paginate("notes/timeline", {}, { max = tonumber(arg("max")) or 1000, page_size = 2 }) do
    ids[#ids + 1] = note.id
  end
  return { ids = ids }
end

-- A stream in a request handler on a silent server: the watchdog declares the socket dead
-- and the stream reconnects; closed on its second connection (or after 5 s, a bound).
function routes.watchdog()
  local s = client():stream{ watchdog = 0.2, backoff = { min = 0.05, max = 0.1 } }
  local reasons, connects = {}, 0
  s:on("connected", function()
    connects = connects + 1
    if connects == 2 then s:close() end
  end)
  s:on("disconnected", function(reason) reasons[#reasons + 1] = reason end)
  local bound = misskey.spawn(function()
    misskey.sleep(5)
    s:close()
  end)
  local ok = s:run()
  bound:cancel()
  return { ok = ok, connects = connects, reasons = reasons }
end

-- client:upload of ?path= (a file the spec wrote), with progress.
function routes.upload()
  local calls = {}
  local file, msg, err = client():upload(arg("path"), { comment = "from nginx" }, {
    progress = function(sent, total) calls[#calls + 1] = { sent, total } end,
  })
  return { value = file, message = msg, err = plain(err), progress = calls }
end

-- MiAuth: the sign-in starts here (the spec approves it at the test server) ...
function routes.miauth_start()
  local auth = require "misskey.auth"
  local s = auth.miauth{ host = config.upstream, name = "nginx spec", permission = { "read:account" },
    callback = "http://127.0.0.1/callback", allow_plaintext_token = true }
  return { url = s.url, session = s.session }
end

-- ... and ends in another request, maybe in another worker process: ?session=
function routes.miauth_callback()
  local auth = require "misskey.auth"
  local s = auth.miauth_session{ host = config.upstream, session = arg("session"), allow_plaintext_token = true }
  local token, user, err = s:check()
  if not token then return outcome(nil, user, err) end
  local me = assert(misskey.new{ host = config.upstream, token = token, allow_plaintext_token = true }:request("i"))
  return { token = token, user = user, me = me.username }
end

-- OAuth: the sign-in starts here. What the callback needs (session:save(), with the verifier)
-- stays on the server, in the shared dict under a random id the browser holds (?sid= here, a
-- cookie in a real app); the browser gets only the consent page's address ...
local OAUTH = { client_id = "https://app.example/", redirect_uri = "https://app.example/callback" }
function routes.oauth_start()
  local auth = require "misskey.auth"
  local s = auth.oauth_start{ host = config.upstream, client_id = OAUTH.client_id, redirect_uri = OAUTH.redirect_uri,
    permission = { "read:account" }, allow_plaintext_token = true }
  local sid = require("misskey.core").uuid()
  dict:set("oauth:" .. sid, json.encode(s:save()), 600)
  return { url = s.url, sid = sid, pid = ngx.worker.pid() }
end

-- ... and ends in another request, maybe in another worker process: ?sid= and the redirect's
-- query (code, state or error). The saved sign-in is claimed once (incr is atomic across the
-- worker processes), so a replayed redirect finds nothing to finish.
function routes.oauth_callback()
  local auth = require "misskey.auth"
  local key = "oauth:" .. (arg("sid") or "")
  local saved = dict:get(key)
  if not saved or dict:incr(key .. ":claimed", 1, 0, 600) ~= 1 then
    return { refused = "no sign-in under way for this browser", pid = ngx.worker.pid() }
  end
  dict:delete(key)
  local token, reply_, err = auth.oauth_session(json.decode(saved)):finish(ngx.req.get_uri_args())
  if not token then return { message = reply_, err = plain(err), pid = ngx.worker.pid() } end
  local me, msg = misskey.new{ host = config.upstream, token = token, auth = "header", allow_plaintext_token = true }
    :request("i")
  return { token = token, me = me and me.username, message = msg, pid = ngx.worker.pid() }
end

-- Which worker process answers.
function routes.pid()
  return { pid = ngx.worker.pid() }
end

-- Misuse raises as it does with libcurl: ?case=
local MISUSE = {
  endpoint = function() client():request(42) end,
  params = function() client():request("meta", "x") end,
  option = function() client{ timeout = -1 } end,
  engine = function() client{ engine = {} } end,
  ca_file = function() client{ ca_file = config.dir .. "/nginx.conf" } end,
  max_connections = function() client{ max_connections = 2 } end,
  stop_on = function() client():stream():run{ stop_on = { "TERM" } } end,
  step = function() misskey.step(0) end,
  close_code = function()
    local ws = assert(require("misskey.ngx.transport").new{}.websocket{ url = config.ws .. "/echo", timeout = 5 })
    local _, why = pcall(ws.close, ws, 1005)
    ws:close()
    error(why, 0)
  end,
}
function routes.misuse()
  local ok, why = pcall(MISUSE[arg("case")])
  return { raised = not ok, error = tostring(why) }
end

-- Concurrency in a timer: a batch and a pagination run from ngx.timer.at, the
-- outcome kept in the shared dict for /timer/result.
function routes.timer()
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    local c = client()
    local calls = {}
    for i = 1, 10 do calls[i] = { "test/hold", { key = i, delay = 0.1 } } end
    local results = c:batch(calls, { concurrency = 10 })
    local n = 0
    for _ in c:paginate("notes/timeline", {}, { max = 1000, page_size = 2 }) do n = n + 1 end
    local slept = misskey.gather(function() misskey.sleep(0.05) return "a" end, function() return "b" end)
    dict:set("timer", json.encode{ batch = #results, first = results[1], notes = n, gather = { slept[1], slept[2] } })
  end)
  return { started = ok, err = err }
end
function routes.timer_result()
  local v = dict:get("timer")
  return { result = v and json.decode(v) }
end

-- A wait in init_worker (no cosockets there): what was raised, kept by init_worker().
function routes.init_worker_error()
  return { error = dict:get("init_worker_error") }
end

-- What the stream in a timer (init_worker: misskey.ngx.follow) has seen.
function routes.events()
  return {
    notes = json.decode(dict:get("notes_json") or "[]"),
    api = dict:get("api") or 0, connected = dict:get("connected") or 0,
    disconnected = dict:get("disconnected") or 0, holders = json.decode(dict:get("holders") or "[]"),
    bursts = dict:get("bursts") or 0,
  }
end

-- The hostile-server scenarios (spec/nginx/scenarios.lua): ?name=
function routes.scenario()
  return require("scenarios").run(arg("name"), config)
end

function app.handle()
  local name = ngx.var.uri:gsub("^/", ""):gsub("/", "_")
  local route = routes[name]
  if not route then return reply({ error = "no route " .. name }, 404) end
  local ok, value = xpcall(route, debug.traceback)
  if not ok then return reply({ raised = tostring(value) }, 500) end
  reply(value)
end

-- A header filter may not wait: the library says so.
function app.header_filter()
  local ok, why = pcall(function() client():request("meta") end)
  ngx.header["X-Misskey-Error"] = not ok and tostring(why):gsub("[\r\n]", " ") or "none"
end

-- Appends `value` to the JSON list kept under `key` (one worker process writes at a time: the holder).
local function push(key, value)
  local list = json.decode(dict:get(key) or "[]")
  list[#list + 1] = value
  dict:set(key, json.encode(list))
end

function app.init_worker()
  local ok, why = pcall(misskey.sleep, 0.01)
  dict:set("init_worker_error", not ok and tostring(why) or "none")
  if not config.follow then return end
  require("misskey.ngx").follow{ dict = "misskey_spec", key = "spec-stream", ttl = 3, retry = 0.2, stream = function()
    push("holders", ngx.worker.pid())
    local c = client()
    local s = c:stream{ positions = config.dir .. "/positions.json", backoff = { min = 0.05, max = 0.2 } }
    s:on("connected", function() dict:incr("connected", 1, 0) end)
    s:on("disconnected", function() dict:incr("disconnected", 1, 0) end)
    -- A burst of events whose handlers only count (spec/nginx_stream_spec.lua measures memory).
    s:channel("homeTimeline"):on("burst", function() dict:incr("bursts", 1, 0) end)
    s:channel("homeTimeline"):on("note", function(note)
      push("notes_json", note.id)
      -- Handlers may call the API (they run in tasks of their own).
      if c:request("meta") then dict:incr("api", 1, 0) end
    end)
    return s
  end }
end

return app
