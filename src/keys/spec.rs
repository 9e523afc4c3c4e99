//! Redis 7 key specs and their generic interpretation: a begin search (a fixed index,
//! or a keyword searched forwards or backwards) finds the first key, then a find-keys
//! rule (a range, or a key count read from the request) says how many follow.
//!
//! This follows the algorithm Redis runs for `COMMAND GETKEYS`, one spec at a time:
//! a spec whose keys fall outside the request reports nothing, and the other specs
//! still report theirs (Redis refuses such a request before touching any key).

use bytes::Bytes;

use super::{ArgKind, KeyArg, KeyFlags};

/// One key spec of a command, as `COMMAND INFO` reports it.
#[derive(Debug)]
pub(super) struct KeySpec {
    pub flags: KeyFlags,
    pub begin: BeginSearch,
    pub find: FindKeys,
}

/// Where the first key of a spec is.
#[derive(Debug)]
pub(super) enum BeginSearch {
    /// At this argument index.
    Index(i32),
    /// Right after `keyword`, searched from `startfrom` towards the end, or (negative)
    /// from `argc + startfrom` back towards the start.
    Keyword {
        keyword: &'static str,
        startfrom: i32,
    },
    /// Redis cannot say; a procedure finds these keys.
    Unknown,
}

/// Which arguments from the first key on are keys.
#[derive(Debug)]
pub(super) enum FindKeys {
    /// Up to `lastkey` after the first key (negative: counted from the end), every
    /// `step`; with `limit` > 0 and `lastkey` -1, the first 1/`limit` of the rest.
    Range { lastkey: i32, step: i32, limit: i32 },
    /// The argument `keynumidx` after the first key holds the key count; keys start
    /// `firstkey` after it, every `step`.
    KeyNum {
        keynumidx: i32,
        firstkey: i32,
        step: i32,
    },
    /// Redis cannot say; a procedure finds these keys.
    Unknown,
}

/// `BeginSearch::Keyword`, for the generated table.
pub(super) const fn keyword(keyword: &'static str, startfrom: i32) -> BeginSearch {
    BeginSearch::Keyword { keyword, startfrom }
}

/// `FindKeys::Range`, for the generated table.
pub(super) const fn range(lastkey: i32, step: i32, limit: i32) -> FindKeys {
    FindKeys::Range {
        lastkey,
        step,
        limit,
    }
}

/// `FindKeys::KeyNum`, for the generated table.
pub(super) const fn keynum(keynumidx: i32, firstkey: i32, step: i32) -> FindKeys {
    FindKeys::KeyNum {
        keynumidx,
        firstkey,
        step,
    }
}

impl KeySpec {
    /// A spec with `flags` (bits of [`KeyFlags`]); for the generated table.
    pub const fn new(flags: u16, begin: BeginSearch, find: FindKeys) -> KeySpec {
        KeySpec {
            flags: KeyFlags(flags),
            begin,
            find,
        }
    }

    /// Appends the keys this spec finds in `args`. NOT_KEY specs (shard channels)
    /// report nothing, as in `COMMAND GETKEYS`.
    pub fn extract(&self, args: &[Bytes], out: &mut Vec<KeyArg>) {
        if self.flags.contains(KeyFlags::NOT_KEY) {
            return;
        }
        let Some((first, last, step)) = self.bounds(args) else {
            return;
        };
        let mut i = first;
        while i <= last {
            out.push(KeyArg {
                index: i,
                flags: self.flags,
                kind: ArgKind::Key,
            });
            i += step;
        }
    }

    /// First and last key index (both inside `args`) and the step, or `None` when the
    /// spec finds no key in this request.
    fn bounds(&self, args: &[Bytes]) -> Option<(usize, usize, usize)> {
        let argc = i64::try_from(args.len()).ok()?;
        let first = match self.begin {
            BeginSearch::Index(i) => i64::from(i),
            BeginSearch::Keyword { keyword, startfrom } => {
                find_keyword(args, keyword, i64::from(startfrom))? + 1
            }
            BeginSearch::Unknown => return None,
        };
        let (first, last, step) = match self.find {
            FindKeys::Range {
                lastkey,
                step,
                limit,
            } => {
                let lastkey = i64::from(lastkey);
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit <= 0 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / i64::from(limit) + lastkey)
                };
                (first, last, step)
            }
            FindKeys::KeyNum {
                keynumidx,
                firstkey,
                step,
            } => {
                let at = usize::try_from(first + i64::from(keynumidx)).ok()?;
                let numkeys = parse_i64(args.get(at)?)?;
                // A count larger than the request cannot be right; keep the sums small.
                if !(0..=argc).contains(&numkeys) {
                    return None;
                }
                let first = first + i64::from(firstkey);
                (first, first + numkeys - 1, step)
            }
            FindKeys::Unknown => return None,
        };
        if first < 1 || first >= argc || last >= argc || last < first || step < 1 {
            return None;
        }
        // All three are in 1..argc now, so the conversions cannot fail.
        Some((
            usize::try_from(first).ok()?,
            usize::try_from(last).ok()?,
            usize::try_from(step).ok()?,
        ))
    }
}

/// The index of `keyword` in `args`, searched the way Redis does: forwards from
/// `startfrom` up to (not including) the last argument, or for a negative `startfrom`
/// backwards from `argc + startfrom` down to (not including) index 1.
fn find_keyword(args: &[Bytes], keyword: &str, startfrom: i64) -> Option<i64> {
    let argc = i64::try_from(args.len()).ok()?;
    let hit = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| args.get(i))
            .is_some_and(|a| token_eq(a, keyword))
    };
    match startfrom {
        0 => None,
        1.. => (startfrom..argc - 1).find(|&i| hit(i)),
        _ => (2..=argc + startfrom).rev().find(|&i| hit(i)),
    }
}

/// Whether argument `arg` is the option `token` as Redis's parsers see it: compared
/// ignoring ASCII case, and only up to a NUL byte (Redis compares C strings, so it
/// takes `STORE\0x` for `STORE`).
pub(super) fn token_eq(arg: &[u8], token: &str) -> bool {
    c_str(arg).eq_ignore_ascii_case(token.as_bytes())
}

/// `arg` up to its first NUL: what Redis's C-string checks (`strcasecmp`, `strchr`) see.
pub(super) fn c_str(arg: &[u8]) -> &[u8] {
    match memchr::memchr(0, arg) {
        Some(nul) => &arg[..nul],
        None => arg,
    }
}

/// A decimal integer the way Redis's `string2ll` reads it: an optional `-`, no `+`,
/// no spaces, no leading zeros.
pub(super) fn parse_i64(arg: &[u8]) -> Option<i64> {
    let (negative, digits) = match arg.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, arg),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        value = if negative {
            value.checked_mul(10)?.checked_sub(d)?
        } else {
            value.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(value)
}
