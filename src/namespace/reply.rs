//! Replies and pub/sub frames that carry key names, rewritten for a mapped-db client.
//! (Interface stub; filled in on its own branch.)

use bytes::Bytes;

use super::Namespace;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReply {
    Keys,
    Scan,
    Key,
    PopKey,
    MPop,
    Streams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecFix {
    Keep,
    Drop,
    Strip(KeyReply),
}

pub fn strip_keys(kind: KeyReply, frame: &Bytes, prefix: &[u8]) -> Bytes {
    let _ = (kind, prefix);
    frame.clone()
}

pub fn fix_exec(frame: &Bytes, fixes: &[ExecFix], prefix: &[u8]) -> Bytes {
    let _ = (fixes, prefix);
    frame.clone()
}

pub fn channel_to_upstream(channel: &[u8], db: u32, ns: &Namespace) -> Option<Bytes> {
    let _ = (channel, db, ns);
    None
}

pub fn pattern_to_upstream(pattern: &[u8], db: u32, ns: &Namespace) -> Option<Bytes> {
    let _ = (pattern, db, ns);
    None
}

pub fn pubsub_from_upstream(
    frame: &Bytes,
    db: u32,
    ns: &Namespace,
    mapped: &dyn Fn(&[u8]) -> bool,
) -> Option<Bytes> {
    let _ = (db, ns, mapped);
    Some(frame.clone())
}
