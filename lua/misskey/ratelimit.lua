--- Rate limits and retries around the client's one request path.
--
-- A client keeps a policy (`ratelimit.policy(opts)`: its mode, max_wait,
-- retries, and the pacing state of each endpoint). `ratelimit.run(policy,
-- client, endpoint, opts, entry, attempt, a1, a2, a3, a4)` calls
-- `attempt(client, endpoint, a1, a2, a3, a4)` (one request on the wire; the
-- arguments spare the caller a closure per call; `entry` is the endpoint's
-- catalogue entry, or nil, or a function `entry(client, endpoint)` that gives
-- it, called only when the policy needs it: a call that succeeds at once
-- without pacing never loads a catalogue) until it succeeds or the policy gives up:
--   * a 429 is waited out (mode "wait" and "pace") while the real time since the
--     call's first 429 plus the next wait fits in `max_wait`, at most
--     MAX_429_RETRIES times, each wait at least MIN_WAIT; or returned at once
--     (mode "throw"). How long to wait: `ratelimit.hint` (the reply's headers
--     and Misskey's info.resetMs), else the catalogue's window for the endpoint,
--     else a capped exponential backoff;
--   * network errors, timeouts and 5xx replies are retried with jittered
--     exponential backoff, only for calls that are safe to repeat (the
--     catalogue says `write = false`, or the call says `idempotent = true`);
--   * mode "pace" also spaces the calls of each endpoint by the catalogue's
--     limit, and by Sharkey's X-RateLimit-* headers, before the server complains.
-- Every wait goes through misskey.loop.sleep: it yields in a task and blocks
-- in a plain script. With an `on_event` observer, every retry and wait is
-- reported through client:emit, and every attempt too when the caller wraps
-- it with `ratelimit.observing`.
local loop = require "misskey.loop"

local M = {}

M.MODES = { wait = true, throw = true, pace = true }
M.DEFAULT_MODE = "wait"
M.DEFAULT_MAX_WAIT = 60 -- seconds
M.DEFAULT_RETRIES = 2
M.RETRY_BASE, M.RETRY_CAP = 0.2, 5     -- seconds: retries of network errors and 5xx
M.BLIND_BASE, M.BLIND_CAP = 1, 30      -- seconds: a 429 that says nothing, for an endpoint the catalogue
                                       -- has no limit for
M.MIN_WAIT = 0.25                      -- seconds: the least any 429 wait lasts (Retry-After: 0, a past resetMs)
M.MAX_429_RETRIES = 16                 -- 429s one call waits out at most
M.PACE_MARGIN = 0.05                   -- seconds added to pacing waits (arrival jitter)

-- Monotonic seconds (the C core's CLOCK_MONOTONIC); replaceable for specs of the policy itself.
local now = require("misskey.core").now
M._now = function() return now() end
-- Waits through the scheduler; replaceable for specs of the policy itself.
M._sleep = function(seconds) loop.sleep(seconds) end

-- ------------------------------------------------------------------------
-- options

--- What is wrong with the ratelimit, max_wait, retries or idempotent option
-- of `opts`: `name, why`, or nil. The caller raises in its own words (an
-- option of misskey.new, or of one call).
---@param opts table
---@return string|nil name
---@return string|nil why
function M.problem(opts)
  local mode, max_wait, retries = opts.ratelimit, opts.max_wait, opts.retries
  if mode ~= nil and not M.MODES[mode] then
    return "ratelimit", 'expected "wait", "throw" or "pace", got ' .. tostring(mode)
  end
  if max_wait ~= nil and (type(max_wait) ~= "number" or max_wait ~= max_wait or max_wait < 0) then
    return "max_wait", "a number of seconds >= 0 expected, got " .. tostring(max_wait)
  end
  if retries ~= nil and (type(retries) ~= "number" or retries < 0 or retries % 1 ~= 0 or retries == math.huge) then
    return "retries", "an integer >= 0 expected, got " .. tostring(retries)
  end
  if opts.idempotent ~= nil and type(opts.idempotent) ~= "boolean" then
    return "idempotent", "boolean expected, got " .. type(opts.idempotent)
  end
end

--- ratelimit.policy(opts) -> a client's policy, from its options (checked
-- first with ratelimit.problem): the mode, max_wait and retries of its calls
-- (a call's own options win), and per endpoint the pacing state.
---@param opts table misskey.new's options
---@return table
function M.policy(opts)
  return {
    mode = opts.ratelimit or M.DEFAULT_MODE,
    max_wait = opts.max_wait or M.DEFAULT_MAX_WAIT,
    retries = opts.retries or M.DEFAULT_RETRIES,
    pace = {}, -- endpoint -> { sent = { monotonic times }, first, last, blocked_until }
  }
end

-- ------------------------------------------------------------------------
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

-- A header of plain decimal seconds ("12", "0.755"), or nil: no sign, no hex,
-- no exponent, nothing a hostile server could make infinite.
local function header_number(headers, name)
  local v = headers and headers[name]
  if type(v) ~= "string" or #v > 32 then return nil end
  v = v:match("^%s*(%d+%.?%d*)%s*$")
  return v and tonumber(v)
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10,
  Nov = 11, Dec = 12 }

-- An HTTP date (IMF-fixdate, "Sun, 06 Dec 2026 01:09:53 GMT") as Unix seconds, or nil.
-- Computed here, not with os.time, which reads a table as local time.
local function http_date(text)
  if type(text) ~= "string" then return nil end
  local d, mon, y, h, mi, sec = text:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  local m = MONTHS[mon]
  if not m then return nil end
  y, d = tonumber(y), tonumber(d)
  -- Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (years counted from March).
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end
M._http_date = http_date

-- The server's clock (its Date header), else ours: both whole seconds.
local function server_time(headers)
  return http_date(headers and headers.date) or os.time()
end

--- How long a 429 asks the client to wait, from what the reply says:
-- `seconds, rule`, or nil when it says nothing. `headers` has lower-case names;
-- `info` is Misskey's `error.info`. In order:
--   * Sharkey's fractional `X-RateLimit-Reset` (seconds; one Sharkey release sent
--     milliseconds there: a value past `Retry-After` is read as milliseconds if
--     that fits, and `Retry-After` wins otherwise; an epoch time, as some proxies
--     send, is read against the Date header) -> "x-ratelimit-reset";
--   * `Retry-After`, seconds or an HTTP date (against the Date header) -> "retry-after";
--   * Misskey's `info.resetMs`, against the server's Date header (else the local
--     clock) -> "resetMs".
-- Never negative; a hint in the past is 0 (run puts MIN_WAIT under it).
---@param headers table?
---@param info table?
---@return number? seconds
---@return string? rule
function M.hint(headers, info)
  local retry = header_number(headers, "retry-after")
  if retry == nil and headers and headers["retry-after"] then
    local at = http_date(headers["retry-after"])
    if at then retry = math.max(0, at - server_time(headers)) end
  end
  local reset = header_number(headers, "x-ratelimit-reset")
  if reset then
    if retry and reset > retry + 1 then
      if reset / 1000 <= retry + 1 then return reset / 1000, "x-ratelimit-reset" end
    elseif reset > 1e9 then
      return math.max(0, reset - server_time(headers)), "x-ratelimit-reset"
    else
      return reset, "x-ratelimit-reset"
    end
  end
  if retry then return retry, "retry-after" end
  local reset_ms = type(info) == "table" and info.resetMs
  if type(reset_ms) == "number" and reset_ms == reset_ms and reset_ms > -math.huge and reset_ms < math.huge then
    return math.max(0, reset_ms / 1000 - server_time(headers)), "resetMs"
  end
  return nil
end

-- ------------------------------------------------------------------------
-- pacing

-- Per policy (a client's), per endpoint: { sent = { monotonic times }, blocked_until = t }.
local function pace_state(policy, endpoint)
  local all = policy.pace
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
local function pace(policy, client, endpoint, entry, report)
  local st = pace_state(policy, endpoint)
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
    if report and client:observed() then
      client:emit{ type = "ratelimit_wait", endpoint = endpoint, wait = wait, rule = "pace" }
    end
    M._sleep(wait)
  end
end

-- Holds the endpoint's next call until `t` (monotonic), unless it is held longer already.
local function block_until(policy, endpoint, t)
  local st = pace_state(policy, endpoint)
  if not st.blocked_until or st.blocked_until < t then st.blocked_until = t end
end

-- Sharkey's headers after a reply: when Remaining reaches 0, hold the next call
-- until Reset (or, without it, Clear) has passed; never longer than `max_wait`,
-- so a header cannot stall the endpoint for good.
local function note_headers(policy, endpoint, headers, max_wait)
  if not headers then return end
  local remaining = header_number(headers, "x-ratelimit-remaining")
  if remaining == nil or remaining > 0 then return end
  local wait = M.hint(headers) or header_number(headers, "x-ratelimit-clear")
  if wait then
    block_until(policy, endpoint, M._now() + math.min(wait, max_wait) + M.PACE_MARGIN)
  end
end

-- A 429 that says nothing about when to come back, the n-th of its call: a
-- wait from the endpoint's limit in the catalogue (its min_interval, else its
-- window's share of one call, doubling up to the whole window), else a
-- jittered exponential backoff. Returns seconds and the rule.
local function blind_wait(entry, n)
  local limit = type(entry) == "table" and entry.limit
  if type(limit) == "table" then
    local duration, max = tonumber(limit.duration), tonumber(limit.max)
    local interval = tonumber(limit.min_interval)
    local window = duration and duration > 0 and duration / 1000 or nil
    local base = interval and interval > 0 and interval / 1000
      or window and max and max >= 1 and window / max or nil
    if base then
      return math.min(math.max(window or base, base), base * 2 ^ (n - 1)), "window"
    end
  end
  return M.backoff(M.BLIND_BASE, M.BLIND_CAP, n), "backoff"
end

--- `attempt`, reporting each call of it as a `request` event: what a caller of
-- run hands it when its client has an observer. A closure per call, so only
-- observed calls pay for it (run itself asks client:observed() only when it
-- waits or retries, never on a call that succeeds at once).
---@param attempt function
---@return function
function M.observing(attempt)
  local n = 0
  return function(client, endpoint, a1, a2, a3, a4)
    n = n + 1
    local t0 = M._now()
    local reply, value, msg, err = attempt(client, endpoint, a1, a2, a3, a4)
    local status = reply and reply.status
    if status == nil and type(err) == "table" then status = err.status end
    client:emit{
      type = "request", endpoint = endpoint, status = status, elapsed = M._now() - t0, attempt = n,
      ok = value ~= nil, kind = value == nil and type(err) == "table" and err.kind or nil,
    }
    return reply, value, msg, err
  end
end

-- ------------------------------------------------------------------------
-- the loop

--- Runs `attempt()` under the client's `policy`. `attempt()` returns
-- `reply, value` on success and `reply|nil, nil, message, err` on failure
-- (reply: the transport's response, whose `headers` are read only when needed;
-- nil when no reply came).
-- `opts`: the call's options (ratelimit, max_wait, retries, idempotent);
-- `entry`: the endpoint's catalogue entry (nil: unknown, so no pacing and no retries),
-- or a function `entry(client, endpoint)` giving it, asked only when needed.
function M.run(policy, client, endpoint, opts, entry, attempt, a1, a2, a3, a4)
  local mode = opts.ratelimit or policy.mode
  local max_wait = opts.max_wait or policy.max_wait
  local retries = opts.retries or policy.retries
  if mode == "pace" and type(entry) == "function" then entry = entry(client, endpoint) end
  local safe = opts.idempotent
  local failures, limited, blind, first_429 = 0, 0, 0, nil
  local announced = false -- a 429's wait was reported already: pace() need not report it again
  while true do
    if mode == "pace" then
      pace(policy, client, endpoint, entry, not announced)
      announced = false
    end
    local reply, value, msg, err = attempt(client, endpoint, a1, a2, a3, a4)
    if mode == "pace" then note_headers(policy, endpoint, reply and reply.headers, max_wait) end
    if value ~= nil then return value end
    if type(entry) == "function" then entry = entry(client, endpoint) end
    if safe == nil then safe = type(entry) == "table" and entry.write == false end
    if type(err) == "table" and err.status == 429 then
      if mode == "throw" then return nil, msg, err end
      local t = M._now()
      first_429 = first_429 or t
      limited = limited + 1
      if limited > M.MAX_429_RETRIES then return nil, msg, err end
      local wait, rule = M.hint(reply and reply.headers, err.info)
      local guessed = wait == nil
      if guessed then
        blind = blind + 1
        wait, rule = blind_wait(entry, blind)
      end
      if wait < M.MIN_WAIT then wait = M.MIN_WAIT end
      -- Real time, not the sum of the waits: a zero wait must use up the budget too.
      local left = max_wait - (t - first_429)
      if wait > left then
        -- The server's own figure is too long: say so at once. A guess is cut to what is left.
        if not guessed or left < M.MIN_WAIT then return nil, msg, err end
        wait = left
      end
      if client:observed() then
        client:emit{ type = "ratelimit_wait", endpoint = endpoint, attempt = failures + limited, wait = wait,
          rule = rule, status = 429, waited = t - first_429 }
      end
      if mode == "pace" then
        block_until(policy, endpoint, t + wait) -- the next pace() waits, and so do the endpoint's other calls
        announced = true
      else
        M._sleep(wait)
      end
    elseif safe and failures < retries and M.retryable(err) then
      failures = failures + 1
      local delay = M.backoff(M.RETRY_BASE, M.RETRY_CAP, failures)
      if client:observed() then
        client:emit{ type = "retry", endpoint = endpoint, attempt = failures + limited, delay = delay, retry = failures,
          kind = err.kind, status = err.status }
      end
      M._sleep(delay)
    else
      return nil, msg, err
    end
  end
end

return M
