//! `resp-sidecar migrate` and `verify` against real redis-servers: 100k keys of every
//! type with TTLs copied, interrupted and resumed, then verified clean; keys dual-write
//! made newer are left alone; verify lists injected differences; the old-db-to-prefix
//! case end to end through the sidecar; bad flags exit 64 naming the flag.

mod common;

use std::process::Stdio;

use common::migration::{
    assert_verified, migrate, phase, section, text, tool, wait_copied, wait_reply, CONVERGE,
};
use common::{assert_reply, sidecar_command, wait_for, RedisServer, Sidecar, SidecarToml};

/// 100,000 keys: strings, and 1,000 each of list, hash, set, zset and stream; every
/// third key has a TTL.
const POPULATE: &str = "
for i = 1, 95000 do redis.call('SET', 's:' .. i, 'v' .. i) end
for i = 1, 1000 do
  redis.call('RPUSH', 'l:' .. i, 'a', 'b', i)
  redis.call('HSET', 'h:' .. i, 'f', i, 'g', 'x')
  redis.call('SADD', 'set:' .. i, 'm1', 'm2', i)
  redis.call('ZADD', 'z:' .. i, 1, 'one', i, 'n')
  redis.call('XADD', 'x:' .. i, '*', 'field', i)
end
local n = 0
for _, p in ipairs({'s:', 'l:', 'h:', 'set:', 'z:', 'x:'}) do
  for i = 3, 1000, 3 do redis.call('PEXPIRE', p .. i, 600000 + i) end
end
return redis.call('DBSIZE')";

fn checkpoint_scanned(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("scanned=").and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[test]
fn backfill_of_100k_keys_interrupted_and_resumed_verifies_clean() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    assert_reply(&old.cmd(&["EVAL", POPULATE, "0"]), b":100000\r\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = dir.path().join("cp");
    let cp_arg = cp.to_string_lossy().to_string();
    let (from, to) = (old.url(), new.url());
    let args = [
        "migrate",
        "--from",
        &from,
        "--to",
        &to,
        "--checkpoint",
        &cp_arg,
    ];

    // Slowed down so it can be stopped partway, then killed outright.
    let mut child = sidecar_command()
        .args(args)
        .args(["--rate", "20000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn migrate");
    wait_for("the checkpoint to pass 20,000 keys", CONVERGE, || {
        (checkpoint_scanned(&cp) >= 20_000).then_some(())
    });
    child.kill().expect("kill migrate");
    child.wait().expect("reap migrate");
    let partial = checkpoint_scanned(&cp);
    assert!(
        partial < 100_000,
        "the run was not interrupted ({partial} keys)"
    );

    let out = tool(&[&args[..], &["--resume"]].concat());
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains(": done"), "{report}");
    assert!(report.contains("failed    0"), "{report}");
    assert!(!report.contains("scanned   0\n"), "{report}");
    assert_reply(&new.cmd(&["DBSIZE"]), b":100000\r\n");
    assert_verified(&old, &new, &[]);
    assert_reply(&new.cmd(&["XLEN", "x:7"]), b":1\r\n");
    assert_reply(&new.cmd(&["ZSCORE", "z:7", "n"]), b"$1\r\n7\r\n");
    let ttl = String::from_utf8_lossy(&new.cmd(&["PTTL", "h:9"])).to_string();
    let ttl: i64 = ttl.trim_start_matches(':').trim().parse().expect("PTTL");
    assert!(ttl > 590_000 && ttl <= 600_009, "TTL not kept: {ttl}");

    // A finished checkpoint: --resume has nothing left to do.
    let again = tool(&[&args[..], &["--resume"]].concat());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("already complete"),
        "{}",
        text(&again)
    );
}

#[test]
fn backfill_leaves_keys_dual_write_made_newer_and_dry_run_writes_nothing() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    for (k, v) in [("a", "1"), ("b", "old"), ("c", "3")] {
        old.cmd(&["SET", k, v]);
    }
    old.cmd(&["PEXPIRE", "c", "500000"]);
    new.cmd(&["SET", "b", "newer"]);
    let (from, to) = (old.url(), new.url());
    let dry = tool(&["migrate", "--from", &from, "--to", &to, "--dry-run"]);
    let report = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{report}");
    assert!(report.contains("would copy 2"), "{report}");
    assert!(report.contains("existing  1"), "{report}");
    assert_reply(&new.cmd(&["DBSIZE"]), b":1\r\n");

    let run = migrate(&old, &new, &[]);
    let report = text(&run);
    assert!(
        report.contains("copied    2") && report.contains("existing  1"),
        "{report}"
    );
    assert_reply(&new.cmd(&["GET", "b"]), b"$5\r\nnewer\r\n");
    assert_reply(&new.cmd(&["GET", "c"]), b"$1\r\n3\r\n");
    let ttl = String::from_utf8_lossy(&new.cmd(&["PTTL", "c"])).to_string();
    assert!(ttl.starts_with(":49"), "TTL not kept: {ttl}");
}

#[test]
fn verify_lists_injected_differences() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    for i in 0..50 {
        old.cmd(&["SET", &format!("k{i}"), "v"]);
    }
    old.cmd(&["HSET", "h", "f", "1"]);
    let (from, to) = (old.url(), new.url());
    assert_eq!(migrate(&old, &new, &[]).status.code(), Some(0));
    assert_verified(&old, &new, &[]);

    new.cmd(&["DEL", "k1"]);
    new.cmd(&["SET", "k2", "changed"]);
    new.cmd(&["EXPIRE", "k3", "900"]);
    new.cmd(&["DEL", "k4"]);
    new.cmd(&["LPUSH", "k4", "v"]);
    new.cmd(&["HSET", "h", "f", "2"]);
    new.cmd(&["SET", "stray", "x"]);
    let out = tool(&["verify", "--from", &from, "--to", &to]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    for line in [
        "\"k1\": missing in the target",
        "\"k2\": different value",
        "\"k3\": TTL none in the source, ",
        "\"k4\": type string in the source, list in the target",
        "\"h\": different value",
        "\"stray\": only in the target",
        "51 keys compared, 6 differences",
    ] {
        assert!(report.contains(line), "missing {line:?} in:\n{report}");
    }
    let sampled = tool(&["verify", "--from", &from, "--to", &to, "--sample", "5"]);
    assert!(
        text(&sampled).contains(": 5 keys compared"),
        "{}",
        text(&sampled)
    );
}

#[test]
fn old_db_keys_take_the_namespace_prefix_through_every_step() {
    let redis = RedisServer::start();
    let mut db3 = redis.conn();
    assert_reply(&db3.cmd_str(&["SELECT", "3"]), b"+OK\r\n");
    db3.cmd_str(&["SET", "abc", "1"]);
    db3.cmd_str(&["HSET", "user:1", "name", "ann"]);
    db3.cmd_str(&["PEXPIRE", "user:1", "700000"]);
    let url = redis.url();
    let scope = ["--db", "3", "--prefix", "session:"];
    let out = migrate(&redis, &redis, &scope);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_reply(&redis.cmd(&["GET", "session:abc"]), b"$1\r\n1\r\n");
    assert_verified(&redis, &redis, &scope);

    let toml = SidecarToml::new(&url)
        .namespace("name = \"session\"\nprefix = \"session:\"\ndb = 3")
        .namespace("name = \"ratelimit\"\nprefix = \"ratelimit:\"")
        .section(&section(&redis, "shadow", &["old_db = 3"]));
    let sc = Sidecar::start(&toml);
    let mut c = sc.conn();
    assert_reply(&c.cmd_str(&["SELECT", "3"]), b"+OK\r\n");
    // shadow: served from db 3 as the app always was; the write reaches the prefix.
    assert_reply(&c.cmd_str(&["INCR", "abc"]), b":2\r\n");
    assert_reply(&db3.cmd_str(&["GET", "abc"]), b"$1\r\n2\r\n");
    wait_reply(&redis, &["GET", "session:abc"], b"$1\r\n2\r\n");
    // Only the old db moves: other namespaces stay in the upstream's db 0, and a write
    // under the migrated prefix made there is copied into db 3.
    let mut db0 = sc.conn();
    assert_reply(&db0.cmd_str(&["SET", "ratelimit:x", "1"]), b"+OK\r\n");
    assert_reply(&redis.cmd(&["GET", "ratelimit:x"]), b"$1\r\n1\r\n");
    assert_reply(&db3.cmd_str(&["EXISTS", "ratelimit:x"]), b":0\r\n");
    assert_reply(&db0.cmd_str(&["SET", "session:fresh", "f"]), b"+OK\r\n");
    let mut admin = sc.conn();
    wait_copied(&mut admin);
    assert_reply(&db3.cmd_str(&["GET", "fresh"]), b"$1\r\nf\r\n");
    // flipped: served from the prefix; the write is copied back into db 3.
    assert!(phase(&mut admin, "flipped").starts_with(b"$"));
    assert_reply(&c.cmd_str(&["INCR", "abc"]), b":3\r\n");
    assert_reply(&redis.cmd(&["GET", "session:abc"]), b"$1\r\n3\r\n");
    wait_copied(&mut admin);
    assert_reply(&db3.cmd_str(&["GET", "abc"]), b"$1\r\n3\r\n");
    assert_reply(&c.cmd_str(&["HGET", "user:1", "name"]), b"$3\r\nann\r\n");
    assert_verified(&redis, &redis, &scope);
}

#[test]
fn bad_flags_exit_64_naming_the_flag() {
    let url = "redis://127.0.0.1:1";
    let cases: &[(&[&str], &str)] = &[
        (&["migrate", "--to", url], "--from URL is required"),
        (&["migrate", "--from", url], "--to URL is required"),
        (&["migrate", "--from", "http://x", "--to", url], "--from"),
        (
            &[
                "migrate",
                "--from",
                url,
                "--to",
                url,
                "--namespace",
                "s",
                "--db",
                "1",
            ],
            "exclude each other",
        ),
        (
            &["migrate", "--from", url, "--to", url, "--db", "1"],
            "--db needs --prefix",
        ),
        (
            &["migrate", "--from", url, "--to", url, "--prefix", "p:"],
            "--prefix goes with --db",
        ),
        (
            &["migrate", "--from", url, "--to", url, "--rate", "0"],
            "--rate",
        ),
        (
            &["migrate", "--from", url, "--to", url, "--rate", "fast"],
            "--rate",
        ),
        (
            &[
                "migrate",
                "--from",
                url,
                "--to",
                url,
                "--resume",
                "--dry-run",
            ],
            "--dry-run",
        ),
        (
            &[
                "migrate",
                "--from",
                url,
                "--to",
                url,
                "--namespace",
                "nope",
                "--config",
                "/nonexistent.toml",
            ],
            "--namespace",
        ),
        (&["migrate", "--form", url], "--form"),
        (
            &["verify", "--from", url, "--to", url, "--sample", "0"],
            "--sample",
        ),
        (
            &[
                "verify",
                "--from",
                url,
                "--to",
                url,
                "--ttl-tolerance",
                "soon",
            ],
            "--ttl-tolerance",
        ),
    ];
    for (args, says) in cases {
        let out = tool(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(says),
            "{args:?} should mention {says:?}: {}",
            text(&out)
        );
    }
    // A store that cannot be reached is not a usage error.
    let down = tool(&["verify", "--from", url, "--to", url]);
    assert_eq!(down.status.code(), Some(69), "{}", text(&down));
}
