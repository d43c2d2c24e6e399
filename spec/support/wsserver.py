#!/usr/bin/python3
"""A raw WebSocket server for the specs (asyncio only, 127.0.0.1 only).

It speaks RFC 6455 by hand so that it can also break it on purpose: the path of
the upgrade request picks a scenario (broken upgrade replies, refusals that echo
the target, invalid close codes, a ping flood, a peer that does not read, a 101
dripped byte by byte). It
prints `PORT <n> PID <pid>` and exits when its parent dies or closes the pipe,
like server.py. Control routes, plain HTTP, each answering with the log:
`GET /log` returns what clients sent in JSON (close codes, whether each client
frame was masked, pongs, texts, targets); `GET /set-streaming/<scenario>` picks
what `/streaming` does (client:stream always asks for that path; default echo);
`GET /push` and `GET /release` move the scenarios that hold a socket unread.
"""
import asyncio
import base64
import hashlib
import json
import os
import select
import signal
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LOG = {"closes": [], "unmasked": 0, "pongs": [], "texts": [], "upgrades": 0}
# Control routes (plain HTTP, see handle): what `GET /streaming` does (client:stream
# always asks for that path), and events that hold scenarios that do not read.
CONTROL = {"streaming": "echo", "release": None, "push": None}
FLOOD_BYTES = 8 * 1024 * 1024  # of empty pings: 4 Mi pings


def control_event(name):
    """A fresh asyncio.Event for a scenario that waits on GET /<name>."""
    CONTROL[name] = asyncio.Event()
    return CONTROL[name]


def frame(opcode, payload=b"", fin=True, rsv=0, mask=None, length_form=None):
    """A server frame; every field can be made wrong on purpose."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if length_form == 127 or (length_form is None and n > 0xFFFF):
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    elif length_form == 126 or (length_form is None and n > 125):
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | n])
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


async def read_frame(reader):
    """One client frame: (opcode, payload), unmasked; records unmasked frames."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if b1 & 0x80 else None
    if mask is None:
        LOG["unmasked"] += 1
    data = await reader.readexactly(n)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, data


async def client_frames(reader, until_close=True):
    """Logs what the client sends until it closes (or the connection ends)."""
    try:
        while True:
            op, data = await read_frame(reader)
            if op == 0x8:
                LOG["closes"].append(struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None)
                return op, data
            if op == 0xA:
                LOG["pongs"].append(data.decode("utf-8", "replace"))
            if op == 0x1:
                LOG["texts"].append(data.decode("utf-8", "replace"))
            if not until_close:
                return op, data
    except (asyncio.IncompleteReadError, ConnectionError):
        return None, None


async def scenario(name, reader, writer):
    send = writer.write
    if name == "echo":
        # Echoes text and binary messages; answers pings; echoes a close.
        while True:
            try:
                op, data = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if op == 0x1:
                LOG["texts"].append(data.decode("utf-8", "replace"))
            if op in (0x1, 0x2):
                send(frame(op, data))
            elif op == 0x9:
                send(frame(0xA, data))
            elif op == 0xA:
                LOG["pongs"].append(data.decode("utf-8", "replace"))
            elif op == 0x8:
                LOG["closes"].append(struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None)
                send(frame(0x8, data))
                await writer.drain()
                return
    elif name == "ping":
        send(frame(0x9, b"are-you-there"))
        await writer.drain()
        op, data = await client_frames(reader, until_close=False)
        send(frame(0x1, b"got " + (b"pong:" + data if op == 0xA else b"nothing")))
        await client_frames(reader)
    elif name == "fragmented":
        # "Hello, " + ping + "fragmented " + "world": one message with a control frame inside.
        send(frame(0x1, b"Hello, ", fin=False))
        send(frame(0x9, b"mid"))
        send(frame(0x0, "fragmented ".encode(), fin=False))
        send(frame(0x0, "wörld".encode(), fin=True))
        await writer.drain()
        await client_frames(reader)
    elif name == "fragmented-json":
        # One JSON text in three fragments, a ping between them.
        send(frame(0x1, b'{"a":[1,', fin=False))
        send(frame(0x9, b"mid"))
        send(frame(0x0, b'2],"b":"w', fin=False))
        send(frame(0x0, "örld\"}".encode(), fin=True))
        await writer.drain()
        await client_frames(reader)
    elif name == "burst":
        # 100 short JSON texts in one write: one read of the client's takes them all.
        send(b"".join(frame(0x1, ('{"n":%d}' % i).encode()) for i in range(100)))
        await writer.drain()
        await client_frames(reader)
    elif name == "long-burst":
        # 300 short JSON texts in one write: more than a socket's queue is kept for.
        send(b"".join(frame(0x1, ('{"n":%d}' % i).encode()) for i in range(300)))
        await writer.drain()
        await client_frames(reader)
    elif name == "big-burst":
        # 200 JSON texts of 2,400 bytes (~480 KB) in one write: many reads' worth.
        pad = b"x" * (2400 - len(b'{"n":000,"pad":""}'))
        send(b"".join(frame(0x1, b'{"n":%03d,"pad":"%s"}' % (i, pad)) for i in range(200)))
        await writer.drain()
        await client_frames(reader)
    elif name == "fill-read":
        # 64 KiB exactly (a client's whole read buffer): a 65,532-byte JSON string in one frame
        # (4-byte header), then a short message, so a read can end just after the first.
        send(frame(0x1, b'"' + b"f" * 65530 + b'"'))
        send(frame(0x1, b'{"after":1}'))
        await writer.drain()
        await client_frames(reader)
    elif name == "big":
        # A 70,000-byte message needs the 64-bit length form; then a 300-byte one (16-bit form).
        send(frame(0x1, b"x" * 70000, length_form=127))
        send(frame(0x2, bytes(range(256)) + b"y" * 44))
        await writer.drain()
        await client_frames(reader)
    elif name == "invalid-utf8":
        send(frame(0x1, b"bad \xff\xfe text"))
        await writer.drain()
        await client_frames(reader)
    elif name == "bad-opcode":
        send(frame(0x3, b"?"))
        await writer.drain()
        await client_frames(reader)
    elif name == "reserved-bits":
        send(frame(0x1, b"rsv", rsv=4))
        await writer.drain()
        await client_frames(reader)
    elif name == "masked":
        send(frame(0x1, b"masked by the server", mask=b"\x01\x02\x03\x04"))
        await writer.drain()
        await client_frames(reader)
    elif name == "fragmented-control":
        send(frame(0x9, b"half", fin=False))
        await writer.drain()
        await client_frames(reader)
    elif name == "oversized":
        send(frame(0x1, b"z" * 5000))
        await writer.drain()
        await client_frames(reader)
    elif name == "server-close":
        send(frame(0x8, struct.pack(">H", 1001) + b"going away"))
        await writer.drain()
        await client_frames(reader)
    elif name == "drop":
        send(frame(0x1, b"bye"))
        await writer.drain()
        writer.transport.abort()
    elif name.startswith("close-"):
        # A close frame with the code in the path, valid or not (close-1005, close-65535).
        send(frame(0x8, struct.pack(">H", int(name[6:]))))
        await writer.drain()
        op, data = await client_frames(reader)
        # The client's answer, by path: other connections' closes may come in between.
        code = struct.unpack(">H", data[:2])[0] if op == 0x8 and len(data) >= 2 else None
        LOG.setdefault("close_replies", {})[name] = code
    elif name == "ping-flood":
        # Empty pings as fast as the client reads them, then "done"; nothing is read
        # until GET /release, so every pong the client owes stays with the client.
        chunk = frame(0x9) * 65536
        for _ in range(FLOOD_BYTES // len(chunk)):
            send(chunk)
            await writer.drain()
        send(frame(0x1, b"done"))
        await writer.drain()
        await CONTROL["release"].wait()
        await client_frames(reader)
    elif name == "hold":
        # Reads nothing until GET /release; sends "pushed" on GET /push (before the release).
        pushed = asyncio.ensure_future(CONTROL["push"].wait())
        released = asyncio.ensure_future(CONTROL["release"].wait())
        await asyncio.wait([pushed, released], return_when=asyncio.FIRST_COMPLETED)
        if pushed.done():
            send(frame(0x1, b"pushed"))
            await writer.drain()
        else:
            pushed.cancel()
        await released
        await client_frames(reader)


async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    path = target.split("?")[0].strip("/")
    if path == "log" or path.startswith("set-streaming/") or path in ("release", "push"):
        if path.startswith("set-streaming/"):
            CONTROL["streaming"] = path.split("/", 1)[1]
        elif path != "log" and CONTROL[path] is not None:
            CONTROL[path].set()
        body = json.dumps(LOG).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()
        return
    if path == "streaming":
        path = CONTROL["streaming"]
    if await refused(path, target, writer):
        return
    if path == "refuse401":
        # Misskey refuses a bad token before the upgrade, as plain HTTP.
        writer.write(b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="Misskey", '
                     b'error="invalid_token", error_description="Failed to authenticate"\r\n'
                     b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        return
    LOG["upgrades"] += 1
    LOG.setdefault("targets", []).append(target)
    LOG.setdefault("auth", []).append(headers.get("authorization"))
    key = headers.get("sec-websocket-key", "").encode()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    if path == "bad-accept":
        accept = base64.b64encode(b"0" * 20)
    reply = upgrade_reply(path, accept)
    # Fresh control events before the 101: the client may ask for them at once.
    control_event("release")
    control_event("push")
    if path == "drip-101":
        # A valid 101, one byte every 0.1 s (about 13 s in all): a client must give up at
        # its own deadline, not restart its wait on every byte.
        try:
            for i in range(len(reply)):
                writer.write(reply[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.1)
            await client_frames(reader)
        except ConnectionError:
            pass
    elif path == "with-101":
        # The first message in the same packet as the 101 reply.
        writer.write(reply + frame(0x1, b"early bird"))
        await writer.drain()
        await client_frames(reader)
    else:
        writer.write(reply)
        await writer.drain()
        if path not in BROKEN_101:
            if path == "token-lists":
                path = "echo"
            await scenario(path, reader, writer)
    try:
        writer.close()
    except ConnectionError:
        pass


# Upgrade replies that break RFC 6455 4.1 (or HTTP) on purpose, by path; the client
# must refuse each before reading a frame. {accept} is the right accept key.
BROKEN_101 = {
    "bad-accept": None,  # the 101 of the default below, with a wrong key
    "nul-header": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"X-A: a\0b\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
    "nul-status": b"HTTP/1.1 101 Swi\0tching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
    "no-upgrade": b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
    "wrong-upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
    "no-connection": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
    "extension": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
    "long-head": b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Padding: " + b"p" * 70000 + b"\r\n",
}
# A valid 101 in other words: token lists and other cases (then the echo scenario).
UPGRADE_REPLIES = dict(BROKEN_101, **{
    "token-lists": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
                   b"CONNECTION: keep-alive, Upgrade\r\nsec-websocket-accept:   {accept}  \r\n\r\n",
})


def upgrade_reply(path, accept):
    template = UPGRADE_REPLIES.get(path)
    if template is None:
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    return template.replace(b"{accept}", accept)


async def refused(path, target, writer):
    """Refusals that echo the request target, query (and so a token) included, as
    servers and proxies do: a 400 and redirects to https. True when one was sent."""
    echo = target.encode("latin-1")
    if path == "refuse-echo":
        body = b"<p>Bad request: GET " + echo + b"</p>"
        head = b"HTTP/1.1 400 Bad Request\r\nX-Request-Target: " + echo + b"\r\n"
    elif path in ("redirect301", "redirect302"):
        url = b"https://127.0.0.1" + echo
        body = b"<a href=\"" + url + b"\">moved</a>"
        head = (b"HTTP/1.1 301 Moved Permanently\r\n" if path == "redirect301" else b"HTTP/1.1 302 Found\r\n")
        head += b"Location: " + url + b"\r\n"
    else:
        return False
    writer.write(head + b"Content-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % len(body) + body)
    await writer.drain()
    writer.close()
    return True


def parent_gone(parent, out):
    if os.getppid() != parent:
        return True
    return bool(out.poll(0))  # POLLERR/POLLHUP on our stdout: the reader closed the pipe


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print("PORT %d PID %d" % (port, os.getpid()), flush=True)
    parent = os.getppid()
    out = select.poll()
    out.register(sys.stdout.fileno(), select.POLLERR | select.POLLHUP)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set() and not parent_gone(parent, out):
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except asyncio.TimeoutError:
            pass
    server.close()
    # Scenarios still waiting (a client that went away without a word) end quietly.
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
