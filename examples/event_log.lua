-- Logs what a client does as JSON Lines on stderr, through the `on_event`
-- option: one line per request on the wire, retry and rate-limit wait (and,
-- for a stream, per reconnect and backfill). A log shipper, `jq` or a counter
-- can read them; no line ever holds the token.
--
--   lua examples/event_log.lua 2>events.jsonl
--   jq -r 'select(.type == "request") | [.endpoint, .status, .elapsed] | @tsv' events.jsonl
--
-- Runs against MISSKEY_HOST with MISSKEY_TOKEN when both are set; otherwise
-- against misskey.testing's fake, which is told to answer one 429 so a wait
-- shows up in the log. Prints a count of the events by type on stdout.
local misskey = require "misskey"
local json = require "misskey.json"
local testing = require "misskey.testing"

local counts = {}

-- One JSON object per line. Every event has type, host and time (monotonic
-- seconds); the rest depends on the type (README "Observability").
local function log_event(event)
  counts[event.type] = (counts[event.type] or 0) + 1
  event.utc = os.date("!%Y-%m-%dT%H:%M:%SZ") -- wall-clock time for people; `time` is for intervals
  io.stderr:write(json.encode(event), "\n")
end

local client, fake, which = testing.demo_client{ on_event = log_event, timeout = 30 }
print(which)
if fake then
  fake:limit("notes/timeline", 1, 1) -- the next call is refused once: Retry-After: 1
end

local meta = assert(client:request("meta", { detail = false }))
print(("server: %s"):format(meta.name ~= misskey.null and meta.name or client.host))

local timeline = assert(client:request("notes/timeline", { limit = 5 }))
print(("home timeline: %d notes"):format(#timeline))

local results, errs = client:batch({
  { "i" }, { "notes/timeline", { limit = 1 } },
}, { concurrency = 2 })
assert(next(errs) == nil, "a batch call failed")
print(("batch: %d results"):format(results.n))

local names = {}
for name in pairs(counts) do names[#names + 1] = name end
table.sort(names)
local parts = {}
for _, name in ipairs(names) do parts[#parts + 1] = ("%s=%d"):format(name, counts[name]) end
print("events: " .. table.concat(parts, " "))
