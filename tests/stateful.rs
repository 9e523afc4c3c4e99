//! Stateful commands that need a pinned upstream connection: transactions,
//! WATCH, blocking pops, scripts.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{assert_reply, show, wait_for, RedisServer, Sidecar};

#[test]
fn multi_exec_runs_the_queued_commands_atomically() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SET", "t", "1"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["INCR", "t"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["LPUSH", "t", "x"]), b"+QUEUED\r\n");
    // Another client does not see the queued writes before EXEC.
    let mut other = sidecar.conn();
    assert_reply(&other.cmd_str(&["GET", "t"]), b"$-1\r\n");
    assert_reply(
        &c.cmd_str(&["EXEC"]),
        b"*3\r\n+OK\r\n:2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
    assert_reply(&other.cmd_str(&["GET", "t"]), b"$1\r\n2\r\n");
    // Nested MULTI and a queueing error, like Redis.
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(
        &c.cmd_str(&["MULTI"]),
        b"-ERR MULTI calls can not be nested\r\n",
    );
    assert_reply(
        &c.cmd_str(&["GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    assert_reply(
        &c.cmd_str(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    // After the transaction the connection is an ordinary one again.
    assert_reply(&c.cmd_str(&["GET", "t"]), b"$1\r\n2\r\n");
}

#[test]
fn discard_and_exec_without_multi() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["EXEC"]), b"-ERR EXEC without MULTI\r\n");
    assert_reply(&c.cmd_str(&["DISCARD"]), b"-ERR DISCARD without MULTI\r\n");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SET", "d", "1"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["DISCARD"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "d"]), b"$-1\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"-ERR EXEC without MULTI\r\n");
}

#[test]
fn transactions_of_two_clients_do_not_mix() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut a = sidecar.conn();
    let mut b = sidecar.conn();
    assert_reply(&a.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&b.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["SET", "a", "1"]), b"+QUEUED\r\n");
    assert_reply(&b.cmd_str(&["SET", "b", "2"]), b"+QUEUED\r\n");
    assert_reply(&a.cmd_str(&["GET", "b"]), b"+QUEUED\r\n");
    assert_reply(&b.cmd_str(&["DISCARD"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["EXEC"]), b"*2\r\n+OK\r\n$-1\r\n");
    assert_reply(&redis.cmd(&["GET", "b"]), b"$-1\r\n");
}

fn watch_aborted(hello3: bool, nil: &[u8]) {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    if hello3 {
        c.cmd_str(&["HELLO", "3"]);
    }
    let mut other = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "w", "1"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["WATCH", "w"]), b"+OK\r\n");
    // Another client changes the watched key, through the sidecar.
    assert_reply(&other.cmd_str(&["SET", "w", "2"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SET", "w", "3"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), nil);
    assert_reply(&other.cmd_str(&["GET", "w"]), b"$1\r\n2\r\n");

    // Without interference the same sequence commits.
    assert_reply(&c.cmd_str(&["WATCH", "w"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SET", "w", "4"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n");
    assert_reply(&other.cmd_str(&["GET", "w"]), b"$1\r\n4\r\n");

    // UNWATCH releases the watch: a later write does not abort.
    assert_reply(&c.cmd_str(&["WATCH", "w"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["UNWATCH"]), b"+OK\r\n");
    assert_reply(&other.cmd_str(&["SET", "w", "5"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["INCR", "w"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n:6\r\n");
}

#[test]
fn watch_aborted_by_another_clients_write_resp2() {
    watch_aborted(false, b"*-1\r\n");
}

#[test]
fn watch_aborted_by_another_clients_write_resp3() {
    watch_aborted(true, b"_\r\n");
}

#[test]
fn watch_aborted_by_a_write_made_directly_on_redis() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["WATCH", "wd"]), b"+OK\r\n");
    assert_reply(&redis.cmd(&["SET", "wd", "x"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["DEL", "wd"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*-1\r\n");
}

#[test]
fn blpop_is_unblocked_by_another_client_while_others_are_served() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut blocked = sidecar.conn();
    blocked.send(&common::encode_str(&["BLPOP", "queue", "10"]));
    // Wait until Redis reports the client as blocked.
    wait_for("BLPOP to block in Redis", Duration::from_secs(5), || {
        (redis.info_field("blocked_clients") == Some(1)).then_some(())
    });
    // While it waits, a third client is served promptly, many times over.
    let mut busy = sidecar.conn();
    assert_reply(&busy.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
    let started = Instant::now();
    for _ in 0..200 {
        assert_reply(&busy.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "GETs were held up by the blocked client: {:?}",
        started.elapsed()
    );
    // Several independent blocked clients do not hold each other up either.
    let mut blocked2 = sidecar.conn();
    blocked2.send(&common::encode_str(&["BLPOP", "queue2", "10"]));
    wait_for("second BLPOP to block", Duration::from_secs(5), || {
        (redis.info_field("blocked_clients") == Some(2)).then_some(())
    });
    let mut pusher = sidecar.conn();
    assert_reply(&pusher.cmd_str(&["LPUSH", "queue2", "b"]), b":1\r\n");
    assert_reply(&blocked2.read_reply(), b"*2\r\n$6\r\nqueue2\r\n$1\r\nb\r\n");
    assert_reply(&pusher.cmd_str(&["LPUSH", "queue", "job"]), b":1\r\n");
    assert_reply(&blocked.read_reply(), b"*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n");
    // The popped element is gone and the clients are usable again.
    assert_reply(&blocked.cmd_str(&["LLEN", "queue"]), b":0\r\n");
    assert_reply(&blocked2.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
}

#[test]
fn blpop_timeout_returns_null_in_both_protocols() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    let started = Instant::now();
    assert_reply(&c.cmd_str(&["BLPOP", "empty", "0.2"]), b"*-1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(150));
    c.cmd_str(&["HELLO", "3"]);
    assert_reply(&c.cmd_str(&["BLPOP", "empty", "0.1"]), b"_\r\n");
    assert_reply(&c.cmd_str(&["BRPOP", "empty", "0.1"]), b"_\r\n");
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn blocking_commands_released_back_to_a_normal_connection() {
    // After many short blocking calls the client still works and Redis holds
    // no stray blocked clients.
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    for i in 0..20 {
        assert_reply(&c.cmd_str(&["RPUSH", "bl", &i.to_string()]), b":1\r\n");
        let want = format!("*2\r\n$2\r\nbl\r\n${}\r\n{i}\r\n", i.to_string().len());
        assert_reply(&c.cmd_str(&["BLPOP", "bl", "1"]), want.as_bytes());
    }
    assert_eq!(redis.info_field("blocked_clients"), Some(0));
    assert_reply(&c.cmd_str(&["GET", "nothing"]), b"$-1\r\n");
}

#[test]
fn eval_and_evalsha() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&[
            "EVAL",
            "return redis.call('SET', KEYS[1], ARGV[1])",
            "1",
            "ek",
            "ev",
        ]),
        b"+OK\r\n",
    );
    assert_reply(&redis.cmd(&["GET", "ek"]), b"$2\r\nev\r\n");
    assert_reply(
        &c.cmd_str(&["EVAL", "return {1, 2, 'three', false}", "0"]),
        b"*4\r\n:1\r\n:2\r\n$5\r\nthree\r\n$-1\r\n",
    );
    let body = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    let sha_reply = c.cmd_str(&["SCRIPT", "LOAD", body]);
    let direct_sha = redis.cmd(&["SCRIPT", "LOAD", body]);
    assert_reply(&sha_reply, &direct_sha);
    let sha = String::from_utf8(sha_reply[5..45].to_vec()).expect("sha");
    assert_eq!(sha.len(), 40, "{}", show(&sha_reply));
    assert_reply(&c.cmd_str(&["EVALSHA", &sha, "1", "cnt", "5"]), b":5\r\n");
    assert_reply(&c.cmd_str(&["EVALSHA", &sha, "1", "cnt", "5"]), b":10\r\n");
    assert_reply(
        &c.cmd_str(&["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"]),
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    );
    // A script error is passed on as Redis words it.
    let err = c.cmd_str(&["EVAL", "return redis.call('INCR', KEYS[1])", "1", "ek"]);
    let direct = redis.cmd(&["EVAL", "return redis.call('INCR', KEYS[1])", "1", "ek"]);
    assert_reply(&err, &direct);
    assert!(err.starts_with(b"-"), "{}", show(&err));
    // In RESP3, script replies follow the client's protocol.
    c.cmd_str(&["HELLO", "3"]);
    assert_reply(&c.cmd_str(&["EVAL", "return nil", "0"]), b"_\r\n");
}

#[test]
fn many_clients_in_transactions_at_once() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let addr = sidecar.addr();
    let handles: Vec<_> = (0..10)
        .map(|i| {
            thread::spawn(move || {
                let mut c = common::RawConn::connect(addr);
                for _ in 0..20 {
                    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
                    assert_reply(&c.cmd_str(&["INCR", "total"]), b"+QUEUED\r\n");
                    assert_reply(&c.cmd_str(&["INCR", &format!("own{i}")]), b"+QUEUED\r\n");
                    let r = c.cmd_str(&["EXEC"]);
                    assert!(r.starts_with(b"*2\r\n:"), "{}", show(&r));
                }
                assert_reply(&c.cmd_str(&["GET", &format!("own{i}")]), b"$2\r\n20\r\n");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client");
    }
    assert_reply(&redis.cmd(&["GET", "total"]), b"$3\r\n200\r\n");
}
