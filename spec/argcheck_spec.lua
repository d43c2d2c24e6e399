-- misskey.argcheck: one wording for misuse, and errors that name the line of
-- the caller's mistake (not a line inside the library), on every Lua version,
-- however deep in the library the check is.
local argcheck = require "misskey.argcheck"
local misskey = require "misskey"
local testing = require "misskey.testing"
local loop = require "misskey.loop"

local HERE = "spec/argcheck_spec.lua:"

-- The error `fn` raises: its position must be this file's (the line of the
-- misuse), never a file of the library, nor missing.
local function blamed(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  assert.is_string(err)
  return err
end

local function assert_blames_caller(fn, text)
  local err = blamed(fn)
  assert.equal(HERE, err:sub(1, #HERE), "blames another place: " .. err)
  assert.truthy(err:find(text, 1, true), err)
end

describe("misskey.argcheck", function()
  it("words argument, option and self errors one way", function()
    local function f() argcheck.argerror(2, "f", "a table expected") end
    assert.has_error(f, "bad argument #2 to 'f' (a table expected)")
    assert.has_error(function() argcheck.opterror("x", "unknown option") end, "bad option 'x' (unknown option)")
    assert.has_error(function() argcheck.opterror("url", "no", 1, "websocket") end,
      "bad option 'url' to 'websocket' (no)")
    assert.has_error(function() argcheck.self({}, {}, "client", "request") end,
      "bad self to 'request' (call it as client:request(...))")
  end)

  it("checks seconds and counts", function()
    assert.is_nil(argcheck.seconds_problem(0.5))
    for _, v in ipairs{ 0, -1, 0 / 0, math.huge, "1" } do assert.is_string(argcheck.seconds_problem(v)) end
    assert.is_nil(argcheck.seconds_problem(math.huge, math.huge))
    assert.equal("a number of seconds > 0 and <= 1000000 expected, got 2000000", argcheck.seconds_problem(2000000,
      argcheck.MAX_SECONDS):gsub("%.0", ""))
    assert.is_nil(argcheck.wait_problem(0))
    assert.is_string(argcheck.wait_problem(-1))
    assert.is_nil(argcheck.count_problem(3, 10))
    assert.equal("an integer from 1 to 10 expected, got 1.5", argcheck.count_problem(1.5, 10))
  end)

  describe("blames the caller's line", function()
    local fake, client
    before_each(function()
      fake = testing.fake()
      fake:user("alice")
      client = fake:client()
    end)

    it("for misskey.new, directly and from a helper (options, credentials, TLS options)", function()
      assert_blames_caller(function() misskey.new(42) end, "bad argument #1 to 'new'")
      assert_blames_caller(function() misskey.new{ host = "x.example", colour = 1 } end, "bad option 'colour'")
      assert_blames_caller(function() misskey.new{ host = "x.example", auth = "cookie" } end, "bad option 'auth'")
      assert_blames_caller(function() misskey.new{ host = "x.example", timeout = -1 } end, "bad option 'timeout'")
      assert_blames_caller(function() misskey.new{ host = "x.example", low_speed = { bytes = 0, seconds = 1 } } end,
        "bad option 'low_speed.bytes'")
      assert_blames_caller(function() misskey.new{ host = "x y", token = false } end, "bad option 'host'")
      assert_blames_caller(function() misskey.new{ host = "x.example", ratelimit = "never" } end,
        "bad option 'ratelimit'")
    end)

    it("for client methods and the modules behind them", function()
      assert_blames_caller(function() client.request("meta") end, "bad self to 'request'")
      assert_blames_caller(function() client:request("/meta") end, "bad argument #1 to 'request'")
      assert_blames_caller(function() client:request("meta", nil, { timeout = 0 }) end, "bad argument #3 to 'request'")
      assert_blames_caller(function() client:request("meta", nil, { retries = -1 }) end, "option 'retries'")
      assert_blames_caller(function() client:upload("") end, "bad argument #1 to 'upload'")
      assert_blames_caller(function() client:upload({ data = "x" }, { n = {} }) end, "bad argument #2 to 'upload'")
      assert_blames_caller(function() client:http{ path = "/", query = { a = print } } end, "bad argument #1 to 'http'")
      assert_blames_caller(function() client:paginate("notes/timeline", nil, { max = -1 }) end,
        "bad argument #3 to 'paginate'")
      assert_blames_caller(function() client:batch({ { 1 } }) end, "bad argument #1 to 'batch'")
      assert_blames_caller(function() client:stream{ watchdog = 0 } end, "bad option 'watchdog'")
      assert_blames_caller(function() client:stream{ backoff = { min = -1 } } end, "bad option 'backoff.min'")
    end)

    it("for streams, bots, the scheduler and auth", function()
      local s = client:stream()
      assert_blames_caller(function() s:on(1, print) end, "bad argument #1 to 'on'")
      assert_blames_caller(function() s:channel("main") end, "bad argument #1 to 'channel'")
      assert_blames_caller(function() s:run{ grace = 0 } end, "bad option 'grace'")
      assert_blames_caller(function() s:run{ stop_on = { "KILL" } } end, "bad option 'stop_on'")
      assert_blames_caller(function() s:capture(1) end, "bad argument #1 to 'capture'")
      local bot = misskey.bot(client)
      assert_blames_caller(function() misskey.bot(client, { nope = 1 }) end, "bad option 'nope'")
      assert_blames_caller(function() bot:every(0, print) end, "bad argument #1 to 'every'")
      assert_blames_caller(function() bot:command("x", print, { cooldown = -1 }) end, "bad option 'cooldown'")
      assert_blames_caller(function() bot:stop{ grace = -1 } end, "bad option 'grace'")
      assert_blames_caller(function() loop.sleep(-1) end, "bad argument #1 to 'sleep'")
      assert_blames_caller(function() misskey.spawn(42) end, "bad argument #1 to 'spawn'")
      local auth = require "misskey.auth"
      assert_blames_caller(function() auth.miauth{ host = "x.example", colour = 1 } end, "bad argument #1 to 'miauth'")
      local session = auth.miauth{ host = "x.example" }
      assert_blames_caller(function() session:wait{ nope = 1 } end, "bad argument #1 to 'wait'")
      assert_blames_caller(function() session:wait{ timeout = -1 } end, "bad argument #1 to 'wait'")
    end)
  end)
end)
