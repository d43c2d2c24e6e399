--- client.api: endpoints by name, through the client's catalogue.
--
--   client.api.notes.create{ text = "hi" }          -- client:request("notes/create", { text = "hi" })
--   client.api.i.registry["get-all"]{}               -- hyphens through brackets
--   client.api("i/registry/get-all", params, opts)   -- the name as a string
--
-- Indexing a prefix that starts no endpoint name raises, and so does calling
-- a name that is not an endpoint, with "did you mean" suggestions. The names
-- are the client's active catalogue: the bundled one, or the server's after
-- client:schema().
local catalogue = require "misskey.catalogue"

local Node = { __name = "misskey.api" }

-- A node's state lives under a key no endpoint name can be.
local STATE = {}

-- `cat`: the client's catalogue when the root was made (nil: the bundled one);
-- a client that changes catalogue gets a new root.
local function node(client, cat, prefix)
  return setmetatable({ [STATE] = { client = client, cat = cat, prefix = prefix, children = {} } }, Node)
end

local function unknown(cat, name, level)
  local msg = catalogue.unknown_message(name, cat)
  error("client.api: " .. msg, level + 1)
end

Node.__index = function(self, key)
  local st = rawget(self, STATE)
  if type(key) ~= "string" then
    error("client.api: endpoint name segments are strings, got " .. type(key), 2)
  end
  local name = st.prefix == "" and key or (st.prefix .. "/" .. key)
  if not catalogue.is_prefix(name, st.cat) then unknown(st.cat, name, 2) end
  local child = st.children[key]
  if not child then
    child = node(st.client, st.cat, name)
    st.children[key] = child
  end
  return child
end

Node.__newindex = function()
  error("client.api is read-only", 2)
end

Node.__call = function(self, a, b, c)
  local st = rawget(self, STATE)
  local client = st.client
  local name, params, opts
  if st.prefix == "" then
    -- client.api(name, params, opts)
    name, params, opts = a, b, c
    if type(name) ~= "string" then
      error("bad argument #1 to 'client.api' (endpoint name expected, got " .. type(name) .. ")", 2)
    end
  else
    -- client.api.notes.create{...}; tolerate client.api.notes:create{...} (the parent node first).
    if getmetatable(a) == Node then a, b = b, c end
    name, params, opts = st.prefix, a, b
  end
  if not catalogue.lookup(name, st.cat) then unknown(st.cat, name, 2) end
  return client:request(name, params, opts)
end

Node.__tostring = function(self)
  local p = rawget(self, STATE).prefix
  return p == "" and "misskey.api" or ("misskey.api." .. p:gsub("/", "."))
end

local api = {}

--- A fresh root node for `client`, naming the endpoints of `cat` (the client's
-- catalogue; nil: the bundled one). Child nodes are cached in it, so a client
-- whose catalogue changes gets a new root (client:use_catalogue).
---@param client table
---@param cat table|nil
function api.new(client, cat)
  return node(client, cat, "")
end

return api
