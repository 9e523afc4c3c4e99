//! Replies and pub/sub frames that carry key names, rewritten for a mapped-db client.
//!
//! A mapped-db client's keys live under a prefix in db 0. Replies naming keys (KEYS, SCAN,
//! RANDOMKEY, the blocking and multi pops, XREAD) and keyspace notifications lose the prefix
//! here; EXEC replies lose the elements of commands the sidecar added. Which rewrite a reply
//! needs is the caller's call (it knows the command). Pure and infallible: a frame that cannot
//! be read or has an unexpected shape comes back unchanged, and one needing no change comes
//! back as the same `Bytes`, not a copy.
//!
//! Frames are complete RESP2 or RESP3 replies (measured by [`crate::resp::ReplyScanner`]),
//! read into a small lossless tree (`Node`): bulk strings editable, the rest kept as bytes.

use bytes::{Bytes, BytesMut};

use super::Namespace;
use crate::resp::{parse_i64, put_decimal, put_header};

/// Aggregates open at once beyond which a frame is not read (and so passed on unchanged).
const MAX_DEPTH: usize = 256;

/// Children pre-allocated for an aggregate, whatever its header claims.
const PREALLOC_CAP: usize = 64;

/// One element of a reply, read losslessly: emitting a tree nobody edited gives back the
/// exact bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// Anything not edited here, as it came: simple strings, errors, numbers, doubles,
    /// booleans, nulls (`_`, `$-1`, `*-1`), blob errors and verbatim strings.
    Raw(Bytes),
    /// The content of a `$` bulk string.
    Bulk(Bytes),
    /// `*` array, `~` set, `>` push or `%` map (keys and values alternating in `items`).
    Aggregate { kind: u8, items: Vec<Node> },
    /// A RESP3 attribute map, kept as it came, and the value it annotates.
    Annotated { attribute: Bytes, value: Box<Node> },
}

impl Node {
    /// Read one complete frame; `None` unless `frame` is exactly one well-formed reply.
    fn parse(frame: &Bytes) -> Option<Node> {
        let (node, end) = read(frame, 0, 0)?;
        (end == frame.len()).then_some(node)
    }

    /// The frame's bytes. Headers are written from counts rather than copied: the reader
    /// accepts only canonical decimals, so an unedited header comes out as it went in.
    fn emit(&self, capacity: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(capacity);
        self.write(&mut out);
        out.freeze()
    }

    fn write(&self, out: &mut BytesMut) {
        match self {
            Node::Raw(raw) => out.extend_from_slice(raw),
            Node::Bulk(text) => {
                put_header(out, b'$', text.len());
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Node::Aggregate { kind, items } => {
                let pairs = *kind == b'%';
                put_header(out, *kind, items.len() / if pairs { 2 } else { 1 });
                for item in items {
                    item.write(out);
                }
            }
            Node::Annotated { attribute, value } => {
                out.extend_from_slice(attribute);
                value.write(out);
            }
        }
    }

    /// The annotated value, past any attribute maps.
    fn value_mut(&mut self) -> &mut Node {
        match self {
            Node::Annotated { value, .. } => value.value_mut(),
            node => node,
        }
    }

    /// The elements of an aggregate of one of `kinds`.
    fn items_mut(&mut self, kinds: &[u8]) -> Option<&mut Vec<Node>> {
        match self.value_mut() {
            Node::Aggregate { kind, items } if kinds.contains(kind) => Some(items),
            _ => None,
        }
    }

    /// The content of a bulk string (past any attribute maps).
    fn bulk(&self) -> Option<&Bytes> {
        match self {
            Node::Bulk(text) => Some(text),
            Node::Annotated { value, .. } => value.bulk(),
            _ => None,
        }
    }

    fn set_bulk(&mut self, text: Bytes) {
        *self.value_mut() = Node::Bulk(text);
    }
}

/// Read the element at `at`: the node and the offset just past it.
fn read(frame: &Bytes, at: usize, depth: usize) -> Option<(Node, usize)> {
    if depth > MAX_DEPTH {
        return None;
    }
    let kind = *frame.get(at)?;
    let lf = at + 1 + memchr::memchr(b'\n', frame.get(at + 1..)?)?;
    let cr = lf - 1;
    if frame.get(cr) != Some(&b'\r') {
        return None;
    }
    let line = frame.get(at + 1..cr)?;
    let next = lf + 1;
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
            Some((Node::Raw(frame.slice(at..next)), next))
        }
        b'$' | b'!' | b'=' => {
            let len = parse_i64(line)?;
            if len == -1 && kind == b'$' {
                return Some((Node::Raw(frame.slice(at..next)), next));
            }
            let end = next.checked_add(usize::try_from(len).ok()?)?;
            if frame.get(end..end.checked_add(2)?)? != b"\r\n" {
                return None;
            }
            let node = match kind {
                b'$' => Node::Bulk(frame.slice(next..end)),
                _ => Node::Raw(frame.slice(at..end + 2)),
            };
            Some((node, end + 2))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => match parse_i64(line)? {
            -1 if kind == b'*' => Some((Node::Raw(frame.slice(at..next)), next)),
            count => read_aggregate(frame, at, next, usize::try_from(count).ok()?, depth),
        },
        _ => None,
    }
}

/// Read the `count` elements of the aggregate whose header runs from `at` to `next`.
fn read_aggregate(
    frame: &Bytes,
    at: usize,
    next: usize,
    count: usize,
    depth: usize,
) -> Option<(Node, usize)> {
    let kind = *frame.get(at)?;
    let elements = match kind {
        b'%' | b'|' => count.checked_mul(2)?,
        _ => count,
    };
    let mut items = Vec::with_capacity(elements.min(PREALLOC_CAP));
    let mut pos = next;
    for _ in 0..elements {
        let (item, end) = read(frame, pos, depth + 1)?;
        items.push(item);
        pos = end;
    }
    if kind != b'|' {
        return Some((Node::Aggregate { kind, items }, pos));
    }
    // The annotated value counts as one level deeper, so a chain of attributes is bounded
    // like nesting.
    let (value, end) = read(frame, pos, depth + 1)?;
    let attribute = frame.slice(at..pos);
    let value = Box::new(value);
    Some((Node::Annotated { attribute, value }, end))
}

/// Which command's reply [`strip_keys`] rewrites (the shapes differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReply {
    /// KEYS: an array (or RESP3 set) of key names.
    Keys,
    /// SCAN: `[cursor, [keys]]`.
    Scan,
    /// RANDOMKEY: a key name or null.
    Key,
    /// BLPOP, BRPOP, BZPOPMIN, BZPOPMAX: `[key, ...]` or null; only the key is touched.
    PopKey,
    /// LMPOP, BLMPOP, ZMPOP, BZMPOP: `[key, elements]` or null.
    MPop,
    /// XREAD, XREADGROUP: RESP2 `[[key, entries], ...]`, RESP3 map key -> entries, or null.
    Streams,
}

/// The reply `frame` of a `kind` command with `prefix` removed from the key names it
/// carries. Names outside the prefix, errors, nulls and unexpected shapes are left as they
/// are; with nothing to change, `frame` itself comes back (no copy).
pub fn strip_keys(kind: KeyReply, frame: &Bytes, prefix: &[u8]) -> Bytes {
    Node::parse(frame)
        .and_then(|mut tree| strip(kind, &mut tree, prefix).then(|| tree.emit(frame.len())))
        .unwrap_or_else(|| frame.clone())
}

/// What [`fix_exec`] does with one element of an EXEC reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecFix {
    /// The client's command, reply passed on as it is.
    Keep,
    /// A command the sidecar added to the transaction: its reply is not the client's.
    Drop,
    /// The client's command, whose reply names keys.
    Strip(KeyReply),
}

/// The EXEC reply `frame` with element `i` treated as `fixes[i]` says, and the array length
/// rewritten to match. A null or error reply (aborted transaction), any other shape, or an
/// element count other than `fixes.len()` leaves `frame` unchanged.
pub fn fix_exec(frame: &Bytes, fixes: &[ExecFix], prefix: &[u8]) -> Bytes {
    let Some(mut tree) = Node::parse(frame) else {
        return frame.clone();
    };
    let Some(items) = tree
        .items_mut(b"*")
        .filter(|items| items.len() == fixes.len())
    else {
        return frame.clone();
    };
    let mut changed = false;
    for (item, fix) in items.iter_mut().zip(fixes) {
        match fix {
            ExecFix::Keep => {}
            ExecFix::Drop => changed = true,
            ExecFix::Strip(kind) => changed |= strip(*kind, item, prefix),
        }
    }
    if !changed {
        return frame.clone();
    }
    let mut fix = fixes.iter();
    items.retain(|_| fix.next() != Some(&ExecFix::Drop));
    tree.emit(frame.len())
}

/// Strip the key names in the reply `node` of a `kind` command; true if any changed.
fn strip(kind: KeyReply, node: &mut Node, prefix: &[u8]) -> bool {
    match kind {
        KeyReply::Key => strip_name(node, prefix),
        KeyReply::Keys => node
            .items_mut(b"*~")
            .is_some_and(|keys| strip_all(keys.iter_mut(), prefix)),
        KeyReply::Scan => match node.items_mut(b"*").map(Vec::as_mut_slice) {
            Some([_cursor, keys]) => keys
                .items_mut(b"*~")
                .is_some_and(|keys| strip_all(keys.iter_mut(), prefix)),
            _ => false,
        },
        KeyReply::PopKey => match node.items_mut(b"*").map(Vec::as_mut_slice) {
            Some([key, _, ..]) => strip_name(key, prefix),
            _ => false,
        },
        KeyReply::MPop => match node.items_mut(b"*").map(Vec::as_mut_slice) {
            Some([key, _elements]) => strip_name(key, prefix),
            _ => false,
        },
        KeyReply::Streams => {
            if let Some(streams) = node.items_mut(b"%") {
                return strip_all(streams.iter_mut().step_by(2), prefix);
            }
            let streams = node.items_mut(b"*").into_iter().flatten();
            let keys =
                streams.filter_map(
                    |stream| match stream.items_mut(b"*").map(Vec::as_mut_slice) {
                        Some([key, _entries]) => Some(key),
                        _ => None,
                    },
                );
            strip_all(keys, prefix)
        }
    }
}

/// Strip every name in `names` (no short cut: all of them are visited).
fn strip_all<'a>(names: impl Iterator<Item = &'a mut Node>, prefix: &[u8]) -> bool {
    names.fold(false, |changed, name| strip_name(name, prefix) | changed)
}

/// Strip one bulk-string name that starts with `prefix`; true if it did.
fn strip_name(node: &mut Node, prefix: &[u8]) -> bool {
    match node.bulk() {
        Some(name) if !prefix.is_empty() && name.starts_with(prefix) => {
            let stripped = name.slice(prefix.len()..);
            node.set_bulk(stripped);
            true
        }
        _ => false,
    }
}

/// The two families of keyspace-notification channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `__keyspace@<db>__:<key>`, message payload the event name.
    Keyspace,
    /// `__keyevent@<db>__:<event>`, message payload the key name.
    Keyevent,
}

impl Family {
    fn tag(self) -> &'static [u8] {
        match self {
            Family::Keyspace => b"__keyspace@",
            Family::Keyevent => b"__keyevent@",
        }
    }
}

/// `(family, rest)` when `name` starts with the literal `__key<family>@<db>__:` of exactly
/// this `db` (canonical decimal).
fn split_channel(name: &[u8], db: u32) -> Option<(Family, &[u8])> {
    [Family::Keyspace, Family::Keyevent]
        .into_iter()
        .find_map(|family| {
            let rest = name.strip_prefix(family.tag())?;
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let (number, rest) = rest.split_at(digits);
            if parse_i64(number)? != i64::from(db) {
                return None;
            }
            Some((family, rest.strip_prefix(b"__:")?))
        })
}

/// `__key<family>@<db>__:` followed by `parts`.
fn join_channel(family: Family, db: u32, parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|part| part.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(family.tag().len() + 16 + len);
    out.extend_from_slice(family.tag());
    put_decimal(&mut out, i64::from(db));
    out.extend_from_slice(b"__:");
    for part in parts {
        out.extend_from_slice(part);
    }
    out.freeze()
}

/// The db-0 channel a client in mapped db `db` means by SUBSCRIBE `channel`:
/// `__keyspace@{db}__:K` is `__keyspace@0__:{prefix}K`, `__keyevent@{db}__:E` is
/// `__keyevent@0__:E`. `None` for any other channel (the caller leaves it unchanged).
pub fn channel_to_upstream(channel: &[u8], db: u32, ns: &Namespace) -> Option<Bytes> {
    Some(match split_channel(channel, db)? {
        (Family::Keyspace, key) => join_channel(Family::Keyspace, 0, &[&ns.prefix, key]),
        (Family::Keyevent, event) => join_channel(Family::Keyevent, 0, &[event]),
    })
}

/// The db-0 pattern a client in mapped db `db` means by PSUBSCRIBE `pattern`, as
/// [`channel_to_upstream`] with the prefix glob-escaped. Only patterns starting with the
/// literal `__keyspace@{db}__:` or `__keyevent@{db}__:` are mapped: one that leaves the family
/// or the db to a wildcard (`__key*@3__:*`, `__keyspace@[34]__:*`) is not, and gets `None`.
pub fn pattern_to_upstream(pattern: &[u8], db: u32, ns: &Namespace) -> Option<Bytes> {
    Some(match split_channel(pattern, db)? {
        (Family::Keyspace, rest) => join_channel(Family::Keyspace, 0, &[&ns.scope_pattern(rest)]),
        (Family::Keyevent, rest) => join_channel(Family::Keyevent, 0, &[rest]),
    })
}

/// The inverse of [`channel_to_upstream`]; `None` for a channel not of the mapped form
/// (including a keyspace channel of a key outside the namespace).
pub fn channel_from_upstream(channel: &[u8], db: u32, ns: &Namespace) -> Option<Bytes> {
    Some(match split_channel(channel, 0)? {
        (Family::Keyspace, key) => join_channel(Family::Keyspace, db, &[ns.strip(key)?]),
        (Family::Keyevent, event) => join_channel(Family::Keyevent, db, &[event]),
    })
}

/// The inverse of [`pattern_to_upstream`]; `None` for a pattern not of the mapped form.
pub fn pattern_from_upstream(pattern: &[u8], db: u32, ns: &Namespace) -> Option<Bytes> {
    Some(match split_channel(pattern, 0)? {
        (Family::Keyspace, rest) => {
            let rest = rest.strip_prefix(ns.prefix_glob.as_ref())?;
            join_channel(Family::Keyspace, db, &[rest])
        }
        (Family::Keyevent, rest) => join_channel(Family::Keyevent, db, &[rest]),
    })
}

/// What a pub/sub frame needs.
enum Outcome {
    Same,
    Changed,
    /// A notification about a key outside the namespace: the client must not see it.
    Drop,
}

/// One out-of-band pub/sub frame (RESP2 array or RESP3 push) from the upstream, as a client
/// in mapped db `db` must see it. `mapped(name)` says whether the client subscribed to the
/// upstream channel or pattern `name` through the mapping (it must still say so for the
/// confirmation of an unsubscribe); only those names are mapped back.
///
/// - `message`/`smessage` and `pmessage`: channel (and pattern) mapped back; a keyevent
///   payload (a key name) loses the prefix, a keyspace payload (an event name) is kept. A
///   notification about a key outside the namespace (keyevent channels carry all of db 0)
///   gives `None`: drop the frame.
/// - subscribe/unsubscribe confirmations (all six kinds): the channel or pattern mapped back.
/// - Anything else (client-side caching `invalidate`, `pong`, unreadable frames) comes back
///   unchanged, as the same `Bytes`.
pub fn pubsub_from_upstream(
    frame: &Bytes,
    db: u32,
    ns: &Namespace,
    mapped: &dyn Fn(&[u8]) -> bool,
) -> Option<Bytes> {
    let Some(mut tree) = Node::parse(frame) else {
        return Some(frame.clone());
    };
    let outcome = match tree.items_mut(b"*>").map(Vec::as_mut_slice) {
        Some([kind, channel, payload]) if is_kind(kind, &[b"message", b"smessage"]) => {
            match channel.bulk() {
                Some(name) if mapped(name) => message(channel, payload, db, ns),
                _ => Outcome::Same,
            }
        }
        Some([kind, pattern, channel, payload]) if is_kind(kind, &[b"pmessage"]) => {
            let upstream = pattern.bulk().filter(|name| mapped(name));
            match upstream.map(|name| pattern_from_upstream(name, db, ns)) {
                None => Outcome::Same,
                Some(None) => Outcome::Drop,
                Some(Some(client)) => {
                    pattern.set_bulk(client);
                    message(channel, payload, db, ns)
                }
            }
        }
        Some([kind, name, _count]) => confirmation(kind, name, db, ns, mapped),
        _ => Outcome::Same,
    };
    match outcome {
        Outcome::Same => Some(frame.clone()),
        Outcome::Changed => Some(tree.emit(frame.len())),
        Outcome::Drop => None,
    }
}

/// Map back the channel of a message the client subscribed to through the mapping, and the
/// key in a keyevent payload.
fn message(channel: &mut Node, payload: &mut Node, db: u32, ns: &Namespace) -> Outcome {
    let Some(upstream) = channel.bulk().cloned() else {
        return Outcome::Drop;
    };
    let Some(client) = channel_from_upstream(&upstream, db, ns) else {
        return Outcome::Drop;
    };
    channel.set_bulk(client);
    if let Some((Family::Keyevent, _)) = split_channel(&upstream, 0) {
        match payload.bulk().filter(|key| ns.contains(key)) {
            Some(key) => payload.set_bulk(key.slice(ns.prefix.len()..)),
            None => return Outcome::Drop,
        }
    }
    Outcome::Changed
}

/// A subscribe or unsubscribe confirmation: the channel or pattern mapped back.
fn confirmation(
    kind: &Node,
    name: &mut Node,
    db: u32,
    ns: &Namespace,
    mapped: &dyn Fn(&[u8]) -> bool,
) -> Outcome {
    let from_upstream: fn(&[u8], u32, &Namespace) -> Option<Bytes> =
        if is_kind(kind, &[b"psubscribe", b"punsubscribe"]) {
            pattern_from_upstream
        } else if is_kind(
            kind,
            &[b"subscribe", b"unsubscribe", b"ssubscribe", b"sunsubscribe"],
        ) {
            channel_from_upstream
        } else {
            return Outcome::Same;
        };
    let upstream = name.bulk().filter(|name| mapped(name));
    match upstream.and_then(|upstream| from_upstream(upstream, db, ns)) {
        Some(client) => {
            name.set_bulk(client);
            Outcome::Changed
        }
        None => Outcome::Same,
    }
}

/// True when `node` is a bulk string equal to one of `kinds`.
fn is_kind(node: &Node, kinds: &[&[u8]]) -> bool {
    node.bulk()
        .is_some_and(|text| kinds.contains(&text.as_ref()))
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
