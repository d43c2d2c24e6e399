-- The example app (examples/openresty/nginx.conf): Sign in with Misskey through
-- MiAuth or OAuth, then the home timeline and a form to post a note. Every request is a
-- content handler; the library waits on nginx's cosockets, so one worker process
-- serves many browsers at once. The token stays on the server (a lua_shared_dict,
-- keyed by a random session id in an HttpOnly cookie); forms carry a CSRF token.
local misskey = require "misskey"
local auth = require "misskey.auth"
local core = require "misskey.core"
local json = require "misskey.json"

local app = {}

local HOST = os.getenv("MISSKEY_HOST")
local APP_URL = (os.getenv("MISSKEY_APP_URL") or "http://127.0.0.1:8080"):gsub("/+$", "")
local SESSION_TTL = 7 * 86400
local sessions = ngx.shared.sessions

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
    ["'"] = "&#39;" }))
end

local function page(status, title, body)
  ngx.status = status
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say("<!doctype html><html><head><meta charset=\"utf-8\"><title>", html_escape(title), "</title></head><body>",
    "<h1>", html_escape(title), "</h1>", body, "</body></html>")
end

local function redirect(to, cookies)
  if cookies then ngx.header["Set-Cookie"] = cookies end
  return ngx.redirect(to, 303)
end

local function cookie(name, value, max_age)
  return ("%s=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%d"):format(name, value, max_age)
end

-- A browser signed in: a new session id (the cookie), the token kept here.
local function sign_in(token, username)
  local sid = core.uuid()
  sessions:set("sid:" .. sid, json.encode{ token = token, username = username, csrf = core.uuid() }, SESSION_TTL)
  return sid
end

-- The signed-in session of this browser: { token, username, csrf } and its id, or nil.
local function current()
  local sid = ngx.var.cookie_sid
  local stored = sid and sessions:get("sid:" .. sid)
  if not stored then return nil end
  return json.decode(stored), sid
end

local function client(token) return misskey.new{ host = HOST, token = token } end

local routes = {}

routes["GET /"] = function()
  local s = current()
  if not s then
    return page(200, "Misskey on nginx", ("<p>Not signed in.</p><p><a href=\"/login\">Sign in with Misskey</a>"
      .. " (%s)</p><p><a href=\"/login/oauth\">Sign in with Misskey through OAuth</a> (Misskey 2023.9.0 or"
      .. " later; it fetches %s, so this app must be reachable from the server, over https)</p>")
      :format(html_escape(HOST), html_escape(APP_URL .. "/client")))
  end
  local notes, msg = client(s.token):request("notes/timeline", { limit = 20 })
  local out = {
    ("<p>Signed in as @%s.</p>"):format(html_escape(s.username)),
    "<form method=\"post\" action=\"/post\"><input type=\"hidden\" name=\"csrf\" value=\"", html_escape(s.csrf),
    "\"><textarea name=\"text\" rows=\"3\" cols=\"60\"></textarea><br><button>Post</button></form>",
    "<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"", html_escape(s.csrf),
    "\"><button>Sign out</button></form><h2>Home timeline</h2>",
  }
  if not notes then
    out[#out + 1] = "<p>The timeline could not be loaded: " .. html_escape(msg) .. "</p>"
  else
    out[#out + 1] = "<ul>"
    for _, note in ipairs(notes) do
      local who = type(note.user) == "table" and note.user.username or note.userId
      out[#out + 1] = ("<li><b>@%s</b>: %s</li>"):format(html_escape(who), html_escape(note.text or ""))
    end
    out[#out + 1] = "</ul>"
  end
  return page(200, "Misskey on nginx", table.concat(out))
end

-- MiAuth starts here: the browser goes to the server's consent page, which sends it back to
-- /callback?session=<id>. The id goes in a cookie too, so a callback this browser did not
-- start (someone else's session, pushed on us) is refused.
routes["GET /login"] = function()
  local s = auth.miauth{ host = HOST, name = "misskey-lua on nginx", permission = { "read:account", "write:notes" },
    callback = APP_URL .. "/callback" }
  return redirect(s.url, cookie("miauth", s.session, 600))
end

routes["GET /callback"] = function()
  local id = ngx.var.arg_session
  if not id or id ~= ngx.var.cookie_miauth then
    return page(400, "Sign-in failed",
      "<p>This sign-in was not started in this browser. <a href=\"/\">Start again</a>.</p>")
  end
  local token, user, err = auth.miauth_session{ host = HOST, session = id }:check()
  if not token then
    local why = err and err.kind == "pending" and "The server did not approve the sign-in." or user
    return page(403, "Sign-in failed", "<p>" .. html_escape(why) .. " <a href=\"/\">Start again</a>.</p>")
  end
  return redirect("/", { cookie("sid", sign_in(token, user.username), SESSION_TTL), cookie("miauth", "", 0) })
end

-- OAuth 2.0 with PKCE. The client id is a page of this app that Misskey fetches: it names the
-- app and the one redirect URI Misskey may send the browser back to.
local CLIENT_ID, REDIRECT_URI = APP_URL .. "/client", APP_URL .. "/oauth/callback"

routes["GET /client"] = function()
  ngx.header["Link"] = ("<%s>; rel=\"redirect_uri\""):format(REDIRECT_URI)
  return page(200, "misskey-lua on nginx", ("<link rel=\"redirect_uri\" href=\"%s\"><div class=\"h-app\">"
    .. "<a class=\"u-url p-name\" href=\"%s\">misskey-lua on nginx</a></div>")
    :format(html_escape(REDIRECT_URI), html_escape(CLIENT_ID)))
end

-- The server's OAuth metadata, fetched once per worker process: the issuer every redirect must
-- name (RFC 9207: a redirect naming another server is a mix-up, refused by session:finish).
local oauth_issuer

-- The sign-in starts here; its saved half (with the PKCE verifier) stays in the shared dict,
-- under a random id in this browser's cookie, for whichever worker process gets the callback.
routes["GET /login/oauth"] = function()
  if oauth_issuer == nil then
    local md, msg = auth.oauth_discover(HOST)
    if not md then return page(502, "Sign-in failed", "<p>" .. html_escape(msg) .. "</p>") end
    oauth_issuer = type(md.issuer) == "string" and md.issuer ~= "" and md.issuer or false
  end
  local s = auth.oauth_start{ host = HOST, client_id = CLIENT_ID, redirect_uri = REDIRECT_URI,
    permission = { "read:account", "write:notes" }, issuer = oauth_issuer or nil, require_iss = oauth_issuer and true }
  local key = core.uuid()
  sessions:set("oauth:" .. key, json.encode(s:save()), 600)
  return redirect(s.url, cookie("oauth", key, 600))
end

routes["GET /oauth/callback"] = function()
  local key = ngx.var.cookie_oauth
  local saved = key and sessions:get("oauth:" .. key)
  -- Claimed once across the worker processes (incr is atomic): a replayed redirect finds nothing.
  if not saved or sessions:incr("oauth-used:" .. key, 1, 0, 600) ~= 1 then
    return page(400, "Sign-in failed",
      "<p>No sign-in was started in this browser (or it is finished). <a href=\"/\">Start again</a>.</p>")
  end
  sessions:delete("oauth:" .. key)
  local token, msg = auth.oauth_session(json.decode(saved)):finish(ngx.req.get_uri_args())
  local me
  if token then me, msg = client(token):request("i") end
  if not me then
    return page(403, "Sign-in failed", "<p>" .. html_escape(msg) .. " <a href=\"/\">Start again</a>.</p>")
  end
  return redirect("/", { cookie("sid", sign_in(token, me.username), SESSION_TTL), cookie("oauth", "", 0) })
end

-- The signed-in session when the form's CSRF token is its own, else nil.
local function form_session()
  local s, sid = current()
  ngx.req.read_body()
  local args = ngx.req.get_post_args(20) or {}
  if not s or type(args.csrf) ~= "string" or args.csrf ~= s.csrf then return nil end
  return s, sid, args
end

routes["POST /post"] = function()
  local s, _, args = form_session()
  if not s then return page(403, "Not posted", "<p>Sign in first (or reload the page).</p>") end
  local text = type(args.text) == "string" and args.text or ""
  if text == "" then return redirect("/") end
  local created, msg = client(s.token):request("notes/create", { text = text })
  if not created then return page(502, "Not posted", "<p>" .. html_escape(msg) .. "</p>") end
  return redirect("/")
end

routes["POST /logout"] = function()
  local s, sid = form_session()
  if s then sessions:delete("sid:" .. sid) end
  return redirect("/", cookie("sid", "", 0))
end

function app.handle()
  if not HOST then
    return page(500, "Not configured", "<p>Start nginx with MISSKEY_HOST set (and `env MISSKEY_HOST;`).</p>")
  end
  local route = routes[ngx.req.get_method() .. " " .. ngx.var.uri]
  if not route then return page(404, "Not found", "<p><a href=\"/\">Home</a></p>") end
  return route()
end

return app
