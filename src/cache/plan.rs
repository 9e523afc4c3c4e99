//! What the cache does with one request: answer it, fetch and fill, note a write, or
//! nothing. Pure apart from reading and marking the cache; the client loop carries out
//! the plan.
//!
//! Cached reads (keys all in cached namespaces): `GET`, `MGET` (hits composed with the
//! misses fetched in one `MGET`), `HGETALL`, and from a cached hash `HGET` / `HMGET`,
//! and `EXISTS`. Fills fetch the key's `PTTL` with the value so an entry never outlives
//! the key. Any other command that is not read-only and names a cached key is a write:
//! the key is invalidated locally when the command is sent and again when its reply
//! arrives, so this sidecar's own clients read their writes.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::answer::{self, put_integer, Data, DataRef};
use super::{Cache, Clock, Entry, Lookup, NsStats, Ticket};
use crate::config::Degrade;
use crate::keys::{self, CommandFlags, KeyArg};
use crate::namespace::{Namespace, Namespaces};
use crate::resp::{put_header, Protocol};

/// What to do with a request.
#[derive(Debug)]
pub enum Plan {
    /// Not the cache's business.
    Pass,
    /// Answered from the cache: the exact reply bytes were appended to `out`.
    Answered,
    /// Redis is unreachable: refuse at once with this `-TRYAGAIN` text.
    Unavailable(String),
    /// Forward, fetch TTLs, fill from the replies.
    Fill(Box<Fill>),
    /// A write: invalidate these keys (as Redis names them) now and on its reply.
    Write(Vec<Bytes>),
}

/// A read on its way to Redis whose replies fill the cache.
#[derive(Debug)]
pub struct Fill {
    ticket: Ticket,
    /// Per ticket key, its namespace's counters.
    ns: Vec<Arc<NsStats>>,
    kind: FillKind,
    /// Arguments to send instead of the client's (`MGET` of the missing keys only).
    pub replace: Option<Vec<Bytes>>,
}

#[derive(Debug)]
enum FillKind {
    Get,
    HGetAll,
    /// Per key the client asked for: the cached data, or `None` (fetched, in order).
    MGet(Vec<Option<Entry>>),
}

/// The client-side facts the plan needs.
pub struct View<'a> {
    pub proto: Protocol,
    /// Keys this client wrote whose replies have not been read yet: never a hit.
    pub written: &'a [Bytes],
    /// The client holds a pinned connection (transaction, watch...): no hits or fills.
    pub pinned: bool,
    /// The prefix a mapped db adds to every key while the command is written out.
    pub prefix: Option<&'a Bytes>,
    /// How long the upstream may be unreachable before commands are refused at once
    /// (0 standalone; `failover_wait` with Sentinel, whose data path holds commands).
    pub fail_fast_after: Duration,
    /// What hits' expiry is checked against (read once per batch).
    pub clock: &'a Clock,
}

impl<'a> View<'a> {
    /// A client in db 0, outside `MULTI` and pinned state, on the path that answers
    /// hits before the namespace stage ([`fast_hit`], [`get_hit`]).
    pub fn db0(proto: Protocol, written: &'a [Bytes], clock: &'a Clock) -> View<'a> {
        View {
            proto,
            written,
            pinned: false,
            prefix: None,
            fail_fast_after: Duration::ZERO,
            clock,
        }
    }
}

/// Where the keys of a cacheable read stand in its arguments (`name` upper case);
/// `None` for any other command, or a read with the wrong argument count.
fn read_keys(name: &[u8], argc: usize) -> Option<std::ops::Range<usize>> {
    match name {
        b"GET" | b"HGETALL" if argc == 2 => Some(1..2),
        b"HGET" if argc == 3 => Some(1..2),
        b"HMGET" if argc >= 3 => Some(1..2),
        b"MGET" | b"EXISTS" if argc >= 2 => Some(1..argc),
        _ => None,
    }
}

/// One cached read being planned.
struct Read<'a> {
    cache: &'a Arc<Cache>,
    view: &'a View<'a>,
    name: &'a [u8],
    args: &'a [Bytes],
    /// Redis is unreachable (stale entries may be served).
    degraded: bool,
}

/// Decide what the cache does with `args` (as staged by the namespace stage); a hit's
/// reply is appended to `out`.
pub fn plan(
    cache: &Arc<Cache>,
    namespaces: &Namespaces,
    view: &View<'_>,
    args: &[Bytes],
    out: &mut BytesMut,
) -> Plan {
    let mut buf = [0u8; 32];
    let Some(name) = args
        .first()
        .and_then(|n| crate::command::upper(n, &mut buf))
    else {
        return Plan::Pass;
    };
    let read = read_keys(name, args.len());
    let full = |k: &Bytes| -> Bytes {
        match view.prefix {
            Some(p) => {
                let mut out = BytesMut::with_capacity(p.len() + k.len());
                out.extend_from_slice(p);
                out.extend_from_slice(k);
                out.freeze()
            }
            None => k.clone(),
        }
    };
    let live = cache.is_live();
    let down = if live { None } else { cache.down() };
    let degraded = down
        .as_ref()
        .filter(|d| d.unreachable)
        .map(|d| (d.since.elapsed(), d.reason.clone()));
    if let Some(range) = read {
        let r = Read {
            cache,
            view,
            name,
            args,
            degraded: degraded.is_some(),
        };
        if range.len() == 1 {
            // The common case (a session GET / HGETALL hit) allocates nothing.
            let key = full(&args[1]);
            if let Some(plan) = single_hit(&r, namespaces.of_key(&key), &key, out) {
                return plan;
            }
        }
        let keys: Vec<Bytes> = args[range].iter().map(full).collect();
        let owners: Option<Vec<&Namespace>> = keys
            .iter()
            .map(|k| namespaces.of_key(k).filter(|ns| ns.cache.is_some()))
            .collect();
        if let Some(owners) = owners {
            if let Some(plan) = read_plan(&r, &keys, &owners, out) {
                return plan;
            }
        }
        return match degraded {
            Some((down_for, reason)) if down_for >= view.fail_fast_after => {
                Plan::Unavailable(unavailable(&keys, namespaces, down_for, &reason))
            }
            _ => Plan::Pass,
        };
    }
    let Some(cmd) = keys::lookup(args) else {
        return Plan::Pass;
    };
    let mut found: Vec<KeyArg> = Vec::new();
    keys::extract(cmd, args, &mut found);
    if found.is_empty() {
        return Plan::Pass;
    }
    let keys: Vec<Bytes> = found.iter().map(|k| full(&args[k.index])).collect();
    if let Some((down_for, reason)) = degraded {
        if down_for >= view.fail_fast_after {
            return Plan::Unavailable(unavailable(&keys, namespaces, down_for, &reason));
        }
    }
    if cmd.flags.contains(CommandFlags::READONLY) || !namespaces.any_cached() {
        return Plan::Pass;
    }
    let written: Vec<Bytes> = keys
        .into_iter()
        .filter(|k| namespaces.of_key(k).is_some_and(|ns| ns.cache.is_some()))
        .collect();
    if written.is_empty() {
        Plan::Pass
    } else {
        Plan::Write(written)
    }
}

/// `SET key value`, alone or with `EX seconds` / `PX milliseconds`: a write whose
/// success leaves exactly `value` under the key, with that TTL (None: no expiry). Any
/// other form (NX/XX may not write, GET changes the reply, KEEPTTL and EXAT/PXAT leave
/// a TTL this cannot know) is None, and only invalidates.
pub fn plain_set(args: &[Bytes]) -> Option<(Bytes, Option<Duration>)> {
    if !args.first()?.eq_ignore_ascii_case(b"SET") {
        return None;
    }
    match args.len() {
        3 => Some((args[2].clone(), None)),
        5 => {
            let n: u64 = std::str::from_utf8(&args[4]).ok()?.parse().ok()?;
            let ttl = if args[3].eq_ignore_ascii_case(b"EX") {
                Duration::from_secs(n)
            } else if args[3].eq_ignore_ascii_case(b"PX") {
                Duration::from_millis(n)
            } else {
                return None;
            };
            (n > 0).then(|| (args[2].clone(), Some(ttl)))
        }
        _ => None,
    }
}

fn unavailable(
    keys: &[Bytes],
    namespaces: &Namespaces,
    down_for: Duration,
    reason: &str,
) -> String {
    let ns = keys
        .iter()
        .find_map(|k| namespaces.of_key(k))
        .map(|ns| match ns.config.degrade {
            Degrade::Fail => format!(
                "; namespace '{}' fails closed (degrade = \"fail\")",
                ns.name()
            ),
            Degrade::ServeStale => format!(
                "; namespace '{}' has no entry to serve stale (degrade = \"serve-stale\")",
                ns.name()
            ),
        })
        .unwrap_or_default();
    format!(
        "TRYAGAIN upstream unreachable for {:.1}s ({reason}){ns}",
        down_for.as_secs_f64()
    )
}

/// A fresh hit for a db-0 client, tried before the namespace stage: a single-key read
/// whose key lies in a cached namespace needs no other check (the key is in a
/// namespace) and no rewrite, unless the namespace has a sliding TTL (the stage adds
/// its refresh). True when the reply was appended to `out`.
pub fn fast_hit(
    cache: &Arc<Cache>,
    namespaces: &Namespaces,
    view: &View<'_>,
    args: &[Bytes],
    out: &mut BytesMut,
) -> bool {
    let mut buf = [0u8; 32];
    let Some(name) = args
        .first()
        .and_then(|n| crate::command::upper(n, &mut buf))
    else {
        return false;
    };
    let single = read_keys(name, args.len()).is_some_and(|keys| keys.len() == 1);
    single && db0_hit(cache, namespaces, view, name, args, &args[1], out)
}

/// [`fast_hit`] for a `GET key` read in place from the client's input (no request
/// built: `key` is a slice of the input buffer).
pub fn get_hit(
    cache: &Arc<Cache>,
    namespaces: &Namespaces,
    view: &View<'_>,
    key: &[u8],
    out: &mut BytesMut,
) -> bool {
    db0_hit(cache, namespaces, view, b"GET", &[], key, out)
}

/// The fresh hit of [`fast_hit`] and [`get_hit`]: single-key read `name` of `key`.
fn db0_hit(
    cache: &Arc<Cache>,
    namespaces: &Namespaces,
    view: &View<'_>,
    name: &[u8],
    args: &[Bytes],
    key: &[u8],
    out: &mut BytesMut,
) -> bool {
    if !cache.is_live() || view.prefix.is_some() {
        return false;
    }
    let Some(ns) = namespaces.of_key(key) else {
        return false;
    };
    if ns.config.touch_on_read.is_some() {
        return false;
    }
    let r = Read {
        cache,
        view,
        name,
        args,
        degraded: false,
    };
    matches!(single_hit(&r, Some(ns), key, out), Some(Plan::Answered))
}

/// A single-key read answered from a fresh (or, degraded, stale) entry.
fn single_hit(
    r: &Read<'_>,
    ns: Option<&Namespace>,
    key: &[u8],
    out: &mut BytesMut,
) -> Option<Plan> {
    let (cache, view, name, args) = (r.cache, r.view, r.name, r.args);
    if view.pinned || view.written.iter().any(|w| w[..] == *key) {
        return None;
    }
    let ns = ns?;
    let stats = ns.cache.as_ref()?;
    let stale_ok = r.degraded && ns.config.degrade == Degrade::ServeStale;
    let (entry, stale) = match cache.lookup(key, stale_ok, view.clock) {
        Lookup::Fresh(e) => (e, false),
        Lookup::Stale(e) => (e, true),
        Lookup::Miss => return None,
    };
    let mark = out.len();
    let answered = match (name, entry.bulk()) {
        (b"GET", Some(bulk)) => {
            out.extend_from_slice(bulk);
            true
        }
        _ => {
            out.reserve(entry.data().reply_len());
            single_answer(entry.data(), view.proto, name, args, out)
        }
    };
    if !answered {
        out.truncate(mark);
        return None;
    }
    NsStats::count(if stale {
        &stats.stale_hits
    } else {
        &stats.hits
    });
    Some(Plan::Answered)
}

/// The reply to single-key read `name` from `data`; false when only Redis can answer.
fn single_answer(
    data: DataRef<'_>,
    proto: Protocol,
    name: &[u8],
    args: &[Bytes],
    out: &mut BytesMut,
) -> bool {
    match name {
        b"GET" => data.get(proto, out),
        b"HGETALL" => data.hgetall(proto, out),
        b"HGET" => data.hget(&args[2], proto, out),
        b"HMGET" => data.hmget(&args[2..], proto, out),
        _ => false,
    }
}

/// A cached read: answered, or fetched and filled; `None` falls back to the caller.
fn read_plan(
    r: &Read<'_>,
    keys: &[Bytes],
    owners: &[&Namespace],
    out: &mut BytesMut,
) -> Option<Plan> {
    let (cache, view, name, args, degraded) = (r.cache, r.view, r.name, r.args, r.degraded);
    if view.pinned || keys.iter().any(|k| view.written.contains(k)) {
        return Some(Plan::Pass);
    }
    let mut found: Vec<Option<(Entry, bool)>> = Vec::with_capacity(keys.len());
    for (key, ns) in keys.iter().zip(owners) {
        let stale_ok = degraded && ns.config.degrade == Degrade::ServeStale;
        found.push(match cache.lookup(key, stale_ok, view.clock) {
            Lookup::Fresh(e) => Some((e, false)),
            Lookup::Stale(e) => Some((e, true)),
            Lookup::Miss => None,
        });
    }
    if found.iter().all(Option::is_some) {
        let mark = out.len();
        if answer_from(name, args, &found, view.proto, out) {
            for ((_, stale), ns) in found.iter().flatten().zip(owners) {
                let stats = ns.cache.as_ref()?;
                NsStats::count(if *stale {
                    &stats.stale_hits
                } else {
                    &stats.hits
                });
            }
            return Some(Plan::Answered);
        }
        out.truncate(mark);
    }
    if degraded {
        return None;
    }
    for (hit, ns) in found.iter().zip(owners) {
        if hit.is_none() {
            NsStats::count(&ns.cache.as_ref()?.misses);
        }
    }
    let (kind, fetch, replace) = match name {
        b"GET" => (FillKind::Get, keys.to_vec(), None),
        b"HGETALL" => (FillKind::HGetAll, keys.to_vec(), None),
        b"MGET" => {
            let fetch: Vec<Bytes> = keys
                .iter()
                .zip(&found)
                .filter(|(_, hit)| hit.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            let hits: Vec<Option<Entry>> = found
                .iter()
                .map(|f| f.as_ref().map(|(e, _)| e.clone()))
                .collect();
            let replace = (fetch.len() < keys.len()).then(|| {
                let mut a = Vec::with_capacity(fetch.len() + 1);
                a.push(Bytes::from_static(b"MGET"));
                a.extend(fetch.iter().cloned());
                a
            });
            (FillKind::MGet(hits), fetch, replace)
        }
        // HGET, HMGET and EXISTS are answered from entries other reads filled.
        _ => return Some(Plan::Pass),
    };
    let ns = keys
        .iter()
        .zip(owners)
        .filter(|(k, _)| fetch.contains(k))
        .map(|(_, ns)| ns.cache.clone())
        .collect::<Option<Vec<_>>>()?;
    let ticket = cache.begin_fill(fetch)?;
    Some(Plan::Fill(Box::new(Fill {
        ticket,
        ns,
        kind,
        replace,
    })))
}

/// Encode the reply to a read whose keys were all found; false when only Redis can.
fn answer_from(
    name: &[u8],
    args: &[Bytes],
    found: &[Option<(Entry, bool)>],
    proto: Protocol,
    out: &mut BytesMut,
) -> bool {
    let data = |i: usize| found.get(i).and_then(|f| f.as_ref()).map(|(e, _)| e.data());
    let Some(first) = data(0) else {
        return false;
    };
    match name {
        b"GET" => first.get(proto, out),
        b"HGETALL" => first.hgetall(proto, out),
        b"HGET" => first.hget(&args[2], proto, out),
        b"HMGET" => first.hmget(&args[2..], proto, out),
        b"MGET" => {
            put_header(out, b'*', found.len());
            for i in 0..found.len() {
                match data(i) {
                    Some(d) => d.mget_item(proto, out),
                    None => return false,
                }
            }
            true
        }
        b"EXISTS" => {
            let n = (0..found.len())
                .filter(|&i| data(i).is_some_and(DataRef::exists))
                .count();
            put_integer(out, n as i64);
            true
        }
        _ => false,
    }
}

impl Fill {
    /// The commands sent right after the read: the TTL of every fetched key.
    pub fn follow_ups(&self) -> Vec<Vec<Bytes>> {
        self.ticket
            .keys()
            .iter()
            .map(|k| vec![Bytes::from_static(b"PTTL"), k.clone()])
            .collect()
    }

    /// Fill from the read's reply (`frames[0]`) and the TTLs after it. Returns the reply
    /// to give the client instead of `frames[0]` (an MGET composed with its hits).
    pub fn complete(&self, frames: &[Bytes], proto: Protocol) -> Option<Bytes> {
        let reply = frames.first()?;
        let ttls = frames.get(1..).unwrap_or(&[]);
        let cache = self.ticket.cache();
        let keys = self.ticket.keys();
        let fill = |i: usize, data: Data| {
            let pttl = ttls.get(i).and_then(|f| answer::read_integer(f));
            if let (Some(pttl), Some(ns)) = (pttl, self.ns.get(i)) {
                if cache.fill(&self.ticket, &keys[i], data, pttl, ns) {
                    NsStats::count(&ns.fills);
                }
            }
        };
        match &self.kind {
            FillKind::Get => {
                if let Some(data) = answer::read_get(reply) {
                    fill(0, data);
                }
                None
            }
            FillKind::HGetAll => {
                if let Some(data) = answer::read_hgetall(reply) {
                    fill(0, data);
                }
                None
            }
            FillKind::MGet(hits) => {
                let fetched = answer::read_mget(reply)?;
                for (i, value) in fetched.iter().enumerate() {
                    // A nil may be a key of another type: only strings are filled.
                    if let Some(v) = value {
                        fill(i, Data::Str(v.clone()));
                    }
                }
                self.replace.as_ref()?;
                // Compose: hits where the cache had them, fetched values in order.
                let mut out = BytesMut::new();
                put_header(&mut out, b'*', hits.len());
                let mut fetched = fetched.into_iter();
                for hit in hits {
                    match hit {
                        Some(e) => e.data().mget_item(proto, &mut out),
                        None => match fetched.next().flatten() {
                            Some(v) => answer::put_bulk(&mut out, &v),
                            None => answer::put_null(&mut out, proto),
                        },
                    }
                }
                Some(out.freeze())
            }
        }
    }
}
