-- Throughput of misskey.json against raw lua-cjson.
--
--   lua5.4 bench/json_bench.lua      (also lua5.1, luajit; from the repository root or anywhere)
--
-- Decodes three documents with json.decode (misskey.core's C decoder) and with raw
-- cjson.decode (which marks no arrays and, on Lua 5.3+, gives floats for integers):
--   timeline    bench/fixtures.lua's `notes/timeline` reply, 100 notes (~230 KB);
--   meta        bench/fixtures.lua's `meta` reply (~1.4 KB);
--   note event  a homeTimeline `note` event as bench/stream_server.py sends it (~2.4 KB).
-- Then encodes the `{ i = token }` body of most calls, a ~1 KB notes/create params
-- table and the timeline with json.encode (misskey.core's C path, src/json.c), with
-- misskey.json's Lua encoder alone (json._encode_lua, the reference the C path must
-- match byte for byte; it was json.encode before) and with raw cjson.encode (which
-- writes 14 digits, escapes '/' and has no empty-array marker).
-- Prints figures only; asserts nothing about speed. Each measurement runs for
-- about BUDGET seconds of CPU time.

local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local LUA = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
package.path = script_dir .. "/../lua/?.lua;" .. script_dir .. "/../lua/?/init.lua;" .. package.path
package.cpath = script_dir .. "/../build/" .. LUA .. "/?.so;" .. package.cpath

local cjson = require "cjson"
local json = require "misskey.json"
local fixtures = assert(loadfile(script_dir .. "/fixtures.lua"))("--data")

local BUDGET = 0.25
local null, array = json.null, json.array

local version = rawget(_G, "jit") and rawget(_G, "jit").version or _VERSION

-- stream_server.py's note(k), in Lua: the note of a homeTimeline event.
local function stream_note(k)
  local uid = ("9abc%06d"):format(k * 7919 % 1000000)
  local host = (k % 3 == 0) and "mi.example.net" or null
  local user = {
    id = uid, name = ("ベンチ用アカウント %d :blobcat:"):format(k), username = "bench_user_" .. k, host = host,
    avatarUrl = "https://misskey.example/proxy/avatar.webp?url=https%3A%2F%2Fmedia.misskey.example%2Fwebpublic-"
      .. uid .. ".png&avatar=1",
    avatarBlurhash = "eHFiS:M{00~qt7j[M{?bWBof00t7RjofRj~q%Mj[Rjay00WBt7ay", avatarDecorations = array(),
    isBot = k % 5 == 0, isCat = k % 4 == 0,
    emojis = host ~= null and { blobcat = "https://media.misskey.example/emoji/blobcat.png" } or {},
    onlineStatus = "unknown",
    badgeRoles = array { { name = "Supporter", iconUrl = "https://media.misskey.example/role/supporter.png",
      displayOrder = 10 } },
  }
  if host ~= null then
    user.instance = { name = "Example Misskey", softwareName = "misskey", softwareVersion = "2025.3.1",
      iconUrl = "https://mi.example.net/static-assets/icons/192.png",
      faviconUrl = "https://mi.example.net/favicon.ico", themeColor = "#86b300" }
  end
  local files, file_ids = array(), array()
  for f = 0, k % 2 do
    local fid = ("9fil%06d"):format(k * 31 + f)
    files[f + 1] = {
      id = fid, createdAt = ("2025-03-%02dT12:%02d:07.123Z"):format(k % 28 + 1, k % 60),
      name = ("IMG_%04d.jpg"):format(k * 13 + f), type = "image/jpeg",
      md5 = "0cc175b9c0f1b6a831c399e269772661", size = 123456 + k * 1000 + f,
      isSensitive = k % 9 == 0, blurhash = "eJF5,AxuD%IU~qRjRjWBj[of00ofxuayRj%MRjWBayj[ayj[ofayWB",
      properties = { width = 1920, height = 1080 + f },
      url = ("https://media.misskey.example/files/%s.jpg"):format(fid),
      thumbnailUrl = ("https://media.misskey.example/files/thumbnail-%s.webp"):format(fid),
      comment = f ~= 0 and null or ("夕方の空 (alt text %d)"):format(k), folderId = null, folder = null,
      userId = null, user = null,
    }
    file_ids[f + 1] = fid
  end
  local text = ("今日のベンチマーク %d 回目。ストリーミングで流れてくるノートを数えています :blobcat: "
    .. "#misskey #lua https://example.com/posts/%d\n"
    .. "The quick brown fox jumps over the lazy dog; \"quoted\" and \\escaped\\ text, tab\there.\n"
    .. "絵文字もどうぞ 🎉🍣 and a longer line of plain ASCII to make the note a realistic size. %s")
    :format(k, k * 101, ("ok "):rep(k % 7))
  return {
    id = "9000000001", createdAt = ("2025-03-%02dT12:%02d:%02d.%03dZ"):format(k % 28 + 1, k % 60, k % 60, k),
    userId = uid, user = user, text = text, cw = (k % 6 ~= 0) and null or "ネタバレ注意",
    visibility = ({ "public", "home", "followers" })[k % 3 + 1], localOnly = false,
    reactionAcceptance = null, renoteCount = k % 11, repliesCount = k % 5, reactionCount = 3 + k % 4,
    reactions = { ["👍"] = 1 + k % 3, [":blobcat@.:"] = 2, [":awesome@mi.example.net:"] = k % 4 },
    reactionEmojis = { ["awesome@mi.example.net"] = "https://mi.example.net/emoji/awesome.webp" },
    fileIds = file_ids, files = files, replyId = null, renoteId = null,
    tags = array { "misskey", "lua" }, mentions = array(),
    uri = host ~= null and ("https://mi.example.net/notes/" .. uid) or null,
    url = null, clippedCount = 0, poll = null,
    emojis = { blobcat = "https://media.misskey.example/emoji/blobcat.png" },
  }
end

local event = json.encode { type = "channel", body = { id = "1", type = "note", body = stream_note(6) } }

local params = {
  i = "abcdefghijklmnopqrstuvwxyz012345",
  text = "Hello from Lua! こんにちは :blobcat: https://example.com/path?query=1&b=2\n"
    .. "A second line with \"quotes\" and a tab\there. " .. string.rep("Long body text. ", 30),
  cw = null, visibility = "followers", localOnly = true,
  reactionAcceptance = "nonSensitiveOnly", noExtractMentions = false,
  noExtractHashtags = false, noExtractEmojis = false,
  fileIds = array { "9u8y7t6r5e", "9u8y7t6r5f", "9u8y7t6r5g" },
  visibleUserIds = array(),
  replyId = "9u8y7t6abc", channelId = null,
  poll = {
    choices = array { "Lua 5.1", "Lua 5.4", "LuaJIT 2.1", "None of them" },
    multiple = true, expiresAt = 1800000000000,
  },
}

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
print()
print("decode, MB/s (more is better)       json.decode  cjson.decode   new/cjson")
local docs = {
  { ("timeline (%d notes, %d B)"):format(fixtures.notes, #fixtures.timeline), fixtures.timeline },
  { ("meta reply (%d B)"):format(#fixtures.meta), fixtures.meta },
  { ("note event (%d B)"):format(#event), event },
}
for _, doc in ipairs(docs) do
  local label, text = doc[1], doc[2]
  assert(json.decode(text), label)
  local t_new = measure(function() return json.decode(text) end)
  local t_cjson = measure(function() return cjson.decode(text) end)
  print(("  %-32s %9.1f %13.1f %10.2fx"):format(label, mbps(#text, t_new), mbps(#text, t_cjson),
    t_cjson / t_new))
  if #text < 10000 then
    print(("  %-32s %9.2f %13.2f   us/call"):format("", t_new * 1e6, t_cjson * 1e6))
  end
end

local notes = json.decode(fixtures.timeline)
print()
print("encode, MB/s (more is better)        json.encode  Lua encoder  cjson.encode     C/Lua  C/cjson")
local bodies = {
  { "{ i = token }", { i = params.i } },
  { "params", params },
  { ("timeline, %d notes"):format(fixtures.notes), notes },
}
for _, body in ipairs(bodies) do
  local value = body[2]
  local text = json.encode(value)
  assert(text == json._encode_lua(value) and json._encode_c(value), body[1])
  local label = ("%s (%d B)"):format(body[1], #text)
  local t_new = measure(function() return json.encode(value) end)
  local t_lua = measure(function() return json._encode_lua(value) end)
  local t_cjson = measure(function() return cjson.encode(value) end)
  print(("  %-32s %9.1f %12.1f %13.1f %9.2fx %7.2fx"):format(label, mbps(#text, t_new), mbps(#text, t_lua),
    mbps(#text, t_cjson), t_lua / t_new, t_cjson / t_new))
  local unit, scale = "us/call", 1e6
  if t_lua > 1e-3 then unit, scale = "ms/call", 1e3 end
  print(("  %-32s %9.2f %12.2f %13.2f   %s"):format("", t_new * scale, t_lua * scale, t_cjson * scale, unit))
end
