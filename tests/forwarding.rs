//! Plain forwarding: exact reply bytes in RESP2 and RESP3, inline commands,
//! connection-level commands answered per client, redis-cli and the `redis`
//! crate as independent clients, binary-safe and large payloads.

mod common;

use common::{assert_reply, parse_one, redis_cli, show, RawConn, RedisServer, Sidecar, Value};

/// Sends the same commands to the sidecar and straight to Redis (each on a
/// fresh connection, after resetting the data) and asserts identical bytes.
fn same_as_redis(redis: &RedisServer, sidecar: &Sidecar, cmds: &[&[&str]]) {
    let run =
        |conn: &mut RawConn| -> Vec<Vec<u8>> { cmds.iter().map(|c| conn.cmd_str(c)).collect() };
    assert_reply(&redis.cmd(&["FLUSHALL"]), b"+OK\r\n");
    let through = run(&mut sidecar.conn());
    assert_reply(&redis.cmd(&["FLUSHALL"]), b"+OK\r\n");
    let direct = run(&mut redis.conn());
    for (i, (t, d)) in through.iter().zip(&direct).enumerate() {
        assert!(
            t == d,
            "command {:?}: sidecar {} vs redis {}",
            cmds[i],
            show(t),
            show(d)
        );
    }
}

#[test]
fn string_commands_reply_byte_exact() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["GET", "missing"]), b"$-1\r\n");
    assert_reply(&c.cmd_str(&["SET", "k", "hello"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "k"]), b"$5\r\nhello\r\n");
    assert_reply(
        &c.cmd_str(&["INCR", "k"]),
        b"-ERR value is not an integer or out of range\r\n",
    );
    assert_reply(&c.cmd_str(&["INCR", "n"]), b":1\r\n");
    assert_reply(&c.cmd_str(&["INCRBY", "n", "-5"]), b":-4\r\n");
    assert_reply(
        &c.cmd_str(&["LPUSH", "k", "x"]),
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
    assert_reply(&c.cmd_str(&["DEL", "k", "n", "nope"]), b":2\r\n");
    assert_reply(&c.cmd_str(&["MGET", "k", "n"]), b"*2\r\n$-1\r\n$-1\r\n");
    // The key was written upstream, not kept somewhere in the sidecar.
    assert_reply(&c.cmd_str(&["SET", "shared", "v1"]), b"+OK\r\n");
    assert_reply(&redis.cmd(&["GET", "shared"]), b"$2\r\nv1\r\n");
}

#[test]
fn errors_for_arity_and_unknown_commands_match_redis() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    same_as_redis(
        &redis,
        &sidecar,
        &[
            &["GET"],
            &["GET", "a", "b"],
            &["NOSUCHCOMMAND", "a", "b"],
            &["SET", "k", "v", "BOGUSOPT"],
            &["EXEC"],
            &["DISCARD"],
            &["HSET", "h", "f"],
        ],
    );
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["GET", "a", "b"]),
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    assert_reply(
        &c.cmd_str(&["NOSUCHCOMMAND", "a"]),
        b"-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'a' \r\n",
    );
}

#[test]
fn hgetall_is_an_array_in_resp2_and_a_map_after_hello_3() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["HSET", "h", "f", "v"]), b":1\r\n");
    assert_reply(
        &c.cmd_str(&["HGETALL", "h"]),
        b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
    );
    assert_reply(&c.cmd_str(&["GET", "nil"]), b"$-1\r\n");
    let hello = c.cmd_str(&["HELLO", "3"]);
    assert!(hello.starts_with(b"%7\r\n"), "HELLO 3: {}", show(&hello));
    assert_reply(
        &c.cmd_str(&["HGETALL", "h"]),
        b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n",
    );
    assert_reply(&c.cmd_str(&["GET", "nil"]), b"_\r\n");
    assert_reply(&c.cmd_str(&["HGETALL", "nope"]), b"%0\r\n");
    assert_reply(
        &c.cmd_str(&["SMEMBERS", "h"]),
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
    assert_reply(&c.cmd_str(&["SADD", "s", "m"]), b":1\r\n");
    assert_reply(&c.cmd_str(&["SMEMBERS", "s"]), b"~1\r\n$1\r\nm\r\n");
    assert_reply(&c.cmd_str(&["ZADD", "z", "1.5", "a"]), b":1\r\n");
    assert_reply(&c.cmd_str(&["ZSCORE", "z", "a"]), b",1.5\r\n");
    // A second client that never said HELLO still gets RESP2 for the same data.
    let mut other = sidecar.conn();
    assert_reply(
        &other.cmd_str(&["HGETALL", "h"]),
        b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
    );
    assert_reply(&other.cmd_str(&["ZSCORE", "z", "a"]), b"$3\r\n1.5\r\n");
    // And back to RESP2 on the first one.
    let hello2 = c.cmd_str(&["HELLO", "2"]);
    assert!(hello2.starts_with(b"*14\r\n"), "HELLO 2: {}", show(&hello2));
    assert_reply(&c.cmd_str(&["GET", "nil"]), b"$-1\r\n");
}

#[test]
fn inline_commands_are_accepted() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    c.send(b"PING\r\n");
    assert_reply(&c.read_reply(), b"+PONG\r\n");
    c.send(b"SET inl  value\r\nGET inl\n");
    assert_reply(&c.read_reply(), b"+OK\r\n");
    assert_reply(&c.read_reply(), b"$5\r\nvalue\r\n");
    c.send(b"ECHO \"quoted arg\"\r\n");
    assert_reply(&c.read_reply(), b"$10\r\nquoted arg\r\n");
    // Inline and multibulk mixed in one write.
    c.send(b"PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n");
    assert_reply(&c.read_reply(), b"+PONG\r\n");
    assert_reply(&c.read_reply(), b"$2\r\nhi\r\n");
    assert_reply(&c.read_reply(), b"+PONG\r\n");
}

#[test]
fn hello_3_and_hello_2_replies_have_the_redis_7_shape() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    let expected_keys = [
        "server", "version", "proto", "id", "mode", "role", "modules",
    ];

    let v = parse_one(&c.cmd_str(&["HELLO", "3"]));
    assert!(matches!(v, Value::Map(_)), "HELLO 3 is a map: {v:?}");
    assert_eq!(v.keys(), expected_keys);
    assert_eq!(v.field("proto"), Some(&Value::Int(3)));
    assert!(matches!(v.field("id"), Some(Value::Int(_))));
    assert!(matches!(v.field("server"), Some(Value::Bulk(_))));
    assert!(matches!(v.field("version"), Some(Value::Bulk(_))));
    assert_eq!(
        v.field("mode").and_then(Value::bytes),
        Some(&b"standalone"[..])
    );
    assert_eq!(v.field("role").and_then(Value::bytes), Some(&b"master"[..]));
    assert_eq!(v.field("modules"), Some(&Value::Array(vec![])));

    let v2 = parse_one(&c.cmd_str(&["HELLO", "2"]));
    assert!(matches!(v2, Value::Array(_)), "HELLO 2 is an array: {v2:?}");
    assert_eq!(v2.keys(), expected_keys);
    assert_eq!(v2.field("proto"), Some(&Value::Int(2)));
    // The connection id in HELLO is the one CLIENT ID reports.
    let id = c.cmd_str(&["CLIENT", "ID"]);
    let Value::Int(n) = parse_one(&id) else {
        panic!("CLIENT ID: {}", show(&id))
    };
    assert_eq!(v2.field("id"), Some(&Value::Int(n)));
    assert_eq!(v.field("id"), Some(&Value::Int(n)));

    // HELLO with no version reports the current protocol without switching.
    let v0 = parse_one(&c.cmd_str(&["HELLO"]));
    assert_eq!(v0.field("proto"), Some(&Value::Int(2)));
}

#[test]
fn hello_with_unsupported_version_is_noproto_like_redis() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["HELLO", "4"]),
        b"-NOPROTO unsupported protocol version\r\n",
    );
    assert_reply(
        &redis.cmd(&["HELLO", "4"]),
        b"-NOPROTO unsupported protocol version\r\n",
    );
    // The connection stays in RESP2 and usable.
    assert_reply(&c.cmd_str(&["GET", "x"]), b"$-1\r\n");
}

#[test]
fn hello_setname_sets_this_clients_name_only() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut a = sidecar.conn();
    let mut b = sidecar.conn();
    let v = parse_one(&a.cmd_str(&["HELLO", "3", "SETNAME", "app-a"]));
    assert_eq!(v.field("proto"), Some(&Value::Int(3)));
    assert_reply(&a.cmd_str(&["CLIENT", "GETNAME"]), b"$5\r\napp-a\r\n");
    assert_reply(&b.cmd_str(&["CLIENT", "GETNAME"]), b"$-1\r\n");
}

#[test]
fn client_name_id_and_setinfo_are_per_client() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut a = sidecar.conn();
    let mut b = sidecar.conn();
    assert_reply(&a.cmd_str(&["CLIENT", "GETNAME"]), b"$-1\r\n");
    assert_reply(&a.cmd_str(&["CLIENT", "SETNAME", "alpha"]), b"+OK\r\n");
    assert_reply(&b.cmd_str(&["CLIENT", "SETNAME", "beta"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["CLIENT", "GETNAME"]), b"$5\r\nalpha\r\n");
    assert_reply(&b.cmd_str(&["CLIENT", "GETNAME"]), b"$4\r\nbeta\r\n");
    // A third client sees no name at all, in RESP3 too.
    let mut c = sidecar.conn();
    c.cmd_str(&["HELLO", "3"]);
    assert_reply(&c.cmd_str(&["CLIENT", "GETNAME"]), b"_\r\n");

    let id_a = parse_one(&a.cmd_str(&["CLIENT", "ID"]));
    let id_b = parse_one(&b.cmd_str(&["CLIENT", "ID"]));
    assert!(matches!(id_a, Value::Int(_)), "{id_a:?}");
    assert!(matches!(id_b, Value::Int(_)), "{id_b:?}");
    assert_ne!(id_a, id_b, "two clients share a CLIENT ID");
    assert_eq!(
        parse_one(&a.cmd_str(&["CLIENT", "ID"])),
        id_a,
        "ID is stable"
    );

    // node-redis / redis-py send these right after HELLO 3.
    assert_reply(
        &c.cmd_str(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
        b"+OK\r\n",
    );
    assert_reply(
        &c.cmd_str(&["CLIENT", "SETINFO", "LIB-VER", "5.0.1"]),
        b"+OK\r\n",
    );
    // Setting a name with a space is refused like Redis does.
    let bad = a.cmd_str(&["CLIENT", "SETNAME", "has space"]);
    assert_reply(&bad, &redis.cmd(&["CLIENT", "SETNAME", "has space"]));
    assert_reply(&a.cmd_str(&["CLIENT", "GETNAME"]), b"$5\r\nalpha\r\n");
    // The names never leaked onto upstream connections shared by others.
    let list = redis.cmd(&["CLIENT", "LIST"]);
    assert!(
        !show(&list).contains("name=alpha") && !show(&list).contains("name=beta"),
        "client names leaked upstream: {}",
        show(&list)
    );
}

#[test]
fn quit_replies_ok_then_closes() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "q", "1"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["QUIT"]), b"+OK\r\n");
    let rest = c.expect_closed(std::time::Duration::from_secs(5));
    assert!(rest.is_empty(), "bytes after QUIT: {}", show(&rest));
    // The sidecar keeps serving others.
    assert_reply(&sidecar.conn().cmd_str(&["GET", "q"]), b"$1\r\n1\r\n");
}

#[test]
fn reset_restores_a_fresh_connection_state() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    c.cmd_str(&["HELLO", "3"]);
    assert_reply(&c.cmd_str(&["CLIENT", "SETNAME", "before"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SET", "r", "1"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["RESET"]), b"+RESET\r\n");
    // Protocol back to RESP2, name cleared, transaction discarded.
    assert_reply(&c.cmd_str(&["GET", "r"]), b"$-1\r\n");
    assert_reply(&c.cmd_str(&["CLIENT", "GETNAME"]), b"$-1\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"-ERR EXEC without MULTI\r\n");
}

#[test]
fn redis_cli_works_through_the_sidecar() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let port = sidecar.port().to_string();
    let base = ["-h", "127.0.0.1", "-p", port.as_str()];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (status, out) = redis_cli(&args, None);
        assert!(status.success(), "redis-cli {extra:?} failed");
        String::from_utf8(out).expect("utf8")
    };
    assert_eq!(run(&["PING"]), "PONG\n");
    assert_eq!(run(&["SET", "cli:k", "some value"]), "OK\n");
    assert_eq!(run(&["GET", "cli:k"]), "some value\n");
    assert_eq!(run(&["INCR", "cli:n"]), "1\n");
    assert_eq!(run(&["GET", "cli:missing"]), "\n");
    assert_eq!(run(&["HSET", "cli:h", "a", "1"]), "1\n");
    // redis-cli renders a RESP3 map itself; compare with Redis directly.
    let direct_port = redis.port().to_string();
    let (_, direct) = redis_cli(&["-p", &direct_port, "-3", "HGETALL", "cli:h"], None);
    assert_eq!(
        run(&["-3", "HGETALL", "cli:h"]),
        String::from_utf8(direct).expect("utf8")
    );
    assert_eq!(run(&["-3", "GET", "cli:k"]), "some value\n");
    assert_eq!(redis.cmd(&["GET", "cli:k"]), b"$10\r\nsome value\r\n");
}

#[test]
fn redis_cli_pipe_mode_through_the_sidecar() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut input = Vec::new();
    for i in 0..1000 {
        input.extend_from_slice(&common::encode_str(&[
            "SET",
            &format!("p:{i}"),
            &i.to_string(),
        ]));
        input.extend_from_slice(&common::encode_str(&["INCR", "p:count"]));
    }
    let port = sidecar.port().to_string();
    let (status, out) = redis_cli(&["-h", "127.0.0.1", "-p", &port, "--pipe"], Some(&input));
    let out = String::from_utf8_lossy(&out).to_string();
    assert!(status.success(), "redis-cli --pipe failed: {out}");
    assert!(out.contains("errors: 0, replies: 2000"), "{out}");
    assert_reply(&redis.cmd(&["GET", "p:count"]), b"$4\r\n1000\r\n");
    assert_reply(&redis.cmd(&["GET", "p:999"]), b"$3\r\n999\r\n");
}

async fn redis_crate_round_trip(url: String) {
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect through sidecar");
    let _: () = redis::cmd("SET")
        .arg("rc:k")
        .arg(b"v\r\n\0".as_slice())
        .query_async(&mut con)
        .await
        .expect("SET");
    let v: Vec<u8> = redis::cmd("GET")
        .arg("rc:k")
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(v, b"v\r\n\0");
    let missing: Option<String> = redis::cmd("GET")
        .arg("rc:none")
        .query_async(&mut con)
        .await
        .expect("GET missing");
    assert_eq!(missing, None);
    let _: () = redis::cmd("HSET")
        .arg("rc:h")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query_async(&mut con)
        .await
        .expect("HSET");
    let h: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg("rc:h")
        .query_async(&mut con)
        .await
        .expect("HGETALL");
    assert_eq!(
        h.into_iter().collect::<Vec<_>>(),
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    let err = redis::cmd("INCR")
        .arg("rc:h")
        .query_async::<i64>(&mut con)
        .await
        .expect_err("INCR on a hash must fail");
    assert_eq!(err.code(), Some("WRONGTYPE"), "{err}");
    let (a, b, c): (i64, i64, Option<String>) = redis::pipe()
        .cmd("INCR")
        .arg("rc:n")
        .cmd("INCRBY")
        .arg("rc:n")
        .arg(10)
        .cmd("GET")
        .arg("rc:none")
        .query_async(&mut con)
        .await
        .expect("pipeline");
    assert_eq!((a, b, c), (1, 11, None));
    // Many concurrent requests over one multiplexed connection stay matched.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut con = con.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("rc:c{i}");
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg(i)
                .query_async(&mut con)
                .await
                .expect("SET");
            let got: i64 = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut con)
                .await
                .expect("GET");
            assert_eq!(got, i);
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_over_resp2() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    redis_crate_round_trip(format!("redis://127.0.0.1:{}/", sidecar.port())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_over_resp3() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    redis_crate_round_trip(format!(
        "redis://127.0.0.1:{}/?protocol=resp3",
        sidecar.port()
    ))
    .await;
}

#[test]
fn binary_keys_and_values_with_cr_lf_nul() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    let key: &[u8] = b"bin\r\nkey\0\x01\xff";
    let value: &[u8] = b"\r\n\0\r\n*3\r\n$1\r\nx\r\n\0\xfe";
    assert_reply(&c.cmd(&[b"SET", key, value]), b"+OK\r\n");
    let mut want = format!("${}\r\n", value.len()).into_bytes();
    want.extend_from_slice(value);
    want.extend_from_slice(b"\r\n");
    assert_reply(&c.cmd(&[b"GET", key]), &want);
    assert_reply(&redis.conn().cmd(&[b"GET", key]), &want);
    assert_reply(
        &c.cmd(&[b"STRLEN", key]),
        format!(":{}\r\n", value.len()).as_bytes(),
    );
    // An empty value and an empty key are distinct from missing ones.
    assert_reply(&c.cmd(&[b"SET", b"", b""]), b"+OK\r\n");
    assert_reply(&c.cmd(&[b"GET", b""]), b"$0\r\n\r\n");
}

#[test]
fn five_megabyte_value_round_trips() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    let value: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    assert_reply(&c.cmd(&[b"SET", b"big", &value]), b"+OK\r\n");
    let got = c.cmd(&[b"GET", b"big"]);
    let mut want = format!("${}\r\n", value.len()).into_bytes();
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\n");
    assert!(got == want, "5 MB value differs ({} bytes back)", got.len());
    assert_reply(&redis.cmd(&["STRLEN", "big"]), b":5242880\r\n");
    // Then small commands still flow on the same connection.
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn mget_of_ten_thousand_keys_matches_redis() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    let mut mset: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
    for i in 0..10_000 {
        mset.push(format!("m:{i}").into_bytes());
        mset.push(format!("value-{i}").into_bytes());
    }
    let refs: Vec<&[u8]> = mset.iter().map(|v| v.as_slice()).collect();
    assert_reply(&c.cmd(&refs), b"+OK\r\n");
    let mut mget: Vec<Vec<u8>> = vec![b"MGET".to_vec()];
    for i in 0..10_010 {
        // The last ten do not exist.
        mget.push(format!("m:{i}").into_bytes());
    }
    let refs: Vec<&[u8]> = mget.iter().map(|v| v.as_slice()).collect();
    let through = c.cmd(&refs);
    let direct = redis.conn().cmd(&refs);
    assert!(
        through.starts_with(b"*10010\r\n$7\r\nvalue-0\r\n"),
        "{}",
        show(&through)
    );
    assert!(through.ends_with(b"$-1\r\n$-1\r\n"));
    assert!(through == direct, "MGET reply differs from Redis's");
}
