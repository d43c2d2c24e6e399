--- misskey.ngx.webhook: Misskey's webhook deliveries answered inside nginx
-- (content_by_lua), for plain handlers and for a bot:
--
--   lua_shared_dict webhook_events 1m;        # the handled event ids, shared by the worker processes
--   location = /hook { content_by_lua_block { require("hook").serve() } }
--
--   -- hook.lua (one receiver per worker process, made when the module loads)
--   local receive = require("misskey.ngx.webhook").handler{ secret = ..., seen = "webhook_events",
--     on = { mention = function(note, event) ... end } }
--   return { serve = receive }
--
-- The order is misskey.webhook.handler's (method, secret, size, type, JSON,
-- replay, answer, handlers): the body is read only once the method and the
-- secret passed, within max_size (from memory, or from the temporary file
-- nginx buffers a large body to; over it: 413). The answer is sent and
-- finished (ngx.eof) before any handler runs, so a slow handler never makes
-- Misskey time out and retry; each handler then runs as a task of the
-- request, and one that raises is logged, never a 5xx.
--
-- Replays are recognised through a lua_shared_dict (`seen`): the id goes in
-- with dict:add, which checks and records in one step across the worker
-- processes, so a retry that another worker process takes is still a replay.
local argcheck = require "misskey.argcheck"
local handler = require "misskey.webhook.handler"
local loop = require "misskey.loop"
local host = rawget(_G, "ngx")
if type(host) ~= "table" or type(host.req) ~= "table" or type(host.shared) ~= "table" then
  error("misskey.ngx.webhook: only inside nginx (ngx_lua); elsewhere use misskey.webhook", 2)
end
local rt = require "misskey.ngx.runtime"

local M = {}

--- Seconds an event id is remembered by default: Misskey's last retry comes
-- about 11 minutes after the first try (1, 3, 7 minutes, plus up to 20 %).
M.TTL = 3600

-- Keys in the dict are prefixed, so the dict can hold other things too.
local PREFIX = "misskey.webhook:"

local Store = { __name = "misskey.ngx.webhook.Store" }
Store.__index = Store

-- store:add(id) -> true (new, now remembered) | false (known) | nil, message (the
-- dict failed: the event is handled, twice being better than never).
function Store:add(id)
  local ok, err = self.dict:add(PREFIX .. id, true, self.ttl)
  if ok then return true end
  if err == "exists" then return false end
  return nil, "misskey.ngx.webhook: the shared dict " .. self.name .. " failed: " .. tostring(err)
end

-- The lua_shared_dict `name`; raises naming `what` (an option, or an argument
-- of `fname` when `n` is given) at `level` (1: the caller of the public function).
local function find_dict(name, what, level, n, fname)
  local dict = type(name) == "string" and host.shared[name]
  if type(dict) ~= "table" then
    local why = "the name of a lua_shared_dict expected (declare one in nginx.conf's http block), got "
      .. tostring(name)
    if n then argcheck.argerror(n, fname, why, level + 1) end
    argcheck.opterror(what, why, level + 1)
  end
  return dict
end

local function ttl_problem(ttl)
  if ttl ~= nil and (type(ttl) ~= "number" or ttl ~= ttl or ttl <= 0 or ttl == math.huge) then
    return "a number of seconds > 0 expected, got " .. tostring(ttl)
  end
end

--- misskey.ngx.webhook.store(dict[, ttl]) -> a store of handled event ids (the
-- `store` of misskey.webhook.handler and bot:webhook) in the lua_shared_dict
-- `dict`, each id kept `ttl` seconds (M.TTL). When the dict is full, nginx
-- drops its least recently used keys, so its size bounds the memory.
---@param dict string the name of a lua_shared_dict
---@param ttl? number seconds
---@return table store
function M.store(dict, ttl)
  local d = find_dict(dict, nil, 1, 1, "store")
  local why = ttl_problem(ttl)
  if why then argcheck.argerror(2, "store", why) end
  return setmetatable({ dict = d, name = dict, ttl = ttl or M.TTL }, Store)
end

-- The request's body, up to `max` bytes: from memory or from nginx's temporary
-- file. -> body | nil, 413 or 400, message
local function read_body(max)
  local length = tonumber(host.var.http_content_length)
  if length and length > max then return nil, 413, "webhook: the body is over max_size" end
  host.req.read_body() -- over client_max_body_size nginx answers 413 itself
  local data = host.req.get_body_data()
  if data then
    if #data > max then return nil, 413, "webhook: the body is over max_size" end
    return data
  end
  local path = host.req.get_body_file()
  if not path then return "" end
  local f = io.open(path, "rb")
  if not f then return nil, 400, "webhook: the body could not be read" end
  local size = f:seek("end")
  if not size or size > max then
    f:close()
    return nil, 413, "webhook: the body is over max_size"
  end
  f:seek("set")
  data = f:read(size) or ""
  f:close()
  return data
end

-- Sends the answer and finishes it: the peer has it before anything else runs.
local function answer(status, headers, body)
  host.status = status
  for k, v in pairs(headers) do host.header[k] = v end
  if body ~= "" and status ~= 204 then host.print(body) end
  host.eof()
end

-- Handlers to start after the answer, by the coroutine of the request that
-- dispatched them (requests interleave when one waits for its body).
local pending = setmetatable({}, { __mode = "k" })

--- misskey.ngx.webhook.spawn(fn, ...): the `spawn` of misskey.webhook.handler
-- and bot:webhook_handler(spawn) inside nginx: fn(...) runs once the request's
-- answer went out (misskey.ngx.webhook.serve), in the dispatcher below.
---@param fn function
local function defer(fn, ...)
  local co = coroutine.running()
  local list = pending[co]
  if not list then
    list = {}
    pending[co] = list
  end
  list[#list + 1] = { fn = fn, n = select("#", ...), ... }
end

M.spawn = defer

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

-- The handlers run in one timer per worker process, the dispatcher, not in
-- the request: nginx may end a request whose answer is finished (ngx.eof) and
-- its light threads with it, and a timer per delivery would meet
-- lua_max_running_timers. The dispatcher's tasks reuse their light threads
-- (misskey.ngx.runtime), so it does not grow however long it runs.
local queue = {}        -- jobs not yet started, in order
local dispatching = false
local WAKE = {}

-- One job: a handler, or the bot's part of an event. Its error is logged; it
-- never reaches the delivery, which was answered already.
local function run_job(job)
  local ok, err = pcall(job.fn, unpack(job, 1, job.n))
  if not ok then
    if err == rt.CANCELLED then error(err, 0) end
    host.log(host.ERR, "misskey.ngx.webhook: a handler failed (the delivery was answered 204): ", tostring(err))
  end
end

-- The worker process is exiting (nginx -s reload, quit). Asked once a second
-- as well: nginx fires the timers that tell (rt.on_exit) only once no other
-- timer is pending, and a task's wait is one.
local function exiting() return rt.exiting or host.worker.exiting() end

local function dispatcher(premature)
  loop.run(function()
    rt.on_exit(WAKE, function() loop.signal(WAKE) end)
    while true do
      local jobs = queue
      queue = {}
      for i = 1, #jobs do loop.spawn(run_job, jobs[i]) end
      if premature or exiting() then break end
      if #queue == 0 then loop.wait_event(WAKE, 1) end
    end
    dispatching = false -- a delivery from now on starts a new one (it ends at once when exiting)
    rt.on_exit(WAKE, nil)
  end)
end

-- Hands the jobs this request dispatched to the dispatcher.
local function run_pending()
  local co = coroutine.running()
  local list = pending[co]
  if not list then return end
  pending[co] = nil
  for i = 1, #list do queue[#queue + 1] = list[i] end
  if dispatching then
    loop.signal(WAKE)
    return
  end
  local ok, err = host.timer.at(0, dispatcher)
  if ok then
    dispatching = true
  else
    host.log(host.ERR, "misskey.ngx.webhook: cannot start the handlers' timer (", tostring(err),
      "): they run in the request")
    local jobs = queue
    queue = {}
    for i = 1, #jobs do run_job(jobs[i]) end
  end
end

--- misskey.ngx.webhook.serve(receive): answers this request (content_by_lua)
-- with `receive`, a function(method, headers, body) -> status, headers, body
-- such as misskey.webhook.handler's; its body argument is a reader, called
-- once the method and the secret passed. What `receive` hands to
-- misskey.ngx.webhook.spawn runs after the answer (a bot's handler: see
-- misskey.ngx.webhook.bot).
---@param receive fun(method: string, headers: table, body: function): integer, table, string
function M.serve(receive)
  if type(receive) ~= "function" then
    argcheck.argerror(1, "serve", "function(method, headers, body) expected, got " .. type(receive))
  end
  pending[coroutine.running()] = nil -- nginx reuses coroutines: nothing of an earlier request's
  local headers = host.req.get_headers(200)
  answer(receive(host.req.get_method(), headers, read_body))
  run_pending()
end

local HANDLER_OPTIONS = { secret = true, on = true, seen = true, ttl = true, store = true, max_size = true,
                          null = true }

--- misskey.ngx.webhook.handler{ secret, on, seen = "dict", ttl, max_size, null }
-- -> function() to call in content_by_lua: reads the delivery from ngx.req,
-- answers 204 (handled, or a replay), 400, 401, 405, 413 or 415 (see
-- misskey.webhook.handler), then runs `on[type](payload, event)` and
-- `on["*"](type, payload, event)`, each as a task. `seen` names the
-- lua_shared_dict that remembers handled event ids for `ttl` seconds (M.TTL);
-- or pass a `store` of your own. Make it once per worker process (at the top of
-- a module), not per request.
---@param opts { secret: string, on?: table<string, function>, seen?: string, ttl?: number, store?: table, max_size?: integer, null?: "nil"|"null" }
---@return fun()
function M.handler(opts)
  if type(opts) ~= "table" then argcheck.argerror(1, "handler", "options table expected, got " .. type(opts)) end
  argcheck.known_options(opts, HANDLER_OPTIONS)
  local store = opts.store
  if store == nil then
    if opts.seen == nil then
      argcheck.opterror("seen", "the name of a lua_shared_dict for the handled event ids expected (a retry"
        .. " may reach another worker process), or a store of your own")
    end
    local dict = find_dict(opts.seen, "seen", 1)
    local why = ttl_problem(opts.ttl)
    if why then argcheck.opterror("ttl", why) end
    store = setmetatable({ dict = dict, name = opts.seen, ttl = opts.ttl or M.TTL }, Store)
  elseif opts.seen ~= nil then
    argcheck.opterror("seen", "seen or store, not both")
  end
  local r = handler.receiver({ secret = opts.secret, on = opts.on, store = store, max_size = opts.max_size,
    null = opts.null, spawn = defer }, "handler", 2)
  return function()
    pending[coroutine.running()] = nil
    local status, headers, body = r:handle(host.req.get_method(), host.req.get_headers(200), read_body)
    answer(status, headers, body)
    run_pending()
  end
end

-- Waits (in a task) until this worker process exits.
local function wait_exit(key)
  rt.on_exit(key, function() loop.signal(key) end)
  while not exiting() do loop.wait_event(key, 1) end
end

local BOT_OPTIONS = { grace = true, retry = true }

--- misskey.ngx.webhook.bot(make[, { grace = 10, retry = 10 }]) -> function() to
-- call in content_by_lua. Call it from init_worker_by_lua: each worker process
-- runs its own bot, made by `make()` in a timer (a bot with bot:webhook{ url,
-- listen = false, store = misskey.ngx.webhook.store(dict), ... }), until the
-- worker process exits (then bot:stop{ grace = grace }). The returned function
-- answers a delivery with that bot's bot:webhook_handler(): 503 (Misskey tries
-- again later) until the bot has started. A bot that fails (its start refused,
-- the server unreachable) is logged and made anew after `retry` seconds.
---@param make fun(): misskey.Bot
---@param opts? { grace?: number, retry?: number }
---@return fun()
function M.bot(make, opts)
  if type(make) ~= "function" then
    argcheck.argerror(1, "bot", "a function that makes the bot expected, got " .. type(make))
  end
  if opts ~= nil and type(opts) ~= "table" then argcheck.argerror(2, "bot", "options table expected") end
  opts = opts or {}
  argcheck.known_options(opts, BOT_OPTIONS)
  local grace = argcheck.seconds_option(opts, "grace", 3600) or 10
  local retry = argcheck.seconds_option(opts, "retry", 3600) or 10
  local current -- the bot's receiver, once made
  local function not_ready()
    return 503, { ["Content-Type"] = "text/plain; charset=utf-8", ["Retry-After"] = "60" }, "the bot is not running\n"
  end
  local function main(premature)
    if premature then return end
    loop.run(function()
      local exit = {}
      local watcher = loop.spawn(wait_exit, exit)
      while not exiting() do
        local ok, b = pcall(make)
        if ok and (type(b) ~= "table" or type(b.webhook_handler) ~= "function") then
          ok, b = false, "make() returned no bot"
        end
        local receive
        if ok then ok, receive = pcall(b.webhook_handler, b, defer) end
        if ok then
          current = receive
          local stopper = loop.spawn(function()
            loop.await_task(watcher)
            b:stop{ grace = grace }
          end)
          local _, msg = b:run()
          current = nil
          if stopper.status ~= "done" then stopper:cancel() end
          if msg and not exiting() then host.log(host.ERR, "misskey.ngx.webhook: the bot ended: ", tostring(msg)) end
        else
          host.log(host.ERR, "misskey.ngx.webhook: cannot make the bot: ", tostring(b))
        end
        if exiting() then break end
        loop.wait_event(exit, retry)
      end
      rt.on_exit(exit, nil)
    end)
  end
  local ok, err = host.timer.at(0, main)
  if not ok then error("misskey.ngx.webhook.bot: cannot start its timer: " .. tostring(err), 2) end
  return function()
    M.serve(function(...)
      if not current then return not_ready() end
      return current(...)
    end)
  end
end

return M
