//! What the sidecar logs at `info`: never key or value bytes, whatever the traffic
//! (accepted, refused, malformed, flushed, reloaded, disconnected for a limit).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{encode_str, free_port, sidecar_command, RawConn, RedisServer, SidecarToml};

/// Bytes that must never appear in the log.
const MARKER: &str = "Zq7secretKey";

#[test]
fn info_logs_carry_no_key_or_value_bytes() {
    let redis = RedisServer::start();
    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let toml = SidecarToml::new(&redis.url())
        .server("max_reply_buffer = \"64KiB\"")
        .namespace("name = \"session\"\nprefix = \"session:\"\ndb = 3")
        .namespace("name = \"cache\"\nprefix = \"cache:\"\nflush = \"allow\"")
        .namespace(
            "name = \"lock\"\nprefix = \"lock:\"\nrequire_ttl = true\nmust_not_evict = true",
        );
    let config = dir.path().join("sidecar.toml");
    std::fs::write(&config, toml.render(&addr)).unwrap();
    let log_path = dir.path().join("sidecar.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = sidecar_command()
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Only its own listener counts (see `common::listens_on`).
    while !(common::listens_on(child.id(), port) && RawConn::try_connect(sock).is_ok()) {
        assert!(Instant::now() < deadline, "sidecar did not start");
        std::thread::sleep(Duration::from_millis(10));
    }

    let key = |ns: &str| format!("{ns}{MARKER}");
    let mut c = RawConn::connect(sock);
    c.cmd_str(&["SET", &key("session:"), MARKER]);
    c.cmd_str(&["GET", &key("session:")]);
    c.cmd_str(&["SET", &key("nowhere:"), MARKER]); // refused: outside every namespace
    c.cmd_str(&["SET", &key("lock:"), MARKER]); // refused: require_ttl
    c.cmd_str(&["SELECT", "3"]);
    c.cmd_str(&["SET", MARKER, MARKER]);
    c.cmd_str(&["KEYS", &format!("{MARKER}*")]);
    c.cmd_str(&["SELECT", "0"]);
    c.cmd_str(&["SET", &key("cache:"), MARKER]);
    c.cmd_str(&["FLUSHALL"]);
    c.cmd_str(&["SIDECAR", "FLUSH", "cache"]);
    c.cmd_str(&["SIDECAR", "RELOAD"]);
    c.cmd_str(&["EVAL", &format!("return '{MARKER}'"), "0"]);
    // A client that never reads its replies is disconnected (a warn line).
    let mut hog = RawConn::connect(sock);
    let big = "x".repeat(32 * 1024);
    hog.send(&encode_str(&["SET", &key("cache:big"), &big]));
    for _ in 0..64 {
        if hog
            .try_send(&encode_str(&["GET", &key("cache:big")]))
            .is_err()
        {
            break;
        }
    }
    // Malformed input carrying the marker.
    let mut bad = RawConn::connect(sock);
    bad.send(format!("*1\r\n${MARKER}\r\n").as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("resp-sidecar serving"),
        "no info lines at all?\n{text}"
    );
    assert!(text.contains("INFO"), "{text}");
    // The paths above were taken: the flush, and the limit disconnect.
    assert!(text.contains("SIDECAR FLUSH"), "{text}");
    assert!(text.contains("max_reply_buffer exceeded"), "{text}");
    assert!(
        !text.contains(MARKER),
        "key or value bytes in the log:\n{text}"
    );
}
