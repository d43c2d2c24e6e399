-- Throughput of misskey.json against raw lua-cjson.
--
--   lua5.4 bench/json_bench.lua      (also lua5.1, luajit)
--
-- Decodes a ~230 KB timeline (100 Misskey-like notes) and encodes a ~1 KB
-- notes/create params table. Prints figures only; asserts nothing about speed.
-- Each measurement runs for about BUDGET seconds of CPU time.

local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
package.path = script_dir .. "/../lua/?.lua;" .. script_dir .. "/../lua/?/init.lua;"
  .. "./lua/?.lua;./lua/?/init.lua;" .. package.path

local cjson = require "cjson"
local json = require "misskey.json"

local BUDGET = 0.25

local version = rawget(_G, "jit") and rawget(_G, "jit").version or _VERSION

-- Deterministic pseudo-random numbers (same data on every Lua).
local seed = 12345
local function rand(n)
  seed = (seed * 16807) % 2147483647
  return seed % n + 1
end

local ID_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"
local function id()
  local t = {}
  for i = 1, 10 do
    local k = rand(#ID_CHARS)
    t[i] = ID_CHARS:sub(k, k)
  end
  return table.concat(t)
end

local WORDS = {
  "Misskey", "の", "タイムライン", "今日は", "いい天気", "ですね", "hello", "world",
  ":blobcat:", "#misskey", "@alice@example.com", "https://example.com/notes/abc",
  "\"quoted\"", "猫", "🍣", "Lua", "C", "JSON", "mfm", "$[x2 big]", "**bold**",
}
local function make_text(nwords)
  local t = {}
  for i = 1, nwords do
    t[i] = WORDS[rand(#WORDS)]
    if rand(8) == 1 then t[i] = t[i] .. "\n" end
  end
  return table.concat(t, " ")
end

local function date(i)
  return string.format("2024-05-%02dT%02d:%02d:%02d.%03dZ", 1 + i % 28, i % 24, i % 60, (i * 7) % 60, i % 1000)
end

local function user(i)
  return {
    id = id(), name = "ユーザー " .. i, username = "user" .. i,
    host = (i % 3 == 0) and cjson.null or "example.com",
    avatarUrl = "https://example.com/proxy/avatar.webp?url=https%3A%2F%2Fexample.com%2Ffiles%2F" .. id(),
    avatarBlurhash = "eQF5?xYk^6#M@-5c,1J5@[or[Q6.{8ay;OaeNHw{x]fRkCj[ay",
    avatarDecorations = json.array(),
    isBot = false, isCat = (i % 2 == 0),
    instance = (i % 3 == 0) and cjson.null or {
      name = "Example", softwareName = "misskey", softwareVersion = "2024.5.0",
      iconUrl = "https://example.com/favicon.ico", faviconUrl = "https://example.com/favicon.ico",
      themeColor = "#86b300",
    },
    emojis = {}, onlineStatus = "unknown",
    badgeRoles = json.array(),
  }
end

local function file(i)
  return {
    id = id(), createdAt = date(i), name = "image" .. i .. ".webp", type = "image/webp",
    md5 = "d41d8cd98f00b204e9800998ecf8427e", size = 100000 + rand(900000),
    isSensitive = false, blurhash = "y0SF;L00000000000000000000000000",
    properties = { width = 1200 + rand(800), height = 900 + rand(600) },
    url = "https://example.com/files/" .. id() .. ".webp",
    thumbnailUrl = "https://example.com/files/thumbnail-" .. id() .. ".webp",
    comment = cjson.null, folderId = cjson.null, folder = cjson.null,
    userId = cjson.null, user = cjson.null,
  }
end

local function note(i, depth)
  local files = json.array()
  local fileIds = json.array()
  for k = 1, (i % 4 == 0) and 2 or 0 do
    files[k] = file(i * 10 + k)
    fileIds[k] = files[k].id
  end
  local n = {
    id = id(), createdAt = date(i), userId = id(), user = user(i),
    text = make_text(30 + rand(50)), cw = (i % 9 == 0) and "spoiler" or cjson.null,
    visibility = "public", localOnly = false, reactionAcceptance = "likeOnly",
    renoteCount = rand(50), repliesCount = rand(10), reactionCount = rand(300),
    reactions = { ["👍"] = rand(100), [":blobcat@.:"] = rand(20), ["❤"] = rand(200) },
    reactionEmojis = { ["blobcat@example.com"] = "https://example.com/emoji/blobcat.webp" },
    emojis = {}, tags = json.array { "misskey", "lua" }, mentions = json.array(),
    fileIds = fileIds, files = files,
    replyId = cjson.null, renoteId = cjson.null, clippedCount = 0,
    uri = "https://example.com/notes/" .. id(), url = cjson.null,
    visibleUserIds = json.array(),
    poll = (i % 10 == 0) and {
      multiple = false, expiresAt = date(i + 1),
      choices = json.array {
        { text = "yes", votes = rand(100), isVoted = false },
        { text = "no", votes = rand(100), isVoted = false },
      },
    } or cjson.null,
  }
  if depth == 0 and i % 5 == 0 then
    n.renote = note(i + 1000, 1)
    n.renoteId = n.renote.id
  end
  return n
end

local notes = json.array()
for i = 1, 100 do notes[i] = note(i, 0) end
local timeline = json.encode(notes)
-- Variants that take json.decode's other paths:
-- one note's text holds a literal "[]": one extra, partial, failed decode;
local timeline_str1 = timeline:gsub('"text":"', '"text":"x = [] ', 1)
-- 20 notes' texts hold one: more than MAX_RETRIES, so the string-aware scan;
local timeline_str20 = timeline:gsub('"text":"', '"text":"x = [] ', 20)
-- a NUL character in a text: no empty-array rewrite, only cjson + the walk.
local timeline_nul = timeline:gsub('"text":"', '"text":"\\u0000', 1)

local params = {
  i = "abcdefghijklmnopqrstuvwxyz012345",
  text = "Hello from Lua! こんにちは :blobcat: https://example.com/path?query=1&b=2\n"
    .. "A second line with \"quotes\" and a tab\there. " .. string.rep("Long body text. ", 30),
  cw = cjson.null, visibility = "followers", localOnly = true,
  reactionAcceptance = "nonSensitiveOnly", noExtractMentions = false,
  noExtractHashtags = false, noExtractEmojis = false,
  fileIds = json.array { "9u8y7t6r5e", "9u8y7t6r5f", "9u8y7t6r5g" },
  visibleUserIds = json.array(),
  replyId = "9u8y7t6abc", channelId = cjson.null,
  poll = {
    choices = json.array { "Lua 5.1", "Lua 5.4", "LuaJIT 2.1", "None of them" },
    multiple = true, expiresAt = 1800000000000,
  },
}
local params_json = json.encode(params)

-- Runs f repeatedly for about BUDGET seconds; returns seconds per call.
local function measure(f)
  f()                                  -- warm-up
  local calls, t0 = 0, os.clock()
  local batch = 1
  while true do
    for _ = 1, batch do f() end
    calls = calls + batch
    local dt = os.clock() - t0
    if dt >= BUDGET then return dt / calls end
    batch = batch * 2
  end
end

local function mbps(bytes, secs)
  return bytes / secs / 1e6
end

print(("misskey.json benchmark on %s (lua-cjson %s)"):format(version, cjson._VERSION))
print(("timeline: %d notes, %d bytes; params: %d bytes"):format(#notes, #timeline, #params_json))
print()

local function decode_line(label, text, secs, base)
  print(("decode  %-32s %8.1f MB/s  %7.3f ms%s"):format(label, mbps(#text, secs), secs * 1e3,
    base and ("  (+%.0f%% over cjson)"):format((secs / base - 1) * 100) or ""))
end
local t_cjson = measure(function() return cjson.decode(timeline) end)
local t_json = measure(function() return json.decode(timeline) end)
local t_nul = measure(function() return json.decode(timeline_nul) end)
local t_str1 = measure(function() return json.decode(timeline_str1) end)
local t_str20 = measure(function() return json.decode(timeline_str20) end)
decode_line("cjson.decode", timeline, t_cjson)
decode_line("json.decode", timeline, t_json, t_cjson)
print(("          of which: walk (marks arrays%s) +%.0f%%, empty-array rewrite +%.0f%%")
  :format(rawget(math, "tointeger") and ", integers" or "",
    (t_nul / t_cjson - 1) * 100, (t_json - t_nul) / t_cjson * 100))
decode_line("json.decode, NUL in a text", timeline_nul, t_nul, t_cjson)
decode_line("json.decode, '[]' in 1 text", timeline_str1, t_str1, t_cjson)
decode_line("json.decode, '[]' in 20 texts", timeline_str20, t_str20, t_cjson)

local e_cjson = measure(function() return cjson.encode(params) end)
local e_json = measure(function() return json.encode(params) end)
print()
print(("encode  %-32s %8.1f MB/s  %7.2f us/call")
  :format("cjson.encode (1 KB params)", mbps(#params_json, e_cjson), e_cjson * 1e6))
print(("encode  %-32s %8.1f MB/s  %7.2f us/call  (x%.1f the time of cjson)")
  :format("json.encode (1 KB params)", mbps(#params_json, e_json), e_json * 1e6, e_json / e_cjson))
local big = measure(function() return json.encode(notes) end)
print(("encode  %-32s %8.1f MB/s  %7.3f ms"):format("json.encode (timeline)", mbps(#timeline, big), big * 1e3))
