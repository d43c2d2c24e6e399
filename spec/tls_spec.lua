-- TLS against the test server in https mode, with certificates made by openssl
-- at test time: verification is on by default, ca_file trusts a private CA,
-- insecure = true turns verification off (test servers only).
local new_client = require "support.client"
local server = require "support.server"

local cert, other, srv

local function new(opts)
  return new_client({ host = srv.url, token = false }, opts)
end

setup(function()
  cert = server.self_signed()
  other = server.self_signed() -- another CA, trusted by nothing
  srv = server.start{ tls = cert }
end)

teardown(function()
  if srv then srv:stop() end
  if cert then server.remove_dir(cert.dir) end
  if other then server.remove_dir(other.dir) end
end)

describe("TLS", function()
  it("serves https from the test server", function()
    assert.matches("^https://127%.0%.0%.1:%d+$", srv.url)
  end)

  it("verifies the certificate by default: a self-signed one fails with curl error 60", function()
    local res, msg, err = new():request("meta")
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal(60, err.curl_code) -- CURLE_PEER_FAILED_VERIFICATION
    assert.matches("curl error 60", msg)
    assert.matches("ca_file", msg)
    assert.matches("^meta: ", msg)
  end)

  it("trusts the certificate given as ca_file", function()
    local meta = assert(new{ ca_file = cert.cert }:request("meta"))
    assert.equal("2026.5.4", meta.version)
  end)

  it("ca_file replaces the trusted set: another CA's certificate does not help", function()
    local _, _, err = new{ ca_file = other.cert }:request("meta")
    assert.equal("network", err.kind)
    assert.equal(60, err.curl_code)
  end)

  it("checks the host name, not only the signature", function()
    -- The certificate names 127.0.0.1 only; "localhost" reaches the same server.
    local c = new{ host = srv.url:gsub("127%.0%.0%.1", "localhost"), ca_file = cert.cert }
    local _, msg, err = c:request("meta")
    assert.equal("network", err.kind, msg)
    assert.equal(60, err.curl_code)
  end)

  it("insecure = true skips verification (only ever for a test server)", function()
    local meta = assert(new{ insecure = true }:request("meta"))
    assert.equal("2026.5.4", meta.version)
  end)

  it("insecure = false verifies as the default does", function()
    local _, _, err = new{ insecure = false }:request("meta")
    assert.equal(60, err.curl_code)
  end)

  it("uploads and client:http verify the same way", function()
    local _, _, err = new():http{ path = "/echo/x" }
    assert.equal(60, err.curl_code)
    local res = assert(new{ ca_file = cert.cert }:http{ path = "/echo/x" })
    assert.equal(200, res.status)
    local _, _, uerr = new{ token = "t" }:upload({ data = "x", filename = "x.txt" })
    assert.equal(60, uerr.curl_code)
    local file = assert(new{ token = "t", ca_file = cert.cert }:upload({ data = "x", filename = "x.txt" }))
    assert.equal(1, file.size)
  end)

  it("options are checked when the client is made", function()
    assert.has_error(function() new{ ca_file = 42 } end, "bad option 'ca_file' (a file path expected)")
    assert.has_error(function() new{ ca_file = "" } end, "bad option 'ca_file' (a file path expected)")
    local ok, err = pcall(new, { ca_file = "/nonexistent/ca.pem" })
    assert.is_false(ok)
    assert.matches("bad option 'ca_file' %(cannot open: /nonexistent/ca.pem", err)
    assert.has_error(function() new{ insecure = "yes" } end, "bad option 'insecure' (boolean expected, got string)")
    assert.has_error(function() new{ insecure = true, ca_file = cert.cert } end,
      "bad option 'insecure' (cannot be combined with ca_file)")
  end)

  it("the transport is asked to verify unless insecure is set", function()
    local seen
    local transport = { request = function(req)
      seen = req
      return { status = 200, headers = {}, body = "{}" }
    end }
    assert(new{ transport = transport }:request("meta"))
    assert.is_nil(seen.insecure)
    assert.is_nil(seen.ca_file)
    assert(new{ transport = transport, ca_file = cert.cert }:request("meta"))
    assert.equal(cert.cert, seen.ca_file)
    assert(new{ transport = transport, insecure = true }:request("meta"))
    assert.is_true(seen.insecure)
  end)
end)
