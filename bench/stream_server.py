#!/usr/bin/python3
"""A streaming bench server: a raw WebSocket server that floods homeTimeline notes.

    /usr/bin/python3 bench/stream_server.py [--n N] [--pace full|drain]

asyncio only, 127.0.0.1 only. Prints `PORT <n> PID <pid>` and serves every WebSocket
upgrade (any path, as Misskey does). For each client it reads masked client frames
until a `connect` to homeTimeline arrives (answering `connected` when the connect asks
for `pong`), then sends N events
    {"type":"channel","body":{"id":ID,"type":"note","body":<note>}}
and a last one whose note is {"id":"END"}. N is `n` of the query string (`?n=100000`),
else --n (100000). The notes are realistic Misskey notes of ~2.4 KB (user, files,
reactions, emojis, Japanese and ASCII text); 64 variants are pre-encoded into frames
once, and each event gets its own ten-character id (the stream drops repeated ids),
spliced between the pre-encoded halves.
How the frames go out (--pace):
  full   (default) the next batches of ~1 MB are queued while the kernel still holds earlier
         ones (the transport's buffer may hold 16 MB before the flood waits), so the socket is
         refilled on every writable event and the client need not wait for this server to wake
         up and build the next batch (it also wakes less often than with `drain`).
  drain  the older pacing, kept for comparison: each ~1 MB batch waits for asyncio's drain
         (its buffer below 64 KiB) before the next is built, so the client, once it has
         emptied the socket, waits for the server.
Every connection that received a flood prints, when it closes,
    FLOOD events=E wall=SECONDS cpu=SECONDS
(the flood's start to the close; this process's CPU time over the same span: one event loop,
so it is this connection's cost while it is the only one) for bench/run.sh's server-busy share.
A channel message `{"type":"channel","body":{"id":ID,"type":"flood","body":{"n":K}}}` asks
for K more events and another END on that channel (bench/streams_bench.lua: many streams
that join, go idle, then all receive at once).
PINGs are answered with PONGs, a close with a close. Exits on SIGTERM, and within
0.2 s once its parent dies or closes the stdout pipe.
"""
import asyncio
import base64
import hashlib
import json
import os
import re
import select
import signal
import struct
import sys
import time

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VARIANTS = 64
BATCH = 400  # frames per write (~1 MB)
FULL_HIGH = 16 << 20  # --pace full: bytes the transport may hold before the flood waits
PACE = "full"
ID_MARK = "@@NOTE_ID@@"


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def server_frame(payload, opcode=1):
    n = len(payload)
    if n > 0xFFFF:
        head = bytes([0x80 | opcode, 127]) + struct.pack(">Q", n)
    elif n > 125:
        head = bytes([0x80 | opcode, 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | opcode, n])
    return head + payload


def note(k):
    """The k-th variant of a Misskey note as the homeTimeline channel sends it (~2.4 KB)."""
    uid = "9abc%06d" % (k * 7919 % 1000000)
    host = None if k % 3 else "mi.example.net"
    user = {
        "id": uid, "name": "ベンチ用アカウント %d :blobcat:" % k, "username": "bench_user_%d" % k,
        "host": host, "avatarUrl": "https://misskey.example/proxy/avatar.webp?url=https%%3A%%2F%%2Fmedia"
        ".misskey.example%%2Fwebpublic-%s.png&avatar=1" % uid,
        "avatarBlurhash": "eHFiS:M{00~qt7j[M{?bWBof00t7RjofRj~q%Mj[Rjay00WBt7ay", "avatarDecorations": [],
        "isBot": k % 5 == 0, "isCat": k % 4 == 0,
        "emojis": {"blobcat": "https://media.misskey.example/emoji/blobcat.png"} if host else {},
        "onlineStatus": "unknown",
        "badgeRoles": [{"name": "Supporter", "iconUrl": "https://media.misskey.example/role/supporter.png",
                        "displayOrder": 10}],
    }
    if host:
        user["instance"] = {"name": "Example Misskey", "softwareName": "misskey", "softwareVersion": "2025.3.1",
                            "iconUrl": "https://mi.example.net/static-assets/icons/192.png",
                            "faviconUrl": "https://mi.example.net/favicon.ico", "themeColor": "#86b300"}
    files = []
    for f in range(k % 2 + 1):
        fid = "9fil%06d" % (k * 31 + f)
        files.append({
            "id": fid, "createdAt": "2025-03-%02dT12:%02d:07.123Z" % (k % 28 + 1, k % 60),
            "name": "IMG_%04d.jpg" % (k * 13 + f), "type": "image/jpeg",
            "md5": hashlib.md5(fid.encode()).hexdigest(), "size": 123456 + k * 1000 + f,
            "isSensitive": k % 9 == 0, "blurhash": "eJF5,AxuD%IU~qRjRjWBj[of00ofxuayRj%MRjWBayj[ayj[ofayWB",
            "properties": {"width": 1920, "height": 1080 + f},
            "url": "https://media.misskey.example/files/%s.jpg" % fid,
            "thumbnailUrl": "https://media.misskey.example/files/thumbnail-%s.webp" % fid,
            "comment": None if f else "夕方の空 (alt text %d)" % k, "folderId": None, "folder": None,
            "userId": None, "user": None,
        })
    text = ("今日のベンチマーク %d 回目。ストリーミングで流れてくるノートを数えています :blobcat: "
            "#misskey #lua https://example.com/posts/%d\n"
            "The quick brown fox jumps over the lazy dog; \"quoted\" and \\escaped\\ text, tab\there.\n"
            "絵文字もどうぞ 🎉🍣 and a longer line of plain ASCII to make the note a realistic size. %s"
            % (k, k * 101, "ok " * (k % 7)))
    return {
        "id": ID_MARK, "createdAt": "2025-03-%02dT12:%02d:%02d.%03dZ" % (k % 28 + 1, k % 60, k % 60, k),
        "userId": uid, "user": user, "text": text, "cw": None if k % 6 else "ネタバレ注意",
        "visibility": ["public", "home", "followers"][k % 3], "localOnly": False,
        "reactionAcceptance": None, "renoteCount": k % 11, "repliesCount": k % 5,
        "reactionCount": 3 + k % 4,
        "reactions": {"👍": 1 + k % 3, ":blobcat@.:": 2, ":awesome@mi.example.net:": k % 4},
        "reactionEmojis": {"awesome@mi.example.net": "https://mi.example.net/emoji/awesome.webp"},
        "fileIds": [f["id"] for f in files], "files": files, "replyId": None, "renoteId": None,
        "tags": ["misskey", "lua"], "mentions": [],
        "uri": "https://mi.example.net/notes/%s" % uid if host else None,
        "url": None, "clippedCount": 0, "poll": None,
        "emojis": {"blobcat": "https://media.misskey.example/emoji/blobcat.png"},
    }


def variants(chan_id):
    """[(head, tail)]: each pre-encoded frame split around the note id (10 ASCII characters)."""
    out = []
    for k in range(VARIANTS):
        text = dumps({"type": "channel", "body": {"id": chan_id, "type": "note", "body": note(k)}})
        before, after = text.encode().split(ID_MARK.encode())
        payload_len = len(before) + 10 + len(after)
        head = server_frame(b"x" * payload_len)[:-payload_len]
        out.append((head + before, after))
    return out


CACHE = {}


def note_id(i):
    return b"9%09d" % i


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
    data = bytearray(await reader.readexactly(n))
    for i in range(n):
        data[i] ^= mask[i & 3]
    return b0 & 0x0F, bytes(data)


async def flood(writer, chan_id, n):
    if chan_id not in CACHE:
        CACHE[chan_id] = variants(chan_id)
    parts = CACHE[chan_id]
    i = 0
    while i < n:
        batch = []
        for j in range(i, min(n, i + BATCH)):
            head, tail = parts[j % VARIANTS]
            batch.append(head + note_id(j) + tail)
        i += len(batch)
        writer.write(b"".join(batch))
        if PACE == "drain" or writer.transport.get_write_buffer_size() > FULL_HIGH:
            await writer.drain()
    end = dumps({"type": "channel", "body": {"id": chan_id, "type": "note", "body": {"id": "END"}}})
    writer.write(server_frame(end.encode()))
    await writer.drain()


async def flood_after(previous, writer, chan_id, n):
    await previous  # one flood at a time per socket: frames never interleave
    await flood(writer, chan_id, n)


async def handle(reader, writer):
    flooder = None
    started = None  # (events, wall, cpu) when the first flood began
    if PACE == "full":
        # Keep up to FULL_HIGH queued in the process: asyncio writes whatever the socket takes
        # on each writable event, without waking the flood coroutine.
        writer.transport.set_write_buffer_limits(high=FULL_HIGH, low=FULL_HIGH // 2)
    try:
        request = await reader.readuntil(b"\r\n\r\n")
        target = request.split(b"\r\n", 1)[0].split(b" ")[1].decode()
        key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", request)
        if not key:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        accept = base64.b64encode(hashlib.sha1(key.group(1) + GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        m = re.search(r"[?&]n=(\d+)", target)
        n = int(m.group(1)) if m else DEFAULT_N
        while True:
            op, data = await read_frame(reader)
            if op == 8:
                writer.write(server_frame(data[:2], 8))
                await writer.drain()
                return
            if op == 9:
                writer.write(server_frame(data, 10))
            elif op == 1:
                try:
                    msg = json.loads(data)
                except ValueError:
                    continue
                body = msg.get("body") if isinstance(msg, dict) else None
                if msg.get("type") == "connect" and isinstance(body, dict) and flooder is None \
                        and body.get("channel") == "homeTimeline":
                    if body.get("pong"):
                        writer.write(server_frame(dumps({"type": "connected", "body": {"id": body["id"]}}).encode()))
                    flooder = asyncio.ensure_future(flood(writer, body["id"], n))
                    started = (n, time.monotonic(), time.process_time())
                elif msg.get("type") == "channel" and isinstance(body, dict) and body.get("type") == "flood" \
                        and isinstance(body.get("body"), dict) and flooder is not None:
                    k = body["body"].get("n")
                    k = k if isinstance(k, int) and 0 <= k <= 10_000_000 else 0
                    previous = flooder
                    flooder = asyncio.ensure_future(flood_after(previous, writer, body["id"], k))
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, IndexError):
        pass
    finally:
        if flooder:
            flooder.cancel()
        if started:
            print("FLOOD events=%d wall=%.4f cpu=%.4f" % (started[0], time.monotonic() - started[1],
                                                          time.process_time() - started[2]), flush=True)
        try:
            writer.close()
        except ConnectionError:
            pass


def parent_gone(parent, out):
    if os.getppid() != parent:
        return True
    return bool(out.poll(0))  # POLLERR/POLLHUP on stdout: the reader closed the pipe


async def main():
    server = await asyncio.start_server(handle, HOST, 0, backlog=4096)  # 1,000 streams connect at once
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


DEFAULT_N = 100000
if __name__ == "__main__":
    args = sys.argv[1:]
    while args:
        if len(args) >= 2 and args[0] == "--n":
            DEFAULT_N = int(args[1])
        elif len(args) >= 2 and args[0] == "--pace" and args[1] in ("full", "drain"):
            PACE = args[1]
        else:
            sys.exit("usage: stream_server.py [--n N] [--pace full|drain]")
        args = args[2:]
    asyncio.run(main())
