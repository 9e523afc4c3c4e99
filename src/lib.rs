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
//! data path: `metrics` (the per-instance registry every stage counts into) and
//! `admin` (the HTTP listener for probes and Prometheus).
//!
//! [`run`] is the single entry point shared by the binary and the tests: it takes
//! already-bound listeners and a cancellation token.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod command;
pub mod config;
pub mod keys;
pub mod metrics;
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
    mut listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let upstream_stop = CancellationToken::new();
    let upstream = upstream::Upstream::start(&config.upstream, upstream_stop.clone())?;
    let ctx = Arc::new(server::Ctx::new(config, upstream));
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
