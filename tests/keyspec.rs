//! The key table (`resp_sidecar::keys`) against a real redis-server:
//!
//! - every command and subcommand the server says has keys is in the table, with its
//!   key specs, and has an example below (a new keyed command cannot slip through);
//! - for every example, `extract` finds the keys and flags `COMMAND GETKEYSANDFLAGS`
//!   reports;
//! - the SORT BY/GET patterns `extract` reports are exactly the arguments SORT reads
//!   keys through (checked by running SORT on prefixed data with them prefixed);
//! - where `extract` walks a command's own syntax instead of trusting its key specs
//!   (GEORADIUS STORE, XREADGROUP), the key it reports is the one Redis touches.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::{encode, parse_one, show, RawConn, RedisServer, Value};
use resp_sidecar::keys::{self, ArgKind, KeyArg, KeyFlags};

/// One request per line, words split on spaces, `''` for an empty argument. Every
/// keyed command of Redis 7.0 appears at least once; requests are well-formed (Redis
/// checks arity and key positions for GETKEYS, not the data).
const EXAMPLES: &[&str] = &[
    "APPEND k v",
    "BITCOUNT k 0 -1",
    "BITFIELD k GET u8 0",
    "BITFIELD k OVERFLOW SAT INCRBY u8 0 1",
    "BITFIELD k GET u8 0 SET u8 0 1",
    "BITFIELD_RO k GET u8 0",
    "BITOP AND d a b",
    "BITPOS k 1",
    "BLMOVE src dst LEFT RIGHT 0",
    "BLMPOP 0 2 a b LEFT COUNT 2",
    "BLPOP a b 0",
    "BRPOP a b 0",
    "BRPOPLPUSH src dst 0",
    "BZMPOP 0 2 a b MIN",
    "BZPOPMAX a b 0",
    "BZPOPMIN a b 0",
    "COPY src dst DB 1 REPLACE",
    "DECR k",
    "DECRBY k 2",
    "DEL a b c",
    "DUMP k",
    "EVAL s 2 a b arg",
    "EVAL s 0 arg",
    "EVAL_RO s 1 a",
    "EVALSHA sha 2 a b",
    "EVALSHA_RO sha 1 a",
    "EXISTS a b",
    "EXPIRE k 10 NX",
    "EXPIREAT k 100",
    "EXPIRETIME k",
    "FCALL f 2 a b x",
    "FCALL_RO f 1 a",
    "GEOADD k 0 0 m",
    "GEODIST k a b km",
    "GEOHASH k m",
    "GEOPOS k m",
    "GEORADIUS k 0 0 1 km WITHDIST COUNT 2 ASC",
    "GEORADIUS k 0 0 1 km STORE d",
    "GEORADIUS k 0 0 1 km COUNT 3 STOREDIST d",
    "GEORADIUS_RO k 0 0 1 km WITHCOORD",
    "GEORADIUSBYMEMBER k m 1 km STORE d",
    "GEORADIUSBYMEMBER k m 1 km STOREDIST d",
    "GEORADIUSBYMEMBER_RO k m 1 km",
    "GEOSEARCH k FROMMEMBER m BYRADIUS 1 km",
    "GEOSEARCHSTORE d k FROMLONLAT 0 0 BYBOX 1 1 km STOREDIST",
    "GET k",
    "GETBIT k 0",
    "GETDEL k",
    "GETEX k PERSIST",
    "GETRANGE k 0 1",
    "GETSET k v",
    "HDEL h f",
    "HEXISTS h f",
    "HGET h f",
    "HGETALL h",
    "HINCRBY h f 1",
    "HINCRBYFLOAT h f 1.5",
    "HKEYS h",
    "HLEN h",
    "HMGET h f g",
    "HMSET h f v",
    "HRANDFIELD h 2",
    "HSCAN h 0",
    "HSET h f v",
    "HSETNX h f v",
    "HSTRLEN h f",
    "HVALS h",
    "INCR k",
    "INCRBY k 1",
    "INCRBYFLOAT k 1.5",
    "LCS a b LEN",
    "LINDEX l 0",
    "LINSERT l BEFORE p v",
    "LLEN l",
    "LMOVE src dst LEFT LEFT",
    "LMPOP 2 a b RIGHT",
    "LPOP l 2",
    "LPOS l v RANK 1",
    "LPUSH l v",
    "LPUSHX l v",
    "LRANGE l 0 -1",
    "LREM l 0 v",
    "LSET l 0 v",
    "LTRIM l 0 1",
    "MEMORY USAGE k SAMPLES 0",
    "MGET a b c",
    "MIGRATE h 6379 k 0 1000",
    "MIGRATE h 6379 '' 0 1000 COPY REPLACE KEYS a b",
    "MIGRATE h 6379 '' 0 1000 AUTH2 u p KEYS c",
    "MOVE k 1",
    "MSET a 1 b 2",
    "MSETNX a 1 b 2",
    "OBJECT ENCODING k",
    "OBJECT FREQ k",
    "OBJECT IDLETIME k",
    "OBJECT REFCOUNT k",
    "PERSIST k",
    "PEXPIRE k 100",
    "PEXPIREAT k 100",
    "PEXPIRETIME k",
    "PFADD hll a b",
    "PFCOUNT a b",
    "PFDEBUG GETREG hll",
    "PFMERGE d a b",
    "PSETEX k 100 v",
    "PTTL k",
    "RENAME a b",
    "RENAMENX a b",
    "RESTORE k 0 payload REPLACE",
    "RESTORE-ASKING k 0 payload",
    "RPOP l",
    "RPOPLPUSH src dst",
    "RPUSH l v",
    "RPUSHX l v",
    "SADD s m",
    "SCARD s",
    "SDIFF a b",
    "SDIFFSTORE d a b",
    "SET k v",
    "SET k v NX GET",
    "SETBIT k 0 1",
    "SETEX k 10 v",
    "SETNX k v",
    "SETRANGE k 0 v",
    "SINTER a b",
    "SINTERCARD 2 a b LIMIT 5",
    "SINTERSTORE d a b",
    "SISMEMBER s m",
    "SMEMBERS s",
    "SMISMEMBER s a b",
    "SMOVE src dst m",
    "SORT k",
    "SORT k BY w_* LIMIT 0 1 GET # GET o_* STORE d",
    "SORT_RO k BY w_* GET o_*",
    "SPOP s 1",
    "SPUBLISH ch msg",
    "SRANDMEMBER s 2",
    "SREM s m",
    "SSCAN s 0",
    "SSUBSCRIBE a b",
    "STRLEN k",
    "SUBSTR k 0 1",
    "SUNION a b",
    "SUNIONSTORE d a b",
    "SUNSUBSCRIBE a",
    "TOUCH a b",
    "TTL k",
    "TYPE k",
    "UNLINK a b",
    "WATCH a b",
    "XACK s g 0-1",
    "XADD s * f v",
    "XAUTOCLAIM s g c 0 0",
    "XCLAIM s g c 0 0-1",
    "XDEL s 0-1",
    "XGROUP CREATE s g $ MKSTREAM",
    "XGROUP CREATECONSUMER s g c",
    "XGROUP DELCONSUMER s g c",
    "XGROUP DESTROY s g",
    "XGROUP SETID s g $",
    "XINFO CONSUMERS s g",
    "XINFO GROUPS s",
    "XINFO STREAM s FULL",
    "XLEN s",
    "XPENDING s g",
    "XRANGE s - +",
    "XREAD COUNT 1 STREAMS a b 0 0",
    "XREAD STREAMS streams 0",
    "XREADGROUP GROUP g c COUNT 1 STREAMS a b > >",
    "XREVRANGE s + -",
    "XSETID s 0-1",
    "XTRIM s MAXLEN 10",
    "ZADD z 1 m",
    "ZCARD z",
    "ZCOUNT z 0 1",
    "ZDIFF 2 a b",
    "ZDIFFSTORE d 2 a b",
    "ZINCRBY z 1 m",
    "ZINTER 2 a b",
    "ZINTERCARD 2 a b",
    "ZINTERSTORE d 2 a b",
    "ZLEXCOUNT z - +",
    "ZMPOP 2 a b MIN",
    "ZMSCORE z a b",
    "ZPOPMAX z",
    "ZPOPMIN z",
    "ZRANDMEMBER z",
    "ZRANGE z 0 -1",
    "ZRANGEBYLEX z - +",
    "ZRANGEBYSCORE z 0 1",
    "ZRANGESTORE d z 0 -1",
    "ZRANK z m",
    "ZREM z m",
    "ZREMRANGEBYLEX z - +",
    "ZREMRANGEBYRANK z 0 1",
    "ZREMRANGEBYSCORE z 0 1",
    "ZREVRANGE z 0 1",
    "ZREVRANGEBYLEX z + -",
    "ZREVRANGEBYSCORE z 1 0",
    "ZREVRANK z m",
    "ZSCAN z 0",
    "ZSCORE z m",
    "ZUNION 2 a b",
    "ZUNIONSTORE d 2 a b WEIGHTS 1 2",
];

const FLAG_NAMES: &[(KeyFlags, &str)] = &[
    (KeyFlags::RO, "RO"),
    (KeyFlags::RW, "RW"),
    (KeyFlags::OW, "OW"),
    (KeyFlags::RM, "RM"),
    (KeyFlags::ACCESS, "access"),
    (KeyFlags::UPDATE, "update"),
    (KeyFlags::INSERT, "insert"),
    (KeyFlags::DELETE, "delete"),
    (KeyFlags::NOT_KEY, "not_key"),
    (KeyFlags::INCOMPLETE, "incomplete"),
    (KeyFlags::VARIABLE_FLAGS, "variable_flags"),
];

fn words(example: &str) -> Vec<Bytes> {
    example
        .split(' ')
        .map(|w| match w {
            "''" => Bytes::new(),
            w => Bytes::copy_from_slice(w.as_bytes()),
        })
        .collect()
}

fn text(v: &Value) -> String {
    String::from_utf8_lossy(v.bytes().unwrap_or(b"?")).into_owned()
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// The table entry and the key arguments `extract` finds in `args`.
fn extract(args: &[Bytes]) -> (&'static keys::CommandInfo, Vec<KeyArg>) {
    let cmd = keys::lookup(args).unwrap_or_else(|| panic!("no table entry for {args:?}"));
    let mut out = Vec::new();
    keys::extract(cmd, args, &mut out);
    (cmd, out)
}

/// A command or subcommand as the server describes it.
struct ServerCommand {
    /// `GET`, `OBJECT ENCODING`.
    name: String,
    first_key: i64,
    movable: bool,
    key_specs: usize,
}

impl ServerCommand {
    fn has_keys(&self) -> bool {
        self.key_specs > 0 || self.first_key != 0 || self.movable
    }
}

fn server_commands(conn: &mut RawConn) -> Vec<ServerCommand> {
    fn walk(info: &Value, out: &mut Vec<ServerCommand>) {
        let f = items(info);
        let int = |i: usize| match f.get(i) {
            Some(Value::Int(n)) => *n,
            other => panic!("COMMAND field {i}: {other:?}"),
        };
        out.push(ServerCommand {
            name: text(&f[0]).to_uppercase().replace('|', " "),
            first_key: int(3),
            movable: items(&f[2]).iter().any(|v| text(v) == "movablekeys"),
            key_specs: items(&f[8]).len(),
        });
        for sub in f.get(9).map(items).unwrap_or_default() {
            walk(sub, out);
        }
    }
    let reply = parse_one(&conn.cmd_str(&["COMMAND"]));
    let mut out = Vec::new();
    for info in items(&reply) {
        walk(info, &mut out);
    }
    assert!(out.len() > 300, "COMMAND listed only {} entries", out.len());
    out
}

#[test]
fn every_command_with_keys_is_in_the_table_and_has_an_example() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    let covered: BTreeSet<&str> = EXAMPLES.iter().map(|e| extract(&words(e)).0.name).collect();
    let mut problems = Vec::new();
    for c in server_commands(&mut conn).iter().filter(|c| c.has_keys()) {
        let entry = keys::lookup(&words(&c.name));
        match entry {
            None => problems.push(format!("{}: not in the table", c.name)),
            Some(e) if e.name != c.name => problems.push(format!("{}: found {}", c.name, e.name)),
            Some(e) if e.key_spec_count() == 0 => {
                problems.push(format!("{}: no key specs", c.name))
            }
            Some(e) if e.key_spec_count() != c.key_specs => problems.push(format!(
                "{}: {} key specs in the table, {} on the server",
                c.name,
                e.key_spec_count(),
                c.key_specs
            )),
            Some(_) => {}
        }
        if !covered.contains(c.name.as_str()) {
            problems.push(format!("{}: no example in tests/keyspec.rs", c.name));
        }
    }
    assert!(
        problems.is_empty(),
        "keyed commands of redis-server {} the table does not cover:\n{}",
        keys::REDIS_VERSION,
        problems.join("\n")
    );
}

/// (key name, sorted flag names) pairs, sorted.
type Keys = Vec<(String, Vec<String>)>;

fn ours(args: &[Bytes]) -> Keys {
    let (_, found) = extract(args);
    let mut keys: Keys = found
        .iter()
        .filter(|k| k.kind == ArgKind::Key)
        .map(|k| {
            let name = String::from_utf8_lossy(&args[k.index]).into_owned();
            let mut flags: Vec<String> = FLAG_NAMES
                .iter()
                .filter(|(f, _)| k.flags.contains(*f))
                .map(|(_, n)| n.to_string())
                .collect();
            flags.sort();
            (name, flags)
        })
        .collect();
    keys.sort();
    keys
}

fn theirs(reply: &Value) -> Keys {
    let mut keys: Keys = items(reply)
        .iter()
        .map(|pair| {
            let pair = items(pair);
            let mut flags: Vec<String> = items(&pair[1]).iter().map(text).collect();
            flags.sort();
            (text(&pair[0]), flags)
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn examples_match_getkeysandflags() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    let mut pipeline = Vec::new();
    for example in EXAMPLES {
        let mut req: Vec<Bytes> = vec!["COMMAND".into(), "GETKEYSANDFLAGS".into()];
        req.extend(words(example));
        let refs: Vec<&[u8]> = req.iter().map(|b| b.as_ref()).collect();
        pipeline.extend(encode(&refs));
    }
    conn.send(&pipeline);
    let mut problems = Vec::new();
    for example in EXAMPLES {
        let args = words(example);
        let reply = conn.read_reply();
        let (cmd, _) = extract(&args);
        let want = match parse_one(&reply) {
            // Shard channels: key specs, but none of them a key.
            Value::Error(e) if !cmd.has_keys() && e.ends_with(b"no key arguments") => Vec::new(),
            Value::Error(_) => {
                problems.push(format!("{example}: server refused: {}", show(&reply)));
                continue;
            }
            v => theirs(&v),
        };
        let got = ours(&args);
        if got != want {
            problems.push(format!(
                "{example}:\n   extract {got:?}\n  GETKEYS {want:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// SORT patterns
// ---------------------------------------------------------------------------

/// A list to sort, weights `w_*` and hashes `o_*`, every name starting with `prefix`.
fn load_sort_data(conn: &mut RawConn, prefix: &str) {
    let p = |name: &str| format!("{prefix}{name}");
    let cmds: Vec<Vec<String>> = vec![
        vec!["FLUSHALL".into()],
        vec!["RPUSH".into(), p("k"), "3".into(), "1".into(), "2".into()],
        vec!["RPUSH".into(), p("by"), "2".into(), "3".into(), "1".into()],
        vec![
            "MSET".into(),
            p("w_1"),
            "30".into(),
            p("w_2"),
            "10".into(),
            p("w_3"),
            "20".into(),
        ],
        vec!["HSET".into(), p("o_1"), "f".into(), "one".into()],
        vec!["HSET".into(), p("o_2"), "f".into(), "two".into()],
        vec!["HSET".into(), p("o_3"), "f".into(), "three".into()],
    ];
    for c in cmds {
        let refs: Vec<&str> = c.iter().map(String::as_str).collect();
        let reply = conn.cmd_str(&refs);
        assert!(!reply.starts_with(b"-"), "{c:?}: {}", show(&reply));
    }
}

/// `args` with every key and pattern `extract` reports prefixed by `prefix`.
fn prefixed(args: &[Bytes], prefix: &str) -> Vec<Vec<u8>> {
    let (_, found) = extract(args);
    let mut out: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
    for k in found {
        out[k.index].splice(0..0, prefix.bytes());
    }
    out
}

fn run(conn: &mut RawConn, args: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    conn.cmd(&refs)
}

#[test]
fn sort_patterns_are_the_arguments_sort_reads_keys_through() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    // (request, pattern indexes extract must report)
    let cases: &[(&str, &[usize])] = &[
        ("SORT k BY w_* GET # GET o_*->f", &[3, 7]),
        ("SORT k BY nosort GET o_*->f", &[5]),
        ("sort_ro k get o_*->f by w_* desc limit 0 2", &[3, 5]),
        ("SORT by BY w_* GET o_*->f", &[3, 5]),
        ("SORT k ALPHA LIMIT 0 2 GET #", &[]),
        ("SORT k BY w_* GET o_*->f STORE dst", &[3, 5]),
    ];
    for (req, want) in cases {
        let args = words(req);
        let (_, found) = extract(&args);
        let patterns: Vec<usize> = found
            .iter()
            .filter(|k| k.kind == ArgKind::Pattern)
            .map(|k| k.index)
            .collect();
        assert_eq!(&patterns, want, "{req}");
        // The same request on plain data, and with every reported key and pattern
        // prefixed on prefixed data, must answer the same: any argument SORT reads a key
        // through but extract missed would read a missing key, and a rewritten `#` or a
        // rewritten non-pattern would change the reply.
        load_sort_data(&mut conn, "");
        let plain: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        let mut direct = run(&mut conn, &plain);
        direct.extend(conn.cmd_str(&["LRANGE", "dst", "0", "-1"]));
        load_sort_data(&mut conn, "ns:");
        let mut scoped = run(&mut conn, &prefixed(&args, "ns:"));
        scoped.extend(conn.cmd_str(&["LRANGE", "ns:dst", "0", "-1"]));
        assert!(!direct.starts_with(b"-"), "{req}: {}", show(&direct));
        assert_eq!(show(&scoped), show(&direct), "{req}");
    }
    // The data is what the cases rely on: sorted by weight, elements then names.
    load_sort_data(&mut conn, "");
    let reply = conn.cmd_str(&["SORT", "k", "BY", "w_*", "GET", "#", "GET", "o_*->f"]);
    let want = b"*6\r\n$1\r\n2\r\n$3\r\ntwo\r\n$1\r\n3\r\n$5\r\nthree\r\n$1\r\n1\r\n$3\r\none\r\n";
    assert_eq!(show(&reply), show(want));
}

// ---------------------------------------------------------------------------
// Commands whose key specs Redis's own parser does not follow
// ---------------------------------------------------------------------------

#[test]
fn georadius_and_xreadgroup_report_the_keys_redis_touches() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    assert_eq!(conn.cmd_str(&["GEOADD", "k", "0", "0", "m"]), b":1\r\n");
    // The parser lets the last STORE/STOREDIST win; the key specs take the first one
    // (and here a destination named "store" for the STORE keyword).
    for req in [
        "GEORADIUS k 0 0 100 km STORE a STORE written",
        "GEORADIUS k 0 0 100 km STOREDIST store STORE written",
        "GEORADIUSBYMEMBER k m 100 km STORE a STOREDIST written",
    ] {
        conn.cmd_str(&["DEL", "written"]);
        let args = words(req);
        let plain: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        assert_eq!(run(&mut conn, &plain), b":1\r\n", "{req}");
        assert_eq!(conn.cmd_str(&["EXISTS", "written"]), b":1\r\n", "{req}");
        let (_, found) = extract(&args);
        let written = args.len() - 1;
        assert!(
            found.iter().any(|k| k.index == written && k.flags.writes()),
            "{req}: {found:?}"
        );
    }
    // XREADGROUP takes options in any order before STREAMS; the STREAMS key spec
    // searches from index 4 and would take the group name "streams" for the keyword.
    conn.cmd_str(&["XADD", "s", "1-1", "f", "v"]);
    assert_eq!(
        conn.cmd_str(&["XGROUP", "CREATE", "s", "streams", "0"]),
        b"+OK\r\n"
    );
    let args = words("XREADGROUP COUNT 1 GROUP streams c STREAMS s >");
    let plain: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
    let reply = run(&mut conn, &plain);
    assert!(
        reply.starts_with(b"*1\r\n*2\r\n$1\r\ns\r\n"),
        "{}",
        show(&reply)
    );
    let (_, found) = extract(&args);
    let indexes: Vec<usize> = found.iter().map(|k| k.index).collect();
    assert_eq!(indexes, [7]);
}
