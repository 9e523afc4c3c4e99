//! Bounds and bad input: every limit closes or refuses only the offending
//! client, with the documented reply, and everyone else keeps being served.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_reply, encode_str, show, wait_for, RawConn, ReadEnd, RedisServer, Sidecar,
    SidecarProcess, SidecarToml,
};

/// Asserts the connection answers `-ERR Protocol error: ...` and then closes.
#[track_caller]
fn expect_protocol_error_then_close(c: &mut RawConn) -> String {
    let reply = c.read_reply();
    assert!(
        reply.starts_with(b"-ERR Protocol error: ") && reply.ends_with(b"\r\n"),
        "expected a protocol error, got {}",
        show(&reply)
    );
    assert!(
        reply.len() > b"-ERR Protocol error: \r\n".len(),
        "protocol error without detail"
    );
    c.expect_closed(Duration::from_secs(5));
    String::from_utf8_lossy(&reply).to_string()
}

#[test]
fn max_clients_refuses_with_redis_text_and_frees_slots() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&SidecarToml::new(&redis.url()).server("max_clients = 2"));
    // Slots held by earlier (closed) connections, such as the harness's
    // readiness probe, free asynchronously: retry until admitted.
    let mut a = admitted(&sidecar);
    let mut b = admitted(&sidecar);
    let mut third = sidecar.conn();
    assert_reply(
        &third.read_reply(),
        b"-ERR max number of clients reached\r\n",
    );
    third.expect_closed(Duration::from_secs(5));
    // The two admitted clients were not disturbed.
    assert_reply(&a.cmd_str(&["SET", "mc", "1"]), b"+OK\r\n");
    assert_reply(&b.cmd_str(&["GET", "mc"]), b"$1\r\n1\r\n");
    // Once one leaves, a new client gets in (the slot frees asynchronously).
    drop(a);
    let mut d = admitted(&sidecar);
    assert_reply(&d.cmd_str(&["GET", "mc"]), b"$1\r\n1\r\n");
}

/// A connection the sidecar has admitted (answers PING), polling while
/// refused slots are still being released.
fn admitted(sidecar: &Sidecar) -> RawConn {
    wait_for("a client slot", Duration::from_secs(5), || {
        let mut c = sidecar.conn();
        c.send(b"PING\r\n");
        let r = c.read_reply();
        if r == b"+PONG\r\n" {
            Some(c)
        } else {
            assert_reply(&r, b"-ERR max number of clients reached\r\n");
            None
        }
    })
}

#[test]
fn bulk_longer_than_max_bulk_len_is_a_protocol_error() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&SidecarToml::new(&redis.url()).server("max_bulk_len = \"1KiB\""));
    let mut bystander = sidecar.conn();
    assert_reply(&bystander.cmd_str(&["SET", "by", "stander"]), b"+OK\r\n");
    // Exactly at the limit is fine.
    let mut c = sidecar.conn();
    let ok = vec![b'x'; 1024];
    assert_reply(&c.cmd(&[b"SET", b"k", &ok]), b"+OK\r\n");
    // One byte over is refused as soon as the length is announced.
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n");
    expect_protocol_error_then_close(&mut c);
    assert_reply(&bystander.cmd_str(&["GET", "by"]), b"$7\r\nstander\r\n");
    assert_reply(&redis.cmd(&["STRLEN", "k"]), b":1024\r\n");
}

#[test]
fn huge_announced_bulk_is_not_allocated_up_front() {
    // As a process, so its memory can be read from /proc. The default
    // max_bulk_len (512 MiB) admits the announced ~480 MB.
    let redis = RedisServer::start();
    let sidecar = SidecarProcess::start(&SidecarToml::new(&redis.url()));
    let mut warm = sidecar.conn();
    assert_reply(&warm.cmd_str(&["SET", "w", "1"]), b"+OK\r\n");
    let before_kib = sidecar.proc_status_kib("VmSize");
    let before_rss = sidecar.proc_status_kib("VmRSS");

    let mut c = sidecar.conn();
    c.send(b"*3\r\n$3\r\nSET\r\n$4\r\nhuge\r\n$500000000\r\n");
    // Feed a few MB of the value so the sidecar has certainly started on it.
    let chunk = vec![b'a'; 256 * 1024];
    for _ in 0..16 {
        c.send(&chunk);
    }
    assert_reply(&warm.cmd_str(&["GET", "w"]), b"$1\r\n1\r\n");
    let after_kib = sidecar.proc_status_kib("VmSize");
    let after_rss = sidecar.proc_status_kib("VmRSS");
    let grown_mib = after_kib.saturating_sub(before_kib) / 1024;
    assert!(
        grown_mib < 256,
        "address space grew by {grown_mib} MiB for a 4 MiB partial bulk (announced 477 MiB)"
    );
    assert!(
        after_rss.saturating_sub(before_rss) / 1024 < 128,
        "RSS grew from {before_rss} KiB to {after_rss} KiB"
    );
    // The half-sent command does not block other clients.
    let mut other = sidecar.conn();
    assert_reply(&other.cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn array_longer_than_max_array_len_is_a_protocol_error() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&SidecarToml::new(&redis.url()).server("max_array_len = 16"));
    let mut c = sidecar.conn();
    let args: Vec<String> = (0..15).map(|i| format!("k{i}")).collect();
    let mut ok = vec!["MGET"];
    ok.extend(args.iter().map(String::as_str));
    let reply = c.cmd_str(&ok);
    assert!(reply.starts_with(b"*15\r\n"), "{}", show(&reply));
    let mut bystander = sidecar.conn();
    c.send(b"*17\r\n");
    expect_protocol_error_then_close(&mut c);
    assert_reply(&bystander.cmd_str(&["PING"]), b"+PONG\r\n");
    // A negative or absurd count is refused the same way.
    let mut d = sidecar.conn();
    d.send(b"*99999999999\r\n");
    expect_protocol_error_then_close(&mut d);
}

#[test]
fn inline_command_longer_than_max_inline_len_is_a_protocol_error() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&SidecarToml::new(&redis.url()).server("max_inline_len = 64"));
    let mut c = sidecar.conn();
    c.send(b"ECHO short\r\n");
    assert_reply(&c.read_reply(), b"$5\r\nshort\r\n");
    // 200 bytes and no newline yet: refused without waiting for the end.
    c.send(&[b'A'; 200]);
    expect_protocol_error_then_close(&mut c);
    assert_reply(&sidecar.conn().cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn malformed_resp_is_a_protocol_error_then_close() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut bystander = sidecar.conn();
    let cases: [&[u8]; 4] = [
        b"*2\r\n$3\r\nGET\r\n:5\r\n",
        b"*abc\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$-5\r\n",
    ];
    for case in cases {
        let mut c = sidecar.conn();
        // A good command first, then the bad bytes in the same write: the
        // good one is still answered.
        let mut data = encode_str(&["PING"]);
        data.extend_from_slice(case);
        c.send(&data);
        assert_reply(&c.read_reply(), b"+PONG\r\n");
        let text = expect_protocol_error_then_close(&mut c);
        assert_eq!(text.matches("\r\n").count(), 1, "one line: {text:?}");
        assert_reply(&bystander.cmd_str(&["PING"]), b"+PONG\r\n");
    }
}

#[test]
fn client_that_never_reads_is_disconnected_at_max_reply_buffer() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(
        &SidecarToml::new(&redis.url())
            .server("max_reply_buffer = \"1MiB\"")
            .server("max_pipeline = 100000"),
    );
    let value = vec![b'v'; 64 * 1024];
    let mut setup = sidecar.conn();
    assert_reply(&setup.cmd(&[b"SET", b"big", &value]), b"+OK\r\n");
    assert_reply(&setup.cmd_str(&["SET", "small", "s"]), b"+OK\r\n");

    // 4000 GETs of 64 KiB = 256 MiB of replies that are never read.
    let gets = 4000;
    let mut hog = sidecar.conn();
    let mut writer = hog.try_clone_stream();
    let request = encode_str(&["GET", "big"]).repeat(gets);
    let w = thread::spawn(move || {
        // Either all bytes go out, or the sidecar cuts us off first.
        let _ = writer.write_all(&request);
    });

    // Meanwhile another client keeps working.
    let mut other = sidecar.conn();
    for _ in 0..50 {
        assert_reply(&other.cmd_str(&["GET", "small"]), b"$1\r\ns\r\n");
    }

    // Now drain the hog: it must hit EOF long before 256 MiB of replies.
    hog.set_read_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let mut replies = 0usize;
    let end = loop {
        match hog.try_read_reply() {
            Ok(r) => {
                assert_eq!(r.len(), 64 * 1024 + 10, "unexpected reply {}", show(&r));
                replies += 1;
            }
            Err(e) => break e,
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "drain took too long"
        );
    };
    assert!(
        matches!(end, ReadEnd::Closed(_)),
        "hog connection not closed after {replies} replies: {end:?}"
    );
    assert!(
        replies < gets,
        "hog got all {replies} replies; it was never disconnected"
    );
    w.join().expect("writer");
    assert_reply(&other.cmd_str(&["GET", "small"]), b"$1\r\ns\r\n");
}

#[test]
fn idle_clients_are_closed_after_idle_timeout() {
    let redis = RedisServer::start();
    let sidecar =
        Sidecar::start(&SidecarToml::new(&redis.url()).server("idle_timeout = \"400ms\""));
    let mut idle = sidecar.conn();
    assert_reply(&idle.cmd_str(&["PING"]), b"+PONG\r\n");
    let started = Instant::now();
    idle.expect_closed(Duration::from_secs(5));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "closed after only {waited:?}"
    );
    // New clients are served normally.
    assert_reply(&sidecar.conn().cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn a_blocked_client_is_not_idle() {
    // A client waiting in BLPOP longer than idle_timeout keeps its connection.
    let redis = RedisServer::start();
    let sidecar =
        Sidecar::start(&SidecarToml::new(&redis.url()).server("idle_timeout = \"300ms\""));
    let mut c = sidecar.conn();
    c.send(&encode_str(&["BLPOP", "never", "1"]));
    assert_reply(&c.read_reply(), b"*-1\r\n");
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn nested_arrays_in_a_request_are_a_protocol_error() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    // Commands are arrays of bulk strings; a nested array is refused.
    c.send(b"*2\r\n*1\r\n$4\r\nPING\r\n$1\r\nx\r\n");
    expect_protocol_error_then_close(&mut c);
    assert_reply(&sidecar.conn().cmd_str(&["PING"]), b"+PONG\r\n");
}
