//! Zero-downtime migration from an old store onto the upstream (`[migration]`).
//!
//! The store that serves a phase's reads is the store of record: every command of a
//! client goes there and the client's reply comes from it (`off`, `shadow`: the old
//! store; `flipped`, `done`: the new one). In `shadow` and `flipped`, each key a
//! command may have written (command or key-spec write flags, read from the key table;
//! MULTI/EXEC: the queued commands' keys; EVAL/FCALL: the declared keys) is queued,
//! once its reply has arrived, for a copy of its whole state (DUMP + PTTL, then
//! RESTORE REPLACE or DEL) to the other store. Copying state rather than replaying
//! commands is what makes INCR, LPUSH or a script converge: the copy that runs last
//! carries every write before it. A sample of reads is run again against both stores
//! and compared (`parity`).
//!
//! This module owns the phase, the old store's connections, the copy queue and its
//! worker, the parity checks and the backfill and verify commands. The client loop
//! only asks which store serves ([`Migration::serving`], and
//! [`Migration::bypasses_namespaces`] for `old_db` clients), takes a [`Pass`] for
//! each batch (so the store of record only moves between batches, see `phase`),
//! and hands over what the batch wrote or sampled ([`Migration::note`], then
//! [`Migration::flush`] once its replies are in).

pub mod backfill;
pub mod cli;
pub mod commands;
mod copier;
pub mod dump;
pub mod keymap;
mod parity;
mod phase;
mod progress;
mod queue;
mod stats;
pub mod verify;

use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Config, MigrationConfig, Phase};
use crate::keys::{self, CommandFlags, KeyArg};
use crate::metrics::Registry;
use crate::upstream::{PinnedConn, Upstream, UpstreamError};
pub use keymap::{KeyMap, Side};
use parity::Parity;
pub use phase::Pass;
use queue::Queue;
pub use stats::CopyFailure;
use stats::Stats;

/// Writes and sampled reads of one client batch, handed over once its replies arrived.
#[derive(Debug, Default)]
pub struct Pending {
    /// New-store key names and the store each was written in.
    writes: Vec<(Side, Bytes)>,
    /// Sampled reads: the store that answered and the request with new-store key names.
    reads: Vec<(Side, Vec<Bytes>)>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.reads.is_empty()
    }
}

/// Keys one client may hold for copying before its batch is answered (a huge MULTI).
const MAX_PENDING_WRITES: usize = 100_000;

pub struct Migration {
    phase: AtomicU8,
    compare_ppm: AtomicU32,
    old: Upstream,
    new: Upstream,
    map: KeyMap,
    /// The db of the namespace old-db keys map to (`old_db`).
    old_db: Option<u32>,
    pub(crate) config: MigrationConfig,
    queue: Queue,
    parity: Parity,
    stats: Stats,
    /// Namespace names and prefixes, for the mismatch labels.
    namespaces: Vec<(String, Bytes)>,
    /// Held (shared) by every client batch while copies are on; a change of the store
    /// of record takes it exclusively (see `phase`).
    gate: Arc<tokio::sync::RwLock<()>>,
    /// Keys the copy worker took and has not finished.
    copying: AtomicUsize,
    /// How the last change of the store of record went, for STATUS.
    last_switch: Mutex<String>,
}

impl Migration {
    /// Connect to the old store and start the copy worker (stops on `shutdown`). `None`
    /// when no old store is configured.
    pub fn start(
        config: &Config,
        new: &Upstream,
        registry: Registry,
        shutdown: CancellationToken,
    ) -> Result<Option<Arc<Migration>>, UpstreamError> {
        let m = &config.migration;
        let Some(old_cfg) = &m.old else {
            return Ok(None);
        };
        let mut old_cfg = old_cfg.clone();
        old_cfg.db = m.old_db.unwrap_or(0);
        // The old store's connections are counted apart: the upstream series stay the
        // new store's.
        let own = Arc::new(crate::metrics::Metrics::new());
        let old = Upstream::start(&old_cfg, own, shutdown.clone())?;
        let map = match m.old_db {
            Some(db) => config
                .namespaces
                .iter()
                .find(|ns| ns.db == Some(db))
                .map(|ns| KeyMap::prefixed(Bytes::from(ns.prefix.clone())))
                .unwrap_or_else(KeyMap::same),
            None => KeyMap::same(),
        };
        let stats = Stats::new(registry);
        stats.set_phase(m.phase);
        let migration = Arc::new(Migration {
            phase: AtomicU8::new(m.phase as u8),
            compare_ppm: AtomicU32::new(m.compare_per_million),
            old,
            new: new.clone(),
            map,
            old_db: m.old_db,
            config: m.clone(),
            queue: Queue::new(m.queue_max),
            parity: Parity::new(m.recent_mismatches),
            stats,
            namespaces: config
                .namespaces
                .iter()
                .map(|ns| (ns.name.clone(), Bytes::from(ns.prefix.clone())))
                .collect(),
            gate: Arc::new(tokio::sync::RwLock::new(())),
            copying: AtomicUsize::new(0),
            last_switch: Mutex::new("none".into()),
        });
        info!(
            phase = m.phase.label(),
            old = %old_cfg.url,
            old_db = ?m.old_db,
            "migration configured"
        );
        tokio::spawn(copier::run(migration.clone(), shutdown));
        Ok(Some(migration))
    }

    pub fn phase(&self) -> Phase {
        Phase::ALL[usize::from(self.phase.load(Ordering::Relaxed)).min(3)]
    }

    /// The store clients are served from in this phase.
    pub fn serving(&self) -> &Upstream {
        self.store(serving_side(self.phase()))
    }

    /// The old store's connections.
    pub fn old(&self) -> &Upstream {
        &self.old
    }

    pub fn store(&self, side: Side) -> &Upstream {
        match side {
            Side::Old => &self.old,
            Side::New => &self.new,
        }
    }

    /// True when a client selected into `db` talks to the old store's own db: its keys
    /// go there unprefixed, past the namespace stage.
    pub fn bypasses_namespaces(&self, db: u32) -> bool {
        self.old_db == Some(db) && serving_side(self.phase()) == Side::Old
    }

    /// The store a client selected into `db` is served by. Without `old_db`, the phase's
    /// store of record. With it, only the old db itself moves: a client selected into
    /// it is served by the old store while that is the store of record, every other
    /// client (other namespaces, prefixed names in db 0) by the upstream, and their
    /// writes under the migrated prefix are copied into the old db.
    pub fn serving_for(&self, db: u32) -> &Upstream {
        match self.old_db {
            None => self.serving(),
            Some(_) if self.bypasses_namespaces(db) => &self.old,
            Some(_) => &self.new,
        }
    }

    /// Note what a forwarded request may write (and, sampled, what it reads). `prefix`
    /// is the mapped-db prefix the sidecar puts on the key arguments at `indices`;
    /// `bypass` marks a request sent unprefixed to the old store's db.
    /// `pinned` is the client's pinned connection, which may belong to either store.
    pub fn note(
        &self,
        args: &[Bytes],
        prefix: Option<(&Bytes, &[usize])>,
        bypass: bool,
        pinned: Option<&PinnedConn>,
        scratch: &mut Vec<KeyArg>,
        pending: &mut Pending,
    ) {
        let phase = self.phase();
        if !copies(phase) {
            return;
        }
        let Some(cmd) = keys::lookup(args) else {
            return;
        };
        scratch.clear();
        keys::extract(cmd, args, scratch);
        if scratch.is_empty() {
            return;
        }
        let side = match pinned {
            Some(p) if self.old.owns(p) => Side::Old,
            Some(_) => Side::New,
            // With old_db, only clients of the old db are served by the old store.
            None if self.old_db.is_some() && !bypass => Side::New,
            None => serving_side(phase),
        };
        let name = |k: &KeyArg| -> Bytes {
            let arg = &args[k.index];
            match prefix {
                Some((p, at)) if at.contains(&k.index) => {
                    let mut out = bytes::BytesMut::with_capacity(p.len() + arg.len());
                    out.extend_from_slice(p);
                    out.extend_from_slice(arg);
                    out.freeze()
                }
                _ if bypass => self.map.to_new(arg),
                _ => arg.clone(),
            }
        };
        let writes =
            cmd.flags.contains(CommandFlags::WRITE) || scratch.iter().any(|k| k.flags.writes());
        if writes {
            for k in scratch.iter().filter(|k| k.kind == keys::ArgKind::Key) {
                if pending.writes.len() >= MAX_PENDING_WRITES {
                    self.failed(CopyFailure::QueueFull, &[name(k)]);
                    continue;
                }
                pending.writes.push((side, name(k)));
            }
            return;
        }
        let ppm = self.compare_ppm.load(Ordering::Relaxed);
        if cmd.flags.contains(CommandFlags::READONLY)
            && ppm > 0
            && fastrand::u32(..1_000_000) < ppm
            && parity::comparable(cmd.name)
            && pending.reads.len() < parity::MAX_PENDING
        {
            let mut req: Vec<Bytes> = args.to_vec();
            for k in scratch.iter() {
                req[k.index] = name(k);
            }
            pending.reads.push((side, req));
        }
    }

    /// The batch these were noted in has been answered: queue the copies and checks.
    pub fn flush(&self, pending: &mut Pending) {
        if pending.is_empty() {
            return;
        }
        let mut full = Vec::new();
        for (side, key) in pending.writes.drain(..) {
            if let Err(key) = self.queue.push(side, key) {
                full.push(key);
            }
        }
        if !full.is_empty() {
            self.failed(CopyFailure::QueueFull, &full);
        }
        if !pending.reads.is_empty() {
            for (side, req) in pending.reads.drain(..) {
                self.parity.push(side, req);
            }
            // The worker checks reads after its copies.
            self.queue.ready.notify_one();
        }
        self.stats.queue_depth.set(self.queue.depth().0 as f64);
    }

    /// Count and log keys that could not be copied: one `warn` line with the count (no key
    /// bytes), and at `debug` one line per key naming it.
    fn failed(&self, why: CopyFailure, keys: &[Bytes]) {
        self.stats.failure(why).add(keys.len() as u64);
        warn!(
            reason = why.label(),
            keys = keys.len(),
            "migration: keys could not be copied to the other store; run `resp-sidecar verify` (and `migrate`) to repair"
        );
        for key in keys {
            debug!(reason = why.label(), key = %verify::quote(key), "migration: key not copied");
        }
    }

    /// The namespace a new-store key belongs to, for the mismatch label.
    fn namespace_of(&self, key: &[u8]) -> &str {
        self.namespaces
            .iter()
            .filter(|(_, p)| key.starts_with(p))
            .max_by_key(|(_, p)| p.len())
            .map(|(n, _)| n.as_str())
            .unwrap_or("none")
    }

    /// `SIDECAR MIGRATION STATUS`, one line per fact.
    pub fn status(&self) -> Vec<String> {
        let (waiting, parked) = self.queue.depth();
        // Keys the worker is copying right now count as queued until they are done.
        let depth = waiting + self.copying.load(Ordering::Acquire);
        let phase = self.phase();
        let mut lines = vec![
            format!("phase:{}", phase.label()),
            format!("serving:{}", serving_side(phase).label()),
            format!(
                "copying:{}",
                match phase {
                    Phase::Shadow => "old -> new",
                    Phase::Flipped => "new -> old",
                    _ => "no",
                }
            ),
            format!(
                "old_store:{}",
                self.config
                    .old
                    .as_ref()
                    .map(|o| o.url.as_str())
                    .unwrap_or("")
            ),
            format!(
                "old_db:{}",
                self.old_db
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "none".into())
            ),
            format!(
                "compare_sample:{}",
                f64::from(self.compare_ppm.load(Ordering::Relaxed)) / 1e6
            ),
            format!(
                "last_switch:{}",
                self.last_switch
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_default()
            ),
            format!("queue_depth:{depth}"),
            format!("parked_keys:{parked}"),
            format!("keys_copied:{}", self.stats.copied.get()),
            format!("copy_retries:{}", self.stats.retries.get()),
        ];
        let failures: u64 = self.stats.failures().map(|(_, n)| n).sum();
        lines.push(format!("copy_failures:{failures}"));
        for (why, n) in self.stats.failures() {
            lines.push(format!("copy_failures_{}:{n}", why.label()));
        }
        lines.push(format!("parity_checks:{}", self.stats.parity_checks.get()));
        let mismatches = self.stats.mismatches();
        let total: u64 = mismatches.iter().map(|m| m.2).sum();
        lines.push(format!("parity_mismatches:{total}"));
        for (ns, cmd, n) in mismatches {
            lines.push(format!(
                "parity_mismatches{{namespace={ns},command={cmd}}}:{n}"
            ));
        }
        lines.extend(self.parity.recent());
        lines
    }
}

/// True in the phases that copy writes to the other store.
pub fn copies(phase: Phase) -> bool {
    matches!(phase, Phase::Shadow | Phase::Flipped)
}

/// The store of record in `phase`.
pub fn serving_side(phase: Phase) -> Side {
    match phase {
        Phase::Off | Phase::Shadow => Side::Old,
        Phase::Flipped | Phase::Done => Side::New,
    }
}
