//! The command table: what the sidecar knows about each command it routes.
//!
//! Every request is classified exactly once, here, from its name (and, for a
//! few commands, its subcommand or arguments). The server reads the resulting
//! [`Route`] to decide where the command goes: the shared pipelined pool, a
//! pinned upstream connection, or a local answer. This module does no IO and
//! knows nothing about sockets; key positions arrive with the namespace stage.

use bytes::Bytes;

/// Where a command must be served, decided from the command table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Stateless: any shared pipelined upstream connection of the client's protocol.
    Shared,
    /// Answered by the sidecar itself, per client connection.
    Local(Local),
    /// Needs a dedicated upstream connection for as long as the state lasts.
    Pinned(Pin),
}

/// Connection-level commands that must not leak across clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Hello,
    Auth,
    Quit,
    Reset,
    /// `SELECT 0` while nothing is pinned: the shared connections are in db 0 already.
    SelectZero,
    /// `SYNC`, `PSYNC`, `REPLCONF`: they turn a connection into a replication link, which a
    /// proxy cannot carry; always refused, whatever the policy says.
    Replication,
    ClientId,
    ClientSetName,
    ClientGetName,
    ClientSetInfo,
    ClientInfo,
    /// `SIDECAR <subcommand>`: the sidecar's own admin commands.
    Sidecar,
    /// `INFO sidecar`: the sidecar's own section, answered even while Redis is down.
    InfoSidecar,
}

/// Commands that open, use or close per-connection state upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    /// Blocks the connection until data arrives or a timeout (BLPOP, WAIT, XREAD BLOCK...).
    Blocking,
    Subscribe(SubKind),
    Unsubscribe(SubKind),
    /// `SELECT n`: the db index lives on the connection.
    Select,
    /// `CLIENT TRACKING` / `CLIENT CACHING`: invalidation state lives on the connection.
    Tracking,
    /// `CLIENT REPLY ON|OFF|SKIP`: changes how many replies come back.
    ClientReply,
    /// `MONITOR`: the connection becomes a stream until it closes.
    Monitor,
}

/// The three pub/sub families; each has its own subscription count in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    Channel,
    Pattern,
    Shard,
}

/// Upper-case ASCII copy of a short name into a stack buffer (command names are short).
pub(crate) fn upper<'a>(name: &[u8], buf: &'a mut [u8; 32]) -> Option<&'a [u8]> {
    if name.len() > buf.len() {
        return None;
    }
    let out = &mut buf[..name.len()];
    for (o, c) in out.iter_mut().zip(name) {
        *o = c.to_ascii_uppercase();
    }
    Some(out)
}

/// Classify a request by its arguments (name first). Unknown commands are [`Route::Shared`]:
/// Redis answers them, the sidecar never turns them into a connection error.
pub fn classify(args: &[Bytes]) -> Route {
    let Some(name) = args.first() else {
        return Route::Shared;
    };
    let mut buf = [0u8; 32];
    let Some(name) = upper(name, &mut buf) else {
        return Route::Shared;
    };
    match name {
        b"HELLO" => Route::Local(Local::Hello),
        b"AUTH" => Route::Local(Local::Auth),
        b"QUIT" => Route::Local(Local::Quit),
        b"RESET" => Route::Local(Local::Reset),
        b"MULTI" => Route::Pinned(Pin::Multi),
        b"EXEC" => Route::Pinned(Pin::Exec),
        b"DISCARD" => Route::Pinned(Pin::Discard),
        b"WATCH" => Route::Pinned(Pin::Watch),
        b"UNWATCH" => Route::Pinned(Pin::Unwatch),
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX"
        | b"BZMPOP" | b"WAIT" | b"WAITAOF" => Route::Pinned(Pin::Blocking),
        b"XREAD" | b"XREADGROUP" => {
            if has_flag(&args[1..], b"BLOCK") {
                Route::Pinned(Pin::Blocking)
            } else {
                Route::Shared
            }
        }
        b"SUBSCRIBE" => Route::Pinned(Pin::Subscribe(SubKind::Channel)),
        b"PSUBSCRIBE" => Route::Pinned(Pin::Subscribe(SubKind::Pattern)),
        b"SSUBSCRIBE" => Route::Pinned(Pin::Subscribe(SubKind::Shard)),
        b"UNSUBSCRIBE" => Route::Pinned(Pin::Unsubscribe(SubKind::Channel)),
        b"PUNSUBSCRIBE" => Route::Pinned(Pin::Unsubscribe(SubKind::Pattern)),
        b"SUNSUBSCRIBE" => Route::Pinned(Pin::Unsubscribe(SubKind::Shard)),
        b"MONITOR" => Route::Pinned(Pin::Monitor),
        b"SYNC" | b"PSYNC" | b"REPLCONF" => Route::Local(Local::Replication),
        b"SELECT" => {
            if args.len() == 2 && args[1].as_ref() == b"0" {
                Route::Local(Local::SelectZero)
            } else {
                Route::Pinned(Pin::Select)
            }
        }
        b"CLIENT" => classify_client(args),
        b"SIDECAR" => Route::Local(Local::Sidecar),
        b"INFO" if args.len() == 2 && args[1].eq_ignore_ascii_case(b"sidecar") => {
            Route::Local(Local::InfoSidecar)
        }
        _ => Route::Shared,
    }
}

fn classify_client(args: &[Bytes]) -> Route {
    let Some(sub) = args.get(1) else {
        return Route::Shared;
    };
    let mut buf = [0u8; 32];
    let Some(sub) = upper(sub, &mut buf) else {
        return Route::Shared;
    };
    match sub {
        b"ID" => Route::Local(Local::ClientId),
        b"SETNAME" => Route::Local(Local::ClientSetName),
        b"GETNAME" => Route::Local(Local::ClientGetName),
        b"SETINFO" => Route::Local(Local::ClientSetInfo),
        b"INFO" => Route::Local(Local::ClientInfo),
        b"TRACKING" | b"CACHING" => Route::Pinned(Pin::Tracking),
        b"REPLY" => Route::Pinned(Pin::ClientReply),
        _ => Route::Shared,
    }
}

/// True when `flag` appears among `args` (ASCII case-insensitive).
pub fn has_flag(args: &[Bytes], flag: &[u8]) -> bool {
    args.iter().any(|a| a.eq_ignore_ascii_case(flag))
}

/// The upper-cased command name, and `NAME SUBCOMMAND` for container commands, for policy
/// checks and log lines. Never contains key or value bytes.
pub fn display_name(args: &[Bytes]) -> (String, Option<String>) {
    let name = args
        .first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
        .unwrap_or_default();
    let sub = if is_container(&name) {
        args.get(1)
            .map(|s| format!("{name} {}", String::from_utf8_lossy(s).to_ascii_uppercase()))
    } else {
        None
    };
    (name, sub)
}

/// Commands whose first argument is a subcommand (`CONFIG SET`, `CLIENT KILL`...).
pub(crate) fn is_container(name: &str) -> bool {
    matches!(
        name,
        "ACL"
            | "CLIENT"
            | "CLUSTER"
            | "COMMAND"
            | "CONFIG"
            | "FUNCTION"
            | "LATENCY"
            | "MEMORY"
            | "MODULE"
            | "OBJECT"
            | "PUBSUB"
            | "SCRIPT"
            | "SIDECAR"
            | "SLOWLOG"
            | "XGROUP"
            | "XINFO"
    )
}

/// Test helper: the arguments of a space-separated command line.
#[cfg(test)]
pub(crate) fn test_args(line: &str) -> Vec<Bytes> {
    line.split(' ')
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::test_args as args;
    use super::*;

    #[test]
    fn routes_are_case_insensitive() {
        assert_eq!(classify(&args("get k")), Route::Shared);
        assert_eq!(classify(&args("mUlTi")), Route::Pinned(Pin::Multi));
        assert_eq!(classify(&args("blpop q 0")), Route::Pinned(Pin::Blocking));
        assert_eq!(
            classify(&args("client setname x")),
            Route::Local(Local::ClientSetName)
        );
        assert_eq!(
            classify(&args("Client Tracking on")),
            Route::Pinned(Pin::Tracking)
        );
        assert_eq!(classify(&args("client list")), Route::Shared);
        assert_eq!(
            classify(&args("psync ? -1")),
            Route::Local(Local::Replication)
        );
    }

    #[test]
    fn info_sidecar_alone_is_local() {
        assert_eq!(
            classify(&args("info Sidecar")),
            Route::Local(Local::InfoSidecar)
        );
        assert_eq!(classify(&args("INFO sidecar server")), Route::Shared);
        assert_eq!(classify(&args("INFO")), Route::Shared);
    }

    #[test]
    fn xread_pins_only_when_blocking() {
        assert_eq!(classify(&args("XREAD STREAMS s 0")), Route::Shared);
        assert_eq!(
            classify(&args("XREAD block 100 STREAMS s 0")),
            Route::Pinned(Pin::Blocking)
        );
    }

    #[test]
    fn select_zero_is_local_and_others_pin() {
        assert_eq!(classify(&args("SELECT 0")), Route::Local(Local::SelectZero));
        assert_eq!(classify(&args("select 3")), Route::Pinned(Pin::Select));
    }

    #[test]
    fn unknown_and_oversized_names_are_forwarded() {
        assert_eq!(classify(&args("NOSUCHCOMMAND a")), Route::Shared);
        assert_eq!(classify(&[Bytes::from(vec![b'A'; 100])]), Route::Shared);
        assert_eq!(classify(&[]), Route::Shared);
    }

    #[test]
    fn display_names_include_subcommands_of_containers_only() {
        assert_eq!(
            display_name(&args("config set a b")).1.as_deref(),
            Some("CONFIG SET")
        );
        assert_eq!(display_name(&args("get config")).1, None);
        assert_eq!(display_name(&args("get k")).0, "GET");
    }
}
