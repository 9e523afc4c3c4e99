//! `SIDECAR <subcommand>`: the sidecar's own commands, answered locally and readable
//! in redis-cli. `FLUSH` empties one namespace with a prefix-scoped SCAN + UNLINK;
//! `NAMESPACES` shows the namespaces, their rules and what the sidecar noticed.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::client::Client;
use super::scoped;
use crate::config::units::format_duration;
use crate::config::{FlushMode, NamespaceConfig, UnmatchedKeys};
use crate::metrics::FlushKind;
use crate::resp::Reply;

const HELP: &[&str] = &[
    "SIDECAR <subcommand> [<arg> ...]. Subcommands are:",
    "STATS",
    "    The sidecar's counters and gauges (the /metrics figures, without histograms).",
    "CACHE",
    "    The local cache: state of the invalidation stream, entries, bytes, hits, misses,",
    "    fills, invalidations, evictions, in total and per cached namespace.",
    "UPSTREAM",
    "    Upstream mode, the verified primary, failovers, connections.",
    "CONFIG",
    "    The effective configuration, secrets redacted (as `resp-sidecar check-config`).",
    "NAMESPACES",
    "    Each namespace with its prefix, db mapping and rules; keys let through outside",
    "    every namespace; warnings about the upstream (eviction policy).",
    "FLUSH <namespace> [DRYRUN]",
    "    Delete every key of one namespace (SCAN MATCH prefix* + UNLINK in batches; Redis",
    "    is never blocked). Answers the number of keys removed, or with DRYRUN that would be.",
    "RELOAD",
    "    Read the config file again and apply namespaces, policy, limits, cache size and log level",
    "    (as SIGHUP does); settings that need a restart are named, a bad file is refused.",
    "MIGRATION STATUS",
    "    The migration phase, the copy queue, keys copied, copy failures, parity mismatches.",
    "MIGRATION PHASE <off|shadow|flipped|done>",
    "    Move the migration one step forward or back, without dropping connections.",
    "HELP",
    "    Print this help.",
];

impl<R, W> Client<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub(super) async fn sidecar(&mut self, args: &[Bytes]) -> Reply {
        let Some(sub) = args.get(1) else {
            return Reply::error("ERR wrong number of arguments for 'sidecar' command");
        };
        let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
        match sub.as_str() {
            "HELP" => Reply::Array(HELP.iter().map(|l| Reply::simple(l)).collect()),
            "NAMESPACES" => self.namespaces_report(),
            "CACHE" => lines(
                super::info::cache_lines(self.ctx())
                    .into_iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect(),
            ),
            "STATS" => lines(stats(&crate::admin::scrape(self.ctx()))),
            "UPSTREAM" => lines(
                super::info::section(self.ctx())
                    .lines()
                    .filter(|l| !l.starts_with('#') && !l.starts_with("namespace"))
                    .map(str::to_owned)
                    .collect(),
            ),
            "CONFIG" => lines(
                self.ctx()
                    .config
                    .to_redacted_toml()
                    .lines()
                    .map(str::to_owned)
                    .collect(),
            ),
            "FLUSH" => self.flush_namespace(&args[2..]).await,
            "MIGRATION" => self.migration_command(&args[2..]).await,
            "RELOAD" if args.len() == 2 => match self.ctx().reload() {
                Ok(report) => Reply::Bulk(Bytes::from(report)),
                Err(e) => Reply::error(format!(
                    "ERR reload refused, the running config is kept: {e}"
                )),
            },
            _ => Reply::error(format!(
                "ERR unknown subcommand '{}'. Try SIDECAR HELP.",
                String::from_utf8_lossy(&args[1])
            )),
        }
    }

    fn namespaces_report(&self) -> Reply {
        let ctx = self.ctx();
        let live = ctx.live();
        let mut lines: Vec<Reply> = live
            .namespaces
            .iter()
            .map(|ns| Reply::Bulk(Bytes::from(describe(&ns.config))))
            .collect();
        if lines.is_empty() {
            lines.push(Reply::Bulk(Bytes::from_static(
                b"no namespaces: transparent proxy (only policy.deny_commands applies)",
            )));
        }
        lines.push(Reply::Bulk(Bytes::from(format!(
            "unmatched_keys={} unmatched_allowed={}",
            match live.config.policy.unmatched_keys {
                UnmatchedKeys::Reject => "reject",
                UnmatchedKeys::Allow => "allow",
            },
            ctx.unmatched.load(std::sync::atomic::Ordering::Relaxed)
        ))));
        if let Ok(advisories) = ctx.advisories.lock() {
            for text in advisories.iter() {
                lines.push(Reply::Bulk(Bytes::from(format!("warning: {text}"))));
            }
        }
        Reply::Array(lines)
    }

    /// `SIDECAR FLUSH <namespace> [DRYRUN]`: earlier commands are answered first.
    async fn flush_namespace(&mut self, args: &[Bytes]) -> Reply {
        let dry_run = match args {
            [_] => false,
            [_, flag] if flag.eq_ignore_ascii_case(b"DRYRUN") => true,
            _ => return Reply::error("ERR syntax: SIDECAR FLUSH <namespace> [DRYRUN]"),
        };
        let live = self.ctx().live();
        let Some(ns) = live.namespaces.by_name(&args[0]) else {
            return Reply::error(format!(
                "ERR no namespace named '{}' (see SIDECAR NAMESPACES)",
                String::from_utf8_lossy(&args[0])
            ));
        };
        let prefix = ns.prefix.clone();
        let name = ns.name().to_owned();
        self.drain_quietly().await;
        match scoped::delete_prefixes(&self.ctx().upstream, &[prefix], dry_run).await {
            Ok(n) => {
                if !dry_run {
                    if let Some(cache) = &self.ctx().cache {
                        cache.flush();
                    }
                    let metrics = &self.ctx().metrics;
                    metrics.flush(FlushKind::SidecarFlush).increment(1);
                    metrics.flush_keys_removed.increment(n);
                    tracing::info!(namespace = %name, removed = n, "SIDECAR FLUSH");
                }
                Reply::Integer(n as i64)
            }
            Err(e) => Reply::error(e.reply_text()),
        }
    }
}

/// A reply of text lines, readable in redis-cli.
fn lines(lines: Vec<String>) -> Reply {
    Reply::Array(
        lines
            .into_iter()
            .map(|l| Reply::Bulk(Bytes::from(l)))
            .collect(),
    )
}

/// The sample lines of a Prometheus rendering, without comments and histogram buckets.
fn stats(rendered: &str) -> Vec<String> {
    rendered
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains("_bucket{"))
        .map(str::to_owned)
        .collect()
}

/// One namespace as a line of `key=value` pairs.
fn describe(ns: &NamespaceConfig) -> String {
    let mut line = format!(
        "{} prefix={} db={} flush={} cache={} require_ttl={} must_not_evict={}",
        ns.name,
        ns.prefix,
        ns.db.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
        match ns.flush {
            FlushMode::Deny => "deny",
            FlushMode::Allow => "allow",
        },
        ns.cache,
        ns.require_ttl,
        ns.must_not_evict,
    );
    for (key, value) in [
        ("default_ttl", ns.default_ttl),
        ("max_ttl", ns.max_ttl),
        ("touch_on_read", ns.touch_on_read),
        ("touch_interval", ns.touch_interval),
    ] {
        if let Some(d) = value {
            line.push_str(&format!(" {key}={}", format_duration(d)));
        }
    }
    line
}
