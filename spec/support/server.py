#!/usr/bin/python3
"""Local Misskey-like HTTP server for the specs (aiohttp, 127.0.0.1 only).

Run as `/usr/bin/python3 spec/support/server.py [--tls CERT KEY]`. It binds a free port and prints
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


# Requests held by /api/test/hold: how many at once, in what order they came,
# and how many the client gave up on (its connection closed mid-wait).
HOLD = {"inflight": 0, "max_inflight": 0, "order": [], "completed": 0, "cancelled": 0}


async def hold(request):
    """Holds the request `delay` seconds (default 0.3), counting concurrency."""
    params = await json_params(request)
    HOLD["order"].append(params.get("key"))
    HOLD["inflight"] += 1
    HOLD["max_inflight"] = max(HOLD["max_inflight"], HOLD["inflight"])
    try:
        await asyncio.sleep(float(params.get("delay", 0.3)))
        HOLD["completed"] += 1
    except asyncio.CancelledError:
        HOLD["cancelled"] += 1  # aiohttp cancels the handler when the peer disconnects
        raise
    finally:
        HOLD["inflight"] -= 1
    return reply({"key": params.get("key")})


async def hold_stats(request):
    return reply(HOLD)


async def hold_reset(request):
    HOLD.update(inflight=0, max_inflight=0, order=[], completed=0, cancelled=0)
    return reply(HOLD)


ROUTES = {
    "test/hold": hold,
    "test/hold/stats": hold_stats,
    "test/hold/reset": hold_reset,
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


# ---- HTTP hardening, uploads and client:http (spec/tls_spec, limits_spec, upload_spec, http_spec) ----

def int_param(params, key, default, lo=0, hi=1 << 31):
    v = params.get(key, default)
    return min(max(v, lo), hi) if isinstance(v, int) and not isinstance(v, bool) else default


async def chunked(request):
    """`size` bytes of "x" in `chunk`-byte pieces, chunked: no Content-Length."""
    params = await json_params(request)
    size, chunk = int_param(params, "size", 1024), int_param(params, "chunk", 65536, 1)
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    sent = 0
    try:
        while sent < size:
            n = min(chunk, size - sent)
            await resp.write(b"x" * n)
            sent += n
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client gave up (its size cap): expected
    return resp


async def gzipped(request):
    """A gzip-encoded JSON object that inflates to about `size` bytes; it says
    which Accept-Encoding the request advertised. Compressed while sent, so a
    large `size` (a "bomb": zeros compress ~1000:1) costs the server no memory."""
    import zlib
    params = await json_params(request)
    size = int_param(params, "size", 1024)
    head = json.dumps({"acceptEncoding": request.headers.get("Accept-Encoding"), "size": size})[:-1]
    head = (head + ',"pad":"').encode()
    tail = b'"}'
    resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    z = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
    left = max(0, size - len(head) - len(tail))
    block = b"0" * (1 << 20)
    try:
        await resp.write(z.compress(head))
        while left > 0:
            n = min(left, len(block))
            out = z.compress(block[:n])
            if out:
                await resp.write(out)
            left -= n
        await resp.write(z.compress(tail) + z.flush())
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client gave up (its size cap): expected
    return resp


async def dribble(request):
    """Headers at once, then one byte every `interval` seconds (`bytes` in all)."""
    params = await json_params(request)
    total = int_param(params, "bytes", 30, 1, 3600)
    interval = params.get("interval", 1)
    interval = float(interval) if isinstance(interval, (int, float)) else 1.0
    resp = web.StreamResponse(headers={"Content-Type": "text/plain", "Content-Length": str(total)})
    await resp.prepare(request)
    try:
        for _ in range(total):
            await resp.write(b".")
            await asyncio.sleep(interval)
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client gave up (its low-speed limit): expected
    return resp


async def target(request):
    """The request line's target as sent: absolute-form through a proxy."""
    await request.read()
    return reply({"method": request.method, "target": request.raw_path, "host": request.host,
                  "proxyHeaders": {k: v for k, v in request.headers.items() if k.lower().startswith("proxy-")}})


BLACKHOLE = []


async def blackhole(request):
    """A 127.0.0.1 port whose listen queue is full and never accepted: the
    kernel drops new SYNs, so a connect there hangs until the client's timeout."""
    import socket
    if not BLACKHOLE:
        lsock = socket.socket()
        lsock.bind((HOST, 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        fillers = []
        for _ in range(4):  # more than the queue (backlog 0 holds 1) ever takes
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect((HOST, port))
            except BlockingIOError:
                pass
            fillers.append(c)
        await asyncio.sleep(0.1)
        BLACKHOLE.extend([lsock, port, fillers])
    return reply({"port": BLACKHOLE[1]})


async def drive_files_create(request):
    """Misskey's only multipart endpoint, read as a stream: the file part is
    hashed and counted chunk by chunk, never held in memory. The reply is a
    DriveFile-like object plus `test`, what the server saw (protocol.md 4)."""
    import hashlib
    if not request.content_type.startswith("multipart/form-data"):
        return web.Response(status=400)  # Misskey: no multipart data, 400 with no body
    reader = await request.multipart()
    order, fields, file_info = [], {}, None
    while True:
        part = await reader.next()
        if part is None:
            break
        order.append(part.name)
        if part.filename is not None:
            md5, size = hashlib.md5(), 0
            while True:
                chunk = await part.read_chunk(1 << 18)
                if not chunk:
                    break
                md5.update(chunk)
                size += len(chunk)
            file_info = {"field": part.name, "filename": part.filename, "size": size, "md5": md5.hexdigest(),
                         "type": part.headers.get("Content-Type")}
        else:
            fields[part.name] = (await part.read(decode=True)).decode("utf-8", "replace")
    auth = request.headers.get("Authorization")
    if "i" not in fields and not auth:
        return api_error(401, "Credential required.", "CREDENTIAL_REQUIRED", "1384574d-a912-4b81-8601-c7b1c4085df1")
    if file_info is None or file_info["field"] != "file":
        return api_error(400, "File required.", "FILE_REQUIRED", "4267801e-70d1-416a-b011-4ee502885d8b")
    name = fields.get("name", file_info["filename"])
    if not name or not name.strip() or name == "blob":
        name = None
    return reply({
        "id": "9xfile%06d" % (len(order) * 1000 + file_info["size"] % 1000),
        "createdAt": "2026-05-21T00:00:00.000Z",
        "name": name,
        "type": file_info["type"] or "application/octet-stream",
        "md5": file_info["md5"],
        "size": file_info["size"],
        "isSensitive": fields.get("isSensitive") == "true",
        "comment": fields.get("comment"),
        "folderId": fields.get("folderId"),
        "test": {
            "order": order,
            "fields": fields,
            "filename": file_info["filename"],
            "authorization": auth,
            "iBeforeFile": "i" in order and order.index("i") < order.index("file"),
            "contentType": request.content_type,
        },
    })


ROUTES.update({
    "test/chunked": chunked,
    "test/gzip": gzipped,
    "test/dribble": dribble,
    "test/target": target,
    "test/blackhole": blackhole,
    "drive/files/create": drive_files_create,
})


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
    ssl_context = None
    if "--tls" in sys.argv:  # --tls CERT KEY: serve https with that certificate
        import ssl
        i = sys.argv.index("--tls")
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(sys.argv[i + 1], sys.argv[i + 2])
    site = web.TCPSite(runner, HOST, 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    sys.stdout.write("PORT %d PID %d\n" % (port, os.getpid()))
    sys.stdout.flush()
    await watch_parent(parent)


if __name__ == "__main__":
    asyncio.run(main())
