//! The namespace stage for one request: key checks, `SELECT n` mapping, the flush,
//! KEYS, script and TTL policies.
//!
//! [`stage`] is a plain function of the configuration, the client's selected db and
//! the request; it says what to do with the request and never does IO. The client
//! loop carries out the answer: forward (maybe rewritten, with follow-up commands and
//! a reply fix), answer locally, or run a prefix-scoped operation with the sidecar's
//! own upstream calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::config::{FlushMode, FlushPolicy, KeysMode, PolicyConfig, ScriptsMode, UnmatchedKeys};
use crate::keys::{self, ArgKind, CommandInfo, KeyArg, KeyFlags};
use crate::metrics::{FlushKind, RefusalRule};
use crate::namespace::reply::{self, KeyReply};
use crate::namespace::ttl::{self, TouchThrottle};
use crate::namespace::{Namespace, Namespaces};
use crate::resp::{Reply, Request};

/// What the namespace stage made of one request.
// `Rewritten` is the large one; boxing it would add an allocation to every rewrite.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Staged {
    /// Send the request as it is.
    Forward,
    /// Send the request with the prefix of the namespace mapped to the client's db (the
    /// db the stage ran for) put in front of the arguments at these places, done while
    /// the command is written out: no copy of the request, and no counted reference to
    /// the prefix, which the caller borrows from the configuration it staged with.
    Prefixed(Positions),
    /// Send something else or more; see [`Rewrite`].
    Rewritten(Box<Rewrite>),
    /// Answer without Redis (a malformed `SELECT`).
    Answer(Reply),
    /// Refused by `rule`: the client gets `-NOPERM <text>`.
    Refuse { rule: RefusalRule, text: String },
    /// `SELECT db` of a mapped db: the client's keys now carry that namespace's prefix.
    Select(u32),
    /// Answered by the sidecar's own prefix-scoped upstream calls.
    Run(Op),
}

/// A forwarded request changed by the stage.
#[derive(Debug, Default)]
pub(super) struct Rewrite {
    /// What to send instead of the client's request; `None`: the client's.
    pub req: Option<Request>,
    /// Keys still to prefix, done while the command is written out.
    pub prefix: Option<Prefix>,
    /// How the reply is rewritten before the client sees it.
    pub fix: Option<ReplyFix>,
    /// Sent after it, their replies dropped.
    pub follow_ups: Vec<Vec<Bytes>>,
    /// Upstream pub/sub names this request maps.
    pub channels: Vec<Bytes>,
}

/// The places of the arguments (at most [`Positions::MAX`]) a mapped db's prefix goes
/// in front of.
#[derive(Debug, Clone, Copy)]
pub(super) struct Positions {
    at: [usize; Positions::MAX],
    len: u8,
}

impl Positions {
    const MAX: usize = 8;

    fn new(found: &[KeyArg]) -> Option<Positions> {
        if found.len() > Positions::MAX {
            return None;
        }
        let mut at = [0; Positions::MAX];
        for (slot, k) in at.iter_mut().zip(found) {
            *slot = k.index;
        }
        Some(Positions {
            at,
            len: found.len() as u8,
        })
    }

    /// The places, in argument order.
    pub fn indices(&self) -> &[usize] {
        &self.at[..usize::from(self.len)]
    }

    /// The prefix they are for: that of the namespace mapped to `db`, the db the stage
    /// ran for. `None` only if `namespaces` is not the configuration it saw.
    pub fn prefix(namespaces: &Namespaces, db: u32) -> Option<&Bytes> {
        namespaces.by_db(db).map(|ns| &ns.prefix)
    }

    /// With [`prefix`](Self::prefix), owned.
    pub fn with_prefix(self, namespaces: &Namespaces, db: u32) -> Option<Prefix> {
        Some(Prefix {
            prefix: Positions::prefix(namespaces, db)?.clone(),
            at: self,
        })
    }
}

/// A mapped-db prefix to put in front of some arguments.
#[derive(Debug, Clone)]
pub(super) struct Prefix {
    pub prefix: Bytes,
    pub at: Positions,
}

impl Prefix {
    pub fn indices(&self) -> &[usize] {
        self.at.indices()
    }

    /// The request with the prefixes in place.
    pub fn apply(&self, req: &Request) -> Request {
        req.with_prefix(&self.prefix, self.indices())
    }
}

/// How a forwarded request's reply is rewritten before the client sees it.
#[derive(Debug, Clone)]
pub(super) struct ReplyFix {
    pub kind: KeyReply,
    pub prefix: Bytes,
}

/// A prefix-scoped operation the sidecar runs itself instead of forwarding.
#[derive(Debug, Clone)]
pub(super) enum Op {
    /// KEYS answered by iterating SCAN with `pattern` (as Redis sees it); `strip` is the
    /// mapped namespace's prefix to remove from each name.
    Keys {
        pattern: Bytes,
        strip: Option<Bytes>,
    },
    /// DBSIZE of a mapped db: the keys under the prefix.
    DbSize { prefix: Bytes },
    /// RANDOMKEY of a mapped db.
    RandomKey { prefix: Bytes },
    /// FLUSHDB / FLUSHALL made safe: delete the keys under these prefixes, answer +OK.
    Flush {
        prefixes: Vec<Bytes>,
        kind: FlushKind,
    },
}

/// What the stage needs besides the request; all shared, read-only or atomic.
pub(super) struct StageCtx<'a> {
    pub namespaces: &'a Namespaces,
    pub policy: &'a PolicyConfig,
    pub touch: &'a TouchThrottle,
    /// Keys outside every namespace let through (`unmatched_keys = "allow"`).
    pub unmatched: &'a AtomicU64,
}

/// The per-client state the stage reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientView {
    /// The db the client selected (0 unless it ran `SELECT n`).
    pub db: u32,
    /// Inside MULTI: operations the sidecar runs itself cannot be queued.
    pub in_multi: bool,
}

fn refuse(rule: RefusalRule, text: impl Into<String>) -> Staged {
    Staged::Refuse {
        rule,
        text: text.into(),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// How the stage treats a command, from its name alone. Worked out once per name (see
/// [`Scratch`]): an ordinary command then costs no name comparison at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Only its keys matter: checked (db 0) or prefixed (a mapped db).
    Keyed,
    /// Keyed, and in a mapped db its reply names keys, which lose the prefix.
    KeyReply(KeyReply),
    Select,
    /// MOVE, SWAPDB: another db by number.
    OtherDb,
    FlushAll,
    FlushDb,
    Keys,
    Scan,
    /// RANDOMKEY, DBSIZE: the whole db.
    WholeDb,
    /// COPY: refused with the DB option.
    Copy,
    /// SUBSCRIBE and the like: keyspace-notification channels of a mapped db.
    Subscribe,
    /// EVAL*, FCALL*, SCRIPT, FUNCTION: `policy.scripts` applies.
    Script,
}

impl Kind {
    /// `name` is upper case.
    fn of(name: &[u8]) -> Kind {
        match name {
            b"SELECT" => Kind::Select,
            b"MOVE" | b"SWAPDB" => Kind::OtherDb,
            b"FLUSHALL" => Kind::FlushAll,
            b"FLUSHDB" => Kind::FlushDb,
            b"KEYS" => Kind::Keys,
            b"SCAN" => Kind::Scan,
            b"RANDOMKEY" | b"DBSIZE" => Kind::WholeDb,
            b"COPY" => Kind::Copy,
            b"SUBSCRIBE" | b"UNSUBSCRIBE" | b"PSUBSCRIBE" | b"PUNSUBSCRIBE" => Kind::Subscribe,
            b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO"
            | b"SCRIPT" | b"FUNCTION" => Kind::Script,
            _ => reply_kind(name).map_or(Kind::Keyed, Kind::KeyReply),
        }
    }
}

/// Longest command name the stage resolves; a longer one is in no table and is treated as unknown.
const NAME_MAX: usize = 32;

/// A command name the stage has seen, with what it resolved to.
#[derive(Debug)]
struct Named {
    /// As the client sent it, and upper-cased (`len` bytes of each).
    raw: [u8; NAME_MAX],
    upper: [u8; NAME_MAX],
    len: usize,
    /// The top-level table entry (subcommand not resolved); `None`: not in the table.
    top: Option<&'static CommandInfo>,
    /// `top` has subcommands.
    container: bool,
    /// `top`'s only key, when it stands at a fixed place (see [`CommandInfo::fixed_key`]).
    fixed_key: Option<(usize, KeyFlags)>,
    kind: Kind,
    /// Where a mapped db's shortcut prefixes the key (see [`mapped_one`]): a plain
    /// command's only key, wherever [`CommandInfo::key_at`] puts it.
    mapped_key: Option<usize>,
}

impl Named {
    /// The table entry a request with this name runs (`args[1]` names a subcommand).
    fn entry(&self, args: &[Bytes]) -> Option<&'static CommandInfo> {
        match self.top {
            Some(top) if self.container => keys::resolve(top, args),
            top => top,
        }
    }

    fn upper(&self) -> &[u8] {
        &self.upper[..self.len]
    }
}

/// What the stage reuses from one request of a client to the next: room for the key
/// positions (so the common path allocates nothing), and the last command name with what
/// it resolved to (pipelines repeat names: one byte comparison replaces the table search
/// and the name checks).
#[derive(Debug, Default)]
pub(super) struct Scratch {
    found: Vec<KeyArg>,
    last: Option<Named>,
}

/// `name` resolved, from `last` when it is the same bytes; `None` when it is longer than
/// [`NAME_MAX`].
#[inline]
fn resolve_name<'a>(last: &'a mut Option<Named>, name: &[u8]) -> Option<&'a Named> {
    // Byte by byte: names are short, shorter than a call to memcmp.
    let same = last
        .as_ref()
        .is_some_and(|n| n.raw.get(..n.len).is_some_and(|raw| same_short(raw, name)));
    if !same {
        *last = Some(Named::new(name)?);
    }
    last.as_ref()
}

/// `a == b`, for up to 16 bytes in at most two word comparisons: cheaper than the call to
/// memcmp a slice comparison makes. Two words of a size that fits cover the whole slice
/// between them (overlapping when it is shorter than both together).
#[inline]
fn same_short(a: &[u8], b: &[u8]) -> bool {
    fn u32_at(s: &[u8], at: usize) -> u32 {
        s.get(at..at + 4)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u32::from_ne_bytes)
    }
    fn u64_at(s: &[u8], at: usize) -> u64 {
        s.get(at..at + 8)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    }
    let len = a.len();
    if len != b.len() {
        return false;
    }
    match len {
        0 => true,
        // The first, middle and last bytes are all of them.
        1..=3 => a[0] == b[0] && a[len / 2] == b[len / 2] && a[len - 1] == b[len - 1],
        4..=7 => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, len - 4) == u32_at(b, len - 4),
        8..=16 => u64_at(a, 0) == u64_at(b, 0) && u64_at(a, len - 8) == u64_at(b, len - 8),
        _ => a == b,
    }
}

impl Named {
    /// `None` when `name` is longer than [`NAME_MAX`]. Out of line, like the other rare
    /// paths, to keep the stage's hot path small.
    #[inline(never)]
    fn new(name: &[u8]) -> Option<Named> {
        let mut upper = [0u8; NAME_MAX];
        let len = crate::command::upper(name, &mut upper)?.len();
        let mut raw = [0u8; NAME_MAX];
        raw[..len].copy_from_slice(name);
        let top = keys::command(name);
        let container = top.is_some_and(|t| !t.subcommands().is_empty());
        let kind = Kind::of(&upper[..len]);
        Some(Named {
            raw,
            upper,
            len,
            top,
            container,
            fixed_key: top.and_then(CommandInfo::fixed_key),
            kind,
            // Not a container: the table entry is `top` itself, as the stage finds it.
            mapped_key: top
                .filter(|_| kind == Kind::Keyed && !container)
                .and_then(CommandInfo::key_at),
        })
    }
}

/// Apply namespaces and the key, flush, KEYS, script and TTL policies to one request.
/// Only called when at least one namespace is configured.
pub(super) fn stage(
    cx: &StageCtx<'_>,
    view: ClientView,
    req: &Request,
    scratch: &mut Scratch,
) -> Staged {
    let Scratch { found, last } = scratch;
    let Some(name) = req.args.first() else {
        return Staged::Forward;
    };
    let mapped = cx.namespaces.by_db(view.db);
    let Some(named) = resolve_name(last, name) else {
        // Longer than any name in the table: its keys cannot be found either.
        return long_name(cx, view, mapped, name);
    };
    if view.db != 0 && mapped.is_none() && named.kind != Kind::Select {
        return refuse(RefusalRule::Select, unmapped_db(view.db));
    }
    if named.kind != Kind::Keyed {
        if let Some(staged) = special(cx, view, mapped, named, req) {
            return staged;
        }
    }
    let Some(cmd) = named.entry(&req.args) else {
        return unknown(cx, mapped, named.upper());
    };
    let one: [KeyArg; 1];
    let found: &[KeyArg] = match named.fixed_key {
        // Most commands: one key at a fixed place, no list needed.
        Some((index, flags)) => {
            if index >= req.args.len() {
                return Staged::Forward; // Redis answers the arity error.
            }
            one = [KeyArg {
                index,
                flags,
                kind: ArgKind::Key,
            }];
            &one
        }
        None => {
            found.clear();
            keys::extract(cmd, &req.args, found);
            if found.is_empty() {
                return Staged::Forward;
            }
            found
        }
    };
    match mapped {
        None => checked(cx, cmd, req, found),
        Some(ns) => mapped_keys(cx, ns, named.kind, cmd, req, found),
    }
}

/// The commonest answer of [`stage`], found ahead of it: in a mapped db whose namespace
/// has no TTL rules, a command whose only key stands at a fixed place (GET, SET, HGET...,
/// see [`CommandInfo::key_at`]) is forwarded with that key prefixed. `Some((prefix,
/// index))` only where `stage` answers `Staged::Prefixed` at `[index]`; `None` leaves the
/// request to `stage`. Skipping the general stage (and for SET the key walk) took what a
/// mapped db adds to a GET at -P 16 from ~510 to ~290 user-space instructions, and to a
/// SET from ~635 to ~300 (cachegrind, 50 clients).
#[inline]
pub(super) fn mapped_one<'n>(
    namespaces: &'n Namespaces,
    db: u32,
    req: &Request,
    scratch: &mut Scratch,
) -> Option<(&'n Bytes, usize)> {
    if db == 0 {
        return None;
    }
    let ns = namespaces.by_db(db)?;
    if ns.has_ttl_rules() {
        return None;
    }
    let named = resolve_name(&mut scratch.last, req.args.first()?)?;
    let index = named.mapped_key?;
    (index < req.args.len()).then_some((&ns.prefix, index))
}

/// The commands the stage treats by name; `None`: go on with their keys.
#[inline(never)]
fn special(
    cx: &StageCtx<'_>,
    view: ClientView,
    mapped: Option<&Namespace>,
    named: &Named,
    req: &Request,
) -> Option<Staged> {
    let name = named.upper();
    Some(match named.kind {
        Kind::Select => select(cx, view, req),
        Kind::OtherDb => refuse(RefusalRule::Select, format!(
            "{} is refused: databases are mapped onto key prefixes (namespace.db), Redis only has db 0",
            lossy(name)
        )),
        Kind::FlushAll => flush(cx, view, None),
        Kind::FlushDb => flush(cx, view, mapped),
        Kind::Keys => keys_command(cx, view, mapped, req),
        Kind::Scan => scan(mapped?, req),
        Kind::WholeDb => {
            let Some(ns) = mapped else {
                return Some(Staged::Forward);
            };
            if req.args.len() != 1 {
                return Some(Staged::Forward); // Redis answers the arity error.
            }
            if view.in_multi {
                return Some(refuse(RefusalRule::Multi, in_multi(name)));
            }
            let prefix = ns.prefix.clone();
            Staged::Run(if name == b"DBSIZE" {
                Op::DbSize { prefix }
            } else {
                Op::RandomKey { prefix }
            })
        }
        Kind::Copy if has_db_option(&req.args) => refuse(
            RefusalRule::Select,
            "COPY ... DB is refused: databases are mapped onto key prefixes (namespace.db)",
        ),
        Kind::Subscribe => match mapped {
            Some(ns) => pubsub(ns, view.db, name, req),
            None => Staged::Forward,
        },
        Kind::Script => refuse(
            RefusalRule::Scripts,
            script_policy(cx.policy, name, &req.args).err()?,
        ),
        Kind::Keyed | Kind::KeyReply(_) | Kind::Copy => return None,
    })
}

/// A command the table does not know (a module's, or a newer Redis's): its keys cannot
/// be checked or prefixed.
#[inline(never)]
fn unknown(cx: &StageCtx<'_>, mapped: Option<&Namespace>, name: &[u8]) -> Staged {
    if mapped.is_some() || cx.policy.unmatched_keys == UnmatchedKeys::Reject {
        return refuse(RefusalRule::UnknownCommand, format!(
            "'{}' is not in the sidecar's command table, so its keys cannot be checked against the namespaces",
            lossy(name)
        ));
    }
    cx.unmatched.fetch_add(1, Ordering::Relaxed);
    Staged::Forward
}

/// A name longer than [`NAME_MAX`] is in no command table: treated like any unknown name.
#[inline(never)]
fn long_name(
    cx: &StageCtx<'_>,
    view: ClientView,
    mapped: Option<&Namespace>,
    name: &[u8],
) -> Staged {
    if view.db != 0 && mapped.is_none() {
        return refuse(RefusalRule::Select, unmapped_db(view.db));
    }
    unknown(cx, mapped, &name.to_ascii_uppercase())
}

/// db 0 (unmapped): every key must lie in a namespace (or is counted, with
/// `unmatched_keys = "allow"`); keys in a namespace with TTL rules get a TTL plan.
fn checked(cx: &StageCtx<'_>, cmd: &CommandInfo, req: &Request, found: &[KeyArg]) -> Staged {
    let any_rules = cx.namespaces.any_ttl_rules();
    let mut ruled = false;
    let mut unmatched = false;
    for k in found {
        let key = &req.args[k.index];
        match cx.namespaces.of_key(key) {
            Some(ns) => ruled |= any_rules && k.kind == ArgKind::Key && ns.has_ttl_rules(),
            None if cx.policy.unmatched_keys == UnmatchedKeys::Reject => {
                return refuse(
                    RefusalRule::UnmatchedKey,
                    unmatched_text(cx.namespaces, key, k.kind),
                );
            }
            None => unmatched = true,
        }
    }
    if unmatched {
        cx.unmatched.fetch_add(1, Ordering::Relaxed);
    }
    if !ruled {
        return Staged::Forward;
    }
    with_ttl(cx, None, cmd, req, None, None, found)
}

/// A mapped db: every key gets the namespace's prefix; a reply naming keys loses it.
fn mapped_keys(
    cx: &StageCtx<'_>,
    ns: &Namespace,
    kind: Kind,
    cmd: &CommandInfo,
    req: &Request,
    found: &[KeyArg],
) -> Staged {
    let fix = match kind {
        Kind::KeyReply(kind) => Some(ReplyFix {
            kind,
            prefix: ns.prefix.clone(),
        }),
        _ => None,
    };
    if !ns.has_ttl_rules() {
        // The common mapped case: prefix while writing the command out.
        return match Positions::new(found) {
            Some(at) if fix.is_none() => Staged::Prefixed(at),
            Some(at) => Staged::Rewritten(Box::new(Rewrite {
                prefix: Some(Prefix {
                    prefix: ns.prefix.clone(),
                    at,
                }),
                fix,
                ..Rewrite::default()
            })),
            None => rewritten(Some(prefixed(ns, req, found)), fix, Vec::new()),
        };
    }
    let changed = prefixed(ns, req, found);
    if !found.iter().any(|k| k.kind == ArgKind::Key) {
        return rewritten(Some(changed), fix, Vec::new());
    }
    with_ttl(cx, Some(ns), cmd, req, Some(changed), fix, found)
}

/// The TTL rules of the namespaces `found`'s keys lie in (all `mapped`, when set) applied
/// to the request as Redis will see it: `changed`, or the client's `req`.
#[inline(never)]
fn with_ttl(
    cx: &StageCtx<'_>,
    mapped: Option<&Namespace>,
    cmd: &CommandInfo,
    req: &Request,
    changed: Option<Request>,
    fix: Option<ReplyFix>,
    found: &[KeyArg],
) -> Staged {
    let args = changed.as_ref().map_or(&req.args, |r| &r.args);
    let ruled: Vec<(KeyArg, &Namespace)> = found
        .iter()
        .filter(|k| k.kind == ArgKind::Key)
        .filter_map(|k| {
            let owner = mapped.or_else(|| cx.namespaces.of_key(&args[k.index]));
            owner.filter(|ns| ns.has_ttl_rules()).map(|ns| (*k, ns))
        })
        .collect();
    match ttl::plan(
        cmd,
        args,
        &ruled,
        cx.touch,
        SystemTime::now(),
        Instant::now(),
    ) {
        Err(text) => refuse(RefusalRule::Ttl, text),
        Ok(plan) => rewritten(
            plan.args.map(Request::from_args).or(changed),
            fix,
            plan.follow_ups,
        ),
    }
}

/// Forward `req` if given, else the client's request, with a reply fix and follow-ups.
fn rewritten(req: Option<Request>, fix: Option<ReplyFix>, follow_ups: Vec<Vec<Bytes>>) -> Staged {
    if req.is_none() && fix.is_none() && follow_ups.is_empty() {
        return Staged::Forward;
    }
    Staged::Rewritten(Box::new(Rewrite {
        req,
        fix,
        follow_ups,
        ..Rewrite::default()
    }))
}

fn in_multi(name: &[u8]) -> String {
    format!(
        "{} cannot run inside MULTI while namespaces are enabled: the sidecar answers it with its own scoped scan; send it outside the transaction",
        lossy(name)
    )
}

/// The request with every key and SORT pattern of a mapped-db client prefixed.
fn prefixed(ns: &Namespace, req: &Request, found: &[KeyArg]) -> Request {
    let mut at = [0usize; 8];
    if found.len() <= at.len() {
        for (slot, k) in at.iter_mut().zip(found) {
            *slot = k.index;
        }
        return req.with_prefix(&ns.prefix, &at[..found.len()]);
    }
    let at: Vec<usize> = found.iter().map(|k| k.index).collect();
    req.with_prefix(&ns.prefix, &at)
}

fn unmatched_text(namespaces: &Namespaces, key: &[u8], kind: ArgKind) -> String {
    let prefixes: Vec<String> = namespaces
        .iter()
        .map(|ns| format!("'{}'", ns.config.prefix))
        .collect();
    let what = match kind {
        ArgKind::Key => "key",
        ArgKind::Pattern => "SORT pattern",
    };
    format!(
        "{what} '{}' is outside every namespace (policy.unmatched_keys = \"reject\"); keys must start with one of {}",
        lossy(key),
        prefixes.join(", ")
    )
}

/// Replies that carry key names a mapped-db client must see without the prefix.
fn reply_kind(name: &[u8]) -> Option<KeyReply> {
    match name {
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => Some(KeyReply::PopKey),
        b"LMPOP" | b"BLMPOP" | b"ZMPOP" | b"BZMPOP" => Some(KeyReply::MPop),
        b"XREAD" | b"XREADGROUP" => Some(KeyReply::Streams),
        _ => None,
    }
}

fn has_db_option(args: &[Bytes]) -> bool {
    args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"DB"))
}

/// `SELECT n`: a mapped db switches the client's prefix; db 0 unmapped is Redis's own.
fn select(cx: &StageCtx<'_>, view: ClientView, req: &Request) -> Staged {
    let [_, db] = req.args.as_slice() else {
        return refuse_arity("select");
    };
    let Some(db) = std::str::from_utf8(db)
        .ok()
        .and_then(|d| d.parse::<u32>().ok())
    else {
        return Staged::Answer(Reply::error("ERR value is not an integer or out of range"));
    };
    if view.in_multi {
        return refuse(RefusalRule::Multi, "SELECT inside MULTI is not supported while namespaces map databases; SELECT before MULTI");
    }
    if db == 0 || cx.namespaces.by_db(db).is_some() {
        return Staged::Select(db);
    }
    refuse(RefusalRule::Select, format!(
        "SELECT {db}: no namespace maps db {db} (set db = {db} on a [[namespace]]); Redis is used through db 0 with key prefixes"
    ))
}

/// The client selected a db whose mapping a config reload removed.
pub(super) fn unmapped_db(db: u32) -> String {
    format!(
        "db {db} is no longer mapped to a namespace (the config was reloaded); SELECT a mapped db or reconnect"
    )
}

fn refuse_arity(name: &str) -> Staged {
    Staged::Answer(Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    )))
}

/// FLUSHALL (`mapped` = None) or FLUSHDB: only flush-safe namespaces are touched.
fn flush(cx: &StageCtx<'_>, view: ClientView, mapped: Option<&Namespace>) -> Staged {
    let what = if mapped.is_some() {
        "FLUSHDB"
    } else {
        "FLUSHALL"
    };
    if cx.policy.flush == FlushPolicy::Deny {
        return refuse(RefusalRule::Flush, format!(
            "{what} is refused (policy.flush = \"deny\"); use SIDECAR FLUSH <namespace> to empty one namespace"
        ));
    }
    if view.in_multi {
        return refuse(RefusalRule::Multi, in_multi(what.as_bytes()));
    }
    let prefixes = match mapped {
        Some(ns) if ns.config.flush == FlushMode::Deny => {
            return refuse(
                RefusalRule::Flush,
                format!(
                    "FLUSHDB is refused: namespace '{}' (db {}) is protected (flush = \"deny\")",
                    ns.name(),
                    view.db
                ),
            )
        }
        Some(ns) => vec![ns.prefix.clone()],
        // FLUSHALL, or FLUSHDB of db 0 which is every namespace: the flush-safe ones only.
        None => cx
            .namespaces
            .iter()
            .filter(|ns| ns.config.flush == FlushMode::Allow)
            .map(|ns| ns.prefix.clone())
            .collect(),
    };
    let kind = if mapped.is_some() {
        FlushKind::Flushdb
    } else {
        FlushKind::Flushall
    };
    Staged::Run(Op::Flush { prefixes, kind })
}

fn keys_command(
    cx: &StageCtx<'_>,
    view: ClientView,
    mapped: Option<&Namespace>,
    req: &Request,
) -> Staged {
    if req.args.len() != 2 {
        return Staged::Forward; // Redis answers the arity error.
    }
    let pattern = &req.args[1];
    match cx.policy.keys {
        KeysMode::Deny => refuse(RefusalRule::Keys,
            "KEYS is refused (policy.keys = \"deny\"): it blocks Redis while it walks every key; use SCAN",
        ),
        KeysMode::Forward => match mapped {
            None => Staged::Forward,
            Some(ns) => Staged::Rewritten(Box::new(Rewrite {
                req: Some(Request::from_args(vec![
                    req.args[0].clone(),
                    ns.scope_pattern(pattern),
                ])),
                fix: Some(ReplyFix {
                    kind: KeyReply::Keys,
                    prefix: ns.prefix.clone(),
                }),
                ..Rewrite::default()
            })),
        },
        KeysMode::Scan if view.in_multi => refuse(RefusalRule::Multi, in_multi(b"KEYS")),
        KeysMode::Scan => Staged::Run(Op::Keys {
            pattern: match mapped {
                Some(ns) => ns.scope_pattern(pattern),
                None => pattern.clone(),
            },
            strip: mapped.map(|ns| ns.prefix.clone()),
        }),
    }
}

/// SCAN in a mapped db: MATCH scoped to the prefix (added when absent), names stripped.
fn scan(ns: &Namespace, req: &Request) -> Staged {
    let mut args = req.args.to_vec();
    let mut matched = false;
    let mut i = 2;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"MATCH") && i + 1 < args.len() {
            args[i + 1] = ns.scope_pattern(&args[i + 1]);
            matched = true;
        }
        i += 2;
    }
    if !matched && args.len() >= 2 {
        args.push(Bytes::from_static(b"MATCH"));
        args.push(ns.scope_pattern(b"*"));
    }
    Staged::Rewritten(Box::new(Rewrite {
        req: Some(Request::from_args(args)),
        fix: Some(ReplyFix {
            kind: KeyReply::Scan,
            prefix: ns.prefix.clone(),
        }),
        ..Rewrite::default()
    }))
}

/// Keyspace-notification channels of a mapped db become db 0's, scoped to the prefix.
fn pubsub(ns: &Namespace, db: u32, name: &[u8], req: &Request) -> Staged {
    let pattern = matches!(name, b"PSUBSCRIBE" | b"PUNSUBSCRIBE");
    let mut args = req.args.to_vec();
    let mut channels = Vec::new();
    for arg in args.iter_mut().skip(1) {
        let up = if pattern {
            reply::pattern_to_upstream(arg, db, ns)
        } else {
            reply::channel_to_upstream(arg, db, ns)
        };
        if let Some(up) = up {
            *arg = up.clone();
            channels.push(up);
        }
    }
    Staged::Rewritten(Box::new(Rewrite {
        req: Some(Request::from_args(args)),
        channels,
        ..Rewrite::default()
    }))
}

/// `policy.scripts`: scripts can touch keys they do not declare, so they can be refused.
fn script_policy(policy: &PolicyConfig, name: &[u8], args: &[Bytes]) -> Result<(), String> {
    let script = matches!(
        name,
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO"
    );
    let loads = match name {
        b"SCRIPT" | b"FUNCTION" => args
            .get(1)
            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"LOAD")),
        _ => false,
    };
    if (!script && !loads) || policy.scripts == ScriptsMode::Allow {
        return Ok(());
    }
    let label = if loads {
        format!("{} LOAD", lossy(name))
    } else {
        lossy(name)
    };
    match policy.scripts {
        ScriptsMode::Allow => Ok(()),
        ScriptsMode::Deny => Err(format!(
            "{label} is refused (policy.scripts = \"deny\"): a script can touch keys it does not declare, outside the namespaces"
        )),
        ScriptsMode::Allowlist => {
            let sha = match name {
                b"EVALSHA" | b"EVALSHA_RO" => args.get(1).map(|s| lossy(s).to_ascii_lowercase()),
                b"EVAL" | b"EVAL_RO" => args.get(1).map(|s| sha1_hex(s)),
                b"SCRIPT" => args.get(2).map(|s| sha1_hex(s)),
                // Functions are named, not hashed: the allowlist cannot admit them.
                _ => None,
            };
            match sha {
                Some(sha) if policy.script_allowlist.contains(&sha) => Ok(()),
                Some(sha) => Err(format!(
                    "{label} is refused: script {sha} is not in policy.script_allowlist"
                )),
                None => Err(format!(
                    "{label} is refused (policy.scripts = \"allowlist\" admits scripts by SHA1 only)"
                )),
            }
        }
    }
}

fn sha1_hex(bytes: &[u8]) -> String {
    sha1_smol::Sha1::from(bytes).digest().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_args as args;
    use crate::config::Config;

    struct Fixture {
        namespaces: Namespaces,
        policy: PolicyConfig,
        touch: TouchThrottle,
        unmatched: AtomicU64,
    }

    fn fixture(policy: &str) -> Fixture {
        let toml = format!(
            "[policy]\n{policy}\n\
             [[namespace]]\nname = \"session\"\nprefix = \"s:\"\ndb = 3\n\
             [[namespace]]\nname = \"cache\"\nprefix = \"c*:\"\ndb = 5\nflush = \"allow\"\n"
        );
        let config = Config::from_toml_str(&toml).unwrap();
        Fixture {
            namespaces: Namespaces::new(&config.namespaces),
            policy: config.policy,
            touch: TouchThrottle::new(16),
            unmatched: AtomicU64::new(0),
        }
    }

    fn run(f: &Fixture, db: u32, in_multi: bool, line: &str) -> Staged {
        run_req(f, db, in_multi, &Request::from_args(args(line)))
    }

    fn run_req(f: &Fixture, db: u32, in_multi: bool, req: &Request) -> Staged {
        let cx = StageCtx {
            namespaces: &f.namespaces,
            policy: &f.policy,
            touch: &f.touch,
            unmatched: &f.unmatched,
        };
        stage(
            &cx,
            ClientView { db, in_multi },
            req,
            &mut Scratch::default(),
        )
    }

    fn refusal(staged: Staged) -> String {
        match staged {
            Staged::Refuse { text, .. } => format!("NOPERM {text}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// The arguments sent for `line` sent in `db`.
    fn forwarded(f: &Fixture, db: u32, line: &str) -> Vec<Bytes> {
        let req = Request::from_args(args(line));
        let sent = |req: &Request, prefix: Option<&Prefix>| match prefix {
            Some(p) => p.apply(req).args.to_vec(),
            None => req.args.to_vec(),
        };
        match run_req(f, db, false, &req) {
            Staged::Forward => req.args.to_vec(),
            Staged::Prefixed(at) => sent(&req, at.with_prefix(&f.namespaces, db).as_ref()),
            Staged::Rewritten(r) => sent(r.req.as_ref().unwrap_or(&req), r.prefix.as_ref()),
            other => panic!("expected a forward, got {other:?}"),
        }
    }

    #[test]
    fn same_short_is_slice_equality() {
        for len in 0..=40usize {
            let a: Vec<u8> = (0..len).map(|i| b'A' + i as u8).collect();
            assert!(same_short(&a, &a.clone()), "{len}");
            assert!(!same_short(&a, &a[..len.saturating_sub(1)]) || len == 0);
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_short(&a, &b), "{len} differing at {at}");
            }
        }
    }

    #[test]
    fn a_remembered_name_resolves_as_a_fresh_one() {
        let f = fixture("scripts = \"deny\"");
        let cx = StageCtx {
            namespaces: &f.namespaces,
            policy: &f.policy,
            touch: &f.touch,
            unmatched: &f.unmatched,
        };
        let lines = [
            "GET s:a",
            "GET s:a",
            "get other",
            "GET other",
            "OBJECT ENCODING s:a",
            "OBJECT FREQ other",
            "OBJECT HELP",
            "object nosuch x",
            "SCAN 0",
            "SCAN 0",
            "EVAL x 0",
            "eval x 0",
            "SCRIPT LOAD x",
            "SCRIPT EXISTS x",
            "NOSUCH s:a",
            "NOSUCH s:a",
            "KEYS *",
            "DBSIZE",
            "BLPOP a 0",
            "BLPOP a 0",
            "SELECT 3",
            "GET a",
        ];
        let mut shared = Scratch::default();
        for db in [0, 3, 5] {
            for line in lines {
                let req = Request::from_args(args(line));
                let view = ClientView {
                    db,
                    in_multi: false,
                };
                let fresh = stage(&cx, view, &req, &mut Scratch::default());
                let again = stage(&cx, view, &req, &mut shared);
                assert_eq!(
                    format!("{again:?}"),
                    format!("{fresh:?}"),
                    "{line} in db {db}"
                );
            }
        }
    }

    /// Wherever the shortcut answers, for every command of the table in either case and
    /// with up to four arguments (some with SET's and BITFIELD's `GET`), the full stage
    /// gives the same prefix at the same place.
    #[test]
    fn mapped_one_agrees_with_the_stage() {
        let f = fixture("");
        let toml = "[[namespace]]\nname = \"locks\"\nprefix = \"l:\"\ndb = 2\nrequire_ttl = true\n";
        let ruled = Namespaces::new(&Config::from_toml_str(toml).unwrap().namespaces);
        let mut answered = 0;
        for cmd in crate::keys::commands() {
            for name in [cmd.name.to_string(), cmd.name.to_lowercase()] {
                let tails = ["", " a", " a b", " a b c", " a b GET", " a GET x y"];
                for tail in tails {
                    let line = format!("{name}{tail}");
                    let req = Request::from_args(args(&line));
                    for db in [0, 2, 3, 4, 5] {
                        let namespaces = if db == 2 { &ruled } else { &f.namespaces };
                        let one = mapped_one(namespaces, db, &req, &mut Scratch::default());
                        let Some((prefix, index)) = one else {
                            continue;
                        };
                        answered += 1;
                        let cx = StageCtx {
                            namespaces,
                            policy: &f.policy,
                            touch: &f.touch,
                            unmatched: &f.unmatched,
                        };
                        let view = ClientView {
                            db,
                            in_multi: false,
                        };
                        match stage(&cx, view, &req, &mut Scratch::default()) {
                            Staged::Prefixed(at) => {
                                assert_eq!(at.indices(), [index], "{line} in db {db}");
                                assert_eq!(
                                    Positions::prefix(namespaces, db),
                                    Some(prefix),
                                    "{line} in db {db}"
                                );
                            }
                            other => panic!("{line} in db {db}: the stage gave {other:?}"),
                        }
                    }
                }
            }
        }
        // GET, SET, HGET... in db 3 and 5, upper and lower case: the shortcut is taken.
        assert!(
            answered > 200,
            "the shortcut answered only {answered} times"
        );
    }

    #[test]
    fn select_maps_known_dbs_and_refuses_others() {
        let f = fixture("");
        assert!(matches!(run(&f, 0, false, "SELECT 3"), Staged::Select(3)));
        assert!(matches!(run(&f, 3, false, "select 0"), Staged::Select(0)));
        assert!(refusal(run(&f, 0, false, "SELECT 4")).contains("no namespace maps db 4"));
        assert!(refusal(run(&f, 0, true, "SELECT 3")).contains("inside MULTI"));
        assert!(refusal(run(&f, 0, false, "MOVE k 3")).starts_with("NOPERM MOVE"));
    }

    #[test]
    fn flushes_are_scoped_to_flush_safe_namespaces() {
        let f = fixture("");
        match run(&f, 0, false, "FLUSHALL ASYNC") {
            Staged::Run(Op::Flush { prefixes, kind }) => {
                assert_eq!(prefixes, vec![Bytes::from("c*:")]);
                assert_eq!(kind, FlushKind::Flushall);
            }
            other => panic!("{other:?}"),
        }
        assert!(refusal(run(&f, 3, false, "FLUSHDB")).contains("'session' (db 3) is protected"));
        assert!(refusal(run(&f, 5, true, "FLUSHDB")).contains("inside MULTI"));
        let deny = fixture("flush = \"deny\"");
        assert!(refusal(run(&deny, 0, false, "FLUSHALL")).contains("policy.flush"));
    }

    #[test]
    fn keys_and_scan_are_scoped_with_the_prefix_escaped() {
        let f = fixture("");
        match run(&f, 5, false, "KEYS u*") {
            Staged::Run(Op::Keys { pattern, strip }) => {
                assert_eq!(pattern.as_ref(), b"c\\*:u*");
                assert_eq!(strip.as_deref(), Some(&b"c*:"[..]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            forwarded(&f, 5, "SCAN 0 COUNT 10"),
            args("SCAN 0 COUNT 10 MATCH c\\*:*")
        );
        assert_eq!(
            forwarded(&f, 3, "SCAN 7 match a?"),
            args("SCAN 7 match s:a?")
        );
        // db 0 is Redis's own keyspace: forwarded as is.
        assert_eq!(forwarded(&f, 0, "SCAN 0"), args("SCAN 0"));
        let deny = fixture("keys = \"deny\"");
        assert!(refusal(run(&deny, 0, false, "KEYS *")).contains("policy.keys"));
    }

    #[test]
    fn mapped_keys_get_the_prefix_and_db0_keys_are_checked() {
        let f = fixture("");
        assert_eq!(forwarded(&f, 3, "MSET a 1 b 2"), args("MSET s:a 1 s:b 2"));
        assert_eq!(forwarded(&f, 0, "GET s:a"), args("GET s:a"));
        assert!(
            refusal(run(&f, 0, false, "GET other")).contains("'other' is outside every namespace")
        );
        let many = format!(
            "DEL {}",
            (0..20)
                .map(|i| format!("k{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let want = format!(
            "DEL {}",
            (0..20)
                .map(|i| format!("s:k{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(forwarded(&f, 3, &many), args(&want));
    }

    #[test]
    fn scripts_policy_checks_before_keys() {
        let f = fixture("scripts = \"deny\"");
        assert!(refusal(run(&f, 0, false, "EVAL x 0")).contains("policy.scripts"));
        assert!(refusal(run(&f, 0, false, "SCRIPT LOAD x")).contains("SCRIPT LOAD"));
        let sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
        let list = fixture(&format!(
            "scripts = \"allowlist\"\nscript_allowlist = [\"{sha}\"]"
        ));
        assert!(refusal(run(&list, 0, false, "EVALSHA ffff 0"))
            .contains("not in policy.script_allowlist"));
        assert!(matches!(
            run(&list, 0, false, &format!("EVALSHA {sha} 0")),
            Staged::Forward
        ));
    }
}
