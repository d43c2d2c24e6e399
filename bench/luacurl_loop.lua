-- The peer: the loop a Lua user writes by hand with Debian's lua-curl (the luacurl binding,
-- `require "curl"`, Lua 5.1 and LuaJIT only) and lua-cjson, for bench/request_bench.lua.
--
--   luajit bench/luacurl_loop.lua URL COUNT BODY USER_AGENT [MAX_SECONDS]
--
-- One easy handle, set up once and reused, POSTs BODY with the headers misskey's client
-- sends; a write callback collects the chunks, `table.concat` joins them and `cjson.decode`
-- decodes each reply (a reply that does not decode to a table fails the run). One warm-up
-- request, then COUNT requests, stopping early after MAX_SECONDS (default 30). Prints the
-- line bench/curl_loop.c prints: requests=N seconds=S rate=R bytes=B connects=0 cpu=U
-- (luacurl has no getinfo: connections are not counted; nginx keeps the one alive).
local curl = require "curl"
local cjson = require "cjson"

local url, count, body, ua = arg[1], tonumber(arg[2]), arg[3], arg[4]
local max_seconds = tonumber(arg[5] or "30")
if not (url and count and body and ua) then
  io.stderr:write("usage: luacurl_loop.lua URL COUNT BODY USER_AGENT [MAX_SECONDS]\n")
  os.exit(2)
end

-- A monotonic wall clock (luaposix, which make deps installs): os.clock() counts CPU only.
local ptime = require "posix.time"
local function now()
  local t = ptime.clock_gettime(ptime.CLOCK_MONOTONIC)
  return t.tv_sec + t.tv_nsec * 1e-9
end

-- The loop itself, as a user would write it.
local chunks, n = {}, 0
local c = curl.easy_init()
c:setopt(curl.OPT_URL, url)
c:setopt(curl.OPT_NOSIGNAL, 1)
c:setopt(curl.OPT_USERAGENT, ua)
c:setopt(curl.OPT_ACCEPT_ENCODING, "")
c:setopt(curl.OPT_HTTPHEADER, { "Content-Type: application/json", "Accept: application/json", "Expect:" })
c:setopt(curl.OPT_POSTFIELDS, body)
c:setopt(curl.OPT_WRITEFUNCTION, function(s, len) -- (chunk, its length) without a WRITEDATA
  n = n + 1
  chunks[n] = s
  return len
end)

local last = 0
local function call()
  n = 0
  local rc, msg = c:perform() -- the CURLcode: 0 on success
  if rc ~= 0 then error(("luacurl_loop: curl error %s %s"):format(tostring(rc), tostring(msg))) end
  local text = table.concat(chunks, "", 1, n)
  last = #text
  local reply = cjson.decode(text)
  if type(reply) ~= "table" then error("luacurl_loop: the reply is not a JSON object or array") end
  return reply
end

call() -- warm-up: the connection
local cpu0 = os.clock() -- CPU seconds of this process (user + system)
local t0 = now()
local i = 0
while i < count do
  call()
  i = i + 1
  if i % 64 == 0 and now() - t0 > max_seconds then break end
end
local dt = now() - t0
print(("requests=%d seconds=%.6f rate=%.1f bytes=%d connects=0 cpu=%.6f"):format(i, dt, i / dt, last,
  os.clock() - cpu0))
