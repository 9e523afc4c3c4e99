//! Primary discovery: where the data path should send commands, published on a
//! `watch` channel as a [`PrimaryState`].
//!
//! In standalone mode the answer is fixed ([`Discovery::fixed`]). In sentinel
//! mode ([`Discovery::spawn`]) a background task asks the configured sentinels
//! (`SENTINEL get-master-addr-by-name`), confirms the answer with `ROLE` on the
//! node itself, and follows failovers three ways: an event subscription on
//! every sentinel (writes are held from the first failover step until the new
//! primary is verified), a re-resolution whenever the data path asks
//! ([`Discovery::resolve_now`], on `-READONLY` and on every reconnect), and a
//! poll every second as a fallback.
//!
//! This module finds and verifies the primary; it opens no data connections
//! and does not decide what happens to commands while there is none (the data
//! path bounds its wait with `upstream.failover_wait`).
//!
//! - [`client`]: the Sentinel protocol client and the `ROLE` probe;
//! - [`events`]: parsing Sentinel's event messages;
//! - `resolver`, `watcher`: the background tasks; `state`: the failover hold
//!   and publication (control-plane replies are read with `crate::resp::value`).

pub mod client;
pub mod events;
mod resolver;
mod state;

mod watcher;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Endpoint, UpstreamConfig};
use state::Core;

pub use state::HOLD_LIMIT;

/// What discovery currently knows about the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryState {
    /// No verified primary; `reason` says why ("no sentinel reachable (tried ...)",
    /// "no sentinel knows master mymaster (asked ...)", "127.0.0.1:6380 reports role slave", ...).
    Unknown { reason: String },
    /// A failover of our master is in progress (from its first step until the new
    /// primary is verified): hold writes.
    FailingOver { since: Instant },
    /// `ROLE` on this address said master at `verified_at`. `epoch` increases every
    /// time the verified address changes (not when the same address is re-verified).
    Verified {
        endpoint: Endpoint,
        verified_at: Instant,
        epoch: u64,
    },
}

impl PrimaryState {
    /// The verified primary, if any.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            PrimaryState::Verified { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }
}

/// A handle on primary discovery; cheap to clone.
#[derive(Clone)]
pub struct Discovery {
    core: Arc<Core>,
}

impl Discovery {
    /// Standalone mode: always Verified(endpoint) with epoch 1, no background task.
    pub fn fixed(endpoint: Endpoint) -> Discovery {
        let state = PrimaryState::Verified {
            endpoint,
            verified_at: Instant::now(),
            epoch: 1,
        };
        Discovery {
            core: Arc::new(Core::new("", state)),
        }
    }

    /// Sentinel mode: start the background tasks (they stop on `shutdown`).
    /// Uses `cfg.sentinels`, `master_name`, `sentinel_username`/`sentinel_password`,
    /// `tls` and `connect_timeout`; data nodes are reached with the upstream's own
    /// credentials. Must be called inside a tokio runtime.
    pub fn spawn(cfg: &UpstreamConfig, shutdown: CancellationToken) -> Discovery {
        let state = PrimaryState::Unknown {
            reason: format!("resolving master {} through sentinel", cfg.master_name),
        };
        let core = Arc::new(Core::new(&cfg.master_name, state));
        tokio::spawn(resolver::run(core.clone(), cfg.clone(), shutdown));
        Discovery { core }
    }

    pub fn subscribe(&self) -> watch::Receiver<PrimaryState> {
        self.core.subscribe()
    }

    /// The latest state. For Verified, `verified_at` is refreshed by every poll
    /// without waking subscribers.
    pub fn current(&self) -> PrimaryState {
        self.core.current()
    }

    /// Ask for an immediate re-resolution (on `-READONLY`, on every upstream
    /// reconnect). Cheap and coalesced; a no-op in standalone mode.
    pub fn resolve_now(&self) {
        self.core.kick.notify_one();
    }

    /// Wait up to `limit` for a Verified state; returns it, or the last state on timeout.
    pub async fn wait_verified(&self, limit: Duration) -> PrimaryState {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let state = rx.borrow_and_update().clone();
            if matches!(state, PrimaryState::Verified { .. }) {
                return state;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.current(),
            }
        }
    }

    /// Failovers observed: changes of the verified primary address after the first.
    pub fn failovers(&self) -> u64 {
        self.core.failovers()
    }
}

#[cfg(test)]
mod tests;
