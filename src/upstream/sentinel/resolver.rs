//! The discovery task: ask the sentinels where the primary is, verify it with
//! `ROLE`, and offer it to [`Core`]; again on every kick, event and poll.
//!
//! One round: for each sentinel in order, `get-master-addr-by-name`; a null
//! answer means that sentinel does not know the name, an address is checked
//! with `ROLE` (the upstream's TLS and credentials) and accepted only if the
//! node says `master`. The sentinel whose answer was accepted moves to the
//! front, so the next round asks it first over the same connection; the probe
//! connection to the primary is kept too, so the once-a-second poll costs two
//! round trips on open connections. New sentinels reported by
//! `SENTINEL sentinels` are added to the list (configured ones are never
//! dropped) and get an event watcher.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{role_of, LinkError, RoleProbe, SentinelAccess, SentinelLink};
use super::events::Event;
use super::state::{Core, Problem};
use super::watcher;
use crate::config::{Endpoint, UpstreamConfig};

/// Poll interval while a primary is verified (fallback for missed events).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before another round while no primary is verified.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// How often the sentinel list is refreshed with `SENTINEL sentinels`.
const REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Upper bound on sentinels tracked (configured plus discovered).
const MAX_SENTINELS: usize = 32;
/// Events queued for the resolver; beyond it a plain re-resolution is requested.
pub const EVENT_QUEUE: usize = 64;

pub struct Resolver {
    core: Arc<Core>,
    cfg: UpstreamConfig,
    access: SentinelAccess,
    sentinels: Vec<Endpoint>,
    watched: HashSet<Endpoint>,
    /// Open connection to the front sentinel.
    link: Option<SentinelLink>,
    /// Open connection to the last verified primary.
    probe: Option<RoleProbe>,
    last_refresh: Option<Instant>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
}

/// Run discovery until `shutdown`.
pub async fn run(core: Arc<Core>, cfg: UpstreamConfig, shutdown: CancellationToken) {
    let access = match SentinelAccess::new(&cfg) {
        Ok(access) => access,
        Err(e) => {
            core.problem(Problem::Setup, format!("sentinel TLS setup: {e}"));
            return;
        }
    };
    if cfg.sentinels.is_empty() {
        core.problem(Problem::Setup, "no sentinel configured".into());
        return;
    }
    let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
    let mut resolver = Resolver {
        core: core.clone(),
        sentinels: Vec::new(),
        cfg,
        access,
        watched: HashSet::new(),
        link: None,
        probe: None,
        last_refresh: None,
        events: tx,
        shutdown: shutdown.clone(),
    };
    for sentinel in resolver.cfg.sentinels.clone() {
        resolver.add_sentinel(sentinel);
    }
    let mut next_round = Instant::now();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = core.kick.notified() => None,
            event = rx.recv() => event,
            _ = tokio::time::sleep_until(next_round) => None,
        };
        let verified = tokio::select! {
            _ = shutdown.cancelled() => return,
            verified = resolver.react(event) => verified,
        };
        next_round = Instant::now()
            + if verified {
                POLL_INTERVAL
            } else {
                RETRY_INTERVAL
            };
    }
}

impl Resolver {
    /// One step: follow `+switch-master` straight to its address, otherwise a full round.
    async fn react(&mut self, event: Option<Event>) -> bool {
        if let Some(Event::SwitchMaster { new, .. }) = &event {
            if self.verify(new).await.is_ok() && self.core.offer_verified(new) {
                return true;
            }
        }
        self.round().await
    }

    /// Ask the sentinels in order until one names a primary that verifies.
    async fn round(&mut self) -> bool {
        let name = self.core.master_name.clone();
        let mut unreachable = Vec::new();
        let mut unknown_to = Vec::new();
        let mut refused: Option<(Problem, String)> = None;
        let mut checked = HashSet::new();
        for at in 0..self.sentinels.len() {
            let sentinel = self.sentinels[at].clone();
            let (mut link, answer) = match self.ask(&sentinel, &name).await {
                Ok(asked) => asked,
                Err(e) => {
                    unreachable.push(e.to_string());
                    continue;
                }
            };
            let Some(addr) = answer else {
                unknown_to.push(sentinel.to_string());
                continue;
            };
            if !checked.insert(addr.clone()) {
                continue;
            }
            match self.verify(&addr).await {
                Ok(()) => {
                    let moved = self.sentinels.remove(at);
                    self.sentinels.insert(0, moved);
                    self.refresh_sentinels(&mut link).await;
                    self.link = Some(link);
                    return self.core.offer_verified(&addr);
                }
                Err(problem) => {
                    refused.get_or_insert(problem);
                }
            }
        }
        let (problem, reason) = if let Some(refused) = refused {
            refused
        } else if !unknown_to.is_empty() {
            let reason = format!(
                "no sentinel knows master {name} (asked {})",
                unknown_to.join(", ")
            );
            (Problem::NameUnknown, reason)
        } else {
            let reason = format!("no sentinel reachable (tried {})", unreachable.join("; "));
            (Problem::NoSentinelReachable, reason)
        };
        self.core.problem(problem, reason);
        false
    }

    /// `get-master-addr-by-name` on `sentinel`, over the kept connection if it is that
    /// sentinel's (once more on a fresh one if the kept one fails).
    async fn ask(
        &mut self,
        sentinel: &Endpoint,
        name: &str,
    ) -> Result<(SentinelLink, Option<Endpoint>), LinkError> {
        if let Some(mut link) = self.link.take().filter(|l| l.endpoint() == sentinel) {
            if let Ok(answer) = link.master_addr(name).await {
                return Ok((link, answer));
            }
        }
        let mut link = self.access.connect(sentinel).await?;
        let answer = link.master_addr(name).await?;
        Ok((link, answer))
    }

    /// `ROLE` on `addr` must say master. Reuses the probe connection when it points there.
    async fn verify(&mut self, addr: &Endpoint) -> Result<(), (Problem, String)> {
        let reused = match self.probe.as_mut() {
            Some(probe) if probe.endpoint() == addr => probe.role().await.ok(),
            _ => None,
        };
        let role = match reused {
            Some(role) => role,
            None => {
                self.probe = None;
                match role_of(&self.cfg, addr).await {
                    Ok((role, probe)) => {
                        self.probe = Some(probe);
                        role
                    }
                    Err(e) => {
                        let reason = format!(
                            "sentinel names {addr} as primary of {} but it is unreachable: {e}",
                            self.core.master_name
                        );
                        return Err((Problem::PrimaryUnreachable, reason));
                    }
                }
            }
        };
        if role == "master" {
            Ok(())
        } else {
            Err((Problem::NotMaster, format!("{addr} reports role {role}")))
        }
    }

    /// Every [`REFRESH_INTERVAL`], add sentinels this one knows about.
    async fn refresh_sentinels(&mut self, link: &mut SentinelLink) {
        if self
            .last_refresh
            .is_some_and(|at| at.elapsed() < REFRESH_INTERVAL)
        {
            return;
        }
        self.last_refresh = Some(Instant::now());
        let Ok(others) = link.sentinels(&self.core.master_name).await else {
            return;
        };
        for other in others {
            if !self.sentinels.contains(&other) && self.sentinels.len() < MAX_SENTINELS {
                tracing::info!(sentinel = %other, "discovered sentinel");
                self.add_sentinel(other);
            }
        }
    }

    fn add_sentinel(&mut self, sentinel: Endpoint) {
        if !self.sentinels.contains(&sentinel) {
            self.sentinels.push(sentinel.clone());
        }
        if self.watched.insert(sentinel.clone()) {
            tokio::spawn(watcher::watch(
                self.core.clone(),
                self.access.clone(),
                sentinel,
                self.events.clone(),
                self.shutdown.clone(),
            ));
        }
    }
}
