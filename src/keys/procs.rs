//! Key extraction for the commands whose key specs do not say enough, done by walking
//! the arguments the way the command's own parser in Redis does.
//!
//! - SORT / SORT_RO: STORE and the BY / GET patterns have no usable spec.
//! - MIGRATE: the KEYS spec is incomplete (a key may be named "keys").
//! - SET, BITFIELD: key flags depend on the options (GET; SET/INCRBY).
//! - GEORADIUS(BYMEMBER): the parser lets the last STORE/STOREDIST win and accepts
//!   a destination named "storedist"; the keyword specs take the first match.
//! - XREADGROUP: the STREAMS search starts at 4, assuming `GROUP g c` comes first,
//!   but the parser accepts COUNT/BLOCK/NOACK before GROUP and a group named "streams".
//! - DEBUG: no key specs at all, yet OBJECT, SDSLEN... name a key.
//!
//! Each walk reports every argument the parser would take as a key or pattern, even
//! one a later option overrides: a superset is safe for a namespace check. A word the
//! parser would refuse is skipped rather than ending the walk (Redis refuses the whole
//! request anyway), so an option a newer Redis adds cannot hide a key behind it.

use bytes::Bytes;

use super::spec::{c_str, token_eq};
use super::{ArgKind, CommandInfo, KeyArg, KeyFlags};

/// The procedure a table entry needs, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Proc {
    /// The key specs say it all.
    None,
    Sort,
    SortRo,
    Migrate,
    Set,
    Bitfield,
    GeoRadius,
    GeoRadiusByMember,
    XReadGroup,
    Debug,
}

/// Appends the keys (and SORT patterns) of `args` for a command with a procedure.
pub(super) fn extract(cmd: &CommandInfo, args: &[Bytes], out: &mut Vec<KeyArg>) {
    let mut found = Found { cmd, out };
    match cmd.procedure {
        Proc::None => {}
        Proc::Sort => sort(args, false, &mut found),
        Proc::SortRo => sort(args, true, &mut found),
        Proc::Migrate => migrate(args, &mut found),
        Proc::Set => set(args, &mut found),
        Proc::Bitfield => bitfield(args, &mut found),
        Proc::GeoRadius => georadius(args, 6, &mut found),
        Proc::GeoRadiusByMember => georadius(args, 5, &mut found),
        Proc::XReadGroup => xreadgroup(args, &mut found),
        Proc::Debug => debug(args, &mut found),
    }
}

/// The output of one walk, with the command's spec flags at hand.
struct Found<'a> {
    cmd: &'a CommandInfo,
    out: &'a mut Vec<KeyArg>,
}

impl Found<'_> {
    /// The flags of key spec `spec`, minus the caveats the walk resolves
    /// (INCOMPLETE, VARIABLE_FLAGS); `fallback` if the table has no such spec.
    fn spec_flags(&self, spec: usize, fallback: KeyFlags) -> KeyFlags {
        let caveats = KeyFlags::INCOMPLETE.union(KeyFlags::VARIABLE_FLAGS).0;
        self.cmd
            .key_specs
            .get(spec)
            .map_or(fallback, |s| KeyFlags(s.flags.0 & !caveats))
    }

    fn key(&mut self, index: usize, flags: KeyFlags) {
        self.push(index, flags, ArgKind::Key);
    }

    fn push(&mut self, index: usize, flags: KeyFlags, kind: ArgKind) {
        self.out.push(KeyArg { index, flags, kind });
    }
}

const RO_ACCESS: KeyFlags = KeyFlags::RO.union(KeyFlags::ACCESS);
const RW_ACCESS_UPDATE: KeyFlags = KeyFlags::RW.union(KeyFlags::ACCESS).union(KeyFlags::UPDATE);
const OW_UPDATE: KeyFlags = KeyFlags::OW.union(KeyFlags::UPDATE);

/// SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
/// [STORE destination], options in any order. A BY pattern without `*` means "do not
/// sort" and names no key; neither does `GET #` (the element itself).
fn sort(args: &[Bytes], readonly: bool, found: &mut Found<'_>) {
    if args.len() < 2 {
        return;
    }
    found.key(1, found.spec_flags(0, RO_ACCESS));
    let pattern = found.spec_flags(1, RO_ACCESS);
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let arg = &args[j];
        // ASC, DESC, ALPHA and unknown words take no argument.
        if token_eq(arg, "LIMIT") && left >= 2 {
            j += 2;
        } else if !readonly && token_eq(arg, "STORE") && left >= 1 {
            found.key(j + 1, found.spec_flags(2, OW_UPDATE));
            j += 1;
        } else if token_eq(arg, "BY") && left >= 1 {
            if c_str(&args[j + 1]).contains(&b'*') {
                found.push(j + 1, pattern, ArgKind::Pattern);
            }
            j += 1;
        } else if token_eq(arg, "GET") && left >= 1 {
            if c_str(&args[j + 1]) != b"#" {
                found.push(j + 1, pattern, ArgKind::Pattern);
            }
            j += 1;
        }
        j += 1;
    }
}

/// MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw] [AUTH2 user pw]
/// [KEYS key ...]. With KEYS the key argument must be empty and is not a key.
fn migrate(args: &[Bytes], found: &mut Found<'_>) {
    if args.len() < 4 {
        return;
    }
    let flags = found.spec_flags(
        0,
        KeyFlags::RW.union(KeyFlags::ACCESS).union(KeyFlags::DELETE),
    );
    let mut keys_from = None;
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - j - 1;
        let arg = &args[j];
        // COPY, REPLACE and unknown words take no argument.
        if token_eq(arg, "AUTH") && more >= 1 {
            j += 1;
        } else if token_eq(arg, "AUTH2") && more >= 2 {
            j += 2;
        } else if token_eq(arg, "KEYS") {
            keys_from = Some(j + 1);
            break;
        }
        j += 1;
    }
    // A non-empty key with KEYS is refused by Redis; report it anyway.
    if keys_from.is_none() || !args[3].is_empty() {
        found.key(3, flags);
    }
    for i in keys_from.unwrap_or(args.len())..args.len() {
        found.key(i, flags);
    }
}

/// SET key value [...] [GET]: the old value is read only with GET.
fn set(args: &[Bytes], found: &mut Found<'_>) {
    if args.len() < 2 {
        return;
    }
    let get = args.iter().skip(3).any(|a| token_eq(a, "GET"));
    found.key(1, if get { RW_ACCESS_UPDATE } else { OW_UPDATE });
}

/// BITFIELD key [GET type offset] [SET type offset value] [INCRBY type offset
/// increment] [OVERFLOW WRAP|SAT|FAIL]: read-only unless it sets or increments (or
/// does not parse, when Redis assumes a write too).
fn bitfield(args: &[Bytes], found: &mut Found<'_>) {
    if args.len() < 2 {
        return;
    }
    let mut readonly = true;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        let arg = &args[i];
        if token_eq(arg, "GET") && more >= 2 {
            i += 2;
        } else if token_eq(arg, "OVERFLOW") && more >= 1 {
            i += 1;
        } else {
            readonly = false; // SET, INCRBY or a syntax error
            break;
        }
        i += 1;
    }
    found.key(
        1,
        if readonly {
            RO_ACCESS
        } else {
            RW_ACCESS_UPDATE
        },
    );
}

/// GEORADIUS key lon lat radius unit / GEORADIUSBYMEMBER key member radius unit, then
/// options from `options_from` on: WITHCOORD WITHDIST WITHHASH ANY ASC DESC,
/// COUNT n, STORE key, STOREDIST key.
fn georadius(args: &[Bytes], options_from: usize, found: &mut Found<'_>) {
    if args.len() < 2 {
        return;
    }
    found.key(1, found.spec_flags(0, RO_ACCESS));
    let mut i = options_from;
    while i < args.len() {
        let more = args.len() - i - 1;
        let arg = &args[i];
        // WITHCOORD, WITHDIST, WITHHASH, ANY, ASC, DESC and unknown words take no argument.
        if token_eq(arg, "COUNT") && more >= 1 {
            i += 1;
        } else if token_eq(arg, "STORE") && more >= 1 {
            found.key(i + 1, found.spec_flags(1, OW_UPDATE));
            i += 1;
        } else if token_eq(arg, "STOREDIST") && more >= 1 {
            found.key(i + 1, found.spec_flags(2, OW_UPDATE));
            i += 1;
        }
        i += 1;
    }
}

/// XREADGROUP [GROUP group consumer] [COUNT n] [BLOCK ms] [NOACK] STREAMS key ... id ...
/// in any order up to STREAMS; the first half of what follows STREAMS are keys.
fn xreadgroup(args: &[Bytes], found: &mut Found<'_>) {
    let flags = found.spec_flags(0, RO_ACCESS);
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - i - 1;
        let arg = &args[i];
        // NOACK and unknown words take no argument.
        if (token_eq(arg, "COUNT") || token_eq(arg, "BLOCK")) && more >= 1 {
            i += 1;
        } else if token_eq(arg, "GROUP") && more >= 2 {
            i += 2;
        } else if token_eq(arg, "STREAMS") && more >= 1 {
            for key in i + 1..=i + more / 2 {
                found.key(key, flags);
            }
            return;
        }
        i += 1;
    }
}

/// DEBUG OBJECT|SDSLEN|LISTPACK|QUICKLIST|HTSTATS-KEY key, DEBUG DIGEST-VALUE key ...
fn debug(args: &[Bytes], found: &mut Found<'_>) {
    let Some(sub) = args.get(1) else {
        return;
    };
    let one = ["OBJECT", "SDSLEN", "LISTPACK", "QUICKLIST", "HTSTATS-KEY"];
    let last = if one.iter().any(|t| token_eq(sub, t)) {
        3.min(args.len())
    } else if token_eq(sub, "DIGEST-VALUE") {
        args.len()
    } else {
        return;
    };
    for i in 2..last {
        found.key(i, KeyFlags::RO);
    }
}
