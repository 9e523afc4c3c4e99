//! Key extraction: which arguments of a request are key names, for every Redis 7.0
//! command, driven by the command table (key specs as `COMMAND INFO` reports them).
//!
//! The namespace stage calls [`lookup`] (or [`command`] and [`resolve`]) once per
//! request and [`extract`] to find the arguments it must check, prefix or give a TTL.
//! Pure: no IO, no allocation beyond the caller's output vector.
//!
//! The table (`table.rs`) is generated from a running Redis by
//! `scripts/gen-command-table.py`; `spec` interprets key specs the way Redis does for
//! `COMMAND GETKEYS`, and `procs` walks the arguments of the few commands whose specs
//! cannot be trusted on their own (SORT, MIGRATE, SET, BITFIELD, GEORADIUS,
//! XREADGROUP, DEBUG). What is not done here: deciding what a key may be (policy),
//! rewriting it (namespace), pub/sub channels and KEYS/SCAN patterns.

mod procs;
mod spec;
mod table;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use bytes::Bytes;

use procs::Proc;
use spec::KeySpec;

pub use table::REDIS_VERSION;

/// Access flags of one key argument, as Redis 7 key specs report them
/// (`COMMAND GETKEYSANDFLAGS` names: RO, RW, OW, RM, access, update, insert, delete...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyFlags(pub u16);

impl KeyFlags {
    pub const RO: KeyFlags = KeyFlags(1);
    pub const RW: KeyFlags = KeyFlags(1 << 1);
    pub const OW: KeyFlags = KeyFlags(1 << 2);
    pub const RM: KeyFlags = KeyFlags(1 << 3);
    pub const ACCESS: KeyFlags = KeyFlags(1 << 4);
    pub const UPDATE: KeyFlags = KeyFlags(1 << 5);
    pub const INSERT: KeyFlags = KeyFlags(1 << 6);
    pub const DELETE: KeyFlags = KeyFlags(1 << 7);
    pub const NOT_KEY: KeyFlags = KeyFlags(1 << 8);
    pub const INCOMPLETE: KeyFlags = KeyFlags(1 << 9);
    pub const VARIABLE_FLAGS: KeyFlags = KeyFlags(1 << 10);

    pub const fn union(self, other: KeyFlags) -> KeyFlags {
        KeyFlags(self.0 | other.0)
    }

    pub const fn contains(self, other: KeyFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The key may be written (RW, OW or RM).
    pub const fn writes(self) -> bool {
        self.0 & (KeyFlags::RW.0 | KeyFlags::OW.0 | KeyFlags::RM.0) != 0
    }
}

/// Command-level flags from the command table (`COMMAND INFO` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandFlags(pub u32);

impl CommandFlags {
    pub const WRITE: CommandFlags = CommandFlags(1);
    pub const READONLY: CommandFlags = CommandFlags(1 << 1);
    /// May grow memory (refused under OOM): the writes a default TTL applies to.
    pub const DENYOOM: CommandFlags = CommandFlags(1 << 2);
    pub const ADMIN: CommandFlags = CommandFlags(1 << 3);
    pub const BLOCKING: CommandFlags = CommandFlags(1 << 4);
    pub const MOVABLE_KEYS: CommandFlags = CommandFlags(1 << 5);
    pub const NOSCRIPT: CommandFlags = CommandFlags(1 << 6);
    pub const PUBSUB: CommandFlags = CommandFlags(1 << 7);

    pub const fn union(self, other: CommandFlags) -> CommandFlags {
        CommandFlags(self.0 | other.0)
    }

    pub const fn contains(self, other: CommandFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What kind of argument a [`KeyArg`] points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// A key name.
    Key,
    /// A SORT / SORT_RO `BY` or `GET` pattern that names keys (`weight_*`, `obj_*->field`).
    /// `GET #` and `BY nosort` are not reported: they name no key.
    Pattern,
}

/// One key argument of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyArg {
    /// Index into the request's arguments (0 is the command name).
    pub index: usize,
    pub flags: KeyFlags,
    pub kind: ArgKind,
}

/// One command (or container subcommand) of the table.
#[derive(Debug)]
pub struct CommandInfo {
    /// Upper case, `"GET"` or `"OBJECT ENCODING"` for a subcommand.
    pub name: &'static str,
    pub flags: CommandFlags,
    /// The word looked up: the name, or for a subcommand its second word.
    token: &'static str,
    /// Redis arity: the exact argument count, or minus the minimum when negative.
    arity: i32,
    key_specs: &'static [KeySpec],
    procedure: Proc,
    /// Sorted by `token`; empty unless this is a container command.
    subcommands: &'static [CommandInfo],
}

impl CommandInfo {
    /// Redis arity (argument count including the name; negative: at least that many).
    pub fn arity(&self) -> i32 {
        self.arity
    }

    /// How many key specs Redis reports for the command (NOT_KEY ones included).
    pub fn key_spec_count(&self) -> usize {
        self.key_specs.len()
    }

    /// Whether [`extract`] can find any key in some request for this command.
    pub fn has_keys(&self) -> bool {
        self.procedure != Proc::None
            || self
                .key_specs
                .iter()
                .any(|s| !s.flags.contains(KeyFlags::NOT_KEY))
    }

    /// Where the command's only key stands when that never depends on the other
    /// arguments (one key spec, at a fixed index, naming one key; no procedure): the
    /// index and the key's flags. [`extract`] reports exactly that argument, with these
    /// flags, when the request has it, and nothing when it is too short. Most commands
    /// (GET, INCR, HSET, LPUSH...) are like this; a caller can skip the walk for them.
    pub fn fixed_key(&self) -> Option<(usize, KeyFlags)> {
        let [spec] = self.key_specs else {
            return None;
        };
        if self.procedure != Proc::None || spec.flags.contains(KeyFlags::NOT_KEY) {
            return None;
        }
        match (&spec.begin, &spec.find) {
            (spec::BeginSearch::Index(i), spec::FindKeys::Range { lastkey: 0, .. }) if *i >= 1 => {
                Some((usize::try_from(*i).ok()?, spec.flags))
            }
            _ => None,
        }
    }

    /// Where the command's only key stands, whatever its flags: [`fixed_key`]'s index,
    /// or 1 for the commands whose procedure only works out that key's flags from the
    /// other arguments (SET's `GET` option, BITFIELD's operations). [`extract`] reports
    /// exactly that argument when the request has it, and nothing when it is too short.
    ///
    /// [`fixed_key`]: CommandInfo::fixed_key
    pub fn key_at(&self) -> Option<usize> {
        match self.procedure {
            Proc::Set | Proc::Bitfield => Some(1),
            _ => self.fixed_key().map(|(index, _)| index),
        }
    }

    /// The subcommands of a container command (`OBJECT`, `XINFO`...), sorted by name.
    pub fn subcommands(&self) -> &'static [CommandInfo] {
        self.subcommands
    }

    /// A keyless entry with the given name and flags, for other stages' unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(name: &'static str, flags: CommandFlags) -> CommandInfo {
        CommandInfo {
            name,
            flags,
            token: name,
            arity: -1,
            key_specs: &[],
            procedure: Proc::None,
            subcommands: &[],
        }
    }
}

/// Every top-level command of the table, sorted by name (subcommands hang off their
/// container).
pub fn commands() -> &'static [CommandInfo] {
    table::COMMANDS
}

/// The table entry for a request (subcommand resolved for container commands), or `None`
/// for a command Redis 7.0 does not have. Case-insensitive.
///
/// Like Redis, a container command without a subcommand argument resolves to the
/// container itself (which has no keys), and an unknown subcommand to `None`.
pub fn lookup(args: &[Bytes]) -> Option<&'static CommandInfo> {
    resolve(command(args.first()?)?, args)
}

/// The top-level entry named `name` (case-insensitive), its subcommand not resolved: the
/// part of [`lookup`] that depends on the name alone, for callers that remember it.
pub fn command(name: &[u8]) -> Option<&'static CommandInfo> {
    find_top(name)
}

/// The entry a request for the top-level entry `cmd` runs: `cmd` itself, or for a
/// container command the subcommand `args[1]` names (see [`lookup`]).
pub fn resolve(cmd: &'static CommandInfo, args: &[Bytes]) -> Option<&'static CommandInfo> {
    match args.get(1) {
        Some(sub) if !cmd.subcommands.is_empty() => find(cmd.subcommands, sub),
        _ => Some(cmd),
    }
}

/// Longest name the packed form holds (every Redis 7.0 token fits).
const PACKED_LEN: usize = 24;

/// A name upper-cased, zero-padded and read as three big-endian words: ordering the
/// words orders the names, so the hot top-level search compares integers only.
fn pack(name: &[u8]) -> Option<[u64; 3]> {
    if name.len() > PACKED_LEN {
        return None;
    }
    let mut buf = [0u8; PACKED_LEN];
    for (b, n) in buf.iter_mut().zip(name) {
        *b = n.to_ascii_uppercase();
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[i * 8..i * 8 + 8]);
        u64::from_be_bytes(w)
    };
    Some([word(0), word(1), word(2)])
}

/// The top-level table's names, packed, in table order (built on first use).
fn packed_top() -> &'static [[u64; 3]] {
    static PACKED: OnceLock<Vec<[u64; 3]>> = OnceLock::new();
    PACKED.get_or_init(|| {
        table::COMMANDS
            .iter()
            .map(|c| pack(c.token.as_bytes()).unwrap_or([u64::MAX; 3]))
            .collect()
    })
}

fn find_top(name: &[u8]) -> Option<&'static CommandInfo> {
    // A NUL inside the name would pack like padding: such names are never commands.
    if name.contains(&0) {
        return None;
    }
    let key = pack(name)?;
    let i = packed_top().binary_search(&key).ok()?;
    table::COMMANDS.get(i)
}

/// Binary search of a table sorted by upper-case token (subcommand tables).
fn find(table: &'static [CommandInfo], name: &[u8]) -> Option<&'static CommandInfo> {
    let mut buf = [0u8; 32];
    if name.len() > table::MAX_TOKEN_LEN || name.len() > buf.len() {
        return None;
    }
    let upper = &mut buf[..name.len()];
    for (u, n) in upper.iter_mut().zip(name) {
        *u = n.to_ascii_uppercase();
    }
    let i = table
        .binary_search_by(|c| c.token.as_bytes().cmp(upper))
        .ok()?;
    table.get(i)
}

/// Append the key arguments of `args` (a request for `cmd`) to `out`, in argument order.
/// Never panics on malformed requests: arguments that are not there are not reported
/// (Redis refuses such a request before touching any key).
///
/// For SORT and SORT_RO the `BY` / `GET` patterns come out as [`ArgKind::Pattern`].
/// Shard channels (SPUBLISH, SSUBSCRIBE...; NOT_KEY specs) are not reported, as in
/// `COMMAND GETKEYS`. Where a command's parser reads a key option more than once
/// (`SORT ... STORE a STORE b`), every occurrence is reported.
pub fn extract(cmd: &CommandInfo, args: &[Bytes], out: &mut Vec<KeyArg>) {
    let start = out.len();
    if cmd.procedure == Proc::None {
        for spec in cmd.key_specs {
            spec.extract(args, out);
        }
        if cmd.key_specs.len() < 2 {
            return; // One spec reports its keys in argument order, each once.
        }
    } else {
        procs::extract(cmd, args, out);
    }
    in_argument_order(out, start);
}

/// Sorts `out[start..]` by index and merges the flags of an argument two specs report.
fn in_argument_order(out: &mut Vec<KeyArg>, start: usize) {
    let Some(tail) = out.get_mut(start..) else {
        return;
    };
    if tail.windows(2).all(|w| w[0].index < w[1].index) {
        return;
    }
    tail.sort_unstable_by_key(|k| k.index);
    let mut kept = start;
    for i in start..out.len() {
        if kept > start && out[kept - 1].index == out[i].index {
            out[kept - 1].flags = out[kept - 1].flags.union(out[i].flags);
        } else {
            out[kept] = out[i];
            kept += 1;
        }
    }
    out.truncate(kept);
}
