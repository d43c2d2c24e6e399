#!/usr/bin/python3
"""Runs nginx for the specs and makes sure it never outlives them.

Run as `nginx_guard.py PORT nginx-arguments...`: starts nginx in the
foreground (the config says `daemon off`) in a process group of its own, waits
until 127.0.0.1:PORT accepts a connection (at most 15 s), prints one line
`PID <master pid> GUARD <its own pid>` (or `FAILED <why>`), and then watches its parent: when the
Lua process that popen'ed it dies or closes the pipe, or on SIGTERM, it stops
nginx (SIGQUIT, then SIGKILL to the whole group after 5 s) and exits. A
reload (SIGHUP to the master) is the spec's business.
"""
import os
import select
import signal
import socket
import subprocess
import sys
import time


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def stop(proc):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the master and any worker left
    except ProcessLookupError:
        pass
    proc.wait()


def main():
    port, args = int(sys.argv[1]), sys.argv[2:]
    parent = os.getppid()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)

    def on_term(*_):
        stop(proc)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    deadline = time.monotonic() + 15
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            sys.stdout.write("FAILED nginx exited or did not listen on port %d in time\n" % port)
            sys.stdout.flush()
            return
        time.sleep(0.05)
    sys.stdout.write("PID %d GUARD %d\n" % (proc.pid, os.getpid()))
    sys.stdout.flush()
    stdout_poll = select.poll()
    stdout_poll.register(sys.stdout.fileno(), 0)  # POLLERR/POLLHUP are always reported
    while True:
        gone = os.getppid() != parent or any(ev & (select.POLLERR | select.POLLHUP) for _, ev in stdout_poll.poll(0))
        if gone or proc.poll() is not None:
            break
        time.sleep(0.2)
    stop(proc)


if __name__ == "__main__":
    main()
