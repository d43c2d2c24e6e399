-- `misskey webhook list|create|delete|test|listen` as a subprocess against the
-- test server (spec/support/server.py with spec/support/webhooks_api.py, which
-- delivers over real HTTP from its own process), with XDG_CONFIG_HOME in a
-- temp dir. The webhook's secret goes to the credential store and is never
-- printed; `listen` prints each delivery's body as a JSON line.
local json = require "misskey.json"
local new_client = require "support.client"
local runner = require "support.cli"
local server = require "support.server"

local NATIVE = "CliNativeToken16"                    -- 16 letters and digits
local MIAUTH = "CliMiAuthToken0123456789abcdefGH"     -- 32: what MiAuth hands out
local USER = "clihook"

local srv, admin, dir

setup(function()
  srv = server.start()
  admin = new_client{ host = srv.url, token = false }
  for i, token in ipairs{ NATIVE, MIAUTH } do
    assert(admin:request("test/miauth/approve", { session = "cli-hook-" .. i, token = token, username = USER }))
  end
end)
teardown(function() srv:stop() end)
before_each(function()
  dir = server.temp_dir()
  assert(admin:request("test/webhooks/reset"))
end)
after_each(function() server.remove_dir(dir) end)

local function run(args, token)
  return runner.run(dir, "webhook " .. args, { MISSKEY_HOST = srv.url, MISSKEY_TOKEN = token or NATIVE })
end

local function server_hooks()
  return assert(new_client{ host = srv.url, token = NATIVE }:request("i/webhooks/list"))
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

describe("misskey webhook", function()
  it("creates (idempotent by name), lists and deletes; the secret is kept, never printed", function()
    local out, err, code = run("create cli http://127.0.0.1:9/hook --on mention,followed")
    assert.equal(0, code, err)
    local created = json.decode(out)
    assert.equal("cli", created.name)
    assert.same({ "mention", "followed" }, created.on)
    local hooks = server_hooks()
    assert.equal(1, #hooks)
    local secret = hooks[1].secret
    assert.equal(43, #secret)
    assert.is_nil(out:find(secret, 1, true))
    assert.is_nil(err:find(secret, 1, true))
    local store = read_file(dir .. "/misskey/credentials.json")
    local account = "@" .. USER .. "@" .. srv.url:gsub("^http://", "")
    assert.equal(secret, json.decode(store).webhooks[account].cli.secret)
    -- Again: the same webhook, the same secret.
    out, err, code = run("create cli http://127.0.0.1:9/hook --on mention,followed")
    assert.equal(0, code, err)
    assert.equal(created.id, json.decode(out).id)
    assert.equal(1, #server_hooks())
    assert.equal(secret, server_hooks()[1].secret)
    local _
    out, err, code = run("list")
    assert.equal(0, code, err)
    local listed = json.decode((out:gsub("\n$", "")))
    assert.equal(created.id, listed.id)
    assert.is_nil(listed.secret)
    assert.is_nil(out:find(secret, 1, true))
    _, err, code = run("delete cli")
    assert.equal(0, code, err)
    assert.same({}, server_hooks())
    assert.is_nil(json.decode(read_file(dir .. "/misskey/credentials.json")).webhooks)
    _, err, code = run("delete cli")
    assert.equal(1, code)
    assert.matches("no webhook cli", err)
  end)

  it("refuses plain http to another machine unless --allow-plaintext-secret", function()
    local _, err, code = run("create far http://far.example/hook")
    assert.equal(2, code)
    assert.matches("secret in clear", err)
    assert.matches("--allow-plaintext-secret", err, 1, true)
    assert.same({}, server_hooks())
    _, err, code = run("create far http://far.example/hook --allow-plaintext-secret")
    assert.equal(0, code, err)
    _, err, code = run("create bad http://127.0.0.1:9/ --on bogus")
    assert.equal(2, code)
    assert.matches("bad option 'events'", err)
    _, err, code = run("frob")
    assert.equal(2, code)
    assert.matches("unknown subcommand frob", err)
  end)

  it("test: a MiAuth token gets a clear error (the server's ACCESS_DENIED), a native one a delivery", function()
    assert.equal(0, select(3, run("create t http://127.0.0.1:9/hook")))
    local _, err, code = run("test t --type mention", MIAUTH)
    assert.equal(1, code)
    assert.matches("takes only a native token", err, 1, true)
    assert.matches("ACCESS_DENIED", err, 1, true)
    _, err, code = run("test t --type mention")
    assert.equal(0, code, err)
    _, err, code = run("test nosuch")
    assert.equal(1, code)
    assert.matches("no webhook nosuch", err)
  end)

  it("listen prints the body of each delivery that carries the secret, one JSON line each", function()
    local port = server.free_port()
    local _, err, code = run(("create l http://127.0.0.1:%d/hook --on mention"):format(port))
    assert.equal(0, code, err)
    local cmd = runner.command(dir, ("webhook listen --port %d --path /hook --name l --count 2"):format(port),
      { MISSKEY_HOST = srv.url, MISSKEY_TOKEN = NATIVE })
    local p = assert(io.popen("timeout 30 " .. cmd .. " 2>&1"))
    local first = p:read("*l") -- it says where it listens once it does
    assert.equal(("misskey webhook listen: listening on http://127.0.0.1:%d/hook"):format(port), first)
    -- Without the secret: refused, nothing printed.
    local res = assert(require("misskey.transport.curl").new().request{ method = "POST", timeout = 5,
      url = ("http://127.0.0.1:%d/hook"):format(port), body = '{"type":"mention","eventId":"x","body":{}}',
      headers = { ["Content-Type"] = "application/json", ["X-Misskey-Hook-Secret"] = "guess" } })
    assert.equal(401, res.status)
    _, err, code = run("test l --type mention")
    assert.equal(0, code, err)
    local note = { id = "9realnote", text = "@clihook hi", userId = "9alice",
      user = { id = "9alice", username = "alice" } }
    assert(admin:request("test/webhooks/deliver", { username = USER, type = "mention", body = { note = note } }))
    local rest = p:read("*a")
    p:close()
    local lines = {}
    for line in rest:gmatch("[^\n]+") do lines[#lines + 1] = json.decode(line) end
    assert.equal(2, #lines, rest)
    local ids = { lines[1].note.id, lines[2].note.id }
    table.sort(ids)
    assert.same({ "9realnote", "dummy-mention-1" }, ids)
    assert.is_nil(lines[1].eventId) -- the body, not the whole event
    assert.is_nil(lines[1].type)
  end)

  it("has --help, and listen needs a port and a secret", function()
    local out, _, code = runner.run(dir, "webhook --help")
    assert.equal(0, code)
    assert.matches("usage: misskey webhook", out)
    local _, err
    _, err, code = run("listen")
    assert.equal(2, code)
    assert.matches("%-%-port", err)
    _, err, code = run("listen --port 0")
    assert.equal(2, code)
    assert.matches("%-%-name", err)
  end)
end)
