-- The private-file writer (core.write_private), the credential store and the
-- client's credential order (explicit, MISSKEY_HOST + MISSKEY_TOKEN, the
-- store's default account, or `account = "@user@host"`).
local core = require "misskey.core"
local credentials = require "misskey.credentials"
local misskey = require "misskey"
local server = require "support.server"
local with_env = require "support.env"

local TOKEN_A, TOKEN_B = "TokenA0123456789abcdefABCDEFghij", "TokenB0123456789abcdefABCDEFghij"

local dir

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

before_each(function()
  dir = server.temp_dir()
  with_env{ XDG_CONFIG_HOME = dir }
end)

after_each(function()
  with_env.reset()
  server.remove_dir(dir)
end)

describe("core.write_private", function()
  it("creates the file 0600 in a new 0700 directory (parents too)", function()
    local path = dir .. "/a/b/secret.json"
    assert.is_true(core.write_private(path, "one"))
    assert.equal("one", read(path))
    assert.equal(tonumber("600", 8), core.file_mode(path))
    assert.equal(tonumber("700", 8), core.file_mode(dir .. "/a/b"))
    assert.equal(tonumber("700", 8), core.file_mode(dir .. "/a"))
  end)

  it("replaces the old file whatever its mode; leaves an existing directory's mode alone", function()
    local path = dir .. "/c/secret.json"
    os.execute("mkdir -m 755 " .. dir .. "/c")
    assert.is_true(core.write_private(path, "one"))
    assert.equal(tonumber("755", 8), core.file_mode(dir .. "/c")) -- not ours to change
    os.execute("chmod 644 " .. path)
    assert.is_true(core.write_private(path, "two"))
    assert.equal("two", read(path))
    assert.equal(tonumber("600", 8), core.file_mode(path))
  end)

  it("leaves the old file intact when it fails between write and rename", function()
    local path = dir .. "/secret.json"
    assert.is_true(core.write_private(path, "old contents"))
    local ok, msg = core.write_private(path, "new contents", { fail_before_rename = true })
    assert.is_nil(ok)
    assert.matches("failure injected before rename", msg)
    assert.equal("old contents", read(path))
    local p = assert(io.popen("ls -A " .. dir))
    local listing = p:read("*a")
    p:close()
    assert.equal("secret.json\n", listing) -- no temporary file left behind
  end)

  it("reports an unwritable place as nil, message", function()
    local ok, msg = core.write_private("/proc/misskey-spec/x/secret.json", "x")
    assert.is_nil(ok)
    assert.matches("cannot", msg)
  end)
end)

describe("core.read_private", function()
  it("refuses a file readable by group or others, saying how to fix it", function()
    local path = dir .. "/secret.json"
    assert(core.write_private(path, "x"))
    assert.equal("x", core.read_private(path))
    os.execute("chmod 644 " .. path)
    local data, msg, why = core.read_private(path)
    assert.is_nil(data)
    assert.equal("mode", why)
    assert.matches("chmod 600 " .. path, msg, 1, true)
    local _, _, missing = core.read_private(dir .. "/nothing")
    assert.equal("missing", missing)
  end)
end)

describe("misskey.credentials", function()
  it("lives under XDG_CONFIG_HOME, else ~/.config", function()
    assert.equal(dir .. "/misskey/credentials.json", credentials.path())
    with_env{ HOME = "/home/u" }
    assert.equal("/home/u/.config/misskey/credentials.json", credentials.path())
    with_env{}
    assert.is_nil(credentials.path())
  end)

  it("stores several accounts; the first is the default", function()
    assert.equal("@alice@a.example", credentials.add{ host = "https://a.example", token = TOKEN_A,
      user = { id = "1", username = "alice" } })
    assert.equal("@bob@127.0.0.1:3000", credentials.add{ host = "http://127.0.0.1:3000", token = TOKEN_B,
      username = "bob" })
    local path = credentials.path()
    assert.equal(tonumber("600", 8), core.file_mode(path))
    assert.equal(tonumber("700", 8), core.file_mode(dir .. "/misskey"))
    local store = assert(credentials.load())
    assert.equal("@alice@a.example", store.default)
    assert.same({ "@alice@a.example", "@bob@127.0.0.1:3000" }, credentials.list(store))
    assert.equal(TOKEN_B, credentials.get("bob@127.0.0.1:3000").token)
    assert.equal("@alice@a.example", credentials.get().key)
    -- `default = true` moves the default; removing it picks the next one.
    credentials.add{ host = "http://127.0.0.1:3000", token = TOKEN_B, username = "bob", default = true }
    assert.equal("@bob@127.0.0.1:3000", credentials.get().key)
    assert.equal("@bob@127.0.0.1:3000", credentials.remove())
    assert.equal("@alice@a.example", credentials.get().key)
    local none, msg, err = credentials.remove("@nobody@x")
    assert.is_nil(none)
    assert.equal("invalid", err.kind)
    assert.matches("no account @nobody@x", msg)
  end)

  it("refuses a world-readable store without showing the token", function()
    credentials.add{ host = "https://a.example", token = TOKEN_A, username = "alice" }
    os.execute("chmod 644 " .. credentials.path())
    local store, msg, err = credentials.load()
    assert.is_nil(store)
    assert.equal("invalid", err.kind)
    assert.matches("chmod 600 " .. credentials.path(), msg, 1, true)
    assert.not_matches(TOKEN_A, msg)
    local ok, raised = pcall(misskey.new, {})
    assert.is_false(ok)
    assert.matches("chmod 600", raised)
  end)

  it("keeps the old store when a save fails before the rename", function()
    credentials.add{ host = "https://a.example", token = TOKEN_A, username = "alice" }
    local before = read(credentials.path())
    local store = assert(credentials.load())
    store.accounts = {}
    store._fail_before_rename = true
    local ok, msg, err = credentials.save(store)
    assert.is_nil(ok)
    assert.equal("invalid", err.kind)
    assert.matches("before rename", msg)
    assert.equal(before, read(credentials.path()))
  end)
end)

describe("misskey.new credentials", function()
  before_each(function()
    credentials.add{ host = "https://a.example", token = TOKEN_A, username = "alice" }
    credentials.add{ host = "http://127.0.0.1:3000", token = TOKEN_B, username = "bob" }
  end)

  it("uses the store's default account when nothing else is given", function()
    local c = misskey.new{}
    assert.equal("https://a.example", c.base_url)
    assert.equal(TOKEN_A, c:token())
  end)

  it("loads the account named by `account`", function()
    local c = misskey.new{ account = "@bob@127.0.0.1:3000" }
    assert.equal("http://127.0.0.1:3000", c.base_url)
    assert.equal(TOKEN_B, c:token())
    assert.equal(TOKEN_B, misskey.new{ account = "bob@127.0.0.1:3000" }:token())
    local ok, err = pcall(misskey.new, { account = "@carol@x.example" })
    assert.is_false(ok)
    assert.matches("bad option 'account'.*no account @carol@x.example", err)
    assert.has_error(function() misskey.new{ account = 1 } end)
  end)

  it("lets explicit host and token win, and never sends a stored token to another host", function()
    local c = misskey.new{ host = "https://other.example" }
    assert.equal("https://other.example", c.base_url)
    assert.is_nil(c:token())
    assert.equal("x", misskey.new{ account = "@bob@127.0.0.1:3000", token = "x" }:token())
    assert.is_nil(misskey.new{ token = false, host = "https://a.example" }:token())
    -- The default account's own host gets its token.
    assert.equal(TOKEN_A, misskey.new{ host = "a.example" }:token())
  end)

  it("puts the MISSKEY_HOST + MISSKEY_TOKEN pair before the store", function()
    with_env{ XDG_CONFIG_HOME = dir, MISSKEY_HOST = "https://env.example", MISSKEY_TOKEN = "envtoken" }
    local c = misskey.new{}
    assert.equal("https://env.example", c.base_url)
    assert.equal("envtoken", c:token())
    -- MISSKEY_HOST alone: the store's token only if it is the store default's host.
    with_env{ XDG_CONFIG_HOME = dir, MISSKEY_HOST = "https://a.example" }
    assert.equal(TOKEN_A, misskey.new{}:token())
    with_env{ XDG_CONFIG_HOME = dir, MISSKEY_HOST = "https://env.example" }
    assert.is_nil(misskey.new{}:token())
  end)
end)
