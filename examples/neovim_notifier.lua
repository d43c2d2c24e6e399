-- A Misskey notifier for Neovim (or any luv program): every few seconds it
-- reads the home timeline and shows the notes it has not shown yet, without
-- ever blocking the editor: requests run as misskey tasks on libuv's loop.
--
--   In Neovim:  :luafile examples/neovim_notifier.lua   (module built for LuaJIT:
--               make LUA=luajit, with build/luajit and lua/ on package.cpath/path)
--   Anywhere:   luajit examples/neovim_notifier.lua [--once] [--interval S]
--
-- --once: one round, then exit (CI runs this against the fake server).
-- Uses MISSKEY_HOST/MISSKEY_TOKEN when both are set, else misskey.testing's fake.
local misskey = require "misskey"
local testing = require "misskey.testing"

local vim = rawget(_G, "vim")
local in_nvim = vim ~= nil
local uv = in_nvim and (vim.uv or vim.loop) or require "luv"
local args = in_nvim and {} or { ... }
local once, interval = false, 30
for i = 1, #args do
  if args[i] == "--once" then once = true end
  if args[i] == "--interval" then interval = assert(tonumber(args[i + 1]), "--interval needs seconds") end
end

local function notify(text)
  if in_nvim then vim.notify(text, vim.log.levels.INFO, { title = "Misskey" }) else print(text) end
end

local client, fake, which = testing.demo_client{ timeout = 20 }
notify(which)
local driver = require("misskey.loop.luv").start(uv)

misskey.spawn(function()
  local since
  repeat
    local params = { limit = 10 }
    if since then params.sinceId = since end -- sinceId alone: oldest first (Misskey's rule)
    local notes, msg = client:request("notes/timeline", params)
    if not notes then
      notify("misskey: " .. msg)
    else
      if not since then -- the first page is newest first: show it oldest first
        local rev = {}
        for i = #notes, 1, -1 do rev[#rev + 1] = notes[i] end
        notes = rev
      end
      for _, n in ipairs(notes) do
        notify(("@%s: %s"):format(n.user.username, n.text ~= misskey.null and n.text or "(renote)"))
        since = n.id
      end
    end
    if fake and not once then fake:post("alice", { text = "tick " .. os.time() }) end
    if not once then misskey.sleep(interval) end
  until once
  driver.stop()
end)

if not in_nvim then uv.run() end
