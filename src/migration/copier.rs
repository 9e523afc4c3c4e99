//! The copy worker: one task that takes queued keys in batches and makes the other
//! store hold what the store they were written in holds.
//!
//! One worker, batches in order: two copies of the same key never race, so the copy
//! that runs last (after the last write) decides what the other store holds. A batch
//! is two pipelined exchanges (DUMP + PTTL from the source, RESTORE REPLACE or DEL on
//! the target). A failed exchange is retried with a doubling backoff; after
//! `retries`, its keys are counted, logged (a count, never key bytes) and parked, and
//! parked keys are queued again once the target answers PING.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::dump;
use super::keymap::Side;
use super::{CopyFailure, Migration};
use crate::resp::value::Value;
use crate::upstream::UpstreamError;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) async fn run(m: Arc<Migration>, shutdown: CancellationToken) {
    let recheck = m.config.recheck_interval;
    let mut last_recheck = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = m.queue.ready.notified() => {}
            _ = tokio::time::sleep(recheck) => {}
        }
        if last_recheck.elapsed() >= recheck {
            last_recheck = Instant::now();
            recheck_parked(&m).await;
        }
        loop {
            let batch = m.queue.take_counted(m.config.batch, &m.copying);
            if batch.is_empty() {
                break;
            }
            for side in [Side::Old, Side::New] {
                let keys: Vec<Bytes> = batch
                    .iter()
                    .filter(|(_, s)| *s == side)
                    .map(|(k, _)| k.clone())
                    .collect();
                if !keys.is_empty() {
                    copy_with_retries(&m, side, keys, &shutdown).await;
                }
            }
            m.copying.store(0, Ordering::Release);
            m.stats.queue_depth.set(m.queue.depth().0 as f64);
            if shutdown.is_cancelled() {
                return;
            }
        }
        super::parity::check_some(&m).await;
    }
}

/// Copy `keys` (new-store names) from `from` to the other store, retrying whole-batch
/// failures; what still fails is counted and parked.
async fn copy_with_retries(
    m: &Migration,
    from: Side,
    keys: Vec<Bytes>,
    shutdown: &CancellationToken,
) {
    let mut backoff = m.config.retry_backoff;
    let mut attempt = 0;
    loop {
        match copy(m, from, &keys).await {
            Ok(()) => return,
            Err(e) => {
                if attempt >= m.config.retries || shutdown.is_cancelled() {
                    park(m, from, keys, &e);
                    return;
                }
                attempt += 1;
                m.stats.retries.add(1);
                debug!(error = %e, attempt, "migration copy failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn park(m: &Migration, from: Side, keys: Vec<Bytes>, e: &UpstreamError) {
    let n = keys.len() as u64;
    let mut dropped = Vec::new();
    for key in keys {
        if !m.queue.park(from, key.clone()) {
            dropped.push(key);
        }
    }
    m.stats.failure(CopyFailure::Unreachable).add(n);
    warn!(
        keys = n,
        to = from.other().label(),
        error = %e,
        "migration: copy to the other store failed after every retry; keys parked until it answers"
    );
    if !dropped.is_empty() {
        m.failed(CopyFailure::Dropped, &dropped);
    }
    m.stats.parked.set(m.queue.depth().1 as f64);
}

/// Parked keys go back into the queue once their target answers.
async fn recheck_parked(m: &Migration) {
    let (_, parked) = m.queue.depth();
    if parked == 0 {
        return;
    }
    let ping = vec![vec![Bytes::from_static(b"PING")]];
    let mut reachable = true;
    for side in [Side::Old, Side::New] {
        if m.store(side).call(&ping).await.is_err() {
            reachable = false;
        }
    }
    if reachable {
        let moved = m.queue.unpark();
        info!(
            keys = moved,
            "migration: both stores answer again; parked keys queued for copying"
        );
        m.stats.parked.set(m.queue.depth().1 as f64);
    }
}

/// One attempt: read the keys' state from `from`, write it to the other store.
async fn copy(m: &Migration, from: Side, keys: &[Bytes]) -> Result<(), UpstreamError> {
    let to = from.other();
    // Keys outside the migrated prefix (old_db) have no name in the old store.
    let named: Vec<(Bytes, Bytes)> = keys
        .iter()
        .filter_map(|k| Some((m.map.on(from, k)?, m.map.on(to, k)?)))
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    let replies = m
        .store(from)
        .call(&dump::read_commands(named.iter().map(|(src, _)| src)))
        .await?;
    let mut writes = Vec::with_capacity(named.len());
    let mut written = Vec::with_capacity(named.len());
    let mut refused = Vec::new();
    for ((_, dst), snap) in named.iter().zip(dump::parse(replies)) {
        match snap {
            Ok(snap) => {
                writes.push(dump::write_command(dst, &snap, true));
                written.push(dst);
            }
            Err(_) => refused.push(dst.clone()),
        }
    }
    let replies = m.store(to).call(&writes).await?;
    let mut copied = 0;
    for (reply, dst) in replies.iter().zip(written) {
        match reply {
            Value::Error(_) => refused.push(dst.clone()),
            _ => copied += 1,
        }
    }
    m.stats.copied.add(copied);
    if !refused.is_empty() {
        m.failed(CopyFailure::Refused, &refused);
    }
    Ok(())
}
