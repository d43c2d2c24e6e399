std = "min"
max_line_length = 120
files["spec"] = { std = "+busted" }
files["bench"] = { std = "max" }
exclude_files = { "build/", "lua/misskey/endpoints.lua" }
