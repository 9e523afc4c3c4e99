//! The closed sets metric labels are drawn from: every label value the sidecar exports
//! is one of these, or a command name from [`COMMAND_NAMES`] (never client input).

/// Top-level commands of Redis 7.0 (`COMMAND LIST` without subcommands), plus the
/// sidecar's own `SIDECAR`. Anything else is counted as `"other"`.
#[rustfmt::skip]
pub const COMMAND_NAMES: &[&str] = &[
    "ACL", "APPEND", "ASKING", "AUTH", "BGREWRITEAOF", "BGSAVE", "BITCOUNT", "BITFIELD",
    "BITFIELD_RO", "BITOP", "BITPOS", "BLMOVE", "BLMPOP", "BLPOP", "BRPOP", "BRPOPLPUSH",
    "BZMPOP", "BZPOPMAX", "BZPOPMIN", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "COPY",
    "DBSIZE", "DEBUG", "DECR", "DECRBY", "DEL", "DISCARD", "DUMP", "ECHO",
    "EVAL", "EVAL_RO", "EVALSHA", "EVALSHA_RO", "EXEC", "EXISTS", "EXPIRE", "EXPIREAT",
    "EXPIRETIME", "FAILOVER", "FCALL", "FCALL_RO", "FLUSHALL", "FLUSHDB", "FUNCTION", "GEOADD",
    "GEODIST", "GEOHASH", "GEOPOS", "GEORADIUS", "GEORADIUS_RO", "GEORADIUSBYMEMBER",
    "GEORADIUSBYMEMBER_RO", "GEOSEARCH", "GEOSEARCHSTORE", "GET", "GETBIT", "GETDEL", "GETEX",
    "GETRANGE", "GETSET", "HDEL", "HELLO", "HEXISTS", "HGET", "HGETALL", "HINCRBY",
    "HINCRBYFLOAT", "HKEYS", "HLEN", "HMGET", "HMSET", "HRANDFIELD", "HSCAN", "HSET",
    "HSETNX", "HSTRLEN", "HVALS", "INCR", "INCRBY", "INCRBYFLOAT", "INFO", "KEYS",
    "LASTSAVE", "LATENCY", "LCS", "LINDEX", "LINSERT", "LLEN", "LMOVE", "LMPOP",
    "LOLWUT", "LPOP", "LPOS", "LPUSH", "LPUSHX", "LRANGE", "LREM", "LSET",
    "LTRIM", "MEMORY", "MGET", "MIGRATE", "MODULE", "MONITOR", "MOVE", "MSET",
    "MSETNX", "MULTI", "OBJECT", "PERSIST", "PEXPIRE", "PEXPIREAT", "PEXPIRETIME", "PFADD",
    "PFCOUNT", "PFDEBUG", "PFMERGE", "PFSELFTEST", "PING", "PSETEX", "PSUBSCRIBE", "PSYNC",
    "PTTL", "PUBLISH", "PUBSUB", "PUNSUBSCRIBE", "QUIT", "RANDOMKEY", "READONLY", "READWRITE",
    "RENAME", "RENAMENX", "REPLCONF", "REPLICAOF", "RESET", "RESTORE", "RESTORE-ASKING", "ROLE",
    "RPOP", "RPOPLPUSH", "RPUSH", "RPUSHX", "SADD", "SAVE", "SCAN", "SCARD",
    "SCRIPT", "SDIFF", "SDIFFSTORE", "SELECT", "SET", "SETBIT", "SETEX", "SETNX",
    "SETRANGE", "SHUTDOWN", "SIDECAR", "SINTER", "SINTERCARD", "SINTERSTORE", "SISMEMBER",
    "SLAVEOF", "SLOWLOG", "SMEMBERS", "SMISMEMBER", "SMOVE", "SORT", "SORT_RO", "SPOP",
    "SPUBLISH", "SRANDMEMBER", "SREM", "SSCAN", "SSUBSCRIBE", "STRLEN", "SUBSCRIBE", "SUBSTR",
    "SUNION", "SUNIONSTORE", "SUNSUBSCRIBE", "SWAPDB", "SYNC", "TIME", "TOUCH", "TTL",
    "TYPE", "UNLINK", "UNSUBSCRIBE", "UNWATCH", "WAIT", "WATCH", "XACK", "XADD",
    "XAUTOCLAIM", "XCLAIM", "XDEL", "XGROUP", "XINFO", "XLEN", "XPENDING", "XRANGE",
    "XREAD", "XREADGROUP", "XREVRANGE", "XSETID", "XTRIM", "ZADD", "ZCARD", "ZCOUNT",
    "ZDIFF", "ZDIFFSTORE", "ZINCRBY", "ZINTER", "ZINTERCARD", "ZINTERSTORE", "ZLEXCOUNT",
    "ZMPOP", "ZMSCORE", "ZPOPMAX", "ZPOPMIN", "ZRANDMEMBER", "ZRANGE", "ZRANGEBYLEX",
    "ZRANGEBYSCORE", "ZRANGESTORE", "ZRANK", "ZREM", "ZREMRANGEBYLEX", "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYLEX", "ZREVRANGEBYSCORE", "ZREVRANK", "ZSCAN",
    "ZSCORE", "ZUNION", "ZUNIONSTORE",
];

/// The `command` label of a name outside [`COMMAND_NAMES`].
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
