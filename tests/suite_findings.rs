//! Behaviours found by running Redis's own test suite through the sidecar
//! (`scripts/redis-testsuite.sh`), each pinned down here against a real Redis.

mod common;

use common::{assert_reply, show, RedisServer, Sidecar};

#[test]
fn watch_after_returning_to_db_zero_still_aborts_exec() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SELECT", "9"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SELECT", "0"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SET", "x", "30"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["WATCH", "x"]), b"+OK\r\n");
    assert_reply(&sidecar.conn().cmd_str(&["SET", "x", "31"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["PING"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*-1\r\n");
}

#[test]
fn deeply_nested_script_replies_pass_through_untouched() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let script = "local a = {}; local b = {a}; a[1] = b; return a";
    let eval = common::encode_str(&["EVAL", script, "0"]);
    let direct = deep_reply(redis.addr(), &eval);
    assert!(
        direct.len() > 10_000,
        "Redis nests this reply deeply ({} bytes)",
        direct.len()
    );
    assert_eq!(deep_reply(sidecar.addr(), &eval), direct);
    assert_reply(&sidecar.conn().cmd_str(&["PING"]), b"+PONG\r\n");
}

/// One reply read with the library's iterative scanner (the harness reader recurses).
fn deep_reply(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(request).unwrap();
    let mut scanner = resp_sidecar::resp::ReplyScanner::new(1 << 20);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(len) = scanner.scan(&buf).unwrap() {
            buf.truncate(len);
            return buf;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed after {} bytes", buf.len());
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn replication_commands_are_refused_and_leave_shared_connections_intact() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    for cmd in [
        &["SYNC"][..],
        &["PSYNC", "?", "-1"],
        &["REPLCONF", "listening-port", "1"],
    ] {
        let reply = c.cmd_str(cmd);
        assert!(
            reply.starts_with(b"-NOPERM replication commands"),
            "{}",
            show(&reply)
        );
    }
    // Inline too (that is how the suite sent it), and the shared connections still serve.
    c.send(b"SYNC\r\n");
    assert!(c.read_reply().starts_with(b"-NOPERM"));
    for _ in 0..10 {
        assert_reply(&sidecar.conn().cmd_str(&["PING"]), b"+PONG\r\n");
    }
    assert_eq!(redis.info_field("connected_slaves"), Some(0));
}

#[test]
fn auth_as_another_acl_user_is_refused_instead_of_silently_ignored() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    let reply = c.cmd_str(&["AUTH", "user1", "secret"]);
    assert!(
        reply.starts_with(b"-NOPERM the sidecar talks to Redis as user 'default'"),
        "{}",
        show(&reply)
    );
    let reply = c.cmd_str(&["HELLO", "3", "AUTH", "user1", "secret"]);
    assert!(reply.starts_with(b"-NOPERM"), "{}", show(&reply));
    // The default user (what apps that used to talk to Redis send) is still accepted.
    assert_reply(&c.cmd_str(&["AUTH", "default", "anything"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["AUTH", "anything"]), b"+OK\r\n");
}

#[test]
fn client_unblock_reaches_the_blocked_client_by_its_sidecar_id() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut blocked = sidecar.conn();
    let id = String::from_utf8(blocked.cmd_str(&["CLIENT", "ID"])).unwrap();
    let id = id.trim_start_matches(':').trim_end().to_string();
    blocked.send(&common::encode_str(&["BLPOP", "never", "0"]));
    let mut other = sidecar.conn();
    // Poll until the BLPOP is blocked in Redis, then unblock it by the sidecar's id.
    common::wait_for("the BLPOP to block", common::READY_TIMEOUT, || {
        (redis.info_field("blocked_clients") == Some(1)).then_some(())
    });
    assert_reply(&other.cmd_str(&["CLIENT", "UNBLOCK", &id]), b":1\r\n");
    assert_reply(&blocked.read_reply(), b"*-1\r\n");
    // An id that holds no pinned connection is not blocked anywhere.
    assert_reply(&other.cmd_str(&["CLIENT", "UNBLOCK", &id]), b":0\r\n");
    // With ERROR the blocked client gets Redis's error.
    blocked.send(&common::encode_str(&["BLPOP", "never", "0"]));
    common::wait_for("the BLPOP to block again", common::READY_TIMEOUT, || {
        (redis.info_field("blocked_clients") == Some(1)).then_some(())
    });
    assert_reply(
        &other.cmd_str(&["CLIENT", "UNBLOCK", &id, "ERROR"]),
        b":1\r\n",
    );
    let err = blocked.read_reply();
    assert!(err.starts_with(b"-UNBLOCKED"), "{}", show(&err));
}

#[test]
fn resp2_tracking_redirects_invalidations_to_a_subscribed_client() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut sink = sidecar.conn();
    let id = String::from_utf8(sink.cmd_str(&["CLIENT", "ID"])).unwrap();
    let id = id.trim_start_matches(':').trim_end().to_string();
    assert_reply(
        &sink.cmd_str(&["SUBSCRIBE", "__redis__:invalidate"]),
        b"*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n",
    );
    let mut tracked = sidecar.conn();
    assert_reply(
        &tracked.cmd_str(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]),
        b"+OK\r\n",
    );
    assert_reply(&tracked.cmd_str(&["GET", "rk"]), b"$-1\r\n");
    assert_reply(&sidecar.conn().cmd_str(&["SET", "rk", "1"]), b"+OK\r\n");
    assert_reply(
        &sink.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$2\r\nrk\r\n",
    );
}
