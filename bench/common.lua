-- What the Lua benchmarks share: their arguments and the median of their runs.
--   local common = dofile(script_dir .. "/common.lua")
local common = {}

--- `URL [--name value ...]` into `defaults` (a copy): the URL without trailing '/' as
-- `url`, each `--some-name v` as `some_name = "v"` (strings: the caller converts numbers).
-- Prints `usage` and exits 2 without a URL.
function common.args(argv, defaults, usage)
  local opts = {}
  for k, v in pairs(defaults) do opts[k] = v end
  local i = 1
  while argv[i] do
    local a = argv[i]
    if a:sub(1, 2) == "--" then
      opts[(a:sub(3):gsub("-", "_"))] = argv[i + 1]
      i = i + 2
    else
      opts.url = a
      i = i + 1
    end
  end
  if not opts.url then
    io.stderr:write("usage: ", usage, "\n")
    os.exit(2)
  end
  opts.url = opts.url:gsub("/+$", "")
  return opts
end

--- The median of a list of numbers (the mean of the middle two for an even count), nil when empty.
function common.median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

return common
