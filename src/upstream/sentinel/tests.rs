//! Unit tests of the failover hold and publication rules (no IO).

use std::time::Duration;

use super::state::{Core, Problem};
use super::{Discovery, PrimaryState};
use crate::config::Endpoint;

fn ep(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
    }
}

fn unknown() -> Core {
    Core::new(
        "mymaster",
        PrimaryState::Unknown {
            reason: "start".into(),
        },
    )
}

fn verified(core: &Core) -> Option<(Endpoint, u64)> {
    match core.current() {
        PrimaryState::Verified {
            endpoint, epoch, ..
        } => Some((endpoint, epoch)),
        _ => None,
    }
}

#[test]
fn first_verification_is_epoch_one_and_not_a_failover() {
    let core = unknown();
    assert!(core.offer_verified(&ep(1)));
    assert_eq!(verified(&core), Some((ep(1), 1)));
    assert!(core.offer_verified(&ep(1)));
    assert_eq!(verified(&core), Some((ep(1), 1)));
    assert_eq!(core.failovers(), 0);
}

#[test]
fn reverifying_the_same_address_does_not_wake_subscribers() {
    let core = unknown();
    core.offer_verified(&ep(1));
    let mut rx = core.subscribe();
    rx.borrow_and_update();
    core.offer_verified(&ep(1));
    assert!(!rx.has_changed().unwrap_or(true));
}

#[test]
fn hold_refuses_the_old_primary_until_a_new_one_is_verified() {
    let core = unknown();
    core.offer_verified(&ep(1));
    core.failover_started(&ep(1));
    assert!(matches!(core.current(), PrimaryState::FailingOver { .. }));
    // The old primary still answers ROLE = master during the promotion.
    assert!(!core.offer_verified(&ep(1)));
    assert!(matches!(core.current(), PrimaryState::FailingOver { .. }));
    // Problems during the hold keep it FailingOver.
    core.problem(Problem::PrimaryUnreachable, "down".into());
    assert!(matches!(core.current(), PrimaryState::FailingOver { .. }));
    assert!(core.offer_verified(&ep(2)));
    assert_eq!(verified(&core), Some((ep(2), 2)));
    assert_eq!(core.failovers(), 1);
}

#[test]
fn abort_releases_the_old_primary() {
    let core = unknown();
    core.offer_verified(&ep(1));
    core.failover_started(&ep(1));
    core.failover_aborted(&ep(9));
    assert!(!core.offer_verified(&ep(1)));
    core.failover_aborted(&ep(1));
    assert!(core.offer_verified(&ep(1)));
    assert_eq!(verified(&core), Some((ep(1), 1)));
    assert_eq!(core.failovers(), 0);
}

#[test]
fn late_events_about_a_replaced_primary_are_ignored() {
    let core = unknown();
    core.offer_verified(&ep(1));
    core.failover_started(&ep(1));
    core.offer_verified(&ep(2));
    // A delayed failover step about the old topology.
    core.failover_started(&ep(1));
    assert_eq!(verified(&core), Some((ep(2), 2)));
    // The demoted former primary still claims master for a moment.
    core.replica_claims_master(&ep(2), &ep(1));
    assert_eq!(verified(&core), Some((ep(2), 2)));
    // Any other replica of the current primary claiming master starts a hold.
    core.replica_claims_master(&ep(2), &ep(3));
    assert!(matches!(core.current(), PrimaryState::FailingOver { .. }));
}

#[test]
fn problems_publish_unknown_with_the_reason() {
    let core = unknown();
    core.problem(
        Problem::NoSentinelReachable,
        "no sentinel reachable (tried a:1)".into(),
    );
    assert_eq!(
        core.current(),
        PrimaryState::Unknown {
            reason: "no sentinel reachable (tried a:1)".into()
        }
    );
    core.offer_verified(&ep(1));
    core.problem(Problem::NotMaster, "127.0.0.1:1 reports role slave".into());
    assert!(matches!(core.current(), PrimaryState::Unknown { .. }));
    // The same address verified again keeps its epoch.
    core.offer_verified(&ep(1));
    assert_eq!(verified(&core), Some((ep(1), 1)));
}

#[tokio::test]
async fn fixed_discovery_is_verified_at_once() {
    let d = Discovery::fixed(ep(6379));
    d.resolve_now();
    let state = d.wait_verified(Duration::from_millis(10)).await;
    assert_eq!(state.endpoint(), Some(&ep(6379)));
    assert!(matches!(state, PrimaryState::Verified { epoch: 1, .. }));
    assert_eq!(d.failovers(), 0);
}
