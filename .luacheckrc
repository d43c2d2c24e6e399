std = "min"
max_line_length = 120
-- LuaLS annotations (---@field name fun(...): ...) cannot be wrapped: a type is one line.
max_comment_line_length = false
files["spec"] = { std = "+busted" }
files["bench"] = { std = "max" }
-- The application the nginx specs run: ngx_lua's `ngx` is its host's API.
files["spec/nginx"] = { std = "+busted", globals = { "ngx" } }
files["examples/openresty"] = { globals = { "ngx" } }
exclude_files = { "build/", "lua/misskey/endpoints.lua" }
