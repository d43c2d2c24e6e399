-- Live events held back while a channel's backfill runs are capped by bytes as
-- well as by count: a message may be 16 MiB, so 10,000 held ones bound nothing.
-- Past the cap nothing is lost silently: notes (which the backfill can fetch)
-- are not held but fetched by its next round; other events make room by letting
-- those go, and are dropped and reported only when that is not enough.
-- Against the in-process fake, whose timeline pages the spec holds back to play
-- a slow server; every wait is bounded.
local core = require "misskey.core"
local loop = require "misskey.loop"
local misskey = require "misskey"
local new_client = require "support.client"
local streamlib = require "misskey.stream"
local testing = require "misskey.testing"

local FAST = { min = 0.001, max = 0.005 }
local CAP = 32 * 1024

local function run_until(cond, limit)
  local deadline = core.now() + (limit or 5)
  for _ = 1, 200000 do
    if cond() then return true end
    if core.now() > deadline then break end
    misskey.step(0.01)
  end
  return cond() and true or false
end

-- A client of `fake` whose timeline pages wait while gate.closed (a slow server).
local function gated_client(fake)
  local gate = { closed = false }
  local transport = {
    request = function(req)
      for _ = 1, 100 do
        if not (gate.closed and req.url:find("/api/notes/timeline", 1, true)) then break end
        loop.wait_event(gate, 10)
      end
      return fake.transport.request(req)
    end,
    websocket = fake.transport.websocket,
  }
  return new_client{ host = fake.base_url, token = "fake-token-me", transport = transport }, gate
end

describe("live events held while a backfill page is slow", function()
  local saved_bytes, saved_rounds
  before_each(function()
    saved_bytes, saved_rounds = streamlib.MAX_HELD_BYTES, streamlib.MAX_ROUNDS
    streamlib.MAX_HELD_BYTES = CAP
  end)
  after_each(function()
    streamlib.MAX_HELD_BYTES, streamlib.MAX_ROUNDS = saved_bytes, saved_rounds
    loop.cancel_all()
  end)

  -- Starts a stream on homeTimeline, loses its socket and holds the backfill's
  -- first page; returns what the test needs.
  local function outage()
    local fake = testing.fake()
    local client, gate = gated_client(fake)
    local got = { notes = {}, custom = {}, errors = {}, backfills = {}, max_held = 0, max_bytes = 0 }
    local s = client:stream{ backoff = FAST }
    local ch = s:channel("homeTimeline")
    ch:on("note", function(n) got.notes[#got.notes + 1] = n.id end)
    ch:on("custom", function(b) got.custom[#got.custom + 1] = b end)
    s:on("error", function(err) got.errors[#got.errors + 1] = err end)
    s:start()
    assert.is_true(run_until(function() return #fake:sockets() == 1 end))
    fake:run_until_idle() -- joined, confirmed, starting point taken
    assert.is_true(run_until(function() return s:stats().tasks == 0 end))
    gate.closed = true
    assert.equal(1, fake:drop_streams())
    assert.is_true(run_until(function() return s:stats().backfills == 1 end))
    local function sample()
      local st = s:stats()
      got.max_held = math.max(got.max_held, st.held)
      got.max_bytes = math.max(got.max_bytes, st.held_bytes or math.huge)
    end
    local function release()
      gate.closed = false
      loop.signal(gate)
      assert.is_true(run_until(function() return s:stats().backfills == 0 end))
      fake:run_until_idle()
    end
    return fake, s, got, sample, release
  end

  it("holds at most MAX_HELD_BYTES, and the notes it could not hold arrive once, in order", function()
    local fake, s, got, sample, release = outage()
    local posted = {}
    for i = 1, 40 do
      local note = fake:post("alice", { text = ("%02d "):format(i) .. ("x"):rep(2000) })
      posted[i] = note.id
      fake:run_until_idle() -- the reader takes the live note: held, or not
      sample()
    end
    assert.is_true(got.max_bytes <= CAP, tostring(got.max_bytes) .. " bytes held")
    assert.is_true(got.max_held < 40, ("%d notes held"):format(got.max_held))
    assert.equal(0, #got.notes) -- nothing delivered before the backfill
    release()
    assert.same(posted, got.notes) -- all 40, each once, in id order
    assert.same({}, got.errors)
    s:close()
  end)

  it("lets fetchable notes go to hold an event it cannot fetch; one over the cap is dropped and reported", function()
    local fake, s, got, sample, release = outage()
    local posted = {}
    for i = 1, 20 do
      posted[i] = fake:post("alice", { text = ("%02d "):format(i) .. ("x"):rep(2000) }).id
      fake:run_until_idle()
      sample()
    end
    assert.is_true(s:stats().held_bytes > CAP / 2) -- notes fill the room
    -- Events of the channel the backfill cannot fetch again: a small one (held,
    -- room made by letting notes go) and one bigger than the whole cap (dropped).
    assert.equal(1, fake:publish("homeTimeline", "custom", { n = 1, pad = ("y"):rep(CAP / 2) }))
    fake:run_until_idle()
    sample()
    assert.equal(1, fake:publish("homeTimeline", "custom", { n = 2, pad = ("z"):rep(CAP + 1) }))
    fake:run_until_idle()
    sample()
    assert.is_true(got.max_bytes <= CAP, tostring(got.max_bytes) .. " bytes held")
    release()
    assert.same(posted, got.notes)
    assert.equal(1, #got.custom)
    assert.equal(1, got.custom[1].n)
    assert.equal(1, #got.errors)
    assert.matches("1 events of channel \"homeTimeline\" dropped", got.errors[1].message, 1, true)
    assert.matches(CAP .. " bytes held", got.errors[1].message, 1, true)
    s:close()
  end)

  it("says so when its rounds run out before it fetched what it did not hold", function()
    streamlib.MAX_ROUNDS = 1
    local fake, s, got, _, release = outage()
    for i = 1, 20 do
      fake:post("alice", { text = ("%02d "):format(i) .. ("x"):rep(2000) })
      fake:run_until_idle()
    end
    release()
    -- The one round's pages still found every note (they were on the server
    -- before its first page was answered); the report is conservative.
    assert.equal(20, #got.notes)
    assert.equal(1, #got.errors)
    assert.matches("ended before fetching them again", got.errors[1].message, 1, true)
    s:close()
  end)
end)
