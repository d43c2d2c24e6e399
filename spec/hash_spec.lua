-- The C primitives of authentication: SHA-256 and SHA-1 against FIPS 180
-- vectors, base64url (RFC 7636's PKCE example), UUID v4, random bytes and
-- percent-encoding.
local core = require "misskey.core"

describe("core.sha256", function()
  it("matches the FIPS 180 vectors", function()
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256("abc", "hex"))
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", core.sha256("", "hex"))
    assert.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      core.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "hex"))
    assert.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
      core.sha256(("a"):rep(1000000), "hex"))
  end)

  it("returns 32 raw bytes by default", function()
    local d = core.sha256("abc")
    assert.equal(32, #d)
    assert.equal(0xba, d:byte(1))
    assert.equal(d, core.sha256("abc", "raw"))
  end)

  it("is right around the 55/56/64-byte padding edges", function()
    -- Known digests of 55, 56 and 64 'a' bytes.
    assert.equal("9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318", core.sha256(("a"):rep(55), "hex"))
    assert.equal("b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a", core.sha256(("a"):rep(56), "hex"))
    assert.equal("ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb", core.sha256(("a"):rep(64), "hex"))
  end)

  it("raises on a bad form", function()
    assert.has_error(function() core.sha256("x", "base32") end)
    assert.has_error(function() core.sha256() end)
  end)
end)

describe("core.sha1", function()
  it("matches the FIPS 180 vectors", function()
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", core.sha1("abc", "hex"))
    assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", core.sha1("", "hex"))
    assert.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
      core.sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "hex"))
    assert.equal("34aa973cd4c4daa4f61eeb2bdbad27316534016f", core.sha1(("a"):rep(1000000), "hex"))
    assert.equal(20, #core.sha1("abc"))
  end)

  it("gives RFC 6455's Sec-WebSocket-Accept example", function()
    local accept = core.sha1("dGhlIHNhbXBsZSBub25jZQ==" .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
    -- base64 (standard) of the digest is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=; base64url differs only in +/ and padding.
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK-xOo", core.base64url(accept))
  end)
end)

describe("core.base64url", function()
  it("encodes without padding (RFC 4648 vectors)", function()
    local cases = { [""] = "", f = "Zg", fo = "Zm8", foo = "Zm9v", foob = "Zm9vYg", fooba = "Zm9vYmE",
      foobar = "Zm9vYmFy", ["\251\255"] = "-_8" }
    for input, expected in pairs(cases) do assert.equal(expected, core.base64url(input)) end
  end)

  it("gives RFC 7636's PKCE S256 challenge", function()
    assert.equal("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
      core.base64url(core.sha256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")))
  end)
end)

describe("core.uuid", function()
  it("makes lower-case version 4 UUIDs, a new one each time", function()
    local seen = {}
    for _ = 1, 100 do
      local u = core.uuid()
      assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", u)
      assert.equal(u:lower(), u)
      assert.is_nil(seen[u])
      seen[u] = true
    end
  end)
end)

describe("core.random", function()
  it("returns n fresh random bytes", function()
    local a, b = core.random(32), core.random(32)
    assert.equal(32, #a)
    assert.not_equal(a, b)
    assert.equal(4096, #core.random(4096))
  end)

  it("raises on a bad count", function()
    assert.has_error(function() core.random(0) end)
    assert.has_error(function() core.random(4097) end)
  end)
end)

describe("core.urlencode", function()
  it("keeps RFC 3986's unreserved characters and encodes the rest", function()
    assert.equal("AZaz09-._~", core.urlencode("AZaz09-._~"))
    assert.equal("a%20b%2Fc%3F%26%3D%25%2B%3A%40", core.urlencode("a b/c?&=%+:@"))
    assert.equal("%C3%BC%00", core.urlencode("ü\0"))
  end)
end)
