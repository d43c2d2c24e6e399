rockspec_format = "3.0"
package = "misskey"
version = "scm-1"
source = {
  url = "git+https://example.invalid/misskey.git",
}
description = {
  summary = "Misskey API client for Lua with a C core (libcurl)",
  detailed = [[
    Calls any of Misskey's API endpoints from Lua 5.1-5.4 and LuaJIT, with
    Misskey's error model, connection reuse and a pollable engine that any
    event loop can drive. HTTP goes through libcurl.
  ]],
  license = "MIT",
  labels = { "misskey", "fediverse", "api", "curl" },
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1.0",
}
external_dependencies = {
  CURL = { library = "curl" },
  UUID = { library = "uuid" },
}
build = {
  type = "builtin",
  modules = {
    ["misskey"] = "lua/misskey/init.lua",
    ["misskey.api"] = "lua/misskey/api.lua",
    ["misskey.auth"] = "lua/misskey/auth.lua",
    ["misskey.baseurl"] = "lua/misskey/baseurl.lua",
    ["misskey.batch"] = "lua/misskey/batch.lua",
    ["misskey.engine"] = "lua/misskey/engine.lua",
    ["misskey.loop"] = "lua/misskey/loop.lua",
    ["misskey.loop.copas"] = "lua/misskey/loop/copas.lua",
    ["misskey.loop.cqueues"] = "lua/misskey/loop/cqueues.lua",
    ["misskey.loop.luv"] = "lua/misskey/loop/luv.lua",
    ["misskey.cli"] = "lua/misskey/cli.lua",
    ["misskey.client"] = "lua/misskey/client.lua",
    ["misskey.credentials"] = "lua/misskey/credentials.lua",
    ["misskey.endpoints"] = "lua/misskey/endpoints.lua",
    ["misskey.errors"] = "lua/misskey/errors.lua",
    ["misskey.json"] = "lua/misskey/json.lua",
    ["misskey.openapi"] = "lua/misskey/openapi.lua",
    ["misskey.paginate"] = "lua/misskey/paginate.lua",
    ["misskey.ratelimit"] = "lua/misskey/ratelimit.lua",
    ["misskey.schema"] = "lua/misskey/schema.lua",
    ["misskey.validate"] = "lua/misskey/validate.lua",
    ["misskey.stream"] = "lua/misskey/stream.lua",
    ["misskey.id"] = "lua/misskey/id.lua",
    ["misskey.positions"] = "lua/misskey/positions.lua",
    ["misskey.taskset"] = "lua/misskey/taskset.lua",
    ["misskey.signals"] = "lua/misskey/signals.lua",
    ["misskey.bot"] = "lua/misskey/bot.lua",
    ["misskey.testing"] = "lua/misskey/testing/init.lua",
    ["misskey.testing.actor"] = "lua/misskey/testing/actor.lua",
    ["misskey.testing.audience"] = "lua/misskey/testing/audience.lua",
    ["misskey.testing.common"] = "lua/misskey/testing/common.lua",
    ["misskey.testing.events"] = "lua/misskey/testing/events.lua",
    ["misskey.testing.fake"] = "lua/misskey/testing/fake.lua",
    ["misskey.testing.http"] = "lua/misskey/testing/http.lua",
    ["misskey.testing.pack"] = "lua/misskey/testing/pack.lua",
    ["misskey.testing.params"] = "lua/misskey/testing/params.lua",
    ["misskey.testing.replies"] = "lua/misskey/testing/replies.lua",
    ["misskey.testing.socket"] = "lua/misskey/testing/socket.lua",
    ["misskey.testing.endpoints"] = "lua/misskey/testing/endpoints/init.lua",
    ["misskey.testing.endpoints.drive"] = "lua/misskey/testing/endpoints/drive.lua",
    ["misskey.testing.endpoints.following"] = "lua/misskey/testing/endpoints/following.lua",
    ["misskey.testing.endpoints.meta"] = "lua/misskey/testing/endpoints/meta.lua",
    ["misskey.testing.endpoints.notes"] = "lua/misskey/testing/endpoints/notes.lua",
    ["misskey.testing.endpoints.notifications"] = "lua/misskey/testing/endpoints/notifications.lua",
    ["misskey.testing.endpoints.reactions"] = "lua/misskey/testing/endpoints/reactions.lua",
    ["misskey.testing.endpoints.registry"] = "lua/misskey/testing/endpoints/registry.lua",
    ["misskey.testing.endpoints.timeline"] = "lua/misskey/testing/endpoints/timeline.lua",
    ["misskey.testing.endpoints.users"] = "lua/misskey/testing/endpoints/users.lua",
    ["misskey.types"] = "lua/misskey/types.lua",
    ["misskey.transport.curl"] = "lua/misskey/transport/curl.lua",
    ["misskey.transport.websocket"] = "lua/misskey/transport/websocket.lua",
    ["misskey.webhook"] = "lua/misskey/webhook/init.lua",
    ["misskey.webhook.event"] = "lua/misskey/webhook/event.lua",
    ["misskey.webhook.handler"] = "lua/misskey/webhook/handler.lua",
    ["misskey.webhook.listen"] = "lua/misskey/webhook/listen.lua",
    ["misskey.webhook.seen"] = "lua/misskey/webhook/seen.lua",
    ["misskey.webhook.verify"] = "lua/misskey/webhook/verify.lua",
    ["misskey.core"] = {
      sources = { "src/buf.c", "src/core.c", "src/engine.c", "src/http.c",
                  "src/file.c", "src/hash.c", "src/json.c", "src/listen.c", "src/lock.c", "src/miauth.c", "src/random.c",
                  "src/uuid.c", "src/ws.c", "src/wsframe.c", "src/signals.c", "src/wshandshake.c",
                  "src/server.c", "src/equal.c" },
      libraries = { "curl", "uuid" },
      incdirs = { "$(CURL_INCDIR)", "$(UUID_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(UUID_LIBDIR)" },
      defines = {},
    },
  },
  install = {
    bin = { misskey = "bin/misskey" },
  },
  -- The LuaLS annotations (README "Editor support"): copied whole into the rock's
  -- own directory, `luarocks show --rock-dir misskey`/types.
  copy_directories = { "types" },
}
test = {
  type = "command",
  command = "make test",
}
