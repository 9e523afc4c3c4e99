#!/usr/bin/env python3
"""A Sentinel failover under a steady write load through resp-sidecar.

Started by benches/failover.sh once a primary, a replica, three sentinels and
the sidecar (in sentinel mode) are up. Standard library only. It

  1. subscribes to every sentinel's event channels (PSUBSCRIBE *);
  2. starts CLIENTS threads, each with its own connection to the sidecar,
     sending `INCR KEY` in a loop and recording, for every reply, when the
     command was sent and answered (time.monotonic) and whether the reply was
     an integer or an error (and its text);
  3. after WARMUP seconds of successful writes on every client, triggers the
     failover: `SENTINEL FAILOVER NAME` (--mode failover) or SIGKILL of the
     primary's process (--mode kill), and polls ROLE on the replica to see
     the moment it is promoted;
  4. keeps the load running until AFTER seconds past the first +switch-master
     and stops;
  5. reads the counter on the new primary and prints the figures as markdown.

All timestamps come from one clock in one process, so they compare directly.

    benches/failover_load.py --sidecar 6380 --sentinels 26379,26380,26381 \\
        --replica 6381 --mode failover
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter

HOST = "127.0.0.1"
# Failover events Sentinel publishes, in the order they usually happen.
EVENTS = (
    "+sdown",
    "+odown",
    "+try-failover",
    "+elected-leader",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+promoted-slave",
    "+switch-master",
)


class Closed(Exception):
    """The peer closed the connection."""


class Conn:
    """A blocking RESP connection with a buffered reader."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def close(self):
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass

    def send(self, *args):
        self.sock.sendall(encode(args))

    def cmd(self, *args):
        self.send(*args)
        return self.read()

    def read(self):
        """One reply: bytes, int, None, list, or an Error."""
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise Closed("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            return Error(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.reader.read(n + 2)
            if len(data) != n + 2:
                raise Closed("connection closed")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(f"unexpected reply line {line!r}")


class Error(str):
    """An error reply."""


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class Client(threading.Thread):
    """Sends INCR in a loop over one connection; reconnects when it is lost.

    records: (sent, answered, kind, value) with kind "ok" (value = the integer),
    "err" (value = the error text), "conn" (value = the connection failure)
    or "other" (value = repr of an unexpected reply).
    """

    def __init__(self, port, key, stop):
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.request = encode(("INCR", key))
        self.records = []

    def run(self):
        conn = None
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = Conn(self.port)
                    sent = time.monotonic()
                conn.sock.sendall(self.request)
                reply = conn.read()
            except (OSError, Closed, ValueError) as e:
                self.records.append((sent, time.monotonic(), "conn", f"{type(e).__name__}: {e}"))
                if conn is not None:
                    conn.close()
                    conn = None
                self.stop.wait(0.01)
                continue
            now = time.monotonic()
            if isinstance(reply, Error):
                self.records.append((sent, now, "err", str(reply)))
            elif isinstance(reply, int):
                self.records.append((sent, now, "ok", reply))
            else:
                self.records.append((sent, now, "other", repr(reply)))
        if conn is not None:
            conn.close()

    def successes(self):
        return sum(1 for r in self.records if r[2] == "ok")


class Subscriber(threading.Thread):
    """Records every Sentinel event about NAME with its arrival time."""

    def __init__(self, port, name, stop):
        super().__init__(daemon=True)
        self.port, self.name, self.stop = port, name, stop
        self.ready = threading.Event()
        self.events = []  # (time, channel, payload)
        self.failure = None
        self.conn = None

    def run(self):
        try:
            self.conn = Conn(self.port, timeout=None)
            self.conn.send("PSUBSCRIBE", "*")
            self.conn.read()
            self.ready.set()
            while not self.stop.is_set():
                msg = self.conn.read()
                now = time.monotonic()
                if isinstance(msg, list) and len(msg) == 4 and msg[0] == b"pmessage":
                    channel = msg[2].decode()
                    payload = msg[3].decode("utf-8", "replace")
                    if f" {self.name} " in f" {payload} ":
                        self.events.append((now, channel, payload))
        except (OSError, Closed, ValueError) as e:
            if not self.stop.is_set():
                self.failure = e
        finally:
            self.ready.set()


def role_of(conn):
    reply = conn.cmd("ROLE")
    if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
        return reply[0].decode()
    return None


def wait_promotion(port, stop, out):
    """Polls ROLE on the replica until it says master; stores the time in out."""
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = Conn(port, timeout=1.0)
            if role_of(conn) == "master":
                out.append(time.monotonic())
                break
        except (OSError, Closed, ValueError):
            if conn is not None:
                conn.close()
            conn = None
        stop.wait(0.002)
    if conn is not None:
        conn.close()


def fail(message):
    sys.exit(f"failover_load.py: {message}")


def trigger_failover(sentinel_port, name, deadline):
    """SENTINEL FAILOVER, retried while Sentinel has no good replica yet."""
    conn = Conn(sentinel_port)
    try:
        while True:
            started = time.monotonic()
            reply = conn.cmd("SENTINEL", "FAILOVER", name)
            if reply == b"OK":
                return started
            if time.monotonic() > deadline:
                fail(f"SENTINEL FAILOVER kept answering {reply!r}")
            time.sleep(0.05)
    finally:
        conn.close()


def ms(t, origin):
    return f"{(t - origin) * 1000:+.0f} ms" if t is not None else "n/a"


def dur(a, b):
    return f"{(b - a) * 1000:.0f} ms" if a is not None and b is not None else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sidecar", type=int, required=True, help="sidecar port")
    ap.add_argument("--sentinels", required=True, help="comma-separated sentinel ports")
    ap.add_argument("--replica", type=int, required=True, help="port of the replica expected to be promoted")
    ap.add_argument("--name", default="mymaster", help="Sentinel master name")
    ap.add_argument("--mode", choices=("failover", "kill"), default="failover")
    ap.add_argument("--kill-pid", type=int, help="pid of the primary (--mode kill)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--key", default="bench:counter")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of load before the trigger")
    ap.add_argument("--after", type=float, default=3.0, help="seconds of load after +switch-master")
    ap.add_argument("--timeout", type=float, default=60.0, help="give up if no +switch-master by then")
    args = ap.parse_args()
    if args.mode == "kill" and not args.kill_pid:
        ap.error("--mode kill needs --kill-pid")
    sentinels = [int(p) for p in args.sentinels.split(",")]

    stop = threading.Event()
    subscribers = [Subscriber(p, args.name, stop) for p in sentinels]
    for s in subscribers:
        s.start()
    deadline = time.monotonic() + 10
    for s in subscribers:
        if not s.ready.wait(max(0.0, deadline - time.monotonic())) or s.failure:
            fail(f"could not subscribe to the sentinel on {s.port}: {s.failure}")

    clients = [Client(args.sidecar, args.key, stop) for _ in range(args.clients)]
    load_started = time.monotonic()
    for c in clients:
        c.start()
    # Warm-up: every client must have written successfully, for WARMUP seconds.
    deadline = load_started + args.warmup + 10
    while not all(c.successes() > 0 for c in clients) or time.monotonic() < load_started + args.warmup:
        if time.monotonic() > deadline:
            stop.set()
            fail("not every client got a successful INCR through the sidecar during the warm-up")
        time.sleep(0.01)

    promoted = []
    poller = threading.Thread(target=wait_promotion, args=(args.replica, stop, promoted), daemon=True)
    if args.mode == "failover":
        poller.start()
        trigger = trigger_failover(sentinels[0], args.name, time.monotonic() + 10)
    else:
        poller.start()
        trigger = time.monotonic()
        os.kill(args.kill_pid, signal.SIGKILL)

    def first_switch():
        times = [t for s in subscribers for (t, ch, _) in s.events if ch == "+switch-master"]
        return min(times) if times else None

    deadline = trigger + args.timeout
    while first_switch() is None:
        if time.monotonic() > deadline:
            stop.set()
            fail(f"no +switch-master within {args.timeout:.0f}s of the trigger")
        time.sleep(0.01)
    switch = first_switch()
    while time.monotonic() < switch + args.after:
        time.sleep(0.01)
    stopped = time.monotonic()
    stop.set()
    for c in clients:
        c.join(10)
    poller.join(2)
    for s in subscribers:
        if s.conn is not None:
            try:
                s.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # The new primary, as the first sentinel to switch announced it.
    payload = next(p for s in subscribers for (t, ch, p) in sorted(s.events)
                   if ch == "+switch-master" and t == switch)
    _, _, old_port, new_host, new_port = payload.split()
    conn = Conn(int(new_port))
    try:
        role = role_of(conn)
        counter = conn.cmd("GET", args.key)
    finally:
        conn.close()
    counter = int(counter) if counter is not None else 0

    records = sorted((r for c in clients for r in c.records), key=lambda r: r[1])
    oks = [r for r in records if r[2] == "ok"]
    errors = [r for r in records if r[2] in ("err", "conn", "other")]
    acked = len(oks)
    values = Counter(r[3] for r in oks)
    duplicates = sum(n - 1 for n in values.values() if n > 1)

    first_error = errors[0][1] if errors else None
    last_error = errors[-1][1] if errors else None
    # The longest stretch after the trigger without a successful reply.
    after_trigger = [r[1] for r in oks if r[1] >= trigger]
    before = [r[1] for r in oks if r[1] < trigger]
    marks = ([before[-1]] if before else [trigger]) + after_trigger
    gap_start, gap_end = None, None
    for a, b in zip(marks, marks[1:]):
        if gap_start is None or b - a > gap_end - gap_start:
            gap_start, gap_end = a, b
    # First write on the new primary: the first success after the last error;
    # with no error at all, the end of the longest stall.
    if last_error is not None:
        resume = next((r[1] for r in oks if r[1] > last_error), None)
    else:
        resume = gap_end
    slowest = max(records, key=lambda r: r[1] - r[0])
    steady = [r for r in oks if load_started + 0.5 <= r[1] < trigger]
    rate = len(steady) / (trigger - load_started - 0.5) if trigger > load_started + 0.5 else 0.0

    event_times = {}
    for s in subscribers:
        for t, ch, _ in s.events:
            if ch in EVENTS and (ch not in event_times or t < event_times[ch]):
                event_times[ch] = t

    label = "SENTINEL FAILOVER" if args.mode == "failover" else "SIGKILL of the primary"
    print(f"### {label}: {args.clients} clients, INCR through the sidecar")
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| +switch-master to first write on the new primary (after the last error) | {ms(resume, switch) if resume else 'never'} |")
    print(f"| trigger to first write on the new primary | {dur(trigger, resume)} |")
    print(f"| replica promoted (ROLE master) to first write on it | {ms(resume, promoted[0]) if promoted and resume else 'n/a'} |")
    print(f"| error window (first error to last error) | {dur(first_error, last_error) if errors else 'no errors'} |")
    print(f"| longest stall without a successful write | {dur(gap_start, gap_end)} |")
    print(f"| slowest single reply | {(slowest[1] - slowest[0]) * 1000:.0f} ms |")
    print(f"| error replies seen by clients | {len(errors)} |")
    print(f"| acknowledged INCRs | {acked} |")
    print(f"| counter on the new primary (127.0.0.1:{new_port}, ROLE {role}) | {counter} |")
    print(f"| acknowledged writes lost (acked - counter; negative = writes that ran but were answered with an error) | {acked - counter} |")
    print(f"| values acknowledged twice (lost writes re-issued) | {duplicates} |")
    print(f"| load before the trigger | {rate:,.0f} INCR/s |")
    print()
    if errors:
        print("Error replies, by text:")
        print()
        print("| count | kind | text |")
        print("|---|---|---|")
        texts = Counter((r[2], r[3]) for r in errors)
        for (kind, text), n in texts.most_common():
            kind_label = {"err": "error reply", "conn": "connection", "other": "unexpected"}[kind]
            print(f"| {n} | {kind_label} | `{text.replace('|', '/')}` |")
        print()
    print(f"Timeline (ms after the {'SENTINEL FAILOVER command' if args.mode == 'failover' else 'SIGKILL'}; "
          "sentinel events as first seen on any sentinel):")
    print()
    print("| event | at |")
    print("|---|---|")
    rows = [(trigger, "SENTINEL FAILOVER sent" if args.mode == "failover" else "primary SIGKILLed")]
    rows += [(t, f"sentinel `{ch}`") for ch, t in event_times.items()]
    if promoted:
        rows.append((promoted[0], "replica answers ROLE master"))
    if errors:
        rows.append((first_error, "first error reply"))
        rows.append((last_error, "last error reply"))
    if resume:
        rows.append((resume, "first write on the new primary"))
    rows.append((stopped, "load stopped"))
    for t, what in sorted(rows):
        print(f"| {what} | {ms(t, trigger)} |")
    print()
    print(f"switch: {payload}")
    ok = resume is not None and role == "master"
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
