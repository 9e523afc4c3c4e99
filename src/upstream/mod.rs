//! The upstream stage: every byte exchanged with Redis.
//!
//! [`Upstream`] owns a small pool of shared, pipelined connections per protocol
//! version (stateless commands from many clients) and hands out pinned
//! connections (per-client state) within `upstream.max_pinned`. It knows the
//! server's HELLO fields for the client-facing HELLO reply. Primary discovery
//! (Sentinel) plugs in here: connectors are built from the current address.

mod connect;
pub mod invalidation;
mod pinned;
pub mod sentinel;
mod shared;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio_util::sync::CancellationToken;

pub use connect::{Conn, Connector, ServerHello, MAX_REPLY_DEPTH};
pub use pinned::{retired, PinnedConn};
pub use shared::{Batch, Job, SharedConn};

use crate::config::{Endpoint, UpstreamConfig, UpstreamMode};
use crate::metrics::{Metrics, UpstreamKind};
use crate::resp::value::{self, Value};
use crate::resp::{Protocol, ReplyScanner};
use sentinel::{Discovery, PrimaryState};

/// Clean pinned connections kept for reuse, per protocol version.
const IDLE_PINNED: usize = 32;
/// How long a clean pinned connection may sit unused before it is closed.
const IDLE_PINNED_TTL: Duration = Duration::from_secs(60);

/// Why an upstream exchange failed. The server turns these into replies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing was sent: connecting failed or timed out.
    #[error("{0}")]
    Connect(String),
    #[error("upstream refused the handshake: {0}")]
    Handshake(String),
    #[error("upstream TLS setup: {0}")]
    Tls(String),
    /// No verified primary within `upstream.failover_wait`.
    #[error("no primary available: {0}")]
    NoPrimary(String),
    /// The primary changed (failover) while the command was in flight.
    #[error("the upstream primary changed (failover)")]
    PrimaryChanged,
    #[error("too many pinned upstream connections (upstream.max_pinned = {0})")]
    PinnedLimit(usize),
    #[error("upstream closed the connection")]
    Closed,
    #[error("upstream connection lost")]
    Lost,
    #[error("upstream connection error: {0}")]
    Io(String),
    #[error("upstream did not reply within {0:?}")]
    Timeout(Duration),
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

impl UpstreamError {
    /// True when the command certainly never reached Redis, so the client may retry it safely.
    pub fn before_send(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_)
                | UpstreamError::Handshake(_)
                | UpstreamError::Tls(_)
                | UpstreamError::PinnedLimit(_)
                | UpstreamError::NoPrimary(_)
        )
    }

    /// True when the client's reply is `-TRYAGAIN` (nothing sent, or a timeout).
    pub fn is_tryagain(&self) -> bool {
        self.before_send() || matches!(self, UpstreamError::Timeout(_))
    }

    /// The error reply a client gets for a command this error left without a reply.
    pub fn reply_text(&self) -> String {
        if self.before_send() {
            format!("TRYAGAIN {self}")
        } else if let UpstreamError::Timeout(_) = self {
            format!("TRYAGAIN {self}; the command may have been executed")
        } else {
            format!("ERR {self} before the reply arrived; the command may have been executed")
        }
    }
}

/// Reply bytes received for a client but not yet written to it. A client that sends
/// but never reads is disconnected when this passes `server.max_reply_buffer`.
#[derive(Debug)]
pub struct ReplyBudget {
    pending: AtomicUsize,
    limit: usize,
    /// Set with `over`: read before every wait for input and every awaited reply, where
    /// the token's own check takes its lock (~50 instructions per request at -P 1).
    exceeded: AtomicBool,
    over: CancellationToken,
}

impl ReplyBudget {
    pub fn new(limit: usize) -> Self {
        ReplyBudget {
            pending: AtomicUsize::new(0),
            limit,
            exceeded: AtomicBool::new(false),
            over: CancellationToken::new(),
        }
    }

    pub fn add(&self, n: usize) {
        let now = self.pending.fetch_add(n, Ordering::Relaxed) + n;
        if now > self.limit {
            self.exceeded.store(true, Ordering::Release);
            self.over.cancel();
        }
    }

    pub fn written(&self, n: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(n))
            });
    }

    /// Resolves once the limit was exceeded.
    pub fn exceeded(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.over.cancelled()
    }

    pub fn is_exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }
}

/// The upstream: shared pools and pinned connections to one Redis server.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    discovery: Discovery,
    state: watch::Receiver<PrimaryState>,
    failover_wait: Duration,
    sentinel: bool,
    pools: [Vec<SharedConn>; 2],
    pinned: Arc<Semaphore>,
    max_pinned: usize,
    idle: Mutex<[Vec<PinnedConn>; 2]>,
    hello: Arc<Mutex<Option<ServerHello>>>,
    /// Replies to the sidecar's own calls are consumed at once; the budget only counts them.
    call_budget: Arc<ReplyBudget>,
    calls: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// Append `args` as a RESP multibulk command.
pub fn encode_command(args: &[Bytes], out: &mut BytesMut) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn slot(proto: Protocol) -> usize {
    match proto {
        Protocol::Resp2 => 0,
        Protocol::Resp3 => 1,
    }
}

impl Upstream {
    /// Build the connector and start the shared connection tasks (they connect eagerly and
    /// keep retrying; the sidecar serves `-TRYAGAIN` until Redis answers). Connections
    /// and upstream latency are counted in `metrics`.
    pub fn start(
        cfg: &UpstreamConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Upstream, UpstreamError> {
        let connector = Connector::new(cfg)?;
        let sentinel = cfg.mode == UpstreamMode::Sentinel;
        let discovery = if sentinel {
            Discovery::spawn(cfg, shutdown.clone())
        } else {
            Discovery::fixed(cfg.endpoint.clone())
        };
        let hello = Arc::new(Mutex::new(None));
        let pool = |proto| {
            (0..cfg.pool_size.max(1))
                .map(|_| {
                    SharedConn::spawn(
                        connector.clone(),
                        discovery.clone(),
                        proto,
                        shared::Timing {
                            command_timeout: cfg.command_timeout,
                            failover_wait: cfg.failover_wait,
                            hold_when_unreachable: sentinel,
                        },
                        hello.clone(),
                        metrics.clone(),
                        shutdown.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let pools = [pool(Protocol::Resp2), pool(Protocol::Resp3)];
        Ok(Upstream {
            inner: Arc::new(Inner {
                connector,
                state: discovery.subscribe(),
                discovery,
                failover_wait: cfg.failover_wait,
                sentinel,
                pools,
                pinned: Arc::new(Semaphore::new(cfg.max_pinned)),
                max_pinned: cfg.max_pinned,
                idle: Mutex::new([Vec::new(), Vec::new()]),
                hello,
                call_budget: Arc::new(ReplyBudget::new(usize::MAX)),
                calls: AtomicUsize::new(0),
                metrics,
            }),
        })
    }

    /// The shared connection a client uses for its stateless commands. Sticky per client
    /// so its commands stay in order on one connection.
    pub fn shared(&self, proto: Protocol, client_id: u64) -> &SharedConn {
        let pool = &self.inner.pools[slot(proto)];
        &pool[(client_id as usize) % pool.len()]
    }

    /// A dedicated connection for one client, within `upstream.max_pinned`, to the
    /// verified primary (waiting up to `upstream.failover_wait` for one).
    pub async fn pin(&self, proto: Protocol) -> Result<PinnedConn, UpstreamError> {
        let permit = self
            .inner
            .pinned
            .clone()
            .try_acquire_owned()
            .map_err(|_| UpstreamError::PinnedLimit(self.inner.max_pinned))?;
        let (endpoint, epoch) = self.primary().await?;
        loop {
            let reused = self
                .inner
                .idle
                .lock()
                .ok()
                .and_then(|mut idle| idle[slot(proto)].pop());
            let Some(mut conn) = reused else { break };
            if conn.epoch == epoch
                && conn.idle_since.elapsed() < IDLE_PINNED_TTL
                && conn.is_reusable().await
            {
                conn._permit = Some(permit);
                return Ok(conn);
            }
        }
        let connected = self.inner.connector.connect_to(&endpoint, proto).await;
        let (conn, hello) = connected.inspect_err(|_| self.inner.discovery.resolve_now())?;
        let upstream_id = hello.id;
        if let Ok(mut slot) = self.inner.hello.lock() {
            *slot = Some(hello);
        }
        self.inner.metrics.upstream_connected(UpstreamKind::Pinned);
        let mut pinned = PinnedConn::new(conn, proto, Some(permit), epoch, upstream_id);
        pinned.metrics = Some(self.inner.metrics.clone());
        pinned.origin = self.id();
        Ok(pinned)
    }

    /// A connection of the sidecar's own to the verified primary (waiting up to
    /// `upstream.failover_wait` for one), and that primary's epoch.
    pub async fn connect_primary(&self, proto: Protocol) -> Result<(Conn, u64), UpstreamError> {
        let (endpoint, epoch) = self.primary().await?;
        let connected = self.inner.connector.connect_to(&endpoint, proto).await;
        let (conn, _) = connected.inspect_err(|_| self.inner.discovery.resolve_now())?;
        Ok((conn, epoch))
    }

    /// The verified primary and its epoch, waiting up to `upstream.failover_wait`.
    async fn primary(&self) -> Result<(Endpoint, u64), UpstreamError> {
        let state = self.inner.state.borrow().clone();
        let state = match state {
            PrimaryState::Verified { .. } => state,
            _ => {
                self.inner
                    .discovery
                    .wait_verified(self.inner.failover_wait)
                    .await
            }
        };
        match state {
            PrimaryState::Verified {
                endpoint, epoch, ..
            } => Ok((endpoint, epoch)),
            PrimaryState::Unknown { reason } => Err(UpstreamError::NoPrimary(reason)),
            PrimaryState::FailingOver { .. } => Err(UpstreamError::NoPrimary(format!(
                "failover in progress for longer than upstream.failover_wait ({:?})",
                self.inner.failover_wait
            ))),
        }
    }

    /// Give back a pinned connection whose state ended cleanly (nothing pending, no
    /// transaction, watch, subscription, db or tracking left). Dropping one instead closes it.
    pub fn release(&self, mut conn: PinnedConn) {
        if conn.origin != self.id() {
            // Opened by another upstream (the migration's other store): close it.
            return;
        }
        conn._permit = None;
        conn.idle_since = Instant::now();
        if let Ok(mut idle) = self.inner.idle.lock() {
            let list = &mut idle[slot(conn.protocol())];
            if list.len() < IDLE_PINNED {
                list.push(conn);
            }
        }
    }

    /// Whether `other` is this upstream (a clone of it).
    pub fn same(&self, other: &Upstream) -> bool {
        self.id() == other.id()
    }

    /// Whether this upstream opened `conn`.
    pub fn owns(&self, conn: &PinnedConn) -> bool {
        conn.origin == self.id()
    }

    /// Tells upstreams apart (the migration runs two).
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Pinned connections currently held by clients.
    pub fn pinned_in_use(&self) -> usize {
        self.inner.max_pinned - self.inner.pinned.available_permits()
    }

    /// The server's HELLO fields from the latest handshake (defaults before the first).
    pub fn server_hello(&self) -> ServerHello {
        self.inner
            .hello
            .lock()
            .ok()
            .and_then(|h| h.clone())
            .unwrap_or_default()
    }

    /// The metrics registry this upstream counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Primary discovery (fixed in standalone mode), for the admin surface and the data path.
    pub fn discovery(&self) -> &Discovery {
        &self.inner.discovery
    }

    /// True when the primary is found through Sentinel (failovers possible).
    pub fn is_sentinel(&self) -> bool {
        self.inner.sentinel
    }

    /// The epoch of the verified primary, 0 while none is verified.
    pub fn epoch(&self) -> u64 {
        match &*self.inner.state.borrow() {
            PrimaryState::Verified { epoch, .. } => *epoch,
            _ => 0,
        }
    }

    /// Wait until a primary other than epoch `old` is verified, up to `upstream.failover_wait`.
    pub async fn wait_newer_primary(&self, old: u64) -> bool {
        let mut rx = self.inner.discovery.subscribe();
        let newer =
            |s: &PrimaryState| matches!(s, PrimaryState::Verified { epoch, .. } if *epoch > old);
        tokio::time::timeout(self.inner.failover_wait, rx.wait_for(newer))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// Run `commands` as one pipeline on a shared RESP2 connection and parse each reply:
    /// the sidecar's own work (prefix-scoped SCAN, UNLINK batches, config reads). Error
    /// replies come back as [`Value::Error`]; a lost or timed-out exchange is an error.
    pub async fn call(&self, commands: &[Vec<Bytes>]) -> Result<Vec<Value>, UpstreamError> {
        let mut bytes = BytesMut::new();
        for args in commands {
            encode_command(args, &mut bytes);
        }
        let (tx, rx) = oneshot::channel();
        let job = Job {
            bytes: bytes.freeze(),
            count: commands.len(),
            reply: tx,
            budget: self.inner.call_budget.clone(),
        };
        let pick = self.inner.calls.fetch_add(1, Ordering::Relaxed) as u64;
        if self.shared(Protocol::Resp2, pick).send(job).await.is_err() {
            return Err(UpstreamError::Lost);
        }
        let batch = rx.await.map_err(|_| UpstreamError::Lost)?;
        self.inner.call_budget.written(batch.bytes.len());
        if batch.got < commands.len() {
            return Err(batch.error.unwrap_or(UpstreamError::Lost));
        }
        let mut scanner = ReplyScanner::new(MAX_REPLY_DEPTH);
        let mut values = Vec::with_capacity(commands.len());
        let mut rest = batch.bytes;
        while !rest.is_empty() {
            let len = match scanner.scan(&rest) {
                Ok(Some(len)) => len,
                Ok(None) => return Err(UpstreamError::Protocol("truncated reply".into())),
                Err(e) => return Err(UpstreamError::Protocol(e.to_string())),
            };
            let frame = rest.split_to(len);
            values.push(value::parse(&frame).map_err(|e| UpstreamError::Protocol(e.to_string()))?);
        }
        Ok(values)
    }

    /// True while at least one shared connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.pools.iter().flatten().any(|c| c.is_connected())
    }
}
