--- Rate limits and retries around the client's one request path.
--
-- `ratelimit.run(client, endpoint, opts, attempt, a1, a2, a3, a4)` calls
-- `attempt(client, endpoint, a1, a2, a3, a4)` (one request on the wire; the
-- arguments spare the caller a closure per call) until it succeeds or the policy
-- gives up:
--   * a 429 is waited out (mode "wait" and "pace") when the wait fits in
--     `max_wait`, or returned at once (mode "throw");
--   * network errors, timeouts and 5xx replies are retried with jittered
--     exponential backoff, only for calls that are safe to repeat (the
--     catalogue says `write = false`, or the call says `idempotent = true`);
--   * mode "pace" also spaces the calls of each endpoint by the catalogue's
--     limit, and by Sharkey's X-RateLimit-* headers, before the server complains.
-- Every wait goes through misskey.loop.sleep: it yields in a task and blocks
-- in a plain script.
local loop = require "misskey.loop"

local M = {}

M.MODES = { wait = true, throw = true, pace = true }
M.DEFAULT_MODE = "wait"
M.DEFAULT_MAX_WAIT = 60 -- seconds
M.DEFAULT_RETRIES = 2
M.RETRY_BASE, M.RETRY_CAP = 0.2, 5     -- seconds: retries of network errors and 5xx
M.BLIND_BASE, M.BLIND_CAP = 1, 30      -- seconds: a 429 that says nothing about when to come back
M.BLIND_TRIES = 4                      -- at most this many such waits per call
M.PACE_MARGIN = 0.05                   -- seconds added to pacing waits (arrival jitter)

-- Monotonic seconds (the C core's CLOCK_MONOTONIC), os.time() without it.
local now
do
  local ok, core = pcall(require, "misskey.core")
  now = ok and core.now or os.time
end
M._now = function() return now() end
-- Waits through the scheduler; replaceable for specs of the policy itself.
M._sleep = function(seconds) loop.sleep(seconds) end

---------------------------------------------------------------------------
-- the endpoint catalogue

local generated -- false once `require "misskey.endpoints"` is known to fail

--- The catalogue a client uses: `client._catalogue` when set (a server's own
-- schema, or a spec's), else the generated `misskey.endpoints` (loaded on first
-- use), else nil: every endpoint is then unknown.
function M.catalogue(client)
  if client._catalogue ~= nil then return client._catalogue end
  if generated == nil then
    local ok, mod = pcall(require, "misskey.endpoints")
    if ok and type(mod) == "table" then
      generated = mod
    elseif not ok and not tostring(mod):find("module 'misskey.endpoints' not found", 1, true) then
      error(mod, 0) -- a broken generated file must not pass silently
    else
      generated = false
    end
  end
  return generated or nil
end

--- The catalogue entry of `endpoint`, or nil when it is unknown.
function M.entry(client, endpoint)
  local cat = M.catalogue(client)
  local eps = cat and cat.endpoints
  return type(eps) == "table" and eps[endpoint] or nil
end

---------------------------------------------------------------------------
-- options

local function opterror(prefix, name, what, level)
  error(("%s'%s' (%s)"):format(prefix, name, what), level + 1)
end

-- Checks ratelimit/max_wait/retries in `opts`; `prefix` starts the message
-- ("bad option " for misskey.new, "bad argument #3 to 'request' (option " ...).
function M.check(opts, prefix, suffix, level)
  local mode, max_wait, retries = opts.ratelimit, opts.max_wait, opts.retries
  level = level + 1
  suffix = suffix or ""
  if mode ~= nil and not M.MODES[mode] then
    opterror(prefix, "ratelimit", 'expected "wait", "throw" or "pace", got ' .. tostring(mode) .. suffix, level)
  end
  if max_wait ~= nil and (type(max_wait) ~= "number" or max_wait ~= max_wait or max_wait < 0) then
    opterror(prefix, "max_wait", "a number of seconds >= 0 expected, got " .. tostring(max_wait) .. suffix, level)
  end
  if retries ~= nil and (type(retries) ~= "number" or retries < 0 or retries % 1 ~= 0 or retries == math.huge) then
    opterror(prefix, "retries", "an integer >= 0 expected, got " .. tostring(retries) .. suffix, level)
  end
  if opts.idempotent ~= nil and type(opts.idempotent) ~= "boolean" then
    opterror(prefix, "idempotent", "boolean expected, got " .. type(opts.idempotent) .. suffix, level)
  end
end

---------------------------------------------------------------------------
-- backoff and classification

--- Jittered exponential backoff: the n-th wait (n >= 1) is uniform in
-- [d/2, d] with d = min(cap, base * 2^(n-1)).
function M.backoff(base, cap, n)
  local d = math.min(cap, base * 2 ^ (n - 1))
  return d / 2 + math.random() * d / 2
end

--- May a failed call be sent again (if it is safe to repeat)?
function M.retryable(err)
  if type(err) ~= "table" then return false end
  local kind, status = err.kind, err.status
  if kind == "network" or kind == "timeout" then
    -- A body over max_size is a fact of the reply, not a hiccup.
    return err.reason ~= "too_large"
  end
  if (kind == "http" or kind == "api") and type(status) == "number" then
    return status >= 500 and status <= 599 and err.reason ~= "too_large"
  end
  return false
end

local function header_number(headers, name)
  local v = headers and headers[name]
  v = v and tonumber(v)
  if v and v == v and v >= 0 and v < math.huge then return v end
  return nil
end

---------------------------------------------------------------------------
-- pacing

-- Per client, per endpoint: { sent = { monotonic times }, blocked_until = t }.
local function pace_state(client, endpoint)
  local all = client._pace
  if not all then
    all = {}
    client._pace = all
  end
  local st = all[endpoint]
  if not st then
    st = { sent = {}, first = 1, last = 0 } -- sent[first..last]: the sends still in the window
    all[endpoint] = st
  end
  return st
end

-- Seconds to wait before the next call of this endpoint may go (0: now).
local function pace_delay(st, limit, t)
  local wait = 0
  if st.blocked_until and st.blocked_until > t then wait = st.blocked_until - t end
  if type(limit) == "table" then
    local sent = st.sent
    local min_interval = tonumber(limit.min_interval)
    if min_interval and min_interval > 0 and st.last >= st.first then
      local due = sent[st.last] + min_interval / 1000 + M.PACE_MARGIN
      if due - t > wait then wait = due - t end
    end
    local duration, max = tonumber(limit.duration), tonumber(limit.max)
    if duration and max and duration > 0 and max >= 1 then
      local window = duration / 1000
      -- Forget sends that left the window.
      -- (Keep the last one for min_interval.)
      while st.first < st.last and sent[st.first] + window + M.PACE_MARGIN <= t do
        sent[st.first] = nil
        st.first = st.first + 1
      end
      local inside = st.last - st.first + 1
      if inside >= max then
        -- The oldest send that must leave the window before this one may go.
        local due = sent[st.last - max + 1] + window + M.PACE_MARGIN
        if due - t > wait then wait = due - t end
      end
    end
  end
  return wait
end

-- Waits until a call of `endpoint` fits its limit, then records it as sent.
-- Re-checks after each sleep: other tasks may have gone first.
local function pace(client, endpoint, entry)
  local st = pace_state(client, endpoint)
  local limit = entry and entry.limit
  while true do
    local t = M._now()
    local wait = pace_delay(st, limit, t)
    if wait <= 0 then
      -- Keep the list compact: rebase it once the forgotten prefix is long.
      if st.first > 64 then
        local sent, moved = st.sent, {}
        for i = st.first, st.last do moved[#moved + 1] = sent[i] end
        st.sent, st.first, st.last = moved, 1, #moved
      end
      st.last = st.last + 1
      st.sent[st.last] = t
      return
    end
    M._sleep(wait)
  end
end

-- Sharkey's headers after a reply: when Remaining reaches 0, hold the next
-- call until Reset (or, without it, Clear) has passed.
local function note_headers(client, endpoint, headers)
  if not headers then return end
  local remaining = header_number(headers, "x-ratelimit-remaining")
  if remaining == nil or remaining > 0 then return end
  local wait = header_number(headers, "x-ratelimit-reset") or header_number(headers, "x-ratelimit-clear")
  if wait then
    local st = pace_state(client, endpoint)
    local t = M._now() + wait + M.PACE_MARGIN
    if not st.blocked_until or st.blocked_until < t then st.blocked_until = t end
  end
end

---------------------------------------------------------------------------
-- the loop

--- Runs `attempt()` under the client's policy. `attempt()` returns
-- `reply, value` on success and `reply|nil, nil, message, err` on failure
-- (reply: the transport's response, whose `headers` are read only when needed;
-- nil when no reply came).
-- `opts`: the call's options (ratelimit, max_wait, retries, idempotent).
function M.run(client, endpoint, opts, attempt, a1, a2, a3, a4)
  local mode = opts.ratelimit or client._ratelimit or M.DEFAULT_MODE
  local max_wait = opts.max_wait or client._max_wait or M.DEFAULT_MAX_WAIT
  local retries = opts.retries or client._retries or M.DEFAULT_RETRIES
  local entry = M.entry(client, endpoint)
  local safe = opts.idempotent
  if safe == nil then safe = type(entry) == "table" and entry.write == false end
  local failures, blind, waited = 0, 0, 0
  while true do
    if mode == "pace" then pace(client, endpoint, entry) end
    local reply, value, msg, err = attempt(client, endpoint, a1, a2, a3, a4)
    if mode == "pace" then note_headers(client, endpoint, reply and reply.headers) end
    if value ~= nil then return value end
    if type(err) == "table" and err.status == 429 then
      if mode == "throw" then return nil, msg, err end
      -- Sharkey's X-RateLimit-Reset is fractional: more precise than Retry-After.
      local wait = header_number(reply and reply.headers, "x-ratelimit-reset") or err.retry_after
      if wait == nil then
        blind = blind + 1
        if blind > M.BLIND_TRIES then return nil, msg, err end
        wait = M.backoff(M.BLIND_BASE, M.BLIND_CAP, blind)
      end
      if waited + wait > max_wait then return nil, msg, err end
      waited = waited + wait
      if mode == "pace" then
        local st = pace_state(client, endpoint)
        local t = M._now() + wait
        if not st.blocked_until or st.blocked_until < t then st.blocked_until = t end
      else
        M._sleep(wait)
      end
    elseif safe and failures < retries and M.retryable(err) then
      failures = failures + 1
      M._sleep(M.backoff(M.RETRY_BASE, M.RETRY_CAP, failures))
    else
      return nil, msg, err
    end
  end
end

return M
