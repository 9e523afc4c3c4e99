//! The bounded set of keys waiting to be copied, in first-written order, each once.
//!
//! A key written again before its copy ran is not queued twice: the copy that runs
//! reads the key's state at that moment, which includes every earlier write. The side
//! that was written last decides the direction. Keys whose copy failed are parked
//! (bounded too) until the other store answers again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

use super::keymap::Side;

#[derive(Default)]
struct State {
    order: VecDeque<Bytes>,
    /// Key -> the store it was last written in.
    pending: HashMap<Bytes, Side>,
    parked: HashMap<Bytes, Side>,
}

pub struct Queue {
    state: Mutex<State>,
    pub(super) ready: Notify,
    max: usize,
}

impl Queue {
    pub fn new(max: usize) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            max: max.max(1),
        }
    }

    /// Queue `key`, written in `side`, for copying to the other store; the key comes
    /// back when the queue is full.
    pub fn push(&self, side: Side, key: Bytes) -> Result<(), Bytes> {
        let Ok(mut s) = self.state.lock() else {
            return Err(key);
        };
        if let Some(at) = s.pending.get_mut(&key) {
            *at = side;
            return Ok(());
        }
        if s.pending.len() >= self.max {
            return Err(key);
        }
        s.pending.insert(key.clone(), side);
        s.order.push_back(key);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// Up to `n` keys to copy now, oldest first. `copying` is set to the number taken
    /// before they leave the queue (so "nothing queued, nothing copying" is never seen
    /// while a copy is about to run).
    pub fn take_counted(
        &self,
        n: usize,
        copying: &std::sync::atomic::AtomicUsize,
    ) -> Vec<(Bytes, Side)> {
        let Ok(mut s) = self.state.lock() else {
            return Vec::new();
        };
        copying.store(n.min(s.pending.len()), std::sync::atomic::Ordering::Release);
        let mut out = Vec::with_capacity(n.min(s.order.len()));
        while out.len() < n {
            let Some(key) = s.order.pop_front() else {
                break;
            };
            if let Some(side) = s.pending.remove(&key) {
                out.push((key, side));
            }
        }
        out
    }

    /// Whether `key` waits for a copy.
    pub fn is_pending(&self, key: &Bytes) -> bool {
        self.state
            .lock()
            .map(|s| s.pending.contains_key(key))
            .unwrap_or(false)
    }

    /// Keep a key whose copy failed, to try again later. False when the parked set is full.
    pub fn park(&self, side: Side, key: Bytes) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.parked.len() >= self.max && !s.parked.contains_key(&key) {
            return false;
        }
        s.parked.insert(key, side);
        true
    }

    /// Move parked keys back into the queue (those it has room for). Returns how many.
    pub fn unpark(&self) -> usize {
        let Ok(mut s) = self.state.lock() else {
            return 0;
        };
        let parked: Vec<(Bytes, Side)> = s.parked.drain().collect();
        let mut moved = 0;
        for (key, side) in parked {
            if s.pending.contains_key(&key) {
                moved += 1;
                continue;
            }
            if s.pending.len() >= self.max {
                s.parked.insert(key, side);
                continue;
            }
            s.pending.insert(key.clone(), side);
            s.order.push_back(key);
            moved += 1;
        }
        drop(s);
        if moved > 0 {
            self.ready.notify_one();
        }
        moved
    }

    /// (keys waiting, keys parked).
    pub fn depth(&self) -> (usize, usize) {
        self.state
            .lock()
            .map(|s| (s.pending.len(), s.parked.len()))
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &'static str) -> Bytes {
        Bytes::from_static(k.as_bytes())
    }

    #[test]
    fn repeated_keys_coalesce_and_the_last_side_wins() {
        let q = Queue::new(2);
        q.push(Side::Old, key("a")).expect("room");
        q.push(Side::Old, key("b")).expect("room");
        q.push(Side::New, key("a")).expect("already queued");
        assert_eq!(q.push(Side::Old, key("c")), Err(key("c")));
        assert_eq!(
            q.take_counted(10, &Default::default()),
            vec![(key("a"), Side::New), (key("b"), Side::Old)]
        );
        assert_eq!(q.depth(), (0, 0));
    }

    #[test]
    fn parked_keys_come_back_within_the_bound() {
        let q = Queue::new(1);
        assert!(q.park(Side::Old, key("a")));
        assert!(!q.park(Side::Old, key("b")));
        assert_eq!(q.depth(), (0, 1));
        assert_eq!(q.unpark(), 1);
        assert!(q.is_pending(&key("a")));
        assert_eq!(q.depth(), (1, 0));
    }
}
