//! Sliding expiry's memory: when each key was last refreshed, so reads send at most
//! one `PEXPIRE` per key per interval across every client of the sidecar.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Remembers when each key was last touched so sliding expiry sends at most one
/// `PEXPIRE` per key per interval. Shared by every client task.
///
/// Memory is bounded: at most `capacity` keys are tracked. When a shard is full, entries
/// whose interval has passed are forgotten (they would be due anyway), then, if more than
/// three quarters remain, those that come due soonest. The trade-off: a key forgotten
/// early is touched once more than needed, one extra `PEXPIRE`, never one too few.
pub struct TouchThrottle {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
}

/// Each tracked key and the instant it is next due.
type Shard = HashMap<Box<[u8]>, Instant>;

impl TouchThrottle {
    /// Keys per shard below which one shard (one lock) is enough.
    const SHARD_MIN: usize = 256;
    const SHARDS_MAX: usize = 16;

    /// Track at most `capacity` keys; 0 tracks none (every read touches).
    pub fn new(capacity: usize) -> TouchThrottle {
        let shards = (capacity / Self::SHARD_MIN).clamp(1, Self::SHARDS_MAX);
        TouchThrottle {
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity / shards,
            hasher: RandomState::new(),
        }
    }

    /// True when `key` was not touched within the last `interval`; records `now` as its
    /// last touch when it returns true.
    pub fn due(&self, key: &[u8], interval: Duration, now: Instant) -> bool {
        if self.per_shard == 0 {
            return true;
        }
        let next = now.checked_add(interval).unwrap_or(now);
        let mut shard = self.shard(key);
        if let Some(at) = shard.get_mut(key) {
            if now < *at {
                return false;
            }
            *at = next;
            return true;
        }
        if shard.len() >= self.per_shard {
            make_room(&mut shard, self.per_shard, now);
        }
        shard.insert(key.into(), next);
        true
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys ever tracked.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        let hash = self.hasher.hash_one(key);
        // The remainder is below the shard count, so it fits in usize.
        self.lock((hash % self.shards.len() as u64) as usize)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A panic elsewhere cannot leave the map inconsistent: every update is one call.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for TouchThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TouchThrottle")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Bring a full shard down to three quarters of `capacity`: first the entries already due,
/// then those coming due soonest (the least is lost by forgetting them).
fn make_room(map: &mut Shard, capacity: usize, now: Instant) {
    map.retain(|_, next| *next > now);
    let target = capacity - capacity.div_ceil(4);
    if map.len() <= target {
        return;
    }
    let mut times: Vec<Instant> = map.values().copied().collect();
    let drop = map.len() - target;
    let (sooner, cutoff, _) = times.select_nth_unstable(drop - 1);
    let cutoff = *cutoff;
    // Entries touched at the same instant tie at the cutoff: drop only as many as needed.
    let mut ties = drop - sooner.iter().filter(|t| **t < cutoff).count();
    map.retain(|_, next| {
        let keep = *next > cutoff || (*next == cutoff && ties == 0);
        ties -= usize::from(*next == cutoff && !keep);
        keep
    });
}
