-- Every example runs in its bounded mode against the in-process fake, as a
-- separate process on the interpreter under test, and must show its effect.
local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")

local function run(script, args)
  local cmd = ("env -u MISSKEY_HOST -u MISSKEY_TOKEN -u LD_PRELOAD %s -e "
    .. "'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path; "
    .. "package.cpath=\"./build/%s/?.so;\"..package.cpath' %s %s 2>&1; echo \"exit=$?\"")
    :format(interpreter, version, script, args or "")
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

local has = function(m) return (pcall(require, m)) end

describe("examples", function()
  it("quickstart posts, shows and deletes a note", function()
    local out, code = run("examples/quickstart.lua")
    assert.equal(0, code, out)
    assert.matches("using the fake Misskey server", out)
    assert.matches("deleted ", out)
    assert.matches("NO_SUCH_NOTE", out)
  end)

  it("frame_loop finishes its work through misskey.step", function()
    local out, code = run("examples/frame_loop.lua", "--frames 2000")
    assert.equal(0, code, out)
    assert.matches("posted ", out)
    assert.matches("deleted ", out)
  end)

  it("ping_bot --once replies pong to alice's mention in the fake", function()
    local out, code = run("examples/ping_bot.lua", "--once")
    assert.equal(0, code, out)
    assert.matches("listening as @me", out)
    assert.matches("replied to @alice: @alice pong", out)
    assert.matches("in the fake: @alice pong %(reply to %w+%)", out)
  end)

  it("follow_back_bot --once follows alice back in the fake", function()
    local out, code = run("examples/follow_back_bot.lua", "--once")
    assert.equal(0, code, out)
    assert.matches("followed @alice back", out)
    assert.matches("in the fake: @me follows @alice: true", out)
  end)

  ;(has("luv") and it or pending)("neovim_notifier --once shows the timeline through luv", function()
    local out, code = run("examples/neovim_notifier.lua", "--once")
    assert.equal(0, code, out)
    assert.matches("@alice: Good morning, fediverse!", out)
  end)

  ;(has("cqueues") and it or pending)("cqueues_program runs misskey tasks next to its ticker", function()
    local out, code = run("examples/cqueues_program.lua")
    assert.equal(0, code, out)
    assert.matches("server version", out)
    assert.matches("timeline: %d+ notes", out)
    assert.matches("done", out)
  end)
end)
