-- A decimal-comma LC_NUMERIC for the specs that check JSON numbers ignore the host's locale.
local M = {}

-- Locales whose C formatting writes 0,5. Debian ships none by default; LOCPATH may point at one.
local CANDIDATES = { "de_DE.UTF-8", "de_DE.utf8", "de_DE", "fr_FR.UTF-8", "fr_FR.utf8", "nl_NL.UTF-8",
  "ru_RU.UTF-8", "es_ES.UTF-8", "it_IT.UTF-8", "pt_BR.UTF-8" }

M.MISSING = "no locale with a decimal comma on this machine (e.g. de_DE.UTF-8; LOCPATH may point at one)"

--- Runs fn(name) with LC_NUMERIC set to the first such locale found and puts the old one back,
-- even when fn raises (assertions run after, in the C locale busted expects). Returns the
-- locale's name, or nil when the machine has none.
function M.with_decimal_comma(fn)
  local saved = os.setlocale(nil, "numeric")
  for _, name in ipairs(CANDIDATES) do
    if os.setlocale(name, "numeric") then
      local ok, err = pcall(fn, name)
      os.setlocale(saved, "numeric")
      if not ok then error(err, 0) end
      return name
    end
  end
  return nil
end

return M
