//! The first policy: `policy.deny_commands` refuses commands and subcommands
//! with `-NOPERM`, before anything reaches Redis.

mod common;

use common::{assert_reply, show, RedisServer, Sidecar, SidecarToml};

#[track_caller]
fn assert_noperm(reply: &[u8]) {
    assert!(
        reply.starts_with(b"-NOPERM ") && reply.ends_with(b"\r\n") && reply.len() > 10,
        "expected -NOPERM, got {}",
        show(reply)
    );
}

#[test]
fn built_in_deny_list_refuses_debug_and_shutdown() {
    let redis = RedisServer::start_with(&["--enable-debug-command", "local"]);
    let sidecar = Sidecar::start(&SidecarToml::new(&redis.url()).with_default_policy());
    let mut c = sidecar.conn();
    assert_noperm(&c.cmd_str(&["DEBUG", "SLEEP", "0"]));
    assert_noperm(&c.cmd_str(&["SHUTDOWN", "NOSAVE"]));
    assert_noperm(&c.cmd_str(&["config", "set", "maxmemory", "1"]));
    // Redis is still up and unchanged, and ordinary commands flow.
    assert_reply(&redis.cmd(&["PING"]), b"+PONG\r\n");
    assert_reply(
        &redis.cmd(&["CONFIG", "GET", "maxmemory"]),
        b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n",
    );
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
}

#[test]
fn configured_deny_list_with_commands_and_subcommands() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(
        &SidecarToml::new(&redis.url()).policy("deny_commands = [\"FLUSHALL\", \"CONFIG SET\"]"),
    );
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "keep", "me"]), b"+OK\r\n");
    assert_noperm(&c.cmd_str(&["FLUSHALL"]));
    assert_noperm(&c.cmd_str(&["flushall", "ASYNC"]));
    assert_noperm(&c.cmd_str(&["CONFIG", "SET", "maxmemory", "1"]));
    assert_noperm(&c.cmd_str(&["Config", "Set", "maxmemory", "1"]));
    // Other subcommands of the same command are allowed.
    assert_reply(
        &c.cmd_str(&["CONFIG", "GET", "maxmemory"]),
        &redis.cmd(&["CONFIG", "GET", "maxmemory"]),
    );
    assert_reply(&redis.cmd(&["GET", "keep"]), b"$2\r\nme\r\n");
    // A refused command inside a pipeline takes exactly its own slot.
    let mut data = common::encode_str(&["INCR", "n"]);
    data.extend_from_slice(&common::encode_str(&["FLUSHALL"]));
    data.extend_from_slice(&common::encode_str(&["INCR", "n"]));
    c.send(&data);
    assert_reply(&c.read_reply(), b":1\r\n");
    assert_noperm(&c.read_reply());
    assert_reply(&c.read_reply(), b":2\r\n");
    // Commands not on the list, even ones the built-in list would refuse, pass.
    let reply = c.cmd_str(&["DEBUG", "HELP"]);
    assert!(!reply.starts_with(b"-NOPERM"), "{}", show(&reply));
}

#[test]
fn empty_deny_list_is_a_transparent_proxy() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "gone", "1"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
    assert_reply(&redis.cmd(&["EXISTS", "gone"]), b":0\r\n");
    assert_reply(
        &c.cmd_str(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]),
        b"+OK\r\n",
    );
    assert_reply(
        &redis.cmd(&["CONFIG", "GET", "maxmemory-policy"]),
        b"*2\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n",
    );
}
