--- misskey.testing.endpoints.meta: the server itself: meta, ping.
local json = require "misskey.json"
local common = require "misskey.testing.common"
local params = require "misskey.testing.params"

local null, array = json.null, json.array

local endpoints = {}

endpoints["meta"] = {
  params = params.object({ { "detail", params.BOOLEAN } }),
  handler = function(self, ps)
    local m = {
      maintainerName = null, maintainerEmail = null, version = self._opts.version or common.VERSION,
      providesTarball = false, name = self._opts.name or "Fake Misskey", shortName = null, uri = self.base_url,
      description = "An in-process fake Misskey server (misskey.testing).", langs = array{}, tosUrl = null,
      repositoryUrl = "https://github.com/misskey-dev/misskey",
      feedbackUrl = "https://github.com/misskey-dev/misskey/issues/new", defaultDarkTheme = null,
      defaultLightTheme = null, disableRegistration = true, emailRequiredForSignup = false,
      enableHcaptcha = false, hcaptchaSiteKey = null, enableMcaptcha = false, mcaptchaSiteKey = null,
      mcaptchaInstanceUrl = null, enableRecaptcha = false, recaptchaSiteKey = null, enableTurnstile = false,
      turnstileSiteKey = null, enableTestcaptcha = false, googleAnalyticsMeasurementId = null,
      swPublickey = null, mascotImageUrl = "/assets/ai.png", bannerUrl = null, serverErrorImageUrl = null,
      infoImageUrl = null, notFoundImageUrl = null, iconUrl = null, maxNoteTextLength = common.MAX_NOTE_TEXT_LENGTH,
      ads = array{}, notesPerOneAd = 0, enableEmail = false, enableServiceWorker = false,
      translatorAvailable = false, sentryForFrontend = null, mediaProxy = self.base_url .. "/proxy",
      enableUrlPreview = false, backgroundImageUrl = null, impressumUrl = null, logoImageUrl = null,
      privacyPolicyUrl = null, inquiryUrl = null, serverRules = array{}, themeColor = null,
      noteSearchableScope = "local", maxFileSize = 262144000, federation = "none",
    }
    if ps.detail ~= false then
      m.features = {
        registration = false, emailRequiredForSignup = false, localTimeline = true, globalTimeline = true,
        hcaptcha = false, turnstile = false, recaptcha = false, objectStorage = false, serviceWorker = false,
        miauth = true,
      }
      m.proxyAccountName = null
      m.requireSetup = false
      m.cacheRemoteFiles = false
      m.cacheRemoteSensitiveFiles = false
    end
    return m
  end,
}

endpoints["ping"] = {
  handler = function(self) return { pong = self._clock } end,
}
return endpoints
