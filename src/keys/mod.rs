//! Key extraction: which arguments of a request are key names, for every Redis 7.0
//! command, driven by the command table (key specs as `COMMAND INFO` reports them).
//!
//! The namespace stage calls [`lookup`] once per request and [`extract`] to find the
//! arguments it must check, prefix or give a TTL. Pure: no IO, no allocation beyond
//! the caller's output vector.

use bytes::Bytes;

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
    // Key specs and whatever else the table needs live here (private to this module).
}

/// The table entry for a request (subcommand resolved for container commands), or `None`
/// for a command Redis 7.0 does not have. Case-insensitive.
pub fn lookup(args: &[Bytes]) -> Option<&'static CommandInfo> {
    let _ = args;
    None
}

/// Append the key arguments of `args` (a request for `cmd`) to `out`, in argument order.
/// Never panics on malformed requests: arguments that are not there are not reported
/// (Redis refuses such a request before touching any key).
pub fn extract(cmd: &CommandInfo, args: &[Bytes], out: &mut Vec<KeyArg>) {
    let _ = (cmd, args, out);
}
