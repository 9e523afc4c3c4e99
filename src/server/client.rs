//! One client connection: decode everything buffered, route each command, serve
//! in order, write all replies, flush once.
//!
//! Replies go out in the order commands came in, whatever mix of local answers,
//! shared-pool batches and pinned-connection replies served them: a command is
//! never sent on one upstream connection before the commands sent earlier on a
//! different one have been answered. Stateless commands travel on the client's
//! sticky shared connection; state (MULTI, WATCH, blocking, pub/sub, SELECT,
//! tracking, CLIENT REPLY) moves the client onto a pinned connection until the
//! state ends.

use std::collections::{HashSet, VecDeque};

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{oneshot, watch};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::debug;

use super::failover::has_readonly;
use super::info;
use super::keyspace::{self, ClientView, Op, Positions, Prefix, ReplyFix, StageCtx, Staged};
use super::scoped;
use super::session::Session;
use super::{Ctx, Live, LiveOf};
use crate::cache::{self, plan::Plan, Cache};
use crate::command::{classify, Local, Pin, Route};
use crate::keys::KeyArg;
use crate::metrics::{Ledger, RefusalRule};
use crate::migration::Pending;
use crate::namespace::reply::{self, ExecFix};
use crate::resp::{
    write_prefixed, write_prefixed_key, Protocol, Reply, ReplyScanner, Request, RequestDecoder,
    RequestLimits,
};
use crate::upstream::invalidation::{self, Written};
use crate::upstream::sentinel::PrimaryState;
use crate::upstream::{
    encode_command, retired, Batch, Job, PinnedConn, ReplyBudget, SharedConn, UpstreamError,
    MAX_REPLY_DEPTH,
};

/// Write the output buffer once it holds this much, even mid-batch.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Read buffer an idle connection keeps (grown on demand while a pipeline streams in).
const IDLE_INBUF: usize = 1024;
/// A read buffer grown by a pipeline is kept between its batches, so each batch is read
/// at once rather than 1 KiB first and the rest after a reallocation; it is given back
/// once the connection has had no input for between one and two of these, or as soon as
/// it is empty when larger than [`INBUF_KEEP_MAX`].
const INBUF_KEEP: Duration = Duration::from_secs(1);
const INBUF_KEEP_MAX: usize = 64 * 1024;
/// Most requests' room a pipeline keeps between its batches.
const KEPT_BATCH: usize = 32;
/// The requests of one batch. Room for one is inline (in the client task, 144 bytes
/// against a `Vec`'s 24): a single command, the usual batch without pipelining, then
/// needs no allocation (~310 user-space instructions per request at -P 1).
pub(super) type BatchRoom = SmallVec<[Request; 1]>;

/// Reply buffer a quiet connection keeps; a larger one is given back like the read buffer.
const IDLE_OUT: usize = 4 * 1024;

/// A client's wait for shutdown, part of every wait for input. The token's own future
/// checks the token and its waiter list under two locks each time it is polled (~165
/// user-space instructions per request at -P 1); this one registers with the token
/// through a waker of its own, which records that it fired, and polls the token again
/// only then, or when the task's waker changed.
pub(super) struct Stopping<'a> {
    wait: std::pin::Pin<Box<WaitForCancellationFuture<'a>>>,
    flag: Arc<StopFlag>,
    /// The task's waker `flag` passes a wake-up on to, since the last poll of `wait`.
    task: Option<Waker>,
    done: bool,
}

/// The waker [`Stopping`] registers with the token.
#[derive(Default)]
struct StopFlag {
    fired: AtomicBool,
    task: std::sync::Mutex<Option<Waker>>,
}

impl StopFlag {
    fn set_task(&self, waker: &Waker) {
        let mut task = self
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *task = Some(waker.clone());
    }
}

impl Wake for StopFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        let task = self
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(waker) = task.as_ref() {
            waker.wake_by_ref();
        }
    }
}

impl<'a> Stopping<'a> {
    pub(super) fn new(token: &'a CancellationToken) -> Self {
        Stopping {
            wait: Box::pin(token.cancelled()),
            flag: Arc::default(),
            task: None,
            done: false,
        }
    }
}

impl Future for Stopping<'_> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        if this.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // Registered, for this task: nothing to look at unless the token woke us.
            if !this.flag.fired.swap(false, Ordering::AcqRel) {
                return Poll::Pending;
            }
        } else {
            // First poll, or polled from another waker: that is the one to wake from now.
            this.flag.set_task(cx.waker());
            this.task = Some(cx.waker().clone());
            this.flag.fired.store(false, Ordering::Release);
        }
        let waker = Waker::from(Arc::clone(&this.flag));
        let polled = this.wait.as_mut().poll(&mut Context::from_waker(&waker));
        this.done = polled.is_ready();
        polled
    }
}

/// Ready when `timer` (if set) fires; never when it is not.
fn fired(timer: &mut Option<std::pin::Pin<Box<Sleep>>>) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| match timer {
        Some(t) => t.as_mut().poll(cx),
        None => Poll::Pending,
    })
}

/// Why a client connection ended (logged at debug; never an error of the sidecar).
#[derive(Debug)]
pub enum Closed {
    Eof,
    Quit,
    Io(std::io::Error),
    Protocol(String),
    IdleTimeout,
    ReplyBufferExceeded,
    Shutdown,
    /// The upstream connection carrying this client's state (MONITOR, or subscriptions
    /// that could not be re-established) is gone: closing lets the client reconnect.
    UpstreamLost,
}

/// A transaction whose pinned connection was lost (failover or disconnect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxLost {
    /// Lost inside MULTI: every queued command errors and EXEC answers EXECABORT.
    Multi,
    /// Lost with keys watched: the next EXEC answers nil, as if a watched key changed.
    Watch,
}

/// A reply owed to the client, in command order.
enum Slot {
    Ready(Bytes),
    Shared {
        count: usize,
        rx: oneshot::Receiver<Batch>,
        /// The commands sent, kept (a reference, not a copy) in case Redis answers
        /// `-READONLY` and they are retried on the new primary.
        sent: Bytes,
        epoch: u64,
        fix: Option<Box<SlotFix>>,
        /// Cached keys these commands write: invalidated again once the replies are in.
        inval: Vec<Bytes>,
    },
    Pinned {
        count: usize,
        fix: Option<Box<SlotFix>>,
        inval: Vec<Bytes>,
    },
    /// Read and drop `count` replies, answer `reply` instead (EXEC after a refusal in MULTI).
    PinnedReplaced {
        count: usize,
        reply: Bytes,
    },
}

/// How the replies of one slot are rewritten: the first `keep` go to the client (rewritten
/// by `fix`); the rest answer the sidecar's own follow-up commands and are dropped.
#[derive(Debug)]
pub(super) struct SlotFix {
    keep: usize,
    fix: Option<Fix>,
    /// A cached read: its replies (and the TTLs fetched after it) fill the cache.
    fill: Option<Box<cache::plan::Fill>>,
}

/// A reply rewrite for a mapped-db client.
#[derive(Debug)]
pub(super) enum Fix {
    Strip(ReplyFix),
    /// EXEC: per queued command, keep, drop (a sidecar follow-up) or strip its result.
    Exec {
        fixes: Vec<ExecFix>,
        prefix: Bytes,
    },
    /// INFO: the sidecar's section appended to the upstream's.
    AppendInfo(String),
}

impl Fix {
    fn apply(&self, frame: &Bytes) -> Bytes {
        match self {
            Fix::Strip(f) => reply::strip_keys(f.kind, frame, &f.prefix),
            Fix::Exec { fixes, prefix } => reply::fix_exec(frame, fixes, prefix),
            Fix::AppendInfo(section) => info::append(frame, section),
        }
    }
}

/// A request `route_start` left to `route`, with what it found out.
struct Routed {
    req: Request,
    route: Route,
    live: Arc<Live>,
    namespaced: bool,
    /// The namespace stage's answer, when `route_start` ran it.
    staged: Option<Box<Staged>>,
}

/// Where a cache hit's reply goes (see `Client::hit_out`).
struct HitOut {
    direct: bool,
    /// Where the reply starts in the output buffer, when direct.
    from: usize,
    scratch: BytesMut,
}

/// What the namespace stage adds to a forwarded command.
#[derive(Debug, Default)]
struct Extra {
    fix: Option<Fix>,
    follow_ups: Vec<Vec<Bytes>>,
    /// Keys to prefix as the command is written out.
    prefix: Option<Prefix>,
    /// A cached read to fill from the reply.
    fill: Option<Box<cache::plan::Fill>>,
    /// Cached keys the command writes.
    inval: Vec<Bytes>,
}

impl Extra {
    fn is_plain(&self) -> bool {
        self.fix.is_none() && self.follow_ups.is_empty() && self.fill.is_none()
    }
}

/// The identity and protocol state of one client connection.
pub struct Conn {
    pub id: u64,
    pub proto: Protocol,
    pub authenticated: bool,
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub peer: String,
    pub local: String,
    pub since: Instant,
}

pub struct Client<R, W> {
    ctx: Arc<Ctx>,
    /// `ctx`'s live configuration, as last read (see [`Ctx::live_cache`]).
    live: arc_swap::Cache<LiveOf, Arc<Live>>,
    rd: R,
    wr: W,
    inbuf: BytesMut,
    /// Gives back grown buffers once the connection is quiet (see [`INBUF_KEEP`]).
    release: Option<std::pin::Pin<Box<Sleep>>>,
    /// Input arrived since `release` was last armed.
    heard: bool,
    /// The read buffer was grown by a pipeline and is kept between its batches.
    streaming: bool,
    /// The request being routed is the last of its batch.
    last_in_batch: bool,
    /// This batch is a pipeline and other clients are connected: if it is answered
    /// without Redis, its replies wait for theirs (see [`Client::drain`]).
    gather: bool,
    /// The time cache hits of the batch being served are checked against.
    clock: cache::Clock,
    out: BytesMut,
    decoder: RequestDecoder,
    pub conn: Conn,
    budget: Arc<ReplyBudget>,
    slots: VecDeque<Slot>,
    /// The open run of consecutive shared commands not yet handed to the pool.
    seg: BytesMut,
    seg_count: usize,
    /// Closed segments waiting for room in their shared connection's queue, in order.
    unsent: VecDeque<(SharedConn, Job)>,
    pinned: Option<PinnedConn>,
    pinned_out: BytesMut,
    session: Session,
    /// The state of a pinned connection that was lost, to rebuild on a new one.
    lost: Option<Session>,
    tx_lost: Option<TxLost>,
    primary: watch::Receiver<PrimaryState>,
    quit: bool,
    /// Namespace state, made on the first request when namespaces are configured (boxed:
    /// an idle connection of a transparent sidecar stays small).
    ns: Option<Box<NsClient>>,
    /// Commands counted and timed by name and outcome (`sidecar_commands_total`).
    ledger: Ledger,
    /// Migration: keys written and reads sampled in the current batch (made on first use).
    mig: Option<Box<MigClient>>,
}

/// One client's migration state (`crate::migration` decides what goes in).
#[derive(Debug, Default)]
struct MigClient {
    pending: Pending,
    scratch: Vec<KeyArg>,
    /// Held from the batch's first forwarded command until its keys are queued.
    pass: Option<crate::migration::Pass>,
    /// Set while a command waits for earlier ones before it is pinned: that drain
    /// keeps the pass and the command's keys.
    hold: bool,
}

/// One client's namespace state.
#[derive(Debug, Default)]
struct NsClient {
    /// The db the client selected; a mapped db is a key prefix.
    db: u32,
    /// Inside MULTI: how each queued command's EXEC result is rewritten.
    tx_fixes: Vec<ExecFix>,
    /// Upstream pub/sub names this client reached through a mapped db, and that db.
    mapped_channels: HashSet<Bytes>,
    mapped_db: u32,
    /// The namespace stage's, reused from request to request (key positions, last name).
    key_scratch: keyspace::Scratch,
    /// Cached keys written by commands whose replies are not read yet: never served
    /// from the cache meanwhile (a client reads its own writes).
    written: Vec<Bytes>,
    /// Cached keys written by the open shared segment.
    seg_inval: Vec<Bytes>,
    /// Cached keys written by commands queued in MULTI (invalidated on EXEC's reply).
    tx_inval: Vec<Bytes>,
}

impl<R, W> Client<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub fn new(ctx: Arc<Ctx>, rd: R, wr: W, id: u64, peer: String, local: String) -> Self {
        let s = &ctx.config.server;
        let limits = RequestLimits {
            max_bulk_len: s.max_bulk_len,
            max_array_len: s.max_array_len,
            max_inline_len: s.max_inline_len,
        };
        let budget = Arc::new(ReplyBudget::new(s.max_reply_buffer));
        let authenticated = s.requirepass.is_none();
        let primary = ctx.upstream.discovery().subscribe();
        let live = ctx.live_cache();
        Client {
            ctx,
            live,
            rd,
            wr,
            inbuf: BytesMut::new(),
            release: None,
            heard: false,
            streaming: false,
            last_in_batch: false,
            gather: false,
            clock: cache::Clock::default(),
            out: BytesMut::new(),
            decoder: RequestDecoder::new(limits),
            conn: Conn {
                id,
                proto: Protocol::Resp2,
                authenticated,
                name: None,
                lib_name: None,
                lib_ver: None,
                peer,
                local,
                since: Instant::now(),
            },
            budget,
            slots: VecDeque::new(),
            seg: BytesMut::new(),
            seg_count: 0,
            unsent: VecDeque::new(),
            pinned: None,
            pinned_out: BytesMut::new(),
            session: Session::default(),
            lost: None,
            tx_lost: None,
            primary,
            quit: false,
            ns: None,
            ledger: Ledger::default(),
            mig: None,
        }
    }

    /// Serve until the client leaves, misbehaves, or the sidecar shuts down.
    pub async fn run(mut self, shutdown: CancellationToken) -> Closed {
        let result = self.serve(&shutdown).await;
        self.ctx.set_pinned_id(self.conn.id, None);
        let closed = match result {
            Ok(()) => Closed::Quit,
            Err(c) => c,
        };
        let _ = self.wr.shutdown().await;
        closed
    }

    async fn serve(&mut self, shutdown: &CancellationToken) -> Result<(), Closed> {
        let max_pipeline = self.ctx.live().config.server.max_pipeline.max(1);
        // One wait for the whole connection: registered with the token once, instead of
        // once per wait for input.
        let mut stopping = Stopping::new(shutdown);
        let mut batch = BatchRoom::new();
        loop {
            let mut bad = None;
            let (hits, live) = self.hits_in_place(max_pipeline);
            // Hits answered in place count against the pipeline cap like decoded requests.
            while hits + batch.len() < max_pipeline {
                match self.decoder.decode(&mut self.inbuf) {
                    Ok(Some(req)) => batch.push(req),
                    Ok(None) => break,
                    Err(e) => {
                        bad = Some(e);
                        break;
                    }
                }
            }
            let batch_full = hits + batch.len() == max_pipeline;
            if !batch.is_empty() {
                if hits == 0 {
                    self.ledger.begin(&self.ctx.metrics);
                }
                self.serve_batch(&mut batch, live).await?;
            } else if hits > 0 {
                // Answered in place: written out like a batch answered without Redis.
                self.gather = hits > 1 && self.ctx.clients() > 1;
                self.drain().await?;
            }
            // About to wait for the client: an idle connection holds no batch room beyond
            // the inline one (kept, it measured 0.3 KB more per idle connection). A
            // pipeline keeps a small one between its batches instead of growing a new one
            // each time, until it goes quiet (`release`).
            let keep = batch_full || (self.release.is_some() && batch.capacity() <= KEPT_BATCH);
            if !keep && batch.spilled() {
                batch = BatchRoom::new();
            }
            if let Some(e) = bad {
                // Commands before the malformed frame were served; then report and close.
                self.out
                    .extend_from_slice(&Reply::error(format!("ERR {e}")).to_bytes(self.conn.proto));
                self.write_out().await?;
                return Err(Closed::Protocol(e.to_string()));
            }
            if self.quit {
                return Ok(());
            }
            if batch_full {
                // The pipeline cap cut this batch short: more may be buffered already.
                continue;
            }
            self.wait_input(&mut stopping, &mut batch).await?;
        }
    }

    /// `server.idle_timeout` for this client: subscribed clients and MONITOR are never
    /// idle-timed out, like Redis.
    fn idle_timeout(&mut self) -> Option<Duration> {
        let idle = self.live.load().config.server.idle_timeout;
        idle.filter(|_| !self.session.subscribed() && !self.session.monitor)
    }

    /// Wait for more bytes from the client; meanwhile forward out-of-band frames (pub/sub
    /// messages, invalidations) from a pinned connection.
    async fn wait_input(
        &mut self,
        stopping: &mut Stopping<'_>,
        batch: &mut BatchRoom,
    ) -> Result<(), Closed> {
        if self.budget.is_exceeded() {
            return Err(Closed::ReplyBufferExceeded);
        }
        // Give back what a large burst grew at once, a pipeline's buffers once it has
        // gone quiet (below): an idle connection keeps small ones.
        let empty = self.inbuf.is_empty();
        if empty && self.inbuf.capacity() > INBUF_KEEP_MAX {
            self.inbuf = BytesMut::new();
            self.streaming = false;
        }
        if empty && self.inbuf.capacity() > IDLE_INBUF {
            self.streaming = true;
        }
        let free = self.inbuf.capacity() - self.inbuf.len();
        let want = if empty && self.streaming {
            // Consumed requests took their bytes' room with them; with those gone this
            // takes the kept allocation back whole, without copying.
            16 * 1024
        } else if free >= 512 {
            0
        } else if empty {
            IDLE_INBUF
        } else {
            16 * 1024
        };
        if want > 0 {
            self.inbuf.reserve(want);
        }
        if self.out.is_empty() && self.out.capacity() > OUT_HIGH_WATER {
            self.out = BytesMut::new();
        }
        let keeping = self.streaming || (self.out.is_empty() && self.out.capacity() > IDLE_OUT);
        if keeping && self.release.is_none() {
            // Armed once and re-armed at most once a second while input keeps coming, not
            // per batch (registering a timer per batch cost ~90 instructions per request
            // at -P 16).
            self.heard = false;
            self.release = Some(Box::pin(tokio::time::sleep(INBUF_KEEP)));
        }
        let idle = self.idle_timeout();
        let sleep = async {
            match idle {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            if let Some(old) = self.lost.take() {
                Box::pin(self.restore(old)).await?;
            }
            let pinned = &mut self.pinned;
            let primary = &mut self.primary;
            let frame = async move {
                match pinned.as_mut() {
                    Some(p) => {
                        let epoch = p.epoch();
                        tokio::select! {
                            // The reply is usually ready: check it before arming the other branches.
                            biased;
                            f = p.read_frame() => f,
                            _ = retired(primary, epoch) => Err(UpstreamError::PrimaryChanged),
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Usually what woke the task: read it before arming the other branches.
                biased;
                r = self.rd.read_buf(&mut self.inbuf) => {
                    return match r {
                        Ok(0) => Err(Closed::Eof),
                        Ok(_) => {
                            self.heard = true;
                            Ok(())
                        }
                        Err(e) => Err(Closed::Io(e)),
                    };
                }
                f = frame => match f {
                    Ok(frame) => {
                        if let Some(frame) = self.map_pubsub(frame) {
                            self.out.extend_from_slice(&frame);
                            self.write_out().await?;
                        }
                    }
                    Err(e) => {
                        // The pinned connection died or its primary changed while idle:
                        // what can be rebuilt is rebuilt at the top of the loop.
                        debug!(client = self.conn.id, error = %e, "pinned upstream connection lost");
                        self.drop_pinned();
                    }
                },
                () = fired(&mut self.release) => {
                    if std::mem::take(&mut self.heard) {
                        // Input came since it was armed: not quiet yet.
                        if let Some(t) = self.release.as_mut() {
                            t.as_mut().reset(tokio::time::Instant::now() + INBUF_KEEP);
                        }
                    } else {
                        self.release = None;
                        self.streaming = false;
                        *batch = BatchRoom::new();
                        // Only an empty buffer is replaced: a partial command stays.
                        if self.inbuf.is_empty() && self.inbuf.capacity() > IDLE_INBUF {
                            self.inbuf = BytesMut::with_capacity(IDLE_INBUF);
                        }
                        if self.out.is_empty() && self.out.capacity() > IDLE_OUT {
                            self.out = BytesMut::new();
                        }
                    }
                }
                _ = &mut sleep => return Err(Closed::IdleTimeout),
                () = &mut *stopping => return Err(Closed::Shutdown),
            }
        }
    }

    /// Serve a batch of requests, with the live configuration if the caller has just
    /// read it.
    async fn serve_batch(
        &mut self,
        batch: &mut BatchRoom,
        live: Option<Arc<Live>>,
    ) -> Result<(), Closed> {
        let mut left = batch.len();
        self.gather = left > 1 && self.ctx.clients() > 1;
        // The live configuration, read once per batch (a read is a pair of atomic
        // operations) and again after anything that waited, which may have been long
        // enough for a reload to matter (a blocking command, a pinned connection).
        let mut live = live.unwrap_or_else(|| Arc::clone(self.live.load()));
        // The clock likewise: hits are checked against a time after every request of
        // the batch arrived (see `cache::Clock`).
        self.clock.reset();
        for req in batch.drain(..) {
            if self.quit {
                break;
            }
            left -= 1;
            self.last_in_batch = left == 0;
            // Most commands are done here without an await (a forward with nothing to add,
            // a cache hit, a refusal); only the rest build `route`'s future.
            // The futures below are boxed: the serving state is large and only lives
            // while a batch is in flight, which keeps an idle connection's task small.
            // Each stays under glibc's per-thread cache size (1 KiB), where a
            // box costs a few dozen instructions; one box of the whole batch did not.
            if let Some(routed) = self.route_start(req, &live) {
                Box::pin(self.route(routed)).await?;
                live = Arc::clone(self.live.load());
                self.clock.reset();
            }
            if !self.unsent.is_empty() {
                Box::pin(self.send_unsent()).await;
                live = Arc::clone(self.live.load());
                self.clock.reset();
            }
        }
        // Not boxed, unlike the rare paths above: it runs once per batch, and its own rare
        // awaits are boxed inside it instead to keep it small.
        self.drain().await
    }

    /// The first part of routing, which never waits: count the command, answer what is
    /// refused or served from the cache, and forward a plain command with nothing to add.
    /// What is left (local commands, the namespace stage, pinned state) goes to `route`.
    fn route_start(&mut self, mut req: Request, live: &Arc<Live>) -> Option<Routed> {
        self.ledger.command(&self.ctx.metrics, req.name());
        if req.args.len() >= 3 && req.args[0].eq_ignore_ascii_case(b"CLIENT") {
            req = self.translate_client_ids(req);
        }
        let mut route = classify(&req.args);
        let namespaced = live.namespaces.enabled();
        if let Some(db) = self
            .ns
            .as_ref()
            .map(|n| n.db)
            .filter(|&db| db != 0 && !namespaced)
        {
            // A reload removed every namespace while this client sat in a mapped db: its
            // keys must not reach db 0 unprefixed. SELECT 0 (or RESET) gets it out.
            if route == Route::Local(Local::SelectZero) {
                self.ns = None;
            } else if !matches!(route, Route::Local(_)) {
                self.ctx.metrics.refusal(RefusalRule::Select).increment(1);
                self.close_segment();
                let text = keyspace::unmapped_db(db);
                self.ready(Reply::error(format!("NOPERM {text}")));
                return None;
            }
        }
        if route == Route::Local(Local::SelectZero) && (self.pinned.is_some() || namespaced) {
            // The pinned connection may sit in another db: it must switch back itself.
            route = Route::Pinned(Pin::Select);
        }
        if let Route::Local(_) = route {
            self.close_segment();
            return Some(Routed {
                req,
                route,
                live: Arc::clone(live),
                namespaced,
                staged: None,
            });
        }
        if !self.conn.authenticated {
            self.close_segment();
            self.ready(Reply::error("NOAUTH Authentication required."));
            return None;
        }
        if let Err(denied) = live.policy.check(&req.args) {
            self.ctx
                .metrics
                .refusal(RefusalRule::DenyCommands)
                .increment(1);
            self.close_segment();
            if self.session.multi {
                self.session.multi_refused = true;
            }
            self.ready(Reply::error(format!("NOPERM {}", denied.0)));
            return None;
        }
        if namespaced && live.namespaces.any_cached() && self.fast_hit(live, &req) {
            return None;
        }
        let simple = route == Route::Shared
            && self.pinned.is_none()
            && self.ctx.migration.is_none()
            && self.tx_lost.is_none()
            && !wants_info(&req, self.session.multi);
        let mut staged = None;
        if simple {
            if !namespaced {
                self.push_seg(&req, None);
                self.seg_count += 1;
                return None;
            }
            // The namespace stage never waits either: what it passes on as it is (or with
            // a mapped db's prefix) goes out here, unless the cache has a say (then all of
            // it runs in `route`).
            if !live.namespaces.any_cached() {
                if let Some(ns) = self.ns.as_deref_mut() {
                    let one =
                        keyspace::mapped_one(&live.namespaces, ns.db, &req, &mut ns.key_scratch);
                    if let Some((prefix, index)) = one {
                        write_prefixed_key(&req, prefix, index, &mut self.seg);
                        self.seg_count += 1;
                        return None;
                    }
                }
                match self.stage(live, &req) {
                    Staged::Forward => self.push_seg(&req, None),
                    Staged::Prefixed(at) if self.push_mapped(live, &req, &at) => {}
                    // Rare (refusals, rewrites): boxed, to keep `route`'s future small.
                    stage => staged = Some(Box::new(stage)),
                }
                if staged.is_none() {
                    self.seg_count += 1;
                    return None;
                }
            }
        }
        Some(Routed {
            req,
            route,
            live: Arc::clone(live),
            namespaced,
            staged,
        })
    }

    /// The namespace stage for one request of this client.
    fn stage(&mut self, live: &Live, req: &Request) -> Staged {
        let cx = StageCtx {
            namespaces: &live.namespaces,
            policy: &live.config.policy,
            touch: &self.ctx.touch,
            unmatched: &self.ctx.unmatched,
        };
        let ns = self.ns.get_or_insert_with(Box::default);
        let view = ClientView {
            db: ns.db,
            in_multi: self.session.multi,
        };
        keyspace::stage(&cx, view, req, &mut ns.key_scratch)
    }

    async fn route(&mut self, routed: Routed) -> Result<(), Closed> {
        let Routed {
            mut req,
            route,
            live,
            namespaced,
            staged,
        } = routed;
        if let Route::Local(local) = route {
            let reply = Box::pin(self.local(local, &req)).await;
            self.ready(reply);
            return Ok(());
        }
        let pin = match route {
            Route::Pinned(p) => Some(p),
            _ => None,
        };
        let mut extra = Extra::default();
        // Migration hook: an old_db client served by the old store skips the namespace stage.
        if namespaced && !self.migration_bypass(&req) {
            // Staged already by `route_start` when it could have forwarded the request.
            let staged = match staged {
                Some(staged) => *staged,
                None => self.stage(&live, &req),
            };
            let ns = self.ns.get_or_insert_with(Box::default);
            match staged {
                Staged::Forward => {}
                Staged::Prefixed(at) => match at.with_prefix(&live.namespaces, ns.db) {
                    Some(prefix) => extra.prefix = Some(prefix),
                    None => {
                        // Staged for this db with this configuration: cannot happen. Never
                        // forward a mapped client's keys unprefixed.
                        let text = format!("NOPERM db {} is not mapped onto a namespace", ns.db);
                        self.close_segment();
                        self.ready(Reply::error(text));
                        return Ok(());
                    }
                },
                Staged::Rewritten(r) => {
                    if let Some(staged) = r.req {
                        req = staged;
                    }
                    extra.fix = r.fix.map(Fix::Strip);
                    extra.follow_ups = r.follow_ups;
                    extra.prefix = r.prefix;
                    if !r.channels.is_empty() {
                        ns.mapped_db = ns.db;
                        ns.mapped_channels.extend(r.channels);
                    }
                }
                Staged::Answer(reply) => {
                    self.close_segment();
                    self.ready(reply);
                    return Ok(());
                }
                Staged::Refuse { rule, text } => {
                    self.ctx.metrics.refusal(rule).increment(1);
                    self.close_segment();
                    if self.session.multi {
                        self.session.multi_refused = true;
                    }
                    self.ready(Reply::error(format!("NOPERM {text}")));
                    return Ok(());
                }
                Staged::Select(db) => {
                    ns.db = db;
                    self.close_segment();
                    self.ready(Reply::ok());
                    return Ok(());
                }
                Staged::Run(op) => {
                    Box::pin(self.drain()).await?;
                    let reply = Box::pin(self.run_op(op)).await;
                    self.ready(reply);
                    return Ok(());
                }
            }
            // Checked before the clone: an Arc clone and drop cost more than the check.
            let cache = live.namespaces.any_cached().then(|| self.ctx.cache.clone());
            if let Some(cache) = cache.flatten() {
                if self.cache_usable(&cache) && self.cache_stage(&cache, &live, &req, &mut extra) {
                    return Ok(());
                }
                if let Some(job) = self.write_fill(&cache, &live, pin, &req, &extra) {
                    if Box::pin(self.send_write_fill(job)).await {
                        return Ok(());
                    }
                }
            }
        }
        if wants_info(&req, self.session.multi) {
            extra.fix = Some(Fix::AppendInfo(info::section(&self.ctx)));
        }
        // Migration hook: hold the pass (the store of record stays put until this batch is
        // answered) and remember what this command may write (copied once answered).
        if self.ctx.migration.is_some() {
            Box::pin(self.migration_enter()).await?;
            self.migration_note(&req, extra.prefix.as_ref(), namespaced);
        }
        if self.tx_lost.is_some() && Box::pin(self.lost_transaction(pin)).await {
            return Ok(());
        }
        // Transaction ends sent by a client that holds no transaction are stateless errors/no-ops.
        let stateless_end = matches!(pin, Some(Pin::Exec | Pin::Discard | Pin::Unwatch));
        if self.pinned.is_none() && (pin.is_none() || stateless_end) {
            if extra.is_plain() {
                self.push_seg(&req, extra.prefix.as_ref());
                self.seg_count += 1;
                self.note_seg_inval(&mut extra.inval);
            } else {
                // A rewritten reply, a cache fill or dropped follow-ups: the command gets
                // a job of its own.
                self.close_segment();
                let mut follow_ups = Vec::new();
                match extra.fill.as_ref() {
                    Some(fill) => {
                        match &fill.replace {
                            // Keys as Redis names them: no mapped prefix to add.
                            Some(args) => encode_command(args, &mut self.seg),
                            None => self.push_seg(&req, extra.prefix.as_ref()),
                        }
                        follow_ups = fill.follow_ups();
                    }
                    None => self.push_seg(&req, extra.prefix.as_ref()),
                }
                follow_ups.append(&mut extra.follow_ups);
                for args in &follow_ups {
                    encode_command(args, &mut self.seg);
                }
                self.seg_count = 1 + follow_ups.len();
                self.note_seg_inval(&mut extra.inval);
                let fix = SlotFix {
                    keep: 1,
                    fix: extra.fix,
                    fill: extra.fill,
                };
                self.close_segment_with(Some(Box::new(fix)));
            }
            return Ok(());
        }
        let req = match extra.prefix.take() {
            Some(prefix) => prefix.apply(&req),
            None => req,
        };
        Box::pin(self.send_pinned(req, pin, extra)).await
    }

    /// The cache stage: answer a read from the cache, plan its fill, note a write, or
    /// refuse at once while Redis is unreachable. True when the request was answered.
    fn cache_stage(
        &mut self,
        cache: &Arc<Cache>,
        live: &Live,
        req: &Request,
        extra: &mut Extra,
    ) -> bool {
        let fail_fast_after = if self.ctx.upstream.is_sentinel() {
            self.ctx.config.upstream.failover_wait
        } else {
            Duration::ZERO
        };
        let mut hit = self.hit_out();
        let out = if hit.direct {
            &mut self.out
        } else {
            &mut hit.scratch
        };
        let ns = self.ns.get_or_insert_with(Box::default);
        let view = cache::plan::View {
            proto: self.conn.proto,
            written: &ns.written,
            pinned: self.pinned.is_some() || self.session.multi,
            prefix: extra.prefix.as_ref().map(|p| &p.prefix),
            fail_fast_after,
            clock: &self.clock,
        };
        match cache::plan::plan(cache, &live.namespaces, &view, &req.args, out) {
            Plan::Pass => false,
            Plan::Fill(fill) => {
                extra.fill = Some(fill);
                false
            }
            Plan::Write(keys) => {
                // Before it is sent, so no later read of this client can hit the old value.
                cache.invalidate(&keys);
                if let Some(ns) = self.ns.as_mut() {
                    ns.written.extend(keys.iter().cloned());
                }
                extra.inval = keys;
                false
            }
            Plan::Answered => {
                self.hit_answered(hit);
                if !extra.follow_ups.is_empty() {
                    // A sliding TTL still reaches Redis; its replies are dropped.
                    for args in &extra.follow_ups {
                        encode_command(args, &mut self.seg);
                    }
                    self.seg_count = extra.follow_ups.len();
                    let fix = SlotFix {
                        keep: 0,
                        fix: None,
                        fill: None,
                    };
                    self.close_segment_with(Some(Box::new(fix)));
                }
                true
            }
            Plan::Unavailable(text) => {
                self.close_segment();
                if self.session.multi {
                    self.session.multi_refused = true;
                }
                self.ready(Reply::error(text));
                true
            }
        }
    }

    /// A plain `SET` of one cached key (`cache.fill_on_write`) to send on the invalidation
    /// connection, which leaves the value in the cache: only when nothing else of this
    /// client is in flight or follows in its batch, so going out on another connection
    /// cannot reorder its commands (a pipeline of writes goes through its shared
    /// connection and only invalidates).
    fn write_fill(
        &self,
        cache: &Cache,
        live: &Live,
        pin: Option<Pin>,
        req: &Request,
        extra: &Extra,
    ) -> Option<(invalidation::WriteFill, oneshot::Receiver<Written>)> {
        let [key] = extra.inval.as_slice() else {
            return None;
        };
        if !live.config.cache.fill_on_write
            || !self.last_in_batch
            || pin.is_some()
            || self.pinned.is_some()
            || self.session.multi
            || self.tx_lost.is_some()
            || self.ctx.migration.is_some()
            || self.seg_count != 0
            || !self.slots.is_empty()
            || !self.unsent.is_empty()
            || extra.fix.is_some()
            || extra.fill.is_some()
            || !extra.follow_ups.is_empty()
            || !cache.is_live()
        {
            return None;
        }
        let (value, ttl) = cache::plan::plain_set(&req.args)?;
        let ns = live.namespaces.of_key(key)?.cache.clone()?;
        let mut bytes = BytesMut::new();
        match &extra.prefix {
            Some(p) => write_prefixed(req, &p.prefix, p.indices(), &mut bytes),
            None => bytes.extend_from_slice(&req.raw),
        }
        let (tx, rx) = oneshot::channel();
        let job = invalidation::WriteFill {
            bytes: bytes.freeze(),
            key: key.clone(),
            value,
            ttl,
            ns,
            reply: tx,
        };
        Some((job, rx))
    }

    /// Send a [`Client::write_fill`] and queue its reply. False when it was not sent
    /// (the stream is down, its queue full): the caller sends it the ordinary way.
    async fn send_write_fill(
        &mut self,
        (job, rx): (invalidation::WriteFill, oneshot::Receiver<Written>),
    ) -> bool {
        let Some(tx) = self.ctx.cache_writes.as_ref() else {
            return false;
        };
        if tx.try_send(job).is_err() {
            return false;
        }
        match rx.await {
            // A replica answered: nothing ran; the ordinary way retries on the primary.
            Ok(Written::Reply(reply)) if has_readonly(&reply) => return false,
            Ok(Written::Reply(reply)) => self.slots.push_back(Slot::Ready(reply)),
            Ok(Written::NotSent) => return false,
            // Err: the listener went away holding it (shutdown): it may have been sent.
            Ok(Written::Lost) | Err(_) => {
                self.ready(Reply::error(UpstreamError::Lost.reply_text()));
            }
        }
        true
    }

    /// Answer the cached `GET`s at the front of the input, at most `max`, in place:
    /// each is read where it lies ([`RequestDecoder::peek_get`]), answered straight
    /// into the output and dropped from the input, with no request built. A request
    /// built from the read buffer takes and drops a reference count on it for its
    /// bytes and each argument, which is a good part of a hit's cost. Only while
    /// nothing is owed to the client (the replies go out in order) and only what
    /// `route_start` would answer from the cache the same way: an authenticated client
    /// in db 0, outside `MULTI` and pinned state, a `GET` the policy allows of a key
    /// in a cached namespace with a fresh entry. The first frame that is anything else
    /// ends it, and the usual path takes the rest. Returns how many were answered.
    fn hits_in_place(&mut self, max: usize) -> (usize, Option<Arc<Live>>) {
        let Some(cache) = self.ctx.cache.as_ref() else {
            return (0, None);
        };
        // The cheap tests first: this runs before every batch of every client.
        if !cache.is_live()
            || self.quit
            || !self.conn.authenticated
            || self.pinned.is_some()
            || self.session.multi
            || !self.slots.is_empty()
            || self.seg_count != 0
            || self.ns.as_ref().is_some_and(|ns| ns.db != 0)
        {
            return (0, None);
        }
        let Some(mut get) = self.decoder.peek_get(&self.inbuf) else {
            return (0, None);
        };
        let live = Arc::clone(self.live.load());
        if !live.namespaces.any_cached() || !self.cache_usable(cache) {
            return (0, Some(live));
        }
        self.clock.reset();
        let written: &[Bytes] = self.ns.as_ref().map_or(&[], |ns| &ns.written);
        let view = cache::plan::View::db0(self.conn.proto, written, &self.clock);
        let mut answered = 0;
        loop {
            let (name, key) = (&self.inbuf[get.name.clone()], &self.inbuf[get.key.clone()]);
            if live.policy.denial(name, Some(key)).is_some() {
                break;
            }
            let from = self.out.len();
            if !cache::plan::get_hit(cache, &live.namespaces, &view, key, &mut self.out) {
                break;
            }
            if answered == 0 {
                self.ledger.begin(&self.ctx.metrics);
            }
            self.ledger.command(&self.ctx.metrics, name);
            let reply = self.out.get(from..).unwrap_or_default();
            self.ledger.ready(&self.ctx.metrics, reply);
            bytes::Buf::advance(&mut self.inbuf, get.len);
            answered += 1;
            match self.decoder.peek_get(&self.inbuf) {
                Some(next) if answered < max => get = next,
                _ => break,
            }
        }
        (answered, Some(live))
    }

    /// A cache hit for a client in db 0, answered before the namespace stage (see
    /// [`cache::plan::fast_hit`]). True when answered.
    fn fast_hit(&mut self, live: &Live, req: &Request) -> bool {
        // Borrowed, not cloned: a counted reference per hit is two atomic operations.
        let Some(cache) = self.ctx.cache.as_ref() else {
            return false;
        };
        if !live.namespaces.any_cached()
            || self.pinned.is_some()
            || self.session.multi
            || self.ns.as_ref().is_some_and(|ns| ns.db != 0)
            || !self.cache_usable(cache)
        {
            return false;
        }
        let mut hit = self.hit_out();
        let out = if hit.direct {
            &mut self.out
        } else {
            &mut hit.scratch
        };
        let written: &[Bytes] = self.ns.as_ref().map_or(&[], |ns| &ns.written);
        let view = cache::plan::View::db0(self.conn.proto, written, &self.clock);
        if !cache::plan::fast_hit(cache, &live.namespaces, &view, &req.args, out) {
            return false;
        }
        self.hit_answered(hit);
        true
    }

    /// Where a cache hit's reply is written: with nothing owed before it, straight into
    /// the output buffer; otherwise into a slot of its own, in command order.
    fn hit_out(&self) -> HitOut {
        HitOut {
            direct: self.slots.is_empty() && self.seg_count == 0,
            from: self.out.len(),
            scratch: BytesMut::new(),
        }
    }

    /// A hit's reply was written as [`Client::hit_out`] chose: count it or queue its slot.
    fn hit_answered(&mut self, hit: HitOut) {
        if hit.direct {
            // No slot for this reply: it is counted here, in command order.
            let reply = self.out.get(hit.from..).unwrap_or_default();
            self.ledger.ready(&self.ctx.metrics, reply);
        } else {
            self.close_segment();
            self.slots.push_back(Slot::Ready(hit.scratch.freeze()));
        }
    }

    /// Cached keys the command just added to the open segment writes.
    fn note_seg_inval(&mut self, keys: &mut Vec<Bytes>) {
        if let (Some(ns), false) = (self.ns.as_mut(), keys.is_empty()) {
            ns.seg_inval.append(keys);
        }
    }

    /// The cache follows the upstream's invalidations, so it serves only while the
    /// upstream is the store of record: during a migration's `off` and `shadow` phases
    /// (the old store serves) it is emptied and left alone.
    fn cache_usable(&self, cache: &Cache) -> bool {
        if self.ctx.migration.is_none() || self.store().same(&self.ctx.upstream) {
            cache.resume();
            true
        } else {
            cache.suspend();
            false
        }
    }

    /// Drop cached keys a write changed (its reply is in).
    fn invalidate(&self, keys: &[Bytes]) {
        if let (Some(cache), false) = (&self.ctx.cache, keys.is_empty()) {
            cache.invalidate(keys);
        }
    }

    /// Append a command to the open shared segment, prefixing its keys on the way.
    fn push_seg(&mut self, req: &Request, prefix: Option<&Prefix>) {
        match prefix {
            Some(p) => write_prefixed(req, &p.prefix, p.indices(), &mut self.seg),
            None => self.seg.extend_from_slice(&req.raw),
        }
    }

    /// [`push_seg`](Self::push_seg) for the stage's common mapped-db answer, with the
    /// prefix borrowed from `live`, the configuration the stage ran with; `false` (and
    /// nothing written) if that has no namespace for the client's db, which the stage
    /// just found.
    fn push_mapped(&mut self, live: &Live, req: &Request, at: &Positions) -> bool {
        let db = self.ns.as_ref().map_or(0, |ns| ns.db);
        let Some(prefix) = Positions::prefix(&live.namespaces, db) else {
            return false;
        };
        write_prefixed(req, prefix, at.indices(), &mut self.seg);
        true
    }

    async fn send_pinned(
        &mut self,
        req: Request,
        pin: Option<Pin>,
        extra: Extra,
    ) -> Result<(), Closed> {
        if self.pinned.is_none() {
            // Everything sent before on the shared connection must be answered first.
            self.migration_hold(true);
            self.drain().await?;
            self.migration_hold(false);
            match self.store().pin(self.conn.proto).await {
                Ok(p) => {
                    self.pinned = Some(p);
                    self.sync_pinned_id();
                    self.follow_pinned_store();
                }
                Err(e) => {
                    self.ready(Reply::error(e.reply_text()));
                    return Ok(());
                }
            }
        }
        if pin == Some(Pin::Exec) && self.session.multi_refused {
            if let Some(ns) = self.ns.as_mut() {
                ns.tx_fixes.clear();
            }
            let reply = Reply::error("EXECABORT Transaction discarded because of previous errors.")
                .to_bytes(self.conn.proto);
            self.discard_instead_of_exec(reply);
            return Ok(());
        }
        let queued =
            self.session.multi && !matches!(pin, Some(Pin::Exec | Pin::Discard | Pin::Multi));
        let mut fix = extra.fix;
        if let Some(ns) = self.ns.as_mut() {
            match pin {
                Some(Pin::Multi) | Some(Pin::Discard) => ns.tx_fixes.clear(),
                Some(Pin::Exec) => {
                    let fixes = std::mem::take(&mut ns.tx_fixes);
                    if fixes.iter().any(|f| *f != ExecFix::Keep) {
                        let prefix = self
                            .ctx
                            .live()
                            .namespaces
                            .by_db(ns.db)
                            .map(|n| n.prefix.clone())
                            .unwrap_or_default();
                        fix = Some(Fix::Exec { fixes, prefix });
                    }
                }
                _ if queued => {
                    // Inside MULTI the reply is +QUEUED; the rewrite applies to EXEC's result.
                    ns.tx_fixes.push(match fix.take() {
                        Some(Fix::Strip(f)) => ExecFix::Strip(f.kind),
                        _ => ExecFix::Keep,
                    });
                    ns.tx_fixes
                        .extend(extra.follow_ups.iter().map(|_| ExecFix::Drop));
                }
                _ => {}
            }
        }
        let mut inval = extra.inval;
        if let Some(ns) = self.ns.as_mut() {
            match pin {
                Some(Pin::Multi) | Some(Pin::Discard) => ns.tx_inval.clear(),
                // The queued writes run now: invalidate their keys once EXEC is answered.
                Some(Pin::Exec) => inval.append(&mut ns.tx_inval),
                _ if queued => ns.tx_inval.append(&mut inval),
                _ => {}
            }
        }
        let keep = self.session.sent(&req.args, pin);
        self.pinned_out.extend_from_slice(&req.raw);
        let mut count = keep;
        for args in &extra.follow_ups {
            count += self.session.sent(args, None);
            encode_command(args, &mut self.pinned_out);
        }
        let fix = (fix.is_some() || count != keep).then(|| {
            Box::new(SlotFix {
                keep,
                fix,
                fill: None,
            })
        });
        self.slots.push_back(Slot::Pinned { count, fix, inval });
        Ok(())
    }

    /// Carry out a prefix-scoped operation (earlier commands are all answered).
    async fn run_op(&mut self, op: Op) -> Reply {
        let up = self.store();
        let result = match op {
            Op::Keys { pattern, strip } => {
                let max = self.ctx.config.server.max_reply_buffer;
                scoped::keys(up, &pattern, strip.as_ref(), max)
                    .await
                    .map(|keys| Reply::Array(keys.into_iter().map(Reply::Bulk).collect()))
            }
            Op::DbSize { prefix } => scoped::count(up, &prefix)
                .await
                .map(|n| Reply::Integer(n as i64)),
            Op::RandomKey { prefix } => scoped::random_key(up, &prefix)
                .await
                .map(|k| k.map(Reply::Bulk).unwrap_or(Reply::Null)),
            Op::Flush { prefixes, kind } => scoped::delete_prefixes(up, &prefixes, false)
                .await
                .map(|removed| {
                    if let Some(cache) = &self.ctx.cache {
                        cache.flush();
                    }
                    let metrics = &self.ctx.metrics;
                    metrics.flush(kind).increment(1);
                    metrics.flush_keys_removed.increment(removed);
                    debug!(client = self.conn.id, removed, "flush made prefix-scoped");
                    Reply::ok()
                }),
        };
        result.unwrap_or_else(|e| Reply::error(e.reply_text()))
    }

    fn ready(&mut self, reply: Reply) {
        self.slots
            .push_back(Slot::Ready(reply.to_bytes(self.conn.proto)));
    }

    /// Hand the open run of shared commands to the client's shared connection.
    fn close_segment(&mut self) {
        self.close_segment_with(None)
    }

    /// Queue the jobs the shared connection had no room for, in order, waiting for room.
    async fn send_unsent(&mut self) {
        while let Some((conn, job)) = self.unsent.pop_front() {
            if let Err(job) = conn.send(job).await {
                job_lost(job);
            }
        }
    }

    fn close_segment_with(&mut self, fix: Option<Box<SlotFix>>) {
        if self.seg_count == 0 {
            return;
        }
        let bytes = self.seg.split().freeze();
        // Only sentinel mode retries -READONLY replies, so only it keeps what was sent;
        // the retry goes to the upstream, so not for a segment sent to the migration's
        // old store.
        let (sent, epoch) =
            if self.ctx.upstream.is_sentinel() && self.store().same(&self.ctx.upstream) {
                (bytes.clone(), self.ctx.upstream.epoch())
            } else {
                (Bytes::new(), 0)
            };
        let count = std::mem::take(&mut self.seg_count);
        let inval = self
            .ns
            .as_mut()
            .map(|ns| std::mem::take(&mut ns.seg_inval))
            .unwrap_or_default();
        let (tx, rx) = oneshot::channel();
        let job = Job {
            bytes,
            count,
            reply: tx,
            budget: self.budget.clone(),
        };
        let conn = self.store().shared(self.conn.proto, self.conn.id);
        let full = if self.unsent.is_empty() {
            match conn.try_send(job) {
                Ok(()) => None,
                Err(TrySendError::Full(job)) => Some((conn.clone(), job)),
                Err(TrySendError::Closed(job)) => {
                    job_lost(job);
                    None
                }
            }
        } else {
            // Behind a job still waiting for room: keep the order.
            Some((conn.clone(), job))
        };
        if let Some(waiting) = full {
            // The connection's queue is full (backpressure): `send_unsent` waits for room
            // before the next command is routed or any reply is awaited.
            self.unsent.push_back(waiting);
        }
        self.slots.push_back(Slot::Shared {
            count,
            rx,
            sent,
            epoch,
            fix,
            inval,
        });
    }

    /// Collect every owed reply in order into the output, writing as it grows; flush once at the end.
    pub(super) async fn drain(&mut self) -> Result<(), Closed> {
        self.close_segment();
        // The rare awaits below are boxed: this future is part of every client task's
        // (each idle connection's) size, and boxing it whole cost an allocation and a copy
        // of ~800 bytes per batch (~430 user-space instructions per request at -P 1).
        if !self.unsent.is_empty() {
            Box::pin(self.send_unsent()).await;
        }
        if !self.pinned_out.is_empty() {
            let bytes = self.pinned_out.split();
            let up = self.pinned_store();
            let stale =
                up.is_sentinel() && self.pinned.as_ref().map(|p| p.epoch()) != Some(up.epoch());
            let sent = match self.pinned.as_mut() {
                // Never write to a primary that is being failed over or was replaced.
                Some(_) if stale => Err(UpstreamError::PrimaryChanged),
                Some(p) => Box::pin(p.write(&bytes)).await,
                None => Err(UpstreamError::Lost),
            };
            if let Err(e) = sent {
                self.fail_pinned_slots(&e);
            }
        }
        // Whether this batch waited for a reply from Redis (see the yield below).
        let mut waited = false;
        while let Some(slot) = self.slots.pop_front() {
            if !matches!(slot, Slot::Ready(_)) {
                waited = true;
            }
            match slot {
                Slot::Ready(bytes) => {
                    self.ledger.ready(&self.ctx.metrics, &bytes);
                    self.out.extend_from_slice(&bytes)
                }
                Slot::Shared {
                    count,
                    rx,
                    sent,
                    epoch,
                    fix,
                    inval,
                } => {
                    // Only this slot's reply is awaited: a shared connection answers a
                    // client's jobs in order, so the replies that could push the budget over
                    // come after it, and it is checked as soon as this one is in.
                    let mut batch = rx.await.unwrap_or(Batch {
                        bytes: Bytes::new(),
                        got: 0,
                        errors: 0,
                        error: Some(UpstreamError::Lost),
                    });
                    if self.budget.is_exceeded() {
                        return Err(Closed::ReplyBufferExceeded);
                    }
                    self.budget.written(batch.bytes.len());
                    if self.ctx.upstream.is_sentinel() && has_readonly(&batch.bytes) {
                        batch.bytes = Box::pin(self.retry_readonly(sent, batch.bytes, epoch)).await;
                    }
                    let kept = fix.as_ref().map_or(count, |f| f.keep);
                    self.ledger.shared(&self.ctx.metrics, &batch, kept);
                    let mut count = count;
                    if let Some(fix) = fix {
                        // Rewrite the kept replies, drop the follow-ups' replies.
                        let frames = split_frames(&batch.bytes);
                        let filled = fix
                            .fill
                            .as_ref()
                            .filter(|_| batch.got == count)
                            .and_then(|fill| fill.complete(&frames, self.conn.proto));
                        for (i, frame) in frames.iter().take(fix.keep).enumerate() {
                            let frame = match &filled {
                                Some(composed) if i == 0 => composed,
                                _ => frame,
                            };
                            match &fix.fix {
                                Some(f) => self.out.extend_from_slice(&f.apply(frame)),
                                None => self.out.extend_from_slice(frame),
                            }
                        }
                        batch.got = batch.got.min(fix.keep);
                        count = fix.keep;
                        batch.bytes = Bytes::new();
                    }
                    self.out.extend_from_slice(&batch.bytes);
                    if batch.got < count {
                        let err = batch.error.unwrap_or(UpstreamError::Lost);
                        let reply = Reply::error(err.reply_text()).to_bytes(self.conn.proto);
                        for _ in batch.got..count {
                            self.out.extend_from_slice(&reply);
                        }
                    }
                    self.invalidate(&inval);
                }
                Slot::Pinned { count, fix, inval } => {
                    Box::pin(self.read_pinned(count, None, fix)).await?;
                    self.ledger.pinned();
                    self.invalidate(&inval);
                }
                Slot::PinnedReplaced { count, reply } => {
                    self.ledger.replaced(&reply);
                    Box::pin(self.read_pinned(count, Some(reply), None)).await?
                }
            }
            if self.out.len() >= OUT_HIGH_WATER {
                Box::pin(self.write_out()).await?;
            }
        }
        // Migration hook: every reply is in; queue the copies (a transaction's at EXEC)
        // before the client sees the last reply.
        if let (Some(m), Some(mc)) = (self.ctx.migration.as_deref(), self.mig.as_mut()) {
            if !self.session.multi && !mc.hold {
                m.flush(&mut mc.pending);
                mc.pass = None;
            }
        }
        self.ledger.queued(&self.ctx.metrics);
        let gather = std::mem::take(&mut self.gather);
        if gather && !waited && !self.out.is_empty() {
            // A pipeline answered here alone (cache hits, local replies): let the other
            // clients with input ready read and answer theirs first, so the replies go
            // out together, as Redis writes its replies after serving every ready
            // client. Written one by one between other clients' work, each reply found
            // the client process asleep again: on cached GETs at -P 16 (50 clients)
            // that was ~44k wake-ups of redis-benchmark per 2M requests against ~5k
            // talking to Redis directly, and the wake-ups' kernel time made the sidecar
            // 0.77x of direct Redis; with the yield ~7k, and 0.94x. The yield costs
            // ~1,200 instructions (a pass through the scheduler and the driver), so
            // single commands and a lone client, where it measured no gain, skip it.
            tokio::task::yield_now().await;
        }
        self.write_out().await?;
        // Every write sent so far is answered.
        if let Some(ns) = self.ns.as_mut() {
            ns.written.clear();
        }
        self.maybe_release();
        Ok(())
    }

    /// Read `count` replies from the pinned connection into the output, forwarding any
    /// out-of-band frames that arrive among them.
    async fn read_pinned(
        &mut self,
        count: usize,
        replace: Option<Bytes>,
        fix: Option<Box<SlotFix>>,
    ) -> Result<(), Closed> {
        let keep = fix.as_ref().map_or(count, |f| f.keep);
        let mut got = 0;
        while got < count {
            let Some(p) = self.pinned.as_mut() else {
                break;
            };
            let epoch = p.epoch();
            let frame = tokio::select! {
                // The reply is usually ready: check it before arming the other branches.
                biased;
                f = p.read_frame() => f,
                _ = retired(&mut self.primary, epoch) => Err(UpstreamError::PrimaryChanged),
                _ = self.budget.exceeded() => return Err(Closed::ReplyBufferExceeded),
            };
            match frame {
                Ok(frame) => {
                    let frame = match self.map_pubsub(frame) {
                        Some(frame) => frame,
                        None => continue,
                    };
                    if self.session.is_reply(&frame, self.conn.proto) {
                        got += 1;
                        if replace.is_none() && got <= keep {
                            self.ledger.note(&frame);
                            match fix.as_ref().and_then(|f| f.fix.as_ref()) {
                                Some(f) => self.out.extend_from_slice(&f.apply(&frame)),
                                None => self.out.extend_from_slice(&frame),
                            }
                        }
                    } else {
                        self.out.extend_from_slice(&frame);
                    }
                    if self.out.len() >= OUT_HIGH_WATER {
                        self.write_out().await?;
                    }
                }
                Err(e) => {
                    debug!(client = self.conn.id, error = %e, "pinned upstream connection lost");
                    let reply = Reply::error(e.reply_text()).to_bytes(self.conn.proto);
                    if replace.is_none() && got < keep {
                        self.ledger.note(&reply);
                    }
                    // A replaced slot owes only its replacement, written below.
                    let owed = if replace.is_some() { 0 } else { keep };
                    for _ in got.min(owed)..owed {
                        self.out.extend_from_slice(&reply);
                    }
                    got = count;
                    self.fail_pinned_slots(&e);
                }
            }
        }
        if let Some(reply) = replace {
            self.out.extend_from_slice(&reply);
        }
        Ok(())
    }

    /// The pinned connection failed: answer its remaining slots with errors and forget its state.
    fn fail_pinned_slots(&mut self, err: &UpstreamError) {
        let reply = Reply::error(err.reply_text()).to_bytes(self.conn.proto);
        // A PinnedReplaced slot owes the client only its replacement (EXECABORT, nil, or
        // nothing for the sidecar's own rebuild commands): it is answered as it is when
        // drained, with no pinned connection left to read.
        for slot in self.slots.iter_mut() {
            if let Slot::Pinned { count, fix, inval } = slot {
                // The writes may have run: their keys are invalidated all the same.
                if let Some(cache) = &self.ctx.cache {
                    cache.invalidate(inval);
                }
                let owed = fix.as_ref().map_or(*count, |f| f.keep);
                let mut bytes = BytesMut::new();
                for _ in 0..owed {
                    bytes.extend_from_slice(&reply);
                }
                *slot = Slot::Ready(bytes.freeze());
            }
        }
        self.drop_pinned();
    }

    /// Forget a pinned connection that failed. Its state is kept to rebuild what can be
    /// rebuilt (subscriptions, db, tracking); a transaction or watch it held is marked lost.
    fn drop_pinned(&mut self) {
        self.pinned = None;
        self.sync_pinned_id();
        self.pinned_out.clear();
        let old = std::mem::take(&mut self.session);
        if old.multi {
            self.tx_lost = Some(TxLost::Multi);
        } else if old.watch {
            self.tx_lost = Some(TxLost::Watch);
        }
        if !old.is_clean() {
            self.lost = Some(old);
        }
    }

    /// Give the pinned connection back once its state ended and nothing is owed on it.
    fn maybe_release(&mut self) {
        if self.pinned.is_some() && self.slots.is_empty() && self.session.is_clean() {
            if let Some(p) = self.pinned.take() {
                self.sync_pinned_id();
                self.store().release(p);
            }
        }
    }

    /// Write the output buffer to the client.
    pub(super) async fn write_out(&mut self) -> Result<(), Closed> {
        if self.out.is_empty() {
            return Ok(());
        }
        let written = tokio::select! {
            // The reply is usually ready: check it before arming the other branches.
            biased;
            r = self.wr.write_all(&self.out) => r,
            _ = self.budget.exceeded() => return Err(Closed::ReplyBufferExceeded),
        };
        written.map_err(Closed::Io)?;
        self.out.clear();
        Ok(())
    }

    pub(super) fn set_quit(&mut self) {
        self.quit = true;
    }

    pub(super) fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// RESET: forget every piece of connection state, close any pinned connection.
    pub(super) async fn reset(&mut self) {
        self.drain_quietly().await;
        // RESET drops every piece of state on purpose: nothing to rebuild.
        self.pinned = None;
        self.sync_pinned_id();
        self.pinned_out.clear();
        self.session = Session::default();
        self.lost = None;
        self.tx_lost = None;
        self.ns = None;
        self.conn.proto = Protocol::Resp2;
        self.conn.name = None;
        self.conn.authenticated = self.ctx.config.server.requirepass.is_none();
    }

    /// Before a local command that changes the connection, let earlier commands finish.
    pub(super) async fn drain_quietly(&mut self) {
        let _ = self.drain().await;
    }
}

impl<R, W> Client<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// HELLO changed the protocol: earlier commands are answered in the old one, and a
    /// pinned connection (which keeps this client's state) is switched along with the client.
    pub(super) async fn switch_protocol(&mut self, proto: Protocol) {
        self.drain_quietly().await;
        if let Some(p) = self.pinned.as_mut() {
            if p.switch_protocol(proto).await.is_err() {
                self.drop_pinned();
            }
        }
        self.conn.proto = proto;
    }
}

/// Small accessors the failover module uses (it lives in its own file).
impl<R, W> Client<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub(super) fn tx_lost(&self) -> Option<TxLost> {
        self.tx_lost
    }

    pub(super) fn clear_tx_lost(&mut self) {
        self.tx_lost = None;
    }

    pub(super) fn budget(&self) -> Arc<ReplyBudget> {
        self.budget.clone()
    }

    /// Queue a local answer in command order (after the open shared segment).
    pub(super) async fn answer(&mut self, reply: Reply) {
        self.close_segment();
        self.ready(reply);
    }

    pub(super) fn in_pinned_multi(&self) -> bool {
        self.pinned.is_some() && self.session.multi
    }

    /// Send DISCARD where the client sent EXEC, and answer `reply` in its slot.
    pub(super) fn discard_instead_of_exec(&mut self, reply: Bytes) {
        let count = self
            .session
            .sent(&[Bytes::from_static(b"DISCARD")], Some(Pin::Discard));
        self.pinned_out
            .extend_from_slice(b"*1\r\n$7\r\nDISCARD\r\n");
        self.slots.push_back(Slot::PinnedReplaced { count, reply });
    }

    /// Queue a command whose replies are read and dropped (state being rebuilt).
    pub(super) fn queue_swallowed(&mut self, req: &Request, pin: Pin) {
        let count = self.session.sent(&req.args, Some(pin));
        self.pinned_out.extend_from_slice(&req.raw);
        self.slots.push_back(Slot::PinnedReplaced {
            count,
            reply: Bytes::new(),
        });
    }

    /// Take a pinned connection now (waiting for a verified primary within failover_wait).
    pub(super) async fn pin_now(&mut self) -> Result<(), UpstreamError> {
        let p = self.store().pin(self.conn.proto).await?;
        self.pinned = Some(p);
        self.sync_pinned_id();
        self.follow_pinned_store();
        Ok(())
    }

    pub(super) fn push_out(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
}

impl<R, W> Client<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// The store commands go to: the upstream, or during a migration the phase's store of record.
    fn store(&self) -> &crate::upstream::Upstream {
        match &self.ctx.migration {
            Some(m) => m.serving_for(self.ns.as_ref().map_or(0, |ns| ns.db)),
            None => &self.ctx.upstream,
        }
    }

    /// Hold the migration pass for this batch. A pinned connection to the store that no
    /// longer serves (the phase moved since it was opened) is given up outside a
    /// transaction, as after a failover: earlier commands are answered first, its state
    /// (subscriptions, db, tracking) is rebuilt on the serving store and a WATCH is
    /// reported lost at EXEC.
    async fn migration_enter(&mut self) -> Result<(), Closed> {
        let Some(m) = self.ctx.migration.clone() else {
            return Ok(());
        };
        loop {
            let mc = self.mig.get_or_insert_with(Box::default);
            if mc.pass.is_none() {
                mc.pass = m.pass().await;
            }
            let elsewhere = self.pinned.as_ref().is_some_and(|p| !self.store().owns(p));
            if !elsewhere || self.session.multi {
                return Ok(());
            }
            self.drain().await?;
            self.drop_pinned();
        }
    }

    /// The upstream the pinned connection belongs to (the migration's old store, or the
    /// upstream), whose primary and epoch decide when it is stale.
    fn pinned_store(&self) -> &crate::upstream::Upstream {
        match (&self.ctx.migration, &self.pinned) {
            (Some(m), Some(p)) if m.old().owns(p) => m.old(),
            _ => &self.ctx.upstream,
        }
    }

    /// Follow the primary of the store the new pinned connection belongs to.
    fn follow_pinned_store(&mut self) {
        if self.ctx.migration.is_some() {
            self.primary = self.pinned_store().discovery().subscribe();
        }
    }

    fn migration_note(&mut self, req: &Request, prefix: Option<&Prefix>, namespaced: bool) {
        let Some(m) = self.ctx.migration.as_deref() else {
            return;
        };
        let bypass = namespaced && self.migration_bypass(req);
        let mc = self.mig.get_or_insert_with(Box::default);
        let prefix = prefix.map(|p| (&p.prefix, p.indices()));
        let pinned = self.pinned.as_ref();
        m.note(
            &req.args,
            prefix,
            bypass,
            pinned,
            &mut mc.scratch,
            &mut mc.pending,
        );
    }

    fn migration_hold(&mut self, hold: bool) {
        if let Some(mc) = self.mig.as_mut() {
            mc.hold = hold;
        }
    }

    /// A client selected into the migration's `old_db` while the old store serves: its
    /// commands go there unprefixed (SELECT still goes through the namespace stage).
    fn migration_bypass(&self, req: &Request) -> bool {
        match (&self.ctx.migration, &self.ns) {
            (Some(m), Some(ns)) => {
                m.bypasses_namespaces(ns.db) && !req.name().eq_ignore_ascii_case(b"SELECT")
            }
            _ => false,
        }
    }

    fn sync_pinned_id(&self) {
        let upstream = self.pinned.as_ref().and_then(|p| p.upstream_id());
        self.ctx.set_pinned_id(self.conn.id, upstream);
    }

    /// `CLIENT UNBLOCK <id>` and `CLIENT TRACKING ... REDIRECT <id>` name a client by the id
    /// the sidecar gave it; Redis knows that client by its pinned connection's id. A client
    /// holding no pinned connection cannot be blocked or subscribed, so it maps to id 0,
    /// which Redis never assigns (UNBLOCK answers 0, REDIRECT says the client does not exist).
    fn translate_client_ids(&self, req: Request) -> Request {
        let args = &req.args;
        let at = if args[1].eq_ignore_ascii_case(b"UNBLOCK") {
            Some(2)
        } else if args[1].eq_ignore_ascii_case(b"TRACKING") {
            args.iter()
                .position(|a| a.eq_ignore_ascii_case(b"REDIRECT"))
                .map(|i| i + 1)
        } else {
            None
        };
        let Some(at) = at.filter(|&i| i < args.len()) else {
            return req;
        };
        let Some(id) = std::str::from_utf8(&args[at])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return req;
        };
        let upstream = self.ctx.upstream_id_of(id).unwrap_or(0);
        let mut args = req.args.clone();
        args[at] = Bytes::from(upstream.to_string());
        Request::from_args(args.into_vec())
    }
}

impl<R, W> Client<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// A pub/sub frame on a channel this client reached through a mapped db, as the client
    /// named it; `None` drops it (a keyevent for a key outside the client's namespace).
    fn map_pubsub(&self, frame: Bytes) -> Option<Bytes> {
        let Some(state) = self.ns.as_ref().filter(|s| !s.mapped_channels.is_empty()) else {
            return Some(frame);
        };
        let live = self.ctx.live();
        let Some(ns) = live.namespaces.by_db(state.mapped_db) else {
            return Some(frame);
        };
        let mapped = |name: &[u8]| state.mapped_channels.contains(name);
        reply::pubsub_from_upstream(&frame, state.mapped_db, ns, &mapped)
    }
}

/// The complete RESP frames in `bytes`, in order (zero-copy slices).
/// INFO outside a transaction asking for the sidecar's section: it is appended to the reply.
fn wants_info(req: &Request, in_multi: bool) -> bool {
    !in_multi && req.name().eq_ignore_ascii_case(b"INFO") && info::wants_section(&req.args)
}

/// Answer a job its connection's task will never see.
fn job_lost(job: Job) {
    let _ = job.reply.send(Batch {
        bytes: Bytes::new(),
        got: 0,
        errors: 0,
        error: Some(UpstreamError::Lost),
    });
}

fn split_frames(bytes: &Bytes) -> Vec<Bytes> {
    let mut scanner = ReplyScanner::new(MAX_REPLY_DEPTH);
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match scanner.scan(&bytes[at..]) {
            Ok(Some(len)) => {
                frames.push(bytes.slice(at..at + len));
                at += len;
            }
            _ => break,
        }
    }
    frames
}

#[cfg(test)]
impl<R, W> Client<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Wait for input once, as the loop does between batches; the bytes buffered after it.
    pub(super) async fn wait_input_once(&mut self) -> Result<usize, Closed> {
        self.wait_input_with(&mut BatchRoom::new()).await
    }

    /// [`Self::wait_input_once`] with the room kept for the next batch.
    pub(super) async fn wait_input_with(&mut self, batch: &mut BatchRoom) -> Result<usize, Closed> {
        let never = CancellationToken::new();
        let mut stopping = Stopping::new(&never);
        self.wait_input(&mut stopping, batch).await?;
        Ok(self.inbuf.len())
    }

    /// Take everything buffered, as decoding a batch does.
    pub(super) fn consume_input(&mut self) {
        drop(self.take_input());
    }

    pub(super) fn take_input(&mut self) -> BytesMut {
        self.inbuf.split()
    }

    pub(super) fn input_capacity(&self) -> usize {
        self.inbuf.capacity()
    }

    /// Buffer `len` bytes of replies, as a batch's replies leave it once written.
    pub(super) fn fill_output(&mut self, len: usize) {
        self.out.reserve(len);
        self.out.clear();
    }

    pub(super) fn output_capacity(&self) -> usize {
        self.out.capacity()
    }

    /// The size of the future `serve_batch` builds (and moves) for every request.
    pub(super) fn route_future_size(&mut self) -> usize {
        let req = Request::from_args(vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")]);
        let routed = Routed {
            req,
            route: Route::Shared,
            live: self.ctx.live(),
            namespaced: true,
            staged: None,
        };
        std::mem::size_of_val(&self.route(routed))
    }
}

#[cfg(test)]
mod stopping_tests {
    use std::time::Duration;

    use super::*;

    /// Polled several times while the token stands (the path that skips the token),
    /// then cancelled from another task: it resolves, and stays resolved.
    #[tokio::test]
    async fn a_registered_wait_resolves_when_the_token_is_cancelled() {
        let token = CancellationToken::new();
        let mut stopping = Stopping::new(&token);
        for _ in 0..3 {
            let waited = tokio::time::timeout(Duration::from_millis(5), &mut stopping).await;
            assert!(waited.is_err(), "resolved before the token was cancelled");
        }
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cancel.cancel();
        });
        let waited = tokio::time::timeout(Duration::from_secs(5), &mut stopping).await;
        assert!(waited.is_ok(), "not woken by the cancellation");
        // Resolved once, it stays resolved.
        assert!(
            tokio::time::timeout(Duration::from_millis(5), &mut stopping)
                .await
                .is_ok()
        );
    }

    /// Registered by one task and then awaited by another: the other task, whose waker
    /// differs, is the one woken.
    #[tokio::test]
    async fn a_new_task_s_waker_is_the_one_woken() {
        let token: &'static CancellationToken = Box::leak(Box::new(CancellationToken::new()));
        let mut stopping = Stopping::new(token);
        // Registered by this task...
        let waited = tokio::time::timeout(Duration::from_millis(5), &mut stopping).await;
        assert!(waited.is_err());
        // ...then waited for by another one, with another waker. Nothing but the
        // cancellation can wake that task (a timeout around `stopping` would poll it too).
        let other = tokio::spawn(stopping);
        tokio::time::sleep(Duration::from_millis(20)).await;
        token.cancel();
        let joined = tokio::time::timeout(Duration::from_secs(5), other).await;
        assert!(
            joined.is_ok(),
            "the waiting task was not woken by the cancellation"
        );
    }
}
