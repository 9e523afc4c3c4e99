//! The cache stage: a bounded local copy of reads from namespaces with `cache = true`,
//! kept coherent with Redis by server-assisted invalidation.
//!
//! Pure: no IO. The invalidation listener ([`crate::upstream::invalidation`]) owns the
//! `CLIENT TRACKING` connection and tells the cache when it is verified, what Redis
//! invalidated and when the stream was lost; the client loop asks [`plan`] what to do
//! with each request and hands fill replies back through [`Ticket`]s.
//!
//! The rules that make it never wrong:
//! - an entry is served as fresh only while the invalidation stream that was live when
//!   it was filled is still live (the generation matches) and before its expiry, which
//!   is the key's TTL in Redis fetched with the fill, capped by `cache.max_ttl`;
//! - a read is marked in flight before it is sent; an invalidation of that key (or a
//!   flush, or the loss of the stream) while it is in flight discards its fill;
//! - losing the stream (disconnect, failover, missed heartbeat) ends the generation at
//!   once, so no entry is served as fresh again; entries of that generation may only be
//!   served as stale, to `degrade = "serve-stale"` namespaces, while Redis is unreachable
//!   and for at most `cache.stale_if_error`; a new stream clears them all.

pub mod answer;
mod entry;
pub mod plan;
mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quick_cache::sync::Cache as Store;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};

pub use answer::{Data, DataRef};
pub use entry::Entry;
use entry::Key;
pub use stats::{NsStats, Snapshot};

/// Bytes an entry is charged beyond its key and value, so that the process stays
/// within `max_bytes` + 30 MB while the cache is full and churning.
///
/// The entry's own memory (the store's slot and hash-table room, the allocation's
/// counts and header, the allocator's own header) comes to about 150 bytes. The
/// rest is what the allocator keeps under steady eviction and refill: glibc's
/// free lists hold the holes that evicted entries of other sizes leave behind.
/// Measured with `benches/cache.sh` step 3 (200k keys of 1 KiB, 50 clients at
/// -P 16): with 128 the RSS of a 64 MiB cache crept past its bound; with 384 it
/// levels off below it at both 32 and 64 MiB.
pub const ENTRY_OVERHEAD: usize = 384;

/// The time hits are checked against: read once, at the first lookup that finds an
/// entry, and then shared by the lookups after it until [`Clock::reset`].
///
/// A client reads it once per batch of requests (a clock read was about 4% of a cached
/// GET's CPU at -P 16) and resets it before each batch and after anything that waited.
/// Every request of a batch had arrived before the clock was read, and the reply of
/// every request checked against it goes out after that, so a hit answers with what
/// the key held at a moment within the request's lifetime, as a read that Redis served
/// at that moment would. Nanoseconds from one cache's epoch: a clock serves one cache.
#[derive(Debug, Default)]
pub struct Clock(std::cell::Cell<u64>);

impl Clock {
    /// The time in nanoseconds from the cache's epoch, read with `read` if not yet.
    fn nanos(&self, read: impl FnOnce() -> u64) -> u64 {
        match self.0.get() {
            // 0 is "not read": a reading of 0 (the epoch itself) is simply taken again.
            0 => {
                let now = read();
                self.0.set(now);
                now
            }
            now => now,
        }
    }

    /// The next lookup reads the time again.
    pub fn reset(&self) {
        self.0.set(0);
    }
}

/// What a lookup found.
pub enum Lookup {
    Fresh(Entry),
    /// Filled while the last stream was live; Redis is unreachable now and the
    /// stale window has not passed.
    Stale(Entry),
    Miss,
}

/// Why the stream is not live.
#[derive(Debug, Clone)]
pub struct Down {
    pub since: Instant,
    /// The generation whose entries may be served as stale.
    stale_gen: u64,
    /// A connect attempt failed since the stream was lost: Redis is unreachable.
    pub unreachable: bool,
    pub reason: String,
}

#[derive(Default)]
struct Coherence {
    /// Bumped by every invalidation, flush and loss.
    seq: u64,
    /// The `seq` of the last flush or loss: fills ticketed before it are discarded.
    flush_seq: u64,
    next_gen: u64,
    inflight: HashMap<Bytes, Inflight>,
    down: Option<Down>,
}

/// Reads of one key in flight, and when the key was last invalidated.
struct Inflight {
    readers: u32,
    invalidated_at: u64,
}

pub struct Cache {
    store: Store<Key, Entry, Weigh, DefaultHashBuilder, Evictions>,
    /// Entries' expiry is kept in nanoseconds from here.
    epoch: Instant,
    coherence: Mutex<Coherence>,
    /// The live generation; 0 while the stream is not verified.
    live: AtomicU64,
    max_ttl: Duration,
    stale_if_error: Duration,
    /// Every namespace's counters; an entry names its namespace by index.
    stats: Registry,
    /// Whole-cache events: streams verified, lost, flushes.
    pub verified_total: AtomicU64,
    /// Set while another store serves (a migration's `off`/`shadow`): emptied once.
    suspended: AtomicBool,
    pub lost_total: AtomicU64,
    pub flushes_total: AtomicU64,
}

/// The counters of every namespace that ever had a cache, by the index entries hold.
type Registry = Arc<Mutex<Vec<Arc<NsStats>>>>;

fn registry(r: &Registry) -> MutexGuard<'_, Vec<Arc<NsStats>>> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// Count `counter` of the namespace of `entry`.
fn count_for(r: &Registry, entry: &Entry, counter: fn(&NsStats) -> &AtomicU64) {
    if let Some(s) = registry(r).get(usize::from(entry.ns())) {
        counter(s).fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct Weigh;

impl Weighter<Key, Entry> for Weigh {
    fn weight(&self, _: &Key, val: &Entry) -> u64 {
        val.weight()
    }
}

#[derive(Clone)]
struct Evictions(Registry);

impl Lifecycle<Key, Entry> for Evictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _: &mut (), _: Key, val: Entry) {
        count_for(&self.0, &val, |s| &s.evictions);
    }
}

impl Cache {
    /// An empty cache of at most `max_bytes` (keys, values and overhead), not yet verified.
    pub fn new(max_bytes: usize, max_ttl: Duration, stale_if_error: Duration) -> Cache {
        let estimated = (max_bytes / 512).clamp(64, 1 << 20);
        let stats = Registry::default();
        Cache {
            store: Store::with(
                estimated,
                max_bytes as u64,
                Weigh,
                DefaultHashBuilder::default(),
                Evictions(stats.clone()),
            ),
            epoch: Instant::now(),
            coherence: Mutex::new(Coherence {
                down: Some(Down {
                    since: Instant::now(),
                    stale_gen: 0,
                    unreachable: false,
                    reason: "invalidation stream not connected yet".into(),
                }),
                ..Coherence::default()
            }),
            live: AtomicU64::new(0),
            max_ttl,
            stale_if_error,
            stats,
            verified_total: AtomicU64::new(0),
            suspended: AtomicBool::new(false),
            lost_total: AtomicU64::new(0),
            flushes_total: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Coherence> {
        // A panic while holding the lock cannot leave it inconsistent in a way that
        // serves stale data (every path re-checks the generation), so keep going.
        self.coherence.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counters of namespace `name` (made on first use, kept across reloads).
    pub fn stats_for(&self, name: &str) -> Arc<NsStats> {
        let mut all = registry(&self.stats);
        if let Some(s) = all.iter().find(|s| s.name == name) {
            return s.clone();
        }
        // Entries name their namespace in 16 bits; past that (65,536 namespaces with a
        // cache over one process's life) new ones share the last index's counters.
        let id = u16::try_from(all.len()).unwrap_or(u16::MAX);
        let s = Arc::new(NsStats::new(name, id));
        all.push(s.clone());
        s
    }

    /// True while the invalidation stream is verified.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire) != 0
    }

    /// Look `key` up for serving (`stale_ok`: the namespace may be served stale), with
    /// expiry checked against `clock`.
    pub fn lookup(&self, key: &[u8], stale_ok: bool, clock: &Clock) -> Lookup {
        let live = self.live.load(Ordering::Acquire);
        let Some(entry) = self.store.get(key) else {
            return Lookup::Miss;
        };
        if entry.expires_ns() <= clock.nanos(|| self.nanos(Instant::now())) {
            return Lookup::Miss;
        }
        if live != 0 && entry.gen() == live {
            return Lookup::Fresh(entry);
        }
        if live == 0 && stale_ok {
            if let Some(down) = self.lock().down.as_ref() {
                if down.unreachable
                    && entry.gen() == down.stale_gen
                    && down.since.elapsed() <= self.stale_if_error
                {
                    return Lookup::Stale(entry);
                }
            }
        }
        Lookup::Miss
    }

    /// `at` in nanoseconds from the epoch (saturating: an expiry centuries away is
    /// the same as none).
    fn nanos(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.epoch);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }

    /// Store `data` under `key`, filled under generation `gen`, served until `expires`.
    fn put(&self, key: &[u8], data: Data, gen: u64, expires: Instant, ns: &NsStats) {
        if let Some((key, entry)) = Entry::stored(key, data, gen, self.nanos(expires), ns.id) {
            self.store.insert(key, entry);
        }
    }

    /// Mark reads of `keys` in flight before they are sent. `None` while the stream is
    /// not verified: such reads are forwarded but never filled.
    pub fn begin_fill(self: &Arc<Self>, keys: Vec<Bytes>) -> Option<Ticket> {
        let mut c = self.lock();
        let gen = self.live.load(Ordering::Acquire);
        if gen == 0 {
            return None;
        }
        for k in &keys {
            c.inflight
                .entry(k.clone())
                .or_insert(Inflight {
                    readers: 0,
                    invalidated_at: 0,
                })
                .readers += 1;
        }
        Some(Ticket {
            cache: self.clone(),
            seq: c.seq,
            gen,
            keys,
            taken: Instant::now(),
        })
    }

    /// Store what a ticketed read returned, unless the key was invalidated, the cache
    /// flushed or the stream lost since the ticket was taken. `pttl_ms` is the key's
    /// PTTL reply (-1: no expiry, -2: no key). True when stored.
    pub fn fill(
        &self,
        ticket: &Ticket,
        key: &Bytes,
        data: Data,
        pttl_ms: i64,
        ns: &Arc<NsStats>,
    ) -> bool {
        let c = self.lock();
        if !self.unspoiled(&c, ticket, key) {
            ns.fills_discarded.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let ttl = match pttl_ms {
            -1 => self.max_ttl,
            ms if ms > 0 => self.max_ttl.min(Duration::from_millis(ms as u64)),
            // -2 (gone) or 0: a missing key; an existing one about to expire.
            _ if matches!(data, Data::Missing) => self.max_ttl,
            _ => return false,
        };
        // Counted from before the read was sent, so before Redis answered the PTTL.
        self.put(key, data, ticket.gen, ticket.taken + ttl, ns);
        drop(c);
        true
    }

    /// A write of `key` sent on the invalidation connection with `ticket` (taken just
    /// before it was sent) was answered. Redis does not notify that
    /// connection of its own writes, so this does what the notification would have
    /// done (drop the old entry, spoil every read of the key in flight, which the write
    /// may have overtaken) and then, when the write succeeded with `value` and nothing
    /// invalidated the key, flushed the cache or lost the stream since the ticket was
    /// taken, stores the value written. `ttl` is the TTL the write gave the key (None:
    /// no expiry); the entry expires that long after the ticket was taken, before the key does.
    /// True when stored.
    pub fn written(
        &self,
        ticket: &Ticket,
        key: &Bytes,
        value: Option<(Bytes, Option<Duration>)>,
        ns: &Arc<NsStats>,
    ) -> bool {
        let mut c = self.lock();
        let keep = self.unspoiled(&c, ticket, key);
        self.drop_keys(&mut c, &[key]);
        let wrote = value.is_some();
        let Some((value, ttl)) = value.filter(|_| keep) else {
            if wrote {
                ns.fills_discarded.fetch_add(1, Ordering::Relaxed);
            }
            return false;
        };
        let ttl = ttl.map_or(self.max_ttl, |t| t.min(self.max_ttl));
        self.put(key, Data::Str(value), ticket.gen, ticket.taken + ttl, ns);
        ns.write_fills.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Redis (or a write through this sidecar) changed `keys`: drop them and spoil the
    /// fills of any read of them in flight.
    pub fn invalidate<K: AsRef<[u8]>>(&self, keys: &[K]) {
        let mut c = self.lock();
        self.drop_keys(&mut c, keys);
    }

    /// Nothing invalidated `key`, flushed the cache or lost the stream since `ticket`
    /// was taken: what its read (or write) returned may be stored.
    fn unspoiled(&self, c: &Coherence, ticket: &Ticket, key: &[u8]) -> bool {
        let raced = c
            .inflight
            .get(key)
            .is_some_and(|i| i.invalidated_at > ticket.seq);
        self.live.load(Ordering::Acquire) == ticket.gen && c.flush_seq <= ticket.seq && !raced
    }

    /// [`Cache::invalidate`] with the lock held.
    fn drop_keys<K: AsRef<[u8]>>(&self, c: &mut Coherence, keys: &[K]) {
        c.seq += 1;
        let seq = c.seq;
        for key in keys {
            let key = key.as_ref();
            if let Some(i) = c.inflight.get_mut(key) {
                i.invalidated_at = seq;
            }
            if let Some((_, e)) = self.store.remove(key) {
                count_for(&self.stats, &e, |s| &s.invalidations);
            }
        }
    }

    /// Everything may have changed (null invalidation, FLUSHALL): drop every entry.
    pub fn flush(&self) {
        let mut c = self.lock();
        c.seq += 1;
        c.flush_seq = c.seq;
        self.store.clear();
        self.flushes_total.fetch_add(1, Ordering::Relaxed);
    }

    /// The invalidation stream is subscribed: start a new generation with an empty cache
    /// (entries of an earlier stream are never served as fresh).
    pub fn verified(&self) {
        let mut c = self.lock();
        c.seq += 1;
        c.flush_seq = c.seq;
        c.next_gen += 1;
        c.down = None;
        self.store.clear();
        self.live.store(c.next_gen, Ordering::Release);
        self.verified_total.fetch_add(1, Ordering::Relaxed);
    }

    /// The stream was lost: nothing is fresh any more; in-flight fills are discarded.
    pub fn lost(&self, reason: String) {
        let mut c = self.lock();
        c.seq += 1;
        c.flush_seq = c.seq;
        let gen = self.live.swap(0, Ordering::AcqRel);
        if gen != 0 {
            self.lost_total.fetch_add(1, Ordering::Relaxed);
            c.down = Some(Down {
                since: Instant::now(),
                stale_gen: gen,
                unreachable: false,
                reason,
            });
        } else if let Some(down) = c.down.as_mut() {
            down.reason = reason;
        }
    }

    /// A connect attempt failed while the stream is down: Redis is unreachable.
    pub fn unreachable(&self, reason: String) {
        let mut c = self.lock();
        if let Some(down) = c.down.as_mut() {
            down.unreachable = true;
            down.reason = reason;
        }
    }

    /// Why the stream is down, if it is.
    pub fn down(&self) -> Option<Down> {
        if self.is_live() {
            return None;
        }
        self.lock().down.clone()
    }

    /// Another store serves the data path: entries cannot be kept coherent, so the cache
    /// is emptied (once) and the client loop stops using it until [`Cache::resume`].
    pub fn suspend(&self) {
        if !self.suspended.swap(true, Ordering::AcqRel) {
            self.flush();
        }
    }

    /// The upstream serves again. Entries filled before the suspension were flushed; a
    /// read in flight across it was spoiled by that flush.
    pub fn resume(&self) {
        if self.suspended.load(Ordering::Relaxed) {
            self.suspended.store(false, Ordering::Release);
        }
    }

    /// Resize on reload (entries beyond the new size are evicted).
    pub fn set_max_bytes(&self, max_bytes: usize) {
        self.store.set_capacity(max_bytes as u64);
    }

    fn unmark(&self, keys: &[Bytes]) {
        let mut c = self.lock();
        for k in keys {
            if let Some(i) = c.inflight.get_mut(k) {
                i.readers = i.readers.saturating_sub(1);
                if i.readers == 0 {
                    c.inflight.remove(k);
                }
            }
        }
    }

    /// Figures for the admin surface and `/metrics`.
    pub fn snapshot(&self) -> Snapshot {
        let stats = registry(&self.stats).clone();
        stats::snapshot(self, stats)
    }
}

/// Reads in flight for some keys; dropping it (fill done, reply lost, client gone)
/// unmarks them.
pub struct Ticket {
    cache: Arc<Cache>,
    seq: u64,
    gen: u64,
    keys: Vec<Bytes>,
    /// Before the read was sent: a fill's TTL counts from here.
    taken: Instant,
}

impl Ticket {
    pub fn keys(&self) -> &[Bytes] {
        &self.keys
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("keys", &self.keys.len())
            .field("seq", &self.seq)
            .finish()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.cache.unmark(&self.keys);
    }
}

#[cfg(test)]
mod tests;
