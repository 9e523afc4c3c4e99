//! The admin HTTP listener against a real redis-server: `/livez`, `/readyz` following
//! the upstream, `/metrics` as parseable Prometheus text with exact counts, and bad
//! requests refused without harm.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use common::http::{self, HttpResponse};
use common::{assert_reply, show, wait_for, RawConn, RedisServer, Sidecar, SidecarToml};

/// Time for the upstream connections to notice a stopped or restarted Redis.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(15);

fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http::get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A sidecar with the admin listener on, once `/readyz` says ready.
fn start(toml: SidecarToml) -> Sidecar {
    let sidecar = Sidecar::start(&toml.admin());
    let addr = sidecar.admin_addr();
    wait_for("/readyz to answer 200", FOLLOW_TIMEOUT, || {
        (get(addr, "/readyz").status == 200).then_some(())
    });
    sidecar
}

// ---------------------------------------------------------------------------
// A small Prometheus text-format parser
// ---------------------------------------------------------------------------

/// One scrape: every sample keyed by `name{labels}` as rendered (labels sorted), and
/// every family's `# TYPE`.
#[derive(Debug)]
struct Scrape {
    samples: HashMap<String, f64>,
    types: HashMap<String, String>,
}

impl Scrape {
    /// The sample `name` with exactly `labels`; panics when absent.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = series_key(name, labels);
        match self.samples.get(&key) {
            Some(v) => *v,
            None => panic!("{key} not in the scrape: {:#?}", self.samples.keys()),
        }
    }
}

fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let mut labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

/// Parses the text exposition format (0.0.4) strictly enough to catch a broken
/// rendering: metric and label names, quoted label values with escapes, float values,
/// one TYPE per family declared before its samples.
fn parse_prometheus(text: &str) -> Scrape {
    let mut scrape = Scrape {
        samples: HashMap::new(),
        types: HashMap::new(),
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("comment without a name: {line}"));
            assert!(is_metric_name(name), "bad name in {line}");
            if kind == Some("TYPE") {
                let t = rest.unwrap_or_default();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "bad type in {line}"
                );
                let old = scrape.types.insert(name.to_string(), t.to_string());
                assert!(old.is_none(), "second TYPE for {name}");
            } else {
                assert_eq!(kind, Some("HELP"), "unknown comment {line}");
            }
            continue;
        }
        let (name, labels, rest) = split_sample(line);
        let value = rest.split(' ').next().unwrap_or_default();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                let base = name.strip_suffix(s)?;
                (scrape.types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(&name);
        assert!(scrape.types.contains_key(family), "no TYPE before {line}");
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let key = series_key(&name, &labels);
        assert!(
            scrape.samples.insert(key, value).is_none(),
            "duplicate sample {line}"
        );
    }
    scrape
}

/// `name{k="v",...} rest` into its parts (label values unescaped).
fn split_sample(line: &str) -> (String, Vec<(String, String)>, &str) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(is_metric_name(name), "bad metric name in {line}");
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = inner
                .find('=')
                .unwrap_or_else(|| panic!("bad label in {line}"));
            let key = &inner[..eq];
            assert!(is_label_name(key), "bad label name in {line}");
            let mut chars = inner[eq + 1..].char_indices();
            assert_eq!(
                chars.next().map(|c| c.1),
                Some('"'),
                "unquoted value in {line}"
            );
            let mut value = String::new();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|c| c.1) {
                        Some('n') => value.push('\n'),
                        Some(e @ ('\\' | '"')) => value.push(e),
                        _ => panic!("bad escape in {line}"),
                    },
                    '"' => {
                        end = Some(eq + 1 + i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated value in {line}"));
            labels.push((key.to_string(), value));
            inner = &inner[end..];
            inner = inner.strip_prefix(',').unwrap_or(inner);
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value: {line}"));
    (name.to_string(), labels, rest)
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn scrape(addr: SocketAddr) -> Scrape {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let scrape = parse_prometheus(&r.body);
    for name in scrape.types.keys() {
        assert!(
            name.starts_with("sidecar_"),
            "{name} lacks the sidecar_ prefix"
        );
    }
    scrape
}

#[test]
fn parser_reads_labels_and_escapes() {
    let text = "# HELP a_total x y\n# TYPE a_total counter\n\
                a_total{k=\"v\\\"q\\\\\",z=\"\"} 3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n";
    let s = parse_prometheus(text);
    assert_eq!(s.value("a_total", &[("k", "v\"q\\"), ("z", "")]), 3.0);
    assert_eq!(s.value("h_bucket", &[("le", "+Inf")]), 2.0);
    assert_eq!(s.value("h_count", &[]), 2.0);
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

#[test]
fn livez_answers_ok() {
    let redis = RedisServer::start();
    let sidecar = start(SidecarToml::new(&redis.url()));
    let r = get(sidecar.admin_addr(), "/livez");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn readyz_follows_the_upstream() {
    let mut redis = RedisServer::start();
    let sidecar = start(SidecarToml::new(&redis.url()));
    let admin = sidecar.admin_addr();
    let r = get(admin, "/readyz");
    let primary = format!("127.0.0.1:{}", redis.port());
    assert_eq!(r.body, format!("ready: primary {primary} (epoch 1)\n"));

    redis.stop();
    let down = wait_for("/readyz to answer 503", FOLLOW_TIMEOUT, || {
        let r = get(admin, "/readyz");
        (r.status == 503).then_some(r)
    });
    assert_eq!(
        down.body,
        format!("not ready: upstream connection down (primary {primary}, epoch 1)\n")
    );
    assert_eq!(scrape(admin).value("sidecar_upstream_connected", &[]), 0.0);
    // Still alive while not ready.
    assert_eq!(get(admin, "/livez").status, 200);

    redis.restart();
    let up = wait_for("/readyz to answer 200 again", FOLLOW_TIMEOUT, || {
        let r = get(admin, "/readyz");
        (r.status == 200).then_some(r)
    });
    assert_eq!(up.body, format!("ready: primary {primary} (epoch 1)\n"));
    assert_eq!(scrape(admin).value("sidecar_upstream_connected", &[]), 1.0);
}

#[test]
fn metrics_count_connections_exactly() {
    let redis = RedisServer::start();
    let sidecar = start(SidecarToml::new(&redis.url()));
    let admin = sidecar.admin_addr();
    let before = scrape(admin);
    assert_eq!(before.value("sidecar_client_connections_total", &[]), 0.0);
    assert_eq!(before.value("sidecar_client_connections", &[]), 0.0);

    const OPENED: usize = 5;
    let mut conns: Vec<RawConn> = (0..OPENED).map(|_| sidecar.conn()).collect();
    for c in &mut conns {
        assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
    }
    // One of them holds a pinned connection.
    assert_reply(&conns[0].cmd_str(&["MULTI"]), b"+OK\r\n");

    let s = scrape(admin);
    assert_eq!(
        s.value("sidecar_client_connections_total", &[]),
        OPENED as f64
    );
    assert_eq!(s.value("sidecar_client_connections", &[]), OPENED as f64);
    let rejected = [("reason", "max_clients")];
    assert_eq!(
        s.value("sidecar_client_connections_rejected_total", &rejected),
        0.0
    );
    assert_eq!(s.value("sidecar_pinned_connections", &[]), 1.0);
    assert_eq!(s.value("sidecar_upstream_connected", &[]), 1.0);
    assert_eq!(s.value("sidecar_primary_epoch", &[]), 1.0);
    assert_eq!(s.value("sidecar_failovers_total", &[]), 0.0);
    assert_eq!(s.value("sidecar_unmatched_keys_allowed_total", &[]), 0.0);
    assert_eq!(s.types["sidecar_client_connections_total"], "counter");
    assert_eq!(s.types["sidecar_client_connections"], "gauge");
    for rule in ["deny_commands", "unmatched_key", "select", "flush", "ttl"] {
        assert_eq!(
            s.value("sidecar_policy_refusals_total", &[("rule", rule)]),
            0.0
        );
    }
    for kind in ["protocol", "upstream_lost", "tryagain", "idle_timeout"] {
        assert_eq!(s.value("sidecar_errors_total", &[("kind", kind)]), 0.0);
    }

    // Closing connections brings the gauges down; the total stays.
    assert_reply(&conns[0].cmd_str(&["DISCARD"]), b"+OK\r\n");
    conns.truncate(2);
    let s = wait_for(
        "the client gauge to drop to 2",
        Duration::from_secs(10),
        || {
            let s = scrape(admin);
            (s.value("sidecar_client_connections", &[]) == 2.0).then_some(s)
        },
    );
    assert_eq!(
        s.value("sidecar_client_connections_total", &[]),
        OPENED as f64
    );
    assert_eq!(s.value("sidecar_pinned_connections", &[]), 0.0);
}

#[test]
fn max_clients_rejections_are_counted() {
    let redis = RedisServer::start();
    let sidecar = start(SidecarToml::new(&redis.url()).server("max_clients = 2"));
    let mut a = sidecar.conn();
    let mut b = sidecar.conn();
    assert_reply(&a.cmd_str(&["PING"]), b"+PONG\r\n");
    assert_reply(&b.cmd_str(&["PING"]), b"+PONG\r\n");
    let mut third = sidecar.conn();
    assert_reply(
        &third.read_reply(),
        b"-ERR max number of clients reached\r\n",
    );
    let s = scrape(sidecar.admin_addr());
    assert_eq!(s.value("sidecar_client_connections_total", &[]), 3.0);
    let rejected = [("reason", "max_clients")];
    assert_eq!(
        s.value("sidecar_client_connections_rejected_total", &rejected),
        1.0
    );
    assert_eq!(s.value("sidecar_client_connections", &[]), 2.0);
}

#[test]
fn unknown_paths_and_other_methods_are_refused() {
    let redis = RedisServer::start();
    let sidecar = start(SidecarToml::new(&redis.url()));
    let admin = sidecar.admin_addr();
    for path in ["/", "/metricsx", "/livez/", "/debug/pprof"] {
        assert_eq!(get(admin, path).status, 404, "{path}");
    }
    // The query string does not change the route.
    assert_eq!(get(admin, "/livez?verbose=1").status, 200);
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let raw = format!("{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        let r = http::request(admin, raw.as_bytes()).expect("response");
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET"), "{method}");
    }
    let r = http::request(admin, b"BREW /livez HTCPCP/1.0\r\n\r\n").expect("response");
    assert_eq!(r.status, 400);
}

#[test]
fn oversized_request_is_refused_and_serving_goes_on() {
    let redis = RedisServer::start();
    let sidecar = start(SidecarToml::new(&redis.url()));
    let admin = sidecar.admin_addr();
    let mut raw = b"GET /livez HTTP/1.1\r\nHost: x\r\n".to_vec();
    while raw.len() < 32 * 1024 {
        raw.extend_from_slice(
            b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    raw.extend_from_slice(b"\r\n");
    let r = http::request(admin, &raw).expect("a response before the close");
    assert_eq!(r.status, 431, "{}", r.body);
    // A head without its end, then the peer goes away: nothing breaks.
    {
        let mut s = TcpStream::connect(admin).expect("connect");
        std::io::Write::write_all(&mut s, &raw[..4096]).expect("write");
    }
    assert_eq!(get(admin, "/livez").status, 200);
    assert_eq!(get(admin, "/metrics").status, 200);
}

#[test]
fn admin_listener_stops_on_shutdown() {
    let redis = RedisServer::start();
    let sidecar = start(SidecarToml::new(&redis.url()));
    let admin = sidecar.admin_addr();
    // An idle admin connection does not hold shutdown up.
    let _idle = TcpStream::connect(admin).expect("connect");
    sidecar
        .shutdown(Duration::from_secs(10))
        .expect("run() returns");
    assert!(
        TcpStream::connect_timeout(&admin, Duration::from_secs(1)).is_err(),
        "admin listener still accepting after shutdown"
    );
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// Kills the child when the test ends, whatever happens.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_serves_admin_listen() {
    let redis = RedisServer::start();
    let admin = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let listen = format!("127.0.0.1:{}", common::free_port());
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut child = Child(
        common::sidecar_command()
            .current_dir(dir.path())
            .args(["--listen", &listen, "--upstream", &redis.url()])
            .args(["--admin", &admin.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let r = wait_for("the binary's /readyz", FOLLOW_TIMEOUT, || {
        if let Ok(Some(s)) = child.0.try_wait() {
            panic!("resp-sidecar exited: {s}");
        }
        // Only its own listener counts (see `common::listens_on`).
        if !common::listens_on(child.0.id(), admin.port()) {
            return None;
        }
        http::get(admin, "/readyz").ok().filter(|r| r.status == 200)
    });
    assert_eq!(
        r.body,
        format!("ready: primary 127.0.0.1:{} (epoch 1)\n", redis.port())
    );
}

#[test]
fn binary_refuses_to_start_when_admin_listen_is_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::TempDir::new().expect("tempdir");
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut child = Child(
        common::sidecar_command()
            .current_dir(dir.path())
            .args(["--listen", &listen, "--admin", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let status = wait_for("the binary to exit", common::READY_TIMEOUT, || {
        child.0.try_wait().ok().flatten()
    });
    assert!(!status.success());
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        err.contains(&format!("cannot listen on {addr} (admin.listen)")),
        "{err}"
    );
}

#[test]
fn policy_refusals_and_scoped_flushes_are_counted_by_rule() {
    let redis = RedisServer::start();
    for i in 0..40 {
        redis.cmd(&["SET", &format!("cache:{i}"), "1"]);
    }
    let sidecar = start(
        SidecarToml::new(&redis.url())
            .policy("deny_commands = [\"DEBUG\"]")
            .namespace("name = \"session\"\nprefix = \"session:\"\ndb = 3")
            .namespace("name = \"cache\"\nprefix = \"cache:\"\nflush = \"allow\"")
            .namespace("name = \"lock\"\nprefix = \"lock:\"\nrequire_ttl = true"),
    );
    let mut c = sidecar.conn();
    let refused = |reply: Vec<u8>| assert!(reply.starts_with(b"-NOPERM"), "{}", show(&reply));
    refused(c.cmd_str(&["DEBUG", "SLEEP", "0"]));
    refused(c.cmd_str(&["GET", "elsewhere"]));
    refused(c.cmd_str(&["GET", "elsewhere"]));
    refused(c.cmd_str(&["SELECT", "9"]));
    refused(c.cmd_str(&["SET", "lock:a", "me"]));
    assert_reply(&c.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
    redis.cmd(&["SET", "cache:again", "1"]);
    assert_reply(&c.cmd_str(&["SIDECAR", "FLUSH", "cache"]), b":1\r\n");
    let s = scrape(sidecar.admin_addr());
    let rule = |r: &str| s.value("sidecar_policy_refusals_total", &[("rule", r)]);
    assert_eq!(rule("deny_commands"), 1.0);
    assert_eq!(rule("unmatched_key"), 2.0);
    assert_eq!(rule("select"), 1.0);
    assert_eq!(rule("ttl"), 1.0);
    assert_eq!(rule("flush"), 0.0);
    let flushes = |k: &str| s.value("sidecar_flushes_total", &[("kind", k)]);
    assert_eq!(flushes("flushall"), 1.0);
    assert_eq!(flushes("sidecar_flush"), 1.0);
    assert_eq!(flushes("flushdb"), 0.0);
    assert_eq!(s.value("sidecar_flush_keys_removed_total", &[]), 41.0);
}

// ---------------------------------------------------------------------------
// Commands, upstream connections and errors counted by the data path
// ---------------------------------------------------------------------------

fn commands(s: &Scrape, command: &str, outcome: &str) -> f64 {
    s.value(
        "sidecar_commands_total",
        &[("command", command), ("outcome", outcome)],
    )
}

fn duration_count(s: &Scrape, command: &str) -> f64 {
    s.value(
        "sidecar_command_duration_seconds_count",
        &[("command", command)],
    )
}

/// The shared pools connect eagerly (one connection per protocol version by default).
fn wait_shared_connections(admin: SocketAddr) -> Scrape {
    wait_for("2 shared upstream connections", FOLLOW_TIMEOUT, || {
        let s = scrape(admin);
        let open = s.value("sidecar_upstream_connections", &[("kind", "shared")]);
        (open == 2.0).then_some(s)
    })
}

#[test]
fn commands_are_counted_by_name_and_outcome_exactly() {
    let redis = RedisServer::start();
    redis.cmd(&["SET", "app:k", "v"]);
    redis.cmd(&["HSET", "app:h", "f", "v"]);
    let sidecar =
        start(SidecarToml::new(&redis.url()).namespace("name = \"app\"\nprefix = \"app:\""));
    let admin = sidecar.admin_addr();
    let s = wait_shared_connections(admin);
    assert!(
        !s.samples
            .keys()
            .any(|k| k.starts_with("sidecar_commands_total{")),
        "no command seen yet: {:#?}",
        s.samples.keys()
    );

    let mut c = sidecar.conn();
    // Three GETs one by one, one refused by the namespace rules...
    for _ in 0..3 {
        assert_reply(&c.cmd_str(&["GET", "app:k"]), b"$1\r\nv\r\n");
    }
    let refused = c.cmd_str(&["GET", "elsewhere"]);
    assert!(refused.starts_with(b"-NOPERM"), "{}", show(&refused));
    // ...then a pipeline of four that succeed and two WRONGTYPE errors, interleaved.
    let mut pipeline = Vec::new();
    for key in ["app:k", "app:h", "app:k", "app:k", "app:h", "app:k"] {
        pipeline.extend_from_slice(&common::encode_str(&["GET", key]));
    }
    c.send(&pipeline);
    for (i, reply) in c.read_replies(6).iter().enumerate() {
        if i == 1 || i == 4 {
            assert!(reply.starts_with(b"-WRONGTYPE"), "{}", show(reply));
        } else {
            assert_reply(reply, b"$1\r\nv\r\n");
        }
    }
    // An unknown command (refused: its keys cannot be checked), and a transaction on a
    // pinned connection.
    let unknown = c.cmd_str(&["NOSUCHCOMMAND"]);
    assert!(unknown.starts_with(b"-NOPERM"), "{}", show(&unknown));
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["INCR", "app:n"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n:1\r\n");

    let s = scrape(admin);
    assert_eq!(commands(&s, "GET", "ok"), 7.0);
    assert_eq!(commands(&s, "GET", "error"), 2.0);
    assert_eq!(commands(&s, "GET", "refused"), 1.0);
    assert_eq!(duration_count(&s, "GET"), 10.0);
    assert_eq!(commands(&s, "other", "refused"), 1.0);
    assert_eq!(commands(&s, "other", "ok"), 0.0);
    for command in ["MULTI", "INCR", "EXEC"] {
        assert_eq!(commands(&s, command, "ok"), 1.0, "{command}");
        assert_eq!(commands(&s, command, "error"), 0.0, "{command}");
        assert_eq!(duration_count(&s, command), 1.0, "{command}");
    }
    assert_eq!(s.types["sidecar_commands_total"], "counter");
    assert_eq!(s.types["sidecar_command_duration_seconds"], "histogram");
    let bucket = |le: &str| {
        s.value(
            "sidecar_command_duration_seconds_bucket",
            &[("command", "GET"), ("le", le)],
        )
    };
    assert_eq!(bucket("+Inf"), 10.0);
    assert!(bucket("5") <= 10.0 && bucket("0.00005") <= bucket("5"));
    assert_eq!(
        s.value(
            "sidecar_policy_refusals_total",
            &[("rule", "unmatched_key")]
        ),
        1.0
    );

    // Upstream: two shared connections (one per protocol version) and the transaction's
    // pinned one, which went back to the idle list (still open) after EXEC.
    let kind = |k: &'static str| [("kind", k)];
    assert_eq!(
        s.value("sidecar_upstream_connects_total", &kind("shared")),
        2.0
    );
    assert_eq!(
        s.value("sidecar_upstream_connects_total", &kind("pinned")),
        1.0
    );
    assert_eq!(
        s.value("sidecar_upstream_disconnects_total", &kind("shared")),
        0.0
    );
    assert_eq!(
        s.value("sidecar_upstream_disconnects_total", &kind("pinned")),
        0.0
    );
    assert_eq!(
        s.value("sidecar_upstream_connections", &kind("pinned")),
        1.0
    );
    // Every shared job and the pinned writes were timed at Redis.
    let shared_jobs = s.value("sidecar_upstream_duration_seconds_count", &kind("shared"));
    assert!((2.0..=11.0).contains(&shared_jobs), "{shared_jobs}");
    let pinned_writes = s.value("sidecar_upstream_duration_seconds_count", &kind("pinned"));
    assert!((1.0..=3.0).contains(&pinned_writes), "{pinned_writes}");
    assert_eq!(s.types["sidecar_upstream_duration_seconds"], "histogram");
}

#[test]
fn errors_are_counted_by_kind_where_they_happen() {
    let redis = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let sidecar = start(
        SidecarToml::new(&redis.url())
            .server("idle_timeout = \"300ms\"")
            .upstream("command_timeout = \"300ms\""),
    );
    let admin = sidecar.admin_addr();
    wait_shared_connections(admin);
    let errors = |s: &Scrape, kind: &str| s.value("sidecar_errors_total", &[("kind", kind)]);

    // Malformed RESP: the error reply, then the connection closes.
    let mut bad = sidecar.conn();
    bad.send(b"*1\r\n:5\r\n");
    let reply = bad.read_reply();
    assert!(
        reply.starts_with(b"-ERR Protocol error"),
        "{}",
        show(&reply)
    );
    bad.expect_closed(Duration::from_secs(5));
    // An idle client is closed after idle_timeout.
    let mut idle = sidecar.conn();
    assert_reply(&idle.cmd_str(&["PING"]), b"+PONG\r\n");
    idle.expect_closed(Duration::from_secs(5));
    let s = wait_for("protocol and idle_timeout counted", FOLLOW_TIMEOUT, || {
        let s = scrape(admin);
        (errors(&s, "protocol") == 1.0 && errors(&s, "idle_timeout") == 1.0).then_some(s)
    });
    for kind in [
        "upstream_lost",
        "upstream_timeout",
        "tryagain",
        "reply_buffer",
    ] {
        assert_eq!(errors(&s, kind), 0.0, "{kind}");
    }

    // Redis takes longer than command_timeout: the client gets -TRYAGAIN.
    let mut c = sidecar.conn();
    let slow = c.cmd_str(&["DEBUG", "SLEEP", "0.6"]);
    assert!(slow.starts_with(b"-TRYAGAIN"), "{}", show(&slow));
    let s = scrape(admin);
    assert_eq!(errors(&s, "upstream_timeout"), 1.0);
    assert_eq!(errors(&s, "tryagain"), 1.0);
    assert_eq!(commands(&s, "DEBUG", "error"), 1.0);
}

#[test]
fn upstream_loss_and_tryagain_are_counted() {
    let mut redis = RedisServer::start();
    let sidecar = start(SidecarToml::new(&redis.url()).upstream("connect_timeout = \"300ms\""));
    let admin = sidecar.admin_addr();
    wait_shared_connections(admin);
    let errors = |s: &Scrape, kind: &str| s.value("sidecar_errors_total", &[("kind", kind)]);
    // Redis goes away with a command in flight (held by CLIENT PAUSE), then is down.
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
    assert_reply(
        &redis.cmd(&["CLIENT", "PAUSE", "20000", "WRITE"]),
        b"+OK\r\n",
    );
    c.send(&common::encode_str(&["SET", "k", "v"]));
    wait_for("SET to reach the paused Redis", FOLLOW_TIMEOUT, || {
        String::from_utf8_lossy(&redis.cmd(&["CLIENT", "LIST"]))
            .contains("cmd=set")
            .then_some(())
    });
    redis.kill();
    let lost = c.read_reply();
    assert!(lost.starts_with(b"-ERR upstream"), "{}", show(&lost));
    let down = c.cmd_str(&["GET", "k"]);
    assert!(down.starts_with(b"-TRYAGAIN"), "{}", show(&down));
    let kind = [("kind", "shared")];
    // Each shared connection notices the loss on its own task: wait for both.
    let s = wait_for(
        "every shared connection to count its loss",
        FOLLOW_TIMEOUT,
        || {
            let s = scrape(admin);
            (s.value("sidecar_upstream_disconnects_total", &kind) >= 2.0).then_some(s)
        },
    );
    assert_eq!(errors(&s, "upstream_lost"), 1.0);
    assert_eq!(errors(&s, "tryagain"), 1.0);
    assert_eq!(errors(&s, "upstream_timeout"), 0.0);
    assert_eq!(commands(&s, "SET", "error"), 1.0);
    assert_eq!(commands(&s, "GET", "error"), 1.0);
    assert_eq!(s.value("sidecar_upstream_connections", &kind), 0.0);
    assert_eq!(s.value("sidecar_upstream_disconnects_total", &kind), 2.0);
}

#[test]
fn command_metrics_off_exports_no_command_series() {
    let redis = RedisServer::start();
    let sidecar = start(
        SidecarToml::new(&redis.url())
            .admin_line("command_metrics = false")
            .policy("deny_commands = [\"DEBUG\"]"),
    );
    let admin = sidecar.admin_addr();
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    let refused = c.cmd_str(&["DEBUG", "SLEEP", "0"]);
    assert!(refused.starts_with(b"-NOPERM"), "{}", show(&refused));
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*0\r\n");
    let s = scrape(admin);
    for name in [
        "sidecar_commands_total",
        "sidecar_command_duration_seconds",
        "sidecar_upstream_duration_seconds",
    ] {
        assert!(
            !s.samples.keys().any(|k| k.starts_with(name)),
            "{name} exported with command metrics off: {:#?}",
            s.samples.keys()
        );
    }
    // The other series are kept.
    assert_eq!(s.value("sidecar_client_connections_total", &[]), 1.0);
    assert_eq!(
        s.value(
            "sidecar_policy_refusals_total",
            &[("rule", "deny_commands")]
        ),
        1.0
    );
    assert_eq!(
        s.value("sidecar_upstream_connects_total", &[("kind", "pinned")]),
        1.0
    );
    assert_eq!(
        s.value("sidecar_errors_total", &[("kind", "protocol")]),
        0.0
    );
}

#[test]
fn cache_hits_are_counted_as_commands_in_order() {
    let redis = RedisServer::start();
    redis.cmd(&["SET", "session:x", "1"]);
    let sidecar = start(
        SidecarToml::new(&redis.url())
            .namespace("name = \"session\"\nprefix = \"session:\"\ncache = true"),
    );
    let admin = sidecar.admin_addr();
    wait_for("the cache stream to be up", FOLLOW_TIMEOUT, || {
        (scrape(admin).value("sidecar_cache_stream_up", &[]) == 1.0).then_some(())
    });
    let mut c = sidecar.conn();
    // A miss that fills, then hits answered straight into the output buffer...
    for _ in 0..4 {
        assert_reply(&c.cmd_str(&["GET", "session:x"]), b"$1\r\n1\r\n");
    }
    // ...and hits queued behind a write in one pipeline, then a refusal.
    let mut pipeline = Vec::new();
    for args in [
        &["GET", "session:x"][..],
        &["SET", "session:y", "2"],
        &["GET", "session:x"],
        &["EXISTS", "elsewhere"],
    ] {
        pipeline.extend_from_slice(&common::encode_str(args));
    }
    c.send(&pipeline);
    let replies = c.read_replies(4);
    assert_reply(&replies[0], b"$1\r\n1\r\n");
    assert_reply(&replies[1], b"+OK\r\n");
    assert_reply(&replies[2], b"$1\r\n1\r\n");
    assert!(replies[3].starts_with(b"-NOPERM"), "{}", show(&replies[3]));
    let s = scrape(admin);
    assert!(
        s.value("sidecar_cache_hits_total", &[("namespace", "session")]) >= 4.0,
        "the hits went through the cache"
    );
    assert_eq!(commands(&s, "GET", "ok"), 6.0);
    assert_eq!(duration_count(&s, "GET"), 6.0);
    assert_eq!(commands(&s, "SET", "ok"), 1.0);
    assert_eq!(commands(&s, "EXISTS", "refused"), 1.0);
    assert_eq!(commands(&s, "EXISTS", "ok"), 0.0);
}
