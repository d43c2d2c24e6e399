--- misskey.argcheck: how misuse raises. One wording for "bad argument",
-- "bad option" and "bad self" errors, one rule for the level they blame, and
-- the checks that many functions share (seconds, counts).
--
-- Levels: `level` is how many calls lie between the public function and the
-- raise (1, the default: the public function calls argerror itself; 2: it
-- calls a helper that calls argerror; ...). The error then names the line of
-- the public function's caller, whatever the depth of the check.
local argcheck = {}

local error, format, tostring, type = error, string.format, tostring, type
local FINITE = 1.7976931348623157e308 -- the largest double below infinity

--- The most seconds a timeout given to libcurl may be: beyond this it means
-- nothing more, and math.huge or 1e300 would overflow the integer casts in C
-- (a week and a half of seconds).
argcheck.MAX_SECONDS = 1e6
--- The largest byte count: every integer a double holds exactly (2^53, written
-- out: `2 ^ 53` is folded at load by libm's pow, which alone makes ~200 KiB of
-- libm resident in a process that never uses it).
argcheck.MAX_BYTES = 9007199254740992.0

--- Raises "bad argument #n to 'fname' (what)".
---@param n integer
---@param fname string
---@param what string
---@param level? integer
function argcheck.argerror(n, fname, what, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, what), (level or 1) + 2)
end

--- Raises "bad option 'name' (what)", or "bad option 'name' to 'fname' (what)"
-- for a function whose options table is not its only argument.
---@param name any
---@param what string
---@param level? integer
---@param fname? string
function argcheck.opterror(name, what, level, fname)
  local to = fname and format(" to '%s'", fname) or ""
  error(format("bad option '%s'%s (%s)", tostring(name), to, what), (level or 1) + 2)
end

--- Raises "bad self to 'fname' (call it as label:fname(...))" unless `self`
-- has the metatable `class` (a method called with `.` instead of `:`).
---@param self any
---@param class table
---@param label string "client", "stream", ...
---@param fname string
---@param level? integer
function argcheck.self(self, class, label, fname, level)
  if getmetatable(self) ~= class then
    error(format("bad self to '%s' (call it as %s:%s(...))", fname, label, fname), (level or 1) + 2)
  end
end

--- Raises "bad option 'k' (unknown option)" for the first key of `opts` not in `known`.
---@param opts table
---@param known table<string, any>
---@param level? integer
function argcheck.known_options(opts, known, level)
  for k in pairs(opts) do
    if not known[k] then argcheck.opterror(k, "unknown option", (level or 1) + 1) end
  end
end

--- What is wrong with `v` as a number of seconds > 0, or nil. `max`: the
-- most it may be (default: any finite number; math.huge lets infinity through,
-- for a C function that clamps).
---@param v any
---@param max? number
---@return string|nil
function argcheck.seconds_problem(v, max)
  if type(v) ~= "number" or v ~= v or v <= 0 or v > (max or FINITE) then
    if max and max < FINITE then
      return format("a number of seconds > 0 and <= %d expected, got %s", max, tostring(v))
    end
    return "a number of seconds > 0 expected, got " .. tostring(v)
  end
end

--- What is wrong with `v` as a number of seconds >= 0 (a wait that may be zero), or nil.
---@param v any
---@return string|nil
function argcheck.wait_problem(v)
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
    return "a number of seconds >= 0 expected, got " .. tostring(v)
  end
end

--- What is wrong with `v` as a whole number from 1 to `max`, or nil.
---@param v any
---@param max number
---@return string|nil
function argcheck.count_problem(v, max)
  if type(v) ~= "number" or v ~= v or v < 1 or v % 1 ~= 0 or v > max then
    return format("an integer from 1 to %s expected, got %s", max == argcheck.MAX_BYTES and "2^53" or format("%d", max),
      tostring(v))
  end
end

--- Raises "bad option 'name' (why)" when `opts[name]` is set and not seconds > 0 (at most `max`).
---@param opts table
---@param name string
---@param max? number
---@param level? integer
function argcheck.seconds_option(opts, name, max, level)
  local v = opts[name]
  local why = v ~= nil and argcheck.seconds_problem(v, max)
  if why then argcheck.opterror(name, why, (level or 1) + 1) end
  return v
end

--- Raises "bad option 'name' (why)" when `opts[name]` is set and not seconds >= 0.
---@param opts table
---@param name string
---@param level? integer
function argcheck.wait_option(opts, name, level)
  local v = opts[name]
  local why = v ~= nil and argcheck.wait_problem(v)
  if why then argcheck.opterror(name, why, (level or 1) + 1) end
  return v
end

return argcheck
