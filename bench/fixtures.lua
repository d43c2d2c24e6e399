-- Writes the fixtures the request benchmark's nginx serves, and its config.
--
--   lua5.4 bench/fixtures.lua DIR PORT
--
-- DIR/www/api/meta.json          ~1.3 KB Misskey `meta` reply (also inlined in the config)
-- DIR/www/api/notes/timeline     ~230 KB `notes/timeline` reply: 100 notes
-- DIR/nginx.conf                 bench/nginx.conf.in with @DIR@, @PORT@ and @META@ filled in
--
-- The data is deterministic (a fixed-seed generator): the same values on every
-- run (object key order follows the Lua's table order). Encoded with misskey.json
-- so that empty arrays stay `[]`.
--
--   loadfile("bench/fixtures.lua")("--data")   -> { meta = text, timeline = text, notes = 100 }
-- writes nothing and returns the two texts (bench/json_bench.lua decodes them).

local data_only = select(1, ...) == "--data"
local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
if not data_only then
  local version = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
  package.path = script_dir .. "/../lua/?.lua;" .. script_dir .. "/../lua/?/init.lua;" .. package.path
  package.cpath = script_dir .. "/../build/" .. version .. "/?.so;" .. package.cpath
end

local json = require "misskey.json"
local null, array = json.null, json.array

local dir, port = arg and arg[1], tonumber(arg and arg[2] or "")
if not data_only and (not dir or not port) then
  io.stderr:write("usage: fixtures.lua DIR PORT\n")
  os.exit(2)
end

-- Park-Miller minimal standard generator: same numbers on every Lua.
local seed = 20240501
local function rand(n)
  seed = (seed * 16807) % 2147483647
  return seed % n + 1
end

-- Misskey "aid" ids: 10 characters of [0-9a-z].
local ID_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"
local function id()
  local t = {}
  for i = 1, 10 do
    local k = rand(#ID_CHARS)
    t[i] = ID_CHARS:sub(k, k)
  end
  return table.concat(t)
end

local function date(i)
  return ("2024-05-%02dT%02d:%02d:%02d.%03dZ"):format(1 + i % 28, 23 - i % 24, (i * 7) % 60, (i * 13) % 60,
    (i * 37) % 1000)
end

local WORDS = {
  "今日は", "いい天気", "ですね", "Misskey", "のタイムライン", "ねこ", "🍣", "🎉", "✨",
  "hello", "world", "fediverse", "note", "Lua", "libcurl", "JSON", "benchmark", "release",
  ":blobcat:", ":misskey:", "#misskey", "#lua", "@alice", "@bob@example.social",
  "https://misskey.example/notes/9u8y7t6r5e", "**bold**", "$[x2 big]", "\"quoted\"",
  "Grüße", "café", "naïve", "Ελληνικά", "русский", "한국어", "中文",
}

local function text(nwords)
  local t = {}
  for i = 1, nwords do
    t[i] = WORDS[rand(#WORDS)]
    if rand(10) == 1 then t[i] = t[i] .. "\n" end
  end
  return table.concat(t, " ")
end

local HOSTS = { null, "misskey.io", "example.social", "fedi.example.net" }

local function user(i)
  local host = HOSTS[i % #HOSTS + 1]
  local uid = id()
  return {
    id = uid, name = (i % 3 == 0) and ("ユーザー" .. i .. " :blobcat:") or ("User " .. i), username = "user" .. i,
    host = host,
    avatarUrl = "https://misskey.example/proxy/avatar.webp?url=https%3A%2F%2Fmedia.example%2Favatars%2F"
      .. uid .. ".png&avatar=1",
    avatarBlurhash = "eQF5?xYk^6#M@-5c,1J5@[or[Q6.{8ay;OaeNHw{x]fRkCj[ay",
    avatarDecorations = array(),
    isBot = (i % 17 == 0), isCat = (i % 2 == 0),
    instance = host ~= null and {
      name = host, softwareName = "misskey", softwareVersion = "2024.5.0",
      iconUrl = "https://" .. host .. "/favicon.ico", faviconUrl = "https://" .. host .. "/favicon.ico",
      themeColor = "#86b300",
    } or nil,
    emojis = {}, onlineStatus = (i % 4 == 0) and "online" or "unknown",
    badgeRoles = array(),
  }
end

local function file(i)
  local fid = id()
  return {
    id = fid, createdAt = date(i), name = "IMG_" .. (1000 + i) .. ".webp", type = "image/webp",
    md5 = "d41d8cd98f00b204e9800998ecf8427e", size = 100000 + rand(900000),
    isSensitive = (i % 7 == 0), blurhash = "eQF5?xYk^6#M@-5c,1J5@[or[Q6.{8ay;OaeNHw{x]fRkCj[ay",
    properties = { width = 1200 + rand(800), height = 900 + rand(600) },
    url = "https://media.example/files/" .. fid .. ".webp",
    thumbnailUrl = "https://media.example/files/thumbnail-" .. fid .. ".webp",
    comment = (i % 3 == 0) and "代替テキスト: a photo of a cat" or null,
    folderId = null, folder = null, userId = null, user = null,
  }
end

local function note(i, nested)
  local files, file_ids = array(), array()
  for k = 1, (i % 4 == 0) and 2 or (i % 7 == 0 and 1 or 0) do
    files[k] = file(i * 10 + k)
    file_ids[k] = files[k].id
  end
  local u = user(i)
  local n = {
    id = id(), createdAt = date(i), userId = u.id, user = u,
    text = text(22 + rand(45)), cw = (i % 9 == 0) and "ネタバレ注意" or null,
    visibility = (i % 6 == 0) and "home" or "public", localOnly = false,
    reactionAcceptance = (i % 2 == 0) and "likeOnly" or null,
    renoteCount = rand(50) - 1, repliesCount = rand(10) - 1, reactionCount = rand(300),
    reactions = { ["👍"] = rand(100), ["❤"] = rand(200), [":blobcat@.:"] = rand(20),
      [":misskey@misskey.io:"] = rand(5) },
    reactionEmojis = { ["misskey@misskey.io"] = "https://misskey.io/files/emoji-misskey.webp" },
    emojis = {}, tags = (i % 3 == 0) and array { "misskey", "lua" } or nil,
    fileIds = file_ids, files = files,
    replyId = null, renoteId = null, clippedCount = rand(3) - 1,
    uri = u.host ~= null and ("https://" .. u.host .. "/notes/" .. id()) or nil,
    url = null,
    myReaction = (i % 5 == 0) and "👍" or null,
    poll = (i % 10 == 0) and {
      multiple = false, expiresAt = date(i + 3),
      choices = array {
        { text = "はい", votes = rand(100), isVoted = false },
        { text = "いいえ", votes = rand(100), isVoted = true },
      },
    } or null,
  }
  if not nested and i % 5 == 0 then
    n.renote = note(i + 1000, true)
    n.renoteId = n.renote.id
  end
  return n
end

local notes = array()
for i = 1, 100 do notes[i] = note(i, false) end
local timeline = json.encode(notes)

local meta = json.encode {
  maintainerName = "Admin", maintainerEmail = "admin@misskey.example",
  version = "2024.5.0", providesTarball = false,
  name = "Misskey Example", shortName = "Example", uri = "https://misskey.example",
  description = "A Misskey server for benchmarks. ミスキーへようこそ!",
  langs = array { "ja-JP", "en-US" }, tosUrl = "https://misskey.example/tos",
  repositoryUrl = "https://github.com/misskey-dev/misskey",
  feedbackUrl = "https://github.com/misskey-dev/misskey/issues/new",
  impressumUrl = null, privacyPolicyUrl = "https://misskey.example/privacy",
  disableRegistration = false, emailRequiredForSignup = true,
  enableHcaptcha = false, enableRecaptcha = false, enableTurnstile = true,
  turnstileSiteKey = "0x4AAAAAAABkMYinukE8nzY",
  swPublickey = "BNk5n4H5BxVxLq2qzV2mOOWMDqSdLmX9ESbTY8kV3BFOfDH3JZu9Lmfe8pJkXgVfcw3Y0L",
  themeColor = "#86b300", mascotImageUrl = "/assets/ai.png", bannerUrl = null,
  iconUrl = "https://misskey.example/files/icon.png", backgroundImageUrl = null, logoImageUrl = null,
  maxNoteTextLength = 3000, defaultLightTheme = null, defaultDarkTheme = null,
  ads = array(),
  notesPerOneAd = 0, enableEmail = true, enableServiceWorker = true, translatorAvailable = false,
  serverRules = array { "他の利用者を尊重してください", "スパム禁止" },
  policies = { gtlAvailable = true, ltlAvailable = true, canPublicNote = true },
  mediaProxy = "https://misskey.example/proxy", enableUrlPreview = true, cacheRemoteFiles = false,
  cacheRemoteSensitiveFiles = true, requireSetup = false, proxyAccountName = "proxy",
}
-- The meta reply is inlined in nginx's `return 200 '...'`: no quote, backslash or `$`.
assert(not meta:find("['\\$]"), "meta JSON must not contain ', \\ or $")
if data_only then return { meta = meta, timeline = timeline, notes = #notes } end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

assert(os.execute("mkdir -p '" .. dir .. "/www/api/notes' '" .. dir .. "/tmp'"))
write(dir .. "/www/api/meta.json", meta)
write(dir .. "/www/api/notes/timeline", timeline)
local conf = read(script_dir .. "/nginx.conf.in")
conf = conf:gsub("@(%u+)@", function(k)
  if k == "DIR" then return dir elseif k == "PORT" then return tostring(port) elseif k == "META" then return meta end
end)
write(dir .. "/nginx.conf", conf)
print(("fixtures: meta %d bytes, timeline %d notes %d bytes"):format(#meta, #notes, #timeline))
