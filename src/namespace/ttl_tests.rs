use std::sync::Arc;
use std::thread;

use proptest::prelude::*;

use super::*;
use crate::config::{Degrade, FlushMode, NamespaceConfig};

/// A fixed wall clock, so absolute expiry times are exact.
const NOW_MS: i64 = 1_700_000_000_123;
const HOUR_MS: i64 = 3_600_000;

const WRITE: CommandFlags = CommandFlags::WRITE.union(CommandFlags::DENYOOM);
const PLAIN_WRITE: CommandFlags = CommandFlags::WRITE;
const READ: CommandFlags = CommandFlags::READONLY;
const RW: KeyFlags = KeyFlags::RW.union(KeyFlags::UPDATE);
const OW: KeyFlags = KeyFlags::OW.union(KeyFlags::UPDATE);
const RO: KeyFlags = KeyFlags::RO.union(KeyFlags::ACCESS);

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_MS as u64)
}

/// The one place a table entry is built by hand: the rules read only name and flags.
fn command(name: &str, flags: CommandFlags) -> CommandInfo {
    CommandInfo::for_tests(Box::leak(name.to_owned().into_boxed_str()), flags)
}

fn namespace(name: &str, rules: impl FnOnce(&mut NamespaceConfig)) -> Namespace {
    let mut config = NamespaceConfig {
        name: name.to_owned(),
        prefix: format!("{name}:"),
        db: None,
        cache: false,
        flush: FlushMode::Deny,
        default_ttl: None,
        max_ttl: None,
        require_ttl: false,
        degrade: Degrade::Fail,
        touch_on_read: None,
        touch_interval: None,
        must_not_evict: false,
    };
    rules(&mut config);
    Namespace::new(config)
}

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

fn session() -> Namespace {
    namespace("session", |c| c.default_ttl = secs(60))
}

fn lock() -> Namespace {
    namespace("lock", |c| {
        c.require_ttl = true;
        c.max_ttl = secs(300);
    })
}

fn capped() -> Namespace {
    namespace("cap", |c| c.max_ttl = secs(3600))
}

fn bytes(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn text(args: &[Bytes]) -> Vec<String> {
    args.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Plan `words` (command name first) with the keys at `key_at` in `ns`.
fn plan_in(
    ns: &Namespace,
    flags: CommandFlags,
    words: &[&str],
    key_at: &[(usize, KeyFlags)],
) -> Result<TtlPlan, String> {
    let touch = TouchThrottle::new(64);
    plan_with(&touch, Instant::now(), &[ns], flags, words, key_at)
}

/// Like [`plan_in`], with the i-th key in `spaces[i]` (or the last one) and a given throttle.
fn plan_with(
    touch: &TouchThrottle,
    mono: Instant,
    spaces: &[&Namespace],
    flags: CommandFlags,
    words: &[&str],
    key_at: &[(usize, KeyFlags)],
) -> Result<TtlPlan, String> {
    let cmd = command(&words[0].to_ascii_uppercase(), flags);
    let args = bytes(words);
    let keys: Vec<(KeyArg, &Namespace)> = key_at
        .iter()
        .enumerate()
        .map(|(i, &(index, flags))| {
            let arg = KeyArg {
                index,
                flags,
                kind: ArgKind::Key,
            };
            (arg, spaces[i.min(spaces.len() - 1)])
        })
        .collect();
    plan(&cmd, &args, &keys, touch, now(), mono)
}

/// The rewritten request of a plan that must have one.
fn rewritten(plan: &TtlPlan) -> Vec<String> {
    text(plan.args.as_deref().expect("the request is rewritten"))
}

fn follow_ups(plan: &TtlPlan) -> Vec<Vec<String>> {
    plan.follow_ups.iter().map(|f| text(f)).collect()
}

fn set(ns: &Namespace, words: &[&str]) -> Result<TtlPlan, String> {
    plan_in(ns, WRITE, words, &[(1, OW)])
}

fn on_key(ns: &Namespace, words: &[&str]) -> Result<TtlPlan, String> {
    plan_in(ns, PLAIN_WRITE, words, &[(1, RW)])
}

#[test]
fn nothing_applies_without_namespaced_keys() {
    let plan = plan_in(&session(), WRITE, &["SET", "k", "v"], &[]).unwrap();
    assert!(plan.is_unchanged());
}

#[test]
fn common_path_does_not_allocate() {
    // A read in a namespace without sliding expiry, a write with nothing to add.
    let read = plan_in(&session(), READ, &["GET", "session:a"], &[(1, RO)]).unwrap();
    let del = plan_in(
        &session(),
        PLAIN_WRITE,
        &["DEL", "session:a"],
        &[(1, KeyFlags::RM)],
    );
    let within = set(&capped(), &["SET", "cap:a", "v", "EX", "60"]).unwrap();
    for plan in [read, del.unwrap(), within] {
        assert_eq!(plan, TtlPlan::unchanged());
        assert_eq!(plan.follow_ups.capacity(), 0);
    }
}

#[test]
fn set_without_expiry_gets_the_default() {
    let plan = set(&session(), &["SET", "session:a", "v", "NX", "GET"]).unwrap();
    assert_eq!(
        rewritten(&plan),
        ["SET", "session:a", "v", "NX", "GET", "PX", "60000"]
    );
    assert!(plan.follow_ups.is_empty());
}

#[test]
fn set_value_spelled_like_an_option_is_a_value() {
    for value in ["EX", "px", "KEEPTTL"] {
        let plan = set(&session(), &["SET", "session:a", value]).unwrap();
        assert_eq!(rewritten(&plan), ["SET", "session:a", value, "PX", "60000"]);
    }
    // "EX" as the value, then a real option.
    let plan = set(&session(), &["SET", "session:a", "EX", "ex", "5"]).unwrap();
    assert!(plan.is_unchanged());
}

#[test]
fn set_with_expiry_keeps_it_in_any_case() {
    for opt in ["EX", "ex", "Px", "exat", "PXAT"] {
        let plan = set(&session(), &["SET", "session:a", "v", opt, "1800000000000"]).unwrap();
        assert!(plan.is_unchanged(), "{opt}");
    }
}

#[test]
fn set_keepttl_gets_a_follow_up_not_px() {
    let plan = set(&session(), &["SET", "session:a", "v", "keepttl"]).unwrap();
    assert!(plan.args.is_none());
    assert_eq!(follow_ups(&plan), [["PEXPIRE", "session:a", "60000", "NX"]]);
}

#[test]
fn set_under_require_ttl_is_refused_without_expiry() {
    let err = set(&lock(), &["SET", "lock:a", "v", "NX"]).unwrap_err();
    assert_eq!(
        err,
        "SET without EX/PX/EXAT/PXAT in namespace 'lock' (require_ttl): add EX or PX"
    );
    let err = set(&lock(), &["SET", "lock:a", "v", "KeepTTL"]).unwrap_err();
    assert_eq!(
        err,
        "SET with KEEPTTL in namespace 'lock' (require_ttl): \
         KEEPTTL can create a key without TTL; use EX or PX"
    );
    assert!(set(&lock(), &["SET", "lock:a", "v", "NX", "px", "30000"])
        .unwrap()
        .is_unchanged());
}

#[test]
fn require_ttl_wins_over_default_ttl() {
    let both = namespace("lock", |c| {
        c.require_ttl = true;
        c.default_ttl = secs(60);
    });
    assert!(set(&both, &["SET", "lock:a", "v"]).is_err());
    // Other writes still get the default.
    let plan = plan_in(&both, WRITE, &["HSET", "lock:a", "f", "v"], &[(1, RW)]).unwrap();
    assert_eq!(follow_ups(&plan), [["PEXPIRE", "lock:a", "60000", "NX"]]);
}

#[test]
fn set_relative_expiry_is_clamped() {
    let cases = [
        (["EX", "7200"], ["EX", "3600"]),
        (["ex", "3601"], ["ex", "3600"]),
        (["PX", "3600001"], ["PX", "3600000"]),
        (["px", "99999999999999999"], ["px", "3600000"]),
    ];
    for (asked, capped_to) in cases {
        let plan = set(&capped(), &["SET", "cap:a", "v", asked[0], asked[1]]).unwrap();
        let want = ["SET", "cap:a", "v", capped_to[0], capped_to[1]];
        assert_eq!(rewritten(&plan), want);
    }
    for within in [["EX", "3600"], ["PX", "3600000"], ["EX", "1"]] {
        let plan = set(&capped(), &["SET", "cap:a", "v", within[0], within[1]]).unwrap();
        assert!(plan.is_unchanged(), "{within:?}");
    }
}

#[test]
fn clamping_seconds_to_a_cap_of_milliseconds_switches_to_px() {
    let ns = namespace("cap", |c| c.max_ttl = Some(Duration::from_millis(1500)));
    let plan = set(&ns, &["SET", "cap:a", "v", "EX", "2"]).unwrap();
    assert_eq!(rewritten(&plan), ["SET", "cap:a", "v", "PX", "1500"]);
    let plan = on_key(&ns, &["SETEX", "cap:a", "2", "v"]).unwrap();
    assert_eq!(rewritten(&plan), ["PSETEX", "cap:a", "1500", "v"]);
    let plan = on_key(&ns, &["EXPIRE", "cap:a", "2", "GT"]).unwrap();
    assert_eq!(rewritten(&plan), ["PEXPIRE", "cap:a", "1500", "GT"]);
}

#[test]
fn set_absolute_expiry_is_clamped_to_now_plus_max() {
    let limit = (NOW_MS + HOUR_MS).to_string();
    let far_s = (NOW_MS / 1000 + 7200).to_string();
    let far_ms = (NOW_MS + HOUR_MS + 1).to_string();
    for (opt, value) in [("EXAT", &far_s), ("exat", &far_s), ("PXAT", &far_ms)] {
        let plan = set(&capped(), &["SET", "cap:a", "v", "XX", opt, value, "GET"]).unwrap();
        assert_eq!(
            rewritten(&plan),
            ["SET", "cap:a", "v", "XX", "PXAT", &limit, "GET"]
        );
    }
    let near_s = (NOW_MS / 1000 + 3600).to_string();
    assert!(set(&capped(), &["SET", "cap:a", "v", "EXAT", &near_s])
        .unwrap()
        .is_unchanged());
    let exact = (NOW_MS + HOUR_MS).to_string();
    assert!(set(&capped(), &["SET", "cap:a", "v", "PXAT", &exact])
        .unwrap()
        .is_unchanged());
}

#[test]
fn numbers_redis_refuses_are_left_to_redis() {
    for value in [
        "0",
        "-5",
        "abc",
        "010",
        "+7200",
        " 7200",
        "7200 ",
        "",
        "99999999999999999999",
    ] {
        let plan = set(&capped(), &["SET", "cap:a", "v", "EX", value]).unwrap();
        assert!(plan.is_unchanged(), "{value:?}");
        let plan = on_key(&capped(), &["EXPIRE", "cap:a", value]).unwrap();
        assert!(plan.is_unchanged(), "{value:?}");
    }
}

#[test]
fn option_names_end_at_a_nul_byte_as_in_redis() {
    let plan = set(&capped(), &["SET", "cap:a", "v", "EX\0junk", "7200"]).unwrap();
    assert_eq!(rewritten(&plan), ["SET", "cap:a", "v", "EX\0junk", "3600"]);
    assert!(set(&lock(), &["SET", "lock:a", "v", "px\0", "100"])
        .unwrap()
        .is_unchanged());
}

#[test]
fn setex_and_psetex_are_clamped() {
    let plan = on_key(&capped(), &["SETEX", "cap:a", "86400", "v"]).unwrap();
    assert_eq!(rewritten(&plan), ["SETEX", "cap:a", "3600", "v"]);
    let plan = on_key(&capped(), &["psetex", "cap:a", "3600001", "v"]).unwrap();
    assert_eq!(rewritten(&plan), ["psetex", "cap:a", "3600000", "v"]);
    assert!(on_key(&capped(), &["SETEX", "cap:a", "60", "v"])
        .unwrap()
        .is_unchanged());
    // They set a TTL, so require_ttl and default_ttl have nothing to add.
    assert!(on_key(&lock(), &["SETEX", "lock:a", "60", "v"])
        .unwrap()
        .is_unchanged());
    assert!(on_key(&session(), &["SETEX", "session:a", "60", "v"])
        .unwrap()
        .is_unchanged());
}

#[test]
fn writes_that_cannot_carry_a_ttl_are_refused_under_require_ttl() {
    let cases = [
        (vec!["SETNX", "lock:a", "v"], "SETNX in namespace 'lock' (require_ttl): it cannot set a TTL; use SET key value NX PX ms"),
        (vec!["GETSET", "lock:a", "v"], "GETSET in namespace 'lock' (require_ttl): it cannot set a TTL; use SET key value GET PX ms"),
        (vec!["MSET", "lock:a", "1", "lock:b", "2"], "MSET in namespace 'lock' (require_ttl): it cannot set a TTL; use SET key value PX ms for each key"),
        (vec!["MSETNX", "lock:a", "1"], "MSETNX in namespace 'lock' (require_ttl): it cannot set a TTL; use SET key value NX PX ms for each key"),
    ];
    for (words, want) in cases {
        let keys: Vec<(usize, KeyFlags)> = (1..words.len()).step_by(2).map(|i| (i, OW)).collect();
        assert_eq!(plan_in(&lock(), WRITE, &words, &keys).unwrap_err(), want);
    }
}

#[test]
fn writes_that_cannot_carry_a_ttl_get_the_default_as_a_follow_up() {
    for name in ["SETNX", "GETSET"] {
        let plan = set(&session(), &[name, "session:a", "v"]).unwrap();
        assert!(plan.args.is_none());
        assert_eq!(follow_ups(&plan), [["PEXPIRE", "session:a", "60000", "NX"]]);
    }
    let words = ["MSET", "session:a", "1", "session:b", "2", "session:a", "3"];
    let plan = plan_in(&session(), WRITE, &words, &[(1, OW), (3, OW), (5, OW)]).unwrap();
    assert_eq!(
        follow_ups(&plan),
        [
            ["PEXPIRE", "session:a", "60000", "NX"],
            ["PEXPIRE", "session:b", "60000", "NX"]
        ]
    );
}

#[test]
fn a_refusal_in_one_namespace_refuses_the_whole_request() {
    let (s, l) = (session(), lock());
    let touch = TouchThrottle::new(8);
    let words = ["MSET", "session:a", "1", "lock:b", "2"];
    let err = plan_with(
        &touch,
        Instant::now(),
        &[&s, &l],
        WRITE,
        &words,
        &[(1, OW), (3, OW)],
    );
    assert!(err
        .unwrap_err()
        .starts_with("MSET in namespace 'lock' (require_ttl)"));
}

#[test]
fn getex_is_clamped_and_persist_refused_where_a_ttl_is_required_or_capped() {
    let plan = on_key(&capped(), &["GETEX", "cap:a", "ex", "7200"]).unwrap();
    assert_eq!(rewritten(&plan), ["GETEX", "cap:a", "ex", "3600"]);
    assert!(on_key(&capped(), &["GETEX", "cap:a"])
        .unwrap()
        .is_unchanged());
    assert_eq!(
        on_key(&lock(), &["GETEX", "lock:a", "persist"]).unwrap_err(),
        "GETEX with PERSIST in namespace 'lock' (require_ttl): \
         it would leave the key without TTL; use GETEX key PX ms"
    );
    assert_eq!(
        on_key(&capped(), &["GETEX", "cap:a", "PERSIST"]).unwrap_err(),
        "GETEX with PERSIST in namespace 'cap' (max_ttl 3600s): \
         it would lift the TTL cap; use GETEX key PX ms (at most 3600000 ms)"
    );
    assert!(on_key(&session(), &["GETEX", "session:a", "PERSIST"])
        .unwrap()
        .is_unchanged());
}

#[test]
fn expire_family_is_clamped() {
    let limit = (NOW_MS + HOUR_MS).to_string();
    let far_s = (NOW_MS / 1000 + 86_400).to_string();
    let far_ms = (NOW_MS + 86_400_000).to_string();
    let cases = [
        (
            vec!["EXPIRE", "cap:a", "86400", "NX"],
            vec!["EXPIRE", "cap:a", "3600", "NX"],
        ),
        (
            vec!["pexpire", "cap:a", "86400000"],
            vec!["pexpire", "cap:a", "3600000"],
        ),
        (
            vec!["EXPIREAT", "cap:a", &far_s, "gt"],
            vec!["PEXPIREAT", "cap:a", &limit, "gt"],
        ),
        (
            vec!["PEXPIREAT", "cap:a", &far_ms],
            vec!["PEXPIREAT", "cap:a", &limit],
        ),
    ];
    for (asked, want) in cases {
        assert_eq!(rewritten(&on_key(&capped(), &asked).unwrap()), want);
    }
    let past = (NOW_MS / 1000 - 10).to_string();
    for within in [["EXPIRE", "cap:a", "60"], ["EXPIREAT", "cap:a", &past]] {
        assert!(on_key(&capped(), &within).unwrap().is_unchanged());
    }
    // No cap: nothing to do.
    assert!(on_key(&session(), &["EXPIRE", "session:a", "86400"])
        .unwrap()
        .is_unchanged());
}

#[test]
fn persist_is_refused_where_a_ttl_is_required_or_capped() {
    assert_eq!(
        on_key(&lock(), &["PERSIST", "lock:a"]).unwrap_err(),
        "PERSIST in namespace 'lock' (require_ttl): \
         it would leave the key without TTL; set a new TTL with PEXPIRE key ms"
    );
    assert_eq!(
        on_key(&capped(), &["PERSIST", "cap:a"]).unwrap_err(),
        "PERSIST in namespace 'cap' (max_ttl 3600s): \
         it would lift the TTL cap; set a new TTL with PEXPIRE key ms (at most 3600000 ms)"
    );
    assert!(on_key(&session(), &["PERSIST", "session:a"])
        .unwrap()
        .is_unchanged());
}

#[test]
fn restore_gets_the_default_ttl_and_is_clamped() {
    let plan = on_key(
        &session(),
        &["RESTORE", "session:a", "0", "ABSTTL", "REPLACE"],
    )
    .unwrap();
    // The payload that spells ABSTTL is not the option.
    assert_eq!(
        rewritten(&plan),
        ["RESTORE", "session:a", "60000", "ABSTTL", "REPLACE"]
    );
    let words = [
        "RESTORE",
        "session:a",
        "0",
        "blob",
        "idletime",
        "5",
        "absttl",
    ];
    let at = (NOW_MS + 60_000).to_string();
    let want = [
        "RESTORE",
        "session:a",
        &at,
        "blob",
        "idletime",
        "5",
        "absttl",
    ];
    assert_eq!(rewritten(&on_key(&session(), &words).unwrap()), want);

    let plan = on_key(&capped(), &["RESTORE", "cap:a", "7200000", "blob"]).unwrap();
    assert_eq!(rewritten(&plan), ["RESTORE", "cap:a", "3600000", "blob"]);
    let far = (NOW_MS + 2 * HOUR_MS).to_string();
    let plan = on_key(&capped(), &["RESTORE", "cap:a", &far, "blob", "ABSTTL"]).unwrap();
    let limit = (NOW_MS + HOUR_MS).to_string();
    assert_eq!(
        rewritten(&plan),
        ["RESTORE", "cap:a", &limit, "blob", "ABSTTL"]
    );
    assert!(on_key(&capped(), &["RESTORE", "cap:a", "-1", "blob"])
        .unwrap()
        .is_unchanged());

    assert_eq!(
        on_key(&lock(), &["RESTORE", "lock:a", "0", "blob"]).unwrap_err(),
        "RESTORE with TTL 0 in namespace 'lock' (require_ttl): \
         give a TTL in milliseconds (or ABSTTL and a unix time in milliseconds)"
    );
    assert!(on_key(&lock(), &["RESTORE", "lock:a", "5000", "blob"])
        .unwrap()
        .is_unchanged());
}

#[test]
fn writes_that_may_create_keys_get_the_default_as_a_follow_up() {
    let plan = plan_in(
        &session(),
        WRITE,
        &["HSET", "session:a", "f", "v"],
        &[(1, RW)],
    )
    .unwrap();
    assert!(plan.args.is_none());
    assert_eq!(follow_ups(&plan), [["PEXPIRE", "session:a", "60000", "NX"]]);

    // SUNIONSTORE: only the destination is written.
    let words = ["SUNIONSTORE", "session:d", "session:a", "session:b"];
    let plan = plan_in(&session(), WRITE, &words, &[(1, OW), (2, RO), (3, RO)]).unwrap();
    assert_eq!(follow_ups(&plan), [["PEXPIRE", "session:d", "60000", "NX"]]);

    // LMOVE across namespaces: each key with its own namespace's TTL.
    let (s, c) = (session(), capped());
    let touch = TouchThrottle::new(8);
    let words = ["LMOVE", "session:a", "cap:b", "LEFT", "RIGHT"];
    let plan = plan_with(
        &touch,
        Instant::now(),
        &[&s, &c],
        WRITE,
        &words,
        &[(1, RW), (2, RW)],
    );
    assert_eq!(
        follow_ups(&plan.unwrap()),
        [
            ["PEXPIRE", "session:a", "60000", "NX"],
            ["PEXPIRE", "cap:b", "3600000", "NX"]
        ]
    );
}

#[test]
fn writes_without_a_ttl_to_give_pass_unchanged() {
    // require_ttl alone refuses only the SET family and PERSIST.
    let bare_lock = namespace("lock", |c| c.require_ttl = true);
    for (ns, words) in [
        (&bare_lock, ["INCR", "lock:a"]),
        (&session(), ["DEL", "session:a"]),
    ] {
        let flags = if words[0] == "DEL" {
            PLAIN_WRITE
        } else {
            WRITE
        };
        assert!(plan_in(ns, flags, &words, &[(1, RW)])
            .unwrap()
            .is_unchanged());
    }
}

#[test]
fn many_duplicate_keys_give_one_follow_up_each() {
    let mut words = vec!["MSET".to_owned()];
    for i in 0..100 {
        words.extend([format!("session:{}", i % 40), "v".to_owned()]);
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let keys: Vec<(usize, KeyFlags)> = (1..words.len()).step_by(2).map(|i| (i, OW)).collect();
    let plan = plan_in(&session(), WRITE, &words, &keys).unwrap();
    assert_eq!(plan.follow_ups.len(), 40);
    let mut named: Vec<String> = follow_ups(&plan)
        .into_iter()
        .map(|f| f[1].clone())
        .collect();
    named.sort();
    named.dedup();
    assert_eq!(named.len(), 40);
}

fn sliding() -> Namespace {
    namespace("session", |c| {
        c.touch_on_read = secs(1800);
        c.touch_interval = secs(60);
    })
}

#[test]
fn reads_touch_at_most_once_per_interval() {
    let ns = sliding();
    let touch = TouchThrottle::new(64);
    let t0 = Instant::now();
    let get = |at: Instant| plan_with(&touch, at, &[&ns], READ, &["GET", "session:a"], &[(1, RO)]);
    assert_eq!(
        follow_ups(&get(t0).unwrap()),
        [["PEXPIRE", "session:a", "1800000"]]
    );
    assert!(get(t0 + Duration::from_secs(59)).unwrap().is_unchanged());
    assert_eq!(
        get(t0 + Duration::from_secs(60)).unwrap().follow_ups.len(),
        1
    );
}

#[test]
fn touches_are_per_distinct_key_and_capped() {
    let ns = namespace("session", |c| {
        c.touch_on_read = secs(1800);
        c.max_ttl = secs(600);
    });
    let touch = TouchThrottle::new(64);
    let words = ["MGET", "session:a", "session:a", "session:b"];
    let keys = [(1, RO), (2, RO), (3, RO)];
    let plan = plan_with(&touch, Instant::now(), &[&ns], READ, &words, &keys).unwrap();
    assert_eq!(
        follow_ups(&plan),
        [
            ["PEXPIRE", "session:a", "600000"],
            ["PEXPIRE", "session:b", "600000"]
        ]
    );
}

#[test]
fn only_readonly_data_reads_touch() {
    let ns = sliding();
    for (name, flags) in [("TTL", READ), ("OBJECT ENCODING", READ), ("APPEND", WRITE)] {
        let touch = TouchThrottle::new(8);
        let cmd = command(name, flags);
        let args = bytes(&["x", "session:a", "v"]);
        let keys = [(
            KeyArg {
                index: 1,
                flags: RO,
                kind: ArgKind::Key,
            },
            &ns,
        )];
        let plan = plan(&cmd, &args, &keys, &touch, now(), Instant::now()).unwrap();
        assert!(plan.is_unchanged(), "{name}");
    }
}

#[test]
fn malformed_requests_do_not_panic() {
    for words in [
        &["SET", "cap:a"][..],
        &["SET", "cap:a", "v", "EX"],
        &["SETEX", "cap:a"],
        &["EXPIRE", "cap:a"],
        &["RESTORE", "cap:a"],
        &["RESTORE", "cap:a", "0", "blob", "IDLETIME"],
        &["GETEX", "cap:a", "PX"],
    ] {
        let _ = on_key(&capped(), words);
        let _ = on_key(&session(), words);
        // A key index past the end is ignored.
        let _ = plan_in(&session(), WRITE, words, &[(9, RW)]);
    }
}

#[test]
fn throttle_says_due_once_per_interval() {
    let touch = TouchThrottle::new(16);
    let t0 = Instant::now();
    let minute = Duration::from_secs(60);
    assert!(touch.due(b"a", minute, t0));
    assert!(!touch.due(b"a", minute, t0));
    assert!(!touch.due(b"a", minute, t0 + Duration::from_secs(59)));
    assert!(touch.due(b"b", minute, t0));
    assert!(touch.due(b"a", minute, t0 + minute));
    assert!(!touch.due(b"a", minute, t0 + minute));
    assert_eq!(touch.len(), 2);
}

#[test]
fn throttle_memory_is_bounded() {
    for capacity in [1, 3, 100, 1000, 5000] {
        let touch = TouchThrottle::new(capacity);
        let t0 = Instant::now();
        for i in 0..capacity * 10 {
            let key = format!("session:{i}");
            assert!(touch.due(key.as_bytes(), Duration::from_secs(60), t0));
            assert!(touch.len() <= capacity, "{} > {capacity}", touch.len());
        }
        assert!(touch.capacity() <= capacity);
        assert!(
            touch.len() >= touch.capacity() / 2,
            "keeps most of what it may"
        );
    }
    // Nothing tracked, everything due.
    let none = TouchThrottle::new(0);
    assert!(none.due(b"a", Duration::from_secs(60), Instant::now()));
    assert!(none.due(b"a", Duration::from_secs(60), Instant::now()));
    assert!(none.is_empty());
}

#[test]
fn throttle_forgets_what_is_due_before_what_is_not() {
    let touch = TouchThrottle::new(4);
    let t0 = Instant::now();
    let short = Duration::from_secs(1);
    let long = Duration::from_secs(600);
    touch.due(b"fresh", long, t0);
    for key in [b"x1", b"x2", b"x3"] {
        touch.due(key, short, t0);
    }
    // Full; at t0+2s the short entries have come due and are dropped first.
    assert!(touch.due(b"new", long, t0 + Duration::from_secs(2)));
    assert!(!touch.due(b"fresh", long, t0 + Duration::from_secs(2)));
    assert_eq!(touch.len(), 2);
}

#[test]
fn throttle_is_shared_between_threads() {
    let touch = Arc::new(TouchThrottle::new(10_000));
    let t0 = Instant::now();
    let minute = Duration::from_secs(60);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let touch = Arc::clone(&touch);
            thread::spawn(move || {
                (0..2000)
                    .filter(|i| touch.due(format!("k{}", i % 500).as_bytes(), minute, t0))
                    .count()
            })
        })
        .collect();
    let due: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(due, 500, "each key due exactly once across all threads");
    assert_eq!(touch.len(), 500);
}

/// The TTL a request asks for, in milliseconds from now.
fn asked_ms(words: &[String]) -> i128 {
    let value = |i: usize| words[i].parse::<i128>().unwrap();
    let now = i128::from(NOW_MS);
    match words[0].as_str() {
        "SET" => match words[3].as_str() {
            "EX" => value(4) * 1000,
            "PX" => value(4),
            "EXAT" => value(4) * 1000 - now,
            _ => value(4) - now,
        },
        "EXPIRE" | "SETEX" => value(2) * 1000,
        "PEXPIRE" | "PSETEX" | "RESTORE" => value(2),
        "EXPIREAT" => value(2) * 1000 - now,
        _ => value(2) - now,
    }
}

proptest! {
    #[test]
    fn a_clamped_ttl_never_exceeds_max_ttl(
        max_ms in 1i64..10_000_000_000,
        asked in 1i64..i64::MAX,
        form in 0usize..10,
    ) {
        let ns = namespace("cap", |c| c.max_ttl = Some(Duration::from_millis(max_ms as u64)));
        let n = asked.to_string();
        let words: Vec<&str> = match form {
            0 => vec!["SET", "cap:a", "v", "EX", &n],
            1 => vec!["SET", "cap:a", "v", "PX", &n],
            2 => vec!["SET", "cap:a", "v", "EXAT", &n],
            3 => vec!["SET", "cap:a", "v", "PXAT", &n],
            4 => vec!["EXPIRE", "cap:a", &n],
            5 => vec!["PEXPIRE", "cap:a", &n],
            6 => vec!["EXPIREAT", "cap:a", &n],
            7 => vec!["PEXPIREAT", "cap:a", &n],
            8 => vec!["SETEX", "cap:a", &n],
            _ => vec!["RESTORE", "cap:a", &n],
        };
        let plan = set(&ns, &words).unwrap();
        prop_assert!(plan.follow_ups.is_empty());
        let max = i128::from(max_ms);
        match plan.args {
            Some(args) => {
                let after = asked_ms(&text(&args));
                prop_assert!(after <= max, "{:?} -> {} > {}", words, after, max);
                prop_assert!(after > 0);
            }
            None => {
                let before: Vec<String> = words.iter().map(|w| w.to_string()).collect();
                prop_assert!(asked_ms(&before) <= max, "{:?} kept", words);
            }
        }
    }
}
