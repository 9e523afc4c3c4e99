//! Sentinel discovery against real `redis-server` and `redis-sentinel`
//! processes, through the `Discovery` API the data path uses: resolve and
//! verify, follow `SENTINEL FAILOVER` and a killed primary, survive sentinels
//! being down, name the problem when nothing can be resolved, and never trust
//! a sentinel that names a replica.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use common::sentinel::{endpoint, sentinel_config, SentinelCluster, SentinelProcess};
use common::{parse, wait_for, RedisServer, Value};
use resp_sidecar::config::{Endpoint, UpstreamConfig};
use resp_sidecar::upstream::sentinel::{Discovery, PrimaryState};

/// Discovery running on its own runtime, with every published state recorded.
struct Running {
    rt: tokio::runtime::Runtime,
    discovery: Discovery,
    history: Arc<Mutex<Vec<PrimaryState>>>,
    shutdown: CancellationToken,
}

impl Running {
    fn start(cfg: &UpstreamConfig) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let shutdown = CancellationToken::new();
        let _entered = rt.enter();
        let discovery = Discovery::spawn(cfg, shutdown.clone());
        let history = Arc::new(Mutex::new(vec![discovery.current()]));
        let mut rx = discovery.subscribe();
        let record = history.clone();
        rt.spawn(async move {
            while rx.changed().await.is_ok() {
                let state = rx.borrow_and_update().clone();
                record.lock().expect("history").push(state);
            }
        });
        Running {
            rt,
            discovery,
            history,
            shutdown,
        }
    }

    fn wait_verified(&self, limit: Duration) -> PrimaryState {
        self.rt.block_on(self.discovery.wait_verified(limit))
    }

    /// Polls until the current state satisfies `check`.
    fn wait_state(&self, what: &str, limit: Duration, check: impl Fn(&PrimaryState) -> bool) {
        wait_for(what, limit, || {
            let state = self.discovery.current();
            check(&state).then_some(())
        });
    }

    fn history(&self) -> Vec<PrimaryState> {
        self.history.lock().expect("history").clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn verified_on(state: &PrimaryState, port: u16) -> bool {
    state.endpoint() == Some(&endpoint(port))
}

fn unknown_because(state: &PrimaryState, text: &str) -> bool {
    matches!(state, PrimaryState::Unknown { reason } if reason.contains(text))
}

#[test]
fn resolves_and_verifies_the_primary() {
    let cluster = SentinelCluster::start("mymaster");
    let running = Running::start(&cluster.upstream_config());
    let state = running.wait_verified(Duration::from_secs(10));
    assert!(verified_on(&state, cluster.node_port(0)), "{state:?}");
    assert!(matches!(state, PrimaryState::Verified { epoch: 1, .. }));
    assert_eq!(running.discovery.failovers(), 0);
}

#[test]
fn sentinel_failover_holds_writes_then_verifies_the_former_replica() {
    let cluster = SentinelCluster::start("mymaster");
    let running = Running::start(&cluster.upstream_config());
    let (old, new) = (cluster.node_port(0), cluster.node_port(1));
    assert!(verified_on(
        &running.wait_verified(Duration::from_secs(10)),
        old
    ));

    let started = Instant::now();
    cluster.failover();
    running.wait_state(
        "verified on the former replica",
        Duration::from_secs(15),
        |s| verified_on(s, new),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(matches!(
        running.discovery.current(),
        PrimaryState::Verified { epoch: 2, .. }
    ));
    assert_eq!(running.discovery.failovers(), 1);

    // The failover was announced before the switch, and the old primary was never
    // published again once it started.
    let history = running.history();
    let hold = history
        .iter()
        .position(|s| matches!(s, PrimaryState::FailingOver { .. }))
        .unwrap_or_else(|| panic!("no FailingOver in {history:?}"));
    assert!(
        history[hold..].iter().all(|s| !verified_on(s, old)),
        "{history:?}"
    );
    cluster.wait_primary_is(new, Duration::from_secs(15));
}

#[test]
fn killed_primary_is_followed_to_the_promoted_replica() {
    let mut cluster = SentinelCluster::start("killed");
    let running = Running::start(&cluster.upstream_config());
    let new = cluster.node_port(1);
    assert!(verified_on(
        &running.wait_verified(Duration::from_secs(10)),
        cluster.node_port(0)
    ));
    cluster.kill_node(0);
    running.wait_state("verified on the replica", Duration::from_secs(20), |s| {
        verified_on(s, new)
    });
    assert_eq!(running.discovery.failovers(), 1);
}

#[test]
fn one_sentinel_down_still_resolves() {
    let mut cluster = SentinelCluster::start("mymaster");
    cluster.kill_sentinel(0);
    let running = Running::start(&cluster.upstream_config());
    let state = running.wait_verified(Duration::from_secs(10));
    assert!(verified_on(&state, cluster.node_port(0)), "{state:?}");
}

#[test]
fn all_sentinels_down_at_start_then_verified_once_they_return() {
    let mut cluster = SentinelCluster::start("mymaster");
    for i in 0..3 {
        cluster.kill_sentinel(i);
    }
    let running = Running::start(&cluster.upstream_config());
    running.wait_state("no sentinel reachable", Duration::from_secs(10), |s| {
        unknown_because(s, "no sentinel reachable")
    });
    for i in 0..3 {
        cluster.start_sentinel(i);
    }
    let state = running.wait_verified(Duration::from_secs(15));
    assert!(verified_on(&state, cluster.node_port(0)), "{state:?}");
}

#[test]
fn a_name_no_sentinel_knows_is_reported_as_such() {
    let redis = RedisServer::start();
    let sentinel = SentinelProcess::start("known", redis.port());
    let cfg = sentinel_config("nosuch", vec![endpoint(sentinel.port())]);
    let running = Running::start(&cfg);
    running.wait_state("unknown master", Duration::from_secs(10), |s| {
        unknown_because(s, "no sentinel knows master nosuch")
    });
}

/// A fake sentinel answering `get-master-addr-by-name` with `answer`; counts questions.
fn fake_sentinel(rt: &tokio::runtime::Runtime, answer: u16) -> (Endpoint, Arc<Mutex<usize>>) {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind fake sentinel");
    let port = listener.local_addr().expect("addr").port();
    let asked = Arc::new(Mutex::new(0));
    let count = asked.clone();
    rt.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = socket.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Ok(Some((request, used))) = parse(&buf) {
                        buf.drain(..used);
                        let reply = fake_reply(&request, answer, &count);
                        if socket.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (endpoint(port), asked)
}

fn fake_reply(request: &Value, answer: u16, asked: &Mutex<usize>) -> Vec<u8> {
    let words: Vec<String> = match request {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.bytes().map(|b| String::from_utf8_lossy(b).to_lowercase()))
            .collect(),
        _ => Vec::new(),
    };
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["sentinel", "get-master-addr-by-name", _] => {
            *asked.lock().expect("count") += 1;
            let port = answer.to_string();
            format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{port}\r\n", port.len()).into_bytes()
        }
        ["sentinel", "sentinels", _] => b"*0\r\n".to_vec(),
        ["ping"] => b"+PONG\r\n".to_vec(),
        [cmd, ..] if cmd.ends_with("subscribe") => Vec::new(),
        _ => b"-ERR unknown command\r\n".to_vec(),
    }
}

#[test]
fn a_sentinel_naming_a_replica_is_never_trusted() {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (liar, asked) = fake_sentinel(&rt, replica.port());
    let (honest, _) = fake_sentinel(&rt, primary.port());
    std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));

    // Only the liar: the ROLE check refuses the replica, round after round.
    let running = Running::start(&sentinel_config("mymaster", vec![liar.clone()]));
    running.wait_state("role refusal", Duration::from_secs(10), |s| {
        unknown_because(
            s,
            &format!("127.0.0.1:{} reports role slave", replica.port()),
        )
    });
    wait_for("five rounds", Duration::from_secs(10), || {
        (*asked.lock().expect("count") >= 5).then_some(())
    });
    assert!(
        running
            .history()
            .iter()
            .all(|s| !matches!(s, PrimaryState::Verified { .. })),
        "{:?}",
        running.history()
    );
    drop(running);

    // The liar first, then an honest sentinel: the primary is found, never the replica.
    let running = Running::start(&sentinel_config("mymaster", vec![liar, honest]));
    let state = running.wait_verified(Duration::from_secs(10));
    assert!(verified_on(&state, primary.port()), "{state:?}");
    assert!(running
        .history()
        .iter()
        .all(|s| !verified_on(s, replica.port())));
}
