//! Migration phases against two real redis-servers: every step forward and back with
//! one client connected throughout, the stores each phase reads and writes, copies of
//! transactions and scripts, hot reload of the phase, parity mismatches and metrics.

mod common;

use common::migration::{number, phase, section, status, wait_copied, wait_reply};
use common::{assert_reply, http, RedisServer, Sidecar, SidecarProcess, SidecarToml};

fn sidecar(old: &RedisServer, new: &RedisServer, phase: &str, extra: &[&str]) -> Sidecar {
    let toml = SidecarToml::new(&new.url())
        .admin()
        .section(&section(old, phase, extra));
    Sidecar::start(&toml)
}

#[test]
fn every_phase_and_rollback_with_one_client_connected() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    let sc = sidecar(&old, &new, "off", &["compare_sample = 1.0"]);
    let mut c = sc.conn();

    // off: the old store serves everything, the new one is untouched.
    assert_reply(&c.cmd_str(&["SET", "a", "1"]), b"+OK\r\n");
    assert_reply(&old.cmd(&["GET", "a"]), b"$1\r\n1\r\n");
    assert_reply(&new.cmd(&["EXISTS", "a"]), b":0\r\n");

    // off -> shadow: replies from the old store, each write copied to the new one.
    assert!(
        phase(&mut c, "shadow").starts_with(b"$"),
        "phase change refused"
    );
    assert_reply(&c.cmd_str(&["INCR", "a"]), b":2\r\n");
    assert_reply(&c.cmd_str(&["LPUSH", "l", "x", "y"]), b":2\r\n");
    assert_reply(&c.cmd_str(&["HINCRBY", "h", "f", "5"]), b":5\r\n");
    assert_reply(&c.cmd_str(&["EXPIRE", "h", "1000"]), b":1\r\n");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["INCR", "tx"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["RPUSH", "tl", "z"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*2\r\n:1\r\n:1\r\n");
    let script = "redis.call('INCRBY', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])";
    assert_reply(&c.cmd_str(&["EVAL", script, "1", "s", "7"]), b"$1\r\n7\r\n");
    assert_reply(&c.cmd_str(&["DEL", "gone"]), b":0\r\n");
    wait_copied(&mut c);
    wait_reply(&new, &["GET", "a"], b"$1\r\n2\r\n");
    wait_reply(
        &new,
        &["LRANGE", "l", "0", "-1"],
        b"*2\r\n$1\r\ny\r\n$1\r\nx\r\n",
    );
    wait_reply(&new, &["HGET", "h", "f"], b"$1\r\n5\r\n");
    assert_reply(&new.cmd(&["TTL", "h"]), &old.cmd(&["TTL", "h"]));
    wait_reply(&new, &["GET", "tx"], b"$1\r\n1\r\n");
    wait_reply(&new, &["LLEN", "tl"], b":1\r\n");
    wait_reply(&new, &["GET", "s"], b"$1\r\n7\r\n");
    // The old store is the store of record: a key only it holds is what clients read.
    old.cmd(&["SET", "only", "old"]);
    new.cmd(&["SET", "only", "new"]);
    assert_reply(&c.cmd_str(&["GET", "only"]), b"$3\r\nold\r\n");

    // shadow -> off (rollback): nothing is copied any more.
    phase(&mut c, "off");
    let copied = number(&mut c, "keys_copied");
    assert_reply(&c.cmd_str(&["SET", "b", "1"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
    assert_eq!(number(&mut c, "keys_copied"), copied);
    assert_eq!(number(&mut c, "queue_depth"), 0);
    assert_reply(&new.cmd(&["EXISTS", "b"]), b":0\r\n");

    // off -> shadow -> flipped: the new store serves, writes are copied back.
    phase(&mut c, "shadow");
    assert_reply(&c.cmd_str(&["SET", "b", "2"]), b"+OK\r\n");
    wait_copied(&mut c);
    wait_reply(&new, &["GET", "b"], b"$1\r\n2\r\n");
    assert!(phase(&mut c, "flipped").starts_with(b"$"), "flip refused");
    assert_reply(&c.cmd_str(&["GET", "only"]), b"$3\r\nnew\r\n");
    assert_reply(&c.cmd_str(&["INCR", "a"]), b":3\r\n");
    wait_copied(&mut c);
    wait_reply(&old, &["GET", "a"], b"$1\r\n3\r\n");

    // flipped -> shadow (rollback): the old store has every write made while flipped.
    phase(&mut c, "shadow");
    assert_reply(&c.cmd_str(&["GET", "a"]), b"$1\r\n3\r\n");
    assert_reply(&c.cmd_str(&["GET", "only"]), b"$3\r\nold\r\n");

    // shadow -> flipped -> done: the new store only.
    phase(&mut c, "flipped");
    phase(&mut c, "done");
    let copied = number(&mut c, "keys_copied");
    assert_reply(&c.cmd_str(&["SET", "d", "1"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
    assert_reply(&old.cmd(&["EXISTS", "d"]), b":0\r\n");
    assert_eq!(number(&mut c, "keys_copied"), copied);

    // done -> flipped (rollback): copies to the old store resume.
    phase(&mut c, "flipped");
    assert_reply(&c.cmd_str(&["SET", "e", "1"]), b"+OK\r\n");
    wait_copied(&mut c);
    wait_reply(&old, &["GET", "e"], b"$1\r\n1\r\n");

    // Jumps are refused; the phase and the connection stay.
    let jump = phase(&mut c, "off");
    assert!(
        jump.starts_with(b"-ERR the migration phase moves one step"),
        "{}",
        common::show(&jump)
    );
    let s = status(&mut c);
    assert_eq!(s["phase"], "flipped");
    assert_eq!(s["serving"], "new");
    assert_eq!(s["copy_failures"], "0");
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");

    let metrics = http::get(sc.admin_addr(), "/metrics")
        .expect("metrics")
        .body;
    assert!(
        metrics.contains("sidecar_migration_phase{phase=\"flipped\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sidecar_migration_keys_copied_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sidecar_migration_queue_depth 0"),
        "{metrics}"
    );
}

#[test]
fn reload_moves_the_phase_and_refuses_jumps_without_dropping_clients() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    let toml = |phase: &str| SidecarToml::new(&new.url()).section(&section(&old, phase, &[]));
    let sc = SidecarProcess::start(&toml("off"));
    let mut c = sc.conn();
    let path = sc.dir().join("sidecar.toml");
    let listen = sc.addr().to_string();

    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
    std::fs::write(&path, toml("shadow").render(&listen)).expect("write config");
    let reply = c.cmd_str(&["SIDECAR", "RELOAD"]);
    assert!(reply.starts_with(b"$"), "{}", common::show(&reply));
    common::wait_for("phase shadow", common::migration::CONVERGE, || {
        (status(&mut c)["phase"] == "shadow").then_some(())
    });
    assert_reply(&c.cmd_str(&["SET", "k", "w"]), b"+OK\r\n");
    wait_reply(&new, &["GET", "k"], b"$1\r\nw\r\n");

    std::fs::write(&path, toml("done").render(&listen)).expect("write config");
    let refused = c.cmd_str(&["SIDECAR", "RELOAD"]);
    assert!(
        refused.starts_with(b"-ERR reload refused"),
        "{}",
        common::show(&refused)
    );
    assert!(
        common::show(&refused).contains("one step at a time"),
        "{}",
        common::show(&refused)
    );
    assert_eq!(status(&mut c)["phase"], "shadow");

    std::fs::write(&path, toml("flipped").render(&listen)).expect("write config");
    c.cmd_str(&["SIDECAR", "RELOAD"]);
    common::wait_for("phase flipped", common::migration::CONVERGE, || {
        (status(&mut c)["phase"] == "flipped").then_some(())
    });
    new.cmd(&["SET", "k", "from-new"]);
    assert_reply(&c.cmd_str(&["GET", "k"]), b"$8\r\nfrom-new\r\n");
}

#[test]
fn parity_mismatches_are_counted_kept_and_exported() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    let toml = SidecarToml::new(&new.url())
        .admin()
        .namespace("name = \"session\"\nprefix = \"session:\"")
        .policy("unmatched_keys = \"allow\"")
        .section(&section(&old, "shadow", &["compare_sample = 1.0"]));
    let sc = Sidecar::start(&toml);
    let mut c = sc.conn();
    assert_reply(&c.cmd_str(&["SET", "session:1", "a"]), b"+OK\r\n");
    wait_copied(&mut c);
    wait_reply(&new, &["GET", "session:1"], b"$1\r\na\r\n");
    assert_reply(&c.cmd_str(&["GET", "session:1"]), b"$1\r\na\r\n");
    common::wait_for("a parity check", common::migration::CONVERGE, || {
        (number(&mut c, "parity_checks") >= 1).then_some(())
    });
    assert_eq!(number(&mut c, "parity_mismatches"), 0);

    // The new store drifts behind the sidecar's back: the next sampled read says so.
    new.cmd(&["SET", "session:1", "drifted"]);
    assert_reply(&c.cmd_str(&["GET", "session:1"]), b"$1\r\na\r\n");
    common::wait_for("the mismatch", common::migration::CONVERGE, || {
        (number(&mut c, "parity_mismatches") == 1).then_some(())
    });
    let s = status(&mut c);
    assert_eq!(s["parity_mismatches{namespace=session,command=GET}"], "1");
    let recent = &s["recent_mismatch_0"];
    assert!(
        recent.contains("namespace=session command=GET served_by=old key=\"session:1\""),
        "{recent}"
    );
    let metrics = http::get(sc.admin_addr(), "/metrics")
        .expect("metrics")
        .body;
    assert!(
        metrics.contains(
            "sidecar_migration_parity_mismatches_total{namespace=\"session\",command=\"GET\"} 1"
        ),
        "{metrics}"
    );
}

#[test]
fn the_old_store_can_be_found_through_sentinel() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    let sentinel = common::sentinel::SentinelProcess::start("legacy", old.port());
    let url = format!("redis-sentinel://127.0.0.1:{}/legacy", sentinel.port());
    let toml = SidecarToml::new(&new.url()).section(&format!(
        "[migration]\nold_url = \"{url}\"\nphase = \"shadow\"\n"
    ));
    let sc = Sidecar::start(&toml);
    let mut c = sc.conn();
    common::wait_for("the old primary", common::migration::CONVERGE, || {
        (c.cmd_str(&["SET", "k", "1"]) == b"+OK\r\n").then_some(())
    });
    assert_reply(&c.cmd_str(&["INCR", "k"]), b":2\r\n");
    assert_reply(&old.cmd(&["GET", "k"]), b"$1\r\n2\r\n");
    wait_copied(&mut c);
    wait_reply(&new, &["GET", "k"], b"$1\r\n2\r\n");
    assert!(status(&mut c)["old_store"].starts_with("redis-sentinel://"));
}

#[test]
fn readiness_follows_the_store_of_record() {
    let (mut old, new) = (RedisServer::start(), RedisServer::start());
    let sc = sidecar(&old, &new, "shadow", &[]);
    let ready = || {
        http::get(sc.admin_addr(), "/readyz")
            .expect("readyz")
            .status
    };
    common::wait_for("ready", common::migration::CONVERGE, || {
        (ready() == 200).then_some(())
    });
    old.kill();
    common::wait_for(
        "not ready without the old store",
        common::migration::CONVERGE,
        || (ready() == 503).then_some(()),
    );
    let mut c = sc.conn();
    assert!(phase(&mut c, "flipped").starts_with(b"$"));
    common::wait_for(
        "ready on the new store",
        common::migration::CONVERGE,
        || (ready() == 200).then_some(()),
    );
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
}

#[test]
fn a_watch_across_the_flip_is_reported_lost_and_nothing_is_written() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    let sc = sidecar(&old, &new, "shadow", &[]);
    let mut c = sc.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "0"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["WATCH", "k"]), b"+OK\r\n");
    // The store of record moves while the client watches a key in the old one.
    let mut admin = sc.conn();
    assert!(phase(&mut admin, "flipped").starts_with(b"$"));
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SET", "k", "1"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*-1\r\n");
    assert_reply(&c.cmd_str(&["GET", "k"]), b"$1\r\n0\r\n");
    // The next transaction runs on the new store and is copied back.
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["INCR", "k"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n:1\r\n");
    wait_copied(&mut admin);
    assert_reply(&old.cmd(&["GET", "k"]), b"$1\r\n1\r\n");
}

/// The cache follows the new store's invalidations, so it serves only once the new
/// store is the store of record: in `shadow` every read reaches the old store.
#[test]
fn the_cache_serves_only_while_the_new_store_is_the_store_of_record() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    old.cmd(&["SET", "session:a", "old"]);
    new.cmd(&["SET", "session:a", "new"]);
    let toml = SidecarToml::new(&new.url())
        .namespace("name = \"session\"\nprefix = \"session:\"\ncache = true")
        // No read comparisons: a sampled read would be one more GET on the old store.
        .section(&section(&old, "shadow", &["compare_sample = 0.0"]));
    let sc = Sidecar::start(&toml);
    let mut c = sc.conn();
    let gets = |r: &RedisServer| -> i64 {
        let stats = String::from_utf8_lossy(&r.cmd(&["INFO", "commandstats"])).into_owned();
        stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = gets(&old);
    for _ in 0..3 {
        assert_reply(&c.cmd_str(&["GET", "session:a"]), b"$3\r\nold\r\n");
    }
    assert_eq!(
        gets(&old),
        before + 3,
        "shadow: never served from the cache"
    );
    assert!(phase(&mut c, "flipped").starts_with(b"$"), "flip refused");
    common::wait_for("cache live", std::time::Duration::from_secs(5), || {
        let info = String::from_utf8_lossy(&c.cmd_str(&["INFO", "sidecar"])).into_owned();
        info.contains("cache_state:live").then_some(())
    });
    let before = gets(&new);
    for _ in 0..3 {
        assert_reply(&c.cmd_str(&["GET", "session:a"]), b"$3\r\nnew\r\n");
    }
    assert_eq!(
        gets(&new),
        before + 1,
        "flipped: served from the cache after one fill"
    );
    // Back to shadow: the cache is emptied and the old store serves again.
    phase(&mut c, "shadow");
    old.cmd(&["SET", "session:a", "old2"]);
    assert_reply(&c.cmd_str(&["GET", "session:a"]), b"$4\r\nold2\r\n");
}
