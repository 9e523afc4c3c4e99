//! Shared harness for the integration tests: real `redis-server` processes on
//! free loopback ports, the sidecar run in-process through `resp_sidecar::run`
//! or as the `resp-sidecar` binary, and a small raw RESP client that returns
//! the exact bytes of each reply.
//!
//! Nothing here uses a fixed port or a fixed sleep: readiness is polled with a
//! deadline, and every spawned process is killed when its handle is dropped.

#![allow(dead_code)]

pub mod http;
pub mod migration;
pub mod resp;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)]
pub use resp::{frame_len, parse, parse_one, Value};

/// How long a single reply may take before a test fails instead of hanging.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long processes get to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, or panics with `what` at the deadline.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A loopback port that was free a moment ago (bind to port 0, read, drop).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// True when process `pid` holds the listening socket on 127.0.0.1:`port`. Two tests can
/// be handed the same free port; the one whose server then fails to bind would find the
/// other's server answering, pass its readiness check and share it (and lose it when
/// the other test ends). Read from `/proc/net/tcp` and the process's descriptors; where
/// `/proc` cannot be read, true (the answer alone decides, as before).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return true;
    };
    let local = format!("0100007F:{port:04X}");
    // Columns: sl, local_address, rem_address, st (0A = LISTEN), ..., inode (10th).
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
                .then(|| f.get(9).map(|inode| format!("socket:[{inode}]")))
                .flatten()
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Encodes a command given as string arguments.
pub fn encode_str(args: &[&str]) -> Vec<u8> {
    let v: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    encode(&v)
}

/// Renders bytes readably in assertion messages.
pub fn show(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b.iter().take(400) {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > 400 {
        s.push_str(&format!("... ({} bytes)", b.len()));
    }
    s
}

/// Asserts exact reply bytes with a readable message.
#[track_caller]
pub fn assert_reply(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "reply mismatch\n  want: {}\n   got: {}",
        show(want),
        show(got)
    );
}

// ---------------------------------------------------------------------------
// Raw RESP client
// ---------------------------------------------------------------------------

/// What a read ended with when it did not produce a whole reply.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The peer closed (EOF or reset) with this many unconsumed bytes.
    Closed(Vec<u8>),
    /// Nothing complete arrived before the timeout.
    TimedOut,
}

/// A blocking RESP connection that returns the exact bytes of each reply.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects with a read timeout so a missing reply fails the test.
    pub fn connect(addr: SocketAddr) -> RawConn {
        Self::try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// A second handle on the same socket, e.g. for a writer thread.
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("clone stream")
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).expect("set timeout");
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write failed: {e}"));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads exactly one reply and returns its bytes; panics on close/timeout.
    pub fn read_reply(&mut self) -> Vec<u8> {
        match self.try_read_reply() {
            Ok(r) => r,
            Err(e) => panic!("expected a reply, got {e:?}"),
        }
    }

    /// Reads one reply, or says why there was none.
    pub fn try_read_reply(&mut self) -> Result<Vec<u8>, ReadEnd> {
        loop {
            match frame_len(&self.buf) {
                Ok(Some(n)) => return Ok(self.buf.drain(..n).collect()),
                Ok(None) => {}
                Err(e) => panic!("unparseable reply ({e}): {}", show(&self.buf)),
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadEnd::Closed(std::mem::take(&mut self.buf))),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => return Err(ReadEnd::TimedOut),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadEnd::Closed(std::mem::take(&mut self.buf))),
            }
        }
    }

    /// Reads `n` replies.
    pub fn read_replies(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| self.read_reply()).collect()
    }

    /// Sends one command and returns its reply bytes.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode(args));
        self.read_reply()
    }

    /// `cmd` with string arguments.
    /// One field of `INFO sidecar` ("" when absent).
    pub fn sidecar_info(&mut self, field: &str) -> String {
        let reply = String::from_utf8_lossy(&self.cmd_str(&["INFO", "sidecar"])).into_owned();
        reply
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or("")
            .to_string()
    }

    pub fn cmd_str(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(&encode_str(args));
        self.read_reply()
    }

    /// Waits until the peer closes the connection; panics if a reply arrives
    /// or it stays open past `timeout`. Returns bytes received but not parsed.
    pub fn expect_closed(&mut self, timeout: Duration) -> Vec<u8> {
        self.set_read_timeout(timeout);
        match self.try_read_reply() {
            Err(ReadEnd::Closed(rest)) => rest,
            Err(ReadEnd::TimedOut) => panic!("connection still open after {timeout:?}"),
            Ok(r) => panic!("expected the connection to close, got reply {}", show(&r)),
        }
    }

    /// Half-closes the writing side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

// ---------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------

/// A `redis-server` on a free loopback port in its own temp dir.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    dir: TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts with extra `redis-server` arguments, retrying on a port race.
    pub fn start_with(args: &[&str]) -> RedisServer {
        let dir = TempDir::new().expect("tempdir");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn_redis(port, &args, dir.path()) {
                Ok(child) => {
                    return RedisServer {
                        child: Some(child),
                        port,
                        args,
                        dir,
                    }
                }
                Err(e) => last_err = e,
            }
        }
        panic!("could not start redis-server: {last_err}");
    }

    /// Starts on a given port (used to bring an upstream up late).
    pub fn start_on_port(port: u16, args: &[&str]) -> RedisServer {
        let dir = TempDir::new().expect("tempdir");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let child = spawn_redis(port, &args, dir.path())
            .unwrap_or_else(|e| panic!("redis-server on {port}: {e}"));
        RedisServer {
            child: Some(child),
            port,
            args,
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts again on the same port with the same arguments (empty dataset).
    pub fn restart(&mut self) {
        self.kill();
        let mut last_err = String::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            match spawn_redis(self.port, &self.args, self.dir.path()) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) => last_err = e,
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "restart of redis-server on {} failed: {last_err}",
            self.port
        );
    }

    /// A fresh direct connection to this server.
    pub fn conn(&self) -> RawConn {
        let mut c = RawConn::connect(self.addr());
        if let Some(pass) = self.password() {
            assert_reply(&c.cmd_str(&["AUTH", &pass]), b"+OK\r\n");
        }
        c
    }

    /// One command straight to Redis, returning the reply bytes.
    pub fn cmd(&self, args: &[&str]) -> Vec<u8> {
        self.conn().cmd_str(args)
    }

    fn password(&self) -> Option<String> {
        let i = self.args.iter().position(|a| a == "--requirepass")?;
        self.args.get(i + 1).cloned()
    }

    /// Integer field `name` from `INFO` (e.g. `blocked_clients`).
    pub fn info_field(&self, name: &str) -> Option<i64> {
        let reply = self.cmd(&["INFO"]);
        let text = String::from_utf8_lossy(&reply).to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_redis(port: u16, extra: &[String], dir: &Path) -> Result<Child, String> {
    let tls = extra.iter().any(|a| a == "--tls-port");
    let mut cmd = Command::new("redis-server");
    if tls {
        // With TLS the plain port is disabled and `port` is the TLS port.
        cmd.args(["--port", "0", "--tls-port", &port.to_string()]);
    } else {
        cmd.args(["--port", &port.to_string()]);
    }
    cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir);
    let mut skip = false;
    for a in extra {
        // `--tls-port` is taken from the harness's port choice.
        if skip {
            skip = false;
            continue;
        }
        if a == "--tls-port" {
            skip = true;
            continue;
        }
        cmd.arg(a);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited early: {status}"));
        }
        if !listens_on(child.id(), port) {
            // Not bound yet, or another process holds the port (it exits, then retries).
        } else if tls {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(child);
            }
        } else if let Ok(mut c) = RawConn::try_connect(addr) {
            c.set_read_timeout(Duration::from_secs(2));
            if c.try_send(b"PING\r\n").is_ok() {
                match c.try_read_reply() {
                    Ok(r) if r == b"+PONG\r\n" || r.starts_with(b"-NOAUTH") => return Ok(child),
                    Ok(r) if r.starts_with(b"-LOADING") => {}
                    _ => {}
                }
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("redis-server on port {port} not ready in time"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// Sidecar configuration text
// ---------------------------------------------------------------------------

/// Builds sidecar TOML from per-section lines, so tests can add keys to any
/// section without writing duplicate tables.
#[derive(Clone, Debug, Default)]
pub struct SidecarToml {
    pub server: Vec<String>,
    pub upstream: Vec<String>,
    pub policy: Vec<String>,
    pub url: Option<String>,
    /// Each entry is the body of one `[[namespace]]` table.
    pub namespaces: Vec<String>,
    /// Serve the admin HTTP listener (on a free port: [`Sidecar::admin_addr`]).
    pub admin: bool,
    /// Further lines of the `[admin]` table.
    pub admin_lines: Vec<String>,
    pub cache: Vec<String>,
    /// Whole sections appended as written (e.g. `[migration]`).
    pub sections: Vec<String>,
}

impl SidecarToml {
    /// A transparent proxy in front of `url`: nothing denied, no admin.
    pub fn new(url: &str) -> SidecarToml {
        SidecarToml {
            url: Some(url.to_string()),
            policy: vec!["deny_commands = []".to_string()],
            ..Default::default()
        }
    }

    /// The built-in deny list is kept (no `deny_commands` key).
    pub fn with_default_policy(mut self) -> Self {
        self.policy.clear();
        self
    }

    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    pub fn upstream(mut self, line: &str) -> Self {
        self.upstream.push(line.to_string());
        self
    }

    pub fn policy(mut self, line: &str) -> Self {
        self.policy.retain(|l| !same_key(l, line));
        self.policy.push(line.to_string());
        self
    }

    /// Turn the admin HTTP listener on (`/livez`, `/readyz`, `/metrics`).
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// Add a line to the `[admin]` table (e.g. `command_metrics = false`).
    pub fn admin_line(mut self, line: &str) -> Self {
        self.admin_lines.push(line.to_string());
        self
    }

    /// Add a line to the `[cache]` section.
    pub fn cache(mut self, line: &str) -> Self {
        self.cache.push(line.to_string());
        self
    }

    /// Add a `[[namespace]]` table (its lines, newline-separated).
    pub fn namespace(mut self, body: &str) -> Self {
        self.namespaces.push(body.to_string());
        self
    }

    /// Append a whole section, header included (`"[migration]\nphase = \"shadow\""`).
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.to_string());
        self
    }

    pub fn render(&self, listen: &str) -> String {
        let mut s = String::from("[server]\n");
        s.push_str(&format!("listen = \"{listen}\"\n"));
        for l in &self.server {
            s.push_str(l);
            s.push('\n');
        }
        let admin = if self.admin { "127.0.0.1:0" } else { "" };
        s.push_str(&format!("\n[admin]\nlisten = \"{admin}\"\n"));
        for l in &self.admin_lines {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("\n[upstream]\n");
        if let Some(url) = &self.url {
            s.push_str(&format!("url = \"{url}\"\n"));
        }
        for l in &self.upstream {
            s.push_str(l);
            s.push('\n');
        }
        if !self.cache.is_empty() {
            s.push_str("\n[cache]\n");
            for l in &self.cache {
                s.push_str(l);
                s.push('\n');
            }
        }
        s.push_str("\n[policy]\n");
        for l in &self.policy {
            s.push_str(l);
            s.push('\n');
        }
        for ns in &self.namespaces {
            s.push_str("\n[[namespace]]\n");
            s.push_str(ns);
            s.push('\n');
        }
        for section in &self.sections {
            s.push('\n');
            s.push_str(section);
            s.push('\n');
        }
        s
    }
}

fn same_key(a: &str, b: &str) -> bool {
    let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_string();
    key(a) == key(b)
}

// ---------------------------------------------------------------------------
// Sidecar in-process
// ---------------------------------------------------------------------------

/// The sidecar running in-process on its own tokio runtime and thread.
pub struct Sidecar {
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    token: CancellationToken,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Sidecar {
    /// A transparent sidecar in front of `redis`.
    pub fn start_for(redis: &RedisServer) -> Sidecar {
        Self::start(&SidecarToml::new(&redis.url()))
    }

    pub fn start(toml: &SidecarToml) -> Sidecar {
        Self::start_toml(&toml.render("127.0.0.1:0"))
    }

    /// Starts from complete TOML text.
    pub fn start_toml(text: &str) -> Sidecar {
        let config = resp_sidecar::config::Config::from_toml_str(text)
            .unwrap_or_else(|e| panic!("config rejected: {e:?}\n{text}"));
        let std_listener = TcpListener::bind("127.0.0.1:0").expect("bind sidecar listener");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
        // `admin.listen` port 0 (what `SidecarToml::admin` writes) picks a free port.
        let admin_listener = config.admin.listen.map(|a| {
            let l = TcpListener::bind(a).unwrap_or_else(|e| panic!("bind admin {a}: {e}"));
            l.set_nonblocking(true).expect("nonblocking");
            l
        });
        let admin = admin_listener
            .as_ref()
            .map(|l| l.local_addr().expect("admin local addr"));
        let token = CancellationToken::new();
        let run_token = token.clone();
        let thread = thread::Builder::new()
            .name(format!("sidecar-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async move {
                    let tcp = tokio::net::TcpListener::from_std(std_listener)
                        .map_err(|e| e.to_string())?;
                    let admin = admin_listener
                        .map(tokio::net::TcpListener::from_std)
                        .transpose()
                        .map_err(|e| e.to_string())?;
                    let listeners = resp_sidecar::Listeners {
                        tcp,
                        unix: None,
                        admin,
                    };
                    resp_sidecar::run(config, listeners, run_token)
                        .await
                        .map_err(|e| format!("{e:?}"))
                })
            })
            .expect("spawn sidecar thread");
        let sidecar = Sidecar {
            addr,
            admin,
            token,
            thread: Some(thread),
        };
        // The listeners are bound already; make sure `run` is serving. With the admin
        // listener on, `/livez` answering proves it without a client connection (tests
        // count client connections exactly).
        wait_for("sidecar to accept", READY_TIMEOUT, || {
            if sidecar.thread.as_ref().is_some_and(|t| t.is_finished()) {
                panic!("sidecar run() returned during start-up");
            }
            match admin {
                Some(a) => http::get(a, "/livez")
                    .ok()
                    .filter(|r| r.status == 200)
                    .map(drop),
                None => RawConn::try_connect(addr).ok().map(drop),
            }
        });
        sidecar
    }

    /// The admin HTTP listener's address; panics unless started with `SidecarToml::admin`
    /// (or TOML with a non-empty `admin.listen`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .expect("the admin listener is off: start with SidecarToml::admin()")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn conn(&self) -> RawConn {
        RawConn::connect(self.addr)
    }

    /// Cancels and waits for `run` to return; returns its result.
    pub fn shutdown(mut self, timeout: Duration) -> Result<(), String> {
        self.token.cancel();
        let t = self.thread.take().expect("thread");
        let deadline = Instant::now() + timeout;
        while !t.is_finished() {
            if Instant::now() >= deadline {
                return Err(format!("run() did not return within {timeout:?}"));
            }
            thread::sleep(Duration::from_millis(5));
        }
        t.join()
            .map_err(|_| "sidecar thread panicked".to_string())?
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Sidecar as a process
// ---------------------------------------------------------------------------

/// Path of the built binary.
pub fn sidecar_bin() -> &'static str {
    env!("CARGO_BIN_EXE_resp-sidecar")
}

/// A `Command` for the binary with the sidecar's environment variables
/// cleared, so the caller's environment cannot change a test.
pub fn sidecar_command() -> Command {
    let mut c = Command::new(sidecar_bin());
    for v in [
        "REDIS_URL",
        "REDIS_PASSWORD",
        "REDIS_TLS_ENABLED",
        "SIDECAR_LISTEN",
    ] {
        c.env_remove(v);
    }
    c
}

/// The `resp-sidecar` binary listening on a free port.
pub struct SidecarProcess {
    child: Option<Child>,
    addr: SocketAddr,
    dir: TempDir,
}

impl SidecarProcess {
    pub fn start(toml: &SidecarToml) -> SidecarProcess {
        Self::start_with(toml, &[], &[])
    }

    /// Starts with extra flags and environment variables.
    pub fn start_with(toml: &SidecarToml, flags: &[&str], env: &[(&str, &str)]) -> SidecarProcess {
        let dir = TempDir::new().expect("tempdir");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let path = dir.path().join("sidecar.toml");
            std::fs::write(&path, toml.render(&addr.to_string())).expect("write config");
            let mut cmd = sidecar_command();
            cmd.arg("--config")
                .arg(&path)
                .args(["--listen", &addr.to_string()])
                .args(flags)
                .envs(env.iter().copied())
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("spawn resp-sidecar");
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    last = format!("exited with {status}: {err}");
                    break;
                }
                if listens_on(child.id(), port) && RawConn::try_connect(addr).is_ok() {
                    // Drain stderr in the background so the child never blocks on it.
                    if let Some(mut e) = child.stderr.take() {
                        thread::spawn(move || {
                            let mut sink = Vec::new();
                            let _ = e.read_to_end(&mut sink);
                        });
                    }
                    return SidecarProcess {
                        child: Some(child),
                        addr,
                        dir,
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = "not accepting in time".into();
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("resp-sidecar did not start: {last}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn conn(&self) -> RawConn {
        RawConn::connect(self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Sends a signal by name (e.g. "TERM") with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                self.child = None;
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// A field such as `VmRSS` or `VmSize` from /proc/PID/status, in KiB.
    pub fn proc_status_kib(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} not in /proc status"))
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `redis-cli` with arguments and optional stdin; returns (status, stdout).
pub fn redis_cli(args: &[&str], stdin: Option<&[u8]>) -> (ExitStatus, Vec<u8>) {
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    // Guard against a hang: kill the child past the deadline.
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    let watchdog = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if done2.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    });
    let out = child.wait_with_output().expect("redis-cli output");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watchdog.join();
    (out.status, out.stdout)
}

pub mod sentinel;
