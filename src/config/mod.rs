//! The sidecar's configuration: the values every other module reads.
//!
//! Owns `Config`, the error type, and the entry points that turn TOML text
//! plus environment and command-line layers into a validated `Config`
//! (`from_toml_str`, `from_layers`) and back into redacted TOML for
//! `check-config`. Submodules: `typed` (the section types, re-exported
//! here), `raw` and `raw_keys` (the serde shape of `sidecar.toml` and which
//! key an error belongs to), `validate` (raw -> typed), `overlay`
//! (environment and flag layers), `render` (typed -> TOML), `units`
//! (durations and sizes) and `url` (upstream URLs). It does not read files
//! or the process environment (that is `cli`) and does not act on any
//! setting.

mod migration;
mod overlay;
mod raw;
mod raw_keys;
mod render;
mod typed;
pub mod units;
pub mod url;
mod validate;

use std::path::PathBuf;

pub use migration::{old_store, MigrationConfig, Phase};
pub use overlay::{
    Overlay, ENV_REDIS_PASSWORD, ENV_REDIS_TLS_ENABLED, ENV_REDIS_URL, ENV_SIDECAR_LISTEN,
};
pub use typed::{
    AdminConfig, CacheConfig, Degrade, Endpoint, FlushMode, FlushPolicy, KeysMode, LogConfig,
    LogFormat, NamespaceConfig, PolicyConfig, ScriptsMode, ServerConfig, TlsConfig, UnmatchedKeys,
    UpstreamConfig, UpstreamMode,
};

/// What secrets are replaced with in printed config, URLs and `Debug` output.
pub const REDACTED: &str = "<redacted>";

/// Commands refused when `policy.deny_commands` is absent from the file.
pub const DEFAULT_DENY_COMMANDS: &[&str] = &[
    "CONFIG SET",
    "CONFIG REWRITE",
    "CONFIG RESETSTAT",
    "DEBUG",
    "SHUTDOWN",
    "MONITOR",
    "REPLICAOF",
    "SLAVEOF",
    "FAILOVER",
    "MODULE",
    "ACL SETUSER",
    "ACL DELUSER",
    "ACL LOAD",
    "ACL SAVE",
    "SCRIPT FLUSH",
    "FUNCTION FLUSH",
    "FUNCTION DELETE",
    "FUNCTION RESTORE",
    "MIGRATE",
    "SAVE",
    "BGSAVE",
    "BGREWRITEAOF",
    "CLIENT KILL",
    "CLIENT PAUSE",
    "SYNC",
    "PSYNC",
];

/// A config that could not be loaded. Every message names where the value
/// came from (file, variable or flag) and the key it was read for.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: invalid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: unknown key `{key}`{context}")]
    UnknownKey {
        origin: String,
        key: String,
        /// Where in an array of tables, e.g. ` (in [[namespace]] #2)`.
        context: String,
    },
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
    #[error("{source_name}: {message}")]
    Override {
        /// The environment variable or command-line flag, e.g. `REDIS_TLS_ENABLED`.
        source_name: String,
        message: String,
    },
}

impl ConfigError {
    /// The dotted key, variable or flag the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Override { source_name, .. } => Some(source_name),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }
}

/// The whole validated configuration. `Config::default()` is the built-in
/// defaults, the same values an empty `sidecar.toml` gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    /// `[[namespace]]` tables in file order.
    pub namespaces: Vec<NamespaceConfig>,
    pub policy: PolicyConfig,
    pub log: LogConfig,
    pub migration: MigrationConfig,
}

impl Config {
    /// Parses and validates config text alone (no environment, no flags).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Config::from_layers(Some(("config", text)), &[])
    }

    /// Builds the effective config: the file (`(origin, text)`, or built-in
    /// defaults when `None`), then each overlay in order, lowest precedence
    /// first (environment, then flags). Validates the result.
    pub fn from_layers(
        file: Option<(&str, &str)>,
        overlays: &[Overlay],
    ) -> Result<Config, ConfigError> {
        let (origin, mut raw) = match file {
            Some((origin, text)) => (origin, raw::RawConfig::parse(origin, text)?),
            None => ("built-in defaults", raw::RawConfig::default()),
        };
        for layer in overlays {
            layer.apply(&mut raw);
        }
        let config = validate::validate(origin, &raw)?;
        validate::reject_unfinished_features(origin, &config)?;
        Ok(config)
    }

    /// The config as TOML in the shape of `sidecar.toml`, every non-empty
    /// secret replaced by `"<redacted>"`.
    pub fn to_redacted_toml(&self) -> String {
        raw::RawConfig::redacted_from(self).to_toml()
    }
}

#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod tests;
