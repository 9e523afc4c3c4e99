//! The closed sets metric labels are drawn from: every label value the sidecar exports
//! is one of these, or a command name from [`command_names`] (never client input).

/// Top-level commands of Redis 7.0 (the key table's, without subcommands), plus the
/// sidecar's own `SIDECAR`. Anything else is counted as `"other"`.
pub fn command_names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<&'static str> = crate::keys::commands().iter().map(|c| c.name).collect();
        names.push("SIDECAR");
        names
    })
}

/// The `command` label of a name outside [`command_names`].
pub const OTHER_COMMAND: &str = "other";

/// How a command ended, as the client saw it (`outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A reply that is not an error.
    Ok,
    /// An error reply from Redis, or from the sidecar for an upstream failure.
    Error,
    /// Refused by the sidecar (policy or namespace rules) without reaching Redis.
    Refused,
}

/// The policy or namespace rule that refused a command (`rule` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalRule {
    DenyCommands,
    UnmatchedKey,
    Select,
    Flush,
    Ttl,
    Scripts,
    Keys,
    Multi,
    UnknownCommand,
}

impl RefusalRule {
    pub const ALL: [RefusalRule; 9] = [
        RefusalRule::DenyCommands,
        RefusalRule::UnmatchedKey,
        RefusalRule::Select,
        RefusalRule::Flush,
        RefusalRule::Ttl,
        RefusalRule::Scripts,
        RefusalRule::Keys,
        RefusalRule::Multi,
        RefusalRule::UnknownCommand,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            RefusalRule::DenyCommands => "deny_commands",
            RefusalRule::UnmatchedKey => "unmatched_key",
            RefusalRule::Select => "select",
            RefusalRule::Flush => "flush",
            RefusalRule::Ttl => "ttl",
            RefusalRule::Scripts => "scripts",
            RefusalRule::Keys => "keys",
            RefusalRule::Multi => "multi",
            RefusalRule::UnknownCommand => "unknown_command",
        }
    }
}

/// What emptied keys (`kind` label of `sidecar_flushes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushKind {
    Flushall,
    Flushdb,
    SidecarFlush,
}

impl FlushKind {
    pub const ALL: [FlushKind; 3] = [
        FlushKind::Flushall,
        FlushKind::Flushdb,
        FlushKind::SidecarFlush,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            FlushKind::Flushall => "flushall",
            FlushKind::Flushdb => "flushdb",
            FlushKind::SidecarFlush => "sidecar_flush",
        }
    }
}

/// Failures worth an alert (`kind` label of `sidecar_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed RESP from a client (the connection is closed).
    Protocol,
    /// An upstream connection dropped with commands in flight.
    UpstreamLost,
    /// Redis did not reply within `upstream.command_timeout`.
    UpstreamTimeout,
    /// A client got `-TRYAGAIN` (no primary, connect failed, failover).
    Tryagain,
    /// A client was disconnected for exceeding `server.max_reply_buffer`.
    ReplyBuffer,
    /// A client was disconnected after `server.idle_timeout`.
    IdleTimeout,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Protocol,
        ErrorKind::UpstreamLost,
        ErrorKind::UpstreamTimeout,
        ErrorKind::Tryagain,
        ErrorKind::ReplyBuffer,
        ErrorKind::IdleTimeout,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::UpstreamLost => "upstream_lost",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::Tryagain => "tryagain",
            ErrorKind::ReplyBuffer => "reply_buffer",
            ErrorKind::IdleTimeout => "idle_timeout",
        }
    }
}

/// Which kind of upstream connection (`kind` label of the upstream series).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// A shared, pipelined connection (stateless commands of many clients).
    Shared,
    /// A connection pinned to one client (MULTI, WATCH, blocking, pub/sub...).
    Pinned,
}

impl UpstreamKind {
    pub const ALL: [UpstreamKind; 2] = [UpstreamKind::Shared, UpstreamKind::Pinned];

    pub const fn label(self) -> &'static str {
        match self {
            UpstreamKind::Shared => "shared",
            UpstreamKind::Pinned => "pinned",
        }
    }
}
