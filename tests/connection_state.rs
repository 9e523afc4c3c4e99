//! Connection state a client sets up in Redis through the sidecar: CLIENT TRACKING
//! (RESP3 invalidation pushes on the same connection), CLIENT REPLY, MONITOR, and a
//! command refused by the sidecar inside MULTI.

mod common;

use std::time::Duration;

use common::{assert_reply, RedisServer, Sidecar, SidecarToml};

#[test]
fn client_tracking_delivers_invalidations_to_the_client_that_asked() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut tracked = sidecar.conn();
    let hello = tracked.cmd_str(&["HELLO", "3"]);
    assert_eq!(hello[0], b'%', "HELLO 3 answers a map");
    assert_reply(&tracked.cmd_str(&["CLIENT", "TRACKING", "on"]), b"+OK\r\n");
    assert_reply(&tracked.cmd_str(&["SET", "tk", "1"]), b"+OK\r\n");
    assert_reply(&tracked.cmd_str(&["GET", "tk"]), b"$1\r\n1\r\n");
    // A write by another client (through the sidecar) invalidates the key for the tracker.
    let mut writer = sidecar.conn();
    assert_reply(&writer.cmd_str(&["SET", "tk", "2"]), b"+OK\r\n");
    // The push arrives while the tracking client is idle, without it sending anything.
    tracked.set_read_timeout(Duration::from_secs(5));
    let push = tracked.read_reply();
    assert_reply(&push, b">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\ntk\r\n");
    // A client that did not ask for tracking gets no push: its next reply is its own.
    assert_reply(&writer.cmd_str(&["GET", "tk"]), b"$1\r\n2\r\n");
    // Tracking off: the connection is clean again and further writes push nothing.
    assert_reply(&tracked.cmd_str(&["CLIENT", "TRACKING", "off"]), b"+OK\r\n");
    assert_reply(&tracked.cmd_str(&["GET", "tk"]), b"$1\r\n2\r\n");
    assert_reply(&writer.cmd_str(&["SET", "tk", "3"]), b"+OK\r\n");
    assert_reply(&tracked.cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn client_reply_off_and_skip_keep_later_replies_in_their_slots() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    // Pipelined: the skipped and silenced commands still run, only their replies vanish.
    c.send(
        &[
            common::encode_str(&["CLIENT", "REPLY", "SKIP"]),
            common::encode_str(&["SET", "r1", "a"]),
            common::encode_str(&["SET", "r2", "b"]),
            common::encode_str(&["CLIENT", "REPLY", "OFF"]),
            common::encode_str(&["INCR", "r3"]),
            common::encode_str(&["INCR", "r3"]),
            common::encode_str(&["CLIENT", "REPLY", "ON"]),
            common::encode_str(&["MGET", "r1", "r2", "r3"]),
        ]
        .concat(),
    );
    assert_reply(&c.read_reply(), b"+OK\r\n"); // SET r2
    assert_reply(&c.read_reply(), b"+OK\r\n"); // CLIENT REPLY ON
    assert_reply(&c.read_reply(), b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\n2\r\n");
    // Another client's view agrees, and this client is back to normal.
    assert_reply(&sidecar.conn().cmd_str(&["GET", "r3"]), b"$1\r\n2\r\n");
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn monitor_streams_other_clients_commands() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut monitor = sidecar.conn();
    assert_reply(&monitor.cmd_str(&["MONITOR"]), b"+OK\r\n");
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "watched-key", "v"]), b"+OK\r\n");
    monitor.set_read_timeout(Duration::from_secs(5));
    // Lines of other connections (the sidecar's own handshakes included) may come first.
    let found = (0..20).any(|_| {
        let line = monitor.read_reply();
        line.starts_with(b"+") && common::show(&line).contains("\"SET\" \"watched-key\" \"v\"")
    });
    assert!(found, "the SET never showed up in MONITOR output");
}

#[test]
fn a_refused_command_inside_multi_aborts_exec_like_a_queueing_error() {
    let redis = RedisServer::start();
    let sidecar =
        Sidecar::start(&SidecarToml::new(&redis.url()).policy("deny_commands = [\"FLUSHALL\"]"));
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SET", "m", "1"]), b"+QUEUED\r\n");
    let refused = c.cmd_str(&["FLUSHALL"]);
    assert!(
        refused.starts_with(b"-NOPERM 'FLUSHALL' is refused"),
        "{}",
        common::show(&refused)
    );
    assert_reply(
        &c.cmd_str(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    // Nothing of the transaction ran, and the connection is usable.
    assert_reply(&c.cmd_str(&["GET", "m"]), b"$-1\r\n");
    assert_reply(&redis.cmd(&["GET", "m"]), b"$-1\r\n");
}
