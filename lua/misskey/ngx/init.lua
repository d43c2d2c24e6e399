--- misskey.ngx: what only nginx needs. Inside nginx `require "misskey"` already
-- runs on nginx's event loop (misskey.loop selects misskey.ngx.runtime when it
-- loads there); this module adds background jobs that run in exactly one nginx
-- worker process at a time, such as the stream of an account:
--
--   init_worker_by_lua_block {
--     require("misskey.ngx").follow{ dict = "misskey", key = "alice", stream = function()
--       local s = require("misskey").new{ host = ..., token = ... }:stream{ positions = "/var/lib/app/alice.json" }
--       s:channel("homeTimeline"):on("note", function(note) ... end)
--       return s
--     end }
--   }
--
-- One job per key across all worker processes: a lock in a lua_shared_dict,
-- renewed while held (`ttl`), tried again by the others every `retry` seconds.
-- When the worker process holding it exits (`nginx -s reload`, `-s quit`), the
-- job is told to stop (lease:wait() returns), the lock is released, and a
-- worker of the new generation takes over; a stream with `positions` then
-- backfills from where the old one stopped, so no event is lost.
local argcheck = require "misskey.argcheck"
local core = require "misskey.core"
local host = rawget(_G, "ngx")
if type(host) ~= "table" or type(host.shared) ~= "table" then
  error("misskey.ngx: only inside nginx (ngx_lua); elsewhere use misskey itself", 2)
end
local loop = require "misskey.loop"
local rt = require "misskey.ngx.runtime"

local M = {}

local Lease = { __name = "misskey.ngx.Lease" }
Lease.__index = Lease

--- lease:wait([timeout]) -> true once the job must stop (its worker process exits,
-- or the lock was lost), false when `timeout` seconds passed first.
---@param timeout? number
---@return boolean
function Lease:wait(timeout)
  local deadline = timeout and core.now() + timeout
  while not self.stopping do
    local left = deadline and deadline - core.now()
    if left and left <= 0 then return false end
    loop.wait_event(self, left)
  end
  return true
end

function Lease:_stop(why)
  if self.stopping then return end
  self.stopping, self.why = true, why
  loop.signal(self)
end

local function check(opts, fname, job)
  if type(opts) ~= "table" then argcheck.argerror(1, fname, "options table expected, got " .. type(opts), 2) end
  argcheck.known_options(opts, { dict = true, key = true, ttl = true, retry = true, [job] = true }, 2)
  if type(opts.dict) ~= "string" or not host.shared[opts.dict] then
    argcheck.opterror("dict", "the name of a lua_shared_dict expected (declare one in nginx.conf's http block), got "
      .. tostring(opts.dict), 2)
  end
  if type(opts.key) ~= "string" or opts.key == "" then
    argcheck.opterror("key", "a non-empty string expected", 2)
  end
  if type(opts[job]) ~= "function" then argcheck.opterror(job, "function expected, got " .. type(opts[job]), 2) end
  argcheck.seconds_option(opts, "ttl", 3600, 2)
  argcheck.seconds_option(opts, "retry", 3600, 2)
  local phase = host.get_phase()
  if phase == "init" then
    error(("misskey.ngx.%s: call it from init_worker_by_lua (each worker process takes its turn), not init_by_lua")
      :format(fname), 3)
  end
end

-- Holds the lock: runs the job, renews the lock every ttl/3 seconds, stops the job
-- when the worker process exits or the lock is lost, then releases the lock.
local function hold(opts, dict, owner)
  local ttl = opts.ttl or 10
  local lease = setmetatable({ key = opts.key, stopping = false }, Lease)
  rt.on_exit(lease, function() lease:_stop("exiting") end)
  local renewer = loop.spawn(function()
    while not lease:wait(ttl / 3) do
      if dict:get(opts.key) ~= owner then
        lease:_stop("lost")
      else
        dict:set(opts.key, owner, ttl)
      end
    end
  end)
  local job = loop.spawn(opts.run, lease)
  local ok, msg = job:join()
  if ok == nil and msg then host.log(host.ERR, "misskey.ngx: job ", opts.key, ": ", msg) end
  lease:_stop("ended")
  renewer:join()
  rt.on_exit(lease, nil)
  if dict:get(opts.key) == owner then dict:delete(opts.key) end
end

local function main(premature, opts)
  if premature then return end
  loop.run(function()
    local dict = host.shared[opts.dict]
    local owner = ("%d %s"):format(host.worker.pid(), core.uuid())
    local stop = {}
    rt.on_exit(stop, function() loop.signal(stop) end)
    while not rt.exiting do
      if dict:add(opts.key, owner, opts.ttl or 10) then hold(opts, dict, owner) end
      if rt.exiting then break end
      loop.wait_event(stop, opts.retry or 1)
    end
    rt.on_exit(stop, nil)
  end)
end

--- misskey.ngx.singleton{ dict, key, run, ttl = 10, retry = 1 }: runs `run(lease)`
-- in one nginx worker process at a time for `key` (a lock in the lua_shared_dict
-- `dict`), in a timer, as a task; call it from init_worker_by_lua. `run` must
-- return once `lease:wait()` returns (the worker process exits, or the lock was lost);
-- the lock is then released and another worker process takes over within `retry` s.
---@param opts { dict: string, key: string, run: fun(lease: table), ttl?: number, retry?: number }
function M.singleton(opts)
  check(opts, "singleton", "run")
  local ok, err = host.timer.at(0, main, opts)
  if not ok then error("misskey.ngx.singleton: cannot start its timer: " .. tostring(err), 2) end
end

--- misskey.ngx.follow{ dict, key, stream, ttl = 10, retry = 1 }: a stream that runs in
-- one nginx worker process at a time: `stream()` makes it (a client:stream with its
-- channels and handlers; give it `positions` so a new worker process backfills what
-- happened during the handover), and it runs until the worker process exits, when it
-- is closed (positions saved) for the next one.
---@param opts { dict: string, key: string, stream: fun(): table, ttl?: number, retry?: number }
function M.follow(opts)
  check(opts, "follow", "stream")
  local make = opts.stream
  local job = {}
  for k, v in pairs(opts) do job[k] = v end
  job.stream = nil
  job.run = function(lease)
    local s = make()
    local closer = loop.spawn(function()
      lease:wait()
      s:close()
    end)
    local ok, msg = s:run()
    if not ok then host.log(host.ERR, "misskey.ngx.follow ", opts.key, ": ", tostring(msg)) end
    if closer.status ~= "done" then closer:cancel() end
  end
  local ok, err = host.timer.at(0, main, job)
  if not ok then error("misskey.ngx.follow: cannot start its timer: " .. tostring(err), 2) end
end

--- misskey.ngx.exiting() -> true once this nginx worker process is exiting.
---@return boolean
function M.exiting() return rt.exiting or host.worker.exiting() end

return M
