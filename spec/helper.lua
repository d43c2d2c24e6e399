-- Loaded by busted once before any spec file (see .busted). Event-loop
-- modules are loaded here, outside busted's per-file insulation: luv keeps its
-- loop in the registry, and a second luaopen after busted unloads it between
-- files would use the first (closed and freed) loop.
for _, name in ipairs{ "luv", "cqueues" } do pcall(require, name) end
