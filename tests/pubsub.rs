//! Publish/subscribe through the sidecar: RESP2 subscribed mode and RESP3 push
//! frames, pattern subscriptions, leaving subscribed mode.

mod common;

use std::time::Duration;

use common::{assert_reply, encode_str, RawConn, RedisServer, Sidecar};

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// The frame Redis sends for a (un)subscribe confirmation or a message.
fn frame(kind: char, parts: &[&str], count: Option<i64>) -> Vec<u8> {
    let n = parts.len() + usize::from(count.is_some());
    let mut s = format!("{kind}{n}\r\n");
    for p in parts {
        s.push_str(&bulk(p));
    }
    if let Some(c) = count {
        s.push_str(&format!(":{c}\r\n"));
    }
    s.into_bytes()
}

fn subscribed_mode(kind: char, hello3: bool) {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut sub = sidecar.conn();
    if hello3 {
        sub.cmd_str(&["HELLO", "3"]);
    }
    let mut psub = sidecar.conn();
    let mut publisher = sidecar.conn();

    sub.send(&encode_str(&["SUBSCRIBE", "news", "sport"]));
    assert_reply(
        &sub.read_reply(),
        &frame(kind, &["subscribe", "news"], Some(1)),
    );
    assert_reply(
        &sub.read_reply(),
        &frame(kind, &["subscribe", "sport"], Some(2)),
    );
    assert_reply(
        &psub.cmd_str(&["PSUBSCRIBE", "news.*"]),
        &frame('*', &["psubscribe", "news.*"], Some(1)),
    );

    // Exactly one receiver each: the count comes from Redis.
    assert_reply(&publisher.cmd_str(&["PUBLISH", "news", "hello"]), b":1\r\n");
    assert_reply(
        &sub.read_reply(),
        &frame(kind, &["message", "news", "hello"], None),
    );
    assert_reply(
        &publisher.cmd_str(&["PUBLISH", "news.eu", "bonjour"]),
        b":1\r\n",
    );
    assert_reply(
        &psub.read_reply(),
        &frame('*', &["pmessage", "news.*", "news.eu", "bonjour"], None),
    );
    // A publish made directly on Redis reaches subscribers of the sidecar.
    assert_reply(&redis.cmd(&["PUBLISH", "sport", "goal"]), b":1\r\n");
    assert_reply(
        &sub.read_reply(),
        &frame(kind, &["message", "sport", "goal"], None),
    );

    // PING inside subscribed mode.
    if hello3 {
        assert_reply(&sub.cmd_str(&["PING"]), b"+PONG\r\n");
        // RESP3 allows ordinary commands while subscribed.
        assert_reply(&sub.cmd_str(&["GET", "nothing"]), b"_\r\n");
    } else {
        assert_reply(&sub.cmd_str(&["PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        assert_reply(
            &sub.cmd_str(&["PING", "hi"]),
            b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n",
        );
        assert_reply(
            &sub.cmd_str(&["GET", "nothing"]),
            b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
        );
    }

    // Unsubscribing everything returns to normal mode.
    sub.send(&encode_str(&["UNSUBSCRIBE"]));
    let first = sub.read_reply();
    let second = sub.read_reply();
    // Redis picks the order; the counts must go 1 then 0 either way.
    let in_order = |a: &str, b: &str| {
        first == frame(kind, &["unsubscribe", a], Some(1))
            && second == frame(kind, &["unsubscribe", b], Some(0))
    };
    assert!(
        in_order("news", "sport") || in_order("sport", "news"),
        "UNSUBSCRIBE replies: {} then {}",
        common::show(&first),
        common::show(&second)
    );
    assert_reply(&sub.cmd_str(&["SET", "after", "1"]), b"+OK\r\n");
    assert_reply(&sub.cmd_str(&["PING"]), b"+PONG\r\n");
    // Nobody is subscribed to "news" any more; the pattern still matches
    // "news.late".
    assert_reply(&publisher.cmd_str(&["PUBLISH", "news", "late"]), b":0\r\n");
    assert_reply(
        &publisher.cmd_str(&["PUBLISH", "news.late", "x"]),
        b":1\r\n",
    );
    assert_reply(
        &psub.read_reply(),
        &frame('*', &["pmessage", "news.*", "news.late", "x"], None),
    );
    assert_reply(
        &psub.cmd_str(&["PUNSUBSCRIBE", "news.*"]),
        &frame('*', &["punsubscribe", "news.*"], Some(0)),
    );
    assert_reply(&psub.cmd_str(&["GET", "after"]), b"$1\r\n1\r\n");
    assert_reply(
        &publisher.cmd_str(&["PUBLISH", "news.late", "none"]),
        b":0\r\n",
    );
    // The unsubscribed client receives nothing further.
    sub.set_read_timeout(Duration::from_millis(200));
    assert_eq!(sub.try_read_reply(), Err(common::ReadEnd::TimedOut));
}

#[test]
fn subscribe_publish_unsubscribe_resp2() {
    subscribed_mode('*', false);
}

#[test]
fn subscribe_publish_unsubscribe_resp3_push_frames() {
    subscribed_mode('>', true);
}

#[test]
fn psubscribe_in_resp3_gets_push_pmessages() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut sub = sidecar.conn();
    sub.cmd_str(&["HELLO", "3"]);
    assert_reply(
        &sub.cmd_str(&["PSUBSCRIBE", "user:*"]),
        &frame('>', &["psubscribe", "user:*"], Some(1)),
    );
    assert_reply(&redis.cmd(&["PUBLISH", "user:1", "x"]), b":1\r\n");
    assert_reply(
        &sub.read_reply(),
        &frame('>', &["pmessage", "user:*", "user:1", "x"], None),
    );
    // A normal command while messages flow: its reply and the pushes all
    // arrive, the reply in its place after the GET was sent.
    assert_reply(&redis.cmd(&["PUBLISH", "user:2", "y"]), b":1\r\n");
    assert_reply(
        &sub.read_reply(),
        &frame('>', &["pmessage", "user:*", "user:2", "y"], None),
    );
    assert_reply(
        &sub.cmd_str(&["ECHO", "still here"]),
        b"$10\r\nstill here\r\n",
    );
    assert_reply(&sub.cmd_str(&["RESET"]), b"+RESET\r\n");
    assert_reply(&redis.cmd(&["PUBLISH", "user:3", "z"]), b":0\r\n");
}

#[test]
fn many_subscribers_each_receive_every_message() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut subs: Vec<RawConn> = (0..10).map(|_| sidecar.conn()).collect();
    for s in &mut subs {
        assert_reply(
            &s.cmd_str(&["SUBSCRIBE", "fanout"]),
            &frame('*', &["subscribe", "fanout"], Some(1)),
        );
    }
    let mut publisher = sidecar.conn();
    for i in 0..20 {
        let msg = format!("m{i}");
        assert_reply(&publisher.cmd_str(&["PUBLISH", "fanout", &msg]), b":10\r\n");
    }
    for s in &mut subs {
        for i in 0..20 {
            let msg = format!("m{i}");
            assert_reply(
                &s.read_reply(),
                &frame('*', &["message", "fanout", &msg], None),
            );
        }
    }
    // Disconnecting subscribers releases their subscriptions upstream.
    drop(subs);
    common::wait_for(
        "subscriptions to be released",
        Duration::from_secs(5),
        || (redis.cmd(&["PUBLISH", "fanout", "gone"]) == b":0\r\n").then_some(()),
    );
}
