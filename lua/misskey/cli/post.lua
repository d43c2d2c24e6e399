--- misskey.cli.post: `misskey post` and `misskey upload` (with a progress
-- bar on a terminal). Part of misskey.cli.
local json = require "misskey.json"
local common = require "misskey.cli.common"

local usage, failure, out = common.usage, common.failure, common.out
local guarded, client_for, need_token = common.guarded, common.client_for, common.need_token

local commands = {}

local function upload(client, path, fields)
  local progress, done = common.progress_bar(path:match("[^/]*$"))
  local file, msg = guarded(client.upload, client, path, fields, { progress = progress })
  done()
  if not file then failure(msg) end
  return file
end

local VISIBILITY = { public = true, home = true, followers = true, specified = true }

local function post_command(opts, args)
  if #args ~= 1 then usage("misskey post: exactly one TEXT expected (quote it)") end
  if opts.visibility and not VISIBILITY[opts.visibility] then
    usage("misskey post: --visibility must be public, home, followers or specified")
  end
  local client = client_for("post", opts)
  need_token("post", client)
  local params = { text = args[1], cw = opts.cw, visibility = opts.visibility }
  if opts.file then
    local file = upload(client, opts.file)
    params.fileIds = { file.id }
  end
  local res, msg = guarded(client.request, client, "notes/create", params)
  if not res then failure(msg) end
  local created = type(res) == "table" and res.createdNote
  if type(created) ~= "table" or type(created.id) ~= "string" then
    failure("misskey post: the server's reply has no createdNote")
  end
  out(created.id .. "  " .. client.base_url .. "/notes/" .. created.id)
  return 0
end

local function upload_command(opts, args)
  if #args ~= 1 then usage("misskey upload: exactly one PATH expected") end
  local client = client_for("upload", opts)
  need_token("upload", client)
  local fields = { name = opts.name, comment = opts.comment }
  if opts.sensitive then fields.isSensitive = true end
  local file = upload(client, args[1], fields)
  out(("%s  %s  %s bytes"):format(tostring(file.id), tostring(file.name ~= json.null and file.name or "-"),
    tostring(file.size)))
  return 0
end

commands.post = {
  run = post_command,
  options = { host = 1, account = 1, file = 1, cw = 1, visibility = 1, ["allow-plaintext-token"] = 0 },
  help = [[
usage: misskey post TEXT [--file PATH] [--cw TEXT] [--visibility V]
                    [--host HOST] [--account ACCOUNT]

Posts a note and prints its id and address.
  --file PATH     upload PATH to the drive first and attach it
  --cw TEXT       content warning (the TEXT is hidden behind it)
  --visibility V  public (default), home, followers or specified]],
}
commands.upload = {
  run = upload_command,
  options = { host = 1, account = 1, name = 1, comment = 1, sensitive = 0, ["allow-plaintext-token"] = 0 },
  help = [[
usage: misskey upload PATH [--name NAME] [--comment TEXT] [--sensitive]
                      [--host HOST] [--account ACCOUNT]

Uploads PATH to the drive (drive/files/create) and prints the file's id, name
and size. A progress bar goes to stderr when stderr is a terminal.]],
}

return commands
