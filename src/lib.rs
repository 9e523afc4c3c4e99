//! resp-sidecar: a Redis-protocol (RESP2/RESP3) sidecar that runs beside each
//! application instance and forwards to the Redis primary.
//!
//! Data flows one way through named stages; only `server` and `upstream` touch
//! sockets, every other stage is a plain function:
//!
//! ```text
//! client socket -> resp (decode) -> command (classify once, table-driven)
//!    -> policy (allow / deny) -> upstream (shared pipelined pool, or a pinned
//!       connection for MULTI/WATCH/blocking/pub-sub) -> reply path -> client
//! ```
//!
//! Namespaces, the session cache, Sentinel discovery and the admin surface slot
//! in between these stages as they arrive (see DESIGN.md's roadmap). Beside the
//! data path: `metrics` (the per-instance registry every stage counts into),
//! `admin` (the HTTP listener for probes and Prometheus) and `migration` (during a
//! move from an old store: which store serves, copies of written keys to the other
//! one, parity checks, and the `migrate` / `verify` commands).
//!
//! [`run`] is the single entry point shared by the binary and the tests: it takes
//! already-bound listeners and a cancellation token.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod cli;
pub mod command;
pub mod config;
pub mod keys;
pub mod metrics;
pub mod migration;
pub mod namespace;
pub mod policy;
pub mod resp;
pub mod server;
pub mod upstream;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use server::Listeners;

/// Why the sidecar could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("upstream: {0}")]
    Upstream(#[from] upstream::UpstreamError),
}

/// Serve clients on `listeners` with `config` until `shutdown` is cancelled, then
/// finish in-flight commands within `server.shutdown_grace` and return. The admin
/// HTTP listener, when given, serves until `shutdown` too.
pub async fn run(
    config: config::Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    run_with(config, listeners, shutdown, None).await
}

/// Where a running sidecar re-reads its configuration (SIGHUP, `SIDECAR RELOAD`) and
/// how it applies a new log level.
pub struct Reload {
    pub source: server::ConfigSource,
    pub log: Option<server::LogReload>,
}

/// [`run`], reloadable: with `reload`, SIGHUP and `SIDECAR RELOAD` read the config again.
pub async fn run_with(
    config: config::Config,
    mut listeners: Listeners,
    shutdown: CancellationToken,
    reload: Option<Reload>,
) -> Result<(), RunError> {
    let upstream_stop = CancellationToken::new();
    let metrics = Arc::new(metrics::Metrics::new());
    metrics.set_command_metrics(config.admin.command_metrics);
    let upstream = upstream::Upstream::start(&config.upstream, metrics, upstream_stop.clone())?;
    let mut ctx = server::Ctx::new(config, upstream);
    let migration = migration::Migration::start(
        &ctx.config,
        &ctx.upstream,
        ctx.metrics.registry(),
        upstream_stop.clone(),
    )?;
    ctx.migration = migration;
    let reloadable = reload.is_some();
    if let Some(reload) = reload {
        ctx = ctx.with_reload(reload.source, reload.log);
    }
    let ctx = Arc::new(ctx);
    if reloadable {
        spawn_sighup(ctx.clone(), shutdown.clone());
    }
    tokio::spawn(metrics::upkeep(ctx.metrics.handle(), shutdown.clone()));
    let admin = listeners
        .admin
        .take()
        .map(|l| tokio::spawn(admin::serve(ctx.clone(), l, shutdown.clone())));
    server::serve(ctx, listeners, shutdown).await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    upstream_stop.cancel();
    Ok(())
}

/// SIGHUP reloads the configuration (the result is logged).
fn spawn_sighup(ctx: Arc<server::Ctx>, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => hup,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; SIDECAR RELOAD still reloads");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP received: reloading the config");
                    let _ = ctx.reload();
                }
            }
        }
    });
}
