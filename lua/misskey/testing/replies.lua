--- misskey.testing.replies: the fake's HTTP replies, shaped as Misskey's:
-- JSON bodies with its headers, API errors with the status and
-- WWW-Authenticate that ApiCallService derives from them, and Fastify's own
-- 400/404 bodies.
local json = require "misskey.json"
local common = require "misskey.testing.common"

local pairs = pairs

local replies = {}

-- Misskey's common errors (the ones any endpoint may answer).
replies.COMMON_ERRORS = {
  CREDENTIAL_REQUIRED = { id = "1384574d-a912-4b81-8601-c7b1c4085df1", message = "Credential required.",
                          status = 401 },
  INVALID_PARAM = { id = "3d81ceae-475f-4600-b2a8-2bc116157532", message = "Invalid param." },
  UNKNOWN_API_ENDPOINT = { id = "2ca3b769-540a-4f08-9dd5-b5a825b6d0f1", message = "Unknown API endpoint.",
                           status = 404 },
  INTERNAL_ERROR = { id = "5d37dbcb-891e-41ca-a3d6-e690c97775ac", kind = "server", status = 500,
                     message = "Internal error occurred. Please contact us if the error persists." },
  RATE_LIMIT_EXCEEDED = { id = "d5826d14-3982-4d2e-8011-b9e9f02499ef", status = 429,
                          message = "Rate limit exceeded. Please try again later." },
}

local AUTH_FAILED_MESSAGE = "Authentication failed. Please ensure your token is correct."

local JSON_HEADERS = {
  ["content-type"] = "application/json; charset=utf-8",
  ["cache-control"] = "private, max-age=0, must-revalidate",
  ["access-control-allow-origin"] = "*",
}

--- A JSON reply: `value` encoded, Misskey's headers plus `extra`.
function replies.json(status, value, extra)
  local headers = common.copy(JSON_HEADERS)
  for k, v in pairs(extra or {}) do headers[k] = v end
  return { status = status, headers = headers, body = json.encode(value) }
end

--- An endpoint's answer of no value: 204 with Misskey's headers, no body.
function replies.no_content()
  return { status = 204, headers = { ["cache-control"] = JSON_HEADERS["cache-control"],
    ["access-control-allow-origin"] = "*" }, body = "" }
end

--- A bare status, as Fastify answers what never reaches Misskey.
function replies.bare(status)
  return { status = status, headers = {}, body = "" }
end

local function error_body(code, def, info)
  local e = { message = def.message, code = code, id = def.id, kind = def.kind or "client" }
  if info ~= nil then e.info = info end
  return { error = e }
end

--- The status and headers Misskey's ApiCallService gives an ApiError.
function replies.api_error(code, def, info)
  local kind, status, headers = def.kind or "client", def.status, {}
  if status == 401 then
    headers["www-authenticate"] = 'Bearer realm="Misskey"'
  elseif code == "RATE_LIMIT_EXCEEDED" then
    status = 429
  elseif kind == "client" then
    headers["www-authenticate"] = ('Bearer realm="Misskey", error="invalid_request", error_description="%s"')
      :format(def.message)
    status = status or 400
  elseif kind == "permission" then
    if code == "PERMISSION_DENIED" then
      headers["www-authenticate"] = ('Bearer realm="Misskey", error="insufficient_scope", error_description="%s"')
        :format(def.message)
    end
    status = status or 403
  else
    status = status or 500
  end
  return replies.json(status, error_body(code, def, info), headers)
end

--- 401 AUTHENTICATION_FAILED: a token the server does not know.
function replies.auth_failed()
  return replies.json(401, error_body("AUTHENTICATION_FAILED",
    { id = "b0a7f5f8-dc2f-4171-b91f-de88ad238e14", message = AUTH_FAILED_MESSAGE }), {
    ["www-authenticate"] = ('Bearer realm="Misskey", error="invalid_token", error_description="%s"')
      :format(AUTH_FAILED_MESSAGE),
  })
end

--- Fastify's own replies (no Misskey error body: the client reports kind "http").
function replies.fastify(status, code, message)
  local phrase = ({ [400] = "Bad Request", [404] = "Not Found" })[status]
  local body = { statusCode = status, error = phrase, message = message }
  if code then body.code = code end
  return replies.json(status, body)
end

return replies
