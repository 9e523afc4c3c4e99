//! The published primary and the failover hold: the one place that decides
//! what [`PrimaryState`] the data path sees.
//!
//! The resolver offers addresses it has verified with `ROLE`; the event
//! watchers report failover steps. Both go through [`Core`], under one lock,
//! so a slow resolution that started before a failover can never publish the
//! old primary after the failover began. It does no IO.
//!
//! The hold: from the first sign that our primary is being replaced until a
//! *different* address is verified, the state is `FailingOver` and the old
//! address is refused, even if it still answers `ROLE` = master (it does, for
//! seconds, during `SENTINEL FAILOVER`). The old address is accepted again
//! only after an abort event, or after [`HOLD_LIMIT`] in case the abort was
//! missed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use super::PrimaryState;
use crate::config::Endpoint;

/// Longest time the old primary is refused without an abort event.
pub const HOLD_LIMIT: Duration = Duration::from_secs(15);

/// Why there is no verified primary; a warning is logged when this changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    NoSentinelReachable,
    NameUnknown,
    NotMaster,
    PrimaryUnreachable,
    Setup,
}

/// State shared by the handle, the resolver and the watchers.
pub struct Core {
    pub master_name: String,
    tx: watch::Sender<PrimaryState>,
    inner: Mutex<Inner>,
    /// Wakes the resolver (coalesced: at most one stored permit).
    pub kick: Notify,
    failovers: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// The last verified address, kept while the state is Unknown.
    primary: Option<Endpoint>,
    /// The address verified before `primary`.
    former: Option<Endpoint>,
    epoch: u64,
    hold: Option<Hold>,
    problem: Option<Problem>,
}

struct Hold {
    since: Instant,
    /// The primary being replaced.
    from: Endpoint,
    aborted: bool,
}

impl Core {
    pub fn new(master_name: &str, initial: PrimaryState) -> Core {
        let mut inner = Inner::default();
        if let PrimaryState::Verified {
            endpoint, epoch, ..
        } = &initial
        {
            inner.primary = Some(endpoint.clone());
            inner.epoch = *epoch;
        }
        Core {
            master_name: master_name.to_owned(),
            tx: watch::Sender::new(initial),
            inner: Mutex::new(inner),
            kick: Notify::new(),
            failovers: AtomicU64::new(0),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<PrimaryState> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> PrimaryState {
        self.tx.borrow().clone()
    }

    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A failover of the master whose primary is `primary` started. Ignored when
    /// we already follow another address (a late message about an old topology).
    pub fn failover_started(&self, primary: &Endpoint) {
        let mut inner = self.lock();
        if inner.hold.is_some() || inner.primary.as_ref().is_some_and(|p| p != primary) {
            return;
        }
        let since = Instant::now();
        inner.hold = Some(Hold {
            since,
            from: primary.clone(),
            aborted: false,
        });
        warn!(master = %self.master_name, primary = %primary, "failover started; holding writes until the new primary is verified");
        self.tx.send_replace(PrimaryState::FailingOver { since });
    }

    /// A replica of `primary` reports role master. That starts the hold unless it is
    /// the primary we switched away from (demoted a moment after `+switch-master`).
    pub fn replica_claims_master(&self, primary: &Endpoint, replica: &Endpoint) {
        let former = self.lock().former.clone();
        if former.as_ref() != Some(replica) {
            self.failover_started(primary);
        }
    }

    /// The failover of `primary` was aborted: it may be accepted again.
    pub fn failover_aborted(&self, primary: &Endpoint) {
        let mut inner = self.lock();
        if let Some(hold) = inner.hold.as_mut().filter(|h| &h.from == primary) {
            hold.aborted = true;
            info!(master = %self.master_name, primary = %primary, "failover aborted");
        }
    }

    /// `ROLE` on `endpoint` just said master. Publishes Verified unless the hold
    /// refuses this address; returns whether it was accepted.
    pub fn offer_verified(&self, endpoint: &Endpoint) -> bool {
        let mut inner = self.lock();
        if let Some(hold) = &inner.hold {
            if &hold.from == endpoint && !hold.aborted {
                if hold.since.elapsed() < HOLD_LIMIT {
                    return false;
                }
                warn!(master = %self.master_name, primary = %endpoint, "no failover outcome within {HOLD_LIMIT:?}; sentinel still names the old primary and it still says master");
            }
        }
        inner.hold = None;
        inner.problem = None;
        let verified_at = Instant::now();
        if inner.primary.as_ref() == Some(endpoint) {
            let epoch = inner.epoch;
            // Same address and epoch: refresh the check time without waking subscribers.
            self.tx.send_if_modified(|state| {
                let fresh = PrimaryState::Verified {
                    endpoint: endpoint.clone(),
                    verified_at,
                    epoch,
                };
                let wake = !matches!(state, PrimaryState::Verified { .. });
                if wake {
                    info!(master = %self.master_name, primary = %endpoint, epoch, "primary verified");
                }
                *state = fresh;
                wake
            });
            return true;
        }
        if inner.primary.is_some() {
            self.failovers.fetch_add(1, Ordering::Relaxed);
        }
        inner.former = inner.primary.replace(endpoint.clone());
        inner.epoch += 1;
        let epoch = inner.epoch;
        info!(master = %self.master_name, primary = %endpoint, epoch, "primary verified");
        self.tx.send_replace(PrimaryState::Verified {
            endpoint: endpoint.clone(),
            verified_at,
            epoch,
        });
        true
    }

    /// No verified primary for `reason`. During a hold the state stays FailingOver.
    pub fn problem(&self, problem: Problem, reason: String) {
        let mut inner = self.lock();
        if inner.problem != Some(problem) {
            warn!(master = %self.master_name, %reason, "no verified primary");
            inner.problem = Some(problem);
        }
        if inner.hold.is_some() {
            return;
        }
        self.tx.send_if_modified(|state| {
            let wake = !matches!(state, PrimaryState::Unknown { reason: r } if *r == reason);
            if wake {
                *state = PrimaryState::Unknown { reason };
            }
            wake
        });
    }
}
