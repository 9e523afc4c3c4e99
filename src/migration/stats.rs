//! The migration's counters: kept here for `SIDECAR MIGRATION STATUS` and mirrored
//! into the instance's Prometheus registry (`sidecar_migration_*`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ::metrics::{Counter, Gauge};

use crate::config::Phase;
use crate::metrics::Registry;

/// Why a key could not be copied (`reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFailure {
    /// The queue held `queue_max` keys already.
    QueueFull,
    /// Every attempt failed (the other store unreachable or erroring); the key is parked.
    Unreachable,
    /// The store answered an error for this key (e.g. a DUMP payload it cannot read).
    Refused,
    /// Parked keys exceeded `queue_max`: only a backfill or verify finds this key again.
    Dropped,
}

impl CopyFailure {
    pub const ALL: [CopyFailure; 4] = [
        CopyFailure::QueueFull,
        CopyFailure::Unreachable,
        CopyFailure::Refused,
        CopyFailure::Dropped,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            CopyFailure::QueueFull => "queue_full",
            CopyFailure::Unreachable => "unreachable",
            CopyFailure::Refused => "refused",
            CopyFailure::Dropped => "dropped",
        }
    }
}

/// A counter visible both in STATUS and on /metrics.
pub struct Count {
    value: AtomicU64,
    counter: Counter,
}

impl Count {
    fn new(counter: Counter) -> Count {
        Count {
            value: AtomicU64::new(0),
            counter,
        }
    }

    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        self.counter.increment(n);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

pub struct Stats {
    pub copied: Count,
    pub retries: Count,
    pub parity_checks: Count,
    failures: Vec<Count>,
    phase: Vec<Gauge>,
    pub queue_depth: Gauge,
    pub parked: Gauge,
    /// (namespace, command) -> mismatches; registered on first use.
    mismatches: Mutex<HashMap<(String, &'static str), Count>>,
    registry: Registry,
}

impl Stats {
    pub fn new(registry: Registry) -> Stats {
        let m = &registry;
        Stats {
            copied: Count::new(m.counter(
                "sidecar_migration_keys_copied_total",
                &[],
                "Keys whose state was copied to the other store (RESTORE or DEL)",
            )),
            retries: Count::new(m.counter(
                "sidecar_migration_copy_retries_total",
                &[],
                "Copy batches tried again after a failed exchange",
            )),
            parity_checks: Count::new(m.counter(
                "sidecar_migration_parity_checks_total",
                &[],
                "Sampled reads compared between the two stores",
            )),
            failures: CopyFailure::ALL
                .iter()
                .map(|f| {
                    Count::new(m.counter(
                        "sidecar_migration_copy_failures_total",
                        &[("reason", f.label().to_owned())],
                        "Keys that could not be copied to the other store, by reason",
                    ))
                })
                .collect(),
            phase: Phase::ALL
                .iter()
                .map(|p| {
                    m.gauge(
                        "sidecar_migration_phase",
                        &[("phase", p.label().to_owned())],
                        "1 for the current migration phase, 0 for the others",
                    )
                })
                .collect(),
            queue_depth: m.gauge(
                "sidecar_migration_queue_depth",
                &[],
                "Keys waiting to be copied to the other store",
            ),
            parked: m.gauge(
                "sidecar_migration_parked_keys",
                &[],
                "Keys whose copy failed, waiting for the other store to answer again",
            ),
            mismatches: Mutex::new(HashMap::new()),
            registry: registry.clone(),
        }
    }

    pub fn failure(&self, why: CopyFailure) -> &Count {
        &self.failures[why as usize]
    }

    pub fn failures(&self) -> impl Iterator<Item = (CopyFailure, u64)> + '_ {
        CopyFailure::ALL
            .iter()
            .map(|f| (*f, self.failure(*f).get()))
    }

    pub fn set_phase(&self, phase: Phase) {
        for (p, g) in Phase::ALL.iter().zip(&self.phase) {
            g.set(if *p == phase { 1.0 } else { 0.0 });
        }
    }

    /// Count a parity mismatch of `command` in `namespace`.
    pub fn mismatch(&self, namespace: &str, command: &'static str) {
        let Ok(mut map) = self.mismatches.lock() else {
            return;
        };
        map.entry((namespace.to_owned(), command))
            .or_insert_with(|| {
                Count::new(self.registry.counter(
                    "sidecar_migration_parity_mismatches_total",
                    &[
                        ("namespace", namespace.to_owned()),
                        ("command", command.to_owned()),
                    ],
                    "Sampled reads whose replies differed between the stores, by namespace and command",
                ))
            })
            .add(1);
    }

    /// Mismatches so far, by (namespace, command), sorted.
    pub fn mismatches(&self) -> Vec<(String, &'static str, u64)> {
        let mut out: Vec<_> = self
            .mismatches
            .lock()
            .map(|m| {
                m.iter()
                    .map(|((n, c), v)| (n.clone(), *c, v.get()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}
