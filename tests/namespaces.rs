//! Namespaces against a real Redis: what lands in Redis carries the prefix, what the
//! client sees does not; keys outside every namespace are refused; legacy `SELECT n`
//! maps onto a prefix; KEYS, SCAN, RANDOMKEY and DBSIZE stay inside the namespace.

mod common;

use common::{assert_reply, show, wait_for, RedisServer, Sidecar, SidecarToml};
use std::time::Duration;

/// session (db 3, protected), lock (protected, TTL required), cache (db 5, flush-safe),
/// ratelimit (flush-safe, default TTL).
fn config(redis: &RedisServer) -> SidecarToml {
    SidecarToml::new(&redis.url())
        .namespace("name = \"session\"\nprefix = \"session:\"\ndb = 3\nflush = \"deny\"")
        .namespace(
            "name = \"lock\"\nprefix = \"lock:\"\nflush = \"deny\"\nrequire_ttl = true\nmax_ttl = \"5m\"",
        )
        .namespace("name = \"cache\"\nprefix = \"cache:\"\ndb = 5\nflush = \"allow\"")
        .namespace(
            "name = \"ratelimit\"\nprefix = \"ratelimit:\"\nflush = \"allow\"\ndefault_ttl = \"60s\"",
        )
}

#[track_caller]
fn assert_noperm(reply: &[u8], needle: &str) {
    let text = show(reply);
    assert!(
        reply.starts_with(b"-NOPERM ") && text.contains(needle),
        "expected -NOPERM mentioning {needle:?}, got {text}"
    );
}

/// A whole reply as text (not shortened like `show`).
fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

/// A RESP2 array of bulk strings, sorted, from a reply (one level).
fn sorted_names(reply: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(reply);
    let mut lines = text.split("\r\n");
    let mut out = Vec::new();
    let header = lines.next().unwrap_or("");
    assert!(header.starts_with('*'), "not an array: {}", show(reply));
    while let Some(line) = lines.next() {
        if line.starts_with('$') {
            out.push(lines.next().unwrap_or("").to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn keys_outside_every_namespace_are_refused_and_the_connection_stays_usable() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&config(&redis));
    let mut c = sidecar.conn();
    assert_noperm(
        &c.cmd_str(&["SET", "foo", "1"]),
        "'foo' is outside every namespace",
    );
    assert_noperm(&c.cmd_str(&["MGET", "session:a", "other"]), "'other'");
    assert_noperm(&c.cmd_str(&["RENAME", "session:a", "nowhere"]), "'nowhere'");
    assert_reply(&c.cmd_str(&["SET", "session:a", "1"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "session:a"]), b"$1\r\n1\r\n");
    assert_reply(&redis.cmd(&["EXISTS", "foo", "nowhere"]), b":0\r\n");
    // Commands without keys are untouched.
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
    // A name longer than any in the command table is unknown: its keys cannot be checked.
    let long = "X".repeat(40);
    assert_noperm(
        &c.cmd_str(&[long.as_str(), "foo"]),
        "is not in the sidecar's command table",
    );
    assert_reply(&c.cmd_str(&["SELECT", "3"]), b"+OK\r\n");
    assert_noperm(
        &c.cmd_str(&[long.as_str(), "a"]),
        "is not in the sidecar's command table",
    );
    assert_reply(&c.cmd_str(&["SELECT", "0"]), b"+OK\r\n");
    // Pipelined: the refusal takes its place in order.
    c.send(&common::encode_str(&["SET", "session:b", "2"]));
    c.send(&common::encode_str(&["GET", "bad"]));
    c.send(&common::encode_str(&["GET", "session:b"]));
    let replies = c.read_replies(3);
    assert_reply(&replies[0], b"+OK\r\n");
    assert_noperm(&replies[1], "'bad'");
    assert_reply(&replies[2], b"$1\r\n2\r\n");
}

#[test]
fn unmatched_keys_allow_lets_them_through_and_counts_them() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&config(&redis).policy("unmatched_keys = \"allow\""));
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "legacy", "1"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "legacy"]), b"$1\r\n1\r\n");
    let report = text(&c.cmd_str(&["SIDECAR", "NAMESPACES"]));
    assert!(report.contains("unmatched_allowed=2"), "{report}");
    assert!(
        report.contains("session prefix=session: db=3 flush=deny"),
        "{report}"
    );
}

#[test]
fn a_mapped_db_prefixes_every_command_family() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&config(&redis));
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SELECT", "3"]), b"+OK\r\n");
    let cases: &[(&[&str], &[u8])] = &[
        (&["SET", "s1", "v"], b"+OK\r\n"),
        (&["MSET", "m1", "a", "m2", "b"], b"+OK\r\n"),
        (
            &["MGET", "m1", "m2", "nope"],
            b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n",
        ),
        (&["HSET", "h", "f", "1"], b":1\r\n"),
        (&["LPUSH", "l", "x", "y"], b":2\r\n"),
        (&["LMOVE", "l", "l2", "LEFT", "RIGHT"], b"$1\r\ny\r\n"),
        (&["SADD", "s", "a", "b"], b":2\r\n"),
        (&["SMOVE", "s", "s2", "a"], b":1\r\n"),
        (&["SINTERCARD", "2", "s", "s2"], b":0\r\n"),
        (&["ZADD", "z", "1", "a", "2", "b"], b":2\r\n"),
        (
            &["ZUNIONSTORE", "zu", "2", "z", "z", "WEIGHTS", "1", "1"],
            b":2\r\n",
        ),
        (&["XADD", "st", "1-1", "f", "v"], b"$3\r\n1-1\r\n"),
        (&["PFADD", "hll", "a"], b":1\r\n"),
        (&["SET", "b1", "a"], b"+OK\r\n"),
        (&["BITOP", "OR", "bd", "b1", "b1"], b":1\r\n"),
        (&["GEOADD", "geo", "13.361389", "38.115556", "p"], b":1\r\n"),
        (&["RENAME", "b1", "b2"], b"+OK\r\n"),
        (&["COPY", "b2", "b3"], b":1\r\n"),
        (&["EXISTS", "s1", "b2", "b3", "b1"], b":3\r\n"),
        (
            &["EVAL", "return redis.call('GET', KEYS[1])", "1", "s1"],
            b"$1\r\nv\r\n",
        ),
        (&["OBJECT", "ENCODING", "s1"], b"$6\r\nembstr\r\n"),
        (&["DEL", "b3"], b":1\r\n"),
    ];
    for (args, want) in cases {
        let got = c.cmd_str(args);
        assert_eq!(show(&got), show(want), "{args:?}");
    }
    // What Redis holds: prefixed names only.
    let on_server = sorted_names(&redis.cmd(&["KEYS", "*"]));
    let want: Vec<String> = [
        "b2", "bd", "geo", "h", "hll", "l", "l2", "m1", "m2", "s", "s1", "s2", "st", "z", "zu",
    ]
    .iter()
    .map(|k| format!("session:{k}"))
    .collect();
    assert_eq!(on_server, want);
    // SORT with BY/GET patterns and STORE: patterns name prefixed keys.
    assert_reply(&c.cmd_str(&["RPUSH", "ids", "2", "1"]), b":2\r\n");
    assert_reply(
        &c.cmd_str(&["MSET", "w_1", "10", "w_2", "5", "o_1", "one", "o_2", "two"]),
        b"+OK\r\n",
    );
    assert_reply(
        &c.cmd_str(&["SORT", "ids", "BY", "w_*", "GET", "o_*", "GET", "#"]),
        b"*4\r\n$3\r\ntwo\r\n$1\r\n2\r\n$3\r\none\r\n$1\r\n1\r\n",
    );
    assert_reply(
        &c.cmd_str(&["SORT", "ids", "BY", "w_*", "STORE", "sorted"]),
        b":2\r\n",
    );
    assert_reply(
        &redis.cmd(&["LRANGE", "session:sorted", "0", "-1"]),
        b"*2\r\n$1\r\n2\r\n$1\r\n1\r\n",
    );
    // Db 0 still sees the full names; other dbs do not exist for Redis.
    let mut d = sidecar.conn();
    assert_reply(&d.cmd_str(&["GET", "session:s1"]), b"$1\r\nv\r\n");
    let keyspace = show(&redis.cmd(&["INFO", "keyspace"]));
    assert!(
        keyspace.contains("db0:") && !keyspace.contains("db3:"),
        "{keyspace}"
    );
}

#[test]
fn key_names_in_replies_come_back_without_the_prefix() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&config(&redis));
    let mut c = sidecar.conn();
    c.cmd_str(&["SELECT", "3"]);
    c.cmd_str(&["RPUSH", "q", "job"]);
    assert_reply(
        &c.cmd_str(&["BLPOP", "empty", "q", "1"]),
        b"*2\r\n$1\r\nq\r\n$3\r\njob\r\n",
    );
    c.cmd_str(&["RPUSH", "q", "a", "b"]);
    assert_reply(
        &c.cmd_str(&["LMPOP", "2", "empty", "q", "LEFT", "COUNT", "1"]),
        b"*2\r\n$1\r\nq\r\n*1\r\n$1\r\na\r\n",
    );
    c.cmd_str(&["XADD", "st", "1-1", "f", "v"]);
    assert_reply(
        &c.cmd_str(&["XREAD", "STREAMS", "st", "0"]),
        b"*1\r\n*2\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
    );
    // Inside MULTI the rewrite applies to EXEC's result.
    c.cmd_str(&["RPUSH", "q", "c"]);
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["LMPOP", "1", "q", "LEFT"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["GET", "nothing"]), b"+QUEUED\r\n");
    assert_reply(
        &c.cmd_str(&["EXEC"]),
        b"*2\r\n*2\r\n$1\r\nq\r\n*1\r\n$1\r\nb\r\n$-1\r\n",
    );
}

#[test]
fn select_without_a_mapping_move_and_swapdb_are_refused() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&config(&redis));
    let mut c = sidecar.conn();
    assert_noperm(&c.cmd_str(&["SELECT", "7"]), "no namespace maps db 7");
    assert_noperm(&c.cmd_str(&["MOVE", "session:a", "3"]), "MOVE is refused");
    assert_noperm(&c.cmd_str(&["SWAPDB", "0", "3"]), "SWAPDB is refused");
    assert_noperm(
        &c.cmd_str(&["COPY", "session:a", "session:b", "DB", "3"]),
        "COPY ... DB",
    );
    // Still in db 0, and SELECT 0 comes back from a mapped db.
    assert_reply(&c.cmd_str(&["SET", "session:x", "0"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SELECT", "5"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SET", "x", "5"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SELECT", "0"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "cache:x"]), b"$1\r\n5\r\n");
    assert_reply(&c.cmd_str(&["GET", "session:x"]), b"$1\r\n0\r\n");
    // RESET goes back to db 0 too.
    c.cmd_str(&["SELECT", "5"]);
    c.cmd_str(&["RESET"]);
    assert_reply(&c.cmd_str(&["GET", "cache:x"]), b"$1\r\n5\r\n");
}

/// `INFO commandstats` calls of one command on the server.
fn calls(redis: &RedisServer, command: &str) -> i64 {
    let info = text(&redis.cmd(&["INFO", "commandstats"]));
    let needle = format!("cmdstat_{command}:calls=");
    info.split(&needle)
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn keys_is_answered_by_scan_and_equals_keys_on_the_namespace() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&config(&redis));
    let mut fill = redis.conn();
    for i in 0..3000 {
        fill.send(&common::encode_str(&["SET", &format!("session:u{i}"), "1"]));
        fill.send(&common::encode_str(&["SET", &format!("cache:u{i}"), "1"]));
    }
    fill.read_replies(6000);
    redis.cmd(&["SET", "session:we*ird[1]", "1"]);
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    let mut c = sidecar.conn();
    c.cmd_str(&["SELECT", "3"]);
    let direct: Vec<String> = sorted_names(&redis.cmd(&["KEYS", "session:u1*"]))
        .into_iter()
        .map(|k| k.trim_start_matches("session:").to_string())
        .collect();
    let keys_before = calls(&redis, "keys");
    let through = sorted_names(&c.cmd_str(&["KEYS", "u1*"]));
    assert_eq!(through.len(), 1111);
    assert_eq!(through, direct);
    // The prefix's glob characters are escaped; the client's pattern is not.
    assert_eq!(
        sorted_names(&c.cmd_str(&["KEYS", "we\\*ird*"])),
        vec!["we*ird[1]"]
    );
    assert_eq!(
        calls(&redis, "keys"),
        keys_before,
        "Redis must never run KEYS"
    );
    assert!(calls(&redis, "scan") > 0);
    // db 0: KEYS over the whole keyspace, still by SCAN.
    let mut d = sidecar.conn();
    assert_eq!(sorted_names(&d.cmd_str(&["KEYS", "cache:u2*"])).len(), 1111);
    assert_eq!(calls(&redis, "keys"), keys_before);
}

#[test]
fn keys_forward_and_deny_modes() {
    let redis = RedisServer::start();
    redis.cmd(&["SET", "session:a", "1"]);
    redis.cmd(&["SET", "cache:a", "1"]);
    let forward = Sidecar::start(&config(&redis).policy("keys = \"forward\""));
    let mut c = forward.conn();
    c.cmd_str(&["SELECT", "3"]);
    assert_reply(&c.cmd_str(&["KEYS", "*"]), b"*1\r\n$1\r\na\r\n");
    assert!(calls(&redis, "keys") >= 1);
    let deny = Sidecar::start(&config(&redis).policy("keys = \"deny\""));
    assert_noperm(&deny.conn().cmd_str(&["KEYS", "*"]), "policy.keys");
}

#[test]
fn scan_through_a_mapped_db_returns_each_key_exactly_once() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&config(&redis));
    let mut fill = redis.conn();
    for i in 0..2000 {
        fill.send(&common::encode_str(&["SET", &format!("cache:k{i}"), "1"]));
        fill.send(&common::encode_str(&["SET", &format!("session:k{i}"), "1"]));
    }
    fill.read_replies(4000);
    let mut c = sidecar.conn();
    c.cmd_str(&["SELECT", "5"]);
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut cursor = "0".to_string();
    loop {
        let (next, names) = scan_page(&c.cmd_str(&["SCAN", &cursor, "COUNT", "100"]));
        cursor = next;
        for name in names {
            assert!(!name.starts_with("cache:"), "prefix leaked: {name}");
            *seen.entry(name).or_default() += 1;
        }
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 2000);
    assert!(seen.values().all(|&n| n == 1), "a key came back twice");
    assert!(seen.keys().all(|k| k.starts_with('k')));
    // MATCH is scoped too.
    let reply = show(&c.cmd_str(&["SCAN", "0", "MATCH", "k1999", "COUNT", "100000"]));
    assert!(
        reply.contains("k1999") && !reply.contains("session"),
        "{reply}"
    );
}

#[test]
fn randomkey_and_dbsize_stay_inside_the_namespace() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&config(&redis));
    for i in 0..50 {
        redis.cmd(&["SET", &format!("session:s{i}"), "1"]);
    }
    for i in 0..7 {
        redis.cmd(&["SET", &format!("cache:c{i}"), "1"]);
    }
    let mut c = sidecar.conn();
    c.cmd_str(&["SELECT", "5"]);
    assert_reply(&c.cmd_str(&["DBSIZE"]), b":7\r\n");
    for _ in 0..20 {
        let key = String::from_utf8_lossy(&c.cmd_str(&["RANDOMKEY"])).into_owned();
        assert!(key.contains("\r\nc") && !key.contains("cache:"), "{key:?}");
    }
    c.cmd_str(&["SELECT", "3"]);
    assert_reply(&c.cmd_str(&["DBSIZE"]), b":50\r\n");
    redis.cmd(&["FLUSHALL"]);
    assert_reply(&c.cmd_str(&["RANDOMKEY"]), b"$-1\r\n");
    assert_reply(&c.cmd_str(&["DBSIZE"]), b":0\r\n");
}

#[test]
fn flushall_over_100k_mixed_keys_keeps_every_session_and_lock() {
    let redis = RedisServer::start_with(&["--enable-debug-command", "local"]);
    // DEBUG POPULATE n prefix: keys "prefix:0".."prefix:n-1".
    for ns in ["session", "lock", "cache", "ratelimit"] {
        assert_reply(&redis.cmd(&["DEBUG", "POPULATE", "25000", ns]), b"+OK\r\n");
    }
    assert_eq!(dbsize(&redis), 100_000);
    let sidecar = Sidecar::start(&config(&redis));
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
    assert_eq!(dbsize(&redis), 50_000);
    assert_eq!(count_prefix(&redis, "session:"), 25_000);
    assert_eq!(count_prefix(&redis, "lock:"), 25_000);
    assert_eq!(count_prefix(&redis, "cache:"), 0);
    assert_eq!(count_prefix(&redis, "ratelimit:"), 0);
    assert_eq!(
        calls(&redis, "flushall"),
        0,
        "FLUSHALL must never reach Redis"
    );
    // The connection is fine, and FLUSHDB in db 0 means the same.
    redis.cmd(&["SET", "cache:again", "1"]);
    assert_reply(&c.cmd_str(&["FLUSHDB", "ASYNC"]), b"+OK\r\n");
    assert_eq!(dbsize(&redis), 50_000);
}

/// A RESP2 SCAN reply: the next cursor and the names (names hold no CR/LF here).
fn scan_page(reply: &[u8]) -> (String, Vec<String>) {
    let text = String::from_utf8_lossy(reply).into_owned();
    let parts: Vec<&str> = text.split("\r\n").collect();
    assert!(parts[0] == "*2", "not a SCAN reply: {}", show(reply));
    let names = parts[4..]
        .chunks(2)
        .filter(|pair| pair.len() == 2 && pair[0].starts_with('$'))
        .map(|pair| pair[1].to_string())
        .collect();
    (parts[2].to_string(), names)
}

/// An integer reply's value.
fn int(reply: &[u8]) -> i64 {
    let text = String::from_utf8_lossy(reply);
    text.trim_start_matches(':')
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not an integer: {text:?}"))
}

fn dbsize(redis: &RedisServer) -> i64 {
    int(&redis.cmd(&["DBSIZE"]))
}

fn count_prefix(redis: &RedisServer, prefix: &str) -> usize {
    let mut cursor = "0".to_string();
    let mut n = 0;
    let mut conn = redis.conn();
    loop {
        let reply = conn.cmd_str(&[
            "SCAN",
            &cursor,
            "MATCH",
            &format!("{prefix}*"),
            "COUNT",
            "10000",
        ]);
        let (next, names) = scan_page(&reply);
        cursor = next;
        n += names.len();
        if cursor == "0" {
            return n;
        }
    }
}

#[test]
fn flushdb_in_a_mapped_db_respects_the_namespace_and_sidecar_flush_counts() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&config(&redis));
    for i in 0..300 {
        redis.cmd(&["SET", &format!("cache:{i}"), "1"]);
        redis.cmd(&["SET", &format!("session:{i}"), "1"]);
        redis.cmd(&["SET", &format!("ratelimit:{i}"), "1"]);
    }
    let mut c = sidecar.conn();
    c.cmd_str(&["SELECT", "3"]);
    assert_noperm(
        &c.cmd_str(&["FLUSHDB"]),
        "namespace 'session' (db 3) is protected",
    );
    c.cmd_str(&["SELECT", "5"]);
    assert_reply(&c.cmd_str(&["FLUSHDB"]), b"+OK\r\n");
    assert_eq!(count_prefix(&redis, "cache:"), 0);
    assert_eq!(
        count_prefix(&redis, "ratelimit:"),
        300,
        "FLUSHDB of db 5 is cache only"
    );
    assert_eq!(count_prefix(&redis, "session:"), 300);
    // SIDECAR FLUSH: explicit, any namespace, with a dry run first.
    assert_reply(
        &c.cmd_str(&["SIDECAR", "FLUSH", "ratelimit", "DRYRUN"]),
        b":300\r\n",
    );
    assert_eq!(count_prefix(&redis, "ratelimit:"), 300);
    assert_reply(&c.cmd_str(&["SIDECAR", "FLUSH", "ratelimit"]), b":300\r\n");
    assert_reply(&c.cmd_str(&["SIDECAR", "FLUSH", "ratelimit"]), b":0\r\n");
    assert_eq!(count_prefix(&redis, "ratelimit:"), 0);
    let err = show(&c.cmd_str(&["SIDECAR", "FLUSH", "nosuch"]));
    assert!(err.starts_with("-ERR no namespace named 'nosuch'"), "{err}");
}

#[test]
fn flush_policy_deny_refuses_flushall() {
    let redis = RedisServer::start();
    redis.cmd(&["SET", "cache:a", "1"]);
    let sidecar = Sidecar::start(&config(&redis).policy("flush = \"deny\""));
    let mut c = sidecar.conn();
    assert_noperm(&c.cmd_str(&["FLUSHALL"]), "policy.flush");
    assert_noperm(&c.cmd_str(&["FLUSHDB"]), "policy.flush");
    assert_reply(&redis.cmd(&["EXISTS", "cache:a"]), b":1\r\n");
}

/// The server's TTL of `key`, in seconds.
fn ttl(redis: &RedisServer, key: &str) -> i64 {
    int(&redis.cmd(&["TTL", key]))
}

#[test]
fn ttl_rules_default_max_and_required() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&config(&redis));
    let mut c = sidecar.conn();
    // lock: require_ttl and max_ttl = 5m.
    assert_noperm(&c.cmd_str(&["SET", "lock:a", "me"]), "require_ttl");
    assert_noperm(&c.cmd_str(&["SET", "lock:a", "me", "NX"]), "require_ttl");
    assert_reply(
        &c.cmd_str(&["SET", "lock:a", "me", "NX", "PX", "5000"]),
        b"+OK\r\n",
    );
    assert_noperm(&c.cmd_str(&["PERSIST", "lock:a"]), "lock");
    assert_reply(
        &c.cmd_str(&["SET", "lock:b", "me", "EX", "86400"]),
        b"+OK\r\n",
    );
    let clamped = ttl(&redis, "lock:b");
    assert!((290..=300).contains(&clamped), "max_ttl clamps: {clamped}");
    assert_reply(&c.cmd_str(&["EXPIRE", "lock:b", "99999"]), b":1\r\n");
    assert!(ttl(&redis, "lock:b") <= 300);
    // ratelimit: default_ttl = 60s, for SET and for other types (EXPIRE NX after the write).
    assert_reply(&c.cmd_str(&["SET", "ratelimit:ip", "1"]), b"+OK\r\n");
    assert!((55..=60).contains(&ttl(&redis, "ratelimit:ip")));
    assert_reply(&c.cmd_str(&["INCR", "ratelimit:n"]), b":1\r\n");
    assert_reply(&c.cmd_str(&["HSET", "ratelimit:h", "f", "1"]), b":1\r\n");
    assert!((55..=60).contains(&ttl(&redis, "ratelimit:n")));
    assert!((55..=60).contains(&ttl(&redis, "ratelimit:h")));
    // An explicit TTL is kept, and a later write does not reset it (NX).
    assert_reply(
        &c.cmd_str(&["SET", "ratelimit:x", "1", "EX", "10"]),
        b"+OK\r\n",
    );
    assert!(ttl(&redis, "ratelimit:x") <= 10);
    assert_reply(&c.cmd_str(&["EXPIRE", "ratelimit:n", "20"]), b":1\r\n");
    assert_reply(&c.cmd_str(&["INCR", "ratelimit:n"]), b":2\r\n");
    assert!(ttl(&redis, "ratelimit:n") <= 20);
    // Pipelined and in MULTI, the follow-ups' replies never reach the client.
    c.send(&common::encode_str(&["INCR", "ratelimit:p"]));
    c.send(&common::encode_str(&["INCR", "ratelimit:p"]));
    c.send(&common::encode_str(&["PING"]));
    let replies = c.read_replies(3);
    assert_eq!(
        replies,
        vec![
            b":1\r\n".to_vec(),
            b":2\r\n".to_vec(),
            b"+PONG\r\n".to_vec()
        ]
    );
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["INCR", "ratelimit:t"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["SET", "ratelimit:u", "1"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*2\r\n:1\r\n+OK\r\n");
    assert!((55..=60).contains(&ttl(&redis, "ratelimit:t")));
    assert!((55..=60).contains(&ttl(&redis, "ratelimit:u")));
    // The session namespace has no TTL rule: nothing added.
    assert_reply(&c.cmd_str(&["SET", "session:free", "1"]), b"+OK\r\n");
    assert_eq!(ttl(&redis, "session:free"), -1);
}

#[test]
fn sliding_ttl_refreshes_at_most_once_per_interval() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(
        &SidecarToml::new(&redis.url()).namespace(
            "name = \"session\"\nprefix = \"session:\"\ntouch_on_read = \"30m\"\ntouch_interval = \"1s\"",
        ),
    );
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["SET", "session:s", "v", "EX", "100"]),
        b"+OK\r\n",
    );
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    for _ in 0..50 {
        assert_reply(&c.cmd_str(&["GET", "session:s"]), b"$1\r\nv\r\n");
    }
    assert_eq!(
        calls(&redis, "pexpire"),
        1,
        "one refresh for 50 reads within the interval"
    );
    assert!(
        ttl(&redis, "session:s") > 1700,
        "the read reset the TTL to touch_on_read"
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_reply(&c.cmd_str(&["GET", "session:s"]), b"$1\r\nv\r\n");
    assert_eq!(calls(&redis, "pexpire"), 2);
}

#[test]
fn scripts_policy_deny_and_allowlist() {
    let redis = RedisServer::start();
    let script = "return 1";
    // SHA1 of "return 1".
    let sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
    let deny = Sidecar::start(&config(&redis).policy("scripts = \"deny\""));
    assert_noperm(
        &deny.conn().cmd_str(&["EVAL", script, "0"]),
        "policy.scripts",
    );
    let allow = Sidecar::start(
        &config(&redis)
            .policy("scripts = \"allowlist\"")
            .policy(&format!("script_allowlist = [\"{sha}\"]")),
    );
    let mut c = allow.conn();
    assert_reply(&c.cmd_str(&["EVAL", script, "0"]), b":1\r\n");
    assert_reply(&c.cmd_str(&["EVALSHA", sha, "0"]), b":1\r\n");
    assert_noperm(
        &c.cmd_str(&["EVAL", "return 2", "0"]),
        "not in policy.script_allowlist",
    );
    assert_noperm(&c.cmd_str(&["FCALL", "f", "0"]), "allowlist");
    // Declared keys are checked like any other.
    let open = Sidecar::start(&config(&redis));
    assert_noperm(
        &open.conn().cmd_str(&[
            "EVAL",
            "return redis.call('GET', KEYS[1])",
            "1",
            "elsewhere",
        ]),
        "'elsewhere'",
    );
}

#[test]
fn keyspace_notifications_of_a_mapped_db() {
    let redis = RedisServer::start_with(&["--notify-keyspace-events", "KEA"]);
    let sidecar = Sidecar::start(&config(&redis));
    let mut sub = sidecar.conn();
    sub.cmd_str(&["SELECT", "3"]);
    assert_reply(
        &sub.cmd_str(&["SUBSCRIBE", "__keyspace@3__:watched"]),
        b"*3\r\n$9\r\nsubscribe\r\n$22\r\n__keyspace@3__:watched\r\n:1\r\n",
    );
    sub.send(&common::encode_str(&["PSUBSCRIBE", "__keyevent@3__:*"]));
    assert_reply(
        &sub.read_reply(),
        b"*3\r\n$10\r\npsubscribe\r\n$16\r\n__keyevent@3__:*\r\n:2\r\n",
    );
    let mut w = sidecar.conn();
    w.cmd_str(&["SET", "cache:other", "1"]); // another namespace: not delivered
    w.cmd_str(&["SELECT", "3"]);
    w.cmd_str(&["SET", "watched", "1"]);
    let first = sub.read_reply();
    let second = sub.read_reply();
    let both = format!("{}{}", text(&first), text(&second));
    assert!(
        both.contains("__keyspace@3__:watched") && both.contains("set"),
        "{both}"
    );
    assert!(
        both.contains("__keyevent@3__:set") && both.contains("\r\nwatched\r\n"),
        "{both}"
    );
    assert!(
        !both.contains("session:") && !both.contains("cache:"),
        "{both}"
    );
}

#[test]
fn eviction_advisor_warns_when_protected_namespaces_can_be_evicted() {
    let redis =
        RedisServer::start_with(&["--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"]);
    let sidecar = Sidecar::start(
        &config(&redis).namespace("name = \"locks2\"\nprefix = \"l2:\"\nmust_not_evict = true"),
    );
    let mut c = sidecar.conn();
    let report = wait_for("eviction warning", Duration::from_secs(10), || {
        let r = text(&c.cmd_str(&["SIDECAR", "NAMESPACES"]));
        r.contains("warning:").then_some(r)
    });
    assert!(
        report.contains("locks2") && report.contains("allkeys-lru"),
        "{report}"
    );
    // Fixing Redis clears the warning within the recheck (forced here by a new sidecar).
    redis.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let fixed = Sidecar::start(
        &config(&redis).namespace("name = \"locks2\"\nprefix = \"l2:\"\nmust_not_evict = true"),
    );
    let mut f = fixed.conn();
    std::thread::sleep(Duration::from_millis(500));
    let report = text(&f.cmd_str(&["SIDECAR", "NAMESPACES"]));
    assert!(!report.contains("warning:"), "{report}");
}
