-- misskey.testing is a package (lua/misskey/testing/, one concern a file):
-- `require "misskey.testing"` still gives every documented name.
local testing = require "misskey.testing"

describe("misskey.testing, the package", function()
  it("keeps the module's names", function()
    for _, name in ipairs{ "fake", "demo_client", "validate" } do
      assert.is_function(testing[name], name)
    end
    for _, name in ipairs{ "endpoints", "COMMON_ERRORS", "Fake", "Actor", "WebSocket" } do
      assert.is_table(testing[name], name)
    end
    assert.equal(testing.Fake, getmetatable(testing.fake()))
  end)

  it("gives a fake every documented method, whichever file defines it", function()
    local fake = testing.fake()
    for _, name in ipairs{ "client", "reset", "now", "advance", "limit", "user", "post", "as", "run_until_idle",
                           "notes", "files", "sockets", "drop_streams", "publish", "handle" } do
      assert.is_function(fake[name], name)
    end
    assert.is_function(fake.transport.request)
    assert.is_function(fake.transport.websocket)
    assert.matches("^misskey.testing.Fake %(https://fake.misskey.test%)$", tostring(fake))
    local actor = fake:as("alice")
    assert.equal(testing.Actor, getmetatable(actor))
    for _, name in ipairs{ "post", "reply", "follow", "unfollow", "react", "request" } do
      assert.is_function(actor[name], name)
    end
    local ws = assert(fake.transport.websocket{ url = "wss://fake.misskey.test/streaming?i=fake-token-me" })
    assert.equal(testing.WebSocket, getmetatable(ws))
  end)

  it("serves the endpoints of every area", function()
    local names = {}
    for name in pairs(testing.endpoints) do names[#names + 1] = name end
    table.sort(names)
    assert.same({ "drive/files/create", "following/create", "following/delete", "i", "i/notifications",
      "i/registry/get", "i/registry/set", "i/webhooks/create", "i/webhooks/delete", "i/webhooks/list",
      "i/webhooks/show", "i/webhooks/test", "i/webhooks/update", "meta", "notes/create", "notes/delete",
      "notes/reactions/create", "notes/show", "notes/timeline", "ping", "users/show" }, names)
    for _, name in ipairs(names) do
      assert.is_function(testing.endpoints[name].handler, name)
    end
  end)
end)
