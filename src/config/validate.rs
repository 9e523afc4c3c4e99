//! Validation: raw `sidecar.toml` values into the typed `Config`.
//!
//! Owns every value rule (addresses, units, limits, URL-vs-key credential
//! precedence within one layer, namespace uniqueness, command names) and the
//! temporary refusal of features this build does not run yet. Each error
//! names the dotted key. It does not parse TOML or apply environment and
//! flag layers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawConfig, RawNamespace, RawPolicy, RawServer, RawUpstream, SizeText};
use super::units::{parse_duration, parse_size};
use super::url::{Scheme, UpstreamUrl, SENTINEL_PORT};
use super::{
    AdminConfig, CacheConfig, Config, ConfigError, Endpoint, LogConfig, NamespaceConfig,
    PolicyConfig, ScriptsMode, ServerConfig, TlsConfig, UpstreamConfig, UpstreamMode,
};

/// Builds typed values from raw ones; every failure carries the origin.
struct Check<'a> {
    origin: &'a str,
}

impl Check<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn addr(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        text.trim().parse().map_err(|_| {
            self.err(
                key,
                format!("invalid address {text:?}: expected IP:PORT, like \"127.0.0.1:6380\""),
            )
        })
    }

    fn duration(&self, key: &str, text: &str) -> Result<Duration, ConfigError> {
        parse_duration(text).map_err(|e| self.err(key, e.to_string()))
    }

    fn positive_duration(&self, key: &str, text: &str) -> Result<Duration, ConfigError> {
        let value = self.duration(key, text)?;
        if value.is_zero() {
            return Err(self.err(key, "must be greater than 0s"));
        }
        Ok(value)
    }

    /// `"0s"` means "none", as Redis's `timeout 0` does.
    fn optional_duration(&self, key: &str, text: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(Some(self.duration(key, text)?).filter(|d| !d.is_zero()))
    }

    fn size(&self, key: &str, text: &SizeText) -> Result<usize, ConfigError> {
        let bytes = parse_size(&text.0).map_err(|e| self.err(key, e.to_string()))?;
        let bytes = usize::try_from(bytes)
            .map_err(|_| self.err(key, format!("size {:?} is too large", text.0)))?;
        if bytes == 0 {
            return Err(self.err(key, "must be greater than 0"));
        }
        Ok(bytes)
    }

    fn at_least_one(&self, key: &str, value: usize) -> Result<usize, ConfigError> {
        if value == 0 {
            return Err(self.err(key, "must be at least 1"));
        }
        Ok(value)
    }
}

fn non_empty(text: &str) -> Option<String> {
    Some(text.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// Checks every value and builds the typed config.
pub(crate) fn validate(origin: &str, raw: &RawConfig) -> Result<Config, ConfigError> {
    let c = Check { origin };
    let admin = match non_empty(&raw.admin.listen) {
        None => None,
        Some(text) => Some(c.addr("admin.listen", &text)?),
    };
    let upstream = upstream(&c, &raw.upstream)?;
    let namespaces = namespaces(&c, &raw.namespaces)?;
    let migration = super::migration::validate(origin, &raw.migration, &upstream, &namespaces)?;
    Ok(Config {
        server: server(&c, &raw.server)?,
        admin: AdminConfig {
            listen: admin,
            command_metrics: raw.admin.command_metrics,
        },
        upstream,
        cache: CacheConfig {
            enabled: raw.cache.enabled,
            max_bytes: c.size("cache.max_bytes", &raw.cache.max_bytes)?,
            max_ttl: c.positive_duration("cache.max_ttl", &raw.cache.max_ttl)?,
            stale_if_error: c.duration("cache.stale_if_error", &raw.cache.stale_if_error)?,
            fill_on_write: raw.cache.fill_on_write,
        },
        namespaces,
        policy: policy(&c, &raw.policy)?,
        log: LogConfig {
            level: log_level(&c, &raw.log.level)?,
            format: raw.log.format,
        },
        migration,
    })
}

/// Refuses settings whose behaviour has not landed in this build, so that an
/// operator is never silently given less than the config asks for. Remove a
/// check here when its feature ships.
pub(crate) fn reject_unfinished_features(origin: &str, config: &Config) -> Result<(), ConfigError> {
    let c = Check { origin };
    match config.upstream.mode {
        UpstreamMode::Standalone | UpstreamMode::Sentinel => {}
        UpstreamMode::Cluster => {
            return Err(c.err(
                "upstream.mode",
                "cluster mode is not available in this build yet",
            ))
        }
    }
    Ok(())
}

fn server(c: &Check<'_>, raw: &RawServer) -> Result<ServerConfig, ConfigError> {
    if raw.threads > 1024 {
        return Err(c.err("server.threads", "must be at most 1024 (0 = one per CPU)"));
    }
    Ok(ServerConfig {
        listen: c.addr("server.listen", &raw.listen)?,
        unix_socket: non_empty(&raw.unix_socket).map(PathBuf::from),
        requirepass: Some(raw.requirepass.clone()).filter(|p| !p.is_empty()),
        max_clients: c.at_least_one("server.max_clients", raw.max_clients)?,
        idle_timeout: c.optional_duration("server.idle_timeout", &raw.idle_timeout)?,
        shutdown_grace: c.duration("server.shutdown_grace", &raw.shutdown_grace)?,
        max_bulk_len: c.size("server.max_bulk_len", &raw.max_bulk_len)?,
        max_array_len: c.at_least_one("server.max_array_len", raw.max_array_len)?,
        max_inline_len: c.size("server.max_inline_len", &raw.max_inline_len)?,
        max_pipeline: c.at_least_one("server.max_pipeline", raw.max_pipeline)?,
        max_reply_buffer: c.size("server.max_reply_buffer", &raw.max_reply_buffer)?,
        threads: raw.threads,
    })
}

fn upstream(c: &Check<'_>, raw: &RawUpstream) -> Result<UpstreamConfig, ConfigError> {
    let url = UpstreamUrl::parse(&raw.url).map_err(|e| c.err("upstream.url", e.to_string()))?;
    let endpoint = url
        .endpoints
        .first()
        .cloned()
        .ok_or_else(|| c.err("upstream.url", "missing host"))?;
    let (mode, sentinels, master_name) = if url.scheme == Scheme::RedisSentinel {
        if raw.mode == UpstreamMode::Cluster {
            return Err(c.err(
                "upstream.mode",
                "\"cluster\" does not go with a redis-sentinel:// url",
            ));
        }
        let master = url.master_name.clone().unwrap_or_default();
        (UpstreamMode::Sentinel, url.endpoints.clone(), master)
    } else {
        (
            raw.mode,
            sentinel_list(c, &raw.sentinels)?,
            raw.master_name.trim().to_owned(),
        )
    };
    if mode == UpstreamMode::Sentinel && sentinels.is_empty() {
        return Err(c.err(
            "upstream.sentinels",
            "sentinel mode needs at least one sentinel",
        ));
    }
    if mode == UpstreamMode::Sentinel && master_name.is_empty() {
        return Err(c.err("upstream.master_name", "sentinel mode needs a master name"));
    }
    Ok(UpstreamConfig {
        mode,
        url: url.redacted.clone(),
        endpoint,
        // An explicit key beats the URL's userinfo.
        username: non_empty(&raw.username).or(url.username.clone()),
        password: Some(raw.password.clone())
            .filter(|p| !p.is_empty())
            .or(url.password.clone()),
        tls: tls(c, raw, raw.tls || url.tls())?,
        sentinels,
        master_name,
        sentinel_username: non_empty(&raw.sentinel_username),
        sentinel_password: Some(raw.sentinel_password.clone()).filter(|p| !p.is_empty()),
        pool_size: c.at_least_one("upstream.pool_size", raw.pool_size)?,
        max_pinned: c.at_least_one("upstream.max_pinned", raw.max_pinned)?,
        connect_timeout: c.positive_duration("upstream.connect_timeout", &raw.connect_timeout)?,
        command_timeout: c.optional_duration("upstream.command_timeout", &raw.command_timeout)?,
        failover_wait: c.duration("upstream.failover_wait", &raw.failover_wait)?,
        db: 0,
    })
}

fn sentinel_list(c: &Check<'_>, raw: &[String]) -> Result<Vec<Endpoint>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, text)| {
            Endpoint::parse(text, SENTINEL_PORT)
                .map_err(|e| c.err("upstream.sentinels", format!("entry {}: {e}", i + 1)))
        })
        .collect()
}

fn tls(c: &Check<'_>, raw: &RawUpstream, on: bool) -> Result<Option<TlsConfig>, ConfigError> {
    let config = TlsConfig {
        ca_file: non_empty(&raw.tls_ca_file).map(PathBuf::from),
        cert_file: non_empty(&raw.tls_cert_file).map(PathBuf::from),
        key_file: non_empty(&raw.tls_key_file).map(PathBuf::from),
        server_name: non_empty(&raw.tls_server_name),
    };
    if !on {
        // A TLS file set while TLS is off is most likely a forgotten
        // `tls = true`; refuse it, unless REDIS_TLS_ENABLED switched TLS off
        // on purpose over a file that turns it on.
        if config != TlsConfig::default() && !raw.tls_switched_off {
            let key = [
                ("upstream.tls_ca_file", config.ca_file.is_some()),
                ("upstream.tls_cert_file", config.cert_file.is_some()),
                ("upstream.tls_key_file", config.key_file.is_some()),
                ("upstream.tls_server_name", config.server_name.is_some()),
            ]
            .into_iter()
            .find_map(|(key, set)| set.then_some(key))
            .unwrap_or("upstream.tls");
            return Err(c.err(
                key,
                "is set but TLS is off (use a rediss:// url or upstream.tls = true)",
            ));
        }
        return Ok(None);
    }
    match (&config.cert_file, &config.key_file) {
        (Some(_), None) => Err(c.err(
            "upstream.tls_key_file",
            "needed with upstream.tls_cert_file",
        )),
        (None, Some(_)) => Err(c.err(
            "upstream.tls_cert_file",
            "needed with upstream.tls_key_file",
        )),
        _ => Ok(Some(config)),
    }
}

fn namespaces(c: &Check<'_>, raw: &[RawNamespace]) -> Result<Vec<NamespaceConfig>, ConfigError> {
    let mut out: Vec<NamespaceConfig> = Vec::with_capacity(raw.len());
    for (i, ns) in raw.iter().enumerate() {
        let at = format!(" (in [[namespace]] #{})", i + 1);
        let fail = |key: &str, message: String| c.err(key, format!("{message}{at}"));
        let ns = namespace(ns).map_err(|(key, message)| fail(key, message))?;
        if out.iter().any(|o| o.name == ns.name) {
            return Err(fail(
                "namespace.name",
                format!("{:?} is used twice", ns.name),
            ));
        }
        let overlap = |o: &&NamespaceConfig| {
            o.prefix.starts_with(&ns.prefix) || ns.prefix.starts_with(&o.prefix)
        };
        if let Some(other) = out.iter().find(overlap) {
            let message = format!(
                "{:?} overlaps the prefix {:?} of namespace {:?}",
                ns.prefix, other.prefix, other.name
            );
            return Err(fail("namespace.prefix", message));
        }
        if let Some(db) = ns.db.filter(|db| out.iter().any(|o| o.db == Some(*db))) {
            return Err(fail("namespace.db", format!("db {db} is mapped twice")));
        }
        out.push(ns);
    }
    Ok(out)
}

/// One `[[namespace]]` on its own; errors are `(key, message)`.
fn namespace(ns: &RawNamespace) -> Result<NamespaceConfig, (&'static str, String)> {
    let name = ns.name.trim().to_owned();
    if name.is_empty() {
        return Err(("namespace.name", "is required".into()));
    }
    if ns.prefix.is_empty() {
        return Err(("namespace.prefix", "must not be empty".into()));
    }
    let ttl = |key: &'static str, text: &Option<String>| match text {
        None => Ok(None),
        // "0s" means none, as for the other optional durations.
        Some(text) => parse_duration(text)
            .map(|d| Some(d).filter(|d| !d.is_zero()))
            .map_err(|e| (key, e.to_string())),
    };
    let default_ttl = ttl("namespace.default_ttl", &ns.default_ttl)?;
    let max_ttl = ttl("namespace.max_ttl", &ns.max_ttl)?;
    if let (Some(default), Some(max)) = (default_ttl, max_ttl) {
        if default > max {
            return Err(("namespace.default_ttl", "must not exceed max_ttl".into()));
        }
    }
    if ns.prefix.contains(['{', '}']) {
        // A brace in the prefix would change the hash slot of every key with a hash tag.
        return Err((
            "namespace.prefix",
            "must not contain '{' or '}' (keys keep their own {hash tags} for Redis Cluster)"
                .into(),
        ));
    }
    let touch_on_read = ttl("namespace.touch_on_read", &ns.touch_on_read)?;
    let touch_interval = match (
        touch_on_read,
        ttl("namespace.touch_interval", &ns.touch_interval)?,
    ) {
        (None, Some(_)) => {
            return Err((
                "namespace.touch_interval",
                "is only used with touch_on_read".into(),
            ))
        }
        (None, None) => None,
        (Some(ttl), Some(every)) if every >= ttl => {
            return Err((
                "namespace.touch_interval",
                "must be shorter than touch_on_read".into(),
            ))
        }
        (Some(_), Some(every)) => Some(every),
        // Default: refresh at most every quarter of the TTL, and at least once a minute.
        (Some(ttl), None) => Some((ttl / 4).min(Duration::from_secs(60))),
    };
    Ok(NamespaceConfig {
        name,
        prefix: ns.prefix.clone(),
        db: ns.db,
        cache: ns.cache,
        flush: ns.flush,
        default_ttl,
        max_ttl,
        require_ttl: ns.require_ttl,
        degrade: ns.degrade,
        touch_on_read,
        touch_interval,
        must_not_evict: ns.must_not_evict,
    })
}

fn policy(c: &Check<'_>, raw: &RawPolicy) -> Result<PolicyConfig, ConfigError> {
    let mut deny_commands: Vec<String> = Vec::with_capacity(raw.deny_commands.len());
    for (i, entry) in raw.deny_commands.iter().enumerate() {
        let words: Vec<String> = entry
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect();
        if words.is_empty() || words.len() > 2 || !words.iter().all(|w| is_command_word(w)) {
            return Err(c.err(
                "policy.deny_commands",
                format!(
                    "entry {}: {entry:?} is not \"NAME\" or \"NAME SUBCOMMAND\"",
                    i + 1
                ),
            ));
        }
        let command = words.join(" ");
        if !deny_commands.contains(&command) {
            deny_commands.push(command);
        }
    }
    let mut script_allowlist = Vec::with_capacity(raw.script_allowlist.len());
    for (i, sha) in raw.script_allowlist.iter().enumerate() {
        let sha = sha.trim().to_ascii_lowercase();
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(c.err(
                "policy.script_allowlist",
                format!("entry {}: expected a 40-digit SHA1 hex digest", i + 1),
            ));
        }
        script_allowlist.push(sha);
    }
    if raw.scripts != ScriptsMode::Allowlist && !script_allowlist.is_empty() {
        return Err(c.err(
            "policy.script_allowlist",
            "is only used with policy.scripts = \"allowlist\"",
        ));
    }
    Ok(PolicyConfig {
        unmatched_keys: raw.unmatched_keys,
        deny_commands,
        keys: raw.keys,
        scripts: raw.scripts,
        script_allowlist,
        flush: raw.flush,
    })
}

fn is_command_word(word: &str) -> bool {
    word.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' || b == b'|')
}

/// Accepts a tracing filter whose level names are known, e.g. `"info"` or
/// `"warn,resp_sidecar::upstream=debug"`.
fn log_level(c: &Check<'_>, text: &str) -> Result<String, ConfigError> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let text = text.trim();
    let ok = !text.is_empty()
        && text.split(',').all(|directive| {
            let level = directive.rsplit('=').next().unwrap_or(directive).trim();
            LEVELS.contains(&level.to_ascii_lowercase().as_str())
        });
    if !ok {
        return Err(c.err(
            "log.level",
            format!("invalid filter {text:?}: levels are off, error, warn, info, debug, trace"),
        ));
    }
    Ok(text.to_owned())
}
