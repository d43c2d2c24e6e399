--- misskey.testing.endpoints.drive: drive/files/create (multipart) and fake:files.
local common = require "misskey.testing.common"
local Fake = require "misskey.testing.fake"

local ipairs = ipairs
local trim = common.trim

local endpoints = {}

local MIME = { png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", webp = "image/webp",
               txt = "text/plain", json = "application/json" }

endpoints["drive/files/create"] = {
  credential = true,
  multipart = true,
  errors = {
    FILE_REQUIRED = { id = "4267801e-70d1-416a-b011-4ee502885d8b", message = "File required." },
  },
  handler = function(self, ps, ctx)
    if not ps.file then return nil, "FILE_REQUIRED" end
    local name = ps.name or ps.file.filename
    if name == nil or name == "blob" or trim(name) == "" then name = "untitled" end
    local ext = name:match("%.(%w+)$")
    self._clock = self._clock + 1
    local file = {
      id = self:_gen_id(), createdAt = self._clock, name = name, size = ps.file.size, userId = ctx.user.id,
      type = ps.file.type or MIME[ext and ext:lower() or ""] or "application/octet-stream",
      isSensitive = ps.isSensitive == "true", comment = ps.comment, data = ps.file.data,
    }
    self._files[file.id] = file
    self._file_order[#self._file_order + 1] = file.id
    return self:_pack_file(file)
  end,
}

--- fake:files{ user = } -> the drive files on the server, oldest first, as DriveFile objects.
---@param filter? { user?: string }
---@return misskey.DriveFile[]
function Fake:files(filter)
  filter = filter or {}
  local out = {}
  for _, id in ipairs(self._file_order) do
    local f = self._files[id]
    if f and (filter.user == nil or self._by_id[f.userId].username:lower() == filter.user:gsub("^@", ""):lower()) then
      out[#out + 1] = self:_pack_file(f)
    end
  end
  return out
end

return endpoints
