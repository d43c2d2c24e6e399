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

  it("event_log writes one JSON object per line on stderr: requests and a 429 wait, no token", function()
    local out, code = run("examples/event_log.lua")
    assert.equal(0, code, out)
    assert.matches("events: ratelimit_wait=1 request=5", out)
    local json = require "misskey.json"
    local seen = {}
    for line in out:gmatch("[^\n]+") do
      if line:sub(1, 1) == "{" then
        local ev = assert(json.decode(line), line)
        seen[ev.type] = (seen[ev.type] or 0) + 1
        assert.equal("fake.misskey.test", ev.host)
        if ev.type == "ratelimit_wait" then
          assert.equal("notes/timeline", ev.endpoint)
          assert.equal(1, ev.wait)
          assert.equal("retry-after", ev.rule)
        end
      end
    end
    assert.same({ request = 5, ratelimit_wait = 1 }, seen)
    assert.not_matches("fake-token-me", out, 1, true)
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

  it("timeline_archiver writes JSON Lines and resumes from its saved cursor without duplicates", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local archive = dir .. "/timeline.jsonl"
    local out, code = run("examples/timeline_archiver.lua", "--out " .. archive .. " --seed 3 --max 4")
    assert.equal(0, code, out)
    assert.matches("archived 4 notes to .- %(from the start;", out)
    -- The next run: the same 5 notes plus 2 new ones; 1 left over from --max, then the new ones.
    out, code = run("examples/timeline_archiver.lua", "--out " .. archive .. " --seed 5")
    assert.equal(0, code, out)
    assert.matches("archived 3 notes to .- %(resumed from the saved cursor;", out)
    out, code = run("examples/timeline_archiver.lua", "--out " .. archive .. " --seed 5")
    assert.equal(0, code, out)
    assert.matches("archived 0 notes", out)
    local json = require "misskey.json"
    local ids, texts, seen = {}, {}, {}
    for line in io.lines(archive) do
      local note = assert(json.decode(line))
      assert.is_nil(seen[note.id], "duplicate " .. note.id)
      seen[note.id] = true
      ids[#ids + 1] = note.id
      texts[#texts + 1] = note.text
    end
    assert.equal(7, #ids)
    for k = 2, #ids do assert.is_true(ids[k] > ids[k - 1]) end   -- oldest first
    assert.equal("Good morning, fediverse!", texts[1])
    assert.equal("archived note #5", texts[7])
    assert.is_string(io.open(archive .. ".cursor"):read("*l"))
    os.execute("rm -rf " .. dir)
  end)

  it("scheduled_poster --count 2 --every 0.05 posts two notes in the fake", function()
    local out, code = run("examples/scheduled_poster.lua", "--count 2 --every 0.05")
    assert.equal(0, code, out)
    assert.matches("posted %w+: Scheduled note #1", out)
    assert.matches("posted %w+: Scheduled note #2", out)
    assert.matches("in the fake: 2 scheduled notes by @me", out)
  end)

  it("image_uploader --once uploads with a progress bar and posts a note with the file", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(("\137PNG\r\n"):rep(300))
    f:close()
    local out, code = run("examples/image_uploader.lua", path .. " --once")
    os.remove(path)
    assert.equal(0, code, out)
    local name = path:match("[^/]*$")
    assert.matches("uploaded " .. name .. " %(1800 bytes%) as %w+", out)
    assert.matches("posted %w+ with 1 file%(s%)", out)
    assert.matches("%] 100%%", out)   -- the bar (stderr, merged here)
    assert.matches("in the fake: drive file " .. name .. " %(1800 bytes%), in note %w+", out)
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
