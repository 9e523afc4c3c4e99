//! The serde shape of `sidecar.toml`: every key as written, with defaults.
//!
//! Owns the raw structs (`deny_unknown_fields`, strings for durations, sizes,
//! addresses), turning serde failures into errors that name the full dotted
//! key, and rendering a typed `Config` back into this shape with secrets
//! redacted. It does not check values beyond their TOML types; that is
//! `validate`.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{
    ConfigError, Degrade, FlushMode, FlushPolicy, KeysMode, LogFormat, ScriptsMode, UnmatchedKeys,
    UpstreamMode,
};

/// A byte size as written: `"64MiB"`, `"4096"` or a bare TOML integer.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub(crate) struct SizeText(pub(crate) String);

impl SizeText {
    fn of(text: &str) -> SizeText {
        SizeText(text.to_owned())
    }
}

impl Serialize for SizeText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SizeText, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeText, E> {
                Ok(SizeText::of(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeText, E> {
                Ok(SizeText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeText, E> {
                u64::try_from(v)
                    .map(|v| SizeText(v.to_string()))
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// The whole file. Secrets live here as plain strings, so this type has no
/// `Debug` outside tests.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub server: RawServer,
    pub admin: RawAdmin,
    pub upstream: RawUpstream,
    pub cache: RawCache,
    #[serde(rename = "namespace", skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<RawNamespace>,
    pub policy: RawPolicy,
    pub log: RawLog,
    pub migration: super::migration::RawMigration,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: String,
    pub unix_socket: String,
    pub requirepass: String,
    pub max_clients: usize,
    pub idle_timeout: String,
    pub shutdown_grace: String,
    pub max_bulk_len: SizeText,
    pub max_array_len: usize,
    pub max_inline_len: SizeText,
    pub max_pipeline: usize,
    pub max_reply_buffer: SizeText,
    pub threads: usize,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: String,
    pub command_metrics: bool,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub mode: UpstreamMode,
    pub url: String,
    pub username: String,
    pub password: String,
    pub tls: bool,
    pub tls_ca_file: String,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    pub tls_server_name: String,
    /// Set by an overlay that turned TLS off (REDIS_TLS_ENABLED=false); not
    /// a file key.
    #[serde(skip)]
    pub tls_switched_off: bool,
    pub sentinels: Vec<String>,
    pub master_name: String,
    pub sentinel_username: String,
    pub sentinel_password: String,
    pub pool_size: usize,
    pub max_pinned: usize,
    pub connect_timeout: String,
    pub command_timeout: String,
    pub failover_wait: String,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawCache {
    pub enabled: bool,
    pub max_bytes: SizeText,
    pub max_ttl: String,
    pub stale_if_error: String,
    pub fill_on_write: bool,
}

/// `name` and `prefix` have no useful default; they are checked in
/// `validate`, so an empty string here means "missing".
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawNamespace {
    pub name: String,
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<u32>,
    pub cache: bool,
    pub flush: FlushMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ttl: Option<String>,
    pub require_ttl: bool,
    pub degrade: Degrade,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub touch_on_read: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub touch_interval: Option<String>,
    pub must_not_evict: bool,
}

impl Default for RawNamespace {
    fn default() -> RawNamespace {
        RawNamespace {
            name: String::new(),
            prefix: String::new(),
            db: None,
            cache: false,
            flush: FlushMode::Deny,
            default_ttl: None,
            max_ttl: None,
            require_ttl: false,
            degrade: Degrade::Fail,
            touch_on_read: None,
            touch_interval: None,
            must_not_evict: false,
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub unmatched_keys: UnmatchedKeys,
    /// Absent = the built-in list; `[]` = deny nothing.
    pub deny_commands: Vec<String>,
    pub keys: KeysMode,
    pub scripts: ScriptsMode,
    pub script_allowlist: Vec<String>,
    pub flush: FlushPolicy,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: String,
    pub format: LogFormat,
}

impl RawConfig {
    /// Parses TOML text. Errors name `origin` and the full dotted key.
    pub fn parse(origin: &str, text: &str) -> Result<RawConfig, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.to_owned(),
                    message: syntax_message(text, &e),
                })?;
        super::raw_keys::check_known_keys(origin, &table)?;
        match toml::Value::Table(table.clone()).try_into::<RawConfig>() {
            Ok(raw) => Ok(raw),
            Err(err) => Err(super::raw_keys::locate_error(origin, &table, &err)),
        }
    }

    /// Serializes to TOML. The raw structs only hold strings, numbers, bools
    /// and tables, so serialization cannot fail; should it ever, the error is
    /// returned as a TOML comment rather than a panic.
    pub fn to_toml(&self) -> String {
        match toml::to_string_pretty(self) {
            Ok(text) => text,
            Err(err) => format!("# cannot render config: {err}\n"),
        }
    }
}

/// `line L, column C: what` without quoting the line itself, which might
/// hold a secret.
fn syntax_message(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim();
    let Some(span) = err.span() else {
        return message.to_owned();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
}

/// Deserializes `T` from a table holding only `key`, to find which key of a
/// section a serde error belongs to.
pub(crate) fn try_single_key<T: DeserializeOwned>(
    key: &str,
    value: &toml::Value,
) -> Result<(), toml::de::Error> {
    let mut single = toml::Table::new();
    single.insert(key.to_owned(), value.clone());
    toml::Value::Table(single).try_into::<T>().map(|_| ())
}

/// The file layer's defaults are the built-in typed defaults rendered back to file
/// form, so every default value is written once, in `typed.rs`.
fn built_in() -> RawConfig {
    RawConfig::redacted_from(&super::Config::default())
}

impl Default for RawServer {
    fn default() -> RawServer {
        built_in().server
    }
}

impl Default for RawAdmin {
    fn default() -> RawAdmin {
        built_in().admin
    }
}

impl Default for RawUpstream {
    fn default() -> RawUpstream {
        built_in().upstream
    }
}

impl Default for RawCache {
    fn default() -> RawCache {
        built_in().cache
    }
}

impl Default for RawPolicy {
    fn default() -> RawPolicy {
        built_in().policy
    }
}

impl Default for RawLog {
    fn default() -> RawLog {
        built_in().log
    }
}
