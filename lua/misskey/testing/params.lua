--- misskey.testing.params: the fake's parameter schemas and their check.
--
-- Schemas are misskey.validate's (JSON Schema as Lua tables, `properties` an
-- ordered list of { name, schema }); the request body comes from
-- misskey.json.decode, so arrays are exactly the marked tables. An error is
-- reported as Misskey's ajv reports its first one: INVALID_PARAM's
-- info { param = schemaPath, reason }.
local validate = require "misskey.validate"

local params = {}

--- nil when `value` is valid, else ajv's schemaPath (from `root`, default "#") and reason.
---@param schema table
---@param value any
---@param root string?
---@return string? param
---@return string? reason
function params.check(schema, value, root)
  local f = validate.check(schema, value, { marked_arrays = true, root = root })
  if f then return f.schema_path, f.reason end
  return nil
end

params.ID = { type = "string", format = "misskey:id" }
params.NULLABLE_ID = { type = { "string", "null" }, format = "misskey:id" }
params.ID_LIST = { type = "array", uniqueItems = true, items = params.ID }
params.BOOLEAN = { type = "boolean" }

--- An object schema: `properties` as { { name, schema }, ... }, `required` names.
function params.object(properties, required)
  return { type = "object", properties = properties, required = required }
end

return params
