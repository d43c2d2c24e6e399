#!/usr/bin/python3
"""A tiny HTTP proxy for the specs (asyncio only, 127.0.0.1 only).

`CONNECT host:port` opens a tunnel to 127.0.0.1:port whatever the host, so a
spec can name a host that never resolves (only the proxy ever sees it). Any
other request is refused with 400 (this proxy forwards nothing in the clear),
except `GET /log` in origin form, which returns the request heads the proxy was
sent, in JSON: what a proxy operator could read. It prints `PORT <n> PID <pid>`
and exits when its parent dies or closes the pipe, like server.py.
"""
import asyncio
import json
import os
import select
import signal
import sys

HEADS = []


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    text = head.decode("latin-1")
    parts = text.split("\r\n", 1)[0].split(" ")
    if parts[:2] == ["GET", "/log"]:
        body = json.dumps(HEADS).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()
        return
    HEADS.append(text)
    if len(parts) < 2 or parts[0] != "CONNECT" or ":" not in parts[1]:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        return
    port = int(parts[1].rsplit(":", 1)[1])
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        return
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


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
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:  # tunnels still open end quietly
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
