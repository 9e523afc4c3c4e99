//! Parity checks: a sample of reads is run again against both stores and the replies
//! compared. Run by the copy worker after its copies, so a key's own pending copy is
//! not mistaken for a difference; a key queued again meanwhile is skipped, and a
//! difference is confirmed by a second read before it is counted.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::keymap::Side;
use super::verify::{quote, sort};
use super::Migration;
use crate::keys;

/// Sampled reads one client batch may hand over, and reads waiting to be checked.
pub const MAX_PENDING: usize = 64;
const MAX_QUEUED: usize = 1024;
/// Checks per round of the worker, so copies are never held up for long.
const PER_ROUND: usize = 64;
/// Wait before a difference is read again (in-flight writes settle).
const CONFIRM_AFTER: Duration = Duration::from_millis(20);

/// Replies that legitimately differ between two stores holding the same data.
pub fn comparable(name: &str) -> bool {
    let top = name.split(' ').next().unwrap_or(name);
    !(top.contains("RAND")
        || top.contains("SCAN")
        || matches!(
            top,
            "TTL" | "PTTL" | "OBJECT" | "MEMORY" | "DUMP" | "DEBUG" | "SORT_RO"
        ))
}

/// Replies whose element order depends on the store's internals.
fn unordered(name: &str) -> bool {
    matches!(
        name,
        "SMEMBERS" | "SINTER" | "SUNION" | "SDIFF" | "HKEYS" | "HVALS" | "HGETALL"
    )
}

pub struct Parity {
    queued: Mutex<VecDeque<(Side, Vec<Bytes>)>>,
    recent: Mutex<VecDeque<String>>,
    keep: usize,
}

impl Parity {
    pub fn new(keep: usize) -> Parity {
        Parity {
            queued: Mutex::new(VecDeque::new()),
            recent: Mutex::new(VecDeque::new()),
            keep,
        }
    }

    pub fn push(&self, side: Side, req: Vec<Bytes>) {
        if let Ok(mut q) = self.queued.lock() {
            if q.len() < MAX_QUEUED {
                q.push_back((side, req));
            }
        }
    }

    fn take(&self) -> Vec<(Side, Vec<Bytes>)> {
        self.queued
            .lock()
            .map(|mut q| {
                let n = q.len().min(PER_ROUND);
                q.drain(..n).collect()
            })
            .unwrap_or_default()
    }

    fn remember(&self, line: String) {
        if self.keep == 0 {
            return;
        }
        if let Ok(mut r) = self.recent.lock() {
            if r.len() >= self.keep {
                r.pop_front();
            }
            r.push_back(line);
        }
    }

    /// The recent mismatches, oldest first, for STATUS.
    pub fn recent(&self) -> Vec<String> {
        self.recent
            .lock()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(i, l)| format!("recent_mismatch_{i}:{l}"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Check the reads sampled since the last round.
pub(super) async fn check_some(m: &Migration) {
    for (served, req) in m.parity.take() {
        let Some(cmd) = keys::lookup(&req) else {
            continue;
        };
        let mut found = Vec::new();
        keys::extract(cmd, &req, &mut found);
        if found.iter().any(|k| m.queue.is_pending(&req[k.index])) {
            continue;
        }
        let Some(old_req) = old_names(m, &req, &found) else {
            continue;
        };
        m.stats.parity_checks.add(1);
        if same(m, cmd.name, &old_req, &req).await != Some(false) {
            continue;
        }
        tokio::time::sleep(CONFIRM_AFTER).await;
        if found.iter().any(|k| m.queue.is_pending(&req[k.index])) {
            continue;
        }
        if same(m, cmd.name, &old_req, &req).await != Some(false) {
            continue;
        }
        let key = found
            .first()
            .map(|k| req[k.index].clone())
            .unwrap_or_default();
        let namespace = m.namespace_of(&key).to_owned();
        m.stats.mismatch(&namespace, cmd.name);
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        m.parity.remember(format!(
            "at={at} namespace={namespace} command={} served_by={} key={}",
            cmd.name,
            served.label(),
            quote(&key)
        ));
    }
}

/// The request with old-store key names; `None` when a key is outside the migration.
fn old_names(m: &Migration, req: &[Bytes], found: &[keys::KeyArg]) -> Option<Vec<Bytes>> {
    let mut out = req.to_vec();
    for k in found {
        out[k.index] = m.map.to_old(&req[k.index])?;
    }
    Some(out)
}

/// Whether both stores answer `old_req` / `new_req` alike; `None` when either failed.
async fn same(m: &Migration, name: &str, old_req: &[Bytes], new_req: &[Bytes]) -> Option<bool> {
    let old = [old_req.to_vec()];
    let new = [new_req.to_vec()];
    let (a, b) = tokio::join!(m.store(Side::Old).call(&old), m.store(Side::New).call(&new));
    let (mut a, mut b) = (a.ok()?.pop()?, b.ok()?.pop()?);
    if unordered(name) {
        sort(&mut a, name == "HGETALL");
        sort(&mut b, name == "HGETALL");
    }
    Some(a == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::value::Value;

    #[test]
    fn order_free_replies_compare_equal() {
        let b = |s: &'static str| Value::Bulk(Bytes::from_static(s.as_bytes()));
        let mut x = Value::Array(vec![b("f2"), b("v2"), b("f1"), b("v1")]);
        let mut y = Value::Array(vec![b("f1"), b("v1"), b("f2"), b("v2")]);
        sort(&mut x, true);
        sort(&mut y, true);
        assert_eq!(x, y);
        assert!(!comparable("SRANDMEMBER"));
        assert!(comparable("GET"));
        assert!(!comparable("OBJECT ENCODING"));
    }
}
