#!/usr/bin/env python3
"""Exercise redis-py (sync and asyncio) against one Redis-protocol endpoint.

Each variant uses the library's default settings plus, at most, the one
option its name says, and prints one line per check:

    PASS <library> <check> [detail]
    FAIL <library> <check> <reason>
    INFO <library> <key>=<value>

Usage: compat.py --port PORT [--host 127.0.0.1] [--only LIB[,LIB]]
Variants: redis-py (redis.Redis(port=...)), redis-py-resp3 (protocol=3),
redis-py-resp2 (protocol=2), redis-py-asyncio (redis.asyncio.Redis).
Exit status 1 when any check failed.
"""

import argparse
import asyncio
import os
import re
import threading
import time

import redis
import redis.asyncio

CHECK_TIMEOUT = 15.0
failures = 0


def say(line):
    print(line, flush=True)


def short(v):
    s = repr(v)
    return s if len(s) <= 300 else s[:300] + "..."


def expect(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: got {short(actual)}, expected {short(expected)}")


def binary_value():
    """Every byte 0..255, then CR LF NUL twice."""
    return bytes(range(256)) + b"\r\n\0\r\n\0"


def one_line(e):
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return re.sub(r"\s+", " ", text)


def report(lib, name, detail=None, error=None):
    global failures
    if error is None:
        say(f"PASS {lib} {name}" + (f" {detail}" if detail else ""))
        return True
    failures += 1
    say(f"FAIL {lib} {name} {one_line(error)}")
    return False


def check(lib, name, fn):
    """Run fn() in a thread so a hung check times out instead of hanging."""
    box = {}

    def run():
        try:
            box["detail"] = fn()
        except BaseException as e:  # reported, never raised
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(CHECK_TIMEOUT)
    if t.is_alive():
        return report(lib, name, error=TimeoutError(f"timed out after {CHECK_TIMEOUT:.0f} s"))
    return report(lib, name, box.get("detail"), box.get("error"))


async def acheck(lib, name, coro_fn):
    try:
        detail = await asyncio.wait_for(coro_fn(), CHECK_TIMEOUT)
    except BaseException as e:
        if isinstance(e, asyncio.TimeoutError):
            e = TimeoutError(f"timed out after {CHECK_TIMEOUT:.0f} s")
        return report(lib, name, error=e)
    return report(lib, name, detail)


def s(v):
    return v.decode() if isinstance(v, bytes) else v


def client_info_line(lib, info):
    """info: the dict redis-py makes of CLIENT INFO (keys and values as str)."""
    info = {s(k): s(v) for k, v in info.items()}
    say(
        f"INFO {lib} client-info resp={info.get('resp')} lib-name={info.get('lib-name', '')}"
        f" lib-ver={info.get('lib-ver', '')} name={info.get('name', '')}"
    )
    return info


def blocked_clients(info):
    return int(info.get("blocked_clients", 0))


# -------------------------------------------------------------------- sync
def sync_suite(lib, host, port, extra):
    expect_resp = extra.get("protocol", 3)  # redis-py 8 defaults to RESP3
    run = os.urandom(4).hex()

    def k(x):
        return f"cc:{lib}:{run}:{x}"

    opened = []

    def open_client(**more):
        c = redis.Redis(host=host, port=port, **extra, **more)
        opened.append(c)
        return c

    r = open_client()
    state = {}

    def connect():
        expect(r.ping(), True, "PING")
        conn = r.connection_pool.get_connection()
        try:
            state["proto"] = conn.protocol
            say(f"INFO {lib} connection-protocol={conn.protocol} parser={type(conn._parser).__name__}")
        finally:
            r.connection_pool.release(conn)
        info = client_info_line(lib, r.client_info())
        expect(info.get("resp"), str(expect_resp), "CLIENT INFO resp")
        return f"resp={info.get('resp')}"

    if not check(lib, "connect", connect):
        return

    check(lib, "ping", lambda: expect(r.ping(), True, "PING"))

    def set_get():
        v = binary_value()
        expect(r.set(k("bin"), v), True, "SET")
        expect(r.get(k("bin")), v, "GET")
        expect(r.get(k("missing")), None, "GET missing")

    check(lib, "set-get-binary", set_get)

    def hashes():
        want = {b"a": b"1", b"b": b"two", b"c\r\n": b"x\0y"}
        expect(r.hset(k("h"), mapping=want), 3, "HSET")
        expect(r.hgetall(k("h")), want, "HGETALL")
        # The reply as the parser decoded it, before any response callback:
        # a dict for a RESP3 map, a flat list for RESP2.
        conn = r.connection_pool.get_connection()
        try:
            conn.send_command("HGETALL", k("h"))
            raw = conn.read_response()
        finally:
            r.connection_pool.release(conn)
        if expect_resp == 3:
            if not isinstance(raw, dict):
                raise AssertionError(f"HGETALL raw reply is not a RESP3 map: {short(raw)}")
            expect(raw, want, "HGETALL raw")
            return "reply=map"
        if not isinstance(raw, list) or len(raw) != 6:
            raise AssertionError(f"HGETALL raw reply is not a flat array: {short(raw)}")
        return "reply=array"

    check(lib, "hset-hgetall", hashes)

    def multi_exec():
        p = r.pipeline(transaction=True)
        p.set(k("m"), "1").incr(k("m")).get(k("m")).hset(k("mh"), "f", "v").hgetall(k("mh"))
        expect(p.execute(), [True, 2, b"2", 1, {b"f": b"v"}], "EXEC")

    check(lib, "multi-exec", multi_exec)

    def watch_abort():
        other = open_client()
        r.set(k("w"), "0")
        with r.pipeline() as p:
            p.watch(k("w"))
            other.set(k("w"), "changed")
            p.multi()
            p.set(k("w"), "mine")
            try:
                p.execute()
            except redis.WatchError:
                pass
            else:
                raise AssertionError("EXEC after a conflicting write did not raise WatchError")
        expect(r.get(k("w")), b"changed", "value after the aborted transaction")

    check(lib, "watch-abort", watch_abort)

    def pipeline_100():
        p = r.pipeline(transaction=False)
        for i in range(50):
            p.set(k(f"p{i}"), str(i))
        for i in range(49):
            p.get(k(f"p{i}"))
        p.incr(k("p0"))
        res = p.execute()
        expect(len(res), 100, "replies")
        expect(res[:50], [True] * 50, "SET replies")
        expect(res[50:99], [str(i).encode() for i in range(49)], "GET replies")
        expect(res[99], 1, "INCR reply")

    check(lib, "pipeline-100", pipeline_100)

    def pubsub():
        ps = r.pubsub()
        try:
            ps.subscribe(k("ch"))
            ps.psubscribe(k("pch*"))
            kinds = set()
            deadline = time.monotonic() + 5
            while kinds != {"subscribe", "psubscribe"} and time.monotonic() < deadline:
                m = ps.get_message(timeout=1)
                if m:
                    kinds.add(s(m["type"]))
            expect(kinds, {"subscribe", "psubscribe"}, "subscription confirmations")
            expect(r.publish(k("ch"), b"hello\r\n"), 1, "PUBLISH receivers")
            expect(r.publish(k("pch1"), b"p"), 1, "PUBLISH (pattern) receivers")
            got = []
            deadline = time.monotonic() + 5
            while len(got) < 2 and time.monotonic() < deadline:
                m = ps.get_message(timeout=1)
                if m and s(m["type"]) in ("message", "pmessage"):
                    got.append((s(m["type"]), m["pattern"], m["channel"], m["data"]))
            expect(
                got,
                [
                    ("message", None, k("ch").encode(), b"hello\r\n"),
                    ("pmessage", k("pch*").encode(), k("pch1").encode(), b"p"),
                ],
                "messages",
            )
            ps.unsubscribe()
            ps.punsubscribe()
            left = set()
            deadline = time.monotonic() + 5
            while left != {"unsubscribe", "punsubscribe"} and time.monotonic() < deadline:
                m = ps.get_message(timeout=1)
                if m:
                    left.add(s(m["type"]))
            expect(left, {"unsubscribe", "punsubscribe"}, "unsubscribe confirmations")
            expect(r.publish(k("ch"), b"nobody"), 0, "PUBLISH after unsubscribe")
        finally:
            ps.close()

    check(lib, "pubsub", pubsub)

    def blpop():
        blocker = open_client()
        pusher = open_client()
        out = {}

        def waiter():
            try:
                out["reply"] = blocker.blpop([k("list")], timeout=10)
            except BaseException as e:
                out["error"] = e

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        deadline = time.monotonic() + 5
        while blocked_clients(r.info("clients")) < 1:
            if time.monotonic() > deadline:
                raise AssertionError("BLPOP did not block within 5 s")
            time.sleep(0.01)
        expect(r.ping(), True, "PING from another client while BLPOP waits")
        expect(pusher.rpush(k("list"), "item"), 1, "RPUSH")
        t.join(10)
        if "error" in out:
            raise out["error"]
        # redis-py 8 hands BLPOP back as a tuple or a list depending on the
        # protocol; the two elements are what counts.
        expect(list(out.get("reply") or []), [k("list").encode(), b"item"], "BLPOP")
        expect(blocker.ping(), True, "PING on the connection after BLPOP")

    check(lib, "blpop", blpop)

    def expire_ttl():
        r.set(k("e"), "v")
        expect(r.expire(k("e"), 100), True, "EXPIRE")
        ttl = r.ttl(k("e"))
        if not 90 < ttl <= 100:
            raise AssertionError(f"TTL {ttl}")
        expect(r.ttl(k("missing")), -2, "TTL missing")

    check(lib, "expire-ttl", expire_ttl)

    def client_name():
        # redis-py sets a name only when client_name is given.
        expect(r.client_getname(), None, "CLIENT GETNAME (default)")
        named = open_client(client_name=f"compat-{lib}")
        expect(s(named.client_getname()), f"compat-{lib}", "CLIENT GETNAME (client_name)")
        return "default=none"

    check(lib, "client-name", client_name)

    try:
        keys = r.keys(f"cc:{lib}:{run}:*")
        if keys:
            r.delete(*keys)
    except redis.RedisError:
        pass
    for c in opened:
        c.close()


# ----------------------------------------------------------------- asyncio
async def async_suite(lib, host, port):
    run = os.urandom(4).hex()

    def k(x):
        return f"cc:{lib}:{run}:{x}"

    opened = []

    def open_client(**more):
        c = redis.asyncio.Redis(host=host, port=port, **more)
        opened.append(c)
        return c

    r = open_client()

    async def connect():
        expect(await r.ping(), True, "PING")
        info = client_info_line(lib, await r.client_info())
        expect(info.get("resp"), "3", "CLIENT INFO resp")
        return f"resp={info.get('resp')}"

    if not await acheck(lib, "connect", connect):
        await asyncio.gather(*(c.aclose() for c in opened), return_exceptions=True)
        return

    async def ping():
        expect(await r.ping(), True, "PING")

    await acheck(lib, "ping", ping)

    async def set_get():
        v = binary_value()
        expect(await r.set(k("bin"), v), True, "SET")
        expect(await r.get(k("bin")), v, "GET")

    await acheck(lib, "set-get-binary", set_get)

    async def hashes():
        want = {b"a": b"1", b"b": b"two", b"c\r\n": b"x\0y"}
        expect(await r.hset(k("h"), mapping=want), 3, "HSET")
        expect(await r.hgetall(k("h")), want, "HGETALL")

    await acheck(lib, "hset-hgetall", hashes)

    async def multi_exec():
        p = r.pipeline(transaction=True)
        p.set(k("m"), "1").incr(k("m")).get(k("m"))
        expect(await p.execute(), [True, 2, b"2"], "EXEC")

    await acheck(lib, "multi-exec", multi_exec)

    async def pipeline_100():
        p = r.pipeline(transaction=False)
        for i in range(99):
            p.set(k(f"p{i}"), str(i))
        p.get(k("p98"))
        res = await p.execute()
        expect(res, [True] * 99 + [b"98"], "replies")
        # And 100 concurrent commands from tasks sharing the pool.
        got = await asyncio.gather(*(r.incr(k("cc")) for _ in range(100)))
        expect(sorted(got), list(range(1, 101)), "100 concurrent INCR")

    await acheck(lib, "pipeline-100", pipeline_100)

    async def pubsub():
        ps = r.pubsub()
        try:
            await ps.subscribe(k("ch"))
            m = None
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                m = await ps.get_message(timeout=1)
                if m and s(m["type"]) == "subscribe":
                    break
            expect(m and s(m["type"]), "subscribe", "subscription confirmation")
            expect(await r.publish(k("ch"), b"hello\r\n"), 1, "PUBLISH receivers")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                m = await ps.get_message(timeout=1)
                if m and s(m["type"]) == "message":
                    break
            expect(m and (m["channel"], m["data"]), (k("ch").encode(), b"hello\r\n"), "message")
            await ps.unsubscribe()
        finally:
            await ps.aclose()

    await acheck(lib, "pubsub", pubsub)

    async def blpop():
        blocker = open_client()
        pusher = open_client()
        task = asyncio.create_task(blocker.blpop([k("list")], timeout=10))
        deadline = time.monotonic() + 5
        while blocked_clients(await r.info("clients")) < 1:
            if time.monotonic() > deadline:
                raise AssertionError("BLPOP did not block within 5 s")
            await asyncio.sleep(0.01)
        expect(await r.ping(), True, "PING from another client while BLPOP waits")
        expect(await pusher.rpush(k("list"), "item"), 1, "RPUSH")
        expect(list(await task or []), [k("list").encode(), b"item"], "BLPOP")

    await acheck(lib, "blpop", blpop)

    async def expire_ttl():
        await r.set(k("e"), "v")
        expect(await r.expire(k("e"), 100), True, "EXPIRE")
        ttl = await r.ttl(k("e"))
        if not 90 < ttl <= 100:
            raise AssertionError(f"TTL {ttl}")

    await acheck(lib, "expire-ttl", expire_ttl)

    async def client_name():
        expect(await r.client_getname(), None, "CLIENT GETNAME (default)")
        named = open_client(client_name=f"compat-{lib}")
        expect(s(await named.client_getname()), f"compat-{lib}", "CLIENT GETNAME (client_name)")
        return "default=none"

    await acheck(lib, "client-name", client_name)

    try:
        keys = await r.keys(f"cc:{lib}:{run}:*")
        if keys:
            await r.delete(*keys)
    except redis.RedisError:
        pass
    await asyncio.gather(*(c.aclose() for c in opened), return_exceptions=True)


VARIANTS = {
    "redis-py": lambda h, p: sync_suite("redis-py", h, p, {}),
    "redis-py-resp3": lambda h, p: sync_suite("redis-py-resp3", h, p, {"protocol": 3}),
    "redis-py-resp2": lambda h, p: sync_suite("redis-py-resp2", h, p, {"protocol": 2}),
    "redis-py-asyncio": lambda h, p: asyncio.run(async_suite("redis-py-asyncio", h, p)),
}


def main():
    global failures
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    wanted = a.only.split(",") if a.only else list(VARIANTS)
    for name in wanted:
        if name not in VARIANTS:
            failures += 1
            say(f"FAIL {name} setup unknown library")
            continue
        say(f"INFO {name} version={redis.__version__}")
        try:
            VARIANTS[name](a.host, a.port)
        except Exception as e:
            failures += 1
            say(f"FAIL {name} setup {one_line(e)}")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
