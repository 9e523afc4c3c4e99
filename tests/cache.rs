//! The local cache against a real Redis with two sidecars in front of it: hits are
//! served without Redis, every kind of change anywhere invalidates every sidecar,
//! a sidecar's clients read their own writes, losing the invalidation stream
//! unverifies everything, and an unreachable Redis degrades as configured.

mod common;

use common::{assert_reply, show, wait_for, RawConn, RedisServer, Sidecar, SidecarToml};
use std::time::{Duration, Instant};

fn config(redis: &RedisServer) -> SidecarToml {
    SidecarToml::new(&redis.url())
        .namespace(
            "name = \"session\"\nprefix = \"session:\"\ncache = true\ndegrade = \"serve-stale\"",
        )
        .namespace("name = \"legacy\"\nprefix = \"legacy:\"\ndb = 3\ncache = true")
        .namespace("name = \"lock\"\nprefix = \"lock:\"\ndegrade = \"fail\"")
}

/// One field of `INFO sidecar`.
fn info(c: &mut RawConn, field: &str) -> String {
    c.sidecar_info(field)
}

fn wait_live(sidecar: &Sidecar) {
    let mut c = sidecar.conn();
    wait_for("cache stream live", Duration::from_secs(10), || {
        (info(&mut c, "cache_state") == "live").then_some(())
    });
}

fn counter(c: &mut RawConn, field: &str) -> u64 {
    info(c, field).parse().unwrap_or(0)
}

/// `cmdstat_<name>` calls on Redis.
fn calls(redis: &RedisServer, command: &str) -> i64 {
    let reply = String::from_utf8_lossy(&redis.cmd(&["INFO", "commandstats"])).into_owned();
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn bulk(v: &str) -> Vec<u8> {
    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
}

/// Poll `read` until it returns `want`, within the invalidation bound.
#[track_caller]
fn eventually(what: &str, mut read: impl FnMut() -> Vec<u8>, want: &[u8]) {
    let start = Instant::now();
    loop {
        let got = read();
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what}: still {} instead of {}",
            show(&got),
            show(want)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn hits_are_served_without_redis_and_any_change_anywhere_invalidates() {
    let redis = RedisServer::start();
    // Written before the sidecars subscribe: no invalidation of it can race the fill.
    redis.cmd(&["SET", "session:s1", "v1"]);
    let toml = config(&redis);
    let (a, b) = (Sidecar::start(&toml), Sidecar::start(&toml));
    wait_live(&a);
    wait_live(&b);
    let mut ca = a.conn();
    let mut cb = b.conn();
    assert_reply(&ca.cmd_str(&["GET", "session:s1"]), &bulk("v1"));
    let gets = calls(&redis, "get");
    for _ in 0..10 {
        assert_reply(&ca.cmd_str(&["GET", "session:s1"]), &bulk("v1"));
    }
    assert_eq!(calls(&redis, "get"), gets, "hits never reach Redis");
    assert!(counter(&mut ca, "cache_hits") >= 10);

    // A write through the other sidecar.
    assert_reply(&cb.cmd_str(&["SET", "session:s1", "v2"]), b"+OK\r\n");
    eventually(
        "write through B",
        || ca.cmd_str(&["GET", "session:s1"]),
        &bulk("v2"),
    );
    // Writes made directly on Redis, of every kind.
    let direct: &[(&[&str], &[u8])] = &[
        (&["APPEND", "session:s1", "x"], b"$3\r\nv2x\r\n"),
        (
            &[
                "EVAL",
                "return redis.call('SET', KEYS[1], 'lua')",
                "1",
                "session:s1",
            ],
            b"$3\r\nlua\r\n",
        ),
        (&["RENAME", "session:s1", "session:gone"], b"$-1\r\n"),
        (&["SET", "session:s1", "back"], b"$4\r\nback\r\n"),
        (&["DEL", "session:s1"], b"$-1\r\n"),
    ];
    for (cmd, want) in direct {
        assert_reply(
            &ca.cmd_str(&["GET", "session:s1"]),
            &ca.cmd_str(&["GET", "session:s1"]),
        );
        redis.cmd(cmd);
        eventually(&cmd.join(" "), || ca.cmd_str(&["GET", "session:s1"]), want);
    }
    // MULTI/EXEC directly.
    let mut d = redis.conn();
    d.cmd_str(&["MULTI"]);
    d.cmd_str(&["SET", "session:s1", "tx"]);
    d.cmd_str(&["EXEC"]);
    eventually("MULTI", || ca.cmd_str(&["GET", "session:s1"]), &bulk("tx"));
    // Expiry: the entry never outlives the key's TTL.
    redis.cmd(&["SET", "session:ttl", "short", "PX", "300"]);
    assert_reply(&ca.cmd_str(&["GET", "session:ttl"]), &bulk("short"));
    std::thread::sleep(Duration::from_millis(350));
    assert_reply(&ca.cmd_str(&["GET", "session:ttl"]), b"$-1\r\n");
    // A null invalidation (FLUSHALL) empties every sidecar.
    assert_reply(&ca.cmd_str(&["GET", "session:s1"]), &bulk("tx"));
    redis.cmd(&["FLUSHALL"]);
    eventually(
        "FLUSHALL",
        || ca.cmd_str(&["GET", "session:s1"]),
        b"$-1\r\n",
    );
    assert!(counter(&mut ca, "cache_flushes") >= 1);
    assert!(counter(&mut ca, "cache_invalidations") >= 5);
}

#[test]
fn a_client_reads_its_own_writes_on_the_same_sidecar() {
    let redis = RedisServer::start();
    let a = Sidecar::start(&config(&redis));
    wait_live(&a);
    let mut c = a.conn();
    let mut other = a.conn();
    for i in 0..300 {
        let v = format!("v{i}");
        // Another client keeps the entry warm so a stale hit would be possible.
        other.cmd_str(&["GET", "session:rw"]);
        assert_reply(&c.cmd_str(&["SET", "session:rw", &v]), b"+OK\r\n");
        assert_reply(&c.cmd_str(&["GET", "session:rw"]), &bulk(&v));
    }
    // In one pipeline: the GET after the SET sees the SET.
    c.cmd_str(&["GET", "session:rw"]);
    let mut pipe = common::encode_str(&["SET", "session:rw", "piped"]);
    pipe.extend(common::encode_str(&["GET", "session:rw"]));
    pipe.extend(common::encode_str(&["HSET", "session:h", "f", "1"]));
    pipe.extend(common::encode_str(&["HGETALL", "session:h"]));
    c.send(&pipe);
    let replies = c.read_replies(4);
    assert_reply(&replies[0], b"+OK\r\n");
    assert_reply(&replies[1], &bulk("piped"));
    assert_reply(&replies[3], b"*2\r\n$1\r\nf\r\n$1\r\n1\r\n");
    // Through MULTI/EXEC.
    c.cmd_str(&["GET", "session:rw"]);
    c.cmd_str(&["MULTI"]);
    c.cmd_str(&["SET", "session:rw", "in-tx"]);
    c.cmd_str(&["EXEC"]);
    assert_reply(&c.cmd_str(&["GET", "session:rw"]), &bulk("in-tx"));
}

#[test]
fn cached_reads_answer_exactly_what_redis_answers_in_both_protocols() {
    let redis = RedisServer::start();
    redis.cmd(&["HSET", "session:h", "user", "42", "role", "admin"]);
    redis.cmd(&["SET", "session:a", "1"]);
    redis.cmd(&["SET", "session:b", "\r\n\0"]);
    redis.cmd(&["SET", "legacy:k", "old-app"]);
    let a = Sidecar::start(&config(&redis));
    wait_live(&a);
    let reads: &[&[&str]] = &[
        &["GET", "session:a"],
        &["GET", "session:missing"],
        &["HGETALL", "session:h"],
        &["HGET", "session:h", "role"],
        &["HGET", "session:h", "nope"],
        &["HMGET", "session:h", "user", "nope", "role"],
        &["HGETALL", "session:missing"],
        &[
            "MGET",
            "session:a",
            "session:missing",
            "session:b",
            "session:h",
        ],
        &[
            "EXISTS",
            "session:a",
            "session:missing",
            "session:h",
            "session:a",
        ],
        &["GET", "session:h"],
    ];
    for proto in ["2", "3"] {
        let mut c = a.conn();
        let mut d = redis.conn();
        c.cmd_str(&["HELLO", proto]);
        d.cmd_str(&["HELLO", proto]);
        for round in 0..3 {
            for cmd in reads {
                let want = d.cmd_str(cmd);
                assert_reply(&c.cmd_str(cmd), &want);
                let _ = round;
            }
        }
    }
    let mut c = a.conn();
    assert!(
        counter(&mut c, "cache_hits") > 20,
        "{}",
        info(&mut c, "cache_hits")
    );
    // A partial MGET fetches only the misses and composes the reply in order.
    redis.cmd(&["SET", "session:c", "3"]);
    let mgets = calls(&redis, "mget");
    assert_reply(
        &c.cmd_str(&["MGET", "session:a", "session:c", "session:b"]),
        b"*3\r\n$1\r\n1\r\n$1\r\n3\r\n$3\r\n\r\n\0\r\n",
    );
    assert_eq!(calls(&redis, "mget"), mgets + 1);
    // A mapped db: the client's names, Redis's prefixed keys, cached alike.
    c.cmd_str(&["SELECT", "3"]);
    let gets = calls(&redis, "get");
    for _ in 0..5 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk("old-app"));
    }
    assert_eq!(calls(&redis, "get"), gets + 1);
    redis.cmd(&["SET", "legacy:k", "changed"]);
    eventually("mapped db", || c.cmd_str(&["GET", "k"]), &bulk("changed"));
}

/// The tracking connection in `CLIENT LIST` (flags carry `t`).
#[test]
fn a_plain_set_fills_the_writers_cache_and_every_other_write_still_invalidates() {
    let redis = RedisServer::start();
    let toml = config(&redis);
    let (a, b) = (Sidecar::start(&toml), Sidecar::start(&toml));
    wait_live(&a);
    wait_live(&b);
    let (mut ca, mut cb) = (a.conn(), b.conn());
    let gets = calls(&redis, "get");
    // The writer's next read is a hit: the value it wrote, not a trip to Redis.
    for (i, ttl) in [&[][..], &["EX", "100"], &["px", "100000"]]
        .into_iter()
        .enumerate()
    {
        let v = format!("w{i}");
        let mut set = vec!["SET", "session:w", &v];
        set.extend_from_slice(ttl);
        assert_reply(&ca.cmd_str(&set), b"+OK\r\n");
        assert_reply(&ca.cmd_str(&["GET", "session:w"]), &bulk(&v));
    }
    assert_eq!(
        calls(&redis, "get"),
        gets,
        "the writer read its writes from its cache"
    );
    assert_eq!(counter(&mut ca, "cache_write_fills"), 3);
    assert_eq!(calls(&redis, "set"), 3, "each SET reached Redis once");
    // Every other writer still invalidates it: through the other sidecar, directly.
    assert_reply(&cb.cmd_str(&["SET", "session:w", "from-b"]), b"+OK\r\n");
    eventually(
        "write through B",
        || ca.cmd_str(&["GET", "session:w"]),
        &bulk("from-b"),
    );
    assert_reply(&ca.cmd_str(&["SET", "session:w", "from-a"]), b"+OK\r\n");
    redis.cmd(&["SET", "session:w", "direct"]);
    eventually(
        "direct write",
        || ca.cmd_str(&["GET", "session:w"]),
        &bulk("direct"),
    );
    // Through a mapped db: Redis holds the prefixed key, the client sees its own.
    assert_reply(&ca.cmd_str(&["SELECT", "3"]), b"+OK\r\n");
    let gets = calls(&redis, "get");
    assert_reply(&ca.cmd_str(&["SET", "k", "mapped"]), b"+OK\r\n");
    assert_reply(&ca.cmd_str(&["GET", "k"]), &bulk("mapped"));
    assert_eq!(calls(&redis, "get"), gets);
    assert_reply(&redis.cmd(&["GET", "legacy:k"]), &bulk("mapped"));
    assert_reply(&ca.cmd_str(&["SELECT", "0"]), b"+OK\r\n");
    // The entry expires with the TTL the write gave the key.
    assert_reply(
        &ca.cmd_str(&["SET", "session:t", "short", "PX", "300"]),
        b"+OK\r\n",
    );
    assert_reply(&ca.cmd_str(&["GET", "session:t"]), &bulk("short"));
    std::thread::sleep(Duration::from_millis(350));
    assert_reply(&ca.cmd_str(&["GET", "session:t"]), b"$-1\r\n");
    // Any other form only invalidates: the next read goes to Redis.
    for set in [
        &["SET", "session:w", "nx", "NX"][..],
        &["SET", "session:w", "kept", "KEEPTTL"],
        &["SETEX", "session:w", "100", "setex"],
    ] {
        let gets = calls(&redis, "get");
        ca.cmd_str(set);
        let want = redis.cmd(&["GET", "session:w"]);
        assert_reply(&ca.cmd_str(&["GET", "session:w"]), &want);
        assert_eq!(calls(&redis, "get"), gets + 2, "{set:?} then GET");
    }
    // A failed write fills nothing.
    redis.cmd(&["CONFIG", "SET", "maxmemory", "1"]);
    let reply = ca.cmd_str(&["SET", "session:w", "too-big"]);
    assert!(reply.starts_with(b"-OOM"), "{}", show(&reply));
    redis.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_reply(&ca.cmd_str(&["GET", "session:w"]), &bulk("setex"));
}

#[test]
fn a_write_whose_stream_is_lost_before_its_reply_gets_an_error_and_leaves_nothing_stale() {
    let redis = RedisServer::start();
    let a = Sidecar::start(&config(&redis));
    wait_live(&a);
    let mut c = a.conn();
    assert_reply(&c.cmd_str(&["SET", "session:p", "before"]), b"+OK\r\n");
    // Redis holds writes: the SET waits on the invalidation connection, the heartbeat
    // behind it goes unanswered, and the stream is given up with the write in flight.
    redis.cmd(&["CLIENT", "PAUSE", "3000", "WRITE"]);
    let started = Instant::now();
    let reply = c.cmd_str(&["SET", "session:p", "during"]);
    assert!(
        reply.starts_with(b"-ERR upstream") && show(&reply).contains("may have been executed"),
        "{}",
        show(&reply)
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    redis.cmd(&["CLIENT", "UNPAUSE"]);
    wait_live(&a);
    let want = redis.cmd(&["GET", "session:p"]);
    assert_reply(&c.cmd_str(&["GET", "session:p"]), &want);
    assert_reply(&c.cmd_str(&["SET", "session:p", "after"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "session:p"]), &bulk("after"));
}

#[test]
fn fill_on_write_off_only_invalidates() {
    let redis = RedisServer::start();
    let a = Sidecar::start(&config(&redis).cache("fill_on_write = false"));
    wait_live(&a);
    let mut c = a.conn();
    assert_reply(&c.cmd_str(&["SET", "session:w", "v"]), b"+OK\r\n");
    let gets = calls(&redis, "get");
    assert_reply(&c.cmd_str(&["GET", "session:w"]), &bulk("v"));
    assert_eq!(calls(&redis, "get"), gets + 1);
    assert_eq!(counter(&mut c, "cache_write_fills"), 0);
}

#[test]
fn writes_through_a_sidecar_racing_writes_elsewhere_never_leave_a_stale_entry() {
    const KEYS: usize = 4;
    let redis = RedisServer::start();
    let toml = config(&redis);
    let (a, b) = (Sidecar::start(&toml), Sidecar::start(&toml));
    wait_live(&a);
    wait_live(&b);
    let stop = Instant::now() + Duration::from_secs(2);
    let key = |i: usize| format!("session:race:{}", i % KEYS);
    // Writers through A (filling its cache), through B and directly on Redis, and a
    // reader on A keeping entries filled, all on the same few keys at once.
    let mut threads = Vec::new();
    for (who, mut conn) in [("a", a.conn()), ("b", b.conn()), ("d", redis.conn())] {
        threads.push(std::thread::spawn(move || {
            let mut n = 0usize;
            while Instant::now() < stop {
                n += 1;
                let v = format!("{who}{n}");
                assert_reply(&conn.cmd_str(&["SET", &key(n), &v]), b"+OK\r\n");
            }
            n
        }));
    }
    let mut reader = a.conn();
    threads.push(std::thread::spawn(move || {
        let mut n = 0usize;
        while Instant::now() < stop {
            n += 1;
            reader.cmd_str(&["GET", &key(n)]);
        }
        n
    }));
    let counts: Vec<usize> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    // Once the writes stop, A answers what Redis holds, for every key.
    let mut ca = a.conn();
    for i in 0..KEYS {
        let want = redis.cmd(&["GET", &key(i)]);
        eventually(&key(i), || ca.cmd_str(&["GET", &key(i)]), &want);
    }
    let fills = counter(&mut ca, "cache_write_fills");
    println!("race: writes a/b/direct and reads {counts:?}, {fills} write fills");
    assert!(fills > 0, "the writes through A filled its cache");
}

fn kill_stream(redis: &RedisServer) {
    let list = String::from_utf8_lossy(&redis.cmd(&["CLIENT", "LIST"])).into_owned();
    let id = list
        .lines()
        .find(|l| {
            l.split(' ')
                .any(|f| f.strip_prefix("flags=").is_some_and(|f| f.contains('t')))
        })
        .and_then(|l| l.strip_prefix("id="))
        .and_then(|l| l.split(' ').next())
        .expect("a tracking connection")
        .to_string();
    assert_reply(&redis.cmd(&["CLIENT", "KILL", "ID", &id]), b":1\r\n");
}

#[test]
fn losing_the_stream_or_its_heartbeat_unverifies_every_entry() {
    let redis = RedisServer::start();
    let a = Sidecar::start(&config(&redis));
    wait_live(&a);
    let mut c = a.conn();
    redis.cmd(&["SET", "session:k", "1"]);
    assert_reply(&c.cmd_str(&["GET", "session:k"]), &bulk("1"));
    assert_reply(&c.cmd_str(&["GET", "session:k"]), &bulk("1"));
    kill_stream(&redis);
    wait_for("stream loss noticed", Duration::from_secs(5), || {
        (counter(&mut c, "cache_streams_lost") >= 1).then_some(())
    });
    // Changed while the stream was down: no invalidation can arrive for it.
    redis.cmd(&["SET", "session:k", "2"]);
    assert_reply(&c.cmd_str(&["GET", "session:k"]), &bulk("2"));
    wait_live(&a);
    assert_reply(&c.cmd_str(&["GET", "session:k"]), &bulk("2"));
    assert_reply(&c.cmd_str(&["GET", "session:k"]), &bulk("2"));

    // A missed heartbeat: Redis stops answering the stream's PING.
    let lost = counter(&mut c, "cache_streams_lost");
    redis.cmd(&["CLIENT", "PAUSE", "1500", "ALL"]);
    wait_for("heartbeat loss noticed", Duration::from_secs(5), || {
        (counter(&mut c, "cache_streams_lost") > lost).then_some(())
    });
    assert!(
        info(&mut c, "cache_state").contains("heartbeat") || info(&mut c, "cache_state") == "live"
    );
    redis.cmd(&["CLIENT", "UNPAUSE"]);
    wait_live(&a);
    redis.cmd(&["SET", "session:k", "3"]);
    eventually(
        "after heartbeat loss",
        || c.cmd_str(&["GET", "session:k"]),
        &bulk("3"),
    );
}

#[test]
fn an_unreachable_redis_serves_stale_sessions_for_a_while_and_fails_the_rest_fast() {
    let mut redis = RedisServer::start();
    redis.cmd(&["SET", "session:u", "logged-in"]);
    let toml = config(&redis).cache("stale_if_error = \"1500ms\"");
    let a = Sidecar::start(&toml);
    wait_live(&a);
    let mut c = a.conn();
    assert_reply(&c.cmd_str(&["GET", "session:u"]), &bulk("logged-in"));
    redis.kill();
    wait_for("unreachable noticed", Duration::from_secs(5), || {
        info(&mut c, "cache_state")
            .starts_with("unreachable")
            .then_some(())
    });
    // Sessions keep users logged in; locks fail closed; writes fail at once.
    assert_reply(&c.cmd_str(&["GET", "session:u"]), &bulk("logged-in"));
    for cmd in [
        &["SET", "lock:a", "1", "PX", "100"][..],
        &["GET", "lock:a"],
        &["SET", "session:u", "x"],
        &["GET", "session:never-cached"],
    ] {
        let start = Instant::now();
        let reply = c.cmd_str(cmd);
        assert!(
            reply.starts_with(b"-TRYAGAIN upstream unreachable"),
            "{}",
            show(&reply)
        );
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
    }
    assert!(counter(&mut c, "cache_stale_hits") >= 1);
    std::thread::sleep(Duration::from_millis(1600));
    let reply = c.cmd_str(&["GET", "session:u"]);
    assert!(
        reply.starts_with(b"-TRYAGAIN"),
        "stale window over: {}",
        show(&reply)
    );
    // Back: unverified entries are dropped, never served as fresh.
    redis.restart();
    wait_live(&a);
    redis.cmd(&["SET", "session:u", "fresh"]);
    // The data connections may still be in their reconnect backoff: -TRYAGAIN until
    // they are up, and then the fresh value, never the unverified entry.
    let reply = wait_for("data path back", Duration::from_secs(5), || {
        let reply = c.cmd_str(&["GET", "session:u"]);
        (!reply.starts_with(b"-TRYAGAIN")).then_some(reply)
    });
    assert_reply(&reply, &bulk("fresh"));
}

#[test]
fn cache_max_ttl_bounds_an_entry_and_uncached_namespaces_always_reach_redis() {
    let redis = RedisServer::start();
    redis.cmd(&["SET", "session:m", "1"]);
    redis.cmd(&["SET", "lock:m", "1"]);
    let a = Sidecar::start(&config(&redis).cache("max_ttl = \"200ms\""));
    wait_live(&a);
    let mut c = a.conn();
    let gets = calls(&redis, "get");
    c.cmd_str(&["GET", "session:m"]);
    c.cmd_str(&["GET", "session:m"]);
    assert_eq!(calls(&redis, "get"), gets + 1);
    std::thread::sleep(Duration::from_millis(250));
    c.cmd_str(&["GET", "session:m"]);
    assert_eq!(
        calls(&redis, "get"),
        gets + 2,
        "entry expired at cache.max_ttl"
    );
    for _ in 0..3 {
        c.cmd_str(&["GET", "lock:m"]);
    }
    assert_eq!(
        calls(&redis, "get"),
        gets + 5,
        "lock reads are never cached"
    );
}

/// Writers set increasing versions through sidecar B and directly; a reader through
/// sidecar A must never see a version older than one acknowledged more than `BOUND`
/// before its read began. The stream is killed mid-run once.
#[test]
fn staleness_checker_finds_no_violation() {
    const BOUND: Duration = Duration::from_millis(50);
    let redis = RedisServer::start();
    let toml = config(&redis);
    let (a, b) = (Sidecar::start(&toml), Sidecar::start(&toml));
    wait_live(&a);
    wait_live(&b);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, u64)>::new()));
    // benches/cache.sh runs the long version (CACHE_STALENESS_SECS=60).
    let secs = std::env::var("CACHE_STALENESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3u64);
    let stop = Instant::now() + Duration::from_secs(secs);
    let writer = {
        let acked = acked.clone();
        let (mut wa, mut wb, mut wd) = (a.conn(), b.conn(), redis.conn());
        std::thread::spawn(move || {
            let mut v = 0u64;
            while Instant::now() < stop {
                v += 1;
                // Through the other sidecar, directly, and through the reader's own
                // sidecar (whose writes fill its cache).
                let conn = match v % 3 {
                    0 => &mut wb,
                    1 => &mut wd,
                    _ => &mut wa,
                };
                assert_reply(
                    &conn.cmd_str(&["SET", "session:ver", &v.to_string()]),
                    b"+OK\r\n",
                );
                acked.lock().expect("lock").push((Instant::now(), v));
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut reader = a.conn();
    let (mut reads, mut killed) = (0, false);
    while Instant::now() < stop {
        if !killed && Instant::now() + Duration::from_secs(secs) / 2 > stop {
            kill_stream(&redis);
            killed = true;
        }
        let began = Instant::now();
        let floor = acked
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|(at, _)| *at + BOUND < began)
            .map_or(0, |(_, v)| *v);
        let reply = reader.cmd_str(&["GET", "session:ver"]);
        let got: u64 = String::from_utf8_lossy(&reply)
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        assert!(
            got >= floor,
            "read {got} began after {floor} was acknowledged"
        );
        reads += 1;
    }
    writer.join().expect("writer");
    let hits = counter(&mut reader, "cache_hits");
    let versions = acked.lock().expect("lock").len();
    println!("staleness: {secs}s, {reads} reads ({hits} cache hits), {versions} versions written, stream killed once, 0 violations (bound {BOUND:?})");
    assert!(reads > 100, "only {reads} reads");
    assert!(counter(&mut reader, "cache_hits") > 0);
}

#[test]
fn metrics_count_hits_misses_fills_and_entries_exactly() {
    let redis = RedisServer::start();
    redis.cmd(&["SET", "session:x", "1"]);
    let a = Sidecar::start(&config(&redis).admin());
    wait_live(&a);
    let mut c = a.conn();
    for _ in 0..4 {
        assert_reply(&c.cmd_str(&["GET", "session:x"]), &bulk("1"));
    }
    assert_reply(&c.cmd_str(&["SET", "session:x", "2"]), b"+OK\r\n");
    let body = common::http::get(a.admin_addr(), "/metrics")
        .expect("scrape")
        .body;
    let value = |series: &str| -> String {
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} missing from /metrics"))
            .to_string()
    };
    let ns = "{namespace=\"session\"}";
    assert_eq!(value(&format!("sidecar_cache_hits_total{ns}")), "3");
    assert_eq!(value(&format!("sidecar_cache_misses_total{ns}")), "1");
    assert_eq!(value(&format!("sidecar_cache_fills_total{ns}")), "1");
    assert_eq!(
        value(&format!("sidecar_cache_invalidations_total{ns}")),
        "1"
    );
    // The SET filled the entry again with the value it wrote (cache.fill_on_write).
    assert_eq!(value(&format!("sidecar_cache_write_fills_total{ns}")), "1");
    assert_eq!(value(&format!("sidecar_cache_entries{ns}")), "1");
    assert_eq!(value("sidecar_cache_entries{namespace=\"legacy\"}"), "0");
    assert_eq!(value("sidecar_cache_stream_up"), "1");
    assert_reply(&c.cmd_str(&["GET", "session:x"]), &bulk("2"));
    let body = common::http::get(a.admin_addr(), "/metrics")
        .expect("scrape")
        .body;
    assert!(
        body.contains(&format!("sidecar_cache_entries{ns} 1\n"))
            && body.contains(&format!("sidecar_cache_hits_total{ns} 4\n")),
        "{body}"
    );
    let cache = String::from_utf8_lossy(&c.cmd_str(&["SIDECAR", "CACHE"])).into_owned();
    assert!(
        cache.contains("cache_state:live") && cache.contains("cache_ns_session:entries=1"),
        "{cache}"
    );
}

#[test]
fn a_key_evicted_by_redis_is_dropped_from_the_cache() {
    let redis =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-random"]);
    redis.cmd(&["SET", "session:e", "kept-until-evicted"]);
    let a = Sidecar::start(&config(&redis));
    wait_live(&a);
    let mut c = a.conn();
    assert_reply(
        &c.cmd_str(&["GET", "session:e"]),
        &bulk("kept-until-evicted"),
    );
    assert_reply(
        &c.cmd_str(&["GET", "session:e"]),
        &bulk("kept-until-evicted"),
    );
    assert_eq!(counter(&mut c, "cache_hits"), 1, "the entry is cached");
    let value = "x".repeat(1024);
    let mut d = redis.conn();
    let mut i = 0;
    while redis.cmd(&["EXISTS", "session:e"]) == b":1\r\n" {
        for _ in 0..200 {
            i += 1;
            d.send(&common::encode_str(&[
                "SET",
                &format!("filler:{i}"),
                &value,
            ]));
        }
        d.read_replies(200);
        assert!(i < 200_000, "session:e never evicted");
    }
    eventually("evicted", || c.cmd_str(&["GET", "session:e"]), b"$-1\r\n");
}

#[test]
fn tracking_refused_by_an_acl_leaves_the_data_path_alone() {
    let redis = RedisServer::start();
    redis.cmd(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">pw",
        "~*",
        "&*",
        "+@all",
        "-client|tracking",
    ]);
    redis.cmd(&["SET", "session:k", "v"]);
    let url = format!("redis://app:pw@127.0.0.1:{}", redis.port());
    let mut toml = config(&redis);
    toml.url = Some(url);
    let a = Sidecar::start(&toml);
    let mut c = a.conn();
    wait_for("tracking refused", Duration::from_secs(5), || {
        info(&mut c, "cache_state")
            .contains("CLIENT TRACKING refused")
            .then_some(())
    });
    let gets = calls(&redis, "get");
    for _ in 0..3 {
        assert_reply(&c.cmd_str(&["GET", "session:k"]), &bulk("v"));
    }
    assert_eq!(
        calls(&redis, "get"),
        gets + 3,
        "nothing served from an unverified cache"
    );
    assert_reply(&c.cmd_str(&["SET", "lock:x", "1"]), b"+OK\r\n");
}

/// Many clients pipelining cache misses at once: each miss is a job of its own (its reply
/// fills the cache), so together they overrun the shared connection's queue and some wait
/// for room. Every reply still reaches its client, in order.
#[test]
fn pipelined_misses_from_many_clients_overrunning_the_queue_are_answered_in_order() {
    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 1500;
    let redis = RedisServer::start();
    for chunk in 0..CLIENTS {
        let mut mset = vec!["MSET".to_string()];
        for i in 0..PER_CLIENT {
            mset.push(format!("session:q{chunk}:{i}"));
            mset.push(format!("v{chunk}-{i}"));
        }
        let args: Vec<&str> = mset.iter().map(String::as_str).collect();
        assert_reply(&redis.cmd(&args), b"+OK\r\n");
    }
    let a = Sidecar::start(&config(&redis));
    wait_live(&a);
    let mut conns: Vec<RawConn> = (0..CLIENTS).map(|_| a.conn()).collect();
    for (chunk, c) in conns.iter_mut().enumerate() {
        let mut pipe = Vec::new();
        for i in 0..PER_CLIENT {
            pipe.extend(common::encode_str(&[
                "GET",
                &format!("session:q{chunk}:{i}"),
            ]));
        }
        c.send(&pipe);
    }
    for (chunk, c) in conns.iter_mut().enumerate() {
        let replies = c.read_replies(PER_CLIENT);
        for (i, reply) in replies.iter().enumerate() {
            assert_reply(reply, &bulk(&format!("v{chunk}-{i}")));
        }
    }
}

/// Cached GETs at the front of a pipeline are answered where they lie in the input;
/// whatever follows them (a miss, a write, a lock read, more hits) takes the usual
/// path, and every reply comes back in order, counted once.
#[test]
fn a_pipeline_of_hits_and_other_commands_is_answered_in_order() {
    let redis = RedisServer::start();
    redis.cmd(&["SET", "session:a", "1"]);
    redis.cmd(&["SET", "session:b", "2"]);
    redis.cmd(&["SET", "lock:l", "held"]);
    let a = Sidecar::start(&config(&redis).admin());
    wait_live(&a);
    let mut c = a.conn();
    assert_reply(&c.cmd_str(&["GET", "session:a"]), &bulk("1"));
    assert_reply(&c.cmd_str(&["GET", "session:b"]), &bulk("2"));
    let gets = calls(&redis, "get");
    let mut pipeline = Vec::new();
    for args in [
        &["GET", "session:a"][..],
        &["get", "session:a"],
        &["GET", "session:b"],
        &["GET", "lock:l"],
        &["GET", "session:a"],
        &["SET", "session:a", "3"],
        &["GET", "session:a"],
        &["GET", "session:b"],
    ] {
        pipeline.extend_from_slice(&common::encode_str(args));
    }
    c.send(&pipeline);
    let replies = c.read_replies(8);
    let want: [&[u8]; 8] = [
        &bulk("1"),
        &bulk("1"),
        &bulk("2"),
        &bulk("held"),
        &bulk("1"),
        b"+OK\r\n",
        &bulk("3"),
        &bulk("2"),
    ];
    for (got, want) in replies.iter().zip(want) {
        assert_reply(got, want);
    }
    // Only the lock read (never cached) and the read behind the write (read-your-writes)
    // reached Redis.
    assert_eq!(calls(&redis, "get"), gets + 2);
    let body = common::http::get(a.admin_addr(), "/metrics")
        .expect("scrape")
        .body;
    let gets_counted = body
        .lines()
        .find(|l| l.starts_with("sidecar_commands_total{command=\"GET\",outcome=\"ok\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no GET series in {body}"))
        .to_string();
    assert_eq!(gets_counted, "9", "every GET counted once");
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
}

/// Hits answered in place count against `server.max_pipeline` like decoded requests:
/// a pipeline of hits several times the cap is answered whole and in order.
#[test]
fn a_pipeline_of_hits_longer_than_max_pipeline_is_answered_whole() {
    let redis = RedisServer::start();
    for i in 0..5 {
        redis.cmd(&["SET", &format!("session:{i}"), &i.to_string()]);
    }
    let a = Sidecar::start(&config(&redis).server("max_pipeline = 3"));
    wait_live(&a);
    let mut c = a.conn();
    for i in 0..5 {
        assert_reply(
            &c.cmd_str(&["GET", &format!("session:{i}")]),
            &bulk(&i.to_string()),
        );
    }
    let gets = calls(&redis, "get");
    let mut pipeline = Vec::new();
    for n in 0..40 {
        pipeline.extend_from_slice(&common::encode_str(&["GET", &format!("session:{}", n % 5)]));
    }
    pipeline.extend_from_slice(&common::encode_str(&["PING"]));
    c.send(&pipeline);
    for (n, reply) in c.read_replies(40).iter().enumerate() {
        assert_reply(reply, &bulk(&(n % 5).to_string()));
    }
    assert_reply(&c.read_reply(), b"+PONG\r\n");
    assert_eq!(calls(&redis, "get"), gets, "every GET was a hit");
}
