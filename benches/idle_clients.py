#!/usr/bin/env python3
"""RSS cost of idle client connections to a running resp-sidecar.

Reads VmRSS of the sidecar process, opens COUNT TCP connections to it, sends
one PING on each and reads +PONG (so every connection is known to be accepted
and served), reads VmRSS again and prints the difference in total and per
connection. Standard library only.

    benches/idle_clients.py --pid PID --port 6380 [--host 127.0.0.1] [--count 10000]
"""

import argparse
import resource
import socket
import sys
import time

BATCH = 200


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def raise_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return
        except (ValueError, OSError):
            sys.exit(f"RLIMIT_NOFILE hard limit {hard} is below {needed}; raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def read_reply(sock, deadline):
    data = b""
    while not data.endswith(b"\r\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no reply to PING")
        sock.settimeout(remaining)
        chunk = sock.recv(64)
        if not chunk:
            raise ConnectionError(f"connection closed by the sidecar after {data!r}")
        data += chunk
    return data


def open_idle(host, port, count, timeout):
    conns = []
    while len(conns) < count:
        batch = []
        for _ in range(min(BATCH, count - len(conns))):
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            batch.append(sock)
        deadline = time.monotonic() + timeout
        for sock in batch:
            reply = read_reply(sock, deadline)
            if reply != b"+PONG\r\n":
                raise RuntimeError(
                    f"connection {len(conns) + 1}: expected +PONG, got {reply!r}"
                )
            conns.append(sock)
    return conns


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True, help="sidecar process id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per batch")
    parser.add_argument("--budget-mb", type=float, default=100.0,
                        help="target the figure is compared with (report only)")
    args = parser.parse_args()

    raise_nofile(args.count + 64)
    before = vm_rss_kib(args.pid)
    started = time.monotonic()
    conns = []
    try:
        conns = open_idle(args.host, args.port, args.count, args.timeout)
        after = vm_rss_kib(args.pid)
    except (OSError, RuntimeError) as err:
        sys.exit(f"idle_clients: after {len(conns)} connections: {err}")
    finally:
        for sock in conns:
            sock.close()
    elapsed = time.monotonic() - started

    delta_kib = after - before
    delta_mb = delta_kib / 1024
    verdict = "within" if delta_mb <= args.budget_mb else "OVER"
    print(f"- {args.count} idle connections opened and PINGed in {elapsed:.1f}s")
    print(f"- VmRSS of pid {args.pid}: {before / 1024:.1f} MB before, {after / 1024:.1f} MB after")
    print(f"- added: {delta_mb:.1f} MB, {delta_kib / args.count:.2f} KB per connection"
          f" ({verdict} the {args.budget_mb:g} MB budget)")


if __name__ == "__main__":
    main()
