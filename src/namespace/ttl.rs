//! Per-namespace TTL rules: default TTL, maximum TTL, required TTL, sliding expiry.
//!
//! [`plan`] looks at one request whose keys lie in namespaces with TTL rules and says
//! how to forward it: unchanged, with rewritten arguments (a TTL added or capped), with
//! follow-up commands sent right after it (`PEXPIRE key ms NX`), or refused with a
//! `-NOPERM` text that names the namespace, the rule and how to comply.
//! [`TouchThrottle`] keeps sliding expiry to at most one `PEXPIRE` per key per interval.
//!
//! Pure and synchronous: the caller finds the keys and their namespaces, passes the
//! clocks in, sends the follow-ups and drops their replies. Nothing here allocates when
//! no rule applies.
//!
//! Rules, by command (Redis 7.0 grammar; option names case-insensitive):
//! - `SET`: no expiry option gets `PX default`; `KEEPTTL` gets a follow-up
//!   `PEXPIRE key default NX` instead (it cannot be combined with `PX`); `EX`/`PX` past
//!   `max_ttl` are capped, `EXAT`/`PXAT` past now + `max_ttl` become `PXAT now+max`.
//! - `SETEX`/`PSETEX`, `GETEX EX|PX|EXAT|PXAT`, `EXPIRE`/`PEXPIRE`/`EXPIREAT`/`PEXPIREAT`,
//!   `RESTORE`: capped the same way. A value that is not a positive integer is left for
//!   Redis to answer (an error, or deleting the key for `EXPIRE key -1`).
//! - `SETNX`, `GETSET`, `MSET`, `MSETNX` cannot carry a TTL: one follow-up
//!   `PEXPIRE key default NX` per distinct namespaced key.
//! - `RESTORE key 0 ...` gets the default TTL.
//! - Any other `DENYOOM` write: one follow-up `PEXPIRE key default NX` per distinct key it
//!   writes. `NX` keeps whatever TTL the key already has.
//! - `READONLY` commands reading a key in a namespace with `touch_on_read`: a follow-up
//!   `PEXPIRE key touch_on_read` (plain: a read restarts the TTL), at most once per key
//!   per `touch_interval`. Commands that report expiry or internals (`TTL`, `PTTL`,
//!   `EXPIRETIME`, `PEXPIRETIME`, `OBJECT ...`, `MEMORY ...`) do not touch.
//!
//! "default" is `default_ttl`, or `max_ttl` when only that is set: a key without a TTL
//! would outlive the cap, so a capped namespace never gets one through the sidecar.
//!
//! Refusals: `require_ttl` refuses what would create or leave a key without a TTL the
//! client chose: `SET` without `EX`/`PX`/`EXAT`/`PXAT` (also with `KEEPTTL`), `SETNX`,
//! `GETSET`, `MSET`, `MSETNX`, `GETEX ... PERSIST`, `PERSIST`, `RESTORE key 0`. It wins
//! over `default_ttl`: the client must name the TTL. Other writes (`HSET`, `INCR`, ...)
//! are let through under `require_ttl`; they get the default TTL as a follow-up when the
//! namespace has `default_ttl` or `max_ttl`, and otherwise may create a key without TTL.
//! `max_ttl` refuses `PERSIST` and `GETEX ... PERSIST`, which would lift the cap.
//!
//! Not covered: a follow-up is not atomic with its request (a key can live without TTL
//! for one round trip, or forever if the connection drops in between); inside
//! `MULTI` the caller must account for the queued follow-ups; scripts, `RENAME`/`COPY`
//! carrying another key's TTL, and `MOVE` are not looked at. Absolute times are
//! computed on the sidecar's clock: skew against Redis's clock shifts the cap by as much.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

pub use super::touch::TouchThrottle;
use super::Namespace;
use crate::keys::{ArgKind, CommandFlags, CommandInfo, KeyArg, KeyFlags};

/// How to forward one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TtlPlan {
    /// Replacement arguments for the request, when a TTL option was added or clamped.
    pub args: Option<Vec<Bytes>>,
    /// Commands the sidecar sends right after the request on the same connection; their
    /// replies are dropped (e.g. `PEXPIRE key ms NX`).
    pub follow_ups: Vec<Vec<Bytes>>,
}

impl TtlPlan {
    /// Forward the request as it is.
    pub const fn unchanged() -> TtlPlan {
        TtlPlan {
            args: None,
            follow_ups: Vec::new(),
        }
    }

    pub fn is_unchanged(&self) -> bool {
        self.args.is_none() && self.follow_ups.is_empty()
    }
}

/// Apply the TTL rules of the namespaces in `keys` to one request.
///
/// `args` is the request as Redis will see it (keys already prefixed); `keys` lists its
/// key arguments that lie in a namespace with any TTL rule. `now` anchors absolute
/// expiry times, `mono` the touch throttle. `Err` carries the text of a `-NOPERM` refusal.
pub fn plan(
    cmd: &CommandInfo,
    args: &[Bytes],
    keys: &[(KeyArg, &Namespace)],
    touch: &TouchThrottle,
    now: SystemTime,
    mono: Instant,
) -> Result<TtlPlan, String> {
    if keys.is_empty() {
        return Ok(TtlPlan::unchanged());
    }
    let now_ms = unix_ms(now);
    let mut out = Rewrite::new(args);
    match cmd.name {
        "SET" => set(&mut out, keys, now_ms)?,
        "SETEX" => capped_at(&mut out, keys, 2, Ttl::Ex, now_ms, Some(b"PSETEX")),
        "PSETEX" => capped_at(&mut out, keys, 2, Ttl::Px, now_ms, None),
        "GETEX" => getex(&mut out, keys, now_ms)?,
        "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" => expire(&mut out, keys, cmd.name, now_ms),
        "PERSIST" => persist(keys)?,
        "RESTORE" => restore(&mut out, keys, now_ms)?,
        "SETNX" | "GETSET" | "MSET" | "MSETNX" => {
            refuse_untimed(cmd.name, keys)?;
            default_follow_ups(&mut out, keys);
        }
        _ if cmd.flags.contains(CommandFlags::DENYOOM) => default_follow_ups(&mut out, keys),
        _ if cmd.flags.contains(CommandFlags::READONLY) && touches(cmd.name) => {
            touch_follow_ups(&mut out, keys, touch, mono)
        }
        _ => {}
    }
    Ok(out.finish())
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`.
fn set(out: &mut Rewrite<'_>, keys: &[(KeyArg, &Namespace)], now_ms: i64) -> Result<(), String> {
    let Some(ns) = namespace_at(keys, 1) else {
        return Ok(());
    };
    // The value is args[2]: options start after it, whatever it spells.
    let seen = string_options(out, 3, ns, now_ms);
    if seen.expiry {
        return Ok(());
    }
    if ns.config.require_ttl {
        return Err(if seen.keepttl {
            refusal(
                "SET with KEEPTTL",
                ns,
                "require_ttl",
                "KEEPTTL can create a key without TTL; use EX or PX",
            )
        } else {
            refusal(
                "SET without EX/PX/EXAT/PXAT",
                ns,
                "require_ttl",
                "add EX or PX",
            )
        });
    }
    if let Some(ms) = default_ms(ns) {
        if seen.keepttl {
            out.follow_up(1, ms, true);
        } else {
            out.push(Bytes::from_static(b"PX"));
            out.push(ms_arg(ms));
        }
    }
    Ok(())
}

/// `GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]`.
fn getex(out: &mut Rewrite<'_>, keys: &[(KeyArg, &Namespace)], now_ms: i64) -> Result<(), String> {
    match namespace_at(keys, 1) {
        Some(ns) if string_options(out, 2, ns, now_ms).persist => {
            refuse_persist("GETEX with PERSIST", ns, "use GETEX key PX ms")
        }
        _ => Ok(()),
    }
}

/// PERSIST and GETEX ... PERSIST leave a key without TTL: refused where a TTL is
/// required, or capped (no TTL would outlive the cap). `instead` names the alternative.
fn refuse_persist(what: &str, ns: &Namespace, instead: &str) -> Result<(), String> {
    if ns.config.require_ttl {
        let fix = format!("it would leave the key without TTL; {instead}");
        return Err(refusal(what, ns, "require_ttl", &fix));
    }
    if let Some(max) = max_ms(ns) {
        let rule = format!("max_ttl {}", show_ms(max));
        let fix = format!("it would lift the TTL cap; {instead} (at most {max} ms)");
        return Err(refusal(what, ns, &rule, &fix));
    }
    Ok(())
}

/// What the options of SET / GETEX asked for.
#[derive(Default)]
struct StringOptions {
    expiry: bool,
    keepttl: bool,
    persist: bool,
}

/// Walk the options of SET / GETEX from `from`, capping every expiry value. Tokens Redis
/// would refuse are skipped: Redis answers the request with an error anyway.
fn string_options(
    out: &mut Rewrite<'_>,
    from: usize,
    ns: &Namespace,
    now_ms: i64,
) -> StringOptions {
    let args = out.args;
    let mut seen = StringOptions::default();
    let mut i = from;
    while i < args.len() {
        if let Some(ttl) = Ttl::from_option(&args[i]).filter(|_| i + 1 < args.len()) {
            seen.expiry = true;
            if let Some((to, value)) = cap(ttl, &args[i + 1], ns, now_ms) {
                if to != ttl {
                    out.replace(i, Bytes::from_static(to.option().as_bytes()));
                }
                out.replace(i + 1, ms_arg(value));
            }
            i += 2;
            continue;
        }
        seen.keepttl |= is_word(&args[i], "KEEPTTL");
        seen.persist |= is_word(&args[i], "PERSIST");
        i += 1;
    }
    seen
}

/// `EXPIRE key s`, `PEXPIRE key ms`, `EXPIREAT key s`, `PEXPIREAT key ms` (`[NX|XX|GT|LT]`).
fn expire(out: &mut Rewrite<'_>, keys: &[(KeyArg, &Namespace)], name: &str, now_ms: i64) {
    let (ttl, renamed): (Ttl, &'static [u8]) = match name {
        "EXPIRE" => (Ttl::Ex, b"PEXPIRE"),
        "PEXPIRE" => (Ttl::Px, b"PEXPIRE"),
        "EXPIREAT" => (Ttl::ExAt, b"PEXPIREAT"),
        _ => (Ttl::PxAt, b"PEXPIREAT"),
    };
    capped_at(out, keys, 2, ttl, now_ms, Some(renamed));
}

/// Cap the TTL at `args[index]` of a command whose key is `args[1]`; `renamed` is the
/// command that takes milliseconds, used when the cap is not a whole number of seconds.
fn capped_at(
    out: &mut Rewrite<'_>,
    keys: &[(KeyArg, &Namespace)],
    index: usize,
    ttl: Ttl,
    now_ms: i64,
    renamed: Option<&'static [u8]>,
) {
    let (Some(ns), Some(raw)) = (namespace_at(keys, 1), out.args.get(index)) else {
        return;
    };
    if let Some((to, value)) = cap(ttl, raw, ns, now_ms) {
        if let (true, Some(name)) = (to != ttl, renamed) {
            out.replace(0, Bytes::from_static(name));
        }
        out.replace(index, ms_arg(value));
    }
}

/// `PERSIST key`.
fn persist(keys: &[(KeyArg, &Namespace)]) -> Result<(), String> {
    match namespace_at(keys, 1) {
        Some(ns) => refuse_persist("PERSIST", ns, "set a new TTL with PEXPIRE key ms"),
        None => Ok(()),
    }
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`; ttl 0 means none.
fn restore(
    out: &mut Rewrite<'_>,
    keys: &[(KeyArg, &Namespace)],
    now_ms: i64,
) -> Result<(), String> {
    let (Some(ns), Some(raw)) = (namespace_at(keys, 1), out.args.get(2)) else {
        return Ok(());
    };
    let ttl = if restore_absttl(out.args) {
        Ttl::PxAt
    } else {
        Ttl::Px
    };
    if raw.as_ref() != b"0" {
        capped_at(out, keys, 2, ttl, now_ms, None);
        return Ok(());
    }
    if ns.config.require_ttl {
        return Err(refusal(
            "RESTORE with TTL 0",
            ns,
            "require_ttl",
            "give a TTL in milliseconds (or ABSTTL and a unix time in milliseconds)",
        ));
    }
    if let Some(ms) = default_ms(ns) {
        let value = if ttl == Ttl::PxAt {
            now_ms.saturating_add(ms)
        } else {
            ms
        };
        out.replace(2, ms_arg(value));
    }
    Ok(())
}

/// RESTORE options start after the payload (args[3]); IDLETIME and FREQ take a value.
fn restore_absttl(args: &[Bytes]) -> bool {
    let mut i = 4;
    while i < args.len() {
        if is_word(&args[i], "ABSTTL") {
            return true;
        }
        let takes_value = is_word(&args[i], "IDLETIME") || is_word(&args[i], "FREQ");
        i += if takes_value { 2 } else { 1 };
    }
    false
}

/// SETNX / GETSET / MSET / MSETNX cannot carry a TTL.
fn refuse_untimed(name: &str, keys: &[(KeyArg, &Namespace)]) -> Result<(), String> {
    let Some((_, ns)) = keys.iter().find(|(_, ns)| ns.config.require_ttl) else {
        return Ok(());
    };
    let fix = match name {
        "SETNX" => "it cannot set a TTL; use SET key value NX PX ms",
        "GETSET" => "it cannot set a TTL; use SET key value GET PX ms",
        "MSETNX" => "it cannot set a TTL; use SET key value NX PX ms for each key",
        _ => "it cannot set a TTL; use SET key value PX ms for each key",
    };
    Err(refusal(name, ns, "require_ttl", fix))
}

/// `PEXPIRE key default NX` for every distinct key the request writes.
fn default_follow_ups(out: &mut Rewrite<'_>, keys: &[(KeyArg, &Namespace)]) {
    for (arg, ns) in keys {
        if arg.kind != ArgKind::Key || !arg.flags.writes() {
            continue;
        }
        if let Some(ms) = default_ms(ns) {
            out.follow_up(arg.index, ms, true);
        }
    }
}

/// `PEXPIRE key touch_on_read` for every distinct key read, when the throttle lets it.
fn touch_follow_ups(
    out: &mut Rewrite<'_>,
    keys: &[(KeyArg, &Namespace)],
    touch: &TouchThrottle,
    mono: Instant,
) {
    for (arg, ns) in keys {
        let (Some(ttl), Some(key)) = (ns.config.touch_on_read, out.args.get(arg.index)) else {
            continue;
        };
        if arg.kind != ArgKind::Key || !arg.flags.contains(KeyFlags::RO) {
            continue;
        }
        let interval = ns.config.touch_interval.unwrap_or_default();
        if touch.due(key, interval, mono) {
            let touch_ms = max_ms(ns).map_or(ms(ttl), |max| max.min(ms(ttl)));
            out.follow_up(arg.index, touch_ms, false);
        }
    }
}

/// Reading expiry or internals is not activity: it would also reset what it reports.
fn touches(name: &str) -> bool {
    !matches!(name, "TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME")
        && !name.starts_with("OBJECT ")
        && !name.starts_with("MEMORY ")
}

/// The form of a TTL argument: seconds or milliseconds, relative to now or a unix time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ttl {
    Ex,
    Px,
    ExAt,
    PxAt,
}

impl Ttl {
    fn from_option(arg: &[u8]) -> Option<Ttl> {
        [Ttl::Ex, Ttl::Px, Ttl::ExAt, Ttl::PxAt]
            .into_iter()
            .find(|ttl| is_word(arg, ttl.option()))
    }

    /// The SET / GETEX option naming this form.
    fn option(self) -> &'static str {
        match self {
            Ttl::Ex => "EX",
            Ttl::Px => "PX",
            Ttl::ExAt => "EXAT",
            Ttl::PxAt => "PXAT",
        }
    }

    fn absolute(self) -> bool {
        matches!(self, Ttl::ExAt | Ttl::PxAt)
    }

    fn ms_per_unit(self) -> i128 {
        if matches!(self, Ttl::Ex | Ttl::ExAt) {
            1000
        } else {
            1
        }
    }
}

/// What to write in place of a TTL argument that asks for more than the namespace's
/// `max_ttl`: the argument's form (seconds switch to milliseconds unless the cap is a
/// whole number of seconds; absolute times always do) and value. `None` when there is no
/// cap, the value is within it, or it is not a positive integer (Redis answers those).
fn cap(ttl: Ttl, raw: &[u8], ns: &Namespace, now_ms: i64) -> Option<(Ttl, i64)> {
    let max = max_ms(ns)?;
    let asked = i128::from(positive_int(raw)?) * ttl.ms_per_unit();
    let limit = i128::from(max)
        + if ttl.absolute() {
            i128::from(now_ms)
        } else {
            0
        };
    if asked <= limit {
        return None;
    }
    let to = match ttl {
        Ttl::Ex if max % 1000 == 0 => return Some((Ttl::Ex, max / 1000)),
        Ttl::Ex | Ttl::Px => Ttl::Px,
        Ttl::ExAt | Ttl::PxAt => Ttl::PxAt,
    };
    Some((to, i64::try_from(limit).unwrap_or(i64::MAX)))
}

/// The request's arguments, copied on the first change, and its follow-ups.
struct Rewrite<'a> {
    args: &'a [Bytes],
    changed: Option<Vec<Bytes>>,
    follow_ups: Vec<Vec<Bytes>>,
    /// Keys with a follow-up (empty sets do not allocate).
    followed: HashSet<Bytes>,
}

impl<'a> Rewrite<'a> {
    fn new(args: &'a [Bytes]) -> Rewrite<'a> {
        Rewrite {
            args,
            changed: None,
            follow_ups: Vec::new(),
            followed: HashSet::new(),
        }
    }

    fn changed(&mut self) -> &mut Vec<Bytes> {
        let args = self.args;
        self.changed.get_or_insert_with(|| args.to_vec())
    }

    fn replace(&mut self, index: usize, value: Bytes) {
        if let Some(slot) = self.changed().get_mut(index) {
            *slot = value;
        }
    }

    fn push(&mut self, value: Bytes) {
        self.changed().push(value);
    }

    /// `PEXPIRE key ms [NX]` for the key at `args[index]`, once per key.
    fn follow_up(&mut self, index: usize, ms: i64, nx: bool) {
        let Some(key) = self.args.get(index) else {
            return;
        };
        if !self.followed.insert(key.clone()) {
            return;
        }
        let mut cmd = vec![Bytes::from_static(b"PEXPIRE"), key.clone(), ms_arg(ms)];
        if nx {
            cmd.push(Bytes::from_static(b"NX"));
        }
        self.follow_ups.push(cmd);
    }

    fn finish(self) -> TtlPlan {
        TtlPlan {
            args: self.changed,
            follow_ups: self.follow_ups,
        }
    }
}

/// The namespace of the key at `args[index]`, when it has TTL rules.
fn namespace_at<'n>(keys: &[(KeyArg, &'n Namespace)], index: usize) -> Option<&'n Namespace> {
    keys.iter()
        .find(|(arg, _)| arg.index == index && arg.kind == ArgKind::Key)
        .map(|(_, ns)| *ns)
}

/// The TTL given to keys written without one: `default_ttl`, else the `max_ttl` cap.
fn default_ms(ns: &Namespace) -> Option<i64> {
    ns.config.default_ttl.or(ns.config.max_ttl).map(ms)
}

fn max_ms(ns: &Namespace) -> Option<i64> {
    ns.config.max_ttl.map(ms)
}

/// Whole milliseconds, at least 1 (Redis refuses a TTL of 0).
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn unix_ms(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms_arg(value: i64) -> Bytes {
    Bytes::from(value.to_string())
}

/// `300s` for whole seconds, `1500ms` otherwise.
fn show_ms(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn refusal(what: &str, ns: &Namespace, rule: &str, fix: &str) -> String {
    format!("{what} in namespace '{}' ({rule}): {fix}", ns.name())
}

/// An option name as Redis compares it: case-insensitive, and as a C string (a NUL byte
/// ends the name), so `PX\0junk` is read as `PX` here as it is by Redis.
fn is_word(arg: &[u8], word: &str) -> bool {
    let end = memchr::memchr(0, arg).unwrap_or(arg.len());
    arg[..end].eq_ignore_ascii_case(word.as_bytes())
}

/// A positive integer as Redis parses one (`string2ll`): digits only, no sign, no
/// leading zero, within `i64`.
fn positive_int(raw: &[u8]) -> Option<i64> {
    if !matches!(raw.first(), Some(b'1'..=b'9')) {
        return None;
    }
    raw.iter().try_fold(0i64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(i64::from(digit))
    })
}

#[cfg(test)]
#[path = "ttl_tests.rs"]
mod tests;
