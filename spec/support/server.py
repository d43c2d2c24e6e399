#!/usr/bin/python3
"""Local Misskey-like HTTP server for the specs (aiohttp, 127.0.0.1 only).

Run as `/usr/bin/python3 spec/support/server.py`. It binds a free port and prints
one line `PORT <n> PID <pid>` on stdout. It exits on SIGTERM, and within 0.2 s
once its parent (the Lua test process that popen'ed it with `exec`) dies or
closes the stdout pipe, so a crashed or careless test run never leaves it
behind nor hangs in pclose(). Error bodies and headers follow
/work/shared/misskey/protocol.md sections 1-3.
"""
import asyncio
import base64
import json
import math
import os
import select
import signal
import sys
import time
from functools import partial

from aiohttp import web

HOST = "127.0.0.1"

# Counters for /api/test/count: requests on /api/* and distinct client sockets.
STATS = {"requests": 0, "peers": set()}


def reply(obj, status=200, headers=None):
    """JSON the way Misskey sends it: compact, non-ASCII as raw UTF-8."""
    dumps = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
    return web.json_response(obj, status=status, headers=headers, dumps=dumps)


def api_error(status, message, code, id_, kind="client", info=None, headers=None):
    """A Misskey error reply: {"error": {message, code, id, kind, info?}}."""
    err = {"message": message, "code": code, "id": id_, "kind": kind}
    if info is not None:
        err["info"] = info
    if headers is None and kind == "client":
        # Misskey sets this on every client-kind error (protocol.md section 2).
        headers = {"WWW-Authenticate": 'Bearer realm="Misskey", error="invalid_request", '
                                       'error_description="%s"' % message}
    return reply({"error": err}, status=status, headers=headers)


async def json_params(request):
    """The request body as a JSON object; empty or unparsable bodies give {}."""
    try:
        params = json.loads(await request.read())
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


@web.middleware
async def api_middleware(request, handler):
    if request.path.startswith("/api/"):
        STATS["requests"] += 1
        peer = request.transport and request.transport.get_extra_info("peername")
        if peer:
            STATS["peers"].add(peer[1])
    resp = await handler(request)
    if request.path.startswith("/api/"):
        # Every real Misskey /api reply carries this header.
        resp.headers.setdefault("Cache-Control", "private, max-age=0, must-revalidate")
    return resp


async def echo(request):
    raw = await request.read()
    headers = {}
    for name, value in request.headers.items():
        name = name.lower()
        headers[name] = headers[name] + ", " + value if name in headers else value
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return reply({
        "method": request.method,
        "path": request.rel_url.raw_path,  # as sent, still percent-encoded
        "query": request.rel_url.raw_query_string,  # undecoded
        "headers": headers,
        "body": raw.decode("utf-8", "replace"),
        "json": parsed,
        # Exact bytes, for binary (multipart) uploads that are not valid UTF-8.
        "length": len(raw),
        "bodyBase64": base64.b64encode(raw).decode("ascii"),
    })


async def meta(request):
    port = request.transport.get_extra_info("sockname")[1]
    return reply({
        "name": "Test",
        "version": "2026.5.4",
        "uri": "http://%s:%d" % (HOST, port),
        "description": "Local test server",
        "langs": [],
        "maintainerName": None,
        "maxNoteTextLength": 3000,
        "maxFileSize": 262144000,
        "disableRegistration": False,
        "enableEmail": False,
        "features": {"registration": True, "localTimeline": True, "globalTimeline": True,
                     "miauth": True, "objectStorage": False, "serviceWorker": False},
    })


async def no_content(request):
    return web.Response(status=204)


async def error_invalid_param(request):
    return api_error(400, "Invalid param.", "INVALID_PARAM", "3d81ceae-475f-4600-b2a8-2bc116157532",
                     info={"param": "#/properties/limit/maximum", "reason": "must be <= 100"})


async def error_auth(request):
    message = "Authentication failed. Please ensure your token is correct."
    return api_error(401, message, "AUTHENTICATION_FAILED", "b0a7f5f8-dc2f-4171-b91f-de88ad238e14",
                     headers={"WWW-Authenticate": 'Bearer realm="Misskey", error="invalid_token", '
                                                  'error_description="%s"' % message})


async def error_permission(request):
    message = "Your app does not have the necessary permissions to use this endpoint."
    return api_error(403, message, "PERMISSION_DENIED", "1370e5b7-d4eb-4566-bb1d-7748ee6a1838",
                     kind="permission",
                     headers={"WWW-Authenticate": 'Bearer realm="Misskey", error="insufficient_scope", '
                                                  'error_description="%s"' % message})


async def error_rate_limit(request):
    params = await json_params(request)
    reset_in = params.get("resetIn", 2)
    reset_in = float(reset_in) if isinstance(reset_in, (int, float)) else 2.0
    reset_ms = math.floor((time.time() + reset_in) * 1000)
    info = {"remaining": 0, "reset": reset_ms // 1000, "resetMs": reset_ms, "total": 300}
    # Misskey sends only Retry-After on 429 (no WWW-Authenticate); the client must
    # fall back to info.resetMs when the header is missing.
    headers = {} if params.get("noRetryAfter") is True else {"Retry-After": str(max(0, math.ceil(reset_in)))}
    return api_error(429, "Rate limit exceeded. Please try again later.", "RATE_LIMIT_EXCEEDED",
                     "d5826d14-3982-4d2e-8011-b9e9f02499ef", info=info, headers=headers)


async def error_internal(request):
    return api_error(500, "Internal error occurred. Please contact us if the error persists.",
                     "INTERNAL_ERROR", "5d37dbcb-891e-41ca-a3d6-e690c97775ac", kind="server",
                     info={"e": {"message": "boom", "code": "X", "id": "y"}})


async def error_no_such_user(request):
    return api_error(404, "No such user.", "NO_SUCH_USER", "4362f8dc-731f-4ad8-a694-be5a88922a24")


async def bad_gateway(request):
    # What a reverse proxy in front of Misskey sends when the backend is down.
    filler = "<!-- a padding comment to make the page about as big as nginx's -->\n" * 28
    html = ("<html><head><title>502 Bad Gateway</title></head>\n<body>\n"
            "<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n"
            + filler + "</body>\n</html>\n")
    return web.Response(status=502, text=html, content_type="text/html")


async def invalid_json(request):
    return web.Response(status=200, body=b'{"ok": tru', content_type="application/json")


async def truncated(request):
    # Promise 1000 bytes, send 10, hang up. aiohttp cannot do this itself, so
    # write on the socket directly; its later write of the returned response
    # fails quietly on the closed transport.
    await request.read()
    request.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 1000\r\n\r\n" + b'{"data": "')
    request.transport.close()
    return web.Response()


async def slow(request):
    delay = (await json_params(request)).get("delay", 2)
    delay = delay if isinstance(delay, (int, float)) else 2
    await asyncio.sleep(delay)
    return reply({"slept": delay})


async def close(request):
    await request.read()  # drain the body so the close is a FIN, not a RST
    request.transport.close()
    return web.Response()


async def status(request):
    params = await json_params(request)
    body = params.get("body", "")
    content_type = params.get("contentType")
    if not isinstance(body, str):  # a JSON value: send it encoded
        body = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        content_type = content_type or "application/json"
    resp = web.Response(status=int(params.get("status", 200)), body=body.encode("utf-8"),
                        headers={str(k): str(v) for k, v in (params.get("headers") or {}).items()})
    if content_type:
        resp.content_type = content_type
    return resp


async def count(request):
    return reply({"count": STATS["requests"], "connections": len(STATS["peers"])})


def fake_note(i):
    """One note with the fields and rough size (~2.3 KB) of a real Misskey Note."""
    created = "2026-05-%02dT%02d:%02d:00.000Z" % (1 + i % 28, i % 24, i % 60)
    return {
        "id": "a%09x" % (0x9f000000 + i),
        "createdAt": created,
        "userId": "9xuser0001",
        "user": {
            "id": "9xuser0001", "name": "Test User \u2728", "username": "tester", "host": None,
            "avatarUrl": "http://127.0.0.1/files/avatar-0001.webp",
            "avatarBlurhash": "eQFFaE~qofj[ayj[ayfQfQfQ_3j[ayj[ayfQfQfQfQ",
            "avatarDecorations": [], "isBot": False, "isCat": True,
            "emojis": {}, "onlineStatus": "online",
            "badgeRoles": [{"name": "Tester", "iconUrl": None, "displayOrder": 0}],
        },
        "text": ("Note %d: \u3053\u3093\u306b\u3061\u306f Misskey! :blobcat: #test "
                 "@someone@example.com https://example.com/page?x=1 " % i) + "lorem ipsum " * 74,
        "cw": None,
        "visibility": "public",
        "localOnly": False,
        "reactionAcceptance": None,
        "renoteCount": i % 7,
        "repliesCount": i % 3,
        "reactionCount": 6,
        "reactions": {"\u2764": 3, ":blobcat@.:": 2, "\U0001f44d": 1},
        "reactionEmojis": {"blobcat@.": "http://127.0.0.1/emoji/blobcat.png"},
        "emojis": {"blobcat": "http://127.0.0.1/emoji/blobcat.png"},
        "tags": ["test"],
        "fileIds": ["9xfile%04d" % i],
        "files": [{
            "id": "9xfile%04d" % i, "createdAt": created, "name": "image-%d.png" % i,
            "type": "image/png", "md5": "d41d8cd98f00b204e9800998ecf8427e", "size": 12345,
            "isSensitive": False, "blurhash": "e0E2}Rof00ayWB~qj[ayfQj[00ay_3fQof",
            "properties": {"width": 640, "height": 480},
            "url": "http://127.0.0.1/files/image-%d.png" % i,
            "thumbnailUrl": "http://127.0.0.1/files/thumbnail-%d.webp" % i,
            "comment": None, "folderId": None, "folder": None, "userId": None, "user": None,
        }],
        "replyId": None,
        "renoteId": None,
        "mentions": ["9xuser0002"],
        "uri": None,
        "url": None,
        "clippedCount": 0,
        "myReaction": None,
    }


async def large(request):
    n = (await json_params(request)).get("n", 100)
    n = n if isinstance(n, int) and n >= 0 else 100
    return reply([fake_note(i) for i in range(n)])


ROUTES = {
    "meta": meta,
    "test/no-content": no_content,
    "test/error/invalid-param": error_invalid_param,
    "test/error/auth": error_auth,
    "test/error/permission": error_permission,
    "test/error/rate-limit": error_rate_limit,
    "test/error/internal": error_internal,
    "test/error/no-such-user": error_no_such_user,
    "test/bad-gateway": bad_gateway,
    "test/invalid-json": invalid_json,
    "test/truncated": truncated,
    "test/slow": slow,
    "test/close": close,
    "test/status": status,
    "test/count": count,
    "test/large": large,
}


async def fallback(request):
    name = request.match_info["name"]
    if request.method == "GET" and name in ROUTES:
        # Misskey answers GET on a POST-only endpoint with 405 and no body.
        return web.Response(status=405)
    # Fastify-style 404 for endpoints that do not exist.
    return api_error(404, "Unknown API endpoint.", "UNKNOWN_API_ENDPOINT",
                     "2ca3b769-540a-4f08-9dd5-b5a825b6d0f1", headers={})


def make_app():
    # Allow big uploads through echo; Misskey's own 1 MiB limit is not modelled.
    app = web.Application(middlewares=[api_middleware], client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/api/test/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    for name, handler in ROUTES.items():
        app.router.add_post("/api/" + name, handler)
    app.router.add_route("*", "/api/{name:.*}", fallback)  # must stay last
    return app


def parent_gone(parent, stdout_poll):
    # Reparented: the Lua process that started us died.
    if os.getppid() != parent:
        return True
    # It closed its end of our stdout pipe: that is pclose(), run by stop() or by
    # the GC of a forgotten popen handle at Lua exit, and pclose then waits for
    # us to exit, so waiting for the Lua process to die would deadlock.
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in stdout_poll.poll(0))


async def watch_parent(parent):
    stdout_poll = select.poll()
    stdout_poll.register(sys.stdout.fileno(), 0)  # POLLERR/POLLHUP are always reported
    while not parent_gone(parent, stdout_poll):
        await asyncio.sleep(0.2)
    os._exit(0)


async def main():
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    sys.stdout.write("PORT %d PID %d\n" % (port, os.getpid()))
    sys.stdout.flush()
    await watch_parent(parent)


if __name__ == "__main__":
    asyncio.run(main())
