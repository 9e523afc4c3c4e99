//! The admin HTTP listener (`admin.listen`): `/livez`, `/readyz` and `/metrics`, for
//! Kubernetes probes and Prometheus.
//!
//! It runs as one task beside the client listener, started by [`crate::run`] and
//! stopped with it; every connection is served by [`http::serve_connection`] and
//! bounded in size, time and number. It reads the shared [`Ctx`] and changes
//! nothing but the gauges refreshed at scrape time. The redis-cli side of the admin
//! surface (`SIDECAR ...`) lives in the server stage.

pub mod http;

use std::fmt::Write as _;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::server::Ctx;
use crate::upstream::sentinel::PrimaryState;
use http::{Request, Response};

/// Admin connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 64;

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serve admin requests on `listener` until `shutdown`.
pub async fn serve(ctx: Arc<Ctx>, listener: TcpListener, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "admin HTTP listening (/livez, /readyz, /metrics)");
    }
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let limits = http::Limits::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(
                max = MAX_CONNECTIONS,
                "admin connection closed: too many open"
            );
            continue;
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = http::serve_connection(stream, &limits, |req| route(&ctx, req)) => {}
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// The answer to one request.
pub fn route(ctx: &Ctx, req: &Request<'_>) -> Response {
    let known = matches!(req.path, "/livez" | "/readyz" | "/metrics");
    if !known {
        return Response::text(404, "not found: try /livez, /readyz or /metrics\n");
    }
    if req.method != "GET" {
        return Response::text(405, format!("{} is served for GET only\n", req.path));
    }
    match req.path {
        "/livez" => Response::text(200, "ok\n"),
        "/readyz" => {
            // During a migration, the store that serves this phase.
            let up = ctx
                .migration
                .as_deref()
                .map_or(&ctx.upstream, |m| m.serving());
            let state = up.discovery().current();
            match readiness(&state, up.is_connected()) {
                Ok(body) => Response::text(200, body),
                Err(body) => Response::text(503, body),
            }
        }
        _ => Response {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body: scrape(ctx),
        },
    }
}

/// Ready while a verified primary is known and the shared upstream connections are
/// up. The text says which primary, or why not.
pub fn readiness(state: &PrimaryState, connected: bool) -> Result<String, String> {
    match state {
        PrimaryState::Verified {
            endpoint, epoch, ..
        } if connected => Ok(format!("ready: primary {endpoint} (epoch {epoch})\n")),
        PrimaryState::Verified {
            endpoint, epoch, ..
        } => Err(format!(
            "not ready: upstream connection down (primary {endpoint}, epoch {epoch})\n"
        )),
        PrimaryState::FailingOver { since } => Err(format!(
            "not ready: failover in progress for {:.1}s\n",
            since.elapsed().as_secs_f64()
        )),
        PrimaryState::Unknown { reason } => {
            let mut body = String::from("not ready: no primary verified: ");
            let _ = writeln!(body, "{reason}");
            Err(body)
        }
    }
}

/// Refresh the gauges that mirror state kept elsewhere, then render everything.
pub(crate) fn scrape(ctx: &Ctx) -> String {
    let m = &ctx.metrics;
    let up = &ctx.upstream;
    m.client_connections.set(ctx.clients() as f64);
    m.pinned_connections.set(up.pinned_in_use() as f64);
    m.upstream_connected
        .set(if up.is_connected() { 1.0 } else { 0.0 });
    m.primary_epoch.set(up.epoch() as f64);
    m.failovers.absolute(up.discovery().failovers());
    m.unmatched_keys_allowed
        .absolute(ctx.unmatched.load(std::sync::atomic::Ordering::Relaxed));
    let mut text = m.render();
    if let Some(cache) = &ctx.cache {
        text.push_str(&cache.snapshot().prometheus());
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::config::Endpoint;

    fn verified(epoch: u64) -> PrimaryState {
        PrimaryState::Verified {
            endpoint: Endpoint {
                host: "10.0.0.7".into(),
                port: 6379,
            },
            verified_at: Instant::now(),
            epoch,
        }
    }

    #[test]
    fn ready_only_with_a_verified_primary_and_a_connection() {
        assert_eq!(
            readiness(&verified(3), true),
            Ok("ready: primary 10.0.0.7:6379 (epoch 3)\n".into())
        );
        assert_eq!(
            readiness(&verified(3), false),
            Err("not ready: upstream connection down (primary 10.0.0.7:6379, epoch 3)\n".into())
        );
        let unknown = PrimaryState::Unknown {
            reason: "no sentinel reachable (tried 127.0.0.1:26379)".into(),
        };
        for connected in [true, false] {
            assert_eq!(
                readiness(&unknown, connected),
                Err("not ready: no primary verified: no sentinel reachable (tried 127.0.0.1:26379)\n"
                    .into())
            );
            let failing = PrimaryState::FailingOver {
                since: Instant::now(),
            };
            let body = readiness(&failing, connected).unwrap_err();
            assert!(
                body.starts_with("not ready: failover in progress for "),
                "{body}"
            );
        }
    }
}
