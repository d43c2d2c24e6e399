-- misskey.validate: the one JSON-Schema validator, under misskey.schema (a
-- client's check before sending) and misskey.testing (the fake's INVALID_PARAM).
local json = require "misskey.json"
local schema = require "misskey.schema"
local testing = require "misskey.testing"
local validate = require "misskey.validate"

local null, array = json.null, json.array

-- The same bad notes/create parameters through both callers: schema.validate's
-- message and param, and the fake's INVALID_PARAM info (from decoded JSON).
local function both(params)
  local msg, param = schema.validate(schema.lookup("notes/create"), params)
  local fake = testing.fake()
  local _, _, err = fake:client():request("notes/create", params)
  assert.equal("INVALID_PARAM", err.code)
  return msg, param, err.info
end

describe("misskey.validate under schema.validate and the fake", function()
  it("is the one module both call", function()
    local real, calls = validate.check, 0
    validate.check = function(...)
      calls = calls + 1
      return real(...)
    end
    local ok, why = pcall(function()
      assert.is_string(schema.validate(schema.lookup("notes/create"), { cw = ("x"):rep(101) }))
      assert.equal(1, calls)
      assert.equal("#/properties/cw/maxLength", (testing.validate(testing.endpoints["notes/create"].params,
        json.decode('{"cw":"' .. ("x"):rep(101) .. '"}'))))
      assert.equal(2, calls)
      local _, _, err = testing.fake():client():request("notes/create", { cw = ("x"):rep(101) })
      assert.equal("INVALID_PARAM", err.code)
      assert.equal(3, calls)
    end)
    validate.check = real
    assert(ok, why)
  end)

  it("rejects the same bad inputs for the same reason, each in its caller's words", function()
    local cases = {
      -- params, schema.validate's message and param, the fake's ajv schemaPath and reason
      { { text = 3 }, "parameter 'text' must be a string, got integer", "text",
        "#/properties/text/type", "must be string,null" },
      { { visibility = "friends" }, 'parameter \'visibility\' must be one of "public", "home", "followers", '
        .. '"specified", got "friends"', "visibility",
        "#/properties/visibility/enum", "must be equal to one of the allowed values" },
      { { cw = ("é"):rep(101) }, "parameter 'cw' must be at most 100 characters, got 101", "cw",
        "#/properties/cw/maxLength", "must NOT have more than 100 characters" },
      { { text = "hi", fileIds = { "ok1", "no/2" } }, "parameter 'fileIds[2]' must be a Misskey id (letters and "
        .. "digits), got \"no/2\"", "fileIds[2]",
        "#/properties/fileIds/items/format", 'must match format "misskey:id"' },
      { { text = "hi", fileIds = { "a", "a" } }, "parameter 'fileIds' must not repeat \"a\"", "fileIds",
        "#/properties/fileIds/uniqueItems", "must NOT have duplicate items (items ## 1 and 0 are identical)" },
      { { poll = { choices = { "x" } } }, "parameter 'poll.choices' must have at least 2 items, got 1",
        "poll.choices", "#/properties/poll/properties/choices/minItems", "must NOT have fewer than 2 items" },
      { { poll = { multiple = true } }, "parameter 'poll.choices' is required", "poll.choices",
        "#/properties/poll/required", "must have required property 'choices'" },
      { { poll = { choices = { "x", "" } } }, "parameter 'poll.choices[2]' must be at least 1 characters, got 0",
        "poll.choices[2]", "#/properties/poll/properties/choices/items/minLength",
        "must NOT have fewer than 1 characters" },
    }
    for _, c in ipairs(cases) do
      local msg, param, info = both(c[1])
      assert.equal(c[2], msg)
      assert.equal(c[3], param)
      assert.same({ param = c[4], reason = c[5] }, info)
    end
  end)

  it("accepts null where the schema says so, in both", function()
    local params = { text = "x", reactionAcceptance = null, replyId = null, cw = null }
    assert.is_nil(schema.validate(schema.lookup("notes/create"), params))
    assert(testing.fake():client():request("notes/create", params))
    local msg, param, info = both({ text = "x", visibility = null })
    assert.same({ "parameter 'visibility' must not be null", "visibility" }, { msg, param })
    assert.same({ param = "#/properties/visibility/type", reason = "must be string" }, info)
  end)

  it("checks each item before uniqueness, as Misskey 2026.5.4's ajv does", function()
    -- The real server answers #/properties/fileIds/items/format for both.
    local msg, param, info = both({ text = "hi", fileIds = { "a-b", "a-b" } })
    assert.equal("fileIds[1]", param)
    assert.matches("must be a Misskey id", msg, 1, true)
    assert.equal("#/properties/fileIds/items/format", info.param)
    msg, param, info = both({ text = "hi", fileIds = { "ok1", "ok1", "a-b" } })
    assert.equal("fileIds[3]", param)
    assert.matches("must be a Misskey id", msg, 1, true)
    assert.equal("#/properties/fileIds/items/format", info.param)
  end)

  it("answers a NaN in a list with a message, not a Lua error", function()
    local ok, msg, param = pcall(schema.validate, schema.lookup("notes/create"), { fileIds = { 0 / 0, 0 / 0 } })
    assert.is_true(ok)
    assert.equal("fileIds[1]", param)
    assert.matches("must be a string, got number", msg, 1, true)
    local f = validate.check({ type = "array", uniqueItems = true }, { 0 / 0, 0 / 0 })
    assert.is_nil(f)
  end)
end)

describe("validate.check", function()
  it("describes the first error: rule, ajv's path and words, the place in the value", function()
    local s = { type = "object", properties = {
      { "poll", { type = "object", required = { "choices" }, properties = {
        { "choices", { type = "array", items = { type = "string", maxLength = 3 } } } } } } } }
    assert.is_nil(validate.check(s, { poll = { choices = { "ab", "abc" } } }))
    local f = validate.check(s, { poll = { choices = { "ab", "abcd" } } })
    assert.equal("maxLength", f.keyword)
    assert.equal("#/properties/poll/properties/choices/items/maxLength", f.schema_path)
    assert.equal("must NOT have more than 3 characters", f.reason)
    assert.same({ "poll", "choices", 2 }, f.at)
    assert.equal("abcd", f.value)
    assert.equal(3, f.limit)
    assert.equal(4, f.count)
    f = validate.check(s, { poll = {} }, { root = "#/then" })
    assert.equal("#/then/properties/poll/required", f.schema_path)
    assert.equal("choices", f.property)
    assert.same({ "poll" }, f.at)
  end)

  it("reports anyOf as its first alternative, and where the anyOf stands", function()
    local s = { type = "object", properties = { { "user", { anyOf = {
      { type = "string", format = "misskey:id" }, { type = "array" } } } } } }
    assert.is_nil(validate.check(s, { user = "abc" }))
    assert.is_nil(validate.check(s, { user = { "abc" } }))
    local f = validate.check(s, { user = "a-b" })
    assert.equal("#/properties/user/anyOf/0/format", f.schema_path)
    assert.same({ "user" }, f.alternatives_at)
  end)

  it("takes nullable, enums, bounds and unknown properties", function()
    assert.is_nil(validate.check({ type = "string", nullable = true, enum = { "a" } }, null))
    assert.equal("type", validate.check({ type = "string" }, null).keyword)
    assert.equal("enum", validate.check({ enum = { "a", "b" } }, "c").keyword)
    local f = validate.check({ type = "integer", minimum = 1, maximum = 100 }, 101)
    assert.same({ "maximum", "must be <= 100", 100 }, { f.keyword, f.reason, f.limit })
    assert.equal("type", validate.check({ type = "integer" }, 1.5).keyword)
    assert.equal("type", validate.check({ type = "number" }, math.huge).keyword)
    f = validate.check({ type = "object", additionalProperties = false, properties = { { "a", {} } } },
      { a = 1, zz = 2, b = 3 })
    assert.same({ "additionalProperties", "b" }, { f.keyword, f.property })
  end)

  it("reads tables as JSON: marked arrays only for decoded JSON, else t[1] or empty", function()
    assert.is_nil(validate.check({ type = "array" }, { "a" }))
    assert.is_nil(validate.check({ type = "array" }, {}))
    assert.is_nil(validate.check({ type = "object" }, {}))
    assert.equal("type", validate.check({ type = "array" }, { "a" }, { marked_arrays = true }).keyword)
    assert.equal("type", validate.check({ type = "array" }, {}, { marked_arrays = true }).keyword)
    assert.is_nil(validate.check({ type = "array" }, array{}, { marked_arrays = true }))
    assert.equal("type", validate.check({ type = "object" }, array{}, { marked_arrays = true }).keyword)
  end)
end)
