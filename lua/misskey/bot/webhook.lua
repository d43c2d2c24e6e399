--- misskey.bot.webhook: the bot's second source of events, Misskey's webhook
-- deliveries. The same handlers, commands and wait_for take them as the
-- stream's events (misskey.bot.dispatch), and an event that arrives by both
-- runs once. Part of misskey.bot, which calls this file with its Bot class
-- and module table to add these methods:
--
--   bot:webhook{ url = …, listen = { port = … }, … }   configure (before start)
--   bot:webhook_handler()                               for an HTTP host of your own
--   bot:remove_webhook([name])                          unregister, forget the secret
--
-- At start, after `i`, the bot opens its listener (the built-in one,
-- misskey.webhook.listen, unless `listen = false`), registers the webhook on
-- the account (misskey.webhook.account: idempotent by name, the secret kept in
-- the credential store) and takes deliveries from then on. A delivery is
-- checked and answered by misskey.webhook.handler's receiver; the bot's
-- handlers run after the answer, in tasks of their own.
local account = require "misskey.webhook.account"
local argcheck = require "misskey.argcheck"
local core = require "misskey.core"
local handler = require "misskey.webhook.handler"
local listen = require "misskey.webhook.listen"
local loop = require "misskey.loop"
local seen = require "misskey.webhook.seen"

local opterror, argerror = argcheck.opterror, argcheck.argerror

-- The webhook events the bot takes, and the bot event each is.
local EVENTS = { "mention", "reply", "renote", "follow", "followed", "unfollow" }
local TAKES = {}
for _, e in ipairs(EVENTS) do TAKES[e] = true end

local OPTIONS = { url = true, name = true, events = true, listen = true, secret = true, register = true,
                  allow_plaintext_secret = true, store = true, remember = true, max_size = true }
local LISTEN_OPTIONS = { host = true, port = true, path = true, allow_remote = true, timeout = true,
                         max_head = true, max_connections = true }

local NOT_READY = { ["Content-Type"] = "text/plain; charset=utf-8", ["Retry-After"] = "60" }

---@param Bot misskey.Bot the bot class
---@param bot table misskey.bot (its WEBHOOK_NAME)
return function(Bot, bot)
  -- Where to listen when `listen` is not given: the URL's own address, when it
  -- is this machine's (http://127.0.0.1:PORT/path); nil otherwise.
  local function listen_from_url(url)
    local host, port, path = url:match("^[hH][tT][tT][pP]://([%d%.]+):(%d+)(/?[^?#]*)$")
    if not host then
      host, port, path = url:match("^[hH][tT][tT][pP]://%[(::1)%]:(%d+)(/?[^?#]*)$")
    end
    if not host or not host:find("^127%.") and host ~= "::1" then return nil end
    return { host = host, port = tonumber(port), path = path ~= "" and path or "/" }
  end

  local function check_listen(l, url)
    if l == false then return false end
    if l == nil then
      local from_url = url and listen_from_url(url)
      if not from_url then
        opterror("listen", "where should the bot take deliveries? listen = { port = N } (the address your"
          .. " server's URL reaches; host 127.0.0.1 by default), or listen = false and bot:webhook_handler()"
          .. " in an HTTP host of your own", 3)
      end
      return from_url
    end
    if type(l) ~= "table" then opterror("listen", "a table of listener options, or false, expected", 3) end
    for k in pairs(l) do
      if not LISTEN_OPTIONS[k] then opterror("listen", "unknown listener option '" .. tostring(k) .. "'", 3) end
    end
    local copy = {}
    for k, v in pairs(l) do copy[k] = v end
    return copy
  end

  --- bot:webhook{ url = "https://bot.example/hook"[, listen = { port = 8080 }, name, events, secret,
  -- register, allow_plaintext_secret, store, remember, max_size] } -> bot: the bot takes Misskey's
  -- webhook deliveries too (or only them, with misskey.bot(client, { stream = false })). Options:
  --   url       where Misskey delivers; plain http only to this machine (the secret travels in
  --             clear) unless allow_plaintext_secret = true. Default: the listener's own URL
  --   listen    the built-in listener's options (host "127.0.0.1", port, path, allow_remote,
  --             timeout, max_head, max_connections); default: the url's address when it is
  --             http://127.0.0.1:PORT/…; false: no listener (bot:webhook_handler() in a host)
  --   name      the webhook's name on the account (bot.WEBHOOK_NAME): registering is idempotent by it
  --   events    what Misskey sends: mention, reply, renote, follow, followed, unfollow (all by default)
  --   secret    the webhook's secret (default: kept in the credential store, made when missing)
  --   register  false: the webhook is registered already (its secret: `secret`, or the kept one)
  --   store, remember, max_size   the receiver's (misskey.webhook.handler)
  ---@param opts table
  ---@return table bot
  function Bot:webhook(opts)
    argcheck.self(self, Bot, "bot", "webhook")
    if type(opts) ~= "table" then argerror(1, "webhook", "options table expected, got " .. type(opts)) end
    argcheck.known_options(opts, OPTIONS)
    if self._running then error("bot:webhook: the bot runs already (configure its webhook before start)", 2) end
    if opts.url ~= nil then
      local why = account.check_url(opts.url, opts.allow_plaintext_secret == true)
      if why then opterror("url", why) end
    end
    local name = opts.name
    if name == nil then name = bot.WEBHOOK_NAME end
    if type(name) ~= "string" or name == "" or #name > 100 then
      opterror("name", "a name of 1 to 100 characters expected, got " .. tostring(name))
    end
    local events = EVENTS
    if opts.events ~= nil then
      events = account.check_events(opts.events, 1)
      for _, e in ipairs(events) do
        if not TAKES[e] then
          opterror("events", ("the bot takes %s; %s is not one"):format(table.concat(EVENTS, ", "), e))
        end
      end
    end
    if opts.secret ~= nil and (type(opts.secret) ~= "string" or opts.secret == "" or #opts.secret > 1024) then
      opterror("secret", "a string of 1 to 1024 characters expected")
    end
    if opts.register ~= nil and type(opts.register) ~= "boolean" then opterror("register", "boolean expected") end
    local l = check_listen(opts.listen, opts.url)
    if l and loop.runtime then -- the listener runs on the C engine, which only the default runtime has
      opterror("listen", "this runtime has no built-in listener (inside nginx: listen = false, and nginx"
        .. " answers the deliveries: README \"Webhooks\", a bot behind nginx)")
    end
    if opts.url == nil and not l then
      opterror("url", "where Misskey delivers: needed without a listener whose URL it could be")
    end
    local store = opts.store
    if store == nil then
      local ok, s = pcall(seen.new, opts.remember)
      if not ok then opterror("remember", "an integer >= 1 expected, got " .. tostring(opts.remember)) end
      store = s
    elseif type(store) ~= "table" or type(store.add) ~= "function" then
      opterror("store", "an object with add(id) expected (see misskey.webhook.seen)")
    end
    -- The options of the receiver, checked now (by webhook.handler's own check) rather than at start.
    local on = {}
    for _, e in ipairs(events) do
      on[e] = function(payload) self:_event(e, payload, "webhook") end
    end
    -- The bot's part of an event starts its own tasks, at once; a host that runs
    -- work after its answer gives its way (bot:webhook_handler(spawn)).
    local receiver_opts = { secret = opts.secret or "checked-at-start", on = on, store = store,
      max_size = opts.max_size, spawn = function(fn, ...)
        local later = self._webhook_spawn
        if later then return later(fn, ...) end
        fn(...)
      end }
    handler.receiver(receiver_opts, "webhook", 2)
    self._webhook = { url = opts.url, name = name, events = events, listen = l, secret = opts.secret,
      register = opts.register ~= false, allow_plaintext_secret = opts.allow_plaintext_secret == true,
      receiver_opts = receiver_opts }
    return self
  end

  --- bot:webhook_handler([spawn]) -> function(method, headers, body) -> status, headers, body:
  -- the bot's receiver for an HTTP host of your own (bot:webhook{ listen = false, … }), as
  -- webhook.handler's. Until the bot has started (its secret known) and once it stops, it
  -- answers 503, which Misskey retries later: a delivery the bot cannot take is not lost.
  -- `spawn(fn, ...)`: how the bot's part of an accepted event is started, for a host that
  -- runs work after its answer (misskey.ngx.webhook.spawn); by default, at once.
  ---@param spawn? fun(fn: function, ...)
  ---@return fun(method: string, headers: table, body: string|function|nil): integer, table, string
  function Bot:webhook_handler(spawn)
    argcheck.self(self, Bot, "bot", "webhook_handler")
    if not self._webhook then error("bot:webhook_handler: call bot:webhook{ … } first", 2) end
    if spawn ~= nil and type(spawn) ~= "function" then
      argerror(1, "webhook_handler", "function expected, got " .. type(spawn))
    end
    if spawn then self._webhook_spawn = spawn end
    return function(method, headers, body)
      local handle = self._webhook_handle
      if not handle or self._stopping or self._stopped then
        return 503, NOT_READY, "the bot is not running\n"
      end
      return handle(method, headers, body)
    end
  end

  --- bot:remove_webhook([name]) -> true (deleted) | false (none of that name) | nil, msg, err:
  -- deletes the account's webhook `name` (the configured one, else bot.WEBHOOK_NAME) and
  -- forgets its kept secret.
  ---@param name? string
  ---@return boolean|nil
  ---@return string|nil message
  ---@return table|nil err
  function Bot:remove_webhook(name)
    argcheck.self(self, Bot, "bot", "remove_webhook")
    if name ~= nil and (type(name) ~= "string" or name == "") then
      argerror(1, "remove_webhook", "webhook name expected")
    end
    name = name or (self._webhook and self._webhook.name) or bot.WEBHOOK_NAME
    return account.remove(self.client, name)
  end

  -- The URL a listener with these options will have, when it is known before
  -- it binds (a port of its own, not 0).
  local function url_of(l)
    if not l or not l.port or l.port == 0 then return nil end
    local host = l.host or "127.0.0.1"
    if host == "localhost" then host = "127.0.0.1" end
    return ("http://%s:%d%s"):format(host:find(":", 1, true) and ("[" .. host .. "]") or host, l.port, l.path or "/")
  end

  -- The webhook's secret: registered (created or updated), or kept. -> secret | nil, msg, err
  function Bot:_webhook_secret(url)
    local w = self._webhook
    if w.register then
      local hook, got, err = account.register(self.client, { name = w.name, url = url, events = w.events,
        secret = w.secret, allow_plaintext_secret = w.allow_plaintext_secret })
      if not hook then return nil, got, err end
      self.webhook_id = hook.id
      return got
    end
    if w.secret then return w.secret end
    local kept, msg, err = account.secret(self.client, w.name)
    if kept then return kept end
    return nil, msg or ("bot:webhook: register = false, and no secret is kept for the webhook %q (pass secret)")
      :format(w.name), err
  end

  -- At start (in the bot's main task, after `i`): the listener, the
  -- registration, the receiver. The secret is known before the listener binds
  -- whenever its URL is: a delivery to a webhook registered by an earlier run
  -- then never meets a listener that would refuse it (a 401 is final). Only a
  -- listener on a free port (port 0) binds first, to learn its URL; no webhook
  -- points there yet. -> true | nil, msg, err
  function Bot:_start_webhook()
    local w = self._webhook
    local url = w.url or url_of(w.listen)
    local secret, msg, err
    if url then
      secret, msg, err = self:_webhook_secret(url)
      if not secret then return nil, msg, err end
    end
    if w.listen then
      local lopts = {}
      for k, v in pairs(w.receiver_opts) do lopts[k] = v end
      for k, v in pairs(w.listen) do lopts[k] = v end
      -- Before the registration (port 0 only): a secret nobody has, so nothing passes.
      lopts.secret = secret or core.base64url(core.random(32))
      local listener
      listener, msg, err = listen.new(lopts)
      if not listener then return nil, msg, err end
      self._listener = listener
      if not url then
        url = listener.url
        secret, msg, err = self:_webhook_secret(url)
        if not secret then return nil, msg, err end
        listener:rekey(secret)
      end
    end
    local ropts = {}
    for k, v in pairs(w.receiver_opts) do ropts[k] = v end
    ropts.secret = secret
    self._webhook_handle = handler.new(ropts)
    self.webhook_url = url
    return true
  end

  function Bot:_stop_webhook()
    self._webhook_handle = nil
    if self._listener then self._listener:close() end
  end
end
