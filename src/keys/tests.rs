use bytes::Bytes;
use proptest::prelude::*;

use super::*;

const RO: KeyFlags = KeyFlags::RO;
const RO_ACCESS: KeyFlags = KeyFlags::RO.union(KeyFlags::ACCESS);
const OW_UPDATE: KeyFlags = KeyFlags::OW.union(KeyFlags::UPDATE);
const RW_ACCESS_UPDATE: KeyFlags = KeyFlags::RW.union(KeyFlags::ACCESS).union(KeyFlags::UPDATE);
const RW_ACCESS_DELETE: KeyFlags = KeyFlags::RW.union(KeyFlags::ACCESS).union(KeyFlags::DELETE);

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

/// The key arguments of a request, by index.
fn found(words: &[&str]) -> Vec<KeyArg> {
    let a = args(words);
    let cmd = lookup(&a).unwrap_or_else(|| panic!("no table entry for {words:?}"));
    let mut out = Vec::new();
    extract(cmd, &a, &mut out);
    out
}

/// The key indexes of a request (keys only, patterns left out).
fn key_indexes(words: &[&str]) -> Vec<usize> {
    found(words)
        .iter()
        .filter(|k| k.kind == ArgKind::Key)
        .map(|k| k.index)
        .collect()
}

/// The SORT pattern indexes of a request.
fn pattern_indexes(words: &[&str]) -> Vec<usize> {
    found(words)
        .iter()
        .filter(|k| k.kind == ArgKind::Pattern)
        .map(|k| k.index)
        .collect()
}

fn flags_of(words: &[&str]) -> Vec<KeyFlags> {
    found(words).iter().map(|k| k.flags).collect()
}

#[test]
fn lookup_is_case_insensitive_and_resolves_subcommands() {
    assert_eq!(lookup(&args(&["get", "k"])).map(|c| c.name), Some("GET"));
    assert_eq!(lookup(&args(&["gEt"])).map(|c| c.name), Some("GET"));
    assert_eq!(
        lookup(&args(&["object", "Encoding", "k"])).map(|c| c.name),
        Some("OBJECT ENCODING")
    );
    assert_eq!(
        lookup(&args(&["xinfo", "stream", "s"])).map(|c| c.name),
        Some("XINFO STREAM")
    );
    // A container without its subcommand is the container (Redis answers it with an
    // arity error); an unknown subcommand is unknown.
    assert_eq!(lookup(&args(&["OBJECT"])).map(|c| c.name), Some("OBJECT"));
    assert!(lookup(&args(&["OBJECT", "nope", "k"])).is_none());
    // Extra words after a plain command are arguments, not subcommands.
    assert_eq!(
        lookup(&args(&["GET", "encoding"])).map(|c| c.name),
        Some("GET")
    );
}

#[test]
fn lookup_refuses_unknown_and_odd_names() {
    assert!(lookup(&[]).is_none());
    assert!(lookup(&args(&[""])).is_none());
    assert!(lookup(&args(&["GETX"])).is_none());
    assert!(lookup(&args(&["GE"])).is_none());
    assert!(lookup(&args(&["GET\0"])).is_none());
    assert!(lookup(&args(&["GEORADIUSBYMEMBER_RO_AND_THEN_SOME_MORE"])).is_none());
    assert!(lookup(&[Bytes::from_static(b"G\xc3\xa9T")]).is_none());
}

#[test]
fn table_is_sorted_and_names_match_tokens() {
    fn check(table: &[CommandInfo], container: Option<&str>) {
        for pair in table.windows(2) {
            assert!(
                pair[0].token < pair[1].token,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
        for c in table {
            let want = match container {
                Some(parent) => format!("{parent} {}", c.token),
                None => c.token.to_string(),
            };
            assert_eq!(c.name, want);
            assert_eq!(c.token, c.token.to_ascii_uppercase());
            assert!(c.token.len() <= table::MAX_TOKEN_LEN);
            check(c.subcommands(), Some(c.name));
        }
    }
    check(commands(), None);
    assert!(commands().len() >= 200, "{}", commands().len());
}

/// Every entry of the table and its subcommands.
fn every_entry() -> Vec<&'static CommandInfo> {
    commands()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands()))
        .collect()
}

#[test]
fn a_fixed_key_is_what_extract_finds() {
    let mut fixed = 0;
    for cmd in every_entry() {
        let Some((index, flags)) = cmd.fixed_key() else {
            continue;
        };
        fixed += 1;
        for len in 0..index + 4 {
            let a: Vec<Bytes> = (0..len).map(|i| Bytes::from(format!("a{i}"))).collect();
            let mut out = Vec::new();
            extract(cmd, &a, &mut out);
            let want: Vec<KeyArg> = (index < len)
                .then_some(KeyArg {
                    index,
                    flags,
                    kind: ArgKind::Key,
                })
                .into_iter()
                .collect();
            assert_eq!(out, want, "{} with {len} arguments", cmd.name);
        }
    }
    assert!(fixed > 100, "only {fixed} commands with a fixed key");
    let get = lookup(&args(&["GET", "k"])).and_then(CommandInfo::fixed_key);
    assert_eq!(get, Some((1, RO_ACCESS)));
    for multi in [&["MGET", "a"][..], &["SET", "k", "v"], &["EVAL", "s", "0"]] {
        let cmd = lookup(&args(multi)).and_then(CommandInfo::fixed_key);
        assert_eq!(cmd, None, "{multi:?}");
    }
}

#[test]
fn single_key_commands() {
    assert_eq!(key_indexes(&["GET", "k"]), [1]);
    assert_eq!(flags_of(&["GET", "k"]), [RO_ACCESS]);
    assert_eq!(key_indexes(&["HSET", "h", "f", "v"]), [1]);
    assert_eq!(key_indexes(&["GETEX", "k"]), [1]);
    assert_eq!(key_indexes(&["OBJECT", "ENCODING", "k"]), [2]);
    assert_eq!(flags_of(&["OBJECT", "encoding", "k"]), [RO]);
    assert_eq!(key_indexes(&["MEMORY", "USAGE", "k", "SAMPLES", "5"]), [2]);
    assert_eq!(key_indexes(&["XINFO", "STREAM", "s", "FULL"]), [2]);
    assert_eq!(key_indexes(&["XGROUP", "CREATE", "s", "g", "$"]), [2]);
    assert_eq!(
        key_indexes(&["XGROUP", "CREATECONSUMER", "s", "g", "c"]),
        [2]
    );
}

#[test]
fn set_flags_depend_on_get() {
    assert_eq!(flags_of(&["SET", "k", "v"]), [OW_UPDATE]);
    assert_eq!(flags_of(&["SET", "k", "v", "EX", "10"]), [OW_UPDATE]);
    assert_eq!(flags_of(&["SET", "k", "v", "get"]), [RW_ACCESS_UPDATE]);
    // The value itself is not the GET option.
    assert_eq!(flags_of(&["SET", "k", "GET"]), [OW_UPDATE]);
}

#[test]
fn bitfield_is_read_only_without_set_or_incrby() {
    assert_eq!(flags_of(&["BITFIELD", "k"]), [RO_ACCESS]);
    assert_eq!(flags_of(&["BITFIELD", "k", "GET", "u8", "0"]), [RO_ACCESS]);
    assert_eq!(
        flags_of(&["BITFIELD", "k", "OVERFLOW", "WRAP", "get", "u8", "0"]),
        [RO_ACCESS]
    );
    assert_eq!(
        flags_of(&["BITFIELD", "k", "GET", "u8", "0", "SET", "u8", "0", "1"]),
        [RW_ACCESS_UPDATE]
    );
    assert_eq!(
        flags_of(&["BITFIELD", "k", "INCRBY", "u8", "0", "1"]),
        [RW_ACCESS_UPDATE]
    );
    // A short GET does not parse; Redis assumes a write then.
    assert_eq!(
        flags_of(&["BITFIELD", "k", "GET", "u8"]),
        [RW_ACCESS_UPDATE]
    );
    assert_eq!(
        flags_of(&["BITFIELD_RO", "k", "GET", "u8", "0"]),
        [RO_ACCESS]
    );
}

#[test]
fn key_lists_and_pairs() {
    assert_eq!(key_indexes(&["DEL", "a", "b", "c"]), [1, 2, 3]);
    assert_eq!(key_indexes(&["UNLINK", "a"]), [1]);
    assert_eq!(key_indexes(&["EXISTS", "a", "b"]), [1, 2]);
    assert_eq!(key_indexes(&["TOUCH", "a", "b"]), [1, 2]);
    assert_eq!(key_indexes(&["WATCH", "a", "b"]), [1, 2]);
    assert_eq!(key_indexes(&["MGET", "a", "b"]), [1, 2]);
    assert_eq!(key_indexes(&["MSET", "a", "1", "b", "2"]), [1, 3]);
    assert_eq!(key_indexes(&["MSETNX", "a", "1", "b", "2"]), [1, 3]);
    // An odd MSET is refused by Redis; its key spec still reads the keys it names.
    assert_eq!(key_indexes(&["MSET", "a", "1", "b"]), [1, 3]);
    assert_eq!(key_indexes(&["BLPOP", "a", "b", "0"]), [1, 2]);
    assert!(key_indexes(&["DEL"]).is_empty());
    assert!(key_indexes(&["MGET"]).is_empty());
}

#[test]
fn destination_keys() {
    assert_eq!(key_indexes(&["RENAME", "a", "b"]), [1, 2]);
    assert_eq!(flags_of(&["COPY", "a", "b"]), [RO_ACCESS, OW_UPDATE]);
    assert_eq!(
        key_indexes(&["COPY", "a", "b", "DB", "1", "REPLACE"]),
        [1, 2]
    );
    assert_eq!(key_indexes(&["LMOVE", "a", "b", "LEFT", "RIGHT"]), [1, 2]);
    assert_eq!(key_indexes(&["SMOVE", "a", "b", "m"]), [1, 2]);
    assert_eq!(key_indexes(&["BITOP", "AND", "d", "a", "b"]), [2, 3, 4]);
    assert_eq!(
        flags_of(&["BITOP", "AND", "d", "a"]),
        [OW_UPDATE, RO_ACCESS]
    );
    assert_eq!(
        key_indexes(&["GEOSEARCHSTORE", "d", "s", "FROMMEMBER", "m"]),
        [1, 2]
    );
    assert_eq!(key_indexes(&["SINTERSTORE", "d", "a", "b"]), [1, 2, 3]);
}

#[test]
fn numkeys_commands() {
    assert_eq!(key_indexes(&["EVAL", "s", "2", "a", "b", "x"]), [3, 4]);
    assert!(key_indexes(&["EVAL", "s", "0", "x"]).is_empty());
    assert_eq!(key_indexes(&["EVALSHA_RO", "h", "1", "a"]), [3]);
    assert_eq!(key_indexes(&["FCALL", "f", "1", "a", "x"]), [3]);
    assert_eq!(flags_of(&["FCALL_RO", "f", "1", "a"]), [RO_ACCESS]);
    assert_eq!(
        key_indexes(&["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"]),
        [1, 3, 4]
    );
    assert_eq!(key_indexes(&["ZINTERSTORE", "d", "1", "a"]), [1, 3]);
    assert_eq!(key_indexes(&["ZDIFFSTORE", "d", "2", "a", "b"]), [1, 3, 4]);
    assert_eq!(key_indexes(&["ZDIFF", "2", "a", "b", "WITHSCORES"]), [2, 3]);
    assert_eq!(key_indexes(&["ZUNION", "1", "a"]), [2]);
    assert_eq!(key_indexes(&["ZINTER", "2", "a", "b"]), [2, 3]);
    assert_eq!(
        key_indexes(&["SINTERCARD", "2", "a", "b", "LIMIT", "1"]),
        [2, 3]
    );
    assert_eq!(key_indexes(&["ZINTERCARD", "1", "a"]), [2]);
    assert_eq!(key_indexes(&["LMPOP", "2", "a", "b", "LEFT"]), [2, 3]);
    assert_eq!(key_indexes(&["BLMPOP", "0", "2", "a", "b", "LEFT"]), [3, 4]);
    assert_eq!(key_indexes(&["ZMPOP", "1", "a", "MIN"]), [2]);
    assert_eq!(key_indexes(&["BZMPOP", "1.5", "1", "a", "MAX"]), [3]);
    assert_eq!(flags_of(&["LMPOP", "1", "a", "LEFT"]), [RW_ACCESS_DELETE]);
}

#[test]
fn malformed_numkeys_never_panic_and_report_nothing() {
    // More keys announced than given, negative, not strictly an integer.
    for n in [
        "5",
        "-1",
        "01",
        "+1",
        " 1",
        "1 ",
        "x",
        "",
        "99999999999999999999",
    ] {
        assert!(
            key_indexes(&["EVAL", "s", n, "a"]).is_empty(),
            "numkeys {n:?}"
        );
        assert!(key_indexes(&["ZUNION", n, "a"]).is_empty(), "numkeys {n:?}");
    }
    assert!(key_indexes(&["EVAL", "s"]).is_empty());
    assert!(key_indexes(&["EVAL"]).is_empty());
    assert!(key_indexes(&["BLMPOP", "0"]).is_empty());
    // The destination spec stands on its own.
    assert_eq!(key_indexes(&["ZUNIONSTORE", "d", "3", "a"]), [1]);
}

#[test]
fn xread_streams() {
    assert_eq!(
        key_indexes(&["XREAD", "STREAMS", "a", "b", "0", "0"]),
        [2, 3]
    );
    assert_eq!(
        key_indexes(&["XREAD", "COUNT", "1", "BLOCK", "0", "streams", "a", "0"]),
        [6]
    );
    // A key named like the keyword.
    assert_eq!(key_indexes(&["XREAD", "STREAMS", "streams", "0"]), [2]);
    // Odd counts (Redis refuses them) report at most the first half.
    assert_eq!(key_indexes(&["XREAD", "STREAMS", "a", "b", "0"]), [2]);
    assert!(key_indexes(&["XREAD", "STREAMS", "a"]).is_empty());
    assert!(key_indexes(&["XREAD", "STREAMS"]).is_empty());
    assert!(key_indexes(&["XREAD", "COUNT", "1"]).is_empty());
}

#[test]
fn xreadgroup_follows_the_parser_not_the_keyword_search() {
    assert_eq!(
        key_indexes(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "STREAMS",
            "a",
            "b",
            ">",
            ">"
        ]),
        [5, 6]
    );
    // GROUP after COUNT, and a group named "streams": the key spec's search from
    // index 4 would take the consumer and the keyword for keys.
    let req = [
        "XREADGROUP",
        "COUNT",
        "1",
        "GROUP",
        "streams",
        "c",
        "STREAMS",
        "s",
        ">",
    ];
    assert_eq!(key_indexes(&req), [7]);
    assert_eq!(
        key_indexes(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "NOACK",
            "BLOCK",
            "0",
            "STREAMS",
            "s",
            ">"
        ]),
        [8]
    );
    assert!(key_indexes(&["XREADGROUP", "GROUP", "g", "c", "STREAMS"]).is_empty());
    // A word the parser refuses is skipped, not the end of the walk.
    assert_eq!(
        key_indexes(&["XREADGROUP", "BOGUS", "STREAMS", "s", ">"]),
        [3]
    );
}

#[test]
fn georadius_store_options() {
    let base = ["GEORADIUS", "k", "0", "0", "1", "km"];
    let with = |extra: &[&'static str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    assert_eq!(key_indexes(&with(&[])), [1]);
    assert_eq!(key_indexes(&with(&["STORE", "d"])), [1, 7]);
    assert_eq!(flags_of(&with(&["STORE", "d"])), [RO_ACCESS, OW_UPDATE]);
    assert_eq!(
        key_indexes(&with(&["COUNT", "5", "ASC", "storedist", "d"])),
        [1, 10]
    );
    // Every destination the parser reads is reported (the last one is written).
    assert_eq!(key_indexes(&with(&["STORE", "a", "STORE", "b"])), [1, 7, 9]);
    assert_eq!(
        key_indexes(&with(&["STOREDIST", "store", "STORE", "x"])),
        [1, 7, 9]
    );
    // Redis compares option names as C strings.
    assert_eq!(key_indexes(&with(&["STORE\0junk", "d"])), [1, 7]);
    // An option this table does not know does not hide a destination after it.
    assert_eq!(key_indexes(&with(&["FUTURE", "STORE", "d"])), [1, 8]);
    assert_eq!(
        key_indexes(&["GEORADIUSBYMEMBER", "k", "m", "1", "km", "STORE", "d"]),
        [1, 6]
    );
    assert_eq!(
        key_indexes(&["GEORADIUS_RO", "k", "0", "0", "1", "km"]),
        [1]
    );
}

#[test]
fn migrate_single_key_and_keys_option() {
    assert_eq!(key_indexes(&["MIGRATE", "h", "1", "k", "0", "5000"]), [3]);
    assert_eq!(
        flags_of(&["MIGRATE", "h", "1", "k", "0", "5000"]),
        [RW_ACCESS_DELETE]
    );
    assert_eq!(
        key_indexes(&["MIGRATE", "h", "1", "", "0", "5000", "COPY", "KEYS", "a", "b"]),
        [8, 9]
    );
    // Keys named like options, and AUTH taking the password "keys".
    assert_eq!(
        key_indexes(&["MIGRATE", "h", "1", "", "0", "5", "KEYS", "keys", "KEYS"]),
        [7, 8]
    );
    assert_eq!(
        key_indexes(&["MIGRATE", "h", "1", "", "0", "5", "AUTH", "keys", "KEYS", "a"]),
        [9]
    );
    assert_eq!(
        key_indexes(&["MIGRATE", "h", "1", "", "0", "5", "AUTH2", "u", "p", "keys", "a"]),
        [10]
    );
    assert_eq!(
        key_indexes(&["MIGRATE", "h", "1", "", "0", "5", "FUTURE", "KEYS", "a"]),
        [8]
    );
    // The empty key is a key without KEYS.
    assert_eq!(key_indexes(&["MIGRATE", "h", "1", "", "0", "5"]), [3]);
    assert!(key_indexes(&["MIGRATE", "h", "1"]).is_empty());
}

#[test]
fn sort_patterns_and_store() {
    let req = [
        "SORT", "k", "BY", "w_*", "LIMIT", "0", "10", "GET", "#", "GET", "o_*->f", "DESC", "ALPHA",
        "STORE", "d",
    ];
    assert_eq!(key_indexes(&req), [1, 14]);
    assert_eq!(pattern_indexes(&req), [3, 10]);
    let all = found(&req);
    assert_eq!(all[1].flags, RO_ACCESS);
    assert_eq!(all[3].flags, OW_UPDATE);
    // BY without `*` means "do not sort" and names no key.
    assert!(pattern_indexes(&["SORT", "k", "BY", "nosort"]).is_empty());
    assert!(pattern_indexes(&["SORT", "k", "by", "weight\0*"]).is_empty());
    // Keywords are case-insensitive; a key or pattern named like a keyword is not one.
    assert_eq!(
        pattern_indexes(&["sort", "by", "by", "by"]),
        Vec::<usize>::new()
    );
    assert_eq!(pattern_indexes(&["sort", "by", "by", "by*"]), [3]);
    assert_eq!(key_indexes(&["sort", "store", "get", "store"]), [1]);
    assert_eq!(pattern_indexes(&["sort", "store", "get", "store"]), [3]);
    assert_eq!(
        key_indexes(&["SORT", "k", "LIMIT", "0", "1", "store", "d"]),
        [1, 6]
    );
    // A word SORT refuses does not hide what follows (Redis refuses the request, but a
    // newer Redis may know the word).
    assert_eq!(key_indexes(&["SORT", "k", "BOGUS", "STORE", "d"]), [1, 4]);
    assert_eq!(key_indexes(&["SORT", "k", "STORE"]), [1]);
    assert!(key_indexes(&["SORT"]).is_empty());
}

#[test]
fn sort_ro_has_no_store() {
    let req = ["SORT_RO", "k", "GET", "p_*", "STORE", "d"];
    assert_eq!(key_indexes(&req), [1]);
    assert_eq!(pattern_indexes(&req), [3]);
}

#[test]
fn debug_subcommands_that_name_keys() {
    assert_eq!(key_indexes(&["DEBUG", "OBJECT", "k"]), [2]);
    assert_eq!(key_indexes(&["debug", "sdslen", "k"]), [2]);
    assert_eq!(key_indexes(&["DEBUG", "DIGEST-VALUE", "a", "b"]), [2, 3]);
    assert!(key_indexes(&["DEBUG", "SLEEP", "0"]).is_empty());
    assert!(key_indexes(&["DEBUG"]).is_empty());
}

#[test]
fn keyless_commands_and_shard_channels() {
    assert!(found(&["PING"]).is_empty());
    assert!(found(&["CONFIG", "GET", "maxmemory"]).is_empty());
    assert!(found(&["PUBLISH", "ch", "m"]).is_empty());
    assert!(found(&["SPUBLISH", "ch", "m"]).is_empty());
    assert!(found(&["SSUBSCRIBE", "a", "b"]).is_empty());
    let spublish = lookup(&args(&["SPUBLISH"])).map(|c| (c.key_spec_count(), c.has_keys()));
    assert_eq!(spublish, Some((1, false)));
}

#[test]
fn command_flags() {
    let flags = |name: &str| lookup(&args(&[name])).map(|c| c.flags).unwrap_or_default();
    assert!(flags("SET").contains(CommandFlags::WRITE.union(CommandFlags::DENYOOM)));
    assert!(flags("GET").contains(CommandFlags::READONLY));
    assert!(flags("BLPOP").contains(CommandFlags::BLOCKING));
    assert!(flags("EVAL").contains(CommandFlags::MOVABLE_KEYS.union(CommandFlags::NOSCRIPT)));
    assert!(flags("SUBSCRIBE").contains(CommandFlags::PUBSUB));
    assert!(flags("SHUTDOWN").contains(CommandFlags::ADMIN));
    assert!(!flags("DEL").contains(CommandFlags::DENYOOM));
    assert_eq!(lookup(&args(&["GET"])).map(|c| c.arity()), Some(2));
}

#[test]
fn extract_appends_after_existing_output() {
    let a = args(&["RENAME", "a", "b"]);
    let cmd = lookup(&a).expect("RENAME");
    let mut out = vec![KeyArg {
        index: 7,
        flags: RO,
        kind: ArgKind::Key,
    }];
    extract(cmd, &a, &mut out);
    let indexes: Vec<usize> = out.iter().map(|k| k.index).collect();
    assert_eq!(indexes, [7, 1, 2]);
}

#[test]
fn argument_order_merges_duplicates_in_the_tail_only() {
    let key = |index, flags| KeyArg {
        index,
        flags,
        kind: ArgKind::Key,
    };
    let mut out = vec![
        key(2, RO),
        key(3, KeyFlags::OW),
        key(2, KeyFlags::ACCESS),
        key(1, RO),
    ];
    in_argument_order(&mut out, 1);
    assert_eq!(
        out,
        [
            key(2, RO),
            key(1, RO),
            key(2, KeyFlags::ACCESS),
            key(3, KeyFlags::OW)
        ]
    );
    let mut out = vec![key(3, RO), key(3, KeyFlags::ACCESS)];
    in_argument_order(&mut out, 0);
    assert_eq!(out, [key(3, RO_ACCESS)]);
}

#[test]
fn every_command_survives_short_requests() {
    fn walk(table: &'static [CommandInfo]) {
        for cmd in table {
            let words: Vec<&str> = cmd.name.split(' ').collect();
            for extra in 0..4 {
                let mut req = args(&words);
                req.extend(args(&["1", "k", "STORE", "KEYS"][..extra]));
                let mut out = Vec::new();
                extract(cmd, &req, &mut out);
                assert!(
                    out.iter().all(|k| k.index > 0 && k.index < req.len()),
                    "{}",
                    cmd.name
                );
            }
            extract(cmd, &[], &mut Vec::new());
            walk(cmd.subcommands());
        }
    }
    walk(commands());
}

/// Arguments drawn from keywords the specs and parsers look for, small integers and
/// plain names, so random requests reach every branch.
fn word() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        prop::sample::select(vec![
            "STREAMS",
            "store",
            "STOREDIST",
            "KEYS",
            "BY",
            "get",
            "LIMIT",
            "GROUP",
            "COUNT",
            "AUTH2",
            "SET",
            "#",
            "w_*",
            "0",
            "1",
            "2",
            "3",
            "-1",
            "k",
            "",
        ])
        .prop_map(|w| Bytes::from_static(w.as_bytes())),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(Bytes::from),
    ]
}

proptest! {
    #[test]
    fn extract_never_panics_and_stays_in_bounds(
        which in 0usize..1000,
        sub in 0usize..1000,
        rest in prop::collection::vec(word(), 0..12),
    ) {
        let top = &commands()[which % commands().len()];
        let cmd = match top.subcommands() {
            [] => top,
            subs => &subs[sub % subs.len()],
        };
        let mut req = args(&cmd.name.split(' ').collect::<Vec<_>>());
        req.extend(rest);
        let mut out = Vec::new();
        extract(cmd, &req, &mut out);
        for pair in out.windows(2) {
            prop_assert!(pair[0].index < pair[1].index);
        }
        for k in &out {
            prop_assert!(k.index > 0 && k.index < req.len());
        }
    }
}

#[test]
fn every_top_level_command_is_found_by_its_name_in_any_case() {
    for cmd in crate::keys::commands() {
        for name in [cmd.name.to_owned(), cmd.name.to_ascii_lowercase()] {
            let found = crate::keys::lookup(&[bytes::Bytes::from(name.clone())]);
            assert!(
                found.is_some_and(|f| std::ptr::eq(f, cmd)),
                "{name} not found"
            );
        }
    }
    assert!(crate::keys::lookup(&[bytes::Bytes::from_static(b"GET\0")]).is_none());
    assert!(crate::keys::lookup(&[bytes::Bytes::from_static(b"GE")]).is_none());
}
