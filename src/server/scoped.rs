//! Operations the sidecar answers with its own prefix-scoped SCAN instead of
//! forwarding: KEYS (never blocks Redis), DBSIZE and RANDOMKEY of a mapped db,
//! and the safe FLUSHDB / FLUSHALL / `SIDECAR FLUSH` (SCAN MATCH prefix* + UNLINK
//! in batches).
//!
//! Every step is one short pipelined exchange on a shared connection, so Redis
//! serves other clients between batches; a step that fails ends the operation
//! with the upstream's error, reporting nothing as done that was not.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use bytes::{Bytes, BytesMut};

use crate::namespace::glob_escape;
use crate::resp::value::Value;
use crate::upstream::{Upstream, UpstreamError};

/// Keys asked for per SCAN step (and so deleted per UNLINK).
const SCAN_COUNT: &[u8] = b"1000";

/// Why a scoped operation stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScopedError {
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    /// Redis answered an error (e.g. a NOPERM from its ACL).
    #[error("{0}")]
    Redis(String),
    #[error("ERR KEYS result exceeds server.max_reply_buffer ({0} bytes); use SCAN")]
    TooLarge(usize),
}

impl ScopedError {
    /// The error reply text (without the leading '-').
    pub fn reply_text(&self) -> String {
        match self {
            ScopedError::Upstream(e) => e.reply_text(),
            ScopedError::Redis(text) => text.clone(),
            ScopedError::TooLarge(_) => self.to_string(),
        }
    }
}

/// One page of a SCAN: the next cursor and the names it returned.
pub(crate) fn page(value: Value) -> Result<(Bytes, Vec<Bytes>), ScopedError> {
    if let Value::Error(text) = &value {
        return Err(ScopedError::Redis(
            String::from_utf8_lossy(text).into_owned(),
        ));
    }
    let bad = || ScopedError::Upstream(UpstreamError::Protocol("unexpected SCAN reply".into()));
    let Value::Array(mut items) = value else {
        return Err(bad());
    };
    if items.len() != 2 {
        return Err(bad());
    }
    let keys = match items.pop() {
        Some(Value::Array(keys)) => keys
            .into_iter()
            .filter_map(|k| match k {
                Value::Bulk(b) | Value::Simple(b) => Some(b),
                _ => None,
            })
            .collect(),
        _ => return Err(bad()),
    };
    match items.pop() {
        Some(Value::Bulk(cursor)) | Some(Value::Simple(cursor)) => Ok((cursor, keys)),
        _ => Err(bad()),
    }
}

pub(crate) fn scan_args(cursor: &Bytes, pattern: &Bytes, count: &'static [u8]) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"SCAN"),
        cursor.clone(),
        Bytes::from_static(b"MATCH"),
        pattern.clone(),
        Bytes::from_static(b"COUNT"),
        Bytes::from_static(count),
    ]
}

/// The glob matching every key under `prefix`.
pub fn prefix_pattern(prefix: &[u8]) -> Bytes {
    let mut pattern = BytesMut::from(glob_escape(prefix).as_ref());
    pattern.extend_from_slice(b"*");
    pattern.freeze()
}

/// Walk SCAN MATCH `pattern` to the end, calling `each` with every page's names.
async fn walk(
    up: &Upstream,
    pattern: &Bytes,
    mut each: impl FnMut(Vec<Bytes>) -> Result<(), ScopedError>,
) -> Result<(), ScopedError> {
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let mut replies = up.call(&[scan_args(&cursor, pattern, SCAN_COUNT)]).await?;
        let (next, keys) = page(replies.pop().unwrap_or(Value::Nil))?;
        each(keys)?;
        if next.as_ref() == b"0" {
            return Ok(());
        }
        cursor = next;
    }
}

/// KEYS `pattern` answered by SCAN: the same set Redis's KEYS returns (each name once),
/// with `strip` removed from the front of each name. Bounded by `max_bytes` of names.
pub async fn keys(
    up: &Upstream,
    pattern: &Bytes,
    strip: Option<&Bytes>,
    max_bytes: usize,
) -> Result<Vec<Bytes>, ScopedError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut bytes = 0usize;
    walk(up, pattern, |page| {
        for key in page {
            if seen.insert(key.clone()) {
                bytes += key.len() + 16;
                if bytes > max_bytes {
                    return Err(ScopedError::TooLarge(max_bytes));
                }
                let key = match strip {
                    Some(p) if key.starts_with(p) => key.slice(p.len()..),
                    _ => key,
                };
                out.push(key);
            }
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

/// A 64-bit digest of a name: counting distinct names without keeping them.
fn digest(state: &RandomState, key: &[u8]) -> u64 {
    state.hash_one(key)
}

/// The number of distinct keys under `prefix` (DBSIZE of a mapped db).
pub async fn count(up: &Upstream, prefix: &[u8]) -> Result<u64, ScopedError> {
    let state = RandomState::new();
    let mut seen = HashSet::new();
    walk(up, &prefix_pattern(prefix), |page| {
        for key in page {
            seen.insert(digest(&state, &key));
        }
        Ok(())
    })
    .await?;
    Ok(seen.len() as u64)
}

/// A random key under `prefix`, without the prefix; `None` when there is none.
/// Starts SCAN at a random cursor (Redis masks it to its table size) and wraps once.
pub async fn random_key(up: &Upstream, prefix: &[u8]) -> Result<Option<Bytes>, ScopedError> {
    let pattern = prefix_pattern(prefix);
    let start = fastrand::u32(..).to_string();
    let mut cursor = Bytes::from(start);
    let mut wrapped = cursor.as_ref() == b"0";
    loop {
        let mut replies = up.call(&[scan_args(&cursor, &pattern, b"100")]).await?;
        let (next, keys) = page(replies.pop().unwrap_or(Value::Nil))?;
        if !keys.is_empty() {
            let key = &keys[fastrand::usize(..keys.len())];
            return Ok(Some(key.slice(prefix.len().min(key.len())..)));
        }
        if next.as_ref() == b"0" {
            if wrapped {
                return Ok(None);
            }
            wrapped = true;
        }
        cursor = next;
    }
}

/// Delete every key under each prefix with SCAN + UNLINK batches (each UNLINK travels in
/// the same exchange as the next SCAN). Returns the number of keys removed. With
/// `dry_run`, nothing is deleted and the distinct keys found are counted.
pub async fn delete_prefixes(
    up: &Upstream,
    prefixes: &[Bytes],
    dry_run: bool,
) -> Result<u64, ScopedError> {
    let mut removed = 0u64;
    for prefix in prefixes {
        removed += if dry_run {
            count(up, prefix).await?
        } else {
            delete_prefix(up, prefix).await?
        };
    }
    Ok(removed)
}

async fn delete_prefix(up: &Upstream, prefix: &[u8]) -> Result<u64, ScopedError> {
    let pattern = prefix_pattern(prefix);
    let mut cursor = Bytes::from_static(b"0");
    let mut pending: Vec<Bytes> = Vec::new();
    let mut removed = 0u64;
    let mut done = false;
    while !done || !pending.is_empty() {
        let mut calls = Vec::with_capacity(2);
        if !pending.is_empty() {
            let mut unlink = Vec::with_capacity(pending.len() + 1);
            unlink.push(Bytes::from_static(b"UNLINK"));
            unlink.append(&mut pending);
            calls.push(unlink);
        }
        if !done {
            calls.push(scan_args(&cursor, &pattern, SCAN_COUNT));
        }
        let replies = up.call(&calls).await?;
        for (call, reply) in calls.iter().zip(replies) {
            if call[0].as_ref() == b"UNLINK" {
                match reply {
                    Value::Int(n) => removed += n.max(0) as u64,
                    Value::Error(text) => {
                        return Err(ScopedError::Redis(
                            String::from_utf8_lossy(&text).into_owned(),
                        ))
                    }
                    _ => {}
                }
            } else {
                let (next, keys) = page(reply)?;
                pending = keys;
                done = next.as_ref() == b"0";
                cursor = next;
            }
        }
    }
    Ok(removed)
}
