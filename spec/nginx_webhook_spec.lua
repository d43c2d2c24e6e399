-- misskey.ngx.webhook inside nginx (spec/nginx/webhook.conf, spec/nginx/webhook_app.lua),
-- two worker processes: every bad delivery gets its status and reaches no handler, a
-- replay is recognised by the other worker process too (the lua_shared_dict is the only
-- state they share; each answer names its worker by X-Worker), a large body buffered to a
-- file is read, a handler's error is logged and answered 204, and a bot made in every
-- worker process answers a mention the test server delivers. LuaJIT pass only.
local json = require "misskey.json"
local misskey = require "misskey"
local nginx = require "support.nginx"
local server = require "support.server"
local new_client = require "support.client"

if not rawget(_G, "jit") then return end
local missing = nginx.missing()
if missing then
  io.stderr:write("spec/nginx_webhook_spec.lua: skipped: " .. missing .. "\n")
  it("webhooks behind nginx (skipped: " .. missing .. ")", function() pending(missing) end)
  return
end

local SECRET = "the-hook-secret-0123456789"
local BOT_TOKEN = "NginxBotToken001" -- 16 letters and digits: a native token
local BOT_SECRET = "the-bot-secret-9876543210"

local srv, ngx_, admin

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

setup(function()
  srv = server.start()
  admin = new_client{ host = srv.url, token = false }
  assert(admin:request("test/miauth/approve", { session = "nginx-bot", token = BOT_TOKEN, username = "hookbot" }))
  ngx_ = nginx.start{ template = "spec/nginx/webhook.conf", workers = 2, upstream = srv.url,
    settings = { secret = SECRET, bot_token = BOT_TOKEN, bot_secret = BOT_SECRET,
      bot_url = "http://127.0.0.1:9/bot" } }
end)

teardown(function()
  if ngx_ then ngx_:stop() end
  srv:stop()
end)

-- A delivery of the recorded mention with its own event id (and text): the body.
local function delivery(event_id, text, pad)
  local d = json.decode(read("spec/fixtures/webhook/real-mention.json"))
  d.eventId = event_id
  d.body.note.id = "note-" .. event_id
  if text then d.body.note.text = text end
  if pad then d.padding = ("x"):rep(pad) end
  return json.encode(d)
end

-- POSTs to nginx (a connection of its own); -> status, the answering worker's pid, body.
local function post(path, body, headers)
  local h = { ["Content-Type"] = "application/json", ["X-Misskey-Hook-Secret"] = SECRET }
  for k, v in pairs(headers or {}) do
    if v == false then h[k] = nil else h[k] = v end
  end
  local res = assert(ngx_.client:http{ method = "POST", path = path, headers = h, body = body, timeout = 30 })
  return res.status, tonumber(res.headers["x-worker"]), res.body
end

-- POSTs `body` chunked (no Content-Length), from a Python child (10 s at most); -> status.
local function chunked(path, body)
  local file = os.tmpname()
  local f = assert(io.open(file, "wb"))
  f:write(body)
  f:close()
  local script = ([[
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", %d, timeout=10)
data = open(sys.argv[1], "rb").read()
c.request("POST", "%s", body=iter([data[i:i + 4096] for i in range(0, len(data), 4096)]), encode_chunked=True,
          headers={"Content-Type": "application/json", "X-Misskey-Hook-Secret": "%s"})
print(c.getresponse().status)
]]):format(ngx_.port, path, SECRET)
  local h = assert(io.popen("env -u LD_PRELOAD python3 -c " .. server.shell_quote(script) .. " " .. file))
  local out = h:read("*a")
  h:close()
  os.remove(file)
  return tonumber(out:match("%d+"))
end

-- Sends only a request head announcing `length` body bytes, none of them; -> the status
-- nginx answers within 5 s (nil if none: it waits for the body).
local function head_only(path, length, secret)
  local script = ([[
import socket
s = socket.create_connection(("127.0.0.1", %d), timeout=5)
s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"X-Misskey-Hook-Secret: %s\r\nContent-Length: %d\r\n\r\n")
try:
    print(s.recv(64).split()[1].decode())
except Exception:
    print("none")
]]):format(ngx_.port, path, secret, length)
  local h = assert(io.popen("env -u LD_PRELOAD python3 -c " .. server.shell_quote(script)))
  local out = h:read("*a")
  h:close()
  return tonumber(out:match("%d+"))
end

local function calls()
  return (ngx_:get("/calls"))
end

-- Waits until `cond(calls())` holds (a bounded number of looks, 10 s at most).
local function wait_calls(cond)
  local list
  for _ = 1, 200 do
    list = calls()
    if cond(list) then return list end
    misskey.sleep(0.05)
  end
  error("waited 10 s for the handlers; they saw: " .. json.encode(list) .. "\n" .. ngx_:log())
end

local function seen(list, event_id)
  local n = 0
  for _, c in ipairs(list) do if c.event == event_id then n = n + 1 end end
  return n
end

describe("misskey.ngx.webhook behind nginx", function()
  it("refuses every bad delivery with its status, and none reaches a handler", function()
    local ok = delivery("bad-0")
    local cases = {
      { 401, ok, { ["X-Misskey-Hook-Secret"] = false } },              -- no secret
      { 401, ok, { ["X-Misskey-Hook-Secret"] = "wrong" } },            -- wrong secret
      { 400, "{ not json" },                                           -- not JSON
      { 400, '{"type":"mention","eventId":"bad-1","body":[]}' },       -- the wrong shape
      { 400, '["a delivery is an object"]' },
      { 415, ok, { ["Content-Type"] = "text/plain" } },                -- not JSON by its type
      { 413, delivery("bad-2", nil, 70 * 1024) },                      -- over max_size (64 KiB) by Content-Length
      { 413, delivery("bad-3", nil, 2 * 1024 * 1024) },
    }
    for i, c in ipairs(cases) do
      local status, _, body = post("/hook", c[2], c[3])
      assert.equal(c[1], status, "case " .. i .. ": " .. tostring(body))
    end
    local res = assert(ngx_.client:http{ method = "GET", path = "/hook", timeout = 30 })
    assert.equal(405, res.status)
    -- Refused from the head alone: the body is never waited for.
    assert.equal(413, head_only("/hook", 2 * 1024 * 1024, SECRET))
    assert.equal(401, head_only("/hook", 1000, "wrong"))
    -- Chunked, so no Content-Length: nginx buffers it to a file, which is over the cap.
    assert.equal(413, chunked("/hook", delivery("bad-4", nil, 70 * 1024)))
    assert.equal(413, chunked("/hook", delivery("bad-5", nil, 65 * 1024)))
    -- The handlers of a good delivery run after its answer: once it is seen, nothing else came.
    assert.equal(204, (post("/hook", delivery("good-0"))))
    local list = wait_calls(function(l) return seen(l, "good-0") == 1 end)
    assert.equal(1, #list, json.encode(list))
  end)

  it("raises on misuse, naming the argument or option", function()
    local got = ngx_:get("/misuse")
    local want = {
      "bad option 'seen'.*lua_shared_dict",
      "bad option 'seen'.*lua_shared_dict.*no_such_dict",
      "bad option 'seen'.*seen or store, not both",
      "bad option 'secret'",
      "bad option 'max_size'",
      "bad option 'colour'.*unknown option",
      "bad argument #2 to 'store'",
      "bad argument #1 to 'store'.*no_such_dict",
      "bad option 'ttl'",
      "bad argument #1 to 'bot'",
      "bad option 'grace'",
      "bad argument #1 to 'serve'",
      "bad option 'listen'.*no built%-in listener",
    }
    assert.equal(#want, #got)
    for i, pattern in ipairs(want) do
      assert.matches(pattern, got[i])
      assert.matches("^[^:]*webhook_app%.lua:%d+: ", got[i]) -- the caller's line: the level is right
    end
  end)

  it("recognises a replay in the other worker process too (the shared dict is all they share)", function()
    local status, first = post("/hook", delivery("replayed-1"))
    assert.equal(204, status)
    assert.is_number(first)
    local other
    for _ = 1, 100 do -- reuseport spreads new connections over both workers
      local s, pid = post("/hook", delivery("replayed-1"))
      assert.equal(204, s)
      if pid ~= first then
        other = pid
        break
      end
    end
    assert.is_number(other, "no delivery reached the other worker process in 100 tries")
    assert.are_not.equal(first, other)
    assert.truthy(#ngx_:workers() == 2)
    -- One more event after the replays: when its handler has run, the replays' would have too.
    assert.equal(204, (post("/hook", delivery("after-replays"))))
    local list = wait_calls(function(l) return seen(l, "after-replays") == 1 end)
    assert.equal(1, seen(list, "replayed-1"))
    for _, c in ipairs(list) do
      if c.event == "replayed-1" then assert.equal(first, c.pid) end
    end
  end)

  it("reads a body nginx buffered to a temporary file (over client_body_buffer_size)", function()
    assert.equal(204, (post("/hook", delivery("large-1", nil, 40 * 1024))))
    wait_calls(function(l) return seen(l, "large-1") == 1 end)
  end)

  it("answers 204 when a handler raises, logs the error, and takes the next delivery", function()
    local status = post("/hook", delivery("boom-1", "boom"))
    assert.equal(204, status)
    assert.equal(204, (post("/hook", delivery("after-boom"))))
    wait_calls(function(l) return seen(l, "boom-1") == 1 and seen(l, "after-boom") == 1 end)
    local log
    for _ = 1, 100 do
      log = read(ngx_.dir .. "/error.log")
      if log:find("the handler raised on purpose", 1, true) then break end
      misskey.sleep(0.05)
    end
    assert.truthy(log:find("misskey.ngx.webhook: a handler failed", 1, true), ngx_:log())
    assert.falsy(log:find(SECRET, 1, true))
  end)

  it("lets its worker processes exit on a reload, and the next generation still knows the handled ids", function()
    local old = ngx_:workers()
    assert.equal(2, #old)
    ngx_:reload()
    local gone
    for _ = 1, 200 do -- the old workers end their dispatcher and bot timers, then exit
      gone = true
      for _, pid in ipairs(old) do
        local alive = os.execute("kill -0 " .. pid .. " 2>/dev/null")
        if alive == 0 or alive == true then gone = false end
      end
      if gone then break end
      misskey.sleep(0.05)
    end
    assert.is_true(gone, "the old worker processes are still there\n" .. ngx_:log())
    local status, pid = post("/hook", delivery("replayed-1"))
    assert.equal(204, status)
    assert.is_nil(old[1] == pid or old[2] == pid or nil)
    assert.equal(204, (post("/hook", delivery("after-reload"))))
    local list = wait_calls(function(l) return seen(l, "after-reload") == 1 end)
    assert.equal(1, seen(list, "replayed-1"))
  end)

  it("runs a bot in every worker process: a mention delivered by the server gets the bot's reply", function()
    local bot = new_client{ host = srv.url, token = BOT_TOKEN }
    assert(bot:request("i/webhooks/create", { name = "nginx-bot", url = ngx_.url .. "/bot", secret = BOT_SECRET,
      on = { "mention" } }))
    -- Each worker's bot answers 503 until it has asked `i`: wait until a wrong secret gets 401 from both.
    local ready, started = {}, 0
    for _ = 1, 200 do
      local s, pid = post("/bot", "{}", { ["X-Misskey-Hook-Secret"] = "wrong" })
      assert.truthy(s == 401 or s == 503, s)
      if s == 401 and not ready[pid] then ready[pid], started = true, started + 1 end
      if started == 2 then break end
      misskey.sleep(0.02)
    end
    assert.equal(2, started, "the bots of both worker processes should have started")
    local note = { id = "9nginxnote1", text = "@hookbot ping", userId = "9alice", visibility = "public",
      user = { id = "9alice", username = "alice", host = misskey.null } }
    assert(admin:request("test/webhooks/deliver", { username = "hookbot", type = "mention", body = { note = note } }))
    local reply
    for _ = 1, 200 do
      for _, n in ipairs(assert(admin:request("test/notes/list"))) do
        if n.text and n.text:find("^@alice pong from %d+$") then reply = n end
      end
      if reply then break end
      misskey.sleep(0.05)
    end
    assert.truthy(reply, "no reply reached notes/create\n" .. ngx_:log())
    local log = assert(admin:request("test/webhooks/log"))
    assert.equal(204, log[#log].status)
    local list = wait_calls(function(l)
      for _, c in ipairs(l) do if c.type == "bot mention" then return true end end
    end)
    local n = 0
    for _, c in ipairs(list) do if c.type == "bot mention" then n = n + 1 end end
    assert.equal(1, n)
  end)
end)
