//! A Sentinel-managed deployment for the tests: a primary, one replica and three
//! sentinels (quorum 2, `down-after-milliseconds` 1000) on free loopback ports,
//! each in its own temp dir.
//!
//! `start` returns only when the deployment is really ready: the replica's
//! link to the primary is up and every sentinel sees the replica and both
//! other sentinels. Processes can be killed, frozen (SIGSTOP) and resumed;
//! everything is killed on drop. No fixed ports, no fixed sleeps.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use resp_sidecar::config::{Endpoint, UpstreamConfig, UpstreamMode};

use super::{
    encode_str, free_port, listens_on, parse_one, wait_for, RawConn, RedisServer, Value,
    READY_TIMEOUT,
};

/// How long a whole deployment gets to agree on its topology.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One `redis-sentinel` process with its (Sentinel-rewritten) config file.
pub struct SentinelProcess {
    child: Option<Child>,
    port: u16,
    conf: PathBuf,
    _dir: TempDir,
}

impl SentinelProcess {
    /// Starts a sentinel monitoring `name` at `primary_port`, retrying on a port race.
    pub fn start(name: &str, primary_port: u16) -> SentinelProcess {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = TempDir::new().expect("tempdir");
            let conf = dir.path().join("sentinel.conf");
            let port = free_port();
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel resolve-hostnames no\n\
                 sentinel monitor {name} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n",
                dir = dir.path().display()
            );
            std::fs::write(&conf, text).expect("write sentinel.conf");
            let mut sentinel = SentinelProcess {
                child: None,
                port,
                conf,
                _dir: dir,
            };
            match sentinel.spawn() {
                Ok(()) => return sentinel,
                Err(e) => last = e,
            }
        }
        panic!("could not start redis-sentinel: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new("redis-sentinel")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-sentinel: {e}"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-sentinel exited early: {status}"));
            }
            // Only its own answer counts (see `listens_on`).
            let own = listens_on(child.id(), self.port);
            if let Some(mut c) = own
                .then(|| RawConn::try_connect(self.addr()).ok())
                .flatten()
            {
                c.set_read_timeout(Duration::from_secs(2));
                if c.try_send(b"PING\r\n").is_ok()
                    && c.try_read_reply() == Ok(b"+PONG\r\n".to_vec())
                {
                    self.child = Some(child);
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-sentinel on {} not ready", self.port));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the sentinel (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with its rewritten config.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => panic!("sentinel restart: {e}"),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// One command, parsed reply.
    pub fn cmd(&self, args: &[&str]) -> Value {
        let reply = RawConn::connect(self.addr()).cmd_str(args);
        parse_one(&reply)
    }

    /// A field of `SENTINEL master NAME`.
    pub fn master_field(&self, name: &str, field: &str) -> Option<String> {
        let reply = RawConn::try_connect(self.addr())
            .ok()?
            .cmd_str(&["SENTINEL", "master", name]);
        let value = parse_one(&reply);
        value
            .field(field)
            .and_then(Value::bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A primary, one replica and three sentinels.
pub struct SentinelCluster {
    pub name: String,
    /// `nodes[0]` starts as the primary, `nodes[1]` as its replica.
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProcess>,
}

impl SentinelCluster {
    pub fn start(name: &str) -> SentinelCluster {
        let primary = RedisServer::start();
        let port = primary.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(name, primary.port()))
            .collect();
        let cluster = SentinelCluster {
            name: name.to_string(),
            nodes: vec![primary, replica],
            sentinels,
        };
        cluster.wait_ready();
        cluster
    }

    fn wait_ready(&self) {
        wait_for("replica in sync", CLUSTER_READY_TIMEOUT, || {
            let info = try_cmd(&self.nodes[1], &["INFO", "replication"])?;
            String::from_utf8_lossy(&info)
                .contains("master_link_status:up")
                .then_some(())
        });
        // "link up" is reported before the primary streams writes to the replica (diskless
        // sync waits for the first ack): prove the stream flows, or a failover right after
        // start would promote a replica that missed writes.
        let (primary, replica) = (&self.nodes[0], &self.nodes[1]);
        wait_for("primary to accept the probe", CLUSTER_READY_TIMEOUT, || {
            (try_cmd(primary, &["SET", "harness:streaming", "yes"])? == b"+OK\r\n").then_some(())
        });
        wait_for(
            "the primary to stream to its replica",
            CLUSTER_READY_TIMEOUT,
            || {
                let got = try_cmd(replica, &["GET", "harness:streaming"])?;
                (got == b"$3\r\nyes\r\n").then_some(())
            },
        );
        wait_for("probe removed", CLUSTER_READY_TIMEOUT, || {
            try_cmd(primary, &["DEL", "harness:streaming"]).map(|_| ())
        });
        wait_for("sentinels to agree", CLUSTER_READY_TIMEOUT, || {
            self.sentinels
                .iter()
                .all(|s| {
                    s.master_field(&self.name, "num-other-sentinels").as_deref() == Some("2")
                        && s.master_field(&self.name, "num-slaves").as_deref() == Some("1")
                })
                .then_some(())
        });
    }

    pub fn node_port(&self, i: usize) -> u16 {
        self.nodes[i].port()
    }

    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(SentinelProcess::port).collect()
    }

    /// An upstream config in sentinel mode listing the three sentinels.
    pub fn upstream_config(&self) -> UpstreamConfig {
        let sentinels = self.sentinel_ports().into_iter().map(endpoint).collect();
        sentinel_config(&self.name, sentinels)
    }

    /// `SENTINEL FAILOVER` through the first running sentinel.
    pub fn failover(&self) {
        let sentinel = self
            .sentinels
            .iter()
            .find(|s| s.is_running())
            .expect("a running sentinel");
        let reply = sentinel.cmd(&["SENTINEL", "FAILOVER", &self.name]);
        assert_eq!(reply, Value::Simple(b"OK".to_vec()), "SENTINEL FAILOVER");
    }

    /// Waits until every running sentinel names `port` and that node says ROLE master.
    pub fn wait_primary_is(&self, port: u16, timeout: Duration) {
        wait_for(&format!("primary to be {port}"), timeout, || {
            let want = Value::Array(vec![
                Value::Bulk(b"127.0.0.1".to_vec()),
                Value::Bulk(port.to_string().into_bytes()),
            ]);
            let ask = encode_str(&["SENTINEL", "get-master-addr-by-name", &self.name]);
            let agreed = self.sentinels.iter().filter(|s| s.is_running()).all(|s| {
                let Ok(mut c) = RawConn::try_connect(s.addr()) else {
                    return false;
                };
                c.try_send(&ask).is_ok() && c.try_read_reply().is_ok_and(|r| parse_one(&r) == want)
            });
            let node = self.nodes.iter().find(|n| n.port() == port)?;
            // Sentinel closes normal clients of nodes it reconfigures: retry, never panic.
            let role = parse_one(&try_cmd(node, &["ROLE"])?);
            let is_master = matches!(&role, Value::Array(items)
                if items.first() == Some(&Value::Bulk(b"master".to_vec())));
            (agreed && is_master).then_some(())
        });
    }

    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Freezes a node with SIGSTOP.
    pub fn stop_node(&self, i: usize) {
        signal(self.nodes[i].pid(), "STOP");
    }

    /// Resumes a frozen node with SIGCONT.
    pub fn cont_node(&self, i: usize) {
        signal(self.nodes[i].pid(), "CONT");
    }

    pub fn kill_sentinel(&mut self, i: usize) {
        self.sentinels[i].kill();
    }

    pub fn start_sentinel(&mut self, i: usize) {
        self.sentinels[i].restart();
    }
}

impl Drop for SentinelCluster {
    fn drop(&mut self) {
        // A frozen process must be resumed or killed; SIGKILL works on both.
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

fn signal(pid: Option<u32>, sig: &str) {
    let pid = pid.expect("process running");
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// A loopback endpoint.
pub fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".to_string(),
        port,
    }
}

/// Sentinel-mode upstream settings with a short connect timeout.
pub fn sentinel_config(name: &str, sentinels: Vec<Endpoint>) -> UpstreamConfig {
    UpstreamConfig {
        mode: UpstreamMode::Sentinel,
        sentinels,
        master_name: name.to_string(),
        connect_timeout: Duration::from_millis(500),
        ..UpstreamConfig::default()
    }
}

/// One command on a fresh connection to `node`; None when the connection is refused or
/// closed (Sentinel runs `CLIENT KILL TYPE normal` on nodes it reconfigures).
pub fn try_cmd(node: &RedisServer, args: &[&str]) -> Option<Vec<u8>> {
    let mut c = RawConn::try_connect(node.addr()).ok()?;
    c.try_send(&encode_str(args)).ok()?;
    c.try_read_reply().ok()
}
