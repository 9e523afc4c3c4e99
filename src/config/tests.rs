//! Tests for parsing and validating config text: keys, units, errors.

use std::time::Duration;

use super::raw::RawConfig;
use super::validate::validate;
use super::*;

const SHIPPED: &str = include_str!("../../sidecar.toml");

fn error_text(toml: &str) -> String {
    match Config::from_toml_str(toml) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err.to_string(),
    }
}

/// Parses and validates without the "not in this build yet" refusals.
fn validate_only(toml: &str) -> Result<Config, ConfigError> {
    validate("test", &RawConfig::parse("test", toml)?)
}

#[test]
fn shipped_reference_equals_the_defaults() {
    let shipped = Config::from_toml_str(SHIPPED).expect("shipped sidecar.toml is valid");
    assert_eq!(shipped, Config::default());
}

#[test]
fn empty_file_and_raw_defaults_equal_the_typed_defaults() {
    assert_eq!(Config::from_toml_str("").expect("empty"), Config::default());
    assert_eq!(
        validate("defaults", &RawConfig::default()).expect("raw defaults"),
        Config::default()
    );
    let config = Config::default();
    assert_eq!(config.server.max_bulk_len, 512 * 1024 * 1024);
    assert_eq!(config.server.idle_timeout, None);
    assert_eq!(
        config.upstream.command_timeout,
        Some(Duration::from_secs(10))
    );
    assert_eq!(config.upstream.endpoint.to_string(), "127.0.0.1:6379");
    assert_eq!(
        config.policy.deny_commands.len(),
        DEFAULT_DENY_COMMANDS.len()
    );
}

#[test]
fn unknown_keys_are_named_in_full() {
    let top = error_text("lisen = \"x\"");
    assert!(top.contains("unknown key `lisen`"), "{top}");
    let nested = error_text("[server]\nlisen = \"127.0.0.1:1\"");
    assert!(nested.contains("unknown key `server.lisen`"), "{nested}");
    let section = error_text("[serverr]\nlisten = \"127.0.0.1:1\"");
    assert!(section.contains("unknown key `serverr`"), "{section}");
    let deeper = error_text("[upstream.tls]\nca = \"x\"");
    assert!(deeper.contains("upstream.tls"), "{deeper}");
    let ns = error_text(
        "[[namespace]]\nname = \"a\"\nprefix = \"a:\"\n[[namespace]]\nname = \"b\"\nprefix = \"b:\"\ncahce = true",
    );
    assert!(ns.contains("unknown key `namespace.cahce`"), "{ns}");
    assert!(ns.contains("[[namespace]] #2"), "{ns}");
}

#[test]
fn type_and_value_errors_name_the_key() {
    let cases = [
        (
            "[server]\nmax_bulk_len = \"12XB\"",
            "server.max_bulk_len: invalid size \"12XB\"",
        ),
        (
            "[server]\nmax_clients = \"many\"",
            "server.max_clients: invalid type",
        ),
        (
            "[server]\nmax_clients = 0",
            "server.max_clients: must be at least 1",
        ),
        (
            "[server]\nidle_timeout = \"30\"",
            "server.idle_timeout: invalid duration \"30\"",
        ),
        (
            "[server]\nlisten = \"localhost\"",
            "server.listen: invalid address",
        ),
        ("[server]\nmax_inline_len = -1", "server.max_inline_len:"),
        (
            "[upstream]\npool_size = 0",
            "upstream.pool_size: must be at least 1",
        ),
        (
            "[upstream]\nmode = \"ring\"",
            "upstream.mode: unknown variant",
        ),
        (
            "[upstream]\nurl = \"redis://h/2\"",
            "upstream.url: use [[namespace]] db mapping",
        ),
        (
            "[upstream]\nsentinels = [\"a:b\"]",
            "upstream.sentinels: entry 1",
        ),
        (
            "[upstream]\ntls_ca_file = \"/ca.pem\"",
            "upstream.tls_ca_file: is set but TLS is off",
        ),
        (
            "[cache]\nmax_bytes = \"0\"",
            "cache.max_bytes: must be greater than 0",
        ),
        ("[cache]\nenabled = \"yes\"", "cache.enabled: invalid type"),
        ("[policy]\nkeys = \"all\"", "policy.keys: unknown variant"),
        (
            "[policy]\ndeny_commands = [\"A B C\"]",
            "policy.deny_commands: entry 1",
        ),
        (
            "[policy]\nscript_allowlist = [\"abc\"]",
            "policy.script_allowlist: entry 1",
        ),
        ("[log]\nlevel = \"loud\"", "log.level: invalid filter"),
        ("[log]\nformat = \"xml\"", "log.format: unknown variant"),
        ("server = 5", "server: invalid type"),
        ("[[namespace]]\ndb = -1", "namespace.db:"),
        (
            "[namespace]\nname = \"a\"",
            "namespace: write each namespace as a [[namespace]]",
        ),
    ];
    for (toml, expected) in cases {
        let text = error_text(toml);
        assert!(text.contains(expected), "{toml:?} gave {text:?}");
    }
}

#[test]
fn syntax_errors_give_a_position_but_not_the_line() {
    let text = error_text("[upstream]\npassword = \"s3cret");
    assert!(text.contains("invalid TOML: line 2"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn units_in_every_format_through_the_file() {
    let config = Config::from_toml_str(
        "[server]\nmax_bulk_len = \"1GiB\"\nmax_inline_len = 4096\nmax_reply_buffer = \"100KB\"\n\
         idle_timeout = \"5m\"\nshutdown_grace = \"500ms\"\n\
         [upstream]\ncommand_timeout = \"0s\"\nfailover_wait = \"24h\"\n\
         [cache]\nmax_bytes = \"4096\"",
    )
    .expect("valid");
    assert_eq!(config.server.max_bulk_len, 1 << 30);
    assert_eq!(config.server.max_inline_len, 4096);
    assert_eq!(config.server.max_reply_buffer, 100_000);
    assert_eq!(config.server.idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(config.server.shutdown_grace, Duration::from_millis(500));
    assert_eq!(config.upstream.command_timeout, None);
    assert_eq!(config.upstream.failover_wait, Duration::from_secs(86_400));
    assert_eq!(config.cache.max_bytes, 4096);
}

#[test]
fn cluster_mode_is_refused_by_key() {
    let cluster = error_text("[upstream]\nmode = \"cluster\"");
    assert!(
        cluster.contains("upstream.mode: cluster mode is not available in this build yet"),
        "{cluster}"
    );
}

#[test]
fn namespace_touch_interval_and_prefix_rules() {
    let ns = "[[namespace]]\nname = \"session\"\nprefix = \"session:\"\n";
    let config = Config::from_toml_str(&format!("{ns}touch_on_read = \"30m\"")).unwrap();
    assert_eq!(
        config.namespaces[0].touch_interval,
        Some(std::time::Duration::from_secs(60))
    );
    let config = Config::from_toml_str(&format!("{ns}touch_on_read = \"40s\"")).unwrap();
    assert_eq!(
        config.namespaces[0].touch_interval,
        Some(std::time::Duration::from_secs(10))
    );
    let longer = error_text(&format!(
        "{ns}touch_on_read = \"1m\"\ntouch_interval = \"2m\""
    ));
    assert!(
        longer.contains("namespace.touch_interval: must be shorter than touch_on_read"),
        "{longer}"
    );
    let alone = error_text(&format!("{ns}touch_interval = \"2m\""));
    assert!(
        alone.contains("namespace.touch_interval: is only used with touch_on_read"),
        "{alone}"
    );
    let braces = error_text("[[namespace]]\nname = \"x\"\nprefix = \"{x}:\"");
    assert!(
        braces.contains("namespace.prefix: must not contain '{' or '}'"),
        "{braces}"
    );
}

#[test]
fn sentinel_mode_is_accepted_from_the_key_or_the_url() {
    let by_key = Config::from_toml_str("[upstream]\nmode = \"sentinel\"").unwrap();
    assert_eq!(by_key.upstream.mode, UpstreamMode::Sentinel);
    let by_url =
        Config::from_toml_str("[upstream]\nurl = \"redis-sentinel://s1/mymaster\"").unwrap();
    assert_eq!(by_url.upstream.mode, UpstreamMode::Sentinel);
}

#[test]
fn sentinel_url_sets_mode_sentinels_and_master() {
    let config = validate_only(
        "[upstream]\nurl = \"redis-sentinel://app:pw@s1,s2:26380/primary\"\nmaster_name = \"ignored\"",
    )
    .expect("valid");
    let up = &config.upstream;
    assert_eq!(up.mode, UpstreamMode::Sentinel);
    assert_eq!(
        up.sentinels
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["s1:26379", "s2:26380"]
    );
    assert_eq!(up.master_name, "primary");
    assert_eq!(up.username.as_deref(), Some("app"));
    assert_eq!(up.password.as_deref(), Some("pw"));
    assert_eq!(
        up.url,
        "redis-sentinel://app:<redacted>@s1,s2:26380/primary"
    );
}

#[test]
fn namespaces_validate_into_typed_values() {
    let config = validate_only(
        "[[namespace]]\nname = \"session\"\nprefix = \"session:\"\ndb = 3\ncache = true\n\
         default_ttl = \"24h\"\ndegrade = \"serve-stale\"\ntouch_on_read = \"30m\"\n\
         [[namespace]]\nname = \"lock\"\nprefix = \"lock:\"\nrequire_ttl = true\nflush = \"allow\"",
    )
    .expect("valid");
    let session = &config.namespaces[0];
    assert_eq!(session.db, Some(3));
    assert!(session.cache);
    assert_eq!(session.default_ttl, Some(Duration::from_secs(86_400)));
    assert_eq!(session.degrade, Degrade::ServeStale);
    assert_eq!(session.touch_on_read, Some(Duration::from_secs(1800)));
    assert_eq!(session.flush, FlushMode::Deny);
    let lock = &config.namespaces[1];
    assert!(lock.require_ttl && !lock.cache);
    assert_eq!(
        (lock.flush, lock.degrade, lock.db),
        (FlushMode::Allow, Degrade::Fail, None)
    );
}

#[test]
fn namespace_rules() {
    let ns = |body: &str| validate_only(body).map_err(|e| e.to_string());
    let two = |a: &str, b: &str| format!("[[namespace]]\n{a}\n[[namespace]]\n{b}");
    let cases = [
        (
            two("name=\"a\"\nprefix=\"a:\"", "name=\"a\"\nprefix=\"b:\""),
            "namespace.name: \"a\" is used twice",
        ),
        (
            two("name=\"a\"\nprefix=\"a:\"", "name=\"b\"\nprefix=\"a:x:\""),
            "namespace.prefix: \"a:x:\" overlaps",
        ),
        (
            two("name=\"a\"\nprefix=\"a:x\"", "name=\"b\"\nprefix=\"a:\""),
            "namespace.prefix: \"a:\" overlaps",
        ),
        (
            two(
                "name=\"a\"\nprefix=\"a:\"\ndb=1",
                "name=\"b\"\nprefix=\"b:\"\ndb=1",
            ),
            "namespace.db: db 1 is mapped twice",
        ),
        (
            "[[namespace]]\nname=\"a\"\nprefix=\"\"".to_owned(),
            "namespace.prefix: must not be empty",
        ),
        (
            "[[namespace]]\nprefix=\"a:\"".to_owned(),
            "namespace.name: is required",
        ),
        (
            "[[namespace]]\nname=\"a\"\nprefix=\"a:\"\ndefault_ttl=\"2h\"\nmax_ttl=\"1h\""
                .to_owned(),
            "namespace.default_ttl: must not exceed",
        ),
        (
            "[[namespace]]\nname=\"a\"\nprefix=\"a:\"\nmax_ttl=\"1y\"".to_owned(),
            "namespace.max_ttl: invalid duration \"1y\"",
        ),
    ];
    for (body, expected) in cases {
        let err = ns(&body).expect_err(&body);
        assert!(err.contains(expected), "{body:?} gave {err:?}");
    }
}

#[test]
fn deny_commands_absent_empty_and_normalised() {
    let absent = Config::from_toml_str("[policy]\nkeys = \"deny\"").expect("valid");
    assert_eq!(
        absent.policy.deny_commands,
        PolicyConfig::default().deny_commands
    );
    let empty = Config::from_toml_str("[policy]\ndeny_commands = []").expect("valid");
    assert!(empty.policy.deny_commands.is_empty());
    let custom = Config::from_toml_str(
        "[policy]\ndeny_commands = [\"flushall\", \"config   set\", \"FLUSHALL\"]",
    )
    .expect("valid");
    assert_eq!(custom.policy.deny_commands, ["FLUSHALL", "CONFIG SET"]);
}
