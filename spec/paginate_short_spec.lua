-- Pagination on servers that answer short pages: Sharkey (and any server that
-- drops muted or hidden items after its query) returns fewer items than `limit`
-- while more exist. Only an empty page, or one that does not move the cursor,
-- ends a walk. The fake's `users/notes` here pages as Misskey does and then
-- drops the hidden notes from the page, as Sharkey 2023.11 does.
local misskey = require "misskey"
local testing = require "misskey.testing"

local fake, client, alice_id, requests

-- The notes of `user_id` a page asks for, Misskey's way (newest first, except
-- with sinceId alone), and then without the hidden ones: a short page.
local function users_notes(self, ps)
  local all = self:notes{ user = "alice" } -- oldest first
  local limit = ps.limit or 10
  local ascending = ps.sinceId ~= nil and ps.untilId == nil
  local from, to, step = #all, 1, -1
  if ascending then from, to, step = 1, #all, 1 end
  local page = misskey.array{}
  for i = from, to, step do
    local n = all[i]
    if (ps.sinceId == nil or n.id > ps.sinceId) and (ps.untilId == nil or n.id < ps.untilId) then
      page[#page + 1] = n
      if #page >= limit then break end
    end
  end
  requests[#requests + 1] = { limit = limit, got = #page }
  local out = misskey.array{}
  for _, n in ipairs(page) do
    if not n.text:find("hidden", 1, true) then out[#out + 1] = n end
  end
  return out
end

-- 60 notes of alice, every eighth hidden: 53 visible.
local function seed()
  local visible = {}
  for i = 1, 60 do
    local text = (i % 8 == 0) and ("hidden " .. i) or ("note " .. i)
    fake:post("alice", { text = text })
    if i % 8 ~= 0 then visible[#visible + 1] = text end
  end
  return visible
end

local function texts(it)
  local out = {}
  while true do
    local n = it:next()
    if not n then break end
    out[#out + 1] = n.text
  end
  return out
end

local function reversed(list)
  local out = {}
  for i = #list, 1, -1 do out[#out + 1] = list[i] end
  return out
end

before_each(function()
  fake = testing.fake()
  fake.endpoints["users/notes"] = { handler = users_notes }
  client = fake:client()
  alice_id = fake:user("alice").id
  requests = {}
end)

describe("client:paginate on short pages", function()
  it("walks past pages shorter than limit: all 53 of 53 notes, newest first, each once", function()
    local visible = seed()
    local got = texts(client:paginate("users/notes", { userId = alice_id, limit = 7 }))
    assert.equal(53, #got)
    assert.same(reversed(visible), got)
    -- pages of 7 asked, short ones answered; the walk ended on the empty page
    assert.equal(7, requests[1].limit)
    assert.equal(0, requests[#requests].got)
    local short = 0
    for _, r in ipairs(requests) do
      if r.got < 7 and r.got > 0 then short = short + 1 end
    end
    assert.is_true(short >= 1)
  end)

  it("walks oldest first the same way (direction = \"newer\")", function()
    local visible = seed()
    local got = texts(client:paginate("users/notes", { userId = alice_id, limit = 7 }, { direction = "newer" }))
    assert.same(visible, got)
  end)

  it("a walk resumed from a cursor takes its own max; none means all the rest", function()
    local visible = seed()
    local it = client:paginate("users/notes", { userId = alice_id, limit = 7 }, { max = 10 })
    local first = texts(it)
    assert.equal(10, #first)
    local rest = texts(client:paginate("users/notes", { userId = alice_id, limit = 7 }, { cursor = it:cursor() }))
    assert.equal(43, #rest)
    local all = {}
    for _, t in ipairs(first) do all[#all + 1] = t end
    for _, t in ipairs(rest) do all[#all + 1] = t end
    assert.same(reversed(visible), all)
    local five = texts(client:paginate("users/notes", { userId = alice_id, limit = 7 },
      { cursor = it:cursor(), max = 5 }))
    assert.same({ rest[1], rest[2], rest[3], rest[4], rest[5] }, five)
  end)

  it("takes max = math.huge and max = false as no limit", function()
    seed()
    for _, max in ipairs{ math.huge, false } do
      assert.equal(53, #texts(client:paginate("users/notes", { userId = alice_id, limit = 7 }, { max = max })))
    end
    assert.error_matches(function() client:paginate("users/notes", { userId = alice_id }, { max = 1.5 }) end,
      "option 'max' must be an integer >= 0, math.huge or false")
  end)

  it("ends when the server ignores the cursor (the same page again), each item once", function()
    seed()
    fake.endpoints["users/notes"] = { handler = function(self, ps)
      return users_notes(self, { limit = ps.limit }) -- untilId dropped: always the newest page
    end }
    local got = texts(client:paginate("users/notes", { userId = alice_id, limit = 7 }))
    assert.equal(6, #got) -- the first page (one of its 7 hidden); then no progress: the end
    assert.equal(2, #requests)
  end)

  it("the stream's backfill goes on past short pages the same way", function()
    local core = require "misskey.core"
    local real = testing.endpoints["notes/timeline"].handler
    fake.endpoints["notes/timeline"] = { credential = true, handler = function(self, ps, ctx)
      local out = misskey.array{}
      for _, n in ipairs(real(self, ps, ctx)) do
        if not n.text:find("hidden", 1, true) then out[#out + 1] = n end
      end
      return out
    end }
    local got = {}
    local s = client:stream{ backoff = { min = 0.001, max = 0.005 } }
    s:channel("homeTimeline"):on("note", function(n) got[#got + 1] = n.text end)
    s:start()
    local function run_until(cond)
      local deadline = core.now() + 5
      while not cond() and core.now() < deadline do misskey.step(0.01) end
      return cond()
    end
    assert.is_true(run_until(function() return #fake:sockets() == 1 end))
    fake:run_until_idle()
    fake:post("alice", { text = "live" })
    assert.is_true(run_until(function() return #got == 1 end))
    fake:drop_streams()
    local want = { "live" }
    for i = 1, 150 do -- missed: the backfill's first page of 100 has 88 of them
      local text = (i % 8 == 0) and ("hidden " .. i) or ("missed " .. i)
      fake:post("alice", { text = text })
      if i % 8 ~= 0 then want[#want + 1] = text end
    end
    assert.is_true(run_until(function() return #got >= #want end))
    assert.is_true(run_until(function() return s:stats().backfills == 0 end))
    s:close()
    assert.same(want, got)
  end)
end)
