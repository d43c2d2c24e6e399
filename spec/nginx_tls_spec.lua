-- TLS inside nginx: the server's certificate is verified by default against
-- nginx's lua_ssl_trusted_certificate, and `insecure = true` is the only way
-- around it. LuaJIT pass only, as spec/nginx_spec.lua.
local nginx = require "support.nginx"
local server = require "support.server"

if not rawget(_G, "jit") then return end
local missing = nginx.missing()
if missing then
  io.stderr:write("spec/nginx_tls_spec.lua: skipped: " .. missing .. "\n")
  it("TLS inside nginx (skipped: " .. missing .. ")", function() pending(missing) end)
  return
end

local cert, other, trusted, untrusted, ngx_

setup(function()
  cert = server.self_signed()
  other = server.self_signed() -- another CA, trusted by nothing
  trusted = server.start{ tls = cert }
  untrusted = server.start{ tls = other }
  ngx_ = nginx.start{ upstream = trusted.url, trust = cert.cert }
end)

teardown(function()
  if ngx_ then ngx_:stop() end
  trusted:stop()
  untrusted:stop()
  server.remove_dir(cert.dir)
  server.remove_dir(other.dir)
end)

local json = require "misskey.json"
local function call(host, client_opts)
  local opts = { host = host }
  for k, v in pairs(client_opts or {}) do opts[k] = v end
  return ngx_:get("/call", { endpoint = "meta", client = json.encode(opts) })
end

describe("TLS inside nginx", function()
  it("talks to a server whose certificate lua_ssl_trusted_certificate trusts", function()
    local out = call(trusted.url)
    assert.is_nil(out.err)
    assert.equal("2026.5.4", out.value.version)
  end)

  it("refuses a certificate nothing trusts, as a network error that says so", function()
    local out = call(untrusted.url)
    assert.is_nil(out.value)
    assert.equal("network", out.err.kind)
    assert.matches("TLS handshake failed", out.message)
    assert.matches("lua_ssl_trusted_certificate", out.message)
  end)

  it("insecure = true skips the verification (and only then)", function()
    local out = call(untrusted.url, { insecure = true })
    assert.is_nil(out.err)
    assert.equal("2026.5.4", out.value.version)
  end)
end)
