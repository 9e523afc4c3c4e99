//! Rendering a typed `Config` back into the `sidecar.toml` shape.
//!
//! Owns the typed -> raw conversion behind `Config::to_redacted_toml`, with
//! every non-empty secret replaced by `"<redacted>"` (the URL is already
//! stored redacted). The output parses back into the same config, apart from
//! the secrets. It does not validate or print anything itself.

use std::path::Path;
use std::time::Duration;

use super::raw::{
    RawAdmin, RawCache, RawConfig, RawLog, RawNamespace, RawPolicy, RawServer, RawUpstream,
    SizeText,
};
use super::units::{format_duration, format_size};
use super::{Config, NamespaceConfig, UpstreamConfig, REDACTED};

fn secret(value: &Option<String>) -> String {
    match value {
        Some(v) if !v.is_empty() => REDACTED.to_owned(),
        _ => String::new(),
    }
}

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn path(value: &Option<impl AsRef<Path>>) -> String {
    value
        .as_ref()
        .map(|p| p.as_ref().display().to_string())
        .unwrap_or_default()
}

fn size(bytes: usize) -> SizeText {
    SizeText(format_size(bytes as u64))
}

/// `None` renders as `"0s"`, which reads back as `None`.
fn optional(duration: Option<Duration>) -> String {
    format_duration(duration.unwrap_or(Duration::ZERO))
}

impl RawConfig {
    pub(crate) fn redacted_from(config: &Config) -> RawConfig {
        let server = &config.server;
        RawConfig {
            server: RawServer {
                listen: server.listen.to_string(),
                unix_socket: path(&server.unix_socket),
                requirepass: secret(&server.requirepass),
                max_clients: server.max_clients,
                idle_timeout: optional(server.idle_timeout),
                shutdown_grace: format_duration(server.shutdown_grace),
                max_bulk_len: size(server.max_bulk_len),
                max_array_len: server.max_array_len,
                max_inline_len: size(server.max_inline_len),
                max_pipeline: server.max_pipeline,
                max_reply_buffer: size(server.max_reply_buffer),
                threads: server.threads,
            },
            admin: RawAdmin {
                listen: config
                    .admin
                    .listen
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                command_metrics: config.admin.command_metrics,
            },
            upstream: upstream(&config.upstream),
            cache: RawCache {
                enabled: config.cache.enabled,
                max_bytes: size(config.cache.max_bytes),
                max_ttl: format_duration(config.cache.max_ttl),
                stale_if_error: format_duration(config.cache.stale_if_error),
                fill_on_write: config.cache.fill_on_write,
            },
            namespaces: config.namespaces.iter().map(namespace).collect(),
            policy: RawPolicy {
                unmatched_keys: config.policy.unmatched_keys,
                deny_commands: config.policy.deny_commands.clone(),
                keys: config.policy.keys,
                scripts: config.policy.scripts,
                script_allowlist: config.policy.script_allowlist.clone(),
                flush: config.policy.flush,
            },
            log: RawLog {
                level: config.log.level.clone(),
                format: config.log.format,
            },
            migration: super::migration::render(&config.migration),
        }
    }
}

fn upstream(up: &UpstreamConfig) -> RawUpstream {
    let tls = up.tls.clone().unwrap_or_default();
    RawUpstream {
        mode: up.mode,
        url: up.url.clone(),
        username: text(&up.username),
        password: secret(&up.password),
        tls: up.tls.is_some(),
        tls_ca_file: path(&tls.ca_file),
        tls_cert_file: path(&tls.cert_file),
        tls_key_file: path(&tls.key_file),
        tls_server_name: text(&tls.server_name),
        tls_switched_off: false,
        sentinels: up.sentinels.iter().map(ToString::to_string).collect(),
        master_name: up.master_name.clone(),
        sentinel_username: text(&up.sentinel_username),
        sentinel_password: secret(&up.sentinel_password),
        pool_size: up.pool_size,
        max_pinned: up.max_pinned,
        connect_timeout: format_duration(up.connect_timeout),
        command_timeout: optional(up.command_timeout),
        failover_wait: format_duration(up.failover_wait),
    }
}

fn namespace(ns: &NamespaceConfig) -> RawNamespace {
    RawNamespace {
        name: ns.name.clone(),
        prefix: ns.prefix.clone(),
        db: ns.db,
        cache: ns.cache,
        flush: ns.flush,
        default_ttl: ns.default_ttl.map(format_duration),
        max_ttl: ns.max_ttl.map(format_duration),
        require_ttl: ns.require_ttl,
        degrade: ns.degrade,
        touch_on_read: ns.touch_on_read.map(format_duration),
        touch_interval: ns.touch_interval.map(format_duration),
        must_not_evict: ns.must_not_evict,
    }
}
