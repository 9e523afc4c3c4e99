//! Cache counters per namespace, and the snapshot the admin surface and `/metrics` read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Cache, Down};

/// Counters of one namespace; kept across reloads (a namespace keeps its series).
#[derive(Debug)]
pub struct NsStats {
    pub name: String,
    /// Its index in the cache's registry, which entries hold.
    pub id: u16,
    pub hits: AtomicU64,
    /// Served from an unverified entry while Redis was unreachable.
    pub stale_hits: AtomicU64,
    pub misses: AtomicU64,
    pub fills: AtomicU64,
    /// Fills dropped because the key was invalidated (or the stream lost) while in flight.
    pub fills_discarded: AtomicU64,
    /// Entries stored from a write through this sidecar (`cache.fill_on_write`).
    pub write_fills: AtomicU64,
    pub evictions: AtomicU64,
    /// Entries removed because Redis or a write through this sidecar changed the key.
    pub invalidations: AtomicU64,
}

impl NsStats {
    pub fn new(name: &str, id: u16) -> NsStats {
        NsStats {
            name: name.to_string(),
            id,
            hits: AtomicU64::new(0),
            stale_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            fills: AtomicU64::new(0),
            fills_discarded: AtomicU64::new(0),
            write_fills: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One namespace's figures at a moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsFigures {
    pub name: String,
    pub hits: u64,
    pub stale_hits: u64,
    pub misses: u64,
    pub fills: u64,
    pub fills_discarded: u64,
    pub write_fills: u64,
    pub evictions: u64,
    pub invalidations: u64,
    pub entries: u64,
    pub bytes: u64,
}

impl NsFigures {
    /// Hits over hits and misses, 0 before any read.
    pub fn hit_rate(&self) -> f64 {
        let all = self.hits + self.misses;
        if all == 0 {
            0.0
        } else {
            self.hits as f64 / all as f64
        }
    }
}

/// The whole cache at a moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub live: bool,
    pub down: Option<Down>,
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub verified_total: u64,
    pub lost_total: u64,
    pub flushes_total: u64,
    pub namespaces: Vec<NsFigures>,
}

impl Snapshot {
    /// Totals over every namespace.
    pub fn total(&self) -> NsFigures {
        let mut t = NsFigures::default();
        for n in &self.namespaces {
            t.hits += n.hits;
            t.stale_hits += n.stale_hits;
            t.misses += n.misses;
            t.fills += n.fills;
            t.fills_discarded += n.fills_discarded;
            t.write_fills += n.write_fills;
            t.evictions += n.evictions;
            t.invalidations += n.invalidations;
            t.entries += n.entries;
            t.bytes += n.bytes;
        }
        t
    }
}

pub(super) fn snapshot(cache: &Cache, stats: Vec<Arc<NsStats>>) -> Snapshot {
    // Entries and bytes per namespace are counted here, off the data path.
    let mut held: HashMap<u16, (u64, u64)> = HashMap::new();
    for (_, entry) in cache.store.iter() {
        let slot = held.entry(entry.ns()).or_default();
        slot.0 += 1;
        slot.1 += entry.weight();
    }
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let namespaces = stats
        .iter()
        .map(|s| {
            let (entries, bytes) = held.get(&s.id).copied().unwrap_or_default();
            NsFigures {
                name: s.name.clone(),
                hits: load(&s.hits),
                stale_hits: load(&s.stale_hits),
                misses: load(&s.misses),
                fills: load(&s.fills),
                fills_discarded: load(&s.fills_discarded),
                write_fills: load(&s.write_fills),
                evictions: load(&s.evictions),
                invalidations: load(&s.invalidations),
                entries,
                bytes,
            }
        })
        .collect();
    Snapshot {
        live: cache.is_live(),
        down: cache.down(),
        entries: cache.store.len() as u64,
        bytes: cache.store.weight(),
        max_bytes: cache.store.capacity(),
        verified_total: load(&cache.verified_total),
        lost_total: load(&cache.lost_total),
        flushes_total: load(&cache.flushes_total),
        namespaces,
    }
}

/// Reads one figure of a namespace.
type Figure = dyn Fn(&NsFigures) -> u64;

impl Snapshot {
    /// The cache series in the Prometheus text format, appended to `/metrics`.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, values: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in values {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let per_ns = |f: &Figure| -> Vec<(String, u64)> {
            self.namespaces
                .iter()
                .map(|n| (format!("{{namespace=\"{}\"}}", n.name), f(n)))
                .collect()
        };
        let counters: [(&str, &str, &Figure); 8] = [
            ("sidecar_cache_hits_total", "Reads answered from the cache, by namespace", &|n| n.hits),
            ("sidecar_cache_stale_hits_total", "Reads answered from unverified entries while Redis was unreachable (degrade = serve-stale)", &|n| n.stale_hits),
            ("sidecar_cache_misses_total", "Cacheable reads sent to Redis, by namespace", &|n| n.misses),
            ("sidecar_cache_fills_total", "Entries stored from Redis replies", &|n| n.fills),
            ("sidecar_cache_fills_discarded_total", "Fills dropped because the key changed (or the stream was lost) while the read was in flight", &|n| n.fills_discarded),
            ("sidecar_cache_write_fills_total", "Entries stored from the value of a SET through this sidecar (cache.fill_on_write)", &|n| n.write_fills),
            ("sidecar_cache_evictions_total", "Entries evicted to stay within cache.max_bytes", &|n| n.evictions),
            ("sidecar_cache_invalidations_total", "Entries removed because the key changed (Redis push or a write through this sidecar)", &|n| n.invalidations),
        ];
        for (name, help, f) in counters {
            family(name, "counter", help, per_ns(f));
        }
        family(
            "sidecar_cache_entries",
            "gauge",
            "Entries held, by namespace",
            per_ns(&|n| n.entries),
        );
        family(
            "sidecar_cache_bytes",
            "gauge",
            "Bytes held (keys, values and per-entry overhead), by namespace",
            per_ns(&|n| n.bytes),
        );
        let one = |v: u64| vec![(String::new(), v)];
        family(
            "sidecar_cache_max_bytes",
            "gauge",
            "cache.max_bytes",
            one(self.max_bytes),
        );
        family(
            "sidecar_cache_stream_up",
            "gauge",
            "1 while the invalidation stream is verified (entries may be served), else 0",
            one(u64::from(self.live)),
        );
        family(
            "sidecar_cache_streams_lost_total",
            "counter",
            "Losses of the invalidation stream (disconnect, failover, missed heartbeat, reload)",
            one(self.lost_total),
        );
        family("sidecar_cache_flushes_total", "counter", "Whole-cache flushes (null invalidations, FLUSHALL/FLUSHDB/SIDECAR FLUSH through this sidecar)", one(self.flushes_total));
        out
    }
}
