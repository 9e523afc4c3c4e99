//! A key's whole state as Redis serializes it: DUMP (type, value, encoding) plus PTTL,
//! and the commands that put it back (RESTORE with the remaining TTL, or DEL when
//! the key is gone). Shared by dual-write copies, backfill and verify; no IO here.

use bytes::Bytes;

use crate::resp::value::Value;

/// One key's state read from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    /// The key does not exist (or expired between DUMP and PTTL).
    Gone,
    /// DUMP's payload and the TTL in milliseconds (`None` = no expiry).
    Present { payload: Bytes, ttl_ms: Option<i64> },
}

/// Why a reply could not be read as a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SnapshotError(pub String);

fn arg(text: &'static [u8]) -> Bytes {
    Bytes::from_static(text)
}

/// DUMP and PTTL for each key, in that order.
pub fn read_commands<'a>(keys: impl IntoIterator<Item = &'a Bytes>) -> Vec<Vec<Bytes>> {
    let mut out = Vec::new();
    for key in keys {
        out.push(vec![arg(b"DUMP"), key.clone()]);
        out.push(vec![arg(b"PTTL"), key.clone()]);
    }
    out
}

/// The snapshots in the replies to [`read_commands`] (two replies per key).
pub fn parse(replies: Vec<Value>) -> Vec<Result<Snapshot, SnapshotError>> {
    let mut out = Vec::with_capacity(replies.len() / 2);
    let mut it = replies.into_iter();
    while let (Some(dump), Some(pttl)) = (it.next(), it.next()) {
        out.push(snapshot(dump, pttl));
    }
    out
}

fn snapshot(dump: Value, pttl: Value) -> Result<Snapshot, SnapshotError> {
    let ttl = match pttl {
        Value::Int(-2) => return Ok(Snapshot::Gone),
        Value::Int(ms) if ms < 0 => None,
        // PTTL 0: the key expires now; keep 1ms so RESTORE does not read it as "no TTL".
        Value::Int(ms) => Some(ms.max(1)),
        other => return Err(unexpected("PTTL", &other)),
    };
    match dump {
        Value::Nil => Ok(Snapshot::Gone),
        Value::Bulk(payload) => Ok(Snapshot::Present {
            payload,
            ttl_ms: ttl,
        }),
        other => Err(unexpected("DUMP", &other)),
    }
}

fn unexpected(what: &str, value: &Value) -> SnapshotError {
    match value {
        Value::Error(text) => SnapshotError(format!("{what}: {}", String::from_utf8_lossy(text))),
        _ => SnapshotError(format!("{what}: unexpected reply")),
    }
}

/// The command that makes `key` hold `snap`: RESTORE (with REPLACE when `replace`) or DEL.
pub fn write_command(key: &Bytes, snap: &Snapshot, replace: bool) -> Vec<Bytes> {
    match snap {
        Snapshot::Gone => vec![arg(b"DEL"), key.clone()],
        Snapshot::Present { payload, ttl_ms } => {
            let ttl = ttl_ms.unwrap_or(0).to_string();
            let mut cmd = vec![
                arg(b"RESTORE"),
                key.clone(),
                Bytes::from(ttl),
                payload.clone(),
            ];
            if replace {
                cmd.push(arg(b"REPLACE"));
            }
            cmd
        }
    }
}

/// True for RESTORE's "the target already has this key" error.
pub fn is_busy_key(value: &Value) -> bool {
    matches!(value, Value::Error(text) if text.starts_with(b"BUSYKEY"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_from_replies() {
        let payload = Bytes::from_static(b"\x00\x01x");
        let got = parse(vec![
            Value::Bulk(payload.clone()),
            Value::Int(-1),
            Value::Nil,
            Value::Int(-2),
            Value::Bulk(payload.clone()),
            Value::Int(1500),
            Value::Bulk(payload.clone()),
            Value::Int(-2),
        ]);
        assert_eq!(
            got,
            vec![
                Ok(Snapshot::Present {
                    payload: payload.clone(),
                    ttl_ms: None
                }),
                Ok(Snapshot::Gone),
                Ok(Snapshot::Present {
                    payload: payload.clone(),
                    ttl_ms: Some(1500)
                }),
                Ok(Snapshot::Gone),
            ]
        );
        let key = Bytes::from_static(b"k");
        let restore = write_command(&key, &got[2].clone().unwrap_or(Snapshot::Gone), true);
        assert_eq!(restore.len(), 5);
        assert_eq!(&restore[2][..], b"1500");
        assert_eq!(&write_command(&key, &Snapshot::Gone, true)[0][..], b"DEL");
        assert!(is_busy_key(&Value::Error(Bytes::from_static(
            b"BUSYKEY Target key name already exists."
        ))));
    }
}
