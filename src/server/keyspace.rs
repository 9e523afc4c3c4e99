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

use crate::command::upper;
use crate::config::{FlushMode, FlushPolicy, KeysMode, PolicyConfig, ScriptsMode, UnmatchedKeys};
use crate::keys::{self, ArgKind, KeyArg};
use crate::metrics::{FlushKind, RefusalRule};
use crate::namespace::reply::{self, KeyReply};
use crate::namespace::ttl::{self, TouchThrottle};
use crate::namespace::{Namespace, Namespaces};
use crate::resp::{Reply, Request};

/// What the namespace stage made of one request.
// `Forward` is what almost every request becomes: boxing it would allocate per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Staged {
    /// Send `req` (maybe rewritten), then `follow_ups` whose replies are dropped; rewrite
    /// the reply with `fix`. `channels`: upstream pub/sub names this request maps.
    Forward {
        req: Request,
        /// Keys still to prefix, done while the command is written out (no copy of the
        /// request in between); `None` when `req` is final.
        prefix: Option<Prefix>,
        fix: Option<ReplyFix>,
        follow_ups: Vec<Vec<Bytes>>,
        channels: Vec<Bytes>,
    },
    /// Answer without Redis (a malformed `SELECT`).
    Answer(Reply),
    /// Refused by `rule`: the client gets `-NOPERM <text>`.
    Refuse { rule: RefusalRule, text: String },
    /// `SELECT db` of a mapped db: the client's keys now carry that namespace's prefix.
    Select(u32),
    /// Answered by the sidecar's own prefix-scoped upstream calls.
    Run(Op),
}

/// A mapped-db prefix to put in front of some arguments (at most [`Prefix::MAX`]).
#[derive(Debug, Clone)]
pub(super) struct Prefix {
    pub prefix: Bytes,
    at: [usize; Prefix::MAX],
    len: usize,
}

impl Prefix {
    const MAX: usize = 8;

    fn new(prefix: &Bytes, found: &[KeyArg]) -> Option<Prefix> {
        if found.len() > Prefix::MAX {
            return None;
        }
        let mut at = [0; Prefix::MAX];
        for (slot, k) in at.iter_mut().zip(found) {
            *slot = k.index;
        }
        Some(Prefix {
            prefix: prefix.clone(),
            at,
            len: found.len(),
        })
    }

    pub fn indices(&self) -> &[usize] {
        &self.at[..self.len]
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

/// Apply namespaces and the key, flush, KEYS, script and TTL policies to one request.
/// Only called when at least one namespace is configured.
/// `found` is scratch space for the key positions (kept by the caller, so the common
/// path allocates nothing).
pub(super) fn stage(
    cx: &StageCtx<'_>,
    view: ClientView,
    req: Request,
    found: &mut Vec<KeyArg>,
) -> Staged {
    let mut buf = [0u8; 32];
    let Some(name) = req.args.first().and_then(|n| upper(n, &mut buf)) else {
        return forward(req);
    };
    let mapped = cx.namespaces.by_db(view.db);
    if view.db != 0 && mapped.is_none() && name != b"SELECT" {
        return refuse(RefusalRule::Select, unmapped_db(view.db));
    }
    match name {
        b"SELECT" => return select(cx, view, &req),
        b"MOVE" | b"SWAPDB" => {
            return refuse(RefusalRule::Select, format!(
                "{} is refused: databases are mapped onto key prefixes (namespace.db), Redis only has db 0",
                lossy(name)
            ))
        }
        b"FLUSHALL" => return flush(cx, view, None),
        b"FLUSHDB" => return flush(cx, view, mapped),
        b"KEYS" => return keys_command(cx, view, mapped, req),
        b"SCAN" => {
            if let Some(ns) = mapped {
                return scan(ns, req);
            }
        }
        b"RANDOMKEY" | b"DBSIZE" => {
            let Some(ns) = mapped else {
                return forward(req);
            };
            if req.args.len() != 1 {
                return forward(req); // Redis answers the arity error.
            }
            if view.in_multi {
                return refuse(RefusalRule::Multi, in_multi(name));
            }
            let prefix = ns.prefix.clone();
            return Staged::Run(if name == b"DBSIZE" {
                Op::DbSize { prefix }
            } else {
                Op::RandomKey { prefix }
            });
        }
        b"COPY" if has_db_option(&req.args) => {
            return refuse(RefusalRule::Select,
                "COPY ... DB is refused: databases are mapped onto key prefixes (namespace.db)",
            )
        }
        b"SUBSCRIBE" | b"UNSUBSCRIBE" | b"PSUBSCRIBE" | b"PUNSUBSCRIBE" => {
            return match mapped {
                Some(ns) => pubsub(ns, view.db, name, req),
                None => forward(req),
            };
        }
        _ => {}
    }
    if let Err(text) = script_policy(cx.policy, name, &req.args) {
        return refuse(RefusalRule::Scripts, text);
    }
    let Some(cmd) = keys::lookup(&req.args) else {
        // A command the table does not know (a module's, or a newer Redis's): its keys
        // cannot be checked or prefixed.
        if mapped.is_some() || cx.policy.unmatched_keys == UnmatchedKeys::Reject {
            return refuse(RefusalRule::UnknownCommand, format!(
                "'{}' is not in the sidecar's command table, so its keys cannot be checked against the namespaces",
                lossy(name)
            ));
        }
        cx.unmatched.fetch_add(1, Ordering::Relaxed);
        return forward(req);
    };
    found.clear();
    keys::extract(cmd, &req.args, found);
    if found.is_empty() {
        return forward(req);
    }
    let fix = mapped.and_then(|ns| {
        reply_kind(name).map(|kind| ReplyFix {
            kind,
            prefix: ns.prefix.clone(),
        })
    });
    if let Some(ns) = mapped.filter(|ns| !ns.has_ttl_rules()) {
        // The common mapped case: prefix while writing the command out.
        if let Some(prefix) = Prefix::new(&ns.prefix, found) {
            return Staged::Forward {
                req,
                prefix: Some(prefix),
                fix,
                follow_ups: Vec::new(),
                channels: Vec::new(),
            };
        }
    }
    let req = match mapped {
        Some(ns) => prefixed(ns, req, found),
        None => {
            let mut unmatched = false;
            for k in found.iter() {
                let key = &req.args[k.index];
                if cx.namespaces.of_key(key).is_none() {
                    if cx.policy.unmatched_keys == UnmatchedKeys::Reject {
                        return refuse(
                            RefusalRule::UnmatchedKey,
                            unmatched_text(cx.namespaces, key, k.kind),
                        );
                    }
                    unmatched = true;
                }
            }
            if unmatched {
                cx.unmatched.fetch_add(1, Ordering::Relaxed);
            }
            req
        }
    };
    if !cx.namespaces.any_ttl_rules() {
        return Staged::Forward {
            req,
            prefix: None,
            fix,
            follow_ups: Vec::new(),
            channels: Vec::new(),
        };
    }
    let ruled: Vec<(KeyArg, &Namespace)> = found
        .iter()
        .filter(|k| k.kind == ArgKind::Key)
        .filter_map(|k| {
            let owner = mapped.or_else(|| cx.namespaces.of_key(&req.args[k.index]));
            owner.filter(|ns| ns.has_ttl_rules()).map(|ns| (*k, ns))
        })
        .collect();
    if ruled.is_empty() {
        return Staged::Forward {
            req,
            prefix: None,
            fix,
            follow_ups: Vec::new(),
            channels: Vec::new(),
        };
    }
    match ttl::plan(
        cmd,
        &req.args,
        &ruled,
        cx.touch,
        SystemTime::now(),
        Instant::now(),
    ) {
        Err(text) => refuse(RefusalRule::Ttl, text),
        Ok(plan) => Staged::Forward {
            req: match plan.args {
                Some(args) => Request::from_args(args),
                None => req,
            },
            prefix: None,
            fix,
            follow_ups: plan.follow_ups,
            channels: Vec::new(),
        },
    }
}

fn forward(req: Request) -> Staged {
    Staged::Forward {
        req,
        prefix: None,
        fix: None,
        follow_ups: Vec::new(),
        channels: Vec::new(),
    }
}

fn in_multi(name: &[u8]) -> String {
    format!(
        "{} cannot run inside MULTI while namespaces are enabled: the sidecar answers it with its own scoped scan; send it outside the transaction",
        lossy(name)
    )
}

/// The request with every key and SORT pattern of a mapped-db client prefixed.
fn prefixed(ns: &Namespace, req: Request, found: &[KeyArg]) -> Request {
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
    req: Request,
) -> Staged {
    if req.args.len() != 2 {
        return forward(req); // Redis answers the arity error.
    }
    let pattern = &req.args[1];
    match cx.policy.keys {
        KeysMode::Deny => refuse(RefusalRule::Keys,
            "KEYS is refused (policy.keys = \"deny\"): it blocks Redis while it walks every key; use SCAN",
        ),
        KeysMode::Forward => match mapped {
            None => forward(req),
            Some(ns) => Staged::Forward {
                req: Request::from_args(vec![req.args[0].clone(), ns.scope_pattern(pattern)]),
                prefix: None,
                fix: Some(ReplyFix {
                    kind: KeyReply::Keys,
                    prefix: ns.prefix.clone(),
                }),
                follow_ups: Vec::new(),
                channels: Vec::new(),
            },
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
fn scan(ns: &Namespace, req: Request) -> Staged {
    let mut args = req.args;
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
    Staged::Forward {
        req: Request::from_args(args.into_vec()),
        prefix: None,
        fix: Some(ReplyFix {
            kind: KeyReply::Scan,
            prefix: ns.prefix.clone(),
        }),
        follow_ups: Vec::new(),
        channels: Vec::new(),
    }
}

/// Keyspace-notification channels of a mapped db become db 0's, scoped to the prefix.
fn pubsub(ns: &Namespace, db: u32, name: &[u8], req: Request) -> Staged {
    let pattern = matches!(name, b"PSUBSCRIBE" | b"PUNSUBSCRIBE");
    let mut args = req.args;
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
    Staged::Forward {
        req: Request::from_args(args.into_vec()),
        prefix: None,
        fix: None,
        follow_ups: Vec::new(),
        channels,
    }
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
    if !script && !loads {
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
        let cx = StageCtx {
            namespaces: &f.namespaces,
            policy: &f.policy,
            touch: &f.touch,
            unmatched: &f.unmatched,
        };
        let req = Request::from_args(args(line));
        stage(&cx, ClientView { db, in_multi }, req, &mut Vec::new())
    }

    fn refusal(staged: Staged) -> String {
        match staged {
            Staged::Refuse { text, .. } => format!("NOPERM {text}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn forwarded(staged: Staged) -> Vec<Bytes> {
        match staged {
            Staged::Forward { req, prefix, .. } => match prefix {
                Some(p) => p.apply(&req).args.into_vec(),
                None => req.args.into_vec(),
            },
            other => panic!("expected a forward, got {other:?}"),
        }
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
            forwarded(run(&f, 5, false, "SCAN 0 COUNT 10")),
            args("SCAN 0 COUNT 10 MATCH c\\*:*")
        );
        assert_eq!(
            forwarded(run(&f, 3, false, "SCAN 7 match a?")),
            args("SCAN 7 match s:a?")
        );
        // db 0 is Redis's own keyspace: forwarded as is.
        assert_eq!(forwarded(run(&f, 0, false, "SCAN 0")), args("SCAN 0"));
        let deny = fixture("keys = \"deny\"");
        assert!(refusal(run(&deny, 0, false, "KEYS *")).contains("policy.keys"));
    }

    #[test]
    fn mapped_keys_get_the_prefix_and_db0_keys_are_checked() {
        let f = fixture("");
        assert_eq!(
            forwarded(run(&f, 3, false, "MSET a 1 b 2")),
            args("MSET s:a 1 s:b 2")
        );
        assert_eq!(forwarded(run(&f, 0, false, "GET s:a")), args("GET s:a"));
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
        assert_eq!(forwarded(run(&f, 3, false, &many)), args(&want));
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
            Staged::Forward { .. }
        ));
    }
}
