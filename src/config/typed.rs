//! The typed sections of `Config`, with their built-in defaults.
//!
//! Owns the value types other modules read (`ServerConfig`,
//! `UpstreamConfig`, `NamespaceConfig`, ...) and their `Debug` impls, which
//! print `<redacted>` instead of secrets. It does not parse or validate;
//! every value here has already passed `validate`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::url::{REDIS_PORT, SENTINEL_PORT};
use super::{DEFAULT_DENY_COMMANDS, REDACTED};

/// `[server]`: the client-facing listener and its limits.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub unix_socket: Option<PathBuf>,
    /// Password clients must AUTH with; secret.
    pub requirepass: Option<String>,
    pub max_clients: usize,
    /// `None` = idle clients are never disconnected.
    pub idle_timeout: Option<Duration>,
    pub shutdown_grace: Duration,
    pub max_bulk_len: usize,
    pub max_array_len: usize,
    pub max_inline_len: usize,
    /// Commands one client may have in flight.
    pub max_pipeline: usize,
    /// Reply bytes queued for a client that does not read; beyond it the
    /// client is disconnected.
    pub max_reply_buffer: usize,
    /// Worker threads: 1 = one thread (the current-thread scheduler), 0 = one per CPU.
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 6380)),
            unix_socket: None,
            requirepass: None,
            max_clients: 10_000,
            idle_timeout: None,
            shutdown_grace: Duration::from_secs(10),
            max_bulk_len: 512 << 20,
            max_array_len: 1_048_576,
            max_inline_len: 64 << 10,
            max_pipeline: 1024,
            max_reply_buffer: 256 << 20,
            threads: 1,
        }
    }
}

fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| REDACTED)
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("unix_socket", &self.unix_socket)
            .field("requirepass", &redacted(&self.requirepass))
            .field("max_clients", &self.max_clients)
            .field("idle_timeout", &self.idle_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_bulk_len", &self.max_bulk_len)
            .field("max_array_len", &self.max_array_len)
            .field("max_inline_len", &self.max_inline_len)
            .field("max_pipeline", &self.max_pipeline)
            .field("max_reply_buffer", &self.max_reply_buffer)
            .field("threads", &self.threads)
            .finish()
    }
}

/// `[admin]`: the HTTP admin listener (`/metrics`, `/livez`, `/readyz`) and what the
/// data path records for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `None` = disabled.
    pub listen: Option<SocketAddr>,
    /// Count and time every command (`sidecar_commands_total`, the latency histograms).
    pub command_metrics: bool,
}

impl Default for AdminConfig {
    fn default() -> AdminConfig {
        AdminConfig {
            listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9121))),
            command_metrics: true,
        }
    }
}

/// How the primary is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamMode {
    Standalone,
    Sentinel,
    Cluster,
}

/// A `host:port` pair; the host is a name or an IP address without brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// TLS towards Redis. Files are PEM; `None` = system roots / no client cert /
/// the endpoint's host name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// `[upstream]`: where commands are forwarded and how.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub mode: UpstreamMode,
    /// The effective URL as written, password redacted; for display only.
    pub url: String,
    /// The URL's (first) host; in sentinel mode the first sentinel.
    pub endpoint: Endpoint,
    pub username: Option<String>,
    /// Secret.
    pub password: Option<String>,
    /// `Some` when TLS is on.
    pub tls: Option<TlsConfig>,
    pub sentinels: Vec<Endpoint>,
    pub master_name: String,
    pub sentinel_username: Option<String>,
    /// Secret.
    pub sentinel_password: Option<String>,
    /// Shared pipelined connections per protocol version (>= 1). One carries the
    /// largest batches, which Redis reads and answers with the fewest system calls.
    pub pool_size: usize,
    /// Dedicated connections for MULTI/WATCH/blocking/pub-sub clients.
    pub max_pinned: usize,
    pub connect_timeout: Duration,
    /// `None` = no limit. A shared-connection reply slower than this fails
    /// that connection's in-flight commands with `-TRYAGAIN`.
    pub command_timeout: Option<Duration>,
    pub failover_wait: Duration,
    /// The db every connection selects after the handshake. Always 0 for the upstream
    /// (its URL takes no db index); the migration's old store may use another.
    pub db: u32,
}

impl Default for UpstreamConfig {
    fn default() -> UpstreamConfig {
        UpstreamConfig {
            mode: UpstreamMode::Standalone,
            url: "redis://127.0.0.1:6379".to_owned(),
            endpoint: Endpoint {
                host: "127.0.0.1".to_owned(),
                port: REDIS_PORT,
            },
            username: None,
            password: None,
            tls: None,
            sentinels: vec![Endpoint {
                host: "127.0.0.1".to_owned(),
                port: SENTINEL_PORT,
            }],
            master_name: "mymaster".to_owned(),
            sentinel_username: None,
            sentinel_password: None,
            pool_size: 1,
            max_pinned: 1024,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Some(Duration::from_secs(10)),
            failover_wait: Duration::from_secs(2),
            db: 0,
        }
    }
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("mode", &self.mode)
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("tls", &self.tls)
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &redacted(&self.sentinel_password))
            .field("pool_size", &self.pool_size)
            .field("max_pinned", &self.max_pinned)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("failover_wait", &self.failover_wait)
            .field("db", &self.db)
            .finish()
    }
}

/// `[cache]`: the local read cache for namespaces with `cache = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub enabled: bool,
    pub max_bytes: usize,
    pub max_ttl: Duration,
    /// How long cached entries may be served while Redis is unreachable.
    pub stale_if_error: Duration,
    /// A plain `SET` through this sidecar fills its cache with the value it wrote
    /// (sent on the invalidation connection, which Redis does not notify of its own
    /// writes), so the writer's next read is a hit.
    pub fill_on_write: bool,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            enabled: true,
            max_bytes: 64 << 20,
            max_ttl: Duration::from_secs(3600),
            stale_if_error: Duration::from_secs(30),
            fill_on_write: true,
        }
    }
}

/// What FLUSHDB/FLUSHALL do to a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushMode {
    Deny,
    Allow,
}

/// What a namespace's reads do while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Degrade {
    ServeStale,
    Fail,
}

/// One `[[namespace]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceConfig {
    pub name: String,
    pub prefix: String,
    /// Legacy `SELECT db` maps onto this namespace's prefix.
    pub db: Option<u32>,
    pub cache: bool,
    pub flush: FlushMode,
    /// TTL applied to writes that set none.
    pub default_ttl: Option<Duration>,
    /// Writes asking for a longer TTL are capped to this.
    pub max_ttl: Option<Duration>,
    /// Refuse writes that set no TTL.
    pub require_ttl: bool,
    pub degrade: Degrade,
    /// Sliding expiry: a read resets the key's TTL to this...
    pub touch_on_read: Option<Duration>,
    /// ...at most once per key per this interval (set whenever `touch_on_read` is).
    pub touch_interval: Option<Duration>,
    /// Eviction would lose data apps rely on (sessions, locks): warn when the upstream's
    /// `maxmemory-policy` can evict these keys.
    pub must_not_evict: bool,
}

/// Keys outside every namespace (only meaningful with namespaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedKeys {
    Reject,
    Allow,
}

/// How `KEYS` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeysMode {
    Scan,
    Forward,
    Deny,
}

/// How FLUSHDB/FLUSHALL are answered once namespaces are enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushPolicy {
    /// A prefix-scoped SCAN + UNLINK of the namespaces with `flush = "allow"`.
    Scoped,
    /// Refused with -NOPERM (use `SIDECAR FLUSH <namespace>`).
    Deny,
}

/// Whether EVAL/EVALSHA/FCALL and friends are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptsMode {
    Allow,
    Deny,
    Allowlist,
}

/// `[policy]`: which commands are refused or rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub unmatched_keys: UnmatchedKeys,
    /// Uppercased `"NAME"` or `"NAME SUBCOMMAND"`, single-spaced.
    pub deny_commands: Vec<String>,
    pub keys: KeysMode,
    pub scripts: ScriptsMode,
    /// Lowercase SHA1 hex digests allowed when `scripts = "allowlist"`.
    pub script_allowlist: Vec<String>,
    pub flush: FlushPolicy,
}

impl Default for PolicyConfig {
    fn default() -> PolicyConfig {
        PolicyConfig {
            unmatched_keys: UnmatchedKeys::Reject,
            deny_commands: DEFAULT_DENY_COMMANDS
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            keys: KeysMode::Scan,
            scripts: ScriptsMode::Allow,
            script_allowlist: Vec::new(),
            flush: FlushPolicy::Scoped,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter: `"info"` or `"info,resp_sidecar::upstream=debug"`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}
