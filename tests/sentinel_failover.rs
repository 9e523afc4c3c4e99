//! Clients of the sidecar across Sentinel failovers, against real `redis-server`
//! and `redis-sentinel` processes: writes move to the new primary and nowhere
//! else, no client sees `-READONLY`, commands cut by the switch get an error in
//! their own slot and are never replayed, transactions and blocked clients get
//! clear errors, subscribers are carried over, and under a steady write load
//! every acknowledged write is on the new primary afterwards.
//!
//! Each test asserts what its clients were told, then checks that against the
//! data read directly from the nodes. Timings are printed (`--no-capture`), and
//! asserted only with wide margins.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::sentinel::{try_cmd, SentinelCluster};
use common::{
    assert_reply, encode_str, parse, parse_one, show, wait_for, RawConn, ReadEnd, RedisServer,
    Sidecar, SidecarToml, Value, READY_TIMEOUT,
};

/// Long enough for Sentinel to notice a dead primary (1 s) and promote the replica.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The sidecar in sentinel mode
// ---------------------------------------------------------------------------

/// Sidecar configuration following master `name` through the sentinels on `ports`.
fn sentinel_toml(name: &str, ports: &[u16], failover_wait: &str) -> SidecarToml {
    let list: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let mut toml = SidecarToml::new("unused");
    toml.url = None;
    toml.upstream("mode = \"sentinel\"")
        .upstream(&format!("sentinels = [{}]", list.join(", ")))
        .upstream(&format!("master_name = \"{name}\""))
        .upstream(&format!("failover_wait = \"{failover_wait}\""))
        .upstream("connect_timeout = \"500ms\"")
}

/// Sidecar logs in the test output when RUST_LOG is set (e.g. `resp_sidecar=debug`).
fn log_if_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A sidecar over all three sentinels of `cluster`, waiting up to 5 s for a primary.
fn start_sidecar(cluster: &SentinelCluster) -> Sidecar {
    log_if_asked();
    Sidecar::start(&sentinel_toml(
        &cluster.name,
        &cluster.sentinel_ports(),
        "5s",
    ))
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

fn text(r: &[u8]) -> String {
    String::from_utf8_lossy(r).into_owned()
}

fn is_error(r: &[u8]) -> bool {
    r.first() == Some(&b'-')
}

fn integer(r: &[u8]) -> Option<i64> {
    match parse(r) {
        Ok(Some((Value::Int(n), _))) => Some(n),
        _ => None,
    }
}

/// What an error reply caused by a failover tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// `-TRYAGAIN` before the command was sent: it did not run.
    NotSent,
    /// The command reached the old primary and may have run there.
    MaybeRun,
}

/// Classifies an error reply a failover may cause; any other error fails the
/// test, `-READONLY` above all.
#[track_caller]
fn failover_error(r: &[u8]) -> Cut {
    let t = text(r);
    assert!(!t.starts_with("-READONLY"), "a client saw {}", show(r));
    if t.contains("may have been executed") || t.starts_with("-ERR ") {
        Cut::MaybeRun
    } else if t.starts_with("-TRYAGAIN ") {
        Cut::NotSent
    } else {
        panic!("unexpected error reply: {}", show(r));
    }
}

/// A list of step numbers for a failure message: its length and its ends.
fn brief(seqs: &[u64]) -> String {
    if seqs.len() <= 12 {
        return format!("{seqs:?}");
    }
    let (head, tail) = (&seqs[..6], &seqs[seqs.len() - 6..]);
    format!("{} steps: {head:?} ... {tail:?}", seqs.len())
}

fn message(channel: &str, payload: &str) -> Vec<u8> {
    format!(
        "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
        channel.len(),
        payload.len()
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------
// Reading the nodes directly
// ---------------------------------------------------------------------------

/// One command straight to a node. Sentinel closes every normal client of a node
/// it reconfigures (`CLIENT KILL TYPE normal`), so a closed connection is
/// retried on a new one.
fn direct(node: &RedisServer, args: &[&str]) -> Vec<u8> {
    wait_for(
        &format!("{args:?} on {}", node.port()),
        READY_TIMEOUT,
        || try_cmd(node, args),
    )
}

/// The sequence numbers a writer pushed, as the list `key` on `node` holds them.
fn list_of(node: &RedisServer, key: &str) -> Vec<u64> {
    match parse_one(&direct(node, &["LRANGE", key, "0", "-1"])) {
        Value::Array(items) => items
            .iter()
            .map(|v| {
                let b = v.bytes().expect("bulk item");
                text(b).parse().expect("sequence number")
            })
            .collect(),
        other => panic!("LRANGE {key}: {other:?}"),
    }
}

fn counter_on(node: &RedisServer, key: &str) -> u64 {
    match parse_one(&direct(node, &["GET", key])) {
        Value::Bulk(b) => text(&b).parse().expect("counter"),
        Value::Nil => 0,
        other => panic!("GET {key}: {other:?}"),
    }
}

/// The first word of `ROLE` on `node`, if it answers.
fn role_of(node: &RedisServer) -> Option<String> {
    let mut c = RawConn::try_connect(node.addr()).ok()?;
    c.try_send(&encode_str(&["ROLE"])).ok()?;
    match parse_one(&c.try_read_reply().ok()?) {
        Value::Array(items) => items.first().and_then(Value::bytes).map(text),
        _ => None,
    }
}

/// The `cmdstat_<cmd>` line of `INFO commandstats`, if the command ever ran.
fn commandstat(node: &RedisServer, cmd: &str) -> Option<String> {
    let info = text(&direct(node, &["INFO", "commandstats"]));
    let prefix = format!("cmdstat_{cmd}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Each node's port, role, keyspace and the clients that last wrote, printed so
/// that a failed test shows where writes went.
fn print_nodes(cluster: &SentinelCluster) {
    for node in &cluster.nodes {
        let Some(role) = role_of(node) else {
            println!("node {}: down", node.port());
            continue;
        };
        let keyspace = text(&direct(node, &["INFO", "keyspace"]));
        let keyspace: Vec<&str> = keyspace.lines().filter(|l| l.starts_with("db")).collect();
        println!("node {} ({role}): {keyspace:?}", node.port());
        let clients = text(&direct(node, &["CLIENT", "LIST"]));
        for line in clients.lines() {
            let fields: Vec<&str> = line
                .split(' ')
                .filter(|f| {
                    ["addr=", "db=", "flags=", "cmd=", "age="]
                        .iter()
                        .any(|k| f.starts_with(k))
                })
                .collect();
            println!("  {}", fields.join(" "));
        }
    }
}

/// Subscribes to `+switch-master` on a sentinel; the receiver gets the moment it came.
fn watch_switch(sentinel: SocketAddr) -> mpsc::Receiver<Instant> {
    let mut conn = RawConn::connect(sentinel);
    let confirm = conn.cmd_str(&["SUBSCRIBE", "+switch-master"]);
    assert!(text(&confirm).contains("subscribe"), "{}", show(&confirm));
    conn.set_read_timeout(FAILOVER_TIMEOUT);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        if conn.try_read_reply().is_ok() {
            let _ = tx.send(Instant::now());
        }
    });
    rx
}

// ---------------------------------------------------------------------------
// Writers: clients writing through the sidecar in a loop
// ---------------------------------------------------------------------------

/// One round trip of a writer: the pipeline of step `seq`, its replies, and when.
struct Step {
    seq: u64,
    sent: Instant,
    done: Instant,
    replies: Vec<Vec<u8>>,
}

impl Step {
    fn ok(&self) -> bool {
        self.replies.iter().all(|r| !is_error(r))
    }
}

/// A client thread writing through the sidecar as fast as it is answered.
struct Writer {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<Vec<Step>, String>>>,
}

impl Writer {
    /// `commands(seq)` is the pipeline sent at step `seq` (numbered from 1).
    fn start(addr: SocketAddr, commands: impl Fn(u64) -> Vec<Vec<u8>> + Send + 'static) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let (s, o) = (stop.clone(), ok.clone());
        let thread = thread::spawn(move || write_until(addr, &s, &o, commands));
        Writer {
            stop,
            ok,
            thread: Some(thread),
        }
    }

    /// Waits for `more` answered steps without an error reply from now on.
    fn wait_more_ok(&self, more: u64, what: &str) {
        let target = self.ok.load(Ordering::SeqCst) + more;
        wait_for(what, FAILOVER_TIMEOUT, || {
            let ended = self.thread.as_ref().is_some_and(|t| t.is_finished());
            assert!(!ended, "a writer stopped while waiting for {what}");
            (self.ok.load(Ordering::SeqCst) >= target).then_some(())
        });
    }

    fn finish(mut self) -> Vec<Step> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().expect("writer thread").join() {
            Ok(Ok(steps)) => steps,
            Ok(Err(e)) => panic!("writer: {e}"),
            Err(_) => panic!("writer thread panicked"),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn write_until(
    addr: SocketAddr,
    stop: &AtomicBool,
    ok: &AtomicU64,
    commands: impl Fn(u64) -> Vec<Vec<u8>>,
) -> Result<Vec<Step>, String> {
    let mut conn = RawConn::try_connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Duration::from_secs(20));
    let mut steps = Vec::new();
    let mut seq = 0;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let pipeline = commands(seq);
        let sent = Instant::now();
        conn.try_send(&pipeline.concat())
            .map_err(|e| format!("step {seq}: send: {e}"))?;
        let mut replies = Vec::with_capacity(pipeline.len());
        for _ in 0..pipeline.len() {
            let reply = conn
                .try_read_reply()
                .map_err(|end| format!("step {seq}: no reply ({end:?})"))?;
            replies.push(reply);
        }
        let step = Step {
            seq,
            sent,
            done: Instant::now(),
            replies,
        };
        if step.ok() {
            ok.fetch_add(1, Ordering::SeqCst);
        }
        steps.push(step);
    }
    Ok(steps)
}

/// A writer pushing its step number onto `key`.
fn pusher(addr: SocketAddr, key: &'static str) -> Writer {
    Writer::start(addr, move |seq| {
        vec![encode_str(&["RPUSH", key, &seq.to_string()])]
    })
}

/// Four clients; each step is the pipeline `INCR counter`, `RPUSH list:<client> <seq>`.
fn start_load(addr: SocketAddr) -> Vec<Writer> {
    (0..4)
        .map(|client| {
            let list = format!("list:{client}");
            Writer::start(addr, move |seq| {
                vec![
                    encode_str(&["INCR", "counter"]),
                    encode_str(&["RPUSH", &list, &seq.to_string()]),
                ]
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Checks on what writers were told
// ---------------------------------------------------------------------------

/// Integer replies at position `at` of each step must grow from step to step: a
/// reply delivered to the wrong command or client breaks that. `drops` is how
/// often they may fall (a killed primary losing unreplicated writes).
fn check_growing(steps: &[Step], at: usize, drops: usize) {
    let mut last: Option<&Step> = None;
    let mut fell = 0;
    for s in steps {
        let r = &s.replies[at];
        if is_error(r) {
            failover_error(r);
            continue;
        }
        let n = integer(r).unwrap_or_else(|| panic!("step {}: answered {}", s.seq, show(r)));
        if let Some(prev) = last.filter(|p| integer(&p.replies[at]) >= Some(n)) {
            fell += 1;
            assert!(fell <= drops, "reply {at} fell: {}", around(steps, prev, s));
        }
        last = Some(s);
    }
}

/// Two steps of a writer, the steps between them, and their times, for a
/// failure message.
fn around(steps: &[Step], prev: &Step, this: &Step) -> String {
    let start = steps[0].sent;
    let describe = |s: &Step| {
        let replies: Vec<String> = s.replies.iter().map(|r| show(r)).collect();
        format!(
            "step {} sent at {:?}, answered after {:?}: {}",
            s.seq,
            s.sent - start,
            s.done - s.sent,
            replies.join(" ")
        )
    };
    let between = (prev.seq + 1..this.seq).map(|seq| describe(&steps[seq as usize - 1]));
    std::iter::once(describe(prev))
        .chain(between)
        .chain(std::iter::once(describe(this)))
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// RPUSH replies at position `at` are the lengths of the writer's own list: one
/// more than the last, plus at most the pushes cut in between.
fn check_lengths(steps: &[Step], at: usize, drops: usize) {
    check_growing(steps, at, drops);
    let mut last: Option<&Step> = None;
    let mut cut = 0;
    for s in steps {
        let Some(n) = integer(&s.replies[at]) else {
            cut += 1;
            continue;
        };
        let before = last.map_or(Some(0), |p| integer(&p.replies[at]));
        assert!(
            n <= before.unwrap_or(0) + 1 + cut,
            "list length grew by more than the pushes sent:\n  {}",
            last.map_or_else(
                || format!("first step: {}", show(&s.replies[at])),
                |p| around(steps, p, s)
            )
        );
        (last, cut) = (Some(s), 0);
    }
}

/// Checks a list of pushed step numbers against what the writer was told: in
/// order, nothing twice (nothing replayed), nothing the sidecar said it never
/// sent. Returns the acknowledged pushes missing from it.
fn check_pushes(list: &[u64], steps: &[Step], at: usize) -> Vec<u64> {
    if let Some(i) = list.windows(2).position(|w| w[0] >= w[1]) {
        panic!(
            "pushes out of order or repeated (a replay?): {:?}",
            &list[i.saturating_sub(3)..(i + 4).min(list.len())]
        );
    }
    let present: HashSet<u64> = list.iter().copied().collect();
    let last = steps.last().map_or(0, |s| s.seq);
    assert!(
        list.iter().all(|&x| (1..=last).contains(&x)),
        "list holds pushes this writer never sent"
    );
    let mut missing = Vec::new();
    for s in steps {
        let r = &s.replies[at];
        if !is_error(r) {
            if !present.contains(&s.seq) {
                missing.push(s.seq);
            }
        } else if failover_error(r) == Cut::NotSent {
            assert!(
                !present.contains(&s.seq),
                "push {} ran although the client was told {}",
                s.seq,
                show(r)
            );
        }
    }
    missing
}

/// Counts over all writers for the command at position `at`.
#[derive(Debug, Default)]
struct Tally {
    acked: u64,
    not_sent: u64,
    maybe_run: u64,
    first_error: Option<Instant>,
    last_error: Option<Instant>,
    longest: Duration,
}

impl Tally {
    fn of(runs: &[Vec<Step>], at: usize) -> Tally {
        let mut t = Tally::default();
        for s in runs.iter().flatten() {
            t.longest = t.longest.max(s.done - s.sent);
            let r = &s.replies[at];
            if !is_error(r) {
                t.acked += 1;
                continue;
            }
            match failover_error(r) {
                Cut::NotSent => t.not_sent += 1,
                Cut::MaybeRun => t.maybe_run += 1,
            }
            t.first_error = Some(t.first_error.map_or(s.sent, |f| f.min(s.sent)));
            t.last_error = Some(t.last_error.map_or(s.done, |l| l.max(s.done)));
        }
        t
    }

    fn errors(&self) -> u64 {
        self.not_sent + self.maybe_run
    }

    /// From the first errored command being sent to the last error reply.
    fn error_window(&self) -> Duration {
        match (self.first_error, self.last_error) {
            (Some(f), Some(l)) => l - f,
            _ => Duration::ZERO,
        }
    }
}

/// The first step answered without error after `at`, and how long after it came.
fn first_ok_after(runs: &[Vec<Step>], at: Instant) -> Duration {
    runs.iter()
        .flatten()
        .filter(|s| s.done > at && s.ok())
        .map(|s| s.done - at)
        .min()
        .expect("a successful write after the switch")
}

// ---------------------------------------------------------------------------
// A sentinel that lies
// ---------------------------------------------------------------------------

/// A sentinel naming 127.0.0.1:`port` as the primary of any master; it accepts
/// SUBSCRIBE and never publishes. Returns its own port.
fn fake_sentinel(port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake sentinel");
    let own = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || answer_as_sentinel(stream, port));
        }
    });
    own
}

fn answer_as_sentinel(mut stream: TcpStream, port: u16) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while let Ok(Some((request, used))) = parse(&buf) {
            buf.drain(..used);
            if stream.write_all(&sentinel_reply(&request, port)).is_err() {
                return;
            }
        }
    }
}

fn sentinel_reply(request: &Value, port: u16) -> Vec<u8> {
    let words: Vec<String> = match request {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.bytes().map(|b| text(b).to_lowercase()))
            .collect(),
        _ => Vec::new(),
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["sentinel", "get-master-addr-by-name", _] => {
            let port = port.to_string();
            format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{port}\r\n", port.len()).into_bytes()
        }
        ["sentinel", "sentinels", _] => b"*0\r\n".to_vec(),
        ["ping"] => b"+PONG\r\n".to_vec(),
        [cmd, ..] if cmd.ends_with("subscribe") => Vec::new(),
        _ => b"-ERR unknown command\r\n".to_vec(),
    }
}

// ---------------------------------------------------------------------------
// MONITOR on the old primary
// ---------------------------------------------------------------------------

/// One MONITOR line: Redis's unix time, the client's port, the arguments.
fn monitor_line(r: &[u8]) -> Option<(f64, u16, Vec<String>)> {
    let t = text(r);
    let line = t.strip_prefix('+')?.trim_end();
    let (time, rest) = line.split_once(" [")?;
    let (client, args) = rest.split_once("] ")?;
    let port = client.rsplit(':').next()?.parse().ok()?;
    let args = args
        .split(' ')
        .map(|a| a.trim_matches('"').to_string())
        .collect();
    Some((time.parse().ok()?, port, args))
}

/// Reads MONITOR lines until the connection closes. Sentinel closes it when it
/// turns the node into a replica (`SLAVEOF` followed by `CLIENT KILL TYPE normal`,
/// in one transaction), so the lines cover everything the node ran as a primary.
fn monitor_to_end(conn: &mut RawConn) -> Vec<(f64, u16, Vec<String>)> {
    conn.set_read_timeout(READY_TIMEOUT);
    let mut lines = Vec::new();
    loop {
        match conn.try_read_reply() {
            Ok(r) => lines.extend(monitor_line(&r)),
            Err(ReadEnd::Closed(_)) => return lines,
            Err(ReadEnd::TimedOut) => panic!(
                "MONITOR still open {READY_TIMEOUT:?} after the last line ({} lines)",
                lines.len()
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

#[test]
fn sentinel_failover_moves_writes_to_the_new_primary_and_nobody_sees_readonly() {
    let cluster = SentinelCluster::start("fo-writes");
    let sidecar = start_sidecar(&cluster);
    let new = &cluster.nodes[1];
    let switched = watch_switch(cluster.sentinels[1].addr());
    let writer = pusher(sidecar.addr(), "log");
    writer.wait_more_ok(50, "writes before the failover");

    cluster.failover();
    cluster.wait_primary_is(new.port(), FAILOVER_TIMEOUT);
    let switch_at = switched
        .recv_timeout(FAILOVER_TIMEOUT)
        .expect("+switch-master");
    writer.wait_more_ok(50, "writes after the failover");
    let runs = vec![writer.finish()];
    print_nodes(&cluster);

    check_lengths(&runs[0], 0, 0);
    let missing = check_pushes(&list_of(new, "log"), &runs[0], 0);
    assert!(
        missing.is_empty(),
        "acknowledged writes missing on the new primary: {}",
        brief(&missing)
    );
    let tally = Tally::of(&runs, 0);
    let resumed = first_ok_after(&runs, switch_at);
    println!(
        "SENTINEL FAILOVER, one writer: {} acked, {} errors ({} not sent, {} maybe run), \
         error window {:?}, longest write {:?}, first write {:?} after +switch-master",
        tally.acked,
        tally.errors(),
        tally.not_sent,
        tally.maybe_run,
        tally.error_window(),
        tally.longest,
        resumed
    );
    assert!(
        resumed < Duration::from_secs(2),
        "first write {resumed:?} after +switch-master"
    );

    let mut client = sidecar.conn();
    assert_reply(&client.cmd_str(&["SET", "after", "switch"]), b"+OK\r\n");
    assert_reply(&direct(new, &["GET", "after"]), b"$6\r\nswitch\r\n");
}

#[test]
fn frozen_primary_is_replaced_and_gets_no_client_writes_when_it_returns() {
    let cluster = SentinelCluster::start("fo-frozen");
    let sidecar = start_sidecar(&cluster);
    let (old, new) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut monitor = old.conn();
    assert_reply(&monitor.cmd_str(&["MONITOR"]), b"+OK\r\n");
    let writer = pusher(sidecar.addr(), "log");
    writer.wait_more_ok(50, "writes before the freeze");

    cluster.stop_node(0);
    let frozen_at = Instant::now();
    cluster.wait_primary_is(new.port(), FAILOVER_TIMEOUT);
    writer.wait_more_ok(50, "writes to the promoted replica");
    let resumed_at = unix_now();
    cluster.cont_node(0);
    // Each ROLE answered "master" ran before Sentinel demoted the node, so MONITOR
    // must show it: that proves the MONITOR lines cover the whole window.
    let mut answered_master = 0;
    wait_for(
        "the old primary to return as a replica",
        FAILOVER_TIMEOUT,
        || match role_of(old).as_deref() {
            Some("slave") => Some(()),
            Some("master") => {
                answered_master += 1;
                None
            }
            _ => None,
        },
    );
    writer.wait_more_ok(50, "writes once the old primary is a replica");
    let steps = writer.finish();

    check_lengths(&steps, 0, 1);
    let missing = check_pushes(&list_of(new, "log"), &steps, 0);
    let (lost, misrouted): (Vec<u64>, Vec<u64>) = missing
        .into_iter()
        .partition(|&seq| steps[seq as usize - 1].sent < frozen_at);
    assert!(
        misrouted.is_empty(),
        "writes acknowledged after the freeze are not on the new primary: {}",
        brief(&misrouted)
    );

    // What the old primary ran for clients once it ran again: only pushes whose
    // client was told they may have run (sent to it before the switch).
    let lines = monitor_to_end(&mut monitor);
    let ran = |name: &str| -> Vec<&Vec<String>> {
        lines
            .iter()
            .filter(|(time, _, args)| *time >= resumed_at && args[0].eq_ignore_ascii_case(name))
            .map(|(.., args)| args)
            .collect()
    };
    assert!(
        ran("role").len() >= answered_master,
        "MONITOR closed before the old primary was demoted"
    );
    let late: Vec<u64> = ran("rpush")
        .iter()
        .map(|args| args[2].parse().expect("seq"))
        .collect();
    for seq in &late {
        let r = &steps[*seq as usize - 1].replies[0];
        assert!(
            is_error(r) && failover_error(r) == Cut::MaybeRun,
            "the returned old primary ran push {seq}, and its client was told {}",
            show(r)
        );
    }
    // As a replica it refused no client write either.
    let rpush = commandstat(old, "rpush").unwrap_or_default();
    assert!(
        rpush.contains("rejected_calls=0"),
        "cmdstat_rpush on the old primary: {rpush}"
    );
    let tally = Tally::of(std::slice::from_ref(&steps), 0);
    println!(
        "SIGSTOP: {} acked, {} errors, error window {:?}, longest write {:?}; \
         acked before the freeze but lost: {}; cut pushes the old primary ran on return: {}",
        tally.acked,
        tally.errors(),
        tally.error_window(),
        tally.longest,
        lost.len(),
        late.len()
    );

    wait_for(
        "the old primary to hold what the new one holds",
        FAILOVER_TIMEOUT,
        || (list_of(old, "log") == list_of(new, "log")).then_some(()),
    );
}

#[test]
fn killed_primary_under_load_is_replaced_and_the_sidecar_adds_no_writes() {
    let mut cluster = SentinelCluster::start("fo-killed");
    let sidecar = start_sidecar(&cluster);
    let writers = start_load(sidecar.addr());
    for w in &writers {
        w.wait_more_ok(20, "load before the kill");
    }

    cluster.kill_node(0);
    let killed_at = Instant::now();
    cluster.wait_primary_is(cluster.node_port(1), FAILOVER_TIMEOUT);
    for w in &writers {
        w.wait_more_ok(20, "load on the promoted replica");
    }
    let runs: Vec<Vec<Step>> = writers.into_iter().map(Writer::finish).collect();

    let new = &cluster.nodes[1];
    let mut lost_pushes = 0;
    for (client, steps) in runs.iter().enumerate() {
        check_growing(steps, 0, 1);
        check_lengths(steps, 1, 1);
        let missing = check_pushes(&list_of(new, &format!("list:{client}")), steps, 1);
        let after: Vec<u64> = missing
            .iter()
            .copied()
            .filter(|&seq| steps[seq as usize - 1].sent > killed_at)
            .collect();
        assert!(
            after.is_empty(),
            "client {client}: pushes acknowledged after the kill are not on the new primary: {}",
            brief(&after)
        );
        lost_pushes += missing.len();
    }
    let tally = Tally::of(&runs, 0);
    let counter = counter_on(new, "counter");
    println!(
        "SIGKILL, 4 clients: {} INCRs acked, {} errors ({} not sent, {} maybe run), \
         error window {:?}, longest step {:?}; counter {counter}, acked INCRs lost by \
         asynchronous replication: {}, acked pushes lost: {lost_pushes}",
        tally.acked,
        tally.errors(),
        tally.not_sent,
        tally.maybe_run,
        tally.error_window(),
        tally.longest,
        tally.acked.saturating_sub(counter)
    );
    assert!(
        counter <= tally.acked + tally.maybe_run,
        "counter {counter} > {} acked + {} maybe run: a write was added",
        tally.acked,
        tally.maybe_run
    );

    let mut client = sidecar.conn();
    assert_reply(&client.cmd_str(&["SET", "after", "kill"]), b"+OK\r\n");
    assert_reply(&direct(new, &["GET", "after"]), b"$4\r\nkill\r\n");
}

#[test]
fn steady_load_across_sentinel_failover_keeps_every_reply_in_its_slot() {
    let cluster = SentinelCluster::start("fo-load");
    let sidecar = start_sidecar(&cluster);
    let new = &cluster.nodes[1];
    let switched = watch_switch(cluster.sentinels[1].addr());
    let writers = start_load(sidecar.addr());
    for w in &writers {
        w.wait_more_ok(20, "load before the failover");
    }

    let failover_at = Instant::now();
    cluster.failover();
    cluster.wait_primary_is(new.port(), FAILOVER_TIMEOUT);
    let switch_at = switched
        .recv_timeout(FAILOVER_TIMEOUT)
        .expect("+switch-master");
    for w in &writers {
        w.wait_more_ok(20, "load after the failover");
    }
    let runs: Vec<Vec<Step>> = writers.into_iter().map(Writer::finish).collect();
    print_nodes(&cluster);
    for (client, steps) in runs.iter().enumerate() {
        let start = steps[0].sent;
        println!(
            "client {client}: SENTINEL FAILOVER sent {:?}, +switch-master {:?} after its first step",
            failover_at - start,
            switch_at - start
        );
    }

    let mut values = HashSet::new();
    for (client, steps) in runs.iter().enumerate() {
        check_growing(steps, 0, 0);
        check_lengths(steps, 1, 0);
        let missing = check_pushes(&list_of(new, &format!("list:{client}")), steps, 1);
        assert!(
            missing.is_empty(),
            "client {client}: acknowledged pushes missing on the new primary: {}",
            brief(&missing)
        );
        for v in steps.iter().filter_map(|s| integer(&s.replies[0])) {
            assert!(
                values.insert(v),
                "INCR answered {v} twice: writes reached two primaries"
            );
        }
    }
    let tally = Tally::of(&runs, 0);
    let counter = counter_on(new, "counter");
    let resumed = first_ok_after(&runs, switch_at);
    println!(
        "SENTINEL FAILOVER, 4 clients: {} INCRs acked, {} errors ({} not sent, {} maybe run), \
         error window {:?}, longest step {:?}, first success {:?} after +switch-master; \
         counter on the new primary {counter}",
        tally.acked,
        tally.errors(),
        tally.not_sent,
        tally.maybe_run,
        tally.error_window(),
        tally.longest,
        resumed
    );
    assert!(
        counter >= tally.acked && counter <= tally.acked + tally.maybe_run,
        "counter {counter}, acked {}, maybe run {}",
        tally.acked,
        tally.maybe_run
    );
    let highest = values.iter().copied().max().unwrap_or(0);
    assert!(
        highest <= counter as i64,
        "a client was given {highest}, the counter is {counter}"
    );
}

#[test]
fn transactions_blocked_and_subscribed_clients_across_a_failover() {
    let cluster = SentinelCluster::start("fo-state");
    let sidecar = start_sidecar(&cluster);
    let (old, new) = (&cluster.nodes[0], &cluster.nodes[1]);

    let mut multi = sidecar.conn();
    assert_reply(&multi.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&multi.cmd_str(&["SET", "tx:a", "1"]), b"+QUEUED\r\n");

    let mut watch = sidecar.conn();
    assert_reply(&watch.cmd_str(&["SET", "w", "0"]), b"+OK\r\n");
    assert_reply(&watch.cmd_str(&["WATCH", "w"]), b"+OK\r\n");

    let mut blocked = sidecar.conn();
    blocked.send(&encode_str(&["BLPOP", "queue", "0"]));
    wait_for("BLPOP to block on the primary", READY_TIMEOUT, || {
        (old.info_field("blocked_clients") == Some(1)).then_some(())
    });

    let mut sub = sidecar.conn();
    assert_reply(
        &sub.cmd_str(&["SUBSCRIBE", "news"]),
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    );
    assert_reply(&direct(old, &["PUBLISH", "news", "before"]), b":1\r\n");
    assert_reply(&sub.read_reply(), &message("news", "before"));

    cluster.failover();
    cluster.wait_primary_is(new.port(), FAILOVER_TIMEOUT);
    let mut probe = sidecar.conn();
    let mut attempt = 0;
    wait_for(
        "a write through the sidecar on the new primary",
        FAILOVER_TIMEOUT,
        || {
            attempt += 1;
            let value = attempt.to_string();
            let r = probe.cmd_str(&["SET", "probe", &value]);
            assert!(r == b"+OK\r\n" || is_error(&r), "{}", show(&r));
            let on_new = parse_one(&direct(new, &["GET", "probe"]));
            (r == b"+OK\r\n" && on_new == Value::Bulk(value.into_bytes())).then_some(())
        },
    );

    // BLPOP: an error in its slot, and not sent again to the new primary.
    blocked.set_read_timeout(FAILOVER_TIMEOUT);
    let r = blocked.read_reply();
    assert!(
        is_error(&r),
        "BLPOP across the failover answered {}",
        show(&r)
    );
    failover_error(&r);
    assert_eq!(new.info_field("blocked_clients"), Some(0));
    assert_reply(&direct(new, &["LPUSH", "queue", "x"]), b":1\r\n");
    assert_reply(&direct(new, &["LLEN", "queue"]), b":1\r\n");
    assert_reply(&blocked.cmd_str(&["LPOP", "queue"]), b"$1\r\nx\r\n");

    // MULTI: what is queued after the switch errors, EXEC aborts, then the
    // client is out of the transaction and nothing of it ran.
    let r = multi.cmd_str(&["SET", "tx:b", "2"]);
    assert!(
        text(&r).starts_with("-ERR transaction aborted"),
        "{}",
        show(&r)
    );
    let r = multi.cmd_str(&["EXEC"]);
    assert!(text(&r).starts_with("-EXECABORT"), "{}", show(&r));
    assert_reply(&multi.cmd_str(&["SET", "tx:c", "3"]), b"+OK\r\n");
    assert_reply(&direct(new, &["EXISTS", "tx:a", "tx:b"]), b":0\r\n");
    assert_reply(&direct(new, &["GET", "tx:c"]), b"$1\r\n3\r\n");

    // WATCH: the watch cannot hold on the new primary, so EXEC answers nil.
    assert_reply(&watch.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&watch.cmd_str(&["SET", "w", "1"]), b"+QUEUED\r\n");
    assert_reply(&watch.cmd_str(&["EXEC"]), b"*-1\r\n");
    assert_reply(&direct(new, &["GET", "w"]), b"$1\r\n0\r\n");
    assert_reply(&watch.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&watch.cmd_str(&["SET", "w", "2"]), b"+QUEUED\r\n");
    assert_reply(&watch.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n");
    assert_reply(&direct(new, &["GET", "w"]), b"$1\r\n2\r\n");

    // SUBSCRIBE: carried over to the new primary without a word to the client.
    wait_for(
        "the subscriber on the new primary",
        FAILOVER_TIMEOUT,
        || (direct(new, &["PUBLISH", "news", "after"]) == b":1\r\n").then_some(()),
    );
    assert_reply(&sub.read_reply(), &message("news", "after"));
    assert_reply(&direct(old, &["PUBLISH", "news", "stale"]), b":0\r\n");
    assert_reply(&sub.cmd_str(&["PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
}

#[test]
fn one_sentinel_down_the_sidecar_serves_and_follows_a_failover() {
    let mut cluster = SentinelCluster::start("fo-one-down");
    cluster.kill_sentinel(0);
    // The dead sentinel is listed first.
    let sidecar = start_sidecar(&cluster);
    let mut client = sidecar.conn();
    assert_reply(&client.cmd_str(&["SET", "k", "before"]), b"+OK\r\n");
    assert_reply(
        &direct(&cluster.nodes[0], &["GET", "k"]),
        b"$6\r\nbefore\r\n",
    );

    cluster.failover();
    let new = &cluster.nodes[1];
    cluster.wait_primary_is(new.port(), FAILOVER_TIMEOUT);
    wait_for("a write on the new primary", FAILOVER_TIMEOUT, || {
        let r = client.cmd_str(&["SET", "k", "after"]);
        assert!(r == b"+OK\r\n" || is_error(&r), "{}", show(&r));
        if is_error(&r) {
            failover_error(&r);
        }
        (direct(new, &["GET", "k"]) == b"$5\r\nafter\r\n").then_some(())
    });
}

#[test]
fn all_sentinels_down_at_start_tryagain_then_served_once_they_return() {
    let mut cluster = SentinelCluster::start("fo-all-down");
    for i in 0..3 {
        cluster.kill_sentinel(i);
    }
    let sidecar = Sidecar::start(&sentinel_toml(
        &cluster.name,
        &cluster.sentinel_ports(),
        "1s",
    ));
    let mut client = sidecar.conn();
    let asked = Instant::now();
    let r = client.cmd_str(&["SET", "k", "v"]);
    let took = asked.elapsed();
    assert!(
        text(&r).starts_with("-TRYAGAIN ") && text(&r).contains("no sentinel reachable"),
        "{}",
        show(&r)
    );
    assert!(took < Duration::from_secs(4), "answered after {took:?}");

    for i in 0..3 {
        cluster.start_sentinel(i);
    }
    let back = Instant::now();
    let mut refused = 0;
    wait_for(
        "a write once the sentinels are back",
        FAILOVER_TIMEOUT,
        || {
            let r = client.cmd_str(&["SET", "k", "v"]);
            if r == b"+OK\r\n" {
                return Some(());
            }
            assert!(text(&r).starts_with("-TRYAGAIN "), "{}", show(&r));
            refused += 1;
            None
        },
    );
    println!(
        "all sentinels down: TRYAGAIN after {took:?}; served {:?} after they returned \
         ({refused} more TRYAGAIN)",
        back.elapsed()
    );
    assert_reply(&direct(&cluster.nodes[0], &["GET", "k"]), b"$1\r\nv\r\n");
}

#[test]
fn a_lying_sentinel_listed_first_never_gets_writes_onto_the_replica() {
    let cluster = SentinelCluster::start("fo-liar");
    let (primary, replica) = (&cluster.nodes[0], &cluster.nodes[1]);
    let liar = fake_sentinel(replica.port());
    // The harness read one key on the replica; nothing else may.
    let gets_before = commandstat(replica, "get");

    // The liar alone: writes are refused, clearly, and never tried on the replica.
    let alone = Sidecar::start(&sentinel_toml(&cluster.name, &[liar], "1s"));
    let r = alone.conn().cmd_str(&["SET", "lie", "alone"]);
    assert!(text(&r).starts_with("-TRYAGAIN "), "{}", show(&r));
    drop(alone);

    // The liar first, the real sentinels after it.
    let mut ports = vec![liar];
    ports.extend(cluster.sentinel_ports());
    let sidecar = Sidecar::start(&sentinel_toml(&cluster.name, &ports, "5s"));
    let mut client = sidecar.conn();
    let mut written = Vec::new();
    for i in 0..200 {
        let key = format!("lie:{i}");
        let set = client.cmd_str(&["SET", &key, "v"]);
        let stored = set == b"+OK\r\n";
        if !stored {
            assert_eq!(failover_error(&set), Cut::NotSent, "{}", show(&set));
        }
        let get = client.cmd_str(&["GET", &key]);
        let want: &[u8] = if stored { b"$1\r\nv\r\n" } else { b"$-1\r\n" };
        assert!(
            get == want || failover_error(&get) == Cut::NotSent,
            "SET answered {}, then GET {}",
            show(&set),
            show(&get)
        );
        if stored {
            written.push(key);
        }
    }
    println!(
        "lying sentinel first: {} of 200 writes served",
        written.len()
    );
    assert!(!written.is_empty(), "no write was served");
    for key in &written {
        assert_reply(&direct(primary, &["GET", key]), b"$1\r\nv\r\n");
    }
    // The replica never ran a client's GET nor refused a client's SET.
    assert_eq!(commandstat(replica, "get"), gets_before);
    let set = commandstat(replica, "set").unwrap_or_default();
    assert!(
        set.is_empty() || set.contains("rejected_calls=0"),
        "cmdstat_set on the replica: {set}"
    );
}

/// The cache's invalidation stream follows the primary: a failover ends the
/// generation (nothing cached before it is served as fresh), and the stream is
/// resubscribed on the new primary, whose writes invalidate again.
#[test]
fn a_failover_unverifies_the_cache_and_its_stream_follows_the_new_primary() {
    let cluster = SentinelCluster::start("fo-cache");
    let old = &cluster.nodes[0];
    let new = &cluster.nodes[1];
    old.cmd(&["SET", "session:s", "before"]);
    let toml = sentinel_toml(&cluster.name, &cluster.sentinel_ports(), "5s")
        .namespace("name = \"session\"\nprefix = \"session:\"\ncache = true");
    let sidecar = Sidecar::start(&toml);
    let mut c = sidecar.conn();
    wait_for("cache live", Duration::from_secs(10), || {
        (c.sidecar_info("cache_state") == "live").then_some(())
    });
    assert_reply(&c.cmd_str(&["GET", "session:s"]), b"$6\r\nbefore\r\n");
    assert_reply(&c.cmd_str(&["GET", "session:s"]), b"$6\r\nbefore\r\n");
    assert_eq!(c.sidecar_info("cache_hits"), "1");

    cluster.failover();
    cluster.wait_primary_is(new.port(), FAILOVER_TIMEOUT);
    wait_for("stream lost", FAILOVER_TIMEOUT, || {
        (c.sidecar_info("cache_streams_lost") != "0").then_some(())
    });
    wait_for("cache live on the new primary", FAILOVER_TIMEOUT, || {
        (c.sidecar_info("cache_state") == "live").then_some(())
    });
    assert_eq!(
        c.sidecar_info("cache_entries"),
        "0",
        "emptied by the failover"
    );
    // The new primary's writes reach this sidecar's cache.
    let read = |c: &mut common::RawConn| c.cmd_str(&["GET", "session:s"]);
    wait_for("reads served again", FAILOVER_TIMEOUT, || {
        (read(&mut c) == b"$6\r\nbefore\r\n").then_some(())
    });
    assert_reply(&read(&mut c), b"$6\r\nbefore\r\n");
    assert_reply(&new.cmd(&["SET", "session:s", "after"]), b"+OK\r\n");
    wait_for(
        "invalidation from the new primary",
        Duration::from_secs(2),
        || (read(&mut c) == b"$5\r\nafter\r\n").then_some(()),
    );
}
