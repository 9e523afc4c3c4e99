//! Tests for layering (flag > env > file > default), redaction and printing
//! the effective config.

use std::collections::HashMap;

use super::raw::RawConfig;
use super::validate::validate;
use super::*;

fn validate_only(toml: &str) -> Result<Config, ConfigError> {
    validate("test", &RawConfig::parse("test", toml)?)
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn layered(
    file: &str,
    env: &[(&str, &str)],
    flags: (Option<&str>, Option<&str>, Option<&str>),
) -> Result<Config, ConfigError> {
    let env_layer = Overlay::from_env(&env_of(env))?;
    let flag_layer = Overlay::from_flags(flags.0, flags.1, flags.2)?;
    Config::from_layers(Some(("test.toml", file)), &[env_layer, flag_layer])
}

const NO_FLAGS: (Option<&str>, Option<&str>, Option<&str>) = (None, None, None);

#[test]
fn precedence_for_listen() {
    let file = "[server]\nlisten = \"127.0.0.1:1001\"";
    let listen = |env: &[(&str, &str)], flag: Option<&str>| {
        layered(file, env, (flag, None, None))
            .expect("valid")
            .server
            .listen
            .to_string()
    };
    assert_eq!(
        Config::default().server.listen.to_string(),
        "127.0.0.1:6380"
    );
    assert_eq!(listen(&[], None), "127.0.0.1:1001");
    assert_eq!(
        listen(&[("SIDECAR_LISTEN", "127.0.0.1:1002")], None),
        "127.0.0.1:1002"
    );
    assert_eq!(
        listen(&[("SIDECAR_LISTEN", "127.0.0.1:1002")], Some("[::1]:1003")),
        "[::1]:1003"
    );
    let err = layered(file, &[("SIDECAR_LISTEN", "nope")], NO_FLAGS).expect_err("bad env");
    assert!(
        err.to_string()
            .starts_with("SIDECAR_LISTEN: invalid address"),
        "{err}"
    );
    let err = layered(file, &[], (Some("nope"), None, None)).expect_err("bad flag");
    assert!(
        err.to_string().starts_with("--listen: invalid address"),
        "{err}"
    );
}

#[test]
fn precedence_for_url() {
    let file = "[upstream]\nurl = \"redis://file:1\"";
    let url = |env: &[(&str, &str)], flag: Option<&str>| {
        layered(file, env, (None, flag, None))
            .expect("valid")
            .upstream
            .endpoint
            .to_string()
    };
    assert_eq!(url(&[], None), "file:1");
    assert_eq!(url(&[("REDIS_URL", "redis://env:2")], None), "env:2");
    assert_eq!(
        url(&[("REDIS_URL", "redis://env:2")], Some("redis://flag:3")),
        "flag:3"
    );
    assert_eq!(url(&[("REDIS_URL", "")], None), "file:1");
    let err = layered(file, &[("REDIS_URL", "redis://h/4")], NO_FLAGS).expect_err("db");
    assert!(
        err.to_string().starts_with("REDIS_URL: use [[namespace]]"),
        "{err}"
    );
}

#[test]
fn precedence_for_password() {
    let password = |file: &str, env: &[(&str, &str)], flag: Option<&str>| {
        layered(file, env, (None, flag, None))
            .expect("valid")
            .upstream
            .password
    };
    let url_only = "[upstream]\nurl = \"redis://:urlpw@h\"";
    let both = "[upstream]\nurl = \"redis://:urlpw@h\"\npassword = \"filepw\"";
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(password("", &[], None), None);
    assert_eq!(password(url_only, &[], None), some("urlpw"));
    assert_eq!(password(both, &[], None), some("filepw"));
    assert_eq!(
        password(both, &[("REDIS_PASSWORD", "envpw")], None),
        some("envpw")
    );
    assert_eq!(
        password(both, &[("REDIS_URL", "redis://:envurlpw@h")], None),
        some("envurlpw")
    );
    assert_eq!(
        password(
            both,
            &[
                ("REDIS_URL", "redis://:envurlpw@h"),
                ("REDIS_PASSWORD", "envpw")
            ],
            None
        ),
        some("envpw")
    );
    assert_eq!(
        password(
            both,
            &[("REDIS_PASSWORD", "envpw")],
            Some("redis://:flagpw@h")
        ),
        some("flagpw")
    );
    assert_eq!(
        password(both, &[("REDIS_PASSWORD", "envpw")], Some("redis://h")),
        some("envpw")
    );
    assert_eq!(password(url_only, &[], Some("redis://h")), None);
    assert_eq!(password(both, &[], Some("redis://h")), some("filepw"));
}

#[test]
fn precedence_for_tls() {
    let tls = |file: &str, env: &[(&str, &str)], flag: Option<&str>| {
        layered(file, env, (None, flag, None))
            .expect("valid")
            .upstream
            .tls
            .is_some()
    };
    assert!(!tls("", &[], None));
    assert!(tls("[upstream]\ntls = true", &[], None));
    assert!(tls("[upstream]\nurl = \"rediss://h\"", &[], None));
    assert!(tls("", &[("REDIS_TLS_ENABLED", "yes")], None));
    assert!(!tls(
        "[upstream]\ntls = true",
        &[("REDIS_TLS_ENABLED", "0")],
        None
    ));
    assert!(!tls(
        "[upstream]\nurl = \"rediss://h\"",
        &[("REDIS_TLS_ENABLED", "false")],
        None
    ));
    assert!(tls("", &[("REDIS_URL", "rediss://h")], None));
    assert!(tls("", &[("REDIS_TLS_ENABLED", "no")], Some("rediss://h")));
    let with_ca = "[upstream]\ntls = true\ntls_ca_file = \"/etc/ca.pem\"";
    assert!(!tls(with_ca, &[("REDIS_TLS_ENABLED", "false")], None));
    let forgot = layered("[upstream]\ntls_ca_file = \"/etc/ca.pem\"", &[], NO_FLAGS);
    let err = forgot.expect_err("CA file without TLS");
    assert_eq!(err.key(), Some("upstream.tls_ca_file"));
    let server_name = layered(
        "[upstream]\ntls = true\ntls_server_name = \"cache.internal\"",
        &[],
        NO_FLAGS,
    )
    .expect("valid")
    .upstream
    .tls;
    assert_eq!(
        server_name.and_then(|t| t.server_name).as_deref(),
        Some("cache.internal")
    );
}

#[test]
fn redis_tls_enabled_bad_value_names_the_variable() {
    for bad in ["maybe", "2", "on"] {
        let err = layered("", &[("REDIS_TLS_ENABLED", bad)], NO_FLAGS).expect_err(bad);
        assert_eq!(err.key(), Some("REDIS_TLS_ENABLED"));
        assert!(
            err.to_string()
                .starts_with("REDIS_TLS_ENABLED: invalid value"),
            "{err}"
        );
    }
    for good in ["TRUE", "False", "1", "0", "Yes", "no"] {
        assert!(
            layered("", &[("REDIS_TLS_ENABLED", good)], NO_FLAGS).is_ok(),
            "{good}"
        );
    }
}

#[test]
fn admin_flag_and_empty_admin_disable_it() {
    let off = Config::from_toml_str("[admin]\nlisten = \"\"").expect("valid");
    assert_eq!(off.admin.listen, None);
    let flag = layered("", &[], (None, None, Some("127.0.0.1:9999"))).expect("valid");
    assert_eq!(flag.admin.listen.map(|a| a.port()), Some(9999));
    let flag_off = layered("", &[], (None, None, Some(""))).expect("valid");
    assert_eq!(flag_off.admin.listen, None);
}

const SECRETS: [&str; 4] = ["req-s3cret", "url-s3cret", "file-s3cret", "sent-s3cret"];

fn config_with_secrets() -> Config {
    Config::from_toml_str(&format!(
        "[server]\nrequirepass = \"{}\"\n[upstream]\nurl = \"redis://app:{}@h:7000\"\n\
         sentinel_password = \"{}\"\n",
        SECRETS[0], SECRETS[1], SECRETS[3]
    ))
    .expect("valid")
}

#[test]
fn secrets_never_appear_in_printed_config_or_debug() {
    let mut config = config_with_secrets();
    assert_eq!(config.upstream.password.as_deref(), Some(SECRETS[1]));
    let text = config.to_redacted_toml();
    let debug = format!("{config:?}");
    config.upstream.password = Some(SECRETS[2].to_owned());
    let debug_again = format!("{config:?} {:?}", config.upstream);
    for secret in SECRETS {
        for shown in [&text, &debug, &debug_again] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
    }
    assert!(text.contains("requirepass = \"<redacted>\""), "{text}");
    assert!(
        text.contains("url = \"redis://app:<redacted>@h:7000\""),
        "{text}"
    );
    assert!(
        text.contains("sentinel_password = \"<redacted>\""),
        "{text}"
    );
    let overlay = Overlay::from_env(&env_of(&[
        ("REDIS_PASSWORD", SECRETS[2]),
        ("REDIS_URL", "redis://:url-s3cret@h"),
    ]))
    .expect("valid");
    let shown = format!("{overlay:?}");
    assert!(
        !shown.contains(SECRETS[1]) && !shown.contains(SECRETS[2]),
        "{shown}"
    );
}

#[test]
fn printed_config_reads_back_the_same() {
    let config = Config::from_toml_str(
        "[server]\nidle_timeout = \"90s\"\nmax_reply_buffer = \"100KB\"\n\
         [upstream]\nurl = \"rediss://h:7000\"\ntls_ca_file = \"/etc/ca.pem\"\n\
         [policy]\ndeny_commands = []\nscripts = \"allowlist\"\n\
         script_allowlist = [\"E0E1F9FABFC9D4800C877A703B823AC0578FF8DB\"]\n\
         [log]\nformat = \"json\"",
    )
    .expect("valid");
    let again = Config::from_toml_str(&config.to_redacted_toml()).expect("reads back");
    assert_eq!(again, config);
    assert_eq!(
        Config::from_toml_str(&Config::default().to_redacted_toml()).expect("defaults"),
        Config::default()
    );
    let with_namespaces =
        validate_only("[[namespace]]\nname = \"s\"\nprefix = \"s:\"\ndb = 2\ndefault_ttl = \"1h\"")
            .expect("valid");
    let text = with_namespaces.to_redacted_toml();
    assert!(text.contains("[[namespace]]"), "{text}");
    assert_eq!(validate_only(&text).expect("reads back"), with_namespaces);
}
