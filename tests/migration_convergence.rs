//! Dual-write convergence against two real redis-servers: several clients running
//! non-idempotent writes (INCR, LPUSH, HINCRBY, EXPIRE, EVAL, MULTI/EXEC) while the
//! store of record moves, then `verify` finds no difference; and a copy target that
//! stops mid-run is counted, parked and repaired when it comes back.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::migration::{assert_verified, number, phase, section, status, wait_copied, CONVERGE};
use common::{assert_reply, wait_for, RedisServer, Sidecar, SidecarToml};

const CLIENTS: usize = 4;
const ROUNDS: usize = 400;
const SCRIPT: &str = "redis.call('INCR', KEYS[1]) return redis.call('RPUSH', KEYS[2], ARGV[1])";

fn sidecar(old: &RedisServer, new: &RedisServer, phase: &str, extra: &[&str]) -> Sidecar {
    let toml = SidecarToml::new(&new.url()).section(&section(old, phase, extra));
    Sidecar::start(&toml)
}

/// One client's share of the load; returns how many INCRs it made on `ctr:*`.
fn load(sc: &Sidecar, id: usize, halfway: &Barrier) -> u64 {
    let mut c = sc.conn();
    let mut incrs = 0;
    for i in 0..ROUNDS {
        if i == ROUNDS / 2 {
            halfway.wait();
        }
        let (ctr, list, hash) = (
            format!("ctr:{}", i % 8),
            format!("list:{}", i % 4),
            format!("h:{}", i % 4),
        );
        let value = format!("c{id}-{i}");
        match i % 6 {
            0 => {
                c.cmd_str(&["INCR", &ctr]);
                incrs += 1;
            }
            1 => drop(c.cmd_str(&["LPUSH", &list, &value])),
            2 => drop(c.cmd_str(&["HINCRBY", &hash, &format!("f{id}"), "3"])),
            3 => drop(c.cmd_str(&["EXPIRE", &list, &(1000 + i).to_string()])),
            4 => drop(c.cmd_str(&["EVAL", SCRIPT, "2", "ev", &list, &value])),
            _ => {
                assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
                c.cmd_str(&["INCR", &ctr]);
                c.cmd_str(&["LPUSH", &format!("tx:{}", i % 4), &value]);
                let exec = c.cmd_str(&["EXEC"]);
                assert!(exec.starts_with(b"*2\r\n"), "EXEC: {}", common::show(&exec));
                incrs += 1;
            }
        }
    }
    incrs
}

fn counter_sum(server: &RedisServer) -> u64 {
    (0..8)
        .map(|i| {
            let reply = server.cmd(&["GET", &format!("ctr:{i}")]);
            let text = String::from_utf8_lossy(&reply).to_string();
            text.lines()
                .nth(1)
                .and_then(|l| l.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn concurrent_non_idempotent_writes_converge_across_the_flip() {
    let (old, new) = (RedisServer::start(), RedisServer::start());
    let sc = Arc::new(sidecar(&old, &new, "shadow", &[]));
    let halfway = Arc::new(Barrier::new(CLIENTS + 1));
    let incrs = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (sc, halfway, incrs) = (sc.clone(), halfway.clone(), incrs.clone());
            thread::spawn(move || incrs.fetch_add(load(&sc, id, &halfway), Ordering::Relaxed))
        })
        .collect();
    // Half the load ran in shadow; the rest runs while the store of record moves.
    halfway.wait();
    let mut admin = sc.conn();
    let flipped = phase(&mut admin, "flipped");
    assert!(
        flipped.starts_with(b"$"),
        "flip refused: {}",
        common::show(&flipped)
    );
    for w in workers {
        w.join().expect("load thread");
    }
    wait_copied(&mut admin);
    let expected = incrs.load(Ordering::Relaxed);
    assert_eq!(
        counter_sum(&new),
        expected,
        "INCRs lost in the store of record"
    );
    assert_eq!(counter_sum(&old), expected, "INCRs lost in the copy");
    assert_verified(&new, &old, &[]);
    assert_verified(&old, &new, &[]);
    let s = status(&mut admin);
    assert_eq!(s["copy_failures"], "0", "{s:?}");
    assert!(
        s["last_switch"].starts_with("shadow -> flipped in"),
        "{s:?}"
    );
}

#[test]
fn a_stopped_copy_target_is_counted_and_repaired_when_it_returns() {
    let (mut old, new) = (
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]),
        RedisServer::start(),
    );
    let extra = [
        "retries = 2",
        "retry_backoff = \"20ms\"",
        "recheck_interval = \"100ms\"",
    ];
    let sc = sidecar(&old, &new, "flipped", &extra);
    let mut c = sc.conn();
    for i in 0..20 {
        c.cmd_str(&["INCR", &format!("k:{i}")]);
    }
    wait_copied(&mut c);
    assert_verified(&new, &old, &[]);

    // The old store (the copy target while flipped) stops: clients are served on, the
    // copies fail, are counted and parked.
    old.kill();
    for i in 0..40 {
        assert_reply(
            &c.cmd_str(&["INCR", &format!("k:{i}")]),
            if i < 20 { b":2\r\n" } else { b":1\r\n" },
        );
    }
    assert_reply(&c.cmd_str(&["LPUSH", "later", "x"]), b":1\r\n");
    wait_for("copy failures to be counted", CONVERGE, || {
        (number(&mut c, "copy_failures_unreachable") > 0 && number(&mut c, "parked_keys") > 0)
            .then_some(())
    });

    // Back again (its data kept on disk): the parked keys are copied.
    old.restart();
    wait_copied(&mut c);
    assert_verified(&new, &old, &[]);
    assert_reply(&old.cmd(&["GET", "k:5"]), b"$1\r\n2\r\n");
    assert_reply(&old.cmd(&["GET", "k:30"]), b"$1\r\n1\r\n");
    assert!(number(&mut c, "copy_retries") > 0);
}

#[test]
fn keys_beyond_the_queue_bound_are_counted_not_held() {
    let (old, mut new) = (RedisServer::start(), RedisServer::start());
    let extra = ["queue_max = 2", "retries = 50", "retry_backoff = \"50ms\""];
    let sc = sidecar(&old, &new, "shadow", &extra);
    let mut c = sc.conn();
    // The copy target is gone: the worker keeps retrying its first batch, the queue
    // fills, and what does not fit is counted while clients are served on.
    new.kill();
    for i in 0..20 {
        assert_reply(&c.cmd_str(&["SET", &format!("k{i}"), "v"]), b"+OK\r\n");
    }
    wait_for("queue_full failures", CONVERGE, || {
        (number(&mut c, "copy_failures_queue_full") > 0).then_some(())
    });
    let s = status(&mut c);
    // At most queue_max waiting, plus the batch the worker holds (taken from the queue).
    assert!(s["queue_depth"].parse::<u64>().unwrap_or(99) <= 4, "{s:?}");
}

#[test]
fn transactions_on_the_old_store_survive_a_failover_of_the_new_one() {
    use common::sentinel::SentinelCluster;
    let cluster = SentinelCluster::start("newstore");
    let old = RedisServer::start();
    let list: Vec<String> = cluster
        .sentinel_ports()
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    let mut toml = SidecarToml::new("unused")
        .upstream("mode = \"sentinel\"")
        .upstream(&format!("sentinels = [{}]", list.join(", ")))
        .upstream("master_name = \"newstore\"")
        .upstream("failover_wait = \"10s\"")
        .section(&section(&old, "shadow", &[]));
    toml.url = None;
    let sc = Sidecar::start(&toml);
    let mut c = sc.conn();
    let tx = |c: &mut common::RawConn, want: &[u8]| {
        assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
        assert_reply(&c.cmd_str(&["INCR", "t"]), b"+QUEUED\r\n");
        let exec = c.cmd_str(&["EXEC"]);
        assert_reply(&exec, want);
    };
    tx(&mut c, b"*1\r\n:1\r\n");
    wait_copied(&mut c);

    // The new store fails over; the old one, which serves, does not change.
    cluster.failover();
    cluster.wait_primary_is(cluster.node_port(1), Duration::from_secs(30));
    let primary = &cluster.nodes[1];
    assert_reply(&c.cmd_str(&["SET", "probe", "1"]), b"+OK\r\n");
    wait_for("copies to reach the new primary", CONVERGE, || {
        (primary.cmd(&["GET", "probe"]) == b"$1\r\n1\r\n").then_some(())
    });
    tx(&mut c, b"*1\r\n:2\r\n");
    wait_copied(&mut c);
    assert_reply(&primary.cmd(&["GET", "t"]), b"$1\r\n2\r\n");
}
