"""A user's webhooks for the test server (spec/support/server.py installs these routes).

i/webhooks/create, list, show, update, delete and test answer as Misskey 2026.5.4 does (the secret
in clear in list and show; i/webhooks/test is `secure`: a token that is not native, i.e. not 16
letters and digits, gets ACCESS_DENIED, as the real server answers a MiAuth token). Deliveries are
real HTTP POSTs from this process, as Misskey's job queue makes them: the body
{server, hookId, userId, eventId, createdAt, type, body} and the X-Misskey-Hook-* headers, sent in
the background after the request that caused them was answered. Control routes:
  test/webhooks/deliver {username, type, body}  a real event of that user's (to each active webhook
                                                that subscribes to `type`)
  test/webhooks/log                             every delivery: {url, type, eventId, status, error}
  test/webhooks/reset
"""
import asyncio
import json
import re
import time
import uuid

import aiohttp

EVENT_TYPES = ["mention", "unfollow", "follow", "followed", "note", "reply", "renote", "reaction"]
LIMIT = 3  # Misskey's default role policy, webhookLimit

STATE = {"hooks": [], "log": [], "seq": 0, "tasks": set()}

ACCESS_DENIED = ("Access denied.", "ACCESS_DENIED", "56f35758-7dd5-468b-8439-5d6fb8ec9b8e")


def install(routes, reply, api_error, json_params, tokens):
    """Adds the routes to `routes`; `tokens` maps a token to its user ({id, username, ...})."""

    def user_of(request, params):
        token = params.get("i")
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[7:]
        if token is None:
            return None, None, api_error(401, "Credential required.", "CREDENTIAL_REQUIRED",
                                         "1384574d-a912-4b81-8601-c7b1c4085df1")
        user = tokens.get(token)
        if user is None:
            return None, None, api_error(401, "Authentication failed. Please ensure your token is correct.",
                                         "AUTHENTICATION_FAILED", "b0a7f5f8-dc2f-4171-b91f-de88ad238e14")
        return user, token, None

    def invalid(param, reason):
        return api_error(400, "Invalid param.", "INVALID_PARAM", "3d81ceae-475f-4600-b2a8-2bc116157532",
                         info={"param": param, "reason": reason})

    def no_such(id_):
        return api_error(400, "No such webhook.", "NO_SUCH_WEBHOOK", id_)

    def pack(hook):
        return {k: hook[k] for k in ("id", "userId", "name", "on", "url", "secret", "active",
                                     "latestSentAt", "latestStatus")}

    def owned(user, params):
        for hook in STATE["hooks"]:
            if hook["id"] == params.get("webhookId") and hook["userId"] == user["id"]:
                return hook
        return None

    def check_on(on):
        return isinstance(on, list) and all(e in EVENT_TYPES for e in on)

    async def deliver(request, hook, type_, body, url=None, secret=None):
        port = request.transport.get_extra_info("sockname")[1]
        event = {"server": "http://127.0.0.1:%d" % port, "hookId": hook["id"], "userId": hook["userId"],
                 "eventId": str(uuid.uuid4()), "createdAt": int(time.time() * 1000), "type": type_, "body": body}
        headers = {"Content-Type": "application/json", "User-Agent": "Misskey-Hooks",
                   "X-Misskey-Host": "127.0.0.1:%d" % port, "X-Misskey-Hook-Id": hook["id"],
                   "X-Misskey-Hook-Secret": secret if secret is not None else hook["secret"]}
        record = {"url": url or hook["url"], "type": type_, "eventId": event["eventId"], "status": None,
                  "error": None}
        STATE["log"].append(record)
        data = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(record["url"], data=data, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=5)) as res:
                    record["status"] = res.status
                    hook["latestStatus"] = res.status
        except Exception as e:  # noqa: BLE001 - any failure is the delivery's record
            record["error"] = "%s: %s" % (type(e).__name__, e)
        hook["latestSentAt"] = "2026-05-21T00:00:00.000Z"

    def in_background(coro):
        task = asyncio.get_running_loop().create_task(coro)
        STATE["tasks"].add(task)
        task.add_done_callback(STATE["tasks"].discard)

    async def create(request):
        params = await json_params(request)
        user, _, refused = user_of(request, params)
        if refused:
            return refused
        for key in ("name", "url", "on"):
            if key not in params:
                return invalid("#/required", "must have required property '%s'" % key)
        if not check_on(params["on"]):
            return invalid("#/properties/on/items/enum", "must be equal to one of the allowed values")
        if sum(1 for h in STATE["hooks"] if h["userId"] == user["id"]) >= LIMIT:
            return api_error(400, "You cannot create webhook any more.", "TOO_MANY_WEBHOOKS",
                             "87a9bb19-111e-4e37-81d3-a3e7426453b0")
        STATE["seq"] += 1
        hook = {"id": "9hook%06d" % STATE["seq"], "userId": user["id"], "name": params["name"],
                "url": params["url"], "secret": params.get("secret", ""), "on": params["on"], "active": True,
                "latestSentAt": None, "latestStatus": None}
        STATE["hooks"].append(hook)
        return reply(pack(hook))

    async def list_(request):
        params = await json_params(request)
        user, _, refused = user_of(request, params)
        if refused:
            return refused
        return reply([pack(h) for h in STATE["hooks"] if h["userId"] == user["id"]])

    async def show(request):
        params = await json_params(request)
        user, _, refused = user_of(request, params)
        if refused:
            return refused
        hook = owned(user, params)
        if hook is None:
            return no_such("50f614d9-3047-4f7e-90d8-ad6b2d5fb098")
        return reply(pack(hook))

    async def update(request):
        params = await json_params(request)
        user, _, refused = user_of(request, params)
        if refused:
            return refused
        hook = owned(user, params)
        if hook is None:
            return no_such("fb0fea69-da18-45b1-828d-bd4fd1612518")
        if "on" in params and not check_on(params["on"]):
            return invalid("#/properties/on/items/enum", "must be equal to one of the allowed values")
        for key in ("name", "url", "on", "active"):
            if key in params:
                hook[key] = params[key]
        if "secret" in params:
            hook["secret"] = params["secret"] or ""
        return web_no_content()

    async def delete(request):
        params = await json_params(request)
        user, _, refused = user_of(request, params)
        if refused:
            return refused
        hook = owned(user, params)
        if hook is None:
            return no_such("bae73e5a-5522-4965-ae19-3a8688e71d82")
        STATE["hooks"].remove(hook)
        return web_no_content()

    async def test(request):
        params = await json_params(request)
        user, token, refused = user_of(request, params)
        if refused:
            return refused
        if not re.fullmatch(r"[0-9A-Za-z]{16}", token):  # `secure`: native tokens only
            return api_error(400, *ACCESS_DENIED)
        hook = owned(user, params)
        if hook is None:
            return no_such("0c52149c-e913-18f8-5dc7-74870bfe0cf9")
        type_ = params.get("type")
        if type_ not in EVENT_TYPES:
            return invalid("#/properties/type/enum", "must be equal to one of the allowed values")
        override = params.get("override") or {}
        dummy = {"id": "dummy-mention-1" if type_ == "mention" else "dummy-note-1",
                 "text": "@dummy2 This is a mention to you." if type_ == "mention"
                 else "This is a dummy note for testing purposes.",
                 "userId": "dummy-user-1", "visibility": "public",
                 "user": {"id": "dummy-user-1", "username": "dummy1", "host": None}}
        payload = {"user": dummy["user"]} if type_ in ("follow", "followed", "unfollow") else {"note": dummy}
        in_background(deliver(request, hook, type_, payload, override.get("url"), override.get("secret")))
        return web_no_content()

    async def test_deliver(request):
        params = await json_params(request)
        for hook in STATE["hooks"]:
            owner = next((u for u in tokens.values() if u["id"] == hook["userId"]), None)
            if owner and owner["username"] == params.get("username") and hook["active"] \
                    and params.get("type") in hook["on"]:
                in_background(deliver(request, hook, params["type"], params.get("body", {})))
        return reply({"ok": True})

    async def test_log(request):
        return reply(STATE["log"])

    async def test_reset(request):
        STATE["hooks"].clear()
        STATE["log"].clear()
        return reply({"ok": True})

    from aiohttp import web

    def web_no_content():
        return web.Response(status=204, headers={"Cache-Control": "private, max-age=0, must-revalidate"})

    routes.update({
        "i/webhooks/create": create,
        "i/webhooks/list": list_,
        "i/webhooks/show": show,
        "i/webhooks/update": update,
        "i/webhooks/delete": delete,
        "i/webhooks/test": test,
        "test/webhooks/deliver": test_deliver,
        "test/webhooks/log": test_log,
        "test/webhooks/reset": test_reset,
    })
