//! One task per sentinel, subscribed to the failover event channels.
//!
//! Only the leader sentinel publishes the steps of a failover, and any
//! sentinel may be the leader, so every known sentinel is watched. Events
//! about our master go two ways: the hold decisions (start, abort) are applied
//! to [`Core`] at once, right here, so writes stop even while the resolver is
//! busy; the event itself is then queued for the resolver, which finds and
//! verifies the new primary. Each (re)subscription also kicks the resolver,
//! since events may have been missed while the link was down.
//!
//! A silent link is detected with a PING every [`KEEPALIVE`]; a sentinel that
//! stops answering (SIGSTOP, network partition) is reconnected with jittered
//! backoff. The task never exits before `shutdown`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::client::{LinkError, SentinelAccess};
use super::events::{self, Event};
use super::state::Core;
use crate::config::Endpoint;

/// PING interval on an idle subscription.
const KEEPALIVE: Duration = Duration::from_secs(2);
/// A subscription silent for this long is considered dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(6);
/// First and largest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Watch `sentinel` until `shutdown`.
pub async fn watch(
    core: Arc<Core>,
    access: SentinelAccess,
    sentinel: Endpoint,
    queue: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    let mut was_up = false;
    loop {
        let mut subscribed = false;
        let ended = tokio::select! {
            _ = shutdown.cancelled() => return,
            ended = session(&core, &access, &sentinel, &queue, &mut subscribed) => ended,
        };
        if subscribed {
            backoff = BACKOFF_MIN;
        }
        if let Err(e) = ended {
            if subscribed || was_up {
                warn!(%sentinel, error = %e, "sentinel event subscription lost; reconnecting");
            } else {
                debug!(%sentinel, error = %e, "sentinel event subscription failed");
            }
        }
        was_up = subscribed;
        let pause = backoff.mul_f64(0.5 + fastrand::f64());
        backoff = (backoff * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Subscribe and relay events until the link fails.
async fn session(
    core: &Core,
    access: &SentinelAccess,
    sentinel: &Endpoint,
    queue: &mpsc::Sender<Event>,
    subscribed: &mut bool,
) -> Result<(), LinkError> {
    let link = access.connect(sentinel).await?;
    let mut sub = link.subscribe(events::CHANNELS, events::PATTERNS).await?;
    *subscribed = true;
    debug!(%sentinel, "subscribed to sentinel events");
    core.kick.notify_one();
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            message = sub.next() => {
                heard = Instant::now();
                let Some((channel, payload)) = message? else { continue };
                let Some(event) = events::parse(&channel, &payload) else { continue };
                if event.master() != core.master_name {
                    continue;
                }
                debug!(%sentinel, ?event, "sentinel event");
                apply(core, &event);
                if queue.try_send(event).is_err() {
                    core.kick.notify_one();
                }
            }
            _ = keepalive.tick() => {
                if heard.elapsed() > SILENCE_LIMIT {
                    return Err(LinkError(format!("{sentinel}: silent for {SILENCE_LIMIT:?}")));
                }
                sub.ping().await?;
            }
        }
    }
}

/// The hold decisions an event implies, applied before the resolver sees it.
fn apply(core: &Core, event: &Event) {
    match event {
        Event::FailoverStarted { primary, .. } => core.failover_started(primary),
        Event::ReplicaClaimsMaster {
            primary, replica, ..
        } => core.replica_claims_master(primary, replica),
        Event::Aborted { primary, .. } => core.failover_aborted(primary),
        Event::SwitchMaster { .. } | Event::Settled { .. } => {}
    }
}
