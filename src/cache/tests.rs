use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;

fn cache() -> Arc<Cache> {
    Arc::new(Cache::new(
        1 << 20,
        Duration::from_secs(60),
        Duration::from_secs(5),
    ))
}

fn key(k: &str) -> Bytes {
    Bytes::copy_from_slice(k.as_bytes())
}

fn value(v: &str) -> Data {
    Data::Str(key(v))
}

/// What an entry holds, as the data a fill stores.
fn owned(d: DataRef<'_>) -> Data {
    match d {
        DataRef::Str(v) => Data::Str(Bytes::copy_from_slice(v)),
        DataRef::Hash(fields) => Data::Hash(fields.to_vec()),
        DataRef::Missing => Data::Missing,
    }
}

fn fresh(c: &Cache, k: &str) -> Option<Data> {
    match c.lookup(k.as_bytes(), false, &Clock::default()) {
        Lookup::Fresh(e) => Some(owned(e.data())),
        _ => None,
    }
}

#[test]
fn nothing_is_filled_or_served_before_the_stream_is_verified() {
    let c = cache();
    assert!(c.begin_fill(vec![key("s:a")]).is_none());
    c.verified();
    let ns = c.stats_for("session");
    let t = c.begin_fill(vec![key("s:a")]).expect("live");
    assert!(c.fill(&t, &key("s:a"), value("1"), -1, &ns));
    assert_eq!(fresh(&c, "s:a"), Some(value("1")));
}

#[test]
fn a_fill_that_races_an_invalidation_is_discarded() {
    let c = cache();
    c.verified();
    let ns = c.stats_for("session");
    let t = c.begin_fill(vec![key("s:a")]).expect("live");
    c.invalidate(&[key("s:a")]);
    assert!(!c.fill(&t, &key("s:a"), value("old"), -1, &ns));
    assert_eq!(fresh(&c, "s:a"), None);
    assert_eq!(ns.fills_discarded.load(Ordering::Relaxed), 1);
    // An invalidation of another key does not spoil it.
    let t = c.begin_fill(vec![key("s:a")]).expect("live");
    c.invalidate(&[key("s:b")]);
    assert!(c.fill(&t, &key("s:a"), value("new"), -1, &ns));
}

#[test]
fn a_later_read_is_not_spoiled_by_an_earlier_invalidation() {
    let c = cache();
    c.verified();
    let ns = c.stats_for("session");
    let first = c.begin_fill(vec![key("s:a")]).expect("live");
    c.invalidate(&[key("s:a")]);
    let second = c.begin_fill(vec![key("s:a")]).expect("live");
    assert!(!c.fill(&first, &key("s:a"), value("old"), -1, &ns));
    assert!(c.fill(&second, &key("s:a"), value("new"), -1, &ns));
    drop(first);
    drop(second);
    assert!(c.lock().inflight.is_empty(), "tickets unmark their keys");
}

#[test]
fn flush_and_loss_discard_every_fill_in_flight_and_every_entry() {
    let c = cache();
    c.verified();
    let ns = c.stats_for("session");
    let t = c.begin_fill(vec![key("s:a")]).expect("live");
    assert!(c.fill(&t, &key("s:a"), value("1"), -1, &ns));
    let t = c.begin_fill(vec![key("s:b")]).expect("live");
    c.flush();
    assert!(!c.fill(&t, &key("s:b"), value("1"), -1, &ns));
    assert_eq!(fresh(&c, "s:a"), None);

    let t = c.begin_fill(vec![key("s:c")]).expect("live");
    assert!(c.fill(&t, &key("s:c"), value("1"), -1, &ns));
    let t = c.begin_fill(vec![key("s:d")]).expect("live");
    c.lost("test".into());
    assert!(!c.fill(&t, &key("s:d"), value("1"), -1, &ns));
    assert_eq!(fresh(&c, "s:c"), None, "unverified entries are never fresh");
}

#[test]
fn stale_entries_only_while_unreachable_within_the_window_and_never_after_reconnect() {
    let c = Arc::new(Cache::new(
        1 << 20,
        Duration::from_secs(60),
        Duration::from_millis(200),
    ));
    c.verified();
    let ns = c.stats_for("session");
    let t = c.begin_fill(vec![key("s:a")]).expect("live");
    assert!(c.fill(&t, &key("s:a"), value("1"), -1, &ns));
    c.lost("disconnected".into());
    assert!(
        matches!(c.lookup(b"s:a", true, &Clock::default()), Lookup::Miss),
        "not known unreachable yet"
    );
    c.unreachable("connect refused".into());
    assert!(matches!(
        c.lookup(b"s:a", true, &Clock::default()),
        Lookup::Stale(_)
    ));
    assert!(
        matches!(c.lookup(b"s:a", false, &Clock::default()), Lookup::Miss),
        "degrade = fail"
    );
    std::thread::sleep(Duration::from_millis(250));
    assert!(
        matches!(c.lookup(b"s:a", true, &Clock::default()), Lookup::Miss),
        "window passed"
    );
    c.verified();
    assert!(matches!(
        c.lookup(b"s:a", true, &Clock::default()),
        Lookup::Miss
    ));
    assert!(c.is_empty_for_tests());
}

#[test]
fn entries_expire_with_the_key_ttl_and_max_ttl() {
    let c = Arc::new(Cache::new(
        1 << 20,
        Duration::from_millis(300),
        Duration::ZERO,
    ));
    c.verified();
    let ns = c.stats_for("session");
    let t = c.begin_fill(vec![key("s:a"), key("s:b")]).expect("live");
    assert!(c.fill(&t, &key("s:a"), value("1"), 50, &ns));
    assert!(c.fill(&t, &key("s:b"), value("1"), -1, &ns));
    assert!(
        !c.fill(&t, &key("s:c"), value("1"), 0, &ns),
        "about to expire"
    );
    assert!(fresh(&c, "s:a").is_some());
    std::thread::sleep(Duration::from_millis(80));
    assert!(fresh(&c, "s:a").is_none(), "outlived the key's TTL");
    assert!(fresh(&c, "s:b").is_some());
    std::thread::sleep(Duration::from_millis(300));
    assert!(fresh(&c, "s:b").is_none(), "outlived cache.max_ttl");
}

#[test]
fn a_fill_counts_the_key_ttl_from_before_the_read_was_sent() {
    let c = cache();
    c.verified();
    let ns = c.stats_for("session");
    let t = c.begin_fill(vec![key("s:a")]).expect("live");
    // The reply took 60 ms to come back: Redis's PTTL of 50 ms may have been read at
    // any point since the ticket was taken, so the key may be gone by now.
    std::thread::sleep(Duration::from_millis(60));
    c.fill(&t, &key("s:a"), value("1"), 50, &ns);
    assert_eq!(fresh(&c, "s:a"), None, "may have outlived the key's TTL");
}

#[test]
fn a_string_entry_holds_the_get_reply_next_to_its_key() {
    let c = cache();
    c.verified();
    let ns = c.stats_for("session");
    let t = c.begin_fill(vec![key("s:a"), key("s:h")]).expect("live");
    assert!(c.fill(&t, &key("s:a"), value("a\r\nb"), -1, &ns));
    let hash = Data::Hash(vec![(key("f"), key("v"))]);
    assert!(c.fill(&t, &key("s:h"), hash.clone(), -1, &ns));
    let Lookup::Fresh(e) = c.lookup(b"s:a", false, &Clock::default()) else {
        panic!("filled")
    };
    assert_eq!(e.bulk(), Some(&b"$4\r\na\r\nb\r\n"[..]));
    assert_eq!(owned(e.data()), value("a\r\nb"));
    let Lookup::Fresh(e) = c.lookup(b"s:h", false, &Clock::default()) else {
        panic!("filled")
    };
    assert_eq!((e.bulk(), owned(e.data())), (None, hash));
}

#[test]
fn memory_stays_within_max_bytes_and_evictions_are_counted() {
    let c = Arc::new(Cache::new(
        64 * 1024,
        Duration::from_secs(60),
        Duration::ZERO,
    ));
    c.verified();
    let ns = c.stats_for("session");
    let big = "x".repeat(1000);
    for i in 0..1000 {
        let k = key(&format!("s:{i}"));
        let t = c.begin_fill(vec![k.clone()]).expect("live");
        c.fill(&t, &k, value(&big), -1, &ns);
    }
    let snap = c.snapshot();
    assert!(snap.bytes <= 64 * 1024, "{} bytes held", snap.bytes);
    assert!(ns.evictions.load(Ordering::Relaxed) > 800);
    assert_eq!(snap.namespaces[0].entries, snap.entries);
}

impl Cache {
    fn is_empty_for_tests(&self) -> bool {
        self.store.is_empty()
    }
}

fn written(c: &Cache, t: &Ticket, k: &str, v: Option<&str>, ns: &Arc<NsStats>) -> bool {
    let value = v.map(|v| (key(v), Some(Duration::from_secs(30))));
    c.written(t, &key(k), value, ns)
}

#[test]
fn a_write_fills_with_its_value_and_spoils_reads_it_may_have_overtaken() {
    let c = cache();
    c.verified();
    let ns = c.stats_for("session");
    // A read sent on another connection may run before the write and return the old value.
    let read = c.begin_fill(vec![key("s:a")]).expect("live");
    let write = c.begin_fill(vec![key("s:a")]).expect("live");
    assert!(written(&c, &write, "s:a", Some("new"), &ns));
    drop(write);
    assert_eq!(fresh(&c, "s:a"), Some(value("new")));
    assert!(!c.fill(&read, &key("s:a"), value("old"), -1, &ns));
    assert_eq!(fresh(&c, "s:a"), Some(value("new")));
    assert_eq!(ns.write_fills.load(Ordering::Relaxed), 1);
}

#[test]
fn a_write_raced_by_an_invalidation_only_invalidates() {
    let c = cache();
    c.verified();
    let ns = c.stats_for("session");
    let t = c.begin_fill(vec![key("s:a")]).expect("live");
    c.fill(&t, &key("s:a"), value("old"), -1, &ns);
    let write = c.begin_fill(vec![key("s:a")]).expect("live");
    // Another client wrote the key after this write: Redis said so before its reply.
    c.invalidate(&[key("s:a")]);
    assert!(!written(&c, &write, "s:a", Some("mine"), &ns));
    assert_eq!(fresh(&c, "s:a"), None);
    // A failed write stores nothing and still drops what was there.
    let t = c.begin_fill(vec![key("s:b")]).expect("live");
    assert!(c.fill(&t, &key("s:b"), value("old"), -1, &ns));
    let write = c.begin_fill(vec![key("s:b")]).expect("live");
    assert!(!written(&c, &write, "s:b", None, &ns));
    assert_eq!(fresh(&c, "s:b"), None);
    // Nor across a loss of the stream.
    let write = c.begin_fill(vec![key("s:c")]).expect("live");
    c.lost("test".into());
    c.verified();
    assert!(!written(&c, &write, "s:c", Some("v"), &ns));
    assert_eq!(fresh(&c, "s:c"), None);
}

#[test]
fn a_written_entry_expires_with_the_ttl_the_write_gave_from_when_it_was_sent() {
    let c = cache();
    c.verified();
    let ns = c.stats_for("session");
    // Taken just before the write is sent; its reply comes back 50 ms later.
    let t = c.begin_fill(vec![key("s:a")]).expect("live");
    std::thread::sleep(Duration::from_millis(50));
    let v = Some((key("v"), Some(Duration::from_millis(40))));
    assert!(c.written(&t, &key("s:a"), v, &ns));
    assert_eq!(fresh(&c, "s:a"), None, "the key expired in Redis already");
}

#[test]
fn only_a_plain_set_names_the_value_it_leaves() {
    let args = |s: &str| -> Vec<Bytes> { s.split(' ').map(key).collect() };
    assert_eq!(plan::plain_set(&args("set k v")), Some((key("v"), None)));
    assert_eq!(
        plan::plain_set(&args("SET k v EX 10")),
        Some((key("v"), Some(Duration::from_secs(10))))
    );
    assert_eq!(
        plan::plain_set(&args("SET k v px 1500")),
        Some((key("v"), Some(Duration::from_millis(1500))))
    );
    for other in [
        "SET k v NX",
        "SET k v XX",
        "SET k v GET",
        "SET k v KEEPTTL",
        "SET k v EXAT 99999999999",
        "SET k v EX 0",
        "SET k v EX -1",
        "SET k v EX 10 NX",
        "SETEX k 10 v",
        "GET k",
    ] {
        assert_eq!(plan::plain_set(&args(other)), None, "{other}");
    }
}

#[test]
fn expiry_is_checked_against_the_clock_s_first_reading_until_it_is_reset() {
    let c = Arc::new(Cache::new(
        1 << 20,
        Duration::from_millis(300),
        Duration::from_secs(5),
    ));
    c.verified();
    let ns = c.stats_for("session");
    let t = c.begin_fill(vec![key("s:a")]).expect("live");
    assert!(c.fill(&t, &key("s:a"), value("1"), -1, &ns));
    let clock = Clock::default();
    assert!(matches!(c.lookup(b"s:a", false, &clock), Lookup::Fresh(_)));
    std::thread::sleep(Duration::from_millis(350));
    // Past max_ttl, but the batch's clock was read before: the key was live then.
    assert!(matches!(c.lookup(b"s:a", false, &clock), Lookup::Fresh(_)));
    clock.reset();
    assert!(matches!(c.lookup(b"s:a", false, &clock), Lookup::Miss));
}
