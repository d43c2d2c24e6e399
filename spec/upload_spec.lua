-- client:upload against the test server's streaming multipart drive/files/create:
-- field order, where the token goes, text booleans, file and in-memory content,
-- progress, and the memory a 256 MiB upload costs (it must stream from disk).
local misskey = require "misskey"
local new_client = require "support.client"
local server = require "support.server"
local leak = require "support.leak"

local TOKEN = "UpLoAdToKeN0123456789abcdefABCDE"

local srv, client, dir

local function new(opts)
  return new_client({ host = srv.url, token = TOKEN }, opts)
end

local function write_file(name, content)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "wb"))
  assert(f:write(content))
  f:close()
  return path
end

local function md5sum(path)
  local h = assert(io.popen("md5sum " .. server.shell_quote(path), "r"))
  local sum = h:read("*l"):match("^(%x+)")
  h:close()
  return sum
end

local function same_list(expected, actual)
  assert.equal(table.concat(expected, ","), table.concat(actual, ","))
end

setup(function()
  srv = server.start()
  client = new()
  dir = server.temp_dir()
end)

teardown(function()
  srv:stop()
  server.remove_dir(dir)
end)

describe("client:upload", function()
  it("sends text fields before the file, the token in `i` first", function()
    local file = assert(client:upload({ data = "hello", filename = "a.txt" },
      { comment = "a cat", isSensitive = true, folderId = misskey.null }))
    same_list({ "i", "comment", "isSensitive", "name", "file" }, file.test.order)
    assert.is_true(file.test.iBeforeFile)
    assert.equal(TOKEN, file.test.fields.i)
    assert.equal(misskey.null, file.test.authorization)
    assert.matches("^multipart/form%-data", file.test.contentType)
    assert.equal("a.txt", file.name)
    assert.equal("a cat", file.comment)
    assert.is_true(file.isSensitive)
    assert.equal(misskey.null, file.folderId) -- null: the field was left out
  end)

  it('sends the token as a Bearer header with auth = "header"', function()
    local file = assert(new{ auth = "header" }:upload({ data = "x", filename = "x.txt" }, { comment = "c" }))
    assert.equal("Bearer " .. TOKEN, file.test.authorization)
    same_list({ "comment", "name", "file" }, file.test.order)
    assert.is_nil(file.test.fields.i)
  end)

  it("sends booleans and numbers as text", function()
    local file = assert(client:upload({ data = "x", filename = "x.txt" },
      { isSensitive = false, force = true, n = 3, f = 1.5 }))
    assert.equal("false", file.test.fields.isSensitive)
    assert.equal("true", file.test.fields.force)
    assert.equal("3", file.test.fields.n)
    assert.equal("1.5", file.test.fields.f)
    assert.is_false(file.isSensitive)
  end)

  it("streams a file from disk: content, size and name arrive intact", function()
    -- Bytes a multipart parser could trip on: NUL, CR LF and a boundary look-alike.
    local content = ("\0\r\n--boundary\r\nContent-Disposition: x\r\n\r\n" .. ("\255\1"):rep(3000)):rep(40)
    local path = write_file("photo.bin", content)
    local file = assert(client:upload(path))
    assert.equal(#content, file.size)
    assert.equal(md5sum(path), file.md5)
    assert.equal("photo.bin", file.name)
    assert.equal("photo.bin", file.test.filename)
  end)

  it("an explicit name wins; filename and type can be set", function()
    local path = write_file("a.dat", "data")
    local file = assert(client:upload(path, { name = "shown.txt" }))
    assert.equal("shown.txt", file.name)
    assert.equal("a.dat", file.test.filename)
    file = assert(client:upload({ path = path, filename = "b.txt", type = "text/plain" }))
    assert.equal("b.txt", file.name)
    assert.equal("b.txt", file.test.filename)
    assert.equal("text/plain", file.type)
  end)

  it("uploads in-memory data", function()
    local data = ("0123456789"):rep(1000) .. "\0end"
    local file = assert(client:upload({ data = data, filename = "mem.txt", type = "text/plain" }))
    assert.equal(#data, file.size)
    assert.equal(write_file("mem.txt", data) and md5sum(dir .. "/mem.txt"), file.md5)
    assert.equal("mem.txt", file.name)
  end)

  it("in-memory data without a filename is a nameless blob", function()
    local file = assert(client:upload({ data = "x" }))
    assert.equal("blob", file.test.filename)
    assert.equal(misskey.null, file.name)
    same_list({ "i", "file" }, file.test.order)
  end)

  it("reports progress with increasing `sent`, ending at `total`", function()
    local path = dir .. "/progress.bin"
    local f = assert(io.open(path, "wb"))
    assert(f:seek("set", 32 * 1024 * 1024 - 1))
    f:write("\0")
    f:close()
    local calls = {}
    local file = assert(client:upload(path, nil, { progress = function(sent, total)
      calls[#calls + 1] = { sent, total }
    end }))
    os.remove(path)
    assert.equal(32 * 1024 * 1024, file.size)
    -- Reported between engine steps (every 0.1 s): a fast loopback upload may
    -- see one call; the 256 MiB upload below sees several.
    assert.truthy(#calls >= 1, "progress never called")
    local last = calls[#calls]
    local math_type = rawget(math, "type") -- Lua 5.3+: byte counts are integers
    if math_type then assert.equal("integer", math_type(last[1])) end
    assert.truthy(last[2] > 32 * 1024 * 1024, "total counts the whole multipart body")
    assert.equal(last[2], last[1])
    for i = 2, #calls do
      assert.truthy(calls[i][1] >= calls[i - 1][1], "sent never goes back")
    end
  end)

  it("passes Misskey's errors on", function()
    local res, msg, err = new{ token = false }:upload({ data = "x", filename = "x.txt" })
    assert.is_nil(res)
    assert.equal("api", err.kind)
    assert.equal("CREDENTIAL_REQUIRED", err.code)
    assert.equal("drive/files/create", err.endpoint)
    assert.matches("^drive/files/create: CREDENTIAL_REQUIRED", msg)
  end)

  it("a file that cannot be read fails before sending, as kind invalid", function()
    local res, msg, err = client:upload(dir .. "/missing.png")
    assert.is_nil(res)
    assert.equal("invalid", err.kind)
    assert.equal("file", err.param)
    assert.equal(dir .. "/missing.png", err.path)
    assert.matches("No such file", msg)
    local _, msg2, err2 = client:upload(dir)
    assert.equal("invalid", err2.kind)
    assert.matches("directory", msg2)
  end)

  it("keeps the token out of every field of a failure", function()
    local transport = { request = function(req)
      return nil, "upload of " .. req.parts[1].value .. " failed", { kind = "network", parts = req.parts }
    end }
    local _, msg, err = new{ transport = transport }:upload({ data = "x" })
    leak.assert_none(TOKEN, msg, err)
    -- and of a reply that echoes it
    local _, msg2, err2 = new{ transport = { request = function(req)
      return { status = 500, headers = {}, body = "bad field i=" .. req.parts[1].value }
    end } }:upload({ data = "x" })
    assert.equal("http", err2.kind)
    leak.assert_none(TOKEN, msg2, err2)
  end)

  it("hands the transport parts in order, the file last", function()
    local seen
    local transport = { request = function(req)
      seen = req
      return { status = 200, headers = {}, body = '{"id":"f1"}' }
    end }
    local progress = function() end
    local path = write_file("cat.png", "meow")
    assert(new{ transport = transport }:upload(path, { comment = "c" }, { progress = progress }))
    assert.equal("POST", seen.method)
    assert.equal(srv.url .. "/api/drive/files/create", seen.url)
    assert.equal(progress, seen.progress)
    assert.same({ name = "i", value = TOKEN }, seen.parts[1])
    assert.same({ name = "comment", value = "c" }, seen.parts[2])
    assert.same({ name = "name", value = "cat.png" }, seen.parts[3])
    assert.same({ name = "file", path = path, filename = "cat.png" }, seen.parts[4])
  end)
end)

describe("client:upload misuse raises naming the argument", function()
  it("file", function()
    assert.has_error(function() client:upload(42) end,
      "bad argument #1 to 'upload' (a file path or { data = ..., filename = ... } expected, got number)")
    assert.has_error(function() client:upload("") end, "bad argument #1 to 'upload' (file path is empty)")
    assert.has_error(function() client:upload({}) end,
      "bad argument #1 to 'upload' (give exactly one of path and data)")
    assert.has_error(function() client:upload({ data = "x", path = "y" }) end,
      "bad argument #1 to 'upload' (give exactly one of path and data)")
    assert.has_error(function() client:upload({ data = 5 }) end,
      "bad argument #1 to 'upload' (field 'data' must be a string, got number)")
    assert.has_error(function() client:upload({ data = "x", name = "y" }) end,
      "bad argument #1 to 'upload' (unknown field 'name')")
  end)

  it("fields and options", function()
    local blob = { data = "x" }
    assert.has_error(function() client:upload(blob, "x") end,
      "bad argument #2 to 'upload' (fields must be a table, got string)")
    assert.has_error(function() client:upload(blob, { i = "t" }) end,
      "bad argument #2 to 'upload' (field 'i' is set by upload itself)")
    assert.has_error(function() client:upload(blob, { file = "t" }) end,
      "bad argument #2 to 'upload' (field 'file' is set by upload itself)")
    assert.has_error(function() client:upload(blob, { comment = {} }) end)
    assert.has_error(function() client:upload(blob, { n = 0 / 0 }) end)
    assert.has_error(function() client:upload(blob, { [1] = "x" }) end,
      "bad argument #2 to 'upload' (field names must be strings)")
    assert.has_error(function() client:upload(blob, nil, { retries = 1 }) end,
      "bad argument #3 to 'upload' (unknown option 'retries')")
    assert.has_error(function() client:upload(blob, nil, { progress = 1 }) end,
      "bad argument #3 to 'upload' (option 'progress' must be a function(sent, total))")
    assert.has_error(function() client:upload(blob, nil, { timeout = 0 }) end)
    assert.has_error(function() client.upload(blob) end)
  end)
end)

describe("engine:request parts (the C layer)", function()
  local core = require "misskey.core"

  local function finish(e, t)
    local deadline = os.time() + 20
    while not t:done() do
      assert(os.time() < deadline, "transfer did not finish in time")
      e:step(0.5)
    end
    return t:result()
  end

  it("builds the multipart body in the order given", function()
    local e = core.engine()
    local path = write_file("c.bin", "abc")
    local t = e:request{ url = srv.url .. "/api/drive/files/create", parts = {
      { name = "i", value = "tok" }, { name = "x", value = "a\0b" },
      { name = "file", path = path, filename = "named.bin", type = "application/x-test" } } }
    local status, _, body = finish(e, t)
    assert.equal(200, status)
    local file = require("misskey.json").decode(body)
    same_list({ "i", "x", "file" }, file.test.order)
    assert.equal("a\0b", file.test.fields.x)
    assert.equal("named.bin", file.test.filename)
    assert.equal("application/x-test", file.type)
    assert.equal(3, file.size)
    local info = t:info() -- counted by curl at the end, with no progress callback installed
    assert.is_true(info.upload_now > 3)
    assert.equal(info.upload_total, info.upload_now)
    e:close()
  end)

  it("raises on bad parts, freeing what it built", function()
    local e = core.engine()
    local url = srv.url .. "/api/drive/files/create"
    local function bad(parts, message, extra)
      local req = { url = url, parts = parts }
      for k, v in pairs(extra or {}) do req[k] = v end
      assert.has_error(function() e:request(req) end, message)
    end
    bad("x", "request option 'parts' must be a table")
    bad({ "x" }, "request parts[1] must be a table")
    bad({ { value = "v" } }, "request parts[1].name must be a non-empty string")
    bad({ { name = "a", value = "v" }, { name = "b" } }, "request parts[2] needs exactly one of value, path, data")
    bad({ { name = "a", value = "v", data = "d" } }, "request parts[1] needs exactly one of value, path, data")
    bad({ { name = "a", value = 5 } }, "request parts[1].value must be a string")
    bad({ { name = "a", data = "d", filename = "x\r\ny" } },
      "request parts[1].filename must not contain a line break or a NUL byte")
    bad({ { name = "a", value = "v" }, { name = "f", path = dir .. "/nope" } },
      "request parts[2]: cannot read file '" .. dir .. "/nope'")
    bad({ { name = "a", value = "v" } }, "request options 'body' and 'parts' cannot be combined", { body = "x" })
    bad({ { name = "a", value = "v" } }, "request option 'parts' needs a method with a body, not GET",
      { method = "GET" })
    assert.equal(0, e:pending())
    collectgarbage()
    e:close()
  end)
end)

describe("a 256 MiB upload", function()
  -- Peak resident memory of this process (kB), reset first where the kernel allows it.
  local function status_kb(field)
    for line in io.lines("/proc/self/status") do
      local v = line:match("^" .. field .. ":%s*(%d+)")
      if v then return tonumber(v) end
    end
  end

  local function reset_peak()
    local f = io.open("/proc/self/clear_refs", "w")
    if not f then return false end
    local ok = f:write("5") -- 5: reset VmHWM to the current RSS (Linux >= 4.0)
    f:close()
    return ok ~= nil
  end

  it("streams from disk: peak RSS grows by less than 16 MiB", function()
    local size = 256 * 1024 * 1024
    local path = dir .. "/big.bin"
    local f = assert(io.open(path, "wb"))
    assert(f:seek("set", size - 1)) -- sparse: reads back as zeros, costs no disk
    f:write("\0")
    f:close()
    collectgarbage()
    collectgarbage()
    local was_reset = reset_peak()
    local before = was_reset and status_kb("VmHWM") or status_kb("VmRSS")
    local calls = {}
    local file, msg = client:upload(path, nil, { progress = function(sent, total)
      calls[#calls + 1] = { sent, total }
    end })
    local after = status_kb("VmHWM")
    os.remove(path)
    assert.is_table(file, msg)
    assert.equal(size, file.size)
    assert.equal("1f5039e50bd66b290c56684d8550c6c2", file.md5) -- md5 of 256 MiB of zeros
    local grew = after - before
    assert.truthy(grew < 16 * 1024, ("peak RSS grew by %d kB"):format(grew))
    assert.truthy(#calls >= 2, "progress called " .. #calls .. " times") -- ~7 at 350 MB/s
    for i = 2, #calls do assert.truthy(calls[i][1] >= calls[i - 1][1]) end
    assert.equal(calls[#calls][2], calls[#calls][1])
  end)
end)
