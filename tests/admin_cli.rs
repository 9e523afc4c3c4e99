//! The admin surface in redis-cli: `INFO` with a `# Sidecar` section, `INFO sidecar`
//! while Redis is down, and `SIDECAR STATS | UPSTREAM | CONFIG | HELP`.

mod common;

use std::time::Duration;

use common::{assert_reply, wait_for, RedisServer, Sidecar, SidecarToml};

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

#[test]
fn info_carries_the_sidecar_section_and_info_sidecar_works_with_redis_down() {
    let mut redis = RedisServer::start();
    let sidecar = Sidecar::start(
        &SidecarToml::new(&redis.url())
            .namespace("name = \"session\"\nprefix = \"session:\"\ndb = 3"),
    );
    let mut c = sidecar.conn();
    let full = text(&c.cmd_str(&["INFO"]));
    assert!(full.starts_with('$'), "{full}");
    assert!(full.contains("# Server\r\nredis_version:"), "{full}");
    assert!(full.contains("\r\n# Sidecar\r\nsidecar_version:"), "{full}");
    assert!(full.contains("upstream_mode:standalone\r\n"), "{full}");
    assert!(
        full.contains(&format!("primary:127.0.0.1:{}\r\n", redis.port())),
        "{full}"
    );
    assert!(
        full.contains("namespace_session:prefix=session:,db=3,flush=deny\r\n"),
        "{full}"
    );
    // The bulk length matches the text (the section was appended, not glued on).
    let header_end = full.find("\r\n").unwrap();
    let len: usize = full[1..header_end].parse().unwrap();
    assert_eq!(full.len(), header_end + 2 + len + 2);
    // A named section is Redis's alone.
    let keyspace = text(&c.cmd_str(&["INFO", "keyspace"]));
    assert!(!keyspace.contains("# Sidecar"), "{keyspace}");
    // RESP3: a verbatim string.
    let mut r3 = sidecar.conn();
    r3.cmd_str(&["HELLO", "3"]);
    let verbatim = text(&r3.cmd_str(&["INFO", "sidecar"]));
    assert!(
        verbatim.starts_with('=') && verbatim.contains("txt:# Sidecar\r\n"),
        "{verbatim}"
    );
    // Redis down: INFO sidecar still answers, and says so.
    redis.stop();
    let down = common::wait_for(
        "INFO sidecar to show the upstream down",
        std::time::Duration::from_secs(10),
        || {
            let t = text(&c.cmd_str(&["INFO", "sidecar"]));
            t.contains("upstream_connected:0").then_some(t)
        },
    );
    assert!(down.contains("# Sidecar\r\n"), "{down}");
    assert!(down.contains("connected_clients:2"), "{down}");
}

#[test]
fn sidecar_stats_upstream_config_and_help_read_in_redis_cli() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(
        &SidecarToml::new(&redis.url())
            .upstream("password = \"\"")
            .server("requirepass = \"s3cret\""),
    );
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["AUTH", "s3cret"]), b"+OK\r\n");
    // The shared connections dial Redis in the background after start, and the
    // harness's readiness probe is closed on the sidecar's side in its own time: wait.
    let stats = wait_for("the upstream connected", Duration::from_secs(5), || {
        let stats = text(&c.cmd_str(&["SIDECAR", "STATS"]));
        (stats.contains("sidecar_upstream_connected 1")
            && stats
                .lines()
                .any(|l| l.trim_end() == "sidecar_client_connections 1"))
        .then_some(stats)
    });
    // The harness's readiness probe was a connection too.
    assert!(
        stats.contains("sidecar_client_connections_total 2"),
        "{stats}"
    );
    assert!(stats.contains("sidecar_client_connections 1"), "{stats}");
    assert!(stats.contains("sidecar_upstream_connected 1"), "{stats}");
    assert!(!stats.contains("_bucket{"), "{stats}");
    let upstream = text(&c.cmd_str(&["SIDECAR", "UPSTREAM"]));
    assert!(upstream.contains("primary_state:verified"), "{upstream}");
    assert!(upstream.contains("upstream_connected:1"), "{upstream}");
    let config = text(&c.cmd_str(&["sidecar", "config"]));
    assert!(config.contains("[server]"), "{config}");
    assert!(
        !config.contains("s3cret"),
        "secrets must be redacted: {config}"
    );
    let help = text(&c.cmd_str(&["SIDECAR", "HELP"]));
    for sub in ["STATS", "UPSTREAM", "CONFIG", "NAMESPACES", "FLUSH"] {
        assert!(help.contains(sub), "{help}");
    }
    let unknown = text(&c.cmd_str(&["SIDECAR", "NOPE"]));
    assert!(
        unknown.starts_with("-ERR unknown subcommand 'NOPE'"),
        "{unknown}"
    );
    // Like everything else, these need AUTH when requirepass is set.
    let mut anon = sidecar.conn();
    assert_reply(
        &anon.cmd_str(&["SIDECAR", "STATS"]),
        b"-NOAUTH Authentication required.\r\n",
    );
    assert_reply(
        &anon.cmd_str(&["INFO", "sidecar"]),
        b"-NOAUTH Authentication required.\r\n",
    );
}
