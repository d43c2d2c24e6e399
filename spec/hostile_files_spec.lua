-- Tokens on the wire and on disk, against hosts, proxies and local users that do not play fair:
-- the credential store and the schema cache refuse symbolic links, other users' files and
-- directories and FIFOs; writers of the store take turns (flock) and sweep leftover temporary
-- files; the schema cache is data, never code; a token never crosses a network in clear
-- unless asked to; the OAuth loopback listener waits past idle, slow and wrong connections; and
-- `misskey login` never throws a token away.
local core = require "misskey.core"
local credentials = require "misskey.credentials"
local json = require "misskey.json"
local misskey = require "misskey"
local server = require "support.server"
local runner = require "support.cli"
local with_env = require "support.env"

local q = server.shell_quote
local TOKEN = "HostileToken0123456789abcdefABCD"
local MODE_700, MODE_755, MODE_600 = tonumber("700", 8), tonumber("755", 8), tonumber("600", 8)

local dir

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok == true or ok == 0, cmd)
end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end

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

local function listing(path) return capture("ls -A " .. q(path)) end

local is_root = capture("env -u LD_PRELOAD id -u"):match("^0%s*$") ~= nil

before_each(function()
  dir = server.temp_dir()
  with_env{ XDG_CONFIG_HOME = dir .. "/cfg" }
end)

after_each(function()
  with_env.reset()
  server.remove_dir(dir)
end)

local ACCOUNT = { host = "https://a.example", token = TOKEN, username = "alice" }

describe("the credential store", function()
  it("refuses a symbolic link as its directory and changes nothing behind it", function()
    sh("mkdir -m 755 " .. q(dir .. "/elsewhere") .. " " .. q(dir .. "/cfg"))
    sh("ln -s " .. q(dir .. "/elsewhere") .. " " .. q(dir .. "/cfg/misskey"))
    local key, msg, err = credentials.add(ACCOUNT)
    assert.is_nil(key)
    assert.equal("symlink", err.reason)
    assert.matches("symbolic link", msg)
    assert.equal(MODE_755, core.file_mode(dir .. "/elsewhere")) -- not tightened
    assert.equal("", listing(dir .. "/elsewhere"))            -- nothing written there
    -- Reading refuses it too (not an empty store).
    local store, _, lerr = credentials.load()
    assert.is_nil(store)
    assert.equal("symlink", lerr.reason)
  end)

  it("refuses a symbolic link as the store file, on reading and on writing", function()
    assert(credentials.add(ACCOUNT))
    local other = dir .. "/other.json"
    assert(core.write_private(other, '{"accounts":{}}'))
    local path = credentials.path()
    os.remove(path)
    sh("ln -s " .. q(other) .. " " .. q(path))
    local store, msg, err = credentials.load()
    assert.is_nil(store)
    assert.equal("symlink", err.reason)
    assert.matches("symbolic link", msg)
    assert.is_nil(credentials.add{ host = "https://b.example", token = TOKEN, username = "bob" })
    assert.equal('{"accounts":{}}', read(other))
    sh("test -L " .. q(path)) -- still the link: neither followed nor replaced
  end)

  it("refuses a directory or a file that belongs to another user, and changes neither", function()
    if not is_root then pending("needs root to chown") return end
    local sub = dir .. "/cfg/misskey"
    sh("mkdir -p -m 755 " .. q(sub) .. " && chown 65534 " .. q(sub))
    local key, msg, err = credentials.add(ACCOUNT)
    assert.is_nil(key)
    assert.equal("owner", err.reason)
    assert.matches("uid 65534", msg)
    assert.equal(MODE_755, core.file_mode(sub))
    assert.equal("", listing(sub))
    local _, _, lerr = credentials.get()
    assert.equal("owner", lerr.reason)
    -- Our directory, another user's file.
    sh("chown 0 " .. q(sub) .. " && chmod 700 " .. q(sub))
    assert(credentials.add(ACCOUNT))
    sh("chown 65534 " .. q(credentials.path()))
    local store, fmsg, ferr = credentials.load()
    assert.is_nil(store)
    assert.equal("owner", ferr.reason)
    assert.not_matches(TOKEN, fmsg)
  end)

  it("makes its directory 0700, but never changes one it did not make", function()
    assert(credentials.add(ACCOUNT))
    assert.equal(MODE_700, core.file_mode(dir .. "/cfg/misskey"))
    server.remove_dir(dir)
    sh("mkdir -p " .. q(dir .. "/cfg") .. " && mkdir -m 775 " .. q(dir .. "/cfg/misskey"))
    local key, msg, err = credentials.add(ACCOUNT)
    assert.is_nil(key)
    assert.equal("mode", err.reason) -- group-writable: refused, with the fix
    assert.matches("chmod 700 " .. dir .. "/cfg/misskey", msg, 1, true)
    assert.equal(tonumber("775", 8), core.file_mode(dir .. "/cfg/misskey"))
  end)

  it("does not hang on a FIFO at the store path", function()
    local sub = dir .. "/cfg/misskey"
    sh("mkdir -p -m 700 " .. q(sub) .. " && mkfifo -m 600 " .. q(sub .. "/credentials.json"))
    -- In a child with a time limit: were the FIFO opened for reading, the open would wait for a writer.
    local script = ("package.path = %q; package.cpath = %q; "
      .. "require('misskey.env').replace(function(n) if n == 'XDG_CONFIG_HOME' then return %q end end); "
      .. "local e, msg, err = require('misskey.credentials').get(); io.write(tostring(e), ' ', msg, ' ', err.reason)")
      :format(package.path, package.cpath, dir .. "/cfg")
    -- stderr apart: under `make asan` the sanitizers may report on it.
    local out = capture("timeout 10 " .. runner.interpreter .. " -e " .. q(script) .. " 2>" .. q(dir .. "/err")
      .. "; echo \" exit=$?\"")
    assert.matches("^nil .*not a regular file type exit=0", out, 1, false, read(dir .. "/err"))
  end)
end)

describe("the credential store's lock", function()
  it("makes four processes adding 40 accounts each keep all 160", function()
    local script = ("package.path = %q; package.cpath = %q; "
      .. "require('misskey.env').replace(function(n) if n == 'XDG_CONFIG_HOME' then return %q end end); "
      .. "local c = require('misskey.credentials'); local w = tonumber(arg[1]); "
      .. "for i = 1, 40 do assert(c.add{ host = 'https://h.example', token = 'T' .. w .. '_' .. i, "
      .. "username = 'u' .. w .. '_' .. i }) end")
      :format(package.path, package.cpath, dir .. "/cfg")
    local file = dir .. "/writer.lua"
    write(file, script)
    local cmd = {}
    for w = 1, 4 do
      cmd[#cmd + 1] = ("timeout 120 %s %s %d 2>>%s &"):format(runner.interpreter, q(file), w, q(dir .. "/err"))
    end
    local out = capture("(" .. table.concat(cmd, " ") .. " fail=0; for j in 1 2 3 4; do wait %$j || fail=1; done; "
      .. "echo writers=$fail)")
    assert.matches("writers=0", out, 1, false, read(dir .. "/err"))
    local store = assert(credentials.load())
    assert.equal(160, #credentials.list(store))
  end)

  it("waits for a holder, and gives up after its timeout", function()
    local path = dir .. "/cfg/misskey/credentials.json.lock"
    local held = assert(core.lock_private(path))
    local again, msg, reason = core.lock_private(path, 0.05)
    assert.is_nil(again)
    assert.equal("timeout", reason)
    assert.matches("locked", msg)
    -- A store writer meanwhile fails the same way instead of writing unlocked.
    held:unlock()
    local later = assert(core.lock_private(path, 0))
    later:unlock()
    assert.has_error(function() core.lock_private(path, 0 / 0) end)
  end)
end)

describe("leftovers and damaged stores", function()
  it("removes temporary files left by interrupted writes on the next write", function()
    assert(credentials.add(ACCOUNT))
    local sub = dir .. "/cfg/misskey"
    for _, name in ipairs{ "credentials.json.tmp-0123456789abcdef", "credentials.json.tmp-x" } do
      assert(core.write_private(sub .. "/" .. name, '{"accounts":{"@x@y":{"token":"' .. TOKEN .. '"}}}'))
    end
    write(sub .. "/notes.tmp-keep", "not ours")
    assert(credentials.add{ host = "https://b.example", token = TOKEN, username = "bob" })
    assert.equal("credentials.json\ncredentials.json.lock\nnotes.tmp-keep\n", listing(sub))
  end)

  it("names an entry of the wrong type clearly, in the library and in `misskey accounts`", function()
    assert(core.write_private(credentials.path(), '{"accounts":{"@a@b.example":5,"@c@d.example":{"host":"x"}}}'))
    local store, msg, err = credentials.load()
    assert.is_nil(store)
    assert.equal("format", err.reason)
    assert.matches('the entry "@[ac]@[bd]%.example" of "accounts" is not an account', msg)
    local out, stderr, code = runner.run(dir .. "/cfg", "accounts")
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("is not an account", stderr)
    assert.not_matches("internal error", stderr)
  end)
end)

describe("the schema cache", function()
  local api_json = read("spec/fixtures/api-2025.7.0.json")

  -- A server (as a transport: nothing leaves the process) whose version is `version`.
  local function transport(version, counter, document)
    local function reply(value)
      return { status = 200, headers = { ["content-type"] = "application/json" }, body = json.encode(value) }
    end
    return {
      request = function(req)
        local path = req.url:match("^https?://[^/]+(/[^?]*)")
        if path == "/nodeinfo/2.1" then return reply{ software = { name = "misskey", version = version } } end
        if path == "/api/meta" then return reply{ version = version } end
        if path == "/api.json" then
          counter.n = counter.n + 1
          return { status = 200, headers = { ["content-type"] = "application/json" }, body = document or api_json }
        end
        return { status = 404, headers = {}, body = "" }
      end,
    }
  end

  local function schema_client(t)
    return misskey.new{ host = "https://schema.example", token = false, transport = t }
  end

  before_each(function() with_env{ XDG_CACHE_HOME = dir .. "/cache" } end)

  it("stores a hostile version as data: loading the cache runs none of it", function()
    local version = '2026.1.0\ndo return { source = {}, endpoints = { injected = { params = {} } } } end\n--'
    local fetched = { n = 0 }
    local info = assert(schema_client(transport(version, fetched)):schema())
    assert.equal("server", info.source)
    local c = schema_client(transport(version, fetched))
    local again = assert(c:schema())
    assert.is_nil(require("misskey.schema").lookup("injected", c:catalogue())) -- the server's code did not run
    assert.is_table(require("misskey.schema").lookup("notes/create", c:catalogue()))
    assert.equal("cache", again.source)
    assert.equal(1, fetched.n)
    assert.equal(info.endpoints, again.endpoints)
    assert.matches("%.json$", info.path)
    assert.is_table(json.decode(read(info.path)))
  end)

  it("never runs a cache file of the old (Lua) format, and removes it", function()
    local old = dir .. "/cache/misskey/schema-schema.example-misskey-2026.1.0.lua"
    assert(core.write_private(old, "return { source = {}, endpoints = { injected = { params = {} } } }"))
    local fetched = { n = 0 }
    local c = schema_client(transport("2026.1.0", fetched))
    local info = assert(c:schema())
    assert.equal("server", info.source)
    assert.equal(1, fetched.n)
    assert.is_nil(require("misskey.schema").lookup("injected", c:catalogue()))
    assert.is_nil(io.open(old, "rb"))
  end)

  it("refuses a document with a number beyond a double as a decode error, and caches nothing", function()
    -- The decoder refuses what the encoder could not write back, so such a document never
    -- gets as far as the cache (a real api.json has no such number).
    local document = api_json:gsub('"maximum":500', '"maximum":1e400')
    local info, msg, err = schema_client(transport("2026.1.0", { n = 0 }, document)):schema()
    assert.is_nil(info)
    assert.equal("decode", err.kind)
    assert.matches("number out of range", msg)
    assert.equal("", capture("ls -A " .. q(dir .. "/cache/misskey") .. " 2>/dev/null"))
  end)

  it("refuses a symbolic link as its directory", function()
    sh("mkdir -p " .. q(dir .. "/cache") .. " && mkdir -m 755 " .. q(dir .. "/elsewhere"))
    sh("ln -s " .. q(dir .. "/elsewhere") .. " " .. q(dir .. "/cache/misskey"))
    local info = assert(schema_client(transport("2026.1.0", { n = 0 })):schema())
    assert.equal("server", info.source)
    assert.matches("symbolic link", info.cache_error)
    assert.equal("", listing(dir .. "/elsewhere"))
    assert.equal(MODE_755, core.file_mode(dir .. "/elsewhere"))
  end)
end)

describe("a token over plain http", function()
  -- A 64-character label: the resolver refuses it without sending a query.
  local FAR = "http://" .. ("a"):rep(64) .. ".invalid"

  local function refused(opts, env)
    with_env(env or {})
    local ok, msg = pcall(misskey.new, opts)
    assert.is_false(ok)
    assert.matches("allow_plaintext_token = true", msg, 1, true)
    assert.not_matches(TOKEN, msg)
    return msg
  end

  it("is refused to another machine unless allow_plaintext_token = true", function()
    assert.matches("not this machine", refused{ host = FAR, token = TOKEN })
    assert.matches("MISSKEY_TOKEN", refused({}, { MISSKEY_HOST = FAR, MISSKEY_TOKEN = TOKEN }))
    with_env{}
    assert.is_true(misskey.new{ host = FAR, token = TOKEN, allow_plaintext_token = true }.allow_plaintext_token)
    assert.is_false(misskey.new{ host = FAR, token = false }.allow_plaintext_token) -- no token: nothing to refuse
    for _, host in ipairs{ "http://127.0.0.1:3000", "http://127.9.8.7", "http://localhost:8080", "http://[::1]:3000",
                           "https://a.example" } do
      assert.is_table(misskey.new{ host = host, token = TOKEN }, host)
    end
    assert.has_error(function() misskey.new{ host = FAR, token = TOKEN, allow_plaintext_token = "yes" } end,
      "bad option 'allow_plaintext_token' (boolean expected, got string)")
  end)

  it("is refused to this machine through a proxy on another one", function()
    local msg = refused({ host = "http://127.0.0.1:3000", token = TOKEN },
      { http_proxy = "http://user:secret@proxy.example:3128" })
    assert.matches("proxy proxy%.example", msg)
    assert.not_matches("secret", msg)
    with_env{ http_proxy = "http://proxy.example:3128", no_proxy = "localhost,127.0.0.1" }
    assert.is_table(misskey.new{ host = "http://127.0.0.1:3000", token = TOKEN })
    with_env{ all_proxy = "http://127.0.0.1:3128" }
    assert.is_table(misskey.new{ host = "http://127.0.0.1:3000", token = TOKEN })
  end)

  it("follows a stored account that was allowed plain http at login, and only that one", function()
    assert(credentials.add{ host = FAR, token = TOKEN, username = "lan", allow_plaintext_token = true })
    local c = misskey.new{}
    assert.equal(FAR, c.base_url)
    assert.is_true(c.allow_plaintext_token)
    assert(credentials.add{ host = FAR, token = TOKEN, username = "other", default = true })
    assert.matches("the stored account @other@", refused({}, { XDG_CONFIG_HOME = dir .. "/cfg" }))
  end)

  it("is refused before any login flow starts", function()
    local auth = require "misskey.auth"
    with_env{}
    local flows = {
      function() return auth.miauth{ host = FAR, name = "x" } end,
      function() return auth.app_create{ host = FAR, name = "x" } end,
      function() return auth.app_session(FAR, "secret") end,
      function()
        return auth.oauth_start{ host = FAR, client_id = "https://c.example/", redirect_uri = "https://c.example/cb" }
      end,
      function()
        return auth.oauth_exchange{ host = FAR, code = "c", state = "s", expected_state = "s", verifier = "v",
          client_id = "https://c.example/", redirect_uri = "https://c.example/cb" }
      end,
    }
    for i, flow in ipairs(flows) do
      local ok, msg = pcall(flow)
      assert.is_false(ok, i)
      assert.matches("allow_plaintext_token = true", msg, 1, true)
    end
    assert.matches("^" .. FAR .. "/miauth/", auth.miauth{ host = FAR, name = "x", allow_plaintext_token = true }.url)
    local lan = misskey.new{ host = FAR, token = false, allow_plaintext_token = true }
    assert.matches("^" .. FAR .. "/miauth/", auth.miauth{ host = lan, name = "x" }.url)
  end)

  it("is refused by the command, which names its flag", function()
    local cfg = dir .. "/cfg"
    local out, err, code = runner.run(cfg, "whoami", { MISSKEY_HOST = FAR, MISSKEY_TOKEN = TOKEN })
    assert.equal(2, code)
    assert.matches("--allow-plaintext-token", err, 1, true)
    assert.not_matches(TOKEN, out .. err)
    out, err, code = runner.run(cfg, "login --host " .. FAR)
    assert.equal(2, code)
    assert.equal("", out) -- no URL: the flow never started
    assert.matches("--allow-plaintext-token", err, 1, true)
    -- Allowed, it goes ahead (and fails to resolve the host: exit 1).
    out, err, code = runner.run(cfg, "whoami --allow-plaintext-token", { MISSKEY_HOST = FAR, MISSKEY_TOKEN = TOKEN })
    assert.equal(1, code)
    assert.matches("curl error 6", err)
    assert.not_matches(TOKEN, out .. err)
  end)
end)

describe("the OAuth loopback listener", function()
  -- A local client in Python (this process waits for the redirect in the scheduler):
  -- `plan` is Python code run with helpers; it prints what it saw, one line each, into `out`.
  local PRELUDE = [[
import socket, sys, time
PORT = int(sys.argv[1])
def conn():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    return s
def ask(text):
    s = conn()
    s.sendall(text.encode())
    status = s.recv(100).split(b" ")[1].decode()
    s.close()
    return status
held = []
]]

  local function client(port, plan)
    local file = dir .. "/client.py"
    write(file, PRELUDE .. plan)
    -- Not under the sanitizers' preload (their reports would mix into what it prints).
    return assert(io.popen("env -u LD_PRELOAD timeout 30 python3 " .. q(file) .. " " .. port .. " 2>&1", "r"))
  end

  it("waits past an idle connection, a slow drip and wrong requests, then takes the redirect", function()
    local port = server.free_port()
    local l = assert(require("misskey.auth").oauth_listen(port))
    local p = client(port, [[
idle = conn(); held.append(idle)          # a preconnect that never speaks
drip = conn(); held.append(drip)
for ch in "GET /cb?co":                    # a byte now and then
    drip.send(ch.encode()); time.sleep(0.05)
for ch in range(20):                        # more connections than the listener has room for
    held.append(conn())
print("path", ask("GET /other?code=1&state=S1 HTTP/1.1\r\n\r\n"))
print("state", ask("GET /cb?code=1&state=WRONG HTTP/1.1\r\n\r\n"))
print("nocode", ask("GET /cb?state=S1 HTTP/1.1\r\n\r\n"))
print("post", ask("POST /cb?code=1&state=S1 HTTP/1.1\r\n\r\n"))
print("junk", ask("\x00\x01 nonsense\r\n\r\n"))
print("real", ask("GET /cb?code=abc&state=S%31 HTTP/1.1\r\nHost: x\r\n\r\n"))
]])
    local target, why = l:accept(20, { path = "/cb", state = "S1" })
    local seen = p:read("*a")
    p:close()
    l:close()
    assert.equal("/cb?code=abc&state=S%31", target, tostring(why) .. "\n" .. seen)
    assert.equal("path 400\nstate 400\nnocode 400\npost 400\njunk 400\nreal 200\n", seen)
  end)

  it("takes an OAuth error redirect with the right state (the user said no)", function()
    local port = server.free_port()
    local l = assert(require("misskey.auth").oauth_listen(port))
    local p = client(port, [[print(ask("GET /cb?error=access_denied&state=S1 HTTP/1.1\r\n\r\n"))]])
    local target = l:accept(20, { path = "/cb", state = "S1" })
    p:close()
    l:close()
    assert.equal("/cb?error=access_denied&state=S1", target)
  end)

  it("clamps its timeout: a negative one does not wait forever, NaN raises", function()
    local port = server.free_port()
    local l = assert(require("misskey.auth").oauth_listen(port))
    -- A redirect a little later ends the wait if the timeout were (wrongly) endless.
    local p = client(port, [[
time.sleep(1)
try: print(ask("GET /cb?code=1&state=S1 HTTP/1.1\r\n\r\n"))
except Exception as e: print("gone")
]])
    local target, why = l:accept(-1, { path = "/cb", state = "S1" })
    assert.is_nil(target)
    assert.equal("timeout", why)
    assert.has_error(function() l:accept(0 / 0) end)
    assert.equal("/cb?code=1&state=S1", l:accept(1e10, { path = "/cb", state = "S1" }))
    p:close()
    l:close()
    assert.has_error(function() l:accept(1, { path = "no-slash" }) end)
  end)
end)

describe("misskey login and the credential store", function()
  local srv, admin
  setup(function()
    srv = server.start()
    admin = misskey.new{ host = srv.url, token = false }
  end)
  teardown(function() srv:stop() end)

  local function store_file() return dir .. "/cfg/misskey/credentials.json" end

  it("checks the store before asking the server for anything", function()
    assert(credentials.add(ACCOUNT))
    sh("chmod 644 " .. q(store_file()))
    local out, err, code = runner.run(dir .. "/cfg", "login --permission read:account --host " .. srv.url)
    assert.equal(1, code)
    assert.equal("", out) -- no URL printed: nothing to approve
    assert.matches("cannot take a token", err)
    assert.matches("chmod 600", err)
    sh("chmod 600 " .. q(store_file()))
    assert(core.write_private(store_file(), "not json"))
    out, err, code = runner.run(dir .. "/cfg", "login --permission read:account --host " .. srv.url)
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("not a credentials file", err)
  end)

  it("keeps the token in a new 0600 file when the store breaks during the flow", function()
    local token = "RescueToken0123456789abcdefABCDE"
    local out, code = runner.login(dir .. "/cfg", srv.url, "--permission read:account", function(url)
      local session = url:match("/miauth/([%x%-]+)%?")
      assert(core.write_private(store_file(), "broken meanwhile"))
      assert(admin:request("test/miauth/approve", { session = session, token = token, username = "rita" }))
    end)
    assert.equal(1, code, out)
    assert.not_matches(token, out) -- not a terminal: never printed
    local path = out:match("The token is kept in (%S+) %(mode 0600%)")
    assert.is_string(path, out)
    assert.equal(token .. "\n", read(path))
    assert.equal(MODE_600, core.file_mode(path))
    assert.matches("MISSKEY_HOST=" .. srv.url, out, 1, true)
  end)

  it("says how to configure an account when there is none (exit 3)", function()
    for _, args in ipairs{ "whoami", "api i", "post hello" } do
      local out, err, code = runner.run(dir .. "/cfg", args)
      assert.equal(3, code, args)
      assert.equal("", out)
      assert.matches("no account is configured: log in with `misskey login --host HOST`, or set MISSKEY_HOST "
        .. "and MISSKEY_TOKEN", err, 1, true)
      assert.not_matches("bad option", err)
    end
  end)
end)
