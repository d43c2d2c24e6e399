-- require("misskey").webhook is misskey.webhook, loaded on first use: a script
-- that never touches it does not load it (checked in a child interpreter,
-- whose package.loaded no other spec has filled).
local runner = require "support.cli"
local server = require "support.server"

describe("require('misskey').webhook", function()
  it("is misskey.webhook, loaded only when first read", function()
    local code = [[
      local misskey = require "misskey"
      io.write(tostring(package.loaded["misskey.webhook"]), " ")
      local w = misskey.webhook
      io.write(tostring(w == require("misskey.webhook")), " ", type(w.handler), " ", type(w.listen), " ")
      io.write(tostring(rawget(misskey, "webhook") == w), " ", tostring(misskey.no_such_field), "\n")
    ]]
    -- The plain build, as support.cli's children: under `make asan` the sanitized one needs a preload.
    local prelude = ("package.path = %q; package.cpath = %q\n"):format(package.path,
      "./build/" .. runner.version .. "/?.so;" .. package.cpath)
    local h = assert(io.popen("env -u LD_PRELOAD " .. runner.interpreter .. " -e "
      .. server.shell_quote(prelude .. code) .. " 2>&1"))
    local out = h:read("*a")
    h:close()
    assert.equal("nil true function function true nil\n", out)
  end)
end)
