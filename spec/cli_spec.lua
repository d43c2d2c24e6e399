-- bin/misskey as a subprocess on the interpreter under test, against the test
-- server, with XDG_CONFIG_HOME in a temp dir: every command, its exit status
-- (0 ok, 1 API/network/store failure, 2 usage), and no token printed except by
-- `misskey token`.
local misskey = require "misskey"
local server = require "support.server"

local runner = require "support.cli"
local with_env = require "support.env"
local q = server.shell_quote

local srv, admin, dir

local function command(args, env) return runner.command(dir, args, env) end

-- Runs the command; returns stdout, stderr, exit status.
local function run(args, env, stdin) return runner.run(dir, args, env, stdin) end

local function store_account(username, token)
  assert(admin:request("test/miauth/approve", { session = "cli-" .. username, token = token, username = username }))
  -- Log in through the library's store writer with this process's env pointed at dir.
  with_env({ XDG_CONFIG_HOME = dir }, function()
    assert(require("misskey.credentials").add{ host = srv.url, token = token,
      user = { id = "9" .. username, username = username } })
  end)
end

setup(function()
  srv = server.start()
  admin = misskey.new{ host = srv.url, token = false }
end)
teardown(function() srv:stop() end)
before_each(function() dir = server.temp_dir() end)
after_each(function() server.remove_dir(dir) end)

describe("misskey (command)", function()
  it("prints usage: exit 2 without a command, 0 with --help, 2 for an unknown one", function()
    local out, _, code = run("")
    assert.equal(2, code)
    assert.matches("usage: misskey COMMAND", out)
    out, _, code = run("--help")
    assert.equal(0, code)
    assert.matches("whoami", out)
    local _, err
    _, err, code = run("frobnicate")
    assert.equal(2, code)
    assert.matches("unknown command 'frobnicate'", err)
  end)

  it("has --help on every command", function()
    for _, c in ipairs{ "login", "logout", "accounts", "whoami", "token", "api" } do
      local out, _, code = run(c .. " --help")
      assert.equal(0, code, c)
      assert.matches("usage: misskey " .. c, out)
    end
  end)

  it("rejects unknown options and missing values with exit 2", function()
    local _, err, code = run("whoami --bogus")
    assert.equal(2, code)
    assert.matches("unknown option %-%-bogus", err)
    _, err, code = run("login --host")
    assert.equal(2, code)
    assert.matches("needs a value", err)
    _, err, code = run("login")
    assert.equal(2, code)
    assert.matches("%-%-host", err)
  end)
end)

describe("misskey login", function()
  local function login(args, approve) return runner.login(dir, srv.url, args, approve) end

  it("prints the MiAuth URL, waits for the approval and stores the account", function()
    local token = "CliMiAuthToken0123456789abcdefAB"
    local out, code = login("--permission read:account,write:notes", function(url)
      local session = url:match("/miauth/([%x%-]+)%?")
      assert.matches("permission=read:account,write:notes", url)
      assert(admin:request("test/miauth/approve", { session = session, token = token, username = "frank" }))
    end)
    assert.equal(0, code, out)
    assert.matches("logged in as @frank@" .. srv.host:gsub("%.", "%%."), out)
    assert.not_matches(token, out)
    local listed, _, lcode = run("accounts")
    assert.equal(0, lcode)
    assert.matches("%* @frank@", listed)
    local printed = run("token")
    assert.equal(token .. "\n", printed)
  end)

  it("uses the legacy app flow with --method app", function()
    local out, code = login("--method app --permission read:account", function(url)
      local session = url:match("/auth/([%x%-]+)$")
      assert(admin:request("test/auth/approve", { token = session, username = "gina" }))
    end)
    assert.equal(0, code, out)
    assert.matches("logged in as @gina@", out)
    local me, _, wcode = run("whoami")
    assert.equal(0, wcode)
    assert.matches("^@gina@", me)
  end)

  it("fails with exit 1 when the approval does not come in time", function()
    local out, code = login("--permission read:account --timeout 0.3", function() end)
    assert.equal(1, code, out)
    assert.matches("not approved within", out)
  end)

  it("refuses unknown permissions with exit 2", function()
    local _, err, code = run("login --host " .. srv.url .. " --permission read:nope")
    assert.equal(2, code)
    assert.matches("unknown permission: read:nope", err)
  end)

  -- `misskey login --method oauth` with a redirect URI that is not loopback, so the command
  -- asks for the address: the user approves on the test server, and the address pasted is
  -- the redirect's with `extra` after its code and state. -> everything it printed, the code.
  local function login_pasting(extra)
    local fifo = dir .. "/stdin-oauth"
    os.remove(fifo)
    os.execute("mkfifo " .. q(fifo))
    local redirect = "https://app.example/cb"
    local p = assert(io.popen(command("login --method oauth --host " .. srv.url .. " --client-id https://app.example/"
      .. " --redirect-uri " .. redirect .. " --permission read:account") .. " <" .. q(fifo)
      .. " 2>&1; echo \"exit=$?\""))
    local w = assert(io.open(fifo, "w")) -- before reading: the shell opens the fifo before the command runs
    local lines, code = {}, nil
    for line in p:lines() do
      lines[#lines + 1] = line
      local url = line:match("^%s+(http%S+)$")
      if url then
        local query = require("misskey.auth").oauth_parse_redirect(url)
        code = assert(admin:request("test/oauth/authorize", query)).code
        w:write(redirect .. "?code=" .. code .. "&state=" .. query.state .. extra .. "\n")
        break
      end
    end
    w:close()
    lines[#lines + 1] = p:read("*a")
    p:close()
    return table.concat(lines, "\n"), code
  end

  it("logs in through OAuth with the pasted redirect address", function()
    local out = login_pasting("&iss=" .. srv.url)
    assert.matches("exit=0", out)
    assert.matches("logged in as @alice@", out)
  end)

  -- RFC 9207: the server's metadata says every redirect names it; one naming another server,
  -- or none, is a mix-up, and its code is sent nowhere.
  for _, case in ipairs{ { "another server's", "&iss=https://evil.example", "names another issuer" },
                         { "no", "", "names no issuer" } } do
    it("refuses a pasted redirect that names " .. case[1] .. " issuer", function()
      local out, code = login_pasting(case[2])
      assert.matches("exit=1", out)
      assert.matches(case[3], out)
      assert.not_matches("logged in", out)
      -- The code was not spent: the token endpoint still takes it.
      local res, body = admin:http{ method = "POST", path = "/oauth/token", json = true,
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "grant_type=authorization_code&code=" .. code .. "&redirect_uri=x&client_id=y&code_verifier=z" }
      assert.equal(400, res.status)
      assert.equal("client_id or redirect_uri mismatch", body.error_description) -- not "unknown or used code"
    end)
  end
end)

describe("misskey login --method oauth with a loopback redirect", function()
  it("listens on exactly the redirect_uri's port and takes the browser's redirect", function()
    local port = server.free_port()
    local redirect = "http://127.0.0.1:" .. port .. "/callback"
    local p = assert(io.popen(command("login --method oauth --host " .. srv.url .. " --client-id https://app.example/"
      .. " --redirect-uri " .. redirect .. " --permission read:account --timeout 20") .. " </dev/null"
      .. " 2>&1; echo \"exit=$?\""))
    local lines, browser = {}, nil
    for line in p:lines() do
      lines[#lines + 1] = line
      local url = line:match("^%s+(http%S+)$")
      if url then
        local query = require("misskey.auth").oauth_parse_redirect(url)
        local code = assert(admin:request("test/oauth/authorize", query)).code
        -- The browser follows the redirect to the listening command (retry while it starts listening).
        local target = ("%s?code=%s&state=%s&iss=%s"):format(redirect, code, query.state, srv.url)
        local b = assert(io.popen("env -u LD_PRELOAD curl -s --retry 20 --retry-connrefused --retry-delay 0 "
          .. "--max-time 20 '" .. target .. "'"))
        browser = b:read("*a")
        b:close()
        break
      end
    end
    lines[#lines + 1] = p:read("*a")
    p:close()
    local out = table.concat(lines, "\n")
    assert.matches("exit=0", out)
    assert.matches("logged in as @alice@", out)
    assert.matches("You can close this window", browser)
  end)
end)

describe("auth.oauth_listen (the OAuth redirect's loopback listener)", function()
  it("times out when no browser comes, and refuses a port in use", function()
    local auth = require "misskey.auth"
    local port = server.free_port()
    local l = assert(auth.oauth_listen(port))
    local target, why = l:accept(0.05)
    assert.is_nil(target)
    assert.equal("timeout", why)
    local again, msg = auth.oauth_listen(port)
    assert.is_nil(again)
    assert.matches("cannot listen on 127.0.0.1:" .. port, msg)
    l:close()
    assert.has_error(function() l:accept(0) end, "listener:accept: the listener is closed")
    assert.has_error(function() auth.oauth_listen(0) end)
  end)
end)

describe("misskey whoami, token, accounts, logout", function()
  it("work on the stored default account", function()
    store_account("hank", "HankToken0123456789abcdefABCDEFgh")
    local out, _, code = run("whoami")
    assert.equal(0, code)
    assert.equal("@hank@" .. srv.host .. "  (Hank)\n", out)
    out, _, code = run("token")
    assert.equal(0, code)
    assert.equal("HankToken0123456789abcdefABCDEFgh\n", out)
    out, _, code = run("accounts")
    assert.equal(0, code)
    assert.equal("* @hank@" .. srv.host .. "  " .. srv.url .. "\n", out)
    out, _, code = run("logout")
    assert.equal(0, code)
    assert.matches("removed @hank@", out)
    local _, err
    _, err, code = run("logout @hank@" .. srv.host)
    assert.equal(1, code)
    assert.matches("no account", err)
    _, err, code = run("whoami")
    assert.equal(3, code) -- nothing configured any more
    assert.matches("misskey login", err)
  end)

  it("takes the MISSKEY_HOST + MISSKEY_TOKEN pair from the environment", function()
    store_account("ivan", "IvanToken0123456789abcdefABCDEFgh")
    local out, _, code = run("whoami", { MISSKEY_HOST = srv.url, MISSKEY_TOKEN = "IvanToken0123456789abcdefABCDEFgh" })
    assert.equal(0, code)
    assert.matches("^@ivan@", out)
  end)

  it("fails with exit 1 on a refused token, without printing it", function()
    local out, err, code = run("whoami", { MISSKEY_HOST = srv.url, MISSKEY_TOKEN = "WrongToken0123456789abcdefABCDEF" })
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("AUTHENTICATION_FAILED", err)
    assert.not_matches("WrongToken", err)
  end)

  it("refuses a world-readable credentials file with the chmod that fixes it", function()
    store_account("judy", "JudyToken0123456789abcdefABCDEFgh")
    os.execute("chmod 644 " .. q(dir .. "/misskey/credentials.json"))
    local _, err, code = run("accounts")
    assert.equal(1, code)
    assert.matches("chmod 600", err)
    assert.not_matches("JudyToken", err)
  end)
end)

describe("misskey api", function()
  local env

  before_each(function() env = { MISSKEY_HOST = srv.url, MISSKEY_TOKEN = "ApiToken0123456789abcdefABCDEFghi" } end)

  it("sends key=value as strings and key:=json as JSON, and pretty-prints the reply", function()
    local out, _, code = run("api test/echo text=hello/world n:=3 flag:=true list:='[\"a\"]' obj:='{\"k\":null}'", env)
    assert.equal(0, code, out)
    assert.matches('\n  "json": {\n', out)
    assert.matches('"text": "hello/world"', out, 1, true)
    local echo = require("misskey.json").decode(out).json
    assert.equal("hello/world", echo.text)
    assert.equal(3, echo.n)
    assert.is_true(echo.flag)
    assert.same({ "a" }, { echo.list[1] })
    assert.equal(misskey.null, echo.obj.k)
  end)

  it("reads parameters from --input (a file or -)", function()
    local out, _, code = run("api test/echo --input - b=2", env, '{"a": 1, "b": 1}')
    assert.equal(0, code, out)
    local echo = require("misskey.json").decode(out).json
    assert.equal(1, echo.a)
    assert.equal("2", echo.b)
    local _, err
    _, err, code = run("api test/echo --input " .. q(dir .. "/none.json"), env)
    assert.equal(2, code)
    assert.matches("none.json", err)
  end)

  it("prints nothing for a 204 reply", function()
    local out, _, code = run("api test/no-content", env)
    assert.equal(0, code)
    assert.equal("", out)
  end)

  it("exits 1 on an API error and on a network failure, 2 on bad arguments", function()
    local _
    local out, err, code = run("api test/error/no-such-user", env)
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("NO_SUCH_USER", err)
    assert.not_matches("ApiToken", err)
    _, err, code = run("api meta", { MISSKEY_HOST = "http://127.0.0.1:" .. server.free_port() })
    assert.equal(1, code)
    assert.matches("meta", err)
    _, err, code = run("api test/echo n:=nope", env)
    assert.equal(2, code)
    assert.matches("not JSON", err)
    _, _, code = run("api '/bad//name'", env)
    assert.equal(2, code)
    _, err, code = run("api test/echo plain", env)
    assert.equal(2, code)
    assert.matches("neither key=value nor key:=json", err)
    _, _, code = run("api")
    assert.equal(2, code)
  end)
end)

describe("misskey post, upload, stream, endpoints", function()
  local env
  local json = require "misskey.json"

  before_each(function() env = { MISSKEY_HOST = srv.url, MISSKEY_TOKEN = "PostToken0123456789abcdefABCDEFgh" } end)

  local function write_file(name, bytes)
    local path = dir .. "/" .. name
    local f = assert(io.open(path, "wb"))
    f:write(bytes)
    f:close()
    return path
  end

  it("has --help on each", function()
    for _, c in ipairs{ "post", "upload", "stream", "endpoints" } do
      local out, _, code = run(c .. " --help")
      assert.equal(0, code, c)
      assert.matches("usage: misskey " .. c, out)
    end
  end)

  it("post creates a note and prints its id and address", function()
    local out, err, code = run("post 'hello from the command' --cw spoiler --visibility home", env)
    assert.equal(0, code, err)
    local id = out:match("^(%w+)  " .. srv.url:gsub("%p", "%%%0") .. "/notes/(%w+)\n$")
    assert.is_string(id, out)
    local notes = assert(admin:request("test/notes/list"))
    local last = notes[#notes]
    assert.equal(id, last.id)
    assert.equal("hello from the command", last.text)
    assert.equal("spoiler", last.cw)
    assert.equal("home", last.visibility)
    assert.not_matches("PostToken", out .. err)
  end)

  it("post --file uploads first and attaches the file", function()
    local path = write_file("cat.png", ("\137PNG"):rep(1000))
    local out, err, code = run("post 'with a cat' --file " .. q(path), env)
    assert.equal(0, code, err)
    assert.equal("", err)   -- stderr is no terminal: no progress bar
    local notes = assert(admin:request("test/notes/list"))
    local last = notes[#notes]
    assert.matches(last.id, out, 1, true)
    assert.equal(1, #last.fileIds)
    assert.matches("^9xfile", last.fileIds[1])
  end)

  it("post: usage errors exit 2, API errors exit 1", function()
    local _, err, code = run("post", env)
    assert.equal(2, code)
    assert.matches("TEXT", err)
    _, err, code = run("post hi --visibility everyone", env)
    assert.equal(2, code)
    assert.matches("visibility", err)
    _, err, code = run("post hi --file " .. q(dir .. "/missing.png"), env)
    assert.equal(1, code)
    assert.matches("missing.png", err)
    _, err, code = run("post hi", { MISSKEY_HOST = srv.url })
    assert.equal(3, code) -- a host but no token: not configured
    assert.matches("no token", err)
    _, err, code = run("post hi", { MISSKEY_HOST = "http://127.0.0.1:" .. server.free_port(),
                                     MISSKEY_TOKEN = env.MISSKEY_TOKEN })
    assert.equal(1, code)
    assert.matches("notes/create", err)
    assert.not_matches("PostToken", err)
  end)

  it("upload prints the drive file's id, name and size, and no bar when stderr is no terminal", function()
    local path = write_file("data.bin", ("x"):rep(12345))
    local out, err, code = run("upload " .. q(path) .. " --name renamed.bin --comment hi", env)
    assert.equal(0, code, err)
    assert.matches("^9xfile%d+  renamed%.bin  12345 bytes\n$", out)
    assert.equal("", err)
    local _
    _, _, code = run("upload", env)
    assert.equal(2, code)
    _, err, code = run("upload " .. q(dir .. "/nope.bin"), env)
    assert.equal(1, code)
    assert.matches("nope.bin", err)
  end)

  it("draws a progress bar with cli.progress_bar when asked", function()
    local cli = require "misskey.cli"
    local buf = {}
    local sink = { flush = function() end }
    function sink.write(_, ...) for _, x in ipairs{ ... } do buf[#buf + 1] = x end end
    local draw, done = cli.progress_bar("x.png", sink)
    draw(50, 100)
    draw(100, 100)
    done()
    local text = table.concat(buf)
    assert.matches("x%.png %[###############%-+%]  50%%", text)
    assert.matches("%[##############################%] 100%%", text)
    assert.matches("\n$", text)
  end)

  it("stream prints events as JSON Lines and stops after --count", function()
    assert(admin:request("test/stream/reset"))
    local p = assert(io.popen(command("stream homeTimeline --params '{\"withRenotes\":false}' --count 2", env)
      .. " 2>" .. q(dir .. "/stream.err") .. "; echo \"exit=$?\""))
    local joined = false
    for _ = 1, 200 do
      local state = assert(admin:request("test/stream/state"))
      local sock = state.sockets[1]
      if sock and #sock.connects > 0 then
        joined = sock.connects[1]
        break
      end
      misskey.sleep(0.05)
    end
    assert.is_table(joined)
    assert.equal("homeTimeline", joined.channel)
    assert.is_false(joined.params.withRenotes)
    assert(admin:request("test/stream/post", { text = "one" }))
    assert(admin:request("test/stream/post", { text = "two" }))
    local out = p:read("*a")
    p:close()
    assert.matches("exit=0", out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do
      if not line:find("^exit=") then lines[#lines + 1] = line end
    end
    assert.equal(2, #lines, out)
    assert.matches('^{"channel":"homeTimeline","type":"note","body":{', lines[1])
    local first, second = json.decode(lines[1]), json.decode(lines[2])
    assert.equal("note", first.type)
    assert.equal("one", first.body.text)
    assert.equal("two", second.body.text)
  end)

  it("stream: usage errors exit 2", function()
    local _, err, code = run("stream", env)
    assert.equal(2, code)
    assert.matches("CHANNEL", err)
    _, err, code = run("stream homeTimeline --params '[1]'", env)
    assert.equal(2, code)
    assert.matches("JSON object", err)
    _, err, code = run("stream homeTimeline --count 0", env)
    assert.equal(2, code)
    assert.matches("count", err)
    _, _, code = run("stream 'home timeline'", env)
    assert.equal(2, code)
  end)

  it("endpoints lists name, permission and credential, filtered by substring or pattern", function()
    local out, _, code = run("endpoints")
    assert.equal(0, code)
    local n = select(2, out:gsub("\n", ""))
    assert.is_true(n > 300)
    assert.matches("\nnotes/create +write:notes +yes\n", out)
    assert.matches("\nmeta +%- +no\n", out)
    out = run("endpoints i/registry/")
    for line in out:gmatch("[^\n]+") do assert.matches("^i/registry/", line) end
    assert.matches("i/registry/set +write:account +yes", out)
    out = run("endpoints '^notes/c[hr]'")
    assert.matches("^notes/children", out)
    assert.matches("notes/create", out)
    assert.not_matches("notes/clips", out)
    local err
    out, err, code = run("endpoints zzzz")
    assert.equal(0, code)
    assert.equal("", out)
    assert.matches("no endpoint matches", err)
    _, _, code = run("endpoints a b")
    assert.equal(2, code)
  end)
end)
