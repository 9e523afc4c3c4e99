//! The flags of `resp-sidecar migrate` and `resp-sidecar verify`, checked into a job
//! both commands share: two stores and which keys (a namespace's prefix, or an old
//! db whose keys take a prefix in the target).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::keymap::KeyMap;
use crate::config::units::parse_duration;
use crate::config::{old_store, Config, UpstreamConfig};
use crate::upstream::Upstream;

/// Which keys, shared by both commands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct ScopeArgs {
    /// Only the keys of this [[namespace]] (its prefix, from --config)
    #[arg(long, value_name = "NAME")]
    pub namespace: Option<String>,
    /// The source's keys live unprefixed in this db (with --prefix)
    #[arg(long, value_name = "N")]
    pub db: Option<u32>,
    /// The prefix --db keys take in the target
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
}

/// The two stores, shared by both commands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct StoreArgs {
    /// The store keys come from: the store of record (redis://, rediss://, redis-sentinel://)
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// The store that receives them (migrate) or should hold the same (verify)
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// At most this many keys per second [default: as fast as it goes]
    #[arg(long, value_name = "KEYS_PER_S")]
    pub rate: Option<u64>,
    /// Count what would be copied; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Continue from the checkpoint file
    #[arg(long)]
    pub resume: bool,
    /// Checkpoint file
    #[arg(
        long,
        value_name = "FILE",
        default_value = "resp-sidecar-migrate.checkpoint"
    )]
    pub checkpoint: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Compare only this many keys of the source (and skip the search for extra keys)
    #[arg(long, value_name = "N")]
    pub sample: Option<u64>,
    /// TTLs that differ by at most this much are the same
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub ttl_tolerance: String,
    /// Differences listed one by one (the rest are counted)
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_report: usize,
}

/// A usage error: the message names the flag (exit 64).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Two stores and the keys a job covers.
#[derive(Debug, Clone)]
pub struct Job {
    pub from: UpstreamConfig,
    pub to: UpstreamConfig,
    /// SCAN pattern on the source.
    pub pattern: Bytes,
    /// Source names -> target names.
    pub map: KeyMap,
    /// Describes the job in reports and the checkpoint.
    pub label: String,
}

impl Job {
    /// `config` is the sidecar config (for `--namespace`).
    pub fn new(
        stores: &StoreArgs,
        scope: &ScopeArgs,
        config: Option<&Config>,
    ) -> Result<Job, Usage> {
        let (from, to) = (stores.from.as_deref(), stores.to.as_deref());
        let url = |flag: &str, v: Option<&str>| -> Result<UpstreamConfig, Usage> {
            let v = v.ok_or_else(|| Usage(format!("--{flag} URL is required")))?;
            let base = UpstreamConfig {
                pool_size: 4,
                command_timeout: Some(Duration::from_secs(60)),
                connect_timeout: Duration::from_secs(3),
                failover_wait: Duration::from_secs(5),
                ..UpstreamConfig::default()
            };
            old_store(v, "", &base).map_err(|e| Usage(format!("--{flag}: {e}")))
        };
        let mut from_cfg = url("from", from)?;
        let to_cfg = url("to", to)?;
        let (pattern, map, what) = match (
            scope.namespace.as_deref(),
            scope.db,
            scope.prefix.as_deref(),
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(Usage(
                    "--namespace and --db/--prefix exclude each other".into(),
                ))
            }
            (Some(name), None, None) => {
                let ns = config
                    .and_then(|c| c.namespaces.iter().find(|n| n.name == name))
                    .ok_or_else(|| {
                        Usage(format!(
                            "--namespace {name}: no such [[namespace]] in the config (give --config FILE)"
                        ))
                    })?;
                let prefix = Bytes::from(ns.prefix.clone());
                (
                    prefix_glob(&prefix),
                    KeyMap::same(),
                    format!("namespace {name} ({})", ns.prefix),
                )
            }
            (None, Some(db), Some(prefix)) if !prefix.is_empty() => {
                from_cfg.db = db;
                (
                    Bytes::from_static(b"*"),
                    KeyMap::prefixed(Bytes::from(prefix.to_owned())),
                    format!("db {db} -> prefix {prefix}"),
                )
            }
            (None, Some(_), _) => {
                return Err(Usage(
                    "--db needs --prefix P (the prefix its keys take)".into(),
                ))
            }
            (None, None, Some(_)) => return Err(Usage("--prefix goes with --db N".into())),
            (None, None, None) => (Bytes::from_static(b"*"), KeyMap::same(), "all keys".into()),
        };
        let label = format!("{} -> {} ({what})", from_cfg.url, to_cfg.url);
        Ok(Job {
            from: from_cfg,
            to: to_cfg,
            pattern,
            map,
            label,
        })
    }

    /// Connect to both stores (the connections stop with `stop`).
    pub fn connect(&self, stop: &CancellationToken) -> Result<(Upstream, Upstream), String> {
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let from = Upstream::start(&self.from, metrics.clone(), stop.clone())
            .map_err(|e| e.to_string())?;
        let to = Upstream::start(&self.to, metrics, stop.clone()).map_err(|e| e.to_string())?;
        Ok((from, to))
    }
}

/// The SCAN pattern of every key under `prefix`.
pub fn prefix_glob(prefix: &[u8]) -> Bytes {
    let mut pattern = crate::namespace::glob_escape(prefix).to_vec();
    pattern.push(b'*');
    Bytes::from(pattern)
}

/// `--ttl-tolerance` as a duration.
pub fn tolerance(text: &str) -> Result<Duration, Usage> {
    parse_duration(text).map_err(|e| Usage(format!("--ttl-tolerance: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(ns: Option<&str>, db: Option<u32>, prefix: Option<&str>) -> ScopeArgs {
        ScopeArgs {
            namespace: ns.map(str::to_owned),
            db,
            prefix: prefix.map(str::to_owned),
        }
    }

    #[test]
    fn flags_are_checked() {
        let a = Some("redis://127.0.0.1:1");
        let stores = |from: Option<&str>| StoreArgs {
            from: from.map(str::to_owned),
            to: a.map(str::to_owned),
        };
        let err =
            |s: ScopeArgs, from: Option<&str>| Job::new(&stores(from), &s, None).err().map(|u| u.0);
        assert!(err(scope(None, None, None), None).is_some_and(|e| e.contains("--from")));
        assert!(err(scope(Some("x"), Some(1), None), a).is_some_and(|e| e.contains("exclude")));
        assert!(err(scope(None, Some(1), None), a).is_some_and(|e| e.contains("--prefix")));
        assert!(err(scope(None, None, Some("p:")), a).is_some_and(|e| e.contains("--db")));
        assert!(err(scope(Some("x"), None, None), a).is_some_and(|e| e.contains("no such")));
        assert!(
            err(scope(None, None, None), Some("http://x")).is_some_and(|e| e.contains("--from"))
        );
        let job = Job::new(&stores(a), &scope(None, Some(3), Some("s:")), None).expect("valid");
        assert_eq!(job.from.db, 3);
        assert_eq!(job.to.db, 0);
    }
}
