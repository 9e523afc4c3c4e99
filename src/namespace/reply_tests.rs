//! Tests of the reply rewrites: every key-carrying reply shape in RESP2 and RESP3, EXEC
//! fixing, keyspace-notification mapping, and property tests that the frame tree is lossless.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::config::{Degrade, FlushMode, NamespaceConfig};

const DB: u32 = 3;

fn ns(prefix: &str) -> Namespace {
    Namespace::new(NamespaceConfig {
        name: "session".into(),
        prefix: prefix.into(),
        db: Some(DB),
        cache: false,
        flush: FlushMode::Deny,
        default_ttl: None,
        max_ttl: None,
        require_ttl: false,
        degrade: Degrade::Fail,
        touch_on_read: None,
        touch_interval: None,
        must_not_evict: false,
    })
}

/// Frames are written with `/` for CRLF to keep them readable (binary keys use byte strings).
fn f(text: &str) -> Bytes {
    Bytes::from(text.replace('/', "\r\n"))
}

fn strip_s(kind: KeyReply, frame: &str) -> Bytes {
    strip_keys(kind, &f(frame), b"s:")
}

/// `out` is `frame` itself, not a copy.
fn same(out: &Bytes, frame: &Bytes) -> bool {
    out.as_ptr() == frame.as_ptr() && out.len() == frame.len()
}

fn assert_unchanged(kind: KeyReply, frame: &str) {
    let frame = f(frame);
    assert!(same(&strip_keys(kind, &frame, b"s:"), &frame), "{frame:?}");
}

#[test]
fn tree_reads_and_writes_every_type_back_unchanged() {
    for text in [
        "+OK/",
        "-ERR no/",
        ":-42/",
        "_/",
        "$-1/",
        "*-1/",
        "$0//",
        ",1.5/",
        ",inf/",
        "#t/",
        "(3492890328409238509324850943850943825024385/",
        "!21/SYNTAX invalid syntax/",
        "=15/txt:Some string/",
        "*0/",
        "*3/:1/$3/foo/*2/+a/_/",
        "~2/$1/a/$1/b/",
        ">3/$7/message/$2/ch/$2/hi/",
        "%2/$1/k/:1/$2/k2/*1/,2/",
        "|1/+ttl/:3/$3/val/",
        "*2/|1/+a/+b/:1/$1/x/",
        "|1/+a/+b/|0/*0/",
    ] {
        let frame = f(text);
        let tree = Node::parse(&frame).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(tree.emit(0), frame, "{text}");
    }
}

#[test]
fn tree_refuses_malformed_frames_without_panicking() {
    for text in [
        "",
        "/",
        "\n",
        "+\n",
        "+OK",
        "+OK\n",
        "$5/ab/",
        "$2/abcd",
        "$-2/",
        "!-1/",
        "%-1/",
        "$?/;3/abc/;0/",
        "*?/:1/./",
        "*2/:1/",
        "*01/:1/",
        ":1/:2/",
        "?what/",
        "*9223372036854775807/",
        "%4611686018427387904/",
        "$9223372036854775807/x/",
        "|1/+a/+b/",
        "|",
    ] {
        assert_eq!(Node::parse(&f(text)), None, "{text:?}");
    }
}

#[test]
fn tree_depth_is_bounded() {
    let nested = |depth: usize| f(&format!("{}:1/", "*1/".repeat(depth)));
    assert!(Node::parse(&nested(MAX_DEPTH)).is_some());
    assert_eq!(Node::parse(&nested(MAX_DEPTH + 1)), None);
    let attributes = f(&format!("{}:1/", "|0/".repeat(MAX_DEPTH + 1)));
    assert_eq!(Node::parse(&attributes), None);
    // Too deep to read means passed on unchanged.
    let frame = nested(100_000);
    assert!(same(&strip_keys(KeyReply::Keys, &frame, b"s:"), &frame));
}

#[test]
fn keys_lose_the_prefix_in_arrays_and_sets() {
    assert_eq!(
        strip_s(KeyReply::Keys, "*3/$5/s:foo/$3/bar/$2/s:/"),
        f("*3/$3/foo/$3/bar/$0//")
    );
    assert_eq!(
        strip_s(KeyReply::Keys, "~2/$3/s:a/$3/s:b/"),
        f("~2/$1/a/$1/b/")
    );
    assert_unchanged(KeyReply::Keys, "*0/");
    assert_unchanged(KeyReply::Keys, "*2/$3/foo/$1/s/");
    assert_unchanged(KeyReply::Keys, "-ERR KEYS is disabled/");
    assert_unchanged(KeyReply::Keys, "$5/s:foo/");
    assert_unchanged(KeyReply::Keys, "%1/$3/s:a/$3/s:b/");
}

#[test]
fn binary_keys_keep_their_bytes() {
    let frame = Bytes::from_static(b"*2\r\n$7\r\ns:a\r\nb\n\r\n$4\r\n\r\ns:\r\n");
    assert_eq!(
        strip_keys(KeyReply::Keys, &frame, b"s:"),
        Bytes::from_static(b"*2\r\n$5\r\na\r\nb\n\r\n$4\r\n\r\ns:\r\n")
    );
    let prefix = b"\r\n\x00:";
    let frame = Bytes::from_static(b"$6\r\n\r\n\x00:\xff\n\r\n");
    assert_eq!(
        strip_keys(KeyReply::Key, &frame, prefix),
        Bytes::from_static(b"$2\r\n\xff\n\r\n")
    );
}

#[test]
fn an_attribute_before_the_reply_survives() {
    assert_eq!(
        strip_s(KeyReply::Keys, "|1/+popular/$4/s:aa/*1/$5/s:foo/"),
        f("|1/+popular/$4/s:aa/*1/$3/foo/")
    );
    assert_eq!(
        strip_s(KeyReply::Keys, "*2/|1/+a/+b/$3/s:x/$3/s:y/"),
        f("*2/|1/+a/+b/$1/x/$1/y/")
    );
}

#[test]
fn large_key_lists() {
    let count = 10_000;
    let keys: String = (0..count).map(|i| format!("$6/s:{i:04}/")).collect();
    let stripped: String = (0..count).map(|i| format!("$4/{i:04}/")).collect();
    assert_eq!(
        strip_s(KeyReply::Keys, &format!("*{count}/{keys}")),
        f(&format!("*{count}/{stripped}"))
    );
    assert_eq!(
        strip_s(KeyReply::Scan, &format!("*2/$3/170/*{count}/{keys}")),
        f(&format!("*2/$3/170/*{count}/{stripped}"))
    );
}

#[test]
fn scan_strips_the_keys_and_not_the_cursor() {
    assert_eq!(
        strip_s(KeyReply::Scan, "*2/$3/s:1/*2/$5/s:foo/$3/bar/"),
        f("*2/$3/s:1/*2/$3/foo/$3/bar/")
    );
    assert_eq!(
        strip_s(KeyReply::Scan, "*2/$1/0/~1/$3/s:k/"),
        f("*2/$1/0/~1/$1/k/")
    );
    assert_unchanged(KeyReply::Scan, "*2/$1/0/*0/");
    assert_unchanged(KeyReply::Scan, "*3/$1/0/*1/$3/s:k/:1/");
    assert_unchanged(KeyReply::Scan, "*1/*1/$3/s:k/");
    assert_unchanged(KeyReply::Scan, "-ERR invalid cursor/");
}

#[test]
fn randomkey() {
    assert_eq!(strip_s(KeyReply::Key, "$5/s:foo/"), f("$3/foo/"));
    assert_eq!(strip_s(KeyReply::Key, "$2/s:/"), f("$0//"));
    assert_unchanged(KeyReply::Key, "$3/foo/");
    assert_unchanged(KeyReply::Key, "$-1/");
    assert_unchanged(KeyReply::Key, "_/");
    assert_unchanged(KeyReply::Key, "+s:foo/");
    assert_unchanged(KeyReply::Key, "-ERR s:foo/");
}

#[test]
fn blocking_pops_strip_only_the_key() {
    assert_eq!(
        strip_s(KeyReply::PopKey, "*2/$6/s:list/$3/s:v/"),
        f("*2/$4/list/$3/s:v/")
    );
    // BZPOPMIN: RESP2 score as bulk, RESP3 as a double.
    assert_eq!(
        strip_s(KeyReply::PopKey, "*3/$4/s:zs/$3/s:m/$3/1.5/"),
        f("*3/$2/zs/$3/s:m/$3/1.5/")
    );
    assert_eq!(
        strip_s(KeyReply::PopKey, "*3/$4/s:zs/$1/m/,1.5/"),
        f("*3/$2/zs/$1/m/,1.5/")
    );
    assert_unchanged(KeyReply::PopKey, "*-1/");
    assert_unchanged(KeyReply::PopKey, "_/");
    assert_unchanged(KeyReply::PopKey, "*1/$4/s:zs/");
    assert_unchanged(KeyReply::PopKey, "-WRONGTYPE Operation against a key/");
}

#[test]
fn multi_pops_strip_only_the_key() {
    assert_eq!(
        strip_s(KeyReply::MPop, "*2/$3/s:l/*2/$3/s:a/$1/b/"),
        f("*2/$1/l/*2/$3/s:a/$1/b/")
    );
    assert_eq!(
        strip_s(KeyReply::MPop, "*2/$3/s:z/*1/*2/$1/m/,2/"),
        f("*2/$1/z/*1/*2/$1/m/,2/")
    );
    assert_unchanged(KeyReply::MPop, "*-1/");
    assert_unchanged(KeyReply::MPop, "_/");
    assert_unchanged(KeyReply::MPop, "*3/$3/s:z/*0/:1/");
}

#[test]
fn stream_reads_in_both_protocols() {
    let entries = "*1/*2/$3/1-0/*2/$1/f/$3/s:v/";
    assert_eq!(
        strip_s(
            KeyReply::Streams,
            &format!("*2/*2/$4/s:st/{entries}*2/$4/s:s2/*0/")
        ),
        f(&format!("*2/*2/$2/st/{entries}*2/$2/s2/*0/"))
    );
    assert_eq!(
        strip_s(KeyReply::Streams, &format!("%2/$4/s:st/{entries}$2/s2/*0/")),
        f(&format!("%2/$2/st/{entries}$2/s2/*0/"))
    );
    assert_unchanged(KeyReply::Streams, "*-1/");
    assert_unchanged(KeyReply::Streams, "_/");
    assert_unchanged(KeyReply::Streams, "*1/$4/s:st/");
    assert_unchanged(KeyReply::Streams, "-NOGROUP No such key/");
}

#[test]
fn exec_drops_added_commands_and_strips_key_replies() {
    let fixes = [ExecFix::Drop, ExecFix::Strip(KeyReply::Key), ExecFix::Keep];
    assert_eq!(
        fix_exec(&f("*3/+OK/$5/s:foo/$5/s:bar/"), &fixes, b"s:"),
        f("*2/$3/foo/$5/s:bar/")
    );
    assert_eq!(
        fix_exec(&f("|1/+a/+b/*3/:1/_/,2/"), &fixes, b"s:"),
        f("|1/+a/+b/*2/_/,2/")
    );
    assert_eq!(
        fix_exec(&f("*2/:1/:1/"), &[ExecFix::Drop, ExecFix::Drop], b"s:"),
        f("*0/")
    );
    let strip_err = [ExecFix::Strip(KeyReply::Scan)];
    let frame = f("*1/-ERR invalid cursor/");
    assert!(same(&fix_exec(&frame, &strip_err, b"s:"), &frame));
}

#[test]
fn exec_replies_left_alone() {
    let fixes = [ExecFix::Drop, ExecFix::Keep];
    for text in [
        "*-1/",
        "_/",
        "-EXECABORT Transaction discarded/",
        "*1/+OK/",
        "*3/+OK/+OK/+OK/",
        "%1/+a/+b/",
        "*2/+OK",
    ] {
        let frame = f(text);
        assert!(same(&fix_exec(&frame, &fixes, b"s:"), &frame), "{text}");
    }
    let frame = f("*2/$3/s:a/:1/");
    let keep = [ExecFix::Keep, ExecFix::Strip(KeyReply::Key)];
    assert!(same(&fix_exec(&frame, &keep, b"s:"), &frame));
}

#[test]
fn channels_map_to_db_0_and_back() {
    let ns = ns("s:");
    let cases: [(&[u8], &[u8]); 4] = [
        (b"__keyspace@3__:foo", b"__keyspace@0__:s:foo"),
        (b"__keyspace@3__:", b"__keyspace@0__:s:"),
        (b"__keyevent@3__:del", b"__keyevent@0__:del"),
        (b"__keyspace@3__:a\r\nb*", b"__keyspace@0__:s:a\r\nb*"),
    ];
    for (client, upstream) in cases {
        assert_eq!(
            channel_to_upstream(client, DB, &ns).as_deref(),
            Some(upstream)
        );
        assert_eq!(
            channel_from_upstream(upstream, DB, &ns).as_deref(),
            Some(client)
        );
    }
    for other in [
        &b"news"[..],
        b"__keyspace@0__:foo",
        b"__keyspace@30__:foo",
        b"__keyspace@03__:foo",
        b"__keyspace@3_:foo",
        b"__keyspace@__:foo",
        b"__Keyspace@3__:foo",
        b"__keyevent@-3__:del",
    ] {
        assert_eq!(channel_to_upstream(other, DB, &ns), None, "{other:?}");
    }
    assert_eq!(
        channel_from_upstream(b"__keyspace@0__:x:foo", DB, &ns),
        None
    );
    assert_eq!(
        channel_from_upstream(b"__keyspace@3__:s:foo", DB, &ns),
        None
    );
    assert_eq!(channel_from_upstream(b"news", DB, &ns), None);
}

#[test]
fn patterns_scope_the_escaped_prefix() {
    let ns = ns("s*[1]:");
    let cases: [(&[u8], &[u8]); 3] = [
        (b"__keyspace@3__:*", b"__keyspace@0__:s\\*\\[1\\]:*"),
        (
            b"__keyspace@3__:user:?",
            b"__keyspace@0__:s\\*\\[1\\]:user:?",
        ),
        (b"__keyevent@3__:*", b"__keyevent@0__:*"),
    ];
    for (client, upstream) in cases {
        assert_eq!(
            pattern_to_upstream(client, DB, &ns).as_deref(),
            Some(upstream)
        );
        assert_eq!(
            pattern_from_upstream(upstream, DB, &ns).as_deref(),
            Some(client)
        );
    }
    for other in [
        &b"__key*@3__:*"[..],
        b"__keyspace@[3]__:*",
        b"*",
        b"__keyspace@*",
    ] {
        assert_eq!(pattern_to_upstream(other, DB, &ns), None, "{other:?}");
    }
    assert_eq!(
        pattern_from_upstream(b"__keyspace@0__:s*[1]:*", DB, &ns),
        None
    );
}

/// Subscribed through the mapping: the keyspace/keyevent names of db 0.
fn via_mapping(name: &[u8]) -> bool {
    name.starts_with(b"__key")
}

fn pubsub(frame: &str) -> Option<Bytes> {
    pubsub_from_upstream(&f(frame), DB, &ns("s:"), &via_mapping)
}

#[test]
fn keyspace_messages_map_the_channel_back() {
    assert_eq!(
        pubsub("*3/$7/message/$20/__keyspace@0__:s:foo/$3/set/"),
        Some(f("*3/$7/message/$18/__keyspace@3__:foo/$3/set/"))
    );
    assert_eq!(
        pubsub(">3/$7/message/$20/__keyspace@0__:s:foo/$3/set/"),
        Some(f(">3/$7/message/$18/__keyspace@3__:foo/$3/set/"))
    );
    assert_eq!(
        pubsub("|1/+a/+b/>3/$8/smessage/$20/__keyspace@0__:s:foo/$3/set/"),
        Some(f("|1/+a/+b/>3/$8/smessage/$18/__keyspace@3__:foo/$3/set/"))
    );
    assert_eq!(
        pubsub("*4/$8/pmessage/$18/__keyspace@0__:s:*/$20/__keyspace@0__:s:foo/$3/del/"),
        Some(f(
            "*4/$8/pmessage/$16/__keyspace@3__:*/$18/__keyspace@3__:foo/$3/del/"
        ))
    );
}

#[test]
fn keyevent_messages_strip_the_key_or_are_dropped() {
    assert_eq!(
        pubsub("*3/$7/message/$18/__keyevent@0__:del/$5/s:foo/"),
        Some(f("*3/$7/message/$18/__keyevent@3__:del/$3/foo/"))
    );
    assert_eq!(
        pubsub(">4/$8/pmessage/$16/__keyevent@0__:*/$22/__keyevent@0__:expired/$6/s:a/b/"),
        Some(f(
            ">4/$8/pmessage/$16/__keyevent@3__:*/$22/__keyevent@3__:expired/$4/a/b/"
        ))
    );
    assert_eq!(
        pubsub("*3/$7/message/$18/__keyevent@0__:del/$5/x:foo/"),
        None
    );
    assert_eq!(
        pubsub("*4/$8/pmessage/$16/__keyevent@0__:*/$18/__keyevent@0__:del/$3/foo/"),
        None
    );
    assert_eq!(pubsub("*3/$7/message/$18/__keyevent@0__:del/:1/"), None);
    // Subscribed through the mapping yet naming a key outside the namespace: not the
    // client's to see.
    assert_eq!(
        pubsub("*3/$7/message/$20/__keyspace@0__:x:foo/$3/set/"),
        None
    );
}

#[test]
fn subscription_confirmations_map_back() {
    for kind in ["subscribe", "unsubscribe", "ssubscribe", "sunsubscribe"] {
        let len = kind.len();
        assert_eq!(
            pubsub(&format!("*3/${len}/{kind}/$20/__keyspace@0__:s:foo/:1/")),
            Some(f(&format!("*3/${len}/{kind}/$18/__keyspace@3__:foo/:1/")))
        );
    }
    for kind in ["psubscribe", "punsubscribe"] {
        let len = kind.len();
        assert_eq!(
            pubsub(&format!(">3/${len}/{kind}/$18/__keyspace@0__:s:*/:2/")),
            Some(f(&format!(">3/${len}/{kind}/$16/__keyspace@3__:*/:2/")))
        );
    }
}

#[test]
fn other_pubsub_frames_pass_unchanged() {
    for text in [
        "*3/$7/message/$4/news/$5/s:foo/",
        "*3/$11/unsubscribe/$-1/:0/",
        "*3/$9/subscribe/$4/news/:1/",
        "*3/$7/message/$4/news/$5/s:foo/",
        ">2/$10/invalidate/*1/$5/s:foo/",
        "*2/$4/pong/$0//",
        "*3/$7/unknown/$20/__keyspace@0__:s:foo/:1/",
        "*3/+message/$20/__keyspace@0__:s:foo/$3/set/",
        "*3/$7/MESSAGE/$20/__keyspace@0__:s:foo/$3/set/",
        "~3/$9/subscribe/$20/__keyspace@0__:s:foo/:1/",
        "+OK/",
        "*3/$7/message/$2",
    ] {
        let frame = f(text);
        let out = pubsub_from_upstream(&frame, DB, &ns("s:"), &via_mapping);
        assert!(out.is_some_and(|out| same(&out, &frame)), "{text}");
    }
    // Not subscribed through the mapping: a raw db-0 subscription is the client's own.
    let frame = f("*3/$7/message/$18/__keyevent@0__:del/$5/x:foo/");
    let out = pubsub_from_upstream(&frame, DB, &ns("s:"), &|_: &[u8]| false);
    assert!(out.is_some_and(|out| same(&out, &frame)));
}

/// Bytes that can sit in a one-line value (no CR or LF).
fn line() -> impl Strategy<Value = Vec<u8>> {
    vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..12,
    )
}

fn blob(kind: &str, data: &[u8]) -> Vec<u8> {
    [
        format!("{kind}{}\r\n", data.len()).as_bytes(),
        data,
        b"\r\n",
    ]
    .concat()
}

fn aggregate(kind: &str, count: usize, items: Vec<Vec<u8>>) -> Vec<u8> {
    [format!("{kind}{count}\r\n").into_bytes(), items.concat()].concat()
}

/// Any RESP2 or RESP3 frame Redis may send, attributes included.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        line().prop_map(|l| [b"+", &l[..], b"\r\n"].concat()),
        line().prop_map(|l| [b"-", &l[..], b"\r\n"].concat()),
        any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
        any::<f64>().prop_map(|d| format!(",{d}\r\n").into_bytes()),
        "[0-9]{1,40}".prop_map(|n| format!("({n}\r\n").into_bytes()),
        prop_oneof![Just("_"), Just("$-1"), Just("*-1"), Just("#t"), Just("#f")]
            .prop_map(|s| format!("{s}\r\n").into_bytes()),
        vec(any::<u8>(), 0..24).prop_map(|d| blob("$", &d)),
        vec(any::<u8>(), 0..24).prop_map(|d| blob("!", &d)),
        vec(any::<u8>(), 0..24).prop_map(|d| blob("=", &[b"txt:", &d[..]].concat())),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            (
                prop_oneof![Just("*"), Just("~"), Just(">")],
                vec(inner.clone(), 0..8)
            )
                .prop_map(|(kind, items)| aggregate(kind, items.len(), items)),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(|pairs| {
                let count = pairs.len();
                let flat = pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
                aggregate("%", count, flat)
            }),
            (vec((inner.clone(), inner.clone()), 0..3), inner).prop_map(|(pairs, value)| {
                let count = pairs.len();
                let flat = pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
                [aggregate("|", count, flat), value].concat()
            }),
        ]
    })
}

fn key_reply() -> impl Strategy<Value = KeyReply> {
    prop_oneof![
        Just(KeyReply::Keys),
        Just(KeyReply::Scan),
        Just(KeyReply::Key),
        Just(KeyReply::PopKey),
        Just(KeyReply::MPop),
        Just(KeyReply::Streams),
    ]
}

proptest! {
    #[test]
    fn tree_round_trip_is_byte_identical(bytes in frame()) {
        let frame = Bytes::from(bytes);
        let tree = Node::parse(&frame);
        prop_assert!(tree.is_some());
        prop_assert_eq!(tree.map(|t| t.emit(0)), Some(frame));
    }

    #[test]
    fn rewrites_of_any_frame_stay_well_formed(
        bytes in frame(),
        kind in key_reply(),
        cut in any::<prop::sample::Index>(),
    ) {
        let frame = Bytes::from(bytes);
        for prefix in [&b""[..], b"s:", b"\x00"] {
            let out = strip_keys(kind, &frame, prefix);
            prop_assert!(Node::parse(&out).is_some());
            let out = fix_exec(&frame, &[ExecFix::Drop, ExecFix::Strip(kind)], prefix);
            prop_assert!(Node::parse(&out).is_some());
        }
        let out = pubsub_from_upstream(&frame, DB, &ns("s:"), &|_: &[u8]| true);
        prop_assert!(out.map_or(true, |out| Node::parse(&out).is_some()));
        // A truncated frame is not read, and so passed on as it is.
        let short = frame.slice(..cut.index(frame.len()));
        prop_assert!(same(&strip_keys(kind, &short, b"s:"), &short));
    }

    #[test]
    fn keys_strip_like_the_model(
        keys in vec(vec(any::<u8>(), 0..8), 0..40),
        prefix in vec(any::<u8>(), 1..3),
    ) {
        let keys: Vec<Vec<u8>> = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| if i % 2 == 0 { [&prefix[..], &k[..]].concat() } else { k })
            .collect();
        let frame = |keys: &[Vec<u8>]| {
            Bytes::from(aggregate("*", keys.len(), keys.iter().map(|k| blob("$", k)).collect()))
        };
        let expected: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| k.strip_prefix(&prefix[..]).unwrap_or(k).to_vec())
            .collect();
        prop_assert_eq!(strip_keys(KeyReply::Keys, &frame(&keys), &prefix), frame(&expected));
    }

    #[test]
    fn channel_round_trip_is_identity(
        keyspace in any::<bool>(),
        rest in vec(any::<u8>(), 0..16),
        db in any::<u32>(),
        prefix in "[ -~]{0,6}",
    ) {
        let ns = ns(&prefix);
        let family = if keyspace { Family::Keyspace } else { Family::Keyevent };
        let client = join_channel(family, db, &[&rest]);
        let upstream = channel_to_upstream(&client, db, &ns);
        prop_assert!(upstream.is_some());
        let back = upstream.as_deref().and_then(|up| channel_from_upstream(up, db, &ns));
        prop_assert_eq!(back, Some(client.clone()));
        let upstream = pattern_to_upstream(&client, db, &ns);
        let back = upstream.as_deref().and_then(|up| pattern_from_upstream(up, db, &ns));
        prop_assert_eq!(back, Some(client));
    }
}
