#!/usr/bin/python3
"""Local Misskey-like HTTP server for the specs (aiohttp, 127.0.0.1 only).

Run as `/usr/bin/python3 spec/support/server.py [--tls CERT KEY]`. It binds a free port and prints
one line `PORT <n> PID <pid>` on stdout. It exits on SIGTERM, and within 0.2 s
once its parent (the Lua test process that popen'ed it with `exec`) dies or
closes the stdout pipe, so a crashed or careless test run never leaves it
behind nor hangs in pclose(). Error bodies and headers follow
docs/protocol.md sections 1-3.
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
        # Misskey sets this on every client-kind error (docs/protocol.md section 2).
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
    DriveFile-like object plus `test`, what the server saw (docs/protocol.md section 4)."""
    if not request.content_type.startswith("multipart/form-data"):
        return web.Response(status=400)  # Misskey: no multipart data, 400 with no body
    try:
        return await read_upload(request)
    except ConnectionResetError:  # the client cancelled the upload (spec: a raising progress function)
        return web.Response(status=400)


async def read_upload(request):
    import hashlib
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
    if "testBomb" in fields:  # spec/hostile_http_spec.lua: the reply to an upload is a gzip bomb
        return await send_bomb(request, 1024)
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


# notes/create for `misskey post` (spec/cli_spec.lua): kept in NOTES, listed by test/notes/list.
NOTES = []


async def notes_create(request):
    params = await json_params(request)
    if "i" not in params and not request.headers.get("Authorization"):
        return api_error(401, "Credential required.", "CREDENTIAL_REQUIRED", "1384574d-a912-4b81-8601-c7b1c4085df1")
    if params.get("visibility", "public") not in ("public", "home", "followers", "specified"):
        return invalid_param("#/properties/visibility/enum", "must be equal to one of the allowed values")
    note = {"id": "9xnote%06d" % (len(NOTES) + 1), "createdAt": "2026-05-21T00:00:00.000Z",
            "text": params.get("text"), "cw": params.get("cw"), "visibility": params.get("visibility", "public"),
            "fileIds": params.get("fileIds", []), "userId": "9alice"}
    NOTES.append(note)
    return reply({"createdNote": note})


async def test_notes_list(request):
    return reply(NOTES)


ROUTES.update({
    "notes/create": notes_create,
    "test/notes/list": test_notes_list,
    "test/chunked": chunked,
    "test/gzip": gzipped,
    "test/dribble": dribble,
    "test/target": target,
    "test/blackhole": blackhole,
    "drive/files/create": drive_files_create,
})



# ---- hostile HTTP peers (spec/hostile_http_spec.lua) ----

def bomb_blocks():
    """Deflate output for 1 MiB of zeros, full-flushed so every block is byte-aligned and
    independent of the ones before: repeating it is a valid stream of any length. Made once."""
    import zlib
    if "blocks" not in BOMB:
        z = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
        first = z.compress(b"\0" * (1 << 20)) + z.flush(zlib.Z_FULL_FLUSH)
        again = z.compress(b"\0" * (1 << 20)) + z.flush(zlib.Z_FULL_FLUSH)
        BOMB["blocks"] = (first, again)
    return BOMB["blocks"]


BOMB = {}


async def gzip_bomb(request):
    """A 200 reply whose gzip body inflates to `mib` MiB of zeros (default 1024) from about
    1 KB per MiB. The stream has no end (no gzip trailer): a client that reads it all sees a
    broken encoding. `status` sets the status (an error reply can be a bomb too)."""
    params = await json_params(request)
    return await send_bomb(request, int_param(params, "mib", 1024, 1, 1 << 16),
                           int_param(params, "status", 200, 200, 599))


async def send_bomb(request, mib, status=200):
    first, again = bomb_blocks()
    resp = web.StreamResponse(status=status,
                              headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        await resp.write(first)
        for _ in range(mib - 1):
            await resp.write(again)
    except (ConnectionResetError, ConnectionError):
        pass  # the client gave up (its size cap): expected
    return resp


async def raw_flood(request, head, line, count):
    """Writes `head`, then `line` up to `count` times on the raw socket, as fast as the
    client reads (no more than 1 MiB waits in our buffer), until the client hangs up."""
    await request.read()
    transport = request.transport
    transport.write(head)
    batch = line * max(1, 65536 // len(line))
    sent = 0
    while sent < count and not transport.is_closing():
        transport.write(batch)
        sent += 65536 // len(line)
        while transport.get_write_buffer_size() > (1 << 20) and not transport.is_closing():
            await asyncio.sleep(0.005)
    transport.close()
    return web.Response()


async def endless_headers(request):
    """A status line, then header lines without end (`mib` MiB of them, default 1024)."""
    params = await json_params(request)
    line = b"X-Filler: " + b"f" * 88 + b"\r\n"  # 100 bytes
    count = int_param(params, "mib", 1024, 1, 1 << 16) * ((1 << 20) // len(line))
    return await raw_flood(request, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", line, count)


async def endless_continue(request):
    """"100 Continue" interim responses without end: each is a whole response head."""
    params = await json_params(request)
    line = b"HTTP/1.1 100 Continue\r\nX-Filler: " + b"c" * 40 + b"\r\n\r\n"
    count = int_param(params, "mib", 64, 1, 1 << 16) * ((1 << 20) // len(line))
    return await raw_flood(request, b"", line, count)


async def endless_trailers(request):
    """A chunked 200 with a short body, then trailer lines without end."""
    params = await json_params(request)
    line = b"X-Trailer: " + b"t" * 87 + b"\r\n"
    count = int_param(params, "mib", 1024, 1, 1 << 16) * ((1 << 20) // len(line))
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: X-Trailer\r\n\r\n2\r\n{}\r\n0\r\n")
    return await raw_flood(request, head, line, count)


ROUTES.update({
    "test/bomb": gzip_bomb,
    "test/endless-headers": endless_headers,
    "test/endless-continue": endless_continue,
    "test/endless-trailers": endless_trailers,
})

# ---- pagination, rate limits and retries (spec/paginate_spec.lua, spec/ratelimit_spec.lua) ----

# Per-key request logs: arrival time (server-side monotonic seconds), status, params (without `i`).
LOG = {}


def log_request(key, params, status):
    entry = {"t": time.monotonic(), "status": status,
             "params": {k: v for k, v in params.items() if k != "i"}}
    LOG.setdefault(str(key), []).append(entry)
    return len(LOG[str(key)])


async def request_log(request):
    key = str((await json_params(request)).get("key"))
    entries = LOG.get(key, [])
    return reply({"count": len(entries), "times": [e["t"] for e in entries],
                  "statuses": [e["status"] for e in entries], "params": [e["params"] for e in entries]})


B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n, width):
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = B36[r] + out
    return out.rjust(width, "0")


# 1,000 items with Misskey's `aid` ids: 8 base36 digits of ms since 2000-01-01 + a 2-digit counter,
# so byte order is time order. Two items share each millisecond (a date cursor must cope).
AID_EPOCH_MS = 946684800000
ITEMS_T0 = 1779321600000  # 2026-05-21T00:00:00Z
ITEMS = []
for _i in range(1000):
    _ms = ITEMS_T0 + (_i // 2) * 1000
    ITEMS.append({
        "id": base36(_ms - AID_EPOCH_MS, 8) + base36(_i % 2, 2),
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(_ms // 1000)) + ".%03dZ" % (_ms % 1000),
        "n": _i + 1,
        "_ms": _ms,
    })


def public(item):
    return {k: v for k, v in item.items() if not k.startswith("_")}


def invalid_param(param, reason):
    return api_error(400, "Invalid param.", "INVALID_PARAM", "3d81ceae-475f-4600-b2a8-2bc116157532",
                     info={"param": param, "reason": reason})


def page_limit(params):
    limit = params.get("limit", 10)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1 or limit > 100:
        return None
    return limit


async def items(request):
    """docs/protocol.md section 8: sinceId/sinceDate alone -> the `limit` items just after, oldest first;
    none, untilId/untilDate, or both -> newest first. Dates compare the item's ms."""
    params = await json_params(request)
    key = params.get("key", "items")
    limit = page_limit(params)
    if limit is None:
        log_request(key, params, 400)
        return invalid_param("#/properties/limit/maximum", "must be 1..100")
    since, until = params.get("sinceId"), params.get("untilId")
    since_d, until_d = params.get("sinceDate"), params.get("untilDate")
    sel = [it for it in ITEMS
           if (since is None or it["id"] > since) and (until is None or it["id"] < until)
           and (since_d is None or it["_ms"] > since_d) and (until_d is None or it["_ms"] < until_d)]
    ascending = (since is not None or since_d is not None) and until is None and until_d is None
    if not ascending:
        sel.reverse()
    log_request(key, params, 200)
    return reply([public(it) for it in sel[:limit]])


async def items_offset(request):
    """An offset endpoint (like `users`): newest first, `offset` items skipped."""
    params = await json_params(request)
    key = params.get("key", "items-offset")
    limit = page_limit(params)
    offset = params.get("offset", 0)
    if limit is None or not isinstance(offset, int) or offset < 0:
        log_request(key, params, 400)
        return invalid_param("#/properties/limit/maximum", "bad limit or offset")
    log_request(key, params, 200)
    newest = ITEMS[::-1]
    return reply([public(it) for it in newest[offset:offset + limit]])


def rate_limit_error(reset_in, headers, info=True):
    reset_ms = math.floor((time.time() + reset_in) * 1000)
    return api_error(429, "Rate limit exceeded. Please try again later.", "RATE_LIMIT_EXCEEDED",
                     "d5826d14-3982-4d2e-8011-b9e9f02499ef",
                     info={"remaining": 0, "reset": reset_ms // 1000, "resetMs": reset_ms, "total": 3}
                     if info else None, headers=headers)


async def limited(request):
    """The first `times` (default 1) requests of a key get 429 with `Retry-After: retryAfter`
    (default 1) and info.resetMs; later ones 200. `blind`: no Retry-After and no info.
    `sharkey`: X-RateLimit-Reset (fractional s), -Remaining 0, -Clear as Sharkey sends them."""
    params = await json_params(request)
    key = params.get("key", "limited")
    times = params.get("times", 1)
    seen = len(LOG.get(str(key), []))
    if seen < times:
        log_request(key, params, 429)
        if params.get("blind"):
            return rate_limit_error(0, {}, info=False)
        retry = float(params.get("retryAfter", 1))
        headers = {"Retry-After": str(max(0, math.ceil(retry)))}
        if "sharkey" in params:
            reset = float(params["sharkey"])
            headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "%.3f" % reset,
                            "X-RateLimit-Clear": "%.3f" % (reset * 3)})
        return rate_limit_error(retry, headers)
    n = log_request(key, params, 200)
    return reply({"ok": True, "n": n})


async def paced(request):
    """Logs and answers 200: the spec checks the spacing of arrivals."""
    params = await json_params(request)
    n = log_request(params.get("key", "paced"), params, 200)
    return reply({"ok": True, "n": n})


# Sharkey-style leaky bucket per key: `size` requests, one drips out every `drip` seconds.
BUCKETS = {}


async def bucket(request):
    params = await json_params(request)
    key = str(params.get("key", "bucket"))
    size, drip = int(params.get("size", 2)), float(params.get("drip", 0.5))
    now = time.monotonic()
    level, last = BUCKETS.get(key, (0.0, now))
    level = max(0.0, level - (now - last) / drip)
    if level + 1 > size:
        BUCKETS[key] = (level, now)
        log_request(key, params, 429)
        wait = (level + 1 - size) * drip
        headers = {"Retry-After": str(math.ceil(wait)), "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": "%.3f" % wait, "X-RateLimit-Clear": "%.3f" % (level * drip)}
        return rate_limit_error(wait, headers)
    level += 1
    BUCKETS[key] = (level, now)
    n = log_request(key, params, 200)
    remaining = int(math.floor(size - level))
    headers = {"X-RateLimit-Remaining": str(remaining), "X-RateLimit-Clear": "%.3f" % (level * drip)}
    if remaining == 0:
        headers["X-RateLimit-Reset"] = "%.3f" % ((level + 1 - size) * drip)
    return reply({"ok": True, "n": n}, headers=headers)


async def flaky(request):
    """The first `fail` (default 2) requests of a key get an HTML 502, later ones 200.
    Also served as test/flaky-write (the client's catalogue says which is a write)."""
    params = await json_params(request)
    key = params.get("key", "flaky")
    seen = len(LOG.get(str(key), []))
    if seen < params.get("fail", 2):
        log_request(key, params, 502)
        return await bad_gateway(request)
    n = log_request(key, params, 200)
    return reply({"ok": True, "n": n})


ROUTES.update({
    "test/log": request_log,
    "test/items": items,
    "test/items-offset": items_offset,
    "test/limited": limited,
    "test/paced": paced,
    "test/bucket": bucket,
    "test/flaky": flaky,
    "test/flaky-write": flaky,
})


async def fallback(request):
    name = request.match_info["name"]
    if request.method == "GET" and name in ROUTES:
        # Misskey answers GET on a POST-only endpoint with 405 and no body.
        return web.Response(status=405)
    # Fastify-style 404 for endpoints that do not exist.
    return api_error(404, "Unknown API endpoint.", "UNKNOWN_API_ENDPOINT",
                     "2ca3b769-540a-4f08-9dd5-b5a825b6d0f1", headers={})


# ---- authentication (spec/auth_spec.lua, spec/cli_spec.lua): MiAuth, legacy app, OAuth 2.0 ----
# docs/protocol.md section 5. Tokens handed out here authenticate `i` (body or Bearer).

AUTH = {"miauth": {}, "apps": {}, "sessions": {}, "codes": {}, "tokens": {}}


def auth_user(username):
    return {"id": "9" + username, "username": username, "name": username.capitalize(), "host": None}


def random_token(n):
    import secrets
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(n))


async def miauth_check(request):
    """Misskey: {ok:true, token, user} exactly once after approval, else {ok:false} (HTTP 200)."""
    entry = AUTH["miauth"].get(request.match_info["session"])
    if entry is None or entry["fetched"]:
        return reply({"ok": False})
    entry["fetched"] = True
    return reply({"ok": True, "token": entry["token"], "user": entry["user"]})


async def test_miauth_approve(request):
    """{session, token?, username?}: what the MiAuth page's Accept does (miauth/gen-token)."""
    params = await json_params(request)
    token = params.get("token") or random_token(32)
    user = auth_user(params.get("username") or "alice")
    AUTH["miauth"][params["session"]] = {"token": token, "user": user, "fetched": False}
    AUTH["tokens"][token] = user
    return reply({"ok": True})


async def app_create(request):
    params = await json_params(request)
    for key in ("name", "description", "permission"):
        if key not in params:
            return invalid_param_auth(key)
    # `secret` is a test-only override (Misskey ignores unknown params) for a known vector.
    secret = params.get("secret") or random_token(32)
    app = {"id": "app" + random_token(6), "name": params["name"], "callbackUrl": params.get("callbackUrl"),
           "permission": params["permission"], "secret": secret}
    AUTH["apps"][secret] = app
    return reply(app)


def invalid_param_auth(key):
    return api_error(400, "Invalid param.", "INVALID_PARAM", "3d81ceae-475f-4600-b2a8-2bc116157532",
                     info={"param": "#/properties/" + key, "reason": "is required"})


async def auth_session_generate(request):
    params = await json_params(request)
    if params.get("appSecret") not in AUTH["apps"]:
        return api_error(400, "No such app.", "NO_SUCH_APP", "92f93e63-428e-4f2f-a5a4-39e1407fe998")
    import uuid
    token = str(uuid.uuid4())
    AUTH["sessions"][token] = {"secret": params["appSecret"], "accessToken": None}
    port = request.transport.get_extra_info("sockname")[1]
    return reply({"token": token, "url": "http://%s:%d/auth/%s" % (HOST, port, token)})


async def test_auth_approve(request):
    """{token, accessToken?, username?}: the user accepts the app (auth/accept)."""
    import hashlib
    params = await json_params(request)
    session = AUTH["sessions"].get(params.get("token"))
    if session is None:
        return reply({"ok": False})
    session["accessToken"] = params.get("accessToken") or random_token(32)
    session["user"] = auth_user(params.get("username") or "alice")
    api_token = hashlib.sha256((session["accessToken"] + session["secret"]).encode()).hexdigest()
    AUTH["tokens"][api_token] = session["user"]
    return reply({"ok": True, "apiToken": api_token})


async def auth_session_userkey(request):
    params = await json_params(request)
    if params.get("appSecret") not in AUTH["apps"]:
        return api_error(400, "No such app.", "NO_SUCH_APP", "fcab192a-2c5a-43b7-8ad8-9b7054d8d40d")
    session = AUTH["sessions"].get(params.get("token"))
    if session is None or session["secret"] != params["appSecret"]:
        return api_error(400, "No such session.", "NO_SUCH_SESSION", "5b5a1503-8bc8-4bd0-8054-dc189e8cdcb3")
    if session["accessToken"] is None:
        return api_error(400, "This session is not completed yet.", "PENDING_SESSION",
                         "8c8a4145-02cc-4cca-8e66-29ba60445a8e")
    del AUTH["sessions"][params["token"]]  # deleted on success: a second call gets NO_SUCH_SESSION
    return reply({"accessToken": session["accessToken"], "user": session["user"]})


async def auth_i(request):
    params = await json_params(request)
    token = params.get("i")
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = header[7:]
    user = AUTH["tokens"].get(token)
    if user is None:
        return await error_auth(request)
    return reply(dict(user, isBot=False))


async def oauth_metadata(request):
    port = request.transport.get_extra_info("sockname")[1]
    base = "http://%s:%d" % (HOST, port)
    return reply({"issuer": base, "authorization_endpoint": base + "/oauth/authorize",
                  "token_endpoint": base + "/oauth/token", "scopes_supported": ["read:account", "write:notes"],
                  "response_types_supported": ["code"], "grant_types_supported": ["authorization_code"],
                  "code_challenge_methods_supported": ["S256"], "service_documentation": "test",
                  "authorization_response_iss_parameter_supported": True})


async def test_oauth_authorize(request):
    """The user approves on /oauth/authorize: the query's fields in, a code out."""
    params = await json_params(request)
    if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
        return reply({"error": "invalid_request"}, status=400)
    code = random_token(24)
    AUTH["codes"][code] = dict(params, username=params.get("username") or "alice")
    return reply({"code": code})


async def oauth_authorize(request):
    """The browser's visit to /oauth/authorize, decided at once as Misskey's oauth/decision does: a 302
    to redirect_uri with code, state and iss (RFC 9207). Test-only fields: test_user (default alice),
    test_deny (the user says no: error=access_denied)."""
    from urllib.parse import urlencode
    q = request.query
    redirect = q.get("redirect_uri")
    if not redirect:
        return reply({"error": "invalid_request"}, status=400)
    port = request.transport.get_extra_info("sockname")[1]
    params = {"state": q.get("state", ""), "iss": "http://%s:%d" % (HOST, port)}
    if q.get("test_deny"):
        params["error"] = "access_denied"
        params["error_description"] = "The user denied the request."
    elif q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
        params["error"] = "invalid_request"
    else:
        params["code"] = random_token(24)
        AUTH["codes"][params["code"]] = dict(q, username=q.get("test_user") or "alice")
    sep = "&" if "?" in redirect else "?"
    return web.Response(status=302, headers={"Location": redirect + sep + urlencode(params)})


async def oauth_token(request):
    import hashlib
    form = await request.post()
    code = AUTH["codes"].pop(form.get("code", ""), None)

    def refuse(what):
        return reply({"error": "invalid_grant", "error_description": what}, status=400)
    if form.get("grant_type") != "authorization_code":
        return reply({"error": "unsupported_grant_type"}, status=400)
    if code is None:
        return refuse("unknown or used code")
    if form.get("client_id") != code.get("client_id") or form.get("redirect_uri") != code.get("redirect_uri"):
        return refuse("client_id or redirect_uri mismatch")
    digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
    if base64.urlsafe_b64encode(digest).decode().rstrip("=") != code["code_challenge"]:
        return refuse("code_verifier does not match the code_challenge")
    token = random_token(128)
    AUTH["tokens"][token] = auth_user(code["username"])
    return reply({"access_token": token, "token_type": "Bearer", "scope": code.get("scope", "")})


ROUTES.update({
    "test/miauth/approve": test_miauth_approve,
    "app/create": app_create,
    "auth/session/generate": auth_session_generate,
    "auth/session/userkey": auth_session_userkey,
    "test/auth/approve": test_auth_approve,
    "test/oauth/authorize": test_oauth_authorize,
})
ROUTES.setdefault("i", auth_i)


# ---- client:schema() (spec/schema_spec.lua): GET /api.json, /nodeinfo/2.1 ----

SCHEMA_FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                              "api-2025.7.0.json")
SCHEMA_STATS = {"api_json": 0}


async def api_json(request):
    """The OpenAPI document, served at the root as Misskey does (a trimmed 2025.7.0 one)."""
    SCHEMA_STATS["api_json"] += 1
    with open(SCHEMA_FIXTURE, "rb") as f:
        body = f.read()
    return web.Response(body=body, content_type="application/json",
                        headers={"Cache-Control": "public, max-age=600"})


async def nodeinfo(request):
    return reply({"version": "2.1", "software": {"name": "misskey", "version": "2025.7.0"},
                  "protocols": ["activitypub"], "services": {"inbound": [], "outbound": []},
                  "openRegistrations": False, "usage": {"users": {}}, "metadata": {}})


async def schema_count(request):
    return reply({"api_json": SCHEMA_STATS["api_json"]})


ROUTES["test/schema-count"] = schema_count


# ---- streaming (spec/stream_spec.lua): docs/protocol.md section 7 ----
# GET on any path upgrades (Misskey does not check the path). `bad-token` (in ?i= or a Bearer
# header, the header wins) gets the 401 before the upgrade; any other token or none is accepted.
# Channels: `connect` is answered with `connected` when pong is true, except for `noSuchChannel`
# and beyond 32 channels (ignored silently, as Misskey does). Everything the client sent is
# recorded per socket for test/stream/state; no record carries a time.

STREAM = {"attempts": 0, "refused": 0, "sockets": [], "notes": [], "notifications": [], "seq": 0,
          "ping": None}


def stream_reset():
    gate = STREAM.pop("gate", None)
    if gate is not None:
        gate.set()
    LOG.pop("notes/timeline", None)
    LOG.pop("i/notifications", None)
    for sock in STREAM["sockets"]:
        if not sock["closed"]:
            sock["request"].transport and sock["request"].transport.abort()
    STREAM.update({"attempts": 0, "refused": 0, "sockets": [], "notes": [], "notifications": [],
                   "ping": None})


def stream_id():
    """aidx-like: 8 base36 time digits + 4 node + 4 counter, fixed width, time ordered."""
    STREAM["seq"] += 1
    ms = int(time.time() * 1000) - AID_EPOCH_MS
    last = STREAM.get("last_ms", 0)
    ms = max(ms, last)
    STREAM["last_ms"] = ms
    return base36(ms, 8) + "0000" + base36(STREAM["seq"] % (36 ** 4), 4)


# The streaming specs' token "tok" is an account, so `i` answers for it (a stream
# asks `i` for an id of the server's method when a channel starts out empty).
AUTH["tokens"]["tok"] = {"id": base36(int(time.time() * 1000) - AID_EPOCH_MS, 8) + "0000" + "0000",
                         "username": "streamer", "name": "Streamer", "host": None}


async def ping(request):
    """Misskey's ping: the server's time in ms (a stream's starting point on an empty channel)."""
    return reply({"pong": int(time.time() * 1000)})


def stream_token(request):
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[7:], "header"
    token = request.query.get("i")
    return token, "query" if token is not None else None


async def stream_send(sock, obj):
    if sock["closed"]:
        return
    try:
        await sock["ws"].send_str(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    except (ConnectionError, RuntimeError):
        pass


async def stream_emit(channel, type_, body):
    """Sends a channel event to every open socket's channels named `channel`."""
    n = 0
    for sock in STREAM["sockets"]:
        for cid, ch in list(sock["channels"].items()):
            if ch["channel"] == channel:
                await stream_send(sock, {"type": "channel", "body": {"id": cid, "type": type_, "body": body}})
                n += 1
    return n


async def stream_pinger(sock, interval):
    while not sock["closed"]:
        await asyncio.sleep(interval)
        try:
            await sock["ws"].ping()
        except (ConnectionError, RuntimeError):
            return


async def streaming(request):
    STREAM["attempts"] += 1
    token, via = stream_token(request)
    if token == "bad-token":
        STREAM["refused"] += 1
        # Misskey destroys the socket after the refusal: no keep-alive.
        return web.Response(status=401, headers={"Connection": "close",
            "WWW-Authenticate": 'Bearer realm="Misskey", error="invalid_token", '
                                'error_description="Failed to authenticate"'})
    if STREAM.get("gate") is not None:
        await STREAM["gate"].wait()  # test/stream/drop {hold = true}: upgrades wait for test/stream/release
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    sock = {"n": len(STREAM["sockets"]) + 1, "ws": ws, "request": request, "closed": False,
            "path": request.path, "auth": via, "anonymous": token is None,
            "connects": [], "disconnects": [], "channels": {}, "subs": {}, "subNote": [], "unsubNote": [],
            "messages": [], "ignored": []}
    STREAM["sockets"].append(sock)
    pinger = STREAM["ping"] and asyncio.ensure_future(stream_pinger(sock, STREAM["ping"]))
    try:
        async for msg in ws:
            if msg.type != web.WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(msg.data)
            except ValueError:
                continue  # Misskey ignores what is not JSON
            if not isinstance(frame, dict):
                continue
            type_, body = frame.get("type"), frame.get("body")
            body = body if isinstance(body, dict) else {}
            if type_ == "connect":
                sock["connects"].append({"channel": body.get("channel"), "id": body.get("id"),
                                         "params": body.get("params"), "pong": body.get("pong")})
                if body.get("channel") == "noSuchChannel" or len(sock["channels"]) >= 32:
                    sock["ignored"].append(body.get("id"))
                    continue
                sock["channels"][body.get("id")] = {"channel": body.get("channel"), "params": body.get("params")}
                if body.get("pong"):
                    await stream_send(sock, {"type": "connected", "body": {"id": body.get("id")}})
            elif type_ == "disconnect":
                sock["disconnects"].append(body.get("id"))
                sock["channels"].pop(body.get("id"), None)
            elif type_ in ("channel", "ch"):
                sock["messages"].append(body)
                ch = sock["channels"].get(body.get("id"))
                if ch and body.get("type") == "echo":
                    await stream_send(sock, {"type": "channel", "body": {
                        "id": body.get("id"), "type": "echoed", "body": body.get("body")}})
            elif type_ in ("subNote", "s", "sr"):
                nid = body.get("id")
                sock["subNote"].append(nid)
                sock["subs"][nid] = sock["subs"].get(nid, 0) + 1
            elif type_ in ("unsubNote", "un"):
                nid = body.get("id")
                sock["unsubNote"].append(nid)
                if sock["subs"].get(nid):
                    sock["subs"][nid] -= 1
                    if sock["subs"][nid] == 0:
                        del sock["subs"][nid]
    finally:
        sock["closed"] = True
        sock["close_code"] = ws.close_code  # the client's close code (1000 for a clean stop), None if cut
        if pinger:
            pinger.cancel()
    return ws


def stream_page(items, params):
    """Misskey's order (docs/protocol.md section 8): sinceId alone -> oldest first; otherwise newest first."""
    limit = page_limit(params)
    if limit is None:
        return None
    since, until = params.get("sinceId"), params.get("untilId")
    sel = [it for it in items if (since is None or it["id"] > since) and (until is None or it["id"] < until)]
    if not (since is not None and until is None):
        sel.reverse()
    return sel[:limit]


async def notes_timeline(request):
    params = await json_params(request)
    log_request("notes/timeline", params, 200)
    page = stream_page(STREAM["notes"], params)
    if page is None:
        return invalid_param("#/properties/limit/maximum", "must be 1..100")
    return reply(page)


async def i_notifications(request):
    params = await json_params(request)
    log_request("i/notifications", params, 200)
    page = stream_page(STREAM["notifications"], params)
    if page is None:
        return invalid_param("#/properties/limit/maximum", "must be 1..100")
    return reply(page)


async def test_stream_post(request):
    params = await json_params(request)
    note = {"id": stream_id(), "text": params.get("text"), "userId": "9alice",
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
    STREAM["notes"].append(note)
    await stream_emit("homeTimeline", "note", note)
    return reply(note)


async def test_stream_notify(request):
    params = await json_params(request)
    body = params.get("body") if isinstance(params.get("body"), dict) else {}
    note = dict(body, id=stream_id())
    STREAM["notifications"].append(note)
    await stream_emit("main", params.get("type", "notification"), note)
    return reply(note)


async def test_stream_emit(request):
    """{channel, type, body}: a channel event; or {type, body} without channel: a top-level message."""
    params = await json_params(request)
    if params.get("channel"):
        # {count = n}: n copies back to back, a burst the client reads in one go.
        sent = 0
        for i in range(int(params.get("count", 1))):
            body = dict(params.get("body") or {}, seq=i + 1) if params.get("count") else params.get("body")
            sent += await stream_emit(params["channel"], params.get("type"), body)
        return reply({"sent": sent})
    n = 0
    for sock in STREAM["sockets"]:
        if not sock["closed"]:
            await stream_send(sock, {"type": params.get("type"), "body": params.get("body")})
            n += 1
    return reply({"sent": n})


async def test_stream_raw(request):
    """{text}: a raw text frame (not JSON) to every socket."""
    params = await json_params(request)
    for sock in STREAM["sockets"]:
        if not sock["closed"]:
            try:
                await sock["ws"].send_str(params.get("text", ""))
            except (ConnectionError, RuntimeError):
                pass
    return reply({"ok": True})


async def test_stream_drop(request):
    """Closes every streaming socket abruptly (no close frame). {hold = true}: new upgrades
    wait until test/stream/release, so whatever is posted meanwhile is missed for sure."""
    if (await json_params(request)).get("hold"):
        STREAM["gate"] = asyncio.Event()
    n = 0
    for sock in STREAM["sockets"]:
        if not sock["closed"]:
            sock["closed"] = True
            transport = sock["request"].transport
            if transport:
                transport.abort()
            n += 1
    return reply({"dropped": n})


async def test_stream_release(request):
    gate = STREAM.pop("gate", None)
    if gate is not None:
        gate.set()
    return reply({"ok": True})


async def test_stream_config(request):
    """{ping = seconds}: new sockets get a protocol PING that often."""
    params = await json_params(request)
    STREAM["ping"] = params.get("ping")
    return reply({"ok": True})


async def test_stream_reset(request):
    stream_reset()
    return reply({"ok": True})


async def test_stream_state(request):
    socks = []
    for s in STREAM["sockets"]:
        socks.append({k: v for k, v in s.items() if k not in ("ws", "request")})
    return reply({"attempts": STREAM["attempts"], "refused": STREAM["refused"], "sockets": socks,
                  "open": sum(1 for s in STREAM["sockets"] if not s["closed"])})


for _name, _handler in (("notes/timeline", notes_timeline), ("i/notifications", i_notifications)):
    ROUTES.setdefault(_name, _handler)
ROUTES.update({
    "ping": ping,
    "test/stream/post": test_stream_post,
    "test/stream/notify": test_stream_notify,
    "test/stream/emit": test_stream_emit,
    "test/stream/raw": test_stream_raw,
    "test/stream/drop": test_stream_drop,
    "test/stream/config": test_stream_config,
    "test/stream/release": test_stream_release,
    "test/stream/reset": test_stream_reset,
    "test/stream/state": test_stream_state,
})

# i/webhooks/* with real deliveries (spec/webhook_cli_spec.lua, spec/webhook_bot_listen_spec.lua).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import webhooks_api  # noqa: E402 - beside this file

webhooks_api.install(ROUTES, reply, api_error, json_params, AUTH["tokens"])


# ---- nginx (spec/nginx_spec.lua): replies held until the spec opens a gate, and the order of it all ----
# test/gate/wait holds each request until test/gate/open; test/gate/arrived answers once `count` of them
# are held (within `timeout` s); test/gate/mark records a label; test/gate/log is the ordered record.

GATE = {"open": None, "arrivals": None, "log": [], "held": 0}


def gate_reset():
    if GATE["open"] is not None:
        GATE["open"].set()
    GATE.update(open=asyncio.Event(), arrivals=asyncio.Condition(), log=[], held=0)


async def test_gate_wait(request):
    if GATE["open"] is None:
        gate_reset()
    key = (await json_params(request)).get("key")
    GATE["log"].append("arrive:%s" % key)
    GATE["held"] += 1
    async with GATE["arrivals"]:
        GATE["arrivals"].notify_all()
    await GATE["open"].wait()
    GATE["log"].append("answer:%s" % key)
    return reply({"key": key})


async def test_gate_arrived(request):
    if GATE["open"] is None:
        gate_reset()
    params = await json_params(request)
    count, timeout = int_param(params, "count", 1), float(params.get("timeout", 20))
    try:
        async with GATE["arrivals"]:
            await asyncio.wait_for(GATE["arrivals"].wait_for(lambda: GATE["held"] >= count), timeout)
    except asyncio.TimeoutError:
        pass
    return reply({"held": GATE["held"]})


async def test_gate_mark(request):
    GATE["log"].append("mark:%s" % (await json_params(request)).get("label"))
    return reply({"ok": True})


async def test_gate_open(request):
    GATE["log"].append("open")
    if GATE["open"] is None:
        gate_reset()
    GATE["open"].set()
    return reply({"ok": True})


async def test_gate_log(request):
    return reply({"log": GATE["log"], "held": GATE["held"]})


async def test_gate_reset(request):
    gate_reset()
    return reply({"ok": True})


ROUTES.update({
    "test/gate/wait": test_gate_wait,
    "test/gate/arrived": test_gate_arrived,
    "test/gate/mark": test_gate_mark,
    "test/gate/open": test_gate_open,
    "test/gate/log": test_gate_log,
    "test/gate/reset": test_gate_reset,
})


def make_app():
    # Allow big uploads through echo; Misskey's own 1 MiB limit is not modelled.
    app = web.Application(middlewares=[api_middleware], client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/api/test/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    for name, handler in ROUTES.items():
        app.router.add_post("/api/" + name, handler)
    app.router.add_post("/api/miauth/{session}/check", miauth_check)
    app.router.add_get("/.well-known/oauth-authorization-server", oauth_metadata)
    app.router.add_post("/oauth/token", oauth_token)
    app.router.add_get("/oauth/authorize", oauth_authorize)
    app.router.add_get("/api.json", api_json)
    app.router.add_get("/nodeinfo/2.1", nodeinfo)
    app.router.add_get("/streaming", streaming)  # Misskey upgrades any path; the client uses this one
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
