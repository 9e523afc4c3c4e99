//! Hot reload: SIGHUP and `SIDECAR RELOAD` re-read the config file and apply
//! namespaces and policy to connections already open; a broken file keeps the running
//! config and says what is wrong; restart-only settings are named, not applied.

mod common;

use std::time::Duration;

use common::{assert_reply, wait_for, RedisServer, SidecarProcess, SidecarToml};

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

fn base(redis: &RedisServer) -> SidecarToml {
    SidecarToml::new(&redis.url()).namespace("name = \"session\"\nprefix = \"session:\"\ndb = 3")
}

/// Rewrite the running sidecar's config file.
fn rewrite(sidecar: &SidecarProcess, toml: &SidecarToml) {
    let path = sidecar.dir().join("sidecar.toml");
    std::fs::write(path, toml.render(&sidecar.addr().to_string())).unwrap();
}

#[test]
fn reload_applies_namespaces_and_policy_to_open_connections() {
    let redis = RedisServer::start();
    let sidecar = SidecarProcess::start(&base(&redis));
    let mut legacy = sidecar.conn();
    assert_reply(&legacy.cmd_str(&["SELECT", "3"]), b"+OK\r\n");
    assert_reply(&legacy.cmd_str(&["SET", "x", "1"]), b"+OK\r\n");
    let mut c = sidecar.conn();
    assert!(text(&c.cmd_str(&["SET", "cache:y", "1"])).starts_with("-NOPERM"));
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");

    // A new namespace and a new deny list, applied to both open connections.
    let next = base(&redis)
        .namespace("name = \"cache\"\nprefix = \"cache:\"\ndb = 5\nflush = \"allow\"")
        .policy("deny_commands = [\"PING\"]");
    rewrite(&sidecar, &next);
    let report = text(&c.cmd_str(&["SIDECAR", "RELOAD"]));
    assert!(report.contains("applied namespaces, policy"), "{report}");
    assert!(!report.contains("need a restart"), "{report}");
    assert_reply(&c.cmd_str(&["SET", "cache:y", "1"]), b"+OK\r\n");
    assert!(text(&c.cmd_str(&["PING"])).starts_with("-NOPERM"));
    assert_reply(&legacy.cmd_str(&["GET", "x"]), b"$1\r\n1\r\n");
    assert_reply(&legacy.cmd_str(&["SELECT", "5"]), b"+OK\r\n");
    assert_reply(&legacy.cmd_str(&["GET", "y"]), b"$1\r\n1\r\n");

    // A broken file: refused with the key named, the running config kept.
    let path = sidecar.dir().join("sidecar.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    // The last table is a [[namespace]]: the stray key lands in it.
    std::fs::write(&path, format!("{good}\nno_such_key = 1\n")).unwrap();
    let refused = text(&c.cmd_str(&["SIDECAR", "RELOAD"]));
    assert!(
        refused.starts_with("-ERR reload refused, the running config is kept"),
        "{refused}"
    );
    assert!(refused.contains("no_such_key"), "{refused}");
    assert!(text(&c.cmd_str(&["PING"])).starts_with("-NOPERM"));
    assert_reply(&c.cmd_str(&["GET", "cache:y"]), b"$1\r\n1\r\n");

    // Settings that need a restart are named and left alone.
    let moved = next.clone().upstream("connect_timeout = \"3s\"");
    rewrite(&sidecar, &moved);
    let report = text(&c.cmd_str(&["SIDECAR", "RELOAD"]));
    assert!(
        report.contains("need a restart") && report.contains("upstream"),
        "{report}"
    );

    // SIGHUP does the same: the deny list goes away again.
    rewrite(
        &sidecar,
        &base(&redis).namespace("name = \"cache\"\nprefix = \"cache:\"\ndb = 5"),
    );
    sidecar.signal("HUP");
    wait_for(
        "SIGHUP to apply the new policy",
        Duration::from_secs(10),
        || (c.cmd_str(&["PING"]) == b"+PONG\r\n").then_some(()),
    );
    let stats = text(&c.cmd_str(&["SIDECAR", "STATS"]));
    assert!(
        stats.contains("sidecar_config_reloads_total{result=\"ok\"} 3"),
        "{stats}"
    );
    assert!(
        stats.contains("sidecar_config_reloads_total{result=\"error\"} 1"),
        "{stats}"
    );
}

#[test]
fn a_client_in_a_db_whose_mapping_was_removed_is_refused_not_unprefixed() {
    let redis = RedisServer::start();
    let sidecar = SidecarProcess::start(&base(&redis));
    let mut legacy = sidecar.conn();
    assert_reply(&legacy.cmd_str(&["SELECT", "3"]), b"+OK\r\n");
    // Namespaces gone altogether: a transparent proxy from now on.
    rewrite(&sidecar, &SidecarToml::new(&redis.url()));
    let mut admin = sidecar.conn();
    assert!(text(&admin.cmd_str(&["SIDECAR", "RELOAD"])).contains("applied"));
    let refused = text(&legacy.cmd_str(&["SET", "k", "v"]));
    assert!(refused.contains("db 3 is no longer mapped"), "{refused}");
    assert_reply(&redis.cmd(&["EXISTS", "k"]), b":0\r\n");
    // SELECT 0 gets the client out.
    assert_reply(&legacy.cmd_str(&["SELECT", "0"]), b"+OK\r\n");
    assert_reply(&legacy.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
    assert_reply(&redis.cmd(&["EXISTS", "k"]), b":1\r\n");
}

#[test]
fn reload_resizes_the_cache_and_resubscribes_when_cached_namespaces_change() {
    let redis = RedisServer::start();
    redis.cmd(&["SET", "session:k", "v"]);
    let sidecar = SidecarProcess::start(&base(&redis));
    let mut c = sidecar.conn();
    assert!(c
        .sidecar_info("cache_state")
        .contains("no namespace is cached"));
    // Cache the session namespace and shrink the cache: applied without a restart.
    let cached = SidecarToml::new(&redis.url())
        .namespace("name = \"session\"\nprefix = \"session:\"\ndb = 3\ncache = true")
        .cache("max_bytes = \"1MiB\"");
    rewrite(&sidecar, &cached);
    let report = text(&c.cmd_str(&["SIDECAR", "RELOAD"]));
    assert!(
        report.contains("cache size") && !report.contains("need a restart"),
        "{report}"
    );
    assert_eq!(c.sidecar_info("cache_max_bytes"), "1048576");
    wait_for("stream subscribed", Duration::from_secs(5), || {
        (c.sidecar_info("cache_state") == "live").then_some(())
    });
    assert_reply(&c.cmd_str(&["SELECT", "3"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    assert_reply(&c.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    assert_eq!(c.sidecar_info("cache_hits"), "1");
    // max_ttl needs a restart and is named.
    rewrite(&sidecar, &cached.clone().cache("max_ttl = \"5m\""));
    let report = text(&c.cmd_str(&["SIDECAR", "RELOAD"]));
    assert!(
        report.contains("need a restart") && report.contains("cache.max_ttl"),
        "{report}"
    );
}
