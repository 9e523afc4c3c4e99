//! Upstream failures: Redis lost with a pipeline in flight, Redis down when
//! the sidecar starts, and recovery once it is back.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_reply, encode_str, free_port, parse_one, show, wait_for, RedisServer, Sidecar,
    SidecarToml, Value,
};

/// The harness's readiness check (`common::listens_on`) knows a listener by the process
/// that holds it, so a server that lost a race for its port is not taken for ready
/// because another test's server answers there.
#[test]
fn harness_knows_which_process_holds_a_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let redis = RedisServer::start();
    let redis_pid = redis.pid().expect("running");
    assert!(common::listens_on(std::process::id(), port));
    assert!(common::listens_on(redis_pid, redis.port()));
    assert!(!common::listens_on(redis_pid, port));
    assert!(!common::listens_on(std::process::id(), redis.port()));
    drop(listener);
    assert!(!common::listens_on(std::process::id(), port));
}

#[test]
fn upstream_lost_mid_pipeline_every_command_gets_one_reply_and_nothing_is_replayed() {
    let mut redis = RedisServer::start();
    let sidecar = Sidecar::start(
        &SidecarToml::new(&redis.url())
            .upstream("connect_timeout = \"300ms\"")
            .server("max_pipeline = 100000"),
    );
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "before", "1"]), b"+OK\r\n");

    // Hold Redis so the pipeline is certainly in flight when it dies.
    assert_reply(
        &redis.cmd(&["CLIENT", "PAUSE", "20000", "WRITE"]),
        b"+OK\r\n",
    );
    let n = 5_000;
    let mut writer = c.try_clone_stream();
    let pipeline = encode_str(&["INCR", "counter"]).repeat(n);
    let w = thread::spawn(move || writer.write_all(&pipeline));
    // Wait until Redis holds at least one of the INCRs.
    wait_for(
        "INCRs to reach paused Redis",
        Duration::from_secs(5),
        || {
            let list = redis.cmd(&["CLIENT", "LIST"]);
            show(&list).contains("cmd=incr").then_some(())
        },
    );
    redis.kill();
    w.join().expect("writer").expect("pipeline write");
    // Bring Redis back (empty) while replies are still being produced.
    redis.restart();

    let mut ints = Vec::new();
    let mut errors = 0;
    let mut after_error = Vec::new();
    for i in 0..n {
        let r = c.read_reply();
        match parse_one(&r) {
            Value::Int(v) if errors == 0 => ints.push(v),
            Value::Int(v) => after_error.push(v),
            Value::Error(e) => {
                errors += 1;
                assert!(!e.is_empty(), "empty error at {i}");
            }
            other => panic!("reply {i} is neither integer nor error: {other:?}"),
        }
    }
    // Paused Redis executed none of them before it died.
    assert!(
        ints.is_empty(),
        "INCRs answered by the killed server: {ints:?}"
    );
    assert!(errors > 0, "no command saw the upstream loss");
    // Commands that reached the new server were counted 1, 2, 3... in order,
    // and the server holds exactly that many: nothing was replayed behind
    // the client's back.
    for (i, v) in after_error.iter().enumerate() {
        assert_eq!(
            *v,
            i as i64 + 1,
            "integer replies after the loss: {after_error:?}"
        );
    }
    let stored = wait_for("sidecar to serve again", Duration::from_secs(10), || {
        let r = c.cmd_str(&["GET", "counter"]);
        (!r.starts_with(b"-")).then_some(r)
    });
    let want: Vec<u8> = if after_error.is_empty() {
        b"$-1\r\n".to_vec()
    } else {
        let s = after_error.len().to_string();
        format!("${}\r\n{s}\r\n", s.len()).into_bytes()
    };
    assert_reply(&stored, &want);
    assert_reply(&c.cmd_str(&["SET", "after", "ok"]), b"+OK\r\n");
    assert_reply(&redis.cmd(&["GET", "after"]), b"$2\r\nok\r\n");
}

#[test]
fn upstream_lost_affects_every_client_with_commands_in_flight() {
    let mut redis = RedisServer::start();
    let sidecar =
        Sidecar::start(&SidecarToml::new(&redis.url()).upstream("connect_timeout = \"300ms\""));
    let mut clients: Vec<_> = (0..4).map(|_| sidecar.conn()).collect();
    for c in &mut clients {
        assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
    }
    assert_reply(
        &redis.cmd(&["CLIENT", "PAUSE", "20000", "WRITE"]),
        b"+OK\r\n",
    );
    for c in &mut clients {
        c.send(&encode_str(&["SET", "x", "1"]).repeat(10));
    }
    wait_for("SETs to reach paused Redis", Duration::from_secs(5), || {
        show(&redis.cmd(&["CLIENT", "LIST"]))
            .contains("cmd=set")
            .then_some(())
    });
    redis.kill();
    for c in &mut clients {
        for i in 0..10 {
            let r = c.read_reply();
            assert!(
                r.starts_with(b"-") || r == b"+OK\r\n",
                "reply {i}: {}",
                show(&r)
            );
        }
    }
}

#[test]
fn upstream_down_at_start_answers_tryagain_then_recovers() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let sidecar = Sidecar::start(&SidecarToml::new(&url).upstream("connect_timeout = \"500ms\""));
    let mut c = sidecar.conn();
    for _ in 0..3 {
        let started = Instant::now();
        let r = c.cmd_str(&["GET", "k"]);
        assert!(
            r.starts_with(b"-TRYAGAIN "),
            "expected TRYAGAIN, got {}",
            show(&r)
        );
        assert!(r.ends_with(b"\r\n") && r.len() > 12, "{}", show(&r));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "TRYAGAIN took {:?}",
            started.elapsed()
        );
    }
    // A pipeline while down gets one error per command, in order.
    c.send(&encode_str(&["GET", "a"]).repeat(5));
    for _ in 0..5 {
        let r = c.read_reply();
        assert!(r.starts_with(b"-TRYAGAIN "), "{}", show(&r));
    }
    let redis = RedisServer::start_on_port(port, &[]);
    let r = wait_for(
        "sidecar to reach the late Redis",
        Duration::from_secs(10),
        || {
            let r = c.cmd_str(&["SET", "late", "yes"]);
            (!r.starts_with(b"-TRYAGAIN")).then_some(r)
        },
    );
    assert_reply(&r, b"+OK\r\n");
    assert_reply(&redis.cmd(&["GET", "late"]), b"$3\r\nyes\r\n");
}

#[test]
fn command_timeout_answers_instead_of_hanging() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(
        &SidecarToml::new(&redis.url())
            .upstream("command_timeout = \"300ms\"")
            .upstream("connect_timeout = \"300ms\""),
    );
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
    assert_reply(
        &redis.cmd(&["CLIENT", "PAUSE", "3000", "WRITE"]),
        b"+OK\r\n",
    );
    let started = Instant::now();
    let r = c.cmd_str(&["SET", "k", "w"]);
    let took = started.elapsed();
    assert!(
        r.starts_with(b"-"),
        "expected an error reply, got {}",
        show(&r)
    );
    assert!(
        took < Duration::from_secs(2),
        "timed-out command took {took:?}"
    );
    assert_reply(&redis.cmd(&["CLIENT", "UNPAUSE"]), b"+OK\r\n");
    wait_for(
        "sidecar to serve after the timeout",
        Duration::from_secs(10),
        || (c.cmd_str(&["PING"]) == b"+PONG\r\n").then_some(()),
    );
}
