#!/usr/bin/env python3
"""A misbehaving peer for the webhook listener's specs (spec/webhook_listen_spec.lua).

The listener runs inside the Lua process that starts this script, so that process cannot
block on this script's output: results come back as webhook deliveries to a second,
"control" listener of that process (type "peer", body {"phase": ..., ...}), which the spec
waits for through the scheduler. Everything is bounded in time (LIMIT) and count.

  webhook_peer.py CONTROL_PORT CONTROL_SECRET raw TARGET_PORT JSON_LIST_OF_REQUESTS
      sends each request (a string, bytes as latin-1) on its own connection, reads the
      answer until the listener closes; reports {"phase": "raw", "answers": [first line, ...]}.
      A request given as [head, body] sends the head, reads one answer head (100 Continue),
      then sends the body: its answer is "<first status line>|<second status line>".
  webhook_peer.py CONTROL_PORT CONTROL_SECRET hold TARGET_PORT N
      opens N connections that send half a request head and then nothing, and one that
      sends a head byte every 50 ms (a slowloris); reports {"phase": "ready"}, then waits
      until the listener closed each one; reports {"phase": "closed", "results": [...]},
      one per connection: "eof:<first line of what it got>", "reset" or "open" (at LIMIT)
"""
import http.client
import json
import select
import socket
import sys
import time
import uuid

LIMIT = 20.0  # seconds this script may run at most


def report(port, secret, body):
    event = {"type": "peer", "eventId": str(uuid.uuid4()), "createdAt": int(time.time() * 1000), "body": body}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/", body=json.dumps(event),
                 headers={"Content-Type": "application/json", "X-Misskey-Hook-Secret": secret})
    conn.getresponse().read()
    conn.close()


def read_answer(sock, deadline):
    data = b""
    while time.monotonic() < deadline and len(data) < 65536:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            return "timeout"
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def read_head(sock, deadline):
    data = b""
    while b"\r\n\r\n" not in data and time.monotonic() < deadline and len(data) < 65536:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(1)  # byte by byte: what follows the head is the next answer's
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def raw(target, requests):
    answers = []
    for item in requests:
        sock = socket.create_connection(("127.0.0.1", target), timeout=5)
        first = ""
        if isinstance(item, list):
            sock.sendall(item[0].encode("latin-1"))
            first = read_head(sock, time.monotonic() + 5) + "|"
            item = item[1]
        try:
            sock.sendall(item.encode("latin-1"))
        except OSError:
            pass  # the listener may answer and close before it read everything
        answers.append(first + read_answer(sock, time.monotonic() + 5))
        sock.close()
    return {"phase": "raw", "answers": answers}


def hold(port, secret, target, n, started):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", target), timeout=5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append(s)
    slow = socket.create_connection(("127.0.0.1", target), timeout=5)
    slow.sendall(b"POST / HTTP/1.1\r\n")
    socks.append(slow)
    report(port, secret, {"phase": "ready"})
    results = ["open"] * len(socks)
    got = [b""] * len(socks)
    open_ = set(range(len(socks)))
    next_drip = time.monotonic()
    while open_ and time.monotonic() - started < LIMIT - 2:
        now = time.monotonic()
        if (len(socks) - 1) in open_ and now >= next_drip:
            try:
                slow.send(b"X")  # one more byte of a header name that never ends
            except OSError:
                pass
            next_drip = now + 0.05
        ready, _, _ = select.select([socks[i] for i in open_], [], [], 0.05)
        for s in ready:
            i = socks.index(s)
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                results[i] = "reset"
                open_.discard(i)
                continue
            if chunk:
                got[i] += chunk
            else:
                results[i] = "eof:" + got[i].split(b"\r\n", 1)[0].decode("latin-1")
                open_.discard(i)
    for s in socks:
        s.close()
    return {"phase": "closed", "results": results}


def main():
    started = time.monotonic()
    port, secret, scenario, target = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    if scenario == "raw":
        body = raw(target, json.loads(sys.argv[5]))
    elif scenario == "hold":
        body = hold(port, secret, target, int(sys.argv[5]), started)
    else:
        raise SystemExit("unknown scenario " + scenario)
    report(port, secret, body)


if __name__ == "__main__":
    main()
