-- The library inside nginx (ngx_lua): request handlers and timers of a real nginx on
-- 127.0.0.1 (spec/nginx/nginx.conf, spec/nginx/app.lua) call the test server's API
-- through the nginx transport (cosockets), and this spec drives them over HTTP.
-- nginx always runs LuaJIT (OpenResty's branch), whichever Lua runs busted: these
-- specs run in the LuaJIT pass of `make test` only, so each runs once.
local json = require "misskey.json"
local misskey = require "misskey"
local nginx = require "support.nginx"
local server = require "support.server"
local new_client = require "support.client"

if not rawget(_G, "jit") then return end
local missing = nginx.missing()
if missing then
  -- Only where nginx is truly absent (make deps installs it): said, not failed.
  io.stderr:write("spec/nginx_spec.lua: skipped: " .. missing .. "\n")
  it("runs inside nginx (skipped: " .. missing .. ")", function() pending(missing) end)
  return
end

local srv, wss, ngx_, api

setup(function()
  srv = server.start()
  wss = server.start{ script = "wsserver.py" }
  ngx_ = nginx.start{ upstream = srv.url, ws = wss.url:gsub("^http", "ws") }
  api = new_client{ host = srv.url, token = "tok", allow_plaintext_token = true }
end)

teardown(function()
  if ngx_ then ngx_:stop() end
  wss:stop()
  srv:stop()
end)

-- The same call through libcurl in this process: `nil, message, err` as data.
local function here(endpoint, params, opts, client_opts)
  local c = new_client({ host = srv.url, token = "tok", allow_plaintext_token = true }, client_opts)
  local value, msg, err = c:request(endpoint, params, opts)
  local plain
  if err then
    plain = {}
    for k, v in pairs(err) do plain[k] = v end
  end
  return value, msg, plain
end

local function there(endpoint, params, opts, client_opts)
  return ngx_:get("/call", { endpoint = endpoint, params = params and json.encode(params),
    opts = opts and json.encode(opts), client = client_opts and json.encode(client_opts) })
end

describe("inside nginx", function()
  it("a handler calls the API and gets the decoded result", function()
    local out = there("meta")
    assert.is_nil(out.err)
    assert.equal("2026.5.4", out.value.version)
    assert.equal(srv.url, out.value.uri)
    local echo = there("test/echo", { text = "héllo", n = 3 }).value
    assert.equal("POST", echo.method)
    assert.equal("héllo", echo.json.text)
    assert.equal("tok", echo.json.i)
    assert.matches("^lua%-misskey/[%d.]+ ngx_lua/0%.10%.%d+$", echo.headers["user-agent"])
  end)

  it("runs a batch of 50 while a second request to the same worker is answered", function()
    assert(api:request("test/gate/reset"))
    -- The batch: every reply is held by the test server until the gate opens.
    local batch = misskey.spawn(function() return ngx_:get("/batch", { n = 50 }) end)
    assert.equal(50, assert(api:request("test/gate/arrived", { count = 50, timeout = 20 })).held)
    -- The second request: answered while the 50 wait (its handler tells the server first).
    local second = ngx_:get("/second")
    assert.equal("waiting", batch.status)
    assert(api:request("test/gate/open"))
    local out = assert(batch:join())
    assert.equal(50, out.count)
    for i = 1, 50 do assert.equal(i, out.results[i].key) end
    assert.same({}, out.errs)
    assert.equal(out.pid, second.pid) -- one worker process served both
    -- The order, as the server saw it: 50 held, the second request, then the gate, then the 50 answers.
    local log = assert(api:request("test/gate/log")).log
    assert.equal(50 + 1 + 1 + 50, #log)
    for i = 1, 50 do assert.matches("^arrive:%d+$", log[i]) end
    assert.equal("mark:second", log[51])
    assert.equal("open", log[52])
    for i = 53, 102 do assert.matches("^answer:%d+$", log[i]) end
  end)

  it("misskey.spawn, gather and sleep work in a handler, with the same results and errors", function()
    local out = ngx_:get("/gather")
    assert.same({ "slept", "2026.5.4" }, out.results)
    assert.equal(3, out.n)
    assert.equal("task", out.err3.kind)
    assert.equal("task failed: boom", out.err3.message)
    assert.same({ "meta", "slow" }, out.order) -- the call did not wait for the sleep
  end)

  it("client:paginate walks pages inside a handler", function()
    assert(api:request("test/stream/reset"))
    local posted = {}
    for i = 1, 5 do posted[i] = assert(api:request("test/stream/post", { text = "n" .. i })).id end
    local out = ngx_:get("/paginate")
    assert.same({ posted[5], posted[4], posted[3], posted[2], posted[1] }, out.ids)
  end)

  it("a batch, a pagination and a gather run in a timer (ngx.timer.at)", function()
    assert(ngx_:get("/timer").started)
    local result
    for _ = 1, 100 do -- bounded: the timer's work takes a fraction of a second
      result = ngx_:get("/timer/result").result
      if result then break end
      misskey.sleep(0.05)
    end
    assert.is_table(result, "the timer never finished:\n" .. ngx_:log())
    assert.equal(10, result.batch)
    assert.equal(1, result.first.key)
    assert.equal(5, result.notes)
    assert.same({ "a", "b" }, result.gather)
  end)

  it("a stream's watchdog declares a silent socket dead and the stream reconnects", function()
    assert(api:request("test/stream/reset"))
    local out = ngx_:get("/watchdog")
    assert.equal(2, out.connects)
    assert.matches("watchdog", out.reasons[1])
  end)

  it("uploads a file from disk, streamed, with progress", function()
    local dir = server.temp_dir()
    local path = dir .. "/upload.bin"
    local f = assert(io.open(path, "wb"))
    local data = ("0123456789abcdef"):rep(20000) -- 320000 bytes: several blocks
    f:write(data)
    f:close()
    local h = assert(io.popen("md5sum " .. server.shell_quote(path)))
    local md5 = h:read("*l"):match("^(%x+)")
    h:close()
    local out = ngx_:get("/upload", { path = path })
    server.remove_dir(dir)
    assert.is_nil(out.err)
    local file = out.value
    assert.equal(#data, file.size)
    assert.equal("upload.bin", file.name)
    assert.equal("from nginx", file.comment)
    assert.equal(md5, file.md5)
    assert.is_true(file.test.iBeforeFile)
    assert.matches("^multipart/form%-data", file.test.contentType)
    local last = out.progress[#out.progress]
    assert.equal(last[1], last[2]) -- the whole body, at the end
    assert.truthy(last[2] > #data)
    for _, call in ipairs(out.progress) do assert.truthy(call[2] > #data) end
  end)

  it("signs in with MiAuth: start, approval at the server, check from another request", function()
    local started = ngx_:get("/miauth/start")
    assert.truthy(started.url:find("/miauth/" .. started.session .. "?name=nginx%20spec", 1, true), started.url)
    local pending = ngx_:get("/miauth/callback", { session = started.session })
    assert.equal("pending", pending.err.kind)
    assert(api:request("test/miauth/approve", { session = started.session, token = "nginx-token", username = "carol" }))
    local out = ngx_:get("/miauth/callback", { session = started.session })
    assert.equal("nginx-token", out.token)
    assert.equal("carol", out.user.username)
    assert.equal("carol", out.me)
    assert.equal("pending", ngx_:get("/miauth/callback", { session = started.session }).err.kind) -- once only
  end)
end)

describe("failures inside nginx are the same nil, message, err as with libcurl", function()
  local function same(endpoint, params, fields, opts, client_opts)
    local _, msg, err = here(endpoint, params, opts, client_opts)
    local out = there(endpoint, params, opts, client_opts)
    assert.is_nil(out.value)
    assert.is_table(out.err, endpoint)
    assert.equal(err.kind, out.err.kind, endpoint)
    for _, k in ipairs(fields) do assert.same(err[k], out.err[k], endpoint .. ": " .. k) end
    return msg, out.message, err, out.err
  end

  it("API errors, HTTP errors and bad JSON", function()
    local m1, m2 = same("test/error/no-such-user", nil, { "status", "code", "id", "info", "endpoint", "message" })
    assert.equal(m1, m2)
    same("test/error/invalid-param", nil, { "status", "code", "info", "message" })
    same("test/error/internal", nil, { "status", "code", "message" })
    same("test/bad-gateway", nil, { "status", "body", "message" })
    same("test/invalid-json", nil, { "status", "endpoint" })
    same("test/error/rate-limit", nil, { "status", "code", "retry_after" }, { ratelimit = "throw" })
  end)

  it("network failures and timeouts keep their kinds", function()
    local port = server.free_port()
    same("meta", nil, { "endpoint" }, nil, { host = "http://127.0.0.1:" .. port })
    local _, msg = same("test/slow", { delay = 5 }, { "endpoint" }, { timeout = 0.3 })
    assert.matches("timed out after 0.3 s", msg)
    local blackhole = assert(api:request("test/blackhole")).port
    same("meta", nil, { "endpoint" }, nil, { host = "http://127.0.0.1:" .. blackhole, connect_timeout = 0.3 })
  end)

  it("a reply over max_size is http / too_large, with the status", function()
    same("test/large", { n = 2000 }, { "status", "reason", "endpoint" }, nil, { max_size = 10000 })
    same("test/chunked", { size = 100000, chunk = 1000 }, { "reason" }, nil, { max_size = 10000 })
  end)

  it("a token echoed back by a server is redacted from every field", function()
    local out = there("test/status", { status = 500, body = "token=tok!" })
    assert.is_nil(out.value)
    assert.not_matches("tok!", json.encode(out.err))
    assert.matches("%*%*%*", out.err.body)
  end)
end)

describe("misuse inside nginx", function()
  local function raised(case)
    local out = ngx_:get("/misuse", { case = case })
    assert.is_true(out.raised, case)
    return out.error
  end

  it("raises naming the argument or option, as with libcurl", function()
    assert.matches("bad argument #1 to 'request' %(endpoint must be a string, got number%)", raised("endpoint"))
    assert.matches("bad argument #2 to 'request' %(params must be a table, got string%)", raised("params"))
    assert.matches("bad option 'timeout'", raised("option"))
  end)

  it("refuses what only libcurl has, saying what to use instead", function()
    assert.matches("bad option 'engine' %(there is no C engine inside nginx", raised("engine"))
    assert.matches("bad option 'ca_file' %(inside nginx the trusted certificates are the "
      .. "lua_ssl_trusted_certificate directive's", raised("ca_file"))
    assert.matches("bad option 'max_connections' %(needs the libcurl transport%)", raised("max_connections"))
    assert.matches("stop_on is not available in this runtime", raised("stop_on"))
    assert.matches("misskey.step is not available inside nginx", raised("step"))
    assert.matches("bad argument #1 to 'close' %(a close code is 1000%-1003", raised("close_code"))
  end)

  it("a phase where nothing may wait gets a clear error, not a hang or a crash", function()
    local res = assert(ngx_:raw("/phase/header_filter"))
    assert.matches("^misskey: an HTTP request cannot run in nginx's header_filter phase: cosockets, light "
      .. "threads and sleeps are disabled there", res.headers["x-misskey-error"])
    assert.matches("cannot run in nginx's init_worker phase", ngx_:get("/init_worker_error").error)
  end)
end)
