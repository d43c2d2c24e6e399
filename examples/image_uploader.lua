-- An image uploader: uploads a file (or every file of a directory) to the drive
-- with a progress bar on stderr, and posts a note with it. Given a directory, it
-- keeps watching it and posts each new file as it appears.
--
-- Runs against MISSKEY_HOST with MISSKEY_TOKEN when both are set; otherwise
-- against misskey.testing's in-process fake (which has a drive).
--   image_uploader.lua PATH [--once] [--every S]
--   --once     one pass: upload what is there, then exit (what CI runs)
--   --every S  seconds between looks at a directory (default 10)
local misskey = require "misskey"
local testing = require "misskey.testing"
local cli = require "misskey.cli"   -- for its progress bar

local path, once, every
local args = arg or {}
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--once" then
    once = true
  elseif a == "--every" and tonumber(args[i + 1]) then
    every = tonumber(args[i + 1])
    i = i + 1
  elseif not path and a:sub(1, 2) ~= "--" then
    path = a
  else
    path = nil
    break
  end
  i = i + 1
end
if not path then
  io.stderr:write("usage: image_uploader.lua PATH [--once] [--every SECONDS]\n")
  os.exit(2)
end

local client, fake, where = testing.demo_client()
print(where)

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function is_directory(p)
  local f = io.open(p .. "/.", "rb")
  if f then f:close() end
  return f ~= nil
end
local watch = is_directory(path)

-- The regular files of PATH: itself if it is a file, else those in the directory (sorted).
local function files_of(p)
  if not watch then return { p } end
  local list = {}
  local ls = io.popen("find " .. shell_quote(p) .. " -maxdepth 1 -type f | sort")
  for line in ls:lines() do list[#list + 1] = line end
  ls:close()
  return list
end

local done, failures = {}, 0
local function upload_and_post(file_path)
  local label = file_path:match("[^/]*$")
  local progress, finish = cli.progress_bar(label, io.stderr)
  local file, msg = client:upload(file_path, nil, { progress = progress })
  finish()
  if not file then
    io.stderr:write("upload failed: ", tostring(msg), "\n")
    failures = failures + 1
    return
  end
  print(("uploaded %s (%d bytes) as %s"):format(tostring(file.name), file.size or 0, file.id))
  local res, pmsg = client:request("notes/create",
    { text = "New upload: " .. tostring(file.name), fileIds = { file.id } })
  if not res then
    io.stderr:write("post failed: ", tostring(pmsg), "\n")
    failures = failures + 1
    return
  end
  print(("posted %s with %d file(s)"):format(res.createdNote.id, #res.createdNote.fileIds))
end

repeat
  for _, p in ipairs(files_of(path)) do
    if not done[p] then
      done[p] = true
      upload_and_post(p)
    end
  end
  if watch and not once then misskey.sleep(every or 10) end
until once or not watch

if fake then
  -- The effect, checked in the fake: the file is in the drive and a note carries it.
  for _, f in ipairs(fake:files{ user = "me" }) do
    local note = fake:notes{ user = "me", text = "New upload: " .. f.name }[1]
    print(("in the fake: drive file %s (%d bytes), in note %s"):format(f.name, f.size, note and note.id or "none"))
  end
end
if failures > 0 then os.exit(1) end
