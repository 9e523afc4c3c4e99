//! Pipelining: long mixed pipelines written in one go come back in order and
//! byte-for-byte identical to what Redis itself answers, in RESP2 and RESP3,
//! for one client and for several clients at once.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::thread;

use common::{encode_str, show, RawConn, RedisServer, Sidecar};

/// A deterministic mix of commands over a small key space under `prefix`,
/// including deliberate errors and MULTI/EXEC blocks. Returns the encoded
/// pipeline and the number of commands in it.
fn mixed_pipeline(prefix: &str, count: usize, seed: u64) -> (Vec<u8>, usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut n = 0;
    let key = |rng: &mut fastrand::Rng, kind: &str| format!("{prefix}:{kind}{}", rng.u32(0..20));
    while n < count {
        let left = count - n;
        let pick = rng.u32(0..22);
        let cmd: Vec<Vec<String>> = match pick {
            0 | 1 => vec![vec![
                "SET".into(),
                key(&mut rng, "s"),
                format!("v{}", rng.u32(0..1000)),
            ]],
            2 | 3 => vec![vec!["GET".into(), key(&mut rng, "s")]],
            // INCR on counters, and sometimes on a string: a wrong-type error.
            4 | 5 => vec![vec!["INCR".into(), key(&mut rng, "n")]],
            6 => vec![vec!["INCR".into(), key(&mut rng, "s")]],
            7 => vec![vec![
                "LPUSH".into(),
                key(&mut rng, "l"),
                rng.u32(0..99).to_string(),
            ]],
            8 => vec![vec![
                "LRANGE".into(),
                key(&mut rng, "l"),
                "0".into(),
                "4".into(),
            ]],
            9 => vec![vec![
                "HSET".into(),
                key(&mut rng, "h"),
                format!("f{}", rng.u32(0..8)),
                rng.u32(0..99).to_string(),
            ]],
            10 => vec![vec!["HGETALL".into(), key(&mut rng, "h")]],
            11 => vec![vec!["DEL".into(), key(&mut rng, "s"), key(&mut rng, "l")]],
            // Wrong type: list command on a hash.
            12 => vec![vec!["LPUSH".into(), key(&mut rng, "h"), "x".into()]],
            13 => vec![vec!["NOTACOMMAND".into(), key(&mut rng, "s")]],
            14 => vec![vec!["GET".into()]],
            15 => vec![vec!["SET".into(), key(&mut rng, "s")]],
            16 => vec![vec![
                "EXISTS".into(),
                key(&mut rng, "s"),
                key(&mut rng, "n"),
            ]],
            17 => vec![vec!["APPEND".into(), key(&mut rng, "s"), "+".into()]],
            18 => vec![vec![
                "ZADD".into(),
                key(&mut rng, "z"),
                "2.5".into(),
                "m".into(),
            ]],
            19 => vec![vec![
                "ZRANGE".into(),
                key(&mut rng, "z"),
                "0".into(),
                "-1".into(),
                "WITHSCORES".into(),
            ]],
            20 if left >= 4 => vec![
                vec!["MULTI".into()],
                vec!["INCR".into(), key(&mut rng, "n")],
                vec!["GET".into(), key(&mut rng, "s")],
                vec!["EXEC".into()],
            ],
            // A transaction aborted by a queueing error.
            21 if left >= 4 => vec![
                vec!["MULTI".into()],
                vec!["INCR".into(), key(&mut rng, "n")],
                vec!["GET".into()],
                vec!["EXEC".into()],
            ],
            _ => vec![vec!["ECHO".into(), format!("e{n}")]],
        };
        for c in cmd {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            out.extend_from_slice(&encode_str(&args));
            n += 1;
        }
    }
    (out, n)
}

/// Writes `preamble` then `pipeline` (one write) from a separate thread while
/// this thread reads `expected` replies; returns them.
fn run_pipeline(
    addr: SocketAddr,
    preamble: &[&str],
    pipeline: &[u8],
    expected: usize,
) -> Vec<Vec<u8>> {
    let mut conn = RawConn::connect(addr);
    for c in preamble {
        let r = conn.cmd_str(&c.split(' ').collect::<Vec<_>>());
        assert!(!r.starts_with(b"-"), "preamble {c}: {}", show(&r));
    }
    let mut writer = conn.try_clone_stream();
    let data = pipeline.to_vec();
    let w = thread::spawn(move || writer.write_all(&data));
    let replies = conn.read_replies(expected);
    w.join().expect("writer").expect("pipeline write");
    replies
}

fn compare(label: &str, through: &[Vec<u8>], direct: &[Vec<u8>]) {
    assert_eq!(through.len(), direct.len());
    for (i, (t, d)) in through.iter().zip(direct).enumerate() {
        assert!(
            t == d,
            "{label}: reply {i} differs\n sidecar: {}\n   redis: {}",
            show(t),
            show(d)
        );
    }
}

fn differential(preamble: &[&str]) {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let (pipeline, n) = mixed_pipeline("p", 10_000, 7);
    assert_eq!(n, 10_000);
    let through = run_pipeline(sidecar.addr(), preamble, &pipeline, n);
    common::assert_reply(&redis.cmd(&["FLUSHALL"]), b"+OK\r\n");
    let direct = run_pipeline(redis.addr(), preamble, &pipeline, n);
    compare("single client", &through, &direct);
    // The mix really exercised errors and transactions.
    let count = |pred: &dyn Fn(&[u8]) -> bool| direct.iter().filter(|r| pred(r)).count();
    assert!(count(&|r| r.starts_with(b"-WRONGTYPE")) > 100);
    assert!(count(&|r| r.starts_with(b"-ERR unknown command")) > 100);
    assert!(count(&|r| r.starts_with(b"-EXECABORT")) > 50);
    assert!(count(&|r| r == b"+QUEUED\r\n") > 100);
}

#[test]
fn ten_thousand_mixed_commands_match_redis_resp2() {
    differential(&[]);
}

#[test]
fn ten_thousand_mixed_commands_match_redis_resp3() {
    differential(&["HELLO 3"]);
}

#[test]
fn concurrent_pipelining_clients_each_get_their_own_replies() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let clients = 8;
    let per_client = 2_000;
    let pipelines: Vec<(Vec<u8>, usize)> = (0..clients)
        .map(|i| mixed_pipeline(&format!("c{i}"), per_client, 100 + i as u64))
        .collect();
    // Each client uses its own keys, so the expected replies can be taken
    // from Redis one client at a time.
    let mut expected = Vec::new();
    for (i, (p, n)) in pipelines.iter().enumerate() {
        let preamble: &[&str] = if i % 2 == 1 { &["HELLO 3"] } else { &[] };
        expected.push(run_pipeline(redis.addr(), preamble, p, *n));
    }
    common::assert_reply(&redis.cmd(&["FLUSHALL"]), b"+OK\r\n");
    let addr = sidecar.addr();
    let handles: Vec<_> = pipelines
        .into_iter()
        .enumerate()
        .map(|(i, (p, n))| {
            thread::spawn(move || {
                let preamble: &[&str] = if i % 2 == 1 { &["HELLO 3"] } else { &[] };
                run_pipeline(addr, preamble, &p, n)
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let got = h.join().expect("client thread");
        compare(&format!("client {i}"), &got, &expected[i]);
    }
}

#[test]
fn replies_to_a_pipeline_split_across_many_small_writes_stay_in_order() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    let mut all = Vec::new();
    for i in 0..300 {
        all.extend_from_slice(&encode_str(&["ECHO", &format!("m{i}")]));
    }
    // Dribble the bytes in odd-sized pieces so frames straddle writes.
    for chunk in all.chunks(7) {
        c.send(chunk);
    }
    for i in 0..300 {
        let want = format!("m{i}");
        common::assert_reply(
            &c.read_reply(),
            format!("${}\r\n{want}\r\n", want.len()).as_bytes(),
        );
    }
}

#[test]
fn pipeline_mixing_shared_pinned_and_blocking_commands_matches_redis() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let cmds: &[&[&str]] = &[
        &["SET", "a", "1"],
        &["BLPOP", "empty", "0.05"],
        &["GET", "a"],
        &["WATCH", "a"],
        &["INCR", "a"],
        &["MULTI"],
        &["INCR", "a"],
        &["EXEC"],
        &["GET", "a"],
        &["RPUSH", "l", "x"],
        &["BLPOP", "l", "1"],
        &["SUBSCRIBE", "ch"],
        &["PING"],
        &["UNSUBSCRIBE", "ch"],
        &["SELECT", "2"],
        &["GET", "a"],
        &["SET", "a", "in-db-2"],
        &["HELLO", "3"],
        &["HSET", "h", "f", "v"],
        &["HGETALL", "h"],
        &["BLPOP", "empty", "0.05"],
        &["GET", "a"],
    ];
    let mut pipeline = Vec::new();
    for c in cmds {
        pipeline.extend_from_slice(&encode_str(c));
    }
    let through = run_pipeline(sidecar.addr(), &[], &pipeline, cmds.len());
    common::assert_reply(&redis.cmd(&["FLUSHALL"]), b"+OK\r\n");
    let direct = run_pipeline(redis.addr(), &[], &pipeline, cmds.len());
    // HELLO carries a connection id and version that legitimately differ.
    let hello = cmds.iter().position(|c| c[0] == "HELLO").expect("HELLO");
    for (i, (t, d)) in through.iter().zip(&direct).enumerate() {
        if i != hello {
            assert!(
                t == d,
                "{:?}: sidecar {} vs redis {}",
                cmds[i],
                show(t),
                show(d)
            );
        }
    }
    assert!(
        through[hello].starts_with(b"%7\r\n"),
        "{}",
        show(&through[hello])
    );
}
