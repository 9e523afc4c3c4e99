//! Changing the phase, and the one change that needs care: moving the store of record
//! (shadow <-> flipped) while clients write.
//!
//! A key written in the old store and not yet copied must not be written in the new
//! one before its copy lands (the copy would then overwrite the newer write, or the
//! newer write's copy the older one). So every client batch holds the gate (shared)
//! from its first forwarded command until its replies are in and its keys queued; the
//! switch takes the gate exclusively, which waits for those batches and holds new
//! ones back, then waits for the copy queue to empty, moves the store of record and
//! lets the clients go. If that takes longer than `switch_timeout` (a blocking
//! command, a transaction left open, a store that does not answer), nothing changes.
//! Other steps change no store of record and apply at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedRwLockReadGuard;
use tracing::{info, warn};

use super::{copies, serving_side, Migration};
use crate::config::{MigrationConfig, Phase};

/// A client batch's share of the gate.
pub type Pass = OwnedRwLockReadGuard<()>;

impl Migration {
    /// The gate for one client batch, while copies are on (`None` otherwise). Waits only
    /// while the store of record is being moved.
    pub async fn pass(&self) -> Option<Pass> {
        if !copies(self.phase()) {
            return None;
        }
        match self.gate.clone().try_read_owned() {
            Ok(pass) => Some(pass),
            Err(_) => Some(self.gate.clone().read_owned().await),
        }
    }

    /// Move to `to`, one step at a time; returns the phase before.
    pub async fn switch(&self, to: Phase, why: &str) -> Result<Phase, String> {
        let from = self.phase();
        one_step(from, to)?;
        if serving_side(from) == serving_side(to) {
            self.store_phase(from, to, why);
            return Ok(from);
        }
        let timeout = self.config.switch_timeout;
        let started = Instant::now();
        let moved = tokio::time::timeout(timeout, async {
            let exclusive = self.gate.clone().write_owned().await;
            while self.queue.depth().0 > 0 || self.copying.load(Ordering::Acquire) > 0 {
                self.queue.ready.notify_one();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            self.store_phase(from, to, why);
            drop(exclusive);
        })
        .await;
        let outcome = match moved {
            Ok(()) => Ok(from),
            Err(_) => Err(format!(
                "the store of record did not move ({} -> {}): in-flight writes or their copies did not finish within migration.switch_timeout ({timeout:?}); look for blocking commands, open transactions or an unreachable store, then try again",
                from.label(),
                to.label()
            )),
        };
        let line = match &outcome {
            Ok(_) => format!(
                "{} -> {} in {}ms",
                from.label(),
                to.label(),
                started.elapsed().as_millis()
            ),
            Err(e) => {
                warn!("migration: {e}");
                format!(
                    "{} -> {} refused: timed out after {timeout:?}",
                    from.label(),
                    to.label()
                )
            }
        };
        if let Ok(mut last) = self.last_switch.lock() {
            *last = line;
        }
        outcome
    }

    fn store_phase(&self, from: Phase, to: Phase, why: &str) {
        self.phase.store(to as u8, Ordering::Release);
        self.stats.set_phase(to);
        if from != to {
            info!(
                from = from.label(),
                to = to.label(),
                by = why,
                "migration phase changed"
            );
        }
    }

    /// Whether a reload may move the phase to `to` (one step at most).
    pub fn check_step(&self, to: Phase) -> Result<(), String> {
        one_step(self.phase(), to)
    }

    /// A reloaded `[migration]` (checked with [`Migration::check_step`]): compare_sample
    /// applies now, a new phase is moved to in the background. Returns the settings
    /// that changed but need a restart, and what happened to the phase.
    pub fn reload(self: &Arc<Self>, new: &MigrationConfig) -> (Vec<&'static str>, String) {
        self.compare_ppm
            .store(new.compare_per_million, Ordering::Relaxed);
        let now = self.phase();
        let phase = if new.phase == now {
            format!("migration phase {}", now.label())
        } else {
            let m = self.clone();
            let to = new.phase;
            tokio::spawn(async move {
                let _ = m.switch(to, "reload").await;
            });
            format!(
                "migration phase {} -> {} under way (SIDECAR MIGRATION STATUS shows when it is done)",
                now.label(),
                to.label()
            )
        };
        let mut unchanged = new.clone();
        unchanged.phase = self.config.phase;
        unchanged.compare_per_million = self.config.compare_per_million;
        let restart = if unchanged != self.config {
            vec!["migration (old store, old_db, queue, retry and switch settings)"]
        } else {
            Vec::new()
        };
        (restart, phase)
    }
}

fn one_step(from: Phase, to: Phase) -> Result<(), String> {
    if from.can_move_to(to) {
        return Ok(());
    }
    Err(format!(
        "the migration phase moves one step at a time (off <-> shadow <-> flipped <-> done): {} -> {} is not one step",
        from.label(),
        to.label()
    ))
}
