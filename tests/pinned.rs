//! Pinned upstream connections: bounded by `upstream.max_pinned`, released or
//! closed when the state ends, and never leaking state to another client.

mod common;

use std::time::Duration;

use common::{
    assert_reply, encode_str, show, wait_for, ReadEnd, RedisServer, Sidecar, SidecarToml,
};

#[test]
fn max_pinned_refuses_with_tryagain_and_keeps_the_client() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&SidecarToml::new(&redis.url()).upstream("max_pinned = 2"));
    let mut a = sidecar.conn();
    let mut b = sidecar.conn();
    let mut c = sidecar.conn();
    assert_reply(&a.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&b.cmd_str(&["WATCH", "w"]), b"+OK\r\n");
    let refused = c.cmd_str(&["MULTI"]);
    assert!(
        refused.starts_with(b"-TRYAGAIN ") && show(&refused).contains("max_pinned"),
        "expected TRYAGAIN naming max_pinned, got {}",
        show(&refused)
    );
    // The refused client is still connected and served on the shared pool.
    assert_reply(&c.cmd_str(&["SET", "c", "1"]), b"+OK\r\n");
    // A queued command of the refused MULTI must not have opened anything.
    assert_reply(&c.cmd_str(&["EXEC"]), b"-ERR EXEC without MULTI\r\n");
    // When A's transaction ends its pinned connection is free for C.
    assert_reply(&a.cmd_str(&["SET", "a", "1"]), b"+QUEUED\r\n");
    assert_reply(&a.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n");
    wait_for("a pinned slot to free", Duration::from_secs(5), || {
        let r = c.cmd_str(&["MULTI"]);
        if r == b"+OK\r\n" {
            Some(())
        } else {
            assert!(r.starts_with(b"-TRYAGAIN "), "{}", show(&r));
            None
        }
    });
    assert_reply(&c.cmd_str(&["INCR", "c"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n:2\r\n");
    assert_reply(&b.cmd_str(&["UNWATCH"]), b"+OK\r\n");
}

#[test]
fn disconnecting_mid_transaction_leaks_nothing() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&SidecarToml::new(&redis.url()).upstream("max_pinned = 1"));
    for round in 0..5 {
        let mut c = sidecar.conn();
        // The previous round's client is released once the sidecar has seen it go.
        wait_for(
            "the abandoned pinned connection to be released",
            Duration::from_secs(5),
            || {
                let r = c.cmd_str(&["WATCH", "leak"]);
                if r == b"+OK\r\n" {
                    Some(())
                } else {
                    assert!(r.starts_with(b"-TRYAGAIN "), "round {round}: {}", show(&r));
                    None
                }
            },
        );
        assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
        assert_reply(&c.cmd_str(&["SET", "leak", "x"]), b"+QUEUED\r\n");
        drop(c);
        // With max_pinned = 1 the next client can only get a transaction once
        // the abandoned pinned connection is gone; its EXEC must not run the
        // abandoned queue.
        let mut next = sidecar.conn();
        assert_reply(&next.cmd_str(&["EXEC"]), b"-ERR EXEC without MULTI\r\n");
        wait_for(
            "the abandoned pinned connection to go",
            Duration::from_secs(5),
            || {
                let r = next.cmd_str(&["MULTI"]);
                if r == b"+OK\r\n" {
                    Some(())
                } else {
                    assert!(r.starts_with(b"-TRYAGAIN "), "round {round}: {}", show(&r));
                    None
                }
            },
        );
        assert_reply(&next.cmd_str(&["GET", "leak"]), b"+QUEUED\r\n");
        assert_reply(&next.cmd_str(&["EXEC"]), b"*1\r\n$-1\r\n");
    }
    assert_reply(&redis.cmd(&["EXISTS", "leak"]), b":0\r\n");
}

#[test]
fn pinned_connections_do_not_accumulate_upstream() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut warm = sidecar.conn();
    assert_reply(&warm.cmd_str(&["PING"]), b"+PONG\r\n");
    for i in 0..30 {
        let mut c = sidecar.conn();
        assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
        assert_reply(&c.cmd_str(&["INCR", "n"]), b"+QUEUED\r\n");
        let r = c.cmd_str(&["EXEC"]);
        assert_reply(&r, format!("*1\r\n:{}\r\n", i + 1).as_bytes());
        let mut s = sidecar.conn();
        assert_reply(
            &s.cmd_str(&["SUBSCRIBE", "ch"]),
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
        );
    }
    // 30 finished transactions and 30 departed subscribers: Redis ends up with
    // a small number of connections, not 60 more.
    wait_for(
        "upstream connections to be released",
        Duration::from_secs(5),
        || {
            let n = redis
                .info_field("connected_clients")
                .expect("connected_clients");
            (n < 20).then_some(())
        },
    );
    // The departed subscribers' connections close asynchronously too.
    wait_for("the subscriptions to end", Duration::from_secs(5), || {
        (redis.cmd(&["PUBLISH", "ch", "x"]) == b":0\r\n").then_some(())
    });
}

#[test]
fn select_nonzero_db_is_private_to_the_client() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut a = sidecar.conn();
    let mut b = sidecar.conn();
    assert_reply(&a.cmd_str(&["SELECT", "1"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["SET", "dbkey", "one"]), b"+OK\r\n");
    assert_reply(&b.cmd_str(&["GET", "dbkey"]), b"$-1\r\n");
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["SELECT", "1"]), b"+OK\r\n");
    assert_reply(&direct.cmd_str(&["GET", "dbkey"]), b"$3\r\none\r\n");
    drop(a);
    // A client arriving after a db-1 client left starts in db 0.
    for _ in 0..5 {
        let mut fresh = sidecar.conn();
        assert_reply(&fresh.cmd_str(&["GET", "dbkey"]), b"$-1\r\n");
    }
    // An out-of-range db is Redis's error.
    assert_reply(&b.cmd_str(&["SELECT", "99"]), &redis.cmd(&["SELECT", "99"]));
    assert_reply(&b.cmd_str(&["GET", "dbkey"]), b"$-1\r\n");
}

#[test]
fn select_zero_returns_the_client_to_db_zero() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut a = sidecar.conn();
    assert_reply(&a.cmd_str(&["SET", "where", "db0"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["SELECT", "1"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["SET", "where", "db1"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["GET", "where"]), b"$3\r\ndb1\r\n");
    assert_reply(&a.cmd_str(&["SELECT", "0"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["GET", "where"]), b"$3\r\ndb0\r\n");
    assert_reply(&a.cmd_str(&["SELECT", "1"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["GET", "where"]), b"$3\r\ndb1\r\n");
}

#[test]
fn subscribed_clients_are_exempt_from_idle_timeout() {
    let redis = RedisServer::start();
    let sidecar =
        Sidecar::start(&SidecarToml::new(&redis.url()).server("idle_timeout = \"300ms\""));
    let mut sub = sidecar.conn();
    let mut idle = sidecar.conn();
    assert_reply(&idle.cmd_str(&["PING"]), b"+PONG\r\n");
    assert_reply(
        &sub.cmd_str(&["SUBSCRIBE", "quiet"]),
        b"*3\r\n$9\r\nsubscribe\r\n$5\r\nquiet\r\n:1\r\n",
    );
    // The plain idle client is closed...
    idle.expect_closed(Duration::from_secs(5));
    // ...and the subscriber, idle just as long, still gets messages.
    sub.set_read_timeout(Duration::from_millis(200));
    assert_eq!(sub.try_read_reply(), Err(ReadEnd::TimedOut));
    assert_reply(&redis.cmd(&["PUBLISH", "quiet", "still"]), b":1\r\n");
    sub.set_read_timeout(Duration::from_secs(5));
    assert_reply(
        &sub.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$5\r\nquiet\r\n$5\r\nstill\r\n",
    );
}

#[test]
fn max_pipeline_applies_backpressure_without_errors() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&SidecarToml::new(&redis.url()).server("max_pipeline = 4"));
    let mut c = sidecar.conn();
    let mut data = Vec::new();
    for i in 0..2_000 {
        data.extend_from_slice(&encode_str(&["ECHO", &i.to_string()]));
    }
    c.send(&data);
    for i in 0..2_000 {
        let s = i.to_string();
        assert_reply(
            &c.read_reply(),
            format!("${}\r\n{s}\r\n", s.len()).as_bytes(),
        );
    }
}
