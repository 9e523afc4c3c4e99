//! Shared, pipelined upstream connections.
//!
//! One task per connection owns the socket. Clients hand it [`Job`]s: the raw
//! bytes of one or more consecutive commands and a one-shot channel for their
//! replies. The writer coalesces every job that is waiting into one write; the
//! reader finds reply boundaries with the incremental scanner and hands each job
//! exactly its `count` replies as one zero-copy `Bytes`. Replies therefore go
//! back to the client and slot they belong to, in order.
//!
//! On any failure every job in flight gets what was read for it plus an error for
//! the rest; nothing is replayed. The task reconnects with jittered backoff, and
//! while Redis is unreachable it answers new jobs at once instead of queueing them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::connect::{BoxRead, Connector, ServerHello, MAX_REPLY_DEPTH};
use super::sentinel::{Discovery, PrimaryState};
use super::{ReplyBudget, UpstreamError};
use crate::metrics::{ErrorKind, Metrics, UpstreamKind};
use crate::resp::{is_push, Protocol, ReplyScanner};

/// Bytes of queued jobs coalesced into one write.
const WRITE_COALESCE: usize = 256 * 1024;
/// Jobs waiting for one connection before senders wait (backpressure).
const QUEUE_DEPTH: usize = 8192;

/// Consecutive commands of one client for one shared connection.
pub struct Job {
    pub bytes: Bytes,
    pub count: usize,
    pub reply: oneshot::Sender<Batch>,
    pub budget: Arc<ReplyBudget>,
}

/// The replies to one [`Job`]: `got` complete replies in `bytes`, `errors` of them error
/// replies; when `got` is less than the job's count, `error` says why the remaining
/// commands have no reply.
#[derive(Debug)]
pub struct Batch {
    pub bytes: Bytes,
    pub got: usize,
    pub errors: usize,
    pub error: Option<UpstreamError>,
}

/// Time limits of a shared connection.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Longest wait for a reply while one is owed (`None`: no limit).
    pub command_timeout: Option<Duration>,
    /// Longest time a job waits for a verified primary before `-TRYAGAIN`.
    pub failover_wait: Duration,
    /// Sentinel mode: an unreachable primary is usually a failover about to start, so
    /// commands wait (up to `failover_wait`) instead of failing at once.
    pub hold_when_unreachable: bool,
}

/// A handle on one shared connection task.
#[derive(Clone)]
pub struct SharedConn {
    tx: mpsc::Sender<Job>,
    connected: Arc<AtomicBool>,
}

impl SharedConn {
    /// Start the connection task.
    pub fn spawn(
        connector: Connector,
        discovery: Discovery,
        proto: Protocol,
        timing: Timing,
        hello: Arc<std::sync::Mutex<Option<ServerHello>>>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> SharedConn {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let connected = Arc::new(AtomicBool::new(false));
        let task = Task {
            connector,
            discovery,
            proto,
            timing,
            hello,
            connected: connected.clone(),
            metrics,
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = task.supervise(rx) => {}
                _ = shutdown.cancelled() => {}
            }
        });
        SharedConn { tx, connected }
    }

    /// Queue a job. When the task is gone the job comes back so the caller can answer it.
    pub async fn send(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).await.map_err(|e| e.0)
    }

    /// Queue a job without waiting; the job comes back when the queue is full or the
    /// task is gone.
    pub fn try_send(&self, job: Job) -> Result<(), mpsc::error::TrySendError<Job>> {
        self.tx.try_send(job)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

struct Task {
    connector: Connector,
    discovery: Discovery,
    proto: Protocol,
    timing: Timing,
    hello: Arc<std::sync::Mutex<Option<ServerHello>>>,
    connected: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

/// What the reader needs to know about a job it has not answered yet.
struct Pending {
    count: usize,
    reply: oneshot::Sender<Batch>,
    budget: Arc<ReplyBudget>,
    /// When its bytes were written: `command_timeout` runs from here.
    sent_at: Instant,
}

impl Task {
    async fn supervise(self, mut rx: mpsc::Receiver<Job>) {
        let mut backoff = Backoff::default();
        let mut failing = false;
        let mut state = self.discovery.subscribe();
        // Jobs that arrived while no primary was verified, with their arrival time.
        let mut held: VecDeque<(Job, Instant)> = VecDeque::new();
        loop {
            let Some((endpoint, epoch)) = self.await_primary(&mut state, &mut rx, &mut held).await
            else {
                return;
            };
            match self.connector.connect_to(&endpoint, self.proto).await {
                Ok((conn, hello)) => {
                    if failing {
                        info!(upstream = %endpoint, "upstream reachable again");
                    }
                    failing = false;
                    backoff = Backoff::default();
                    if let Ok(mut slot) = self.hello.lock() {
                        *slot = Some(hello);
                    }
                    self.connected.store(true, Ordering::Relaxed);
                    self.metrics.upstream_connected(UpstreamKind::Shared);
                    let open = self
                        .serve(conn, &mut rx, &mut held, &mut state, epoch)
                        .await;
                    self.connected.store(false, Ordering::Relaxed);
                    self.metrics.upstream_disconnected(UpstreamKind::Shared);
                    if !open {
                        return;
                    }
                    // Whatever ended the session, make sure the primary is still the primary.
                    self.discovery.resolve_now();
                }
                Err(err) => {
                    self.discovery.resolve_now();
                    if failing {
                        debug!(upstream = %endpoint, error = %err, "upstream still unreachable");
                    } else {
                        warn!(upstream = %endpoint, error = %err, "upstream unreachable; answering -TRYAGAIN until it returns");
                    }
                    failing = true;
                    let hold = self.timing.hold_when_unreachable;
                    if !hold {
                        for (job, _) in held.drain(..) {
                            fail_job(job, err.clone());
                        }
                    }
                    let until = Instant::now() + backoff.next_delay();
                    // Until the next attempt, answer at once (standalone) or hold each job up
                    // to failover_wait (sentinel); a newly verified primary ends the wait early.
                    loop {
                        let wait = self.timing.failover_wait;
                        let now = Instant::now();
                        while held.front().is_some_and(|(_, at)| now >= *at + wait) {
                            if let Some((job, _)) = held.pop_front() {
                                fail_job(job, err.clone());
                            }
                        }
                        let expiry = held.front().map(|(_, at)| *at + wait).unwrap_or(until);
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            _ = tokio::time::sleep_until(expiry) => {}
                            changed = state.changed() => {
                                if changed.is_err() || state.borrow().endpoint() != Some(&endpoint) {
                                    break;
                                }
                            }
                            job = rx.recv() => match job {
                                Some(job) if hold => held.push_back((job, Instant::now())),
                                Some(job) => fail_job(job, err.clone()),
                                None => return,
                            }
                        }
                    }
                }
            }
        }
    }

    /// Wait for a verified primary. Jobs arriving meanwhile are held, each for at most
    /// `failover_wait`, then answered `-TRYAGAIN`. None when every client handle is gone.
    async fn await_primary(
        &self,
        state: &mut watch::Receiver<PrimaryState>,
        rx: &mut mpsc::Receiver<Job>,
        held: &mut VecDeque<(Job, Instant)>,
    ) -> Option<(crate::config::Endpoint, u64)> {
        loop {
            let current = state.borrow_and_update().clone();
            let reason = match current {
                PrimaryState::Verified {
                    endpoint, epoch, ..
                } => return Some((endpoint, epoch)),
                PrimaryState::Unknown { reason } => reason,
                PrimaryState::FailingOver { .. } => "failover in progress".to_string(),
            };
            let wait = self.timing.failover_wait;
            let now = Instant::now();
            while held.front().is_some_and(|(_, at)| now >= *at + wait) {
                if let Some((job, _)) = held.pop_front() {
                    fail_job(job, UpstreamError::NoPrimary(reason.clone()));
                }
            }
            let expiry = held
                .front()
                .map(|(_, at)| *at + wait)
                .unwrap_or_else(|| now + Duration::from_secs(3600));
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() {
                        // Discovery is gone (shutdown): nothing will ever be verified.
                        for (job, _) in held.drain(..) {
                            fail_job(job, UpstreamError::NoPrimary(reason.clone()));
                        }
                        return None;
                    }
                }
                job = rx.recv() => match job {
                    Some(job) => held.push_back((job, Instant::now())),
                    None => return None,
                },
                _ = tokio::time::sleep_until(expiry) => {}
            }
        }
    }

    /// Run one connected session. Returns false when every client handle is gone.
    async fn serve(
        &self,
        conn: super::connect::Conn,
        rx: &mut mpsc::Receiver<Job>,
        held: &mut VecDeque<(Job, Instant)>,
        state: &mut watch::Receiver<PrimaryState>,
        epoch: u64,
    ) -> bool {
        let (pending_tx, pending_rx) = mpsc::unbounded_channel::<Pending>();
        let reader = Reader {
            read: conn.read,
            buf: conn.rbuf,
            pending: pending_rx,
            scanner: ReplyScanner::new(MAX_REPLY_DEPTH),
            timeout: self.timing.command_timeout,
            ticker: self.timing.command_timeout.map(|limit| {
                let mut t = tokio::time::interval((limit / 4).max(Duration::from_millis(50)));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            }),
            discovery: self.discovery.clone(),
            metrics: self.metrics.clone(),
            read_at: None,
        };
        let mut reader = tokio::spawn(reader.run());
        let mut write = conn.write;
        let mut wbuf = BytesMut::with_capacity(64 * 1024);
        let still_primary =
            |s: &PrimaryState| matches!(s, PrimaryState::Verified { epoch: e, .. } if *e == epoch);
        // One wait for a change of primary, kept across jobs: made anew for every job, its
        // registration with the watch took a lock on the way in and another on the way out
        // (~700 instructions per wake of this task).
        let mut changed = Box::pin(next_change(state.clone()));
        loop {
            let job = if let Some((job, _)) = held.pop_front() {
                Some(job)
            } else {
                tokio::select! {
                    biased;
                    ended = &mut reader => {
                        let err = ended.unwrap_or(UpstreamError::Lost);
                        warn!(error = %err, "shared upstream connection lost; in-flight commands answered with errors");
                        return true;
                    }
                    (ok, seen) = &mut changed => {
                        if ok && still_primary(&seen.borrow()) {
                            changed.set(next_change(seen));
                            continue;
                        }
                        // A failover started or the primary moved: stop writing to this one now.
                        // Dropping the reader answers every command in flight with an error.
                        reader.abort();
                        info!("closing shared upstream connection: the primary changed");
                        return true;
                    }
                    job = rx.recv() => job,
                }
            };
            let Some(job) = job else {
                reader.abort();
                return false;
            };
            if rx.is_empty() {
                // The scheduler runs a freshly woken task first, so without this the writer
                // would send each client's command in its own write. One yield lets every
                // client that is ready now queue its job: one write, one read for all of them.
                tokio::task::yield_now().await;
            }
            let mut next = Some(job);
            let mut failed = false;
            let sent_at = Instant::now();
            while let Some(job) = next.take() {
                let Job {
                    bytes,
                    count,
                    reply,
                    budget,
                } = job;
                if pending_tx
                    .send(Pending {
                        count,
                        reply,
                        budget,
                        sent_at,
                    })
                    .is_err()
                {
                    failed = true;
                    break;
                }
                if bytes.len() > 16 * 1024 {
                    if write.write_all(&wbuf).await.is_err()
                        || write.write_all(&bytes).await.is_err()
                    {
                        failed = true;
                        break;
                    }
                    wbuf.clear();
                } else {
                    wbuf.extend_from_slice(&bytes);
                }
                if wbuf.len() < WRITE_COALESCE {
                    next = rx.try_recv().ok();
                }
            }
            if !failed && !wbuf.is_empty() && write.write_all(&wbuf).await.is_err() {
                failed = true;
            }
            wbuf.clear();
            if failed {
                // The reader will see the connection fail too; let it answer what it holds.
                let _ = write.shutdown().await;
                let err = match tokio::time::timeout(Duration::from_secs(1), &mut reader).await {
                    Ok(ended) => ended.unwrap_or(UpstreamError::Lost),
                    Err(_) => {
                        // Dropping the reader drops its jobs' reply senders: their clients
                        // get a "connection lost" error for every slot.
                        reader.abort();
                        UpstreamError::Lost
                    }
                };
                warn!(error = %err, "shared upstream connection lost while writing");
                return true;
            }
        }
    }
}

/// The next change of the primary's state, with the receiver that saw it (`false`: the
/// discovery side is gone).
async fn next_change(
    mut state: watch::Receiver<PrimaryState>,
) -> (bool, watch::Receiver<PrimaryState>) {
    let ok = state.changed().await.is_ok();
    (ok, state)
}

struct Reader {
    read: BoxRead,
    buf: BytesMut,
    pending: mpsc::UnboundedReceiver<Pending>,
    scanner: ReplyScanner,
    timeout: Option<Duration>,
    /// While idle, how often to look for a job whose reply is overdue (only with a timeout).
    ticker: Option<tokio::time::Interval>,
    discovery: Discovery,
    metrics: Arc<Metrics>,
    /// When the last read returned, while command metrics are on: the end of the
    /// upstream time of every job that read completes (one clock read per read).
    read_at: Option<Instant>,
}

/// How far the reader is through the current job's replies.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Complete replies so far.
    got: usize,
    /// Error replies among them.
    errors: usize,
    /// End of those replies in the buffer.
    end: usize,
}

impl Reader {
    /// Answer jobs until the connection fails; returns why.
    async fn run(mut self) -> UpstreamError {
        let mut current: Option<Pending> = None;
        let mut at = Progress::default(); // the replies of `current` in `buf`
        loop {
            // Complete whatever the buffer already holds.
            loop {
                if current.is_none() {
                    match self.pending.try_recv() {
                        Ok(p) => {
                            current = Some(p);
                            at = Progress::default();
                        }
                        Err(_) => break,
                    }
                }
                let Some(p) = current.as_ref() else { break };
                match self.scanner.scan(&self.buf[at.end..]) {
                    Ok(Some(len)) => {
                        let frame = &self.buf[at.end..at.end + len];
                        if is_push(frame) {
                            // Shared connections never subscribe or track; a push here means
                            // the stream is not what we think it is.
                            let err = UpstreamError::Protocol(
                                "unexpected push frame on a shared connection".into(),
                            );
                            return self.fail(current, at, err);
                        }
                        if matches!(frame.first(), Some(b'-' | b'!')) {
                            at.errors += 1;
                            if frame.starts_with(b"-READONLY") {
                                // A replica answered: the primary moved. Find the new one now.
                                self.discovery.resolve_now();
                            }
                        }
                        at.end += len;
                        at.got += 1;
                        if at.got == p.count {
                            let bytes = self.buf.split_to(at.end).freeze();
                            if let Some(p) = current.take() {
                                if let Some(read_at) = self.read_at {
                                    let took = read_at.saturating_duration_since(p.sent_at);
                                    self.metrics.upstream_duration(UpstreamKind::Shared, took);
                                }
                                p.budget.add(bytes.len());
                                let _ = p.reply.send(Batch {
                                    bytes,
                                    got: at.got,
                                    errors: at.errors,
                                    error: None,
                                });
                            }
                            at = Progress::default();
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let err = UpstreamError::Protocol(e.to_string());
                        return self.fail(current, at, err);
                    }
                }
            }
            if self.buf.capacity() - self.buf.len() < 8 * 1024 {
                self.buf.reserve(64 * 1024);
            }
            let owed = current.is_some() || !self.buf.is_empty();
            if !owed {
                // Idle: wait for bytes only. Jobs are queued before their bytes are written,
                // so a reply always finds its job; waking for every queued job would cost a
                // task switch per batch. A closed connection is noticed here at once, and a
                // coarse tick catches a job whose reply never comes (command_timeout).
                let tick = async {
                    match self.ticker.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    r = self.read.read_buf(&mut self.buf) => match r {
                        Ok(0) => return self.fail(None, Progress::default(), UpstreamError::Closed),
                        Ok(_) => self.note_read(),
                        Err(e) => return self.fail(None, Progress::default(), UpstreamError::Io(e.to_string())),
                    },
                    _ = tick => {
                        if let Ok(p) = self.pending.try_recv() {
                            current = Some(p);
                            at = Progress::default();
                        }
                    }
                }
                continue;
            }
            if current.is_none() {
                // Bytes are buffered but the job they belong to is still in the channel.
                match self.pending.recv().await {
                    Some(p) => {
                        current = Some(p);
                        at = Progress::default();
                        continue;
                    }
                    None => return UpstreamError::Lost,
                }
            }
            let read = self.read.read_buf(&mut self.buf);
            let deadline = current
                .as_ref()
                .zip(self.timeout)
                .map(|(p, limit)| p.sent_at + limit);
            let result = match (self.timeout, deadline) {
                (Some(limit), Some(deadline)) => {
                    match tokio::time::timeout_at(deadline, read).await {
                        Ok(r) => r,
                        Err(_) => {
                            let err = UpstreamError::Timeout(limit);
                            return self.fail(current, at, err);
                        }
                    }
                }
                _ => read.await,
            };
            match result {
                Ok(0) => return self.fail(current, at, UpstreamError::Closed),
                Ok(_) => self.note_read(),
                Err(e) => return self.fail(current, at, UpstreamError::Io(e.to_string())),
            }
        }
    }

    /// Bytes arrived: with command metrics on, this is when the replies in them came back.
    fn note_read(&mut self) {
        self.read_at = self.metrics.command_metrics().then(Instant::now);
    }

    /// Hand the current job what it got, and every other job an error, then report `err`.
    /// A timeout, or a loss with commands in flight, is counted in `sidecar_errors_total`.
    fn fail(mut self, current: Option<Pending>, at: Progress, err: UpstreamError) -> UpstreamError {
        let in_flight = current.is_some() || !self.pending.is_empty();
        if let UpstreamError::Timeout(_) = err {
            self.metrics.error(ErrorKind::UpstreamTimeout).increment(1);
        } else if in_flight {
            self.metrics.error(ErrorKind::UpstreamLost).increment(1);
        }
        if let Some(p) = current {
            let bytes = self.buf.split_to(at.end).freeze();
            let _ = p.reply.send(Batch {
                bytes,
                got: at.got,
                errors: at.errors,
                error: Some(err.clone()),
            });
        }
        self.pending.close();
        while let Ok(p) = self.pending.try_recv() {
            let _ = p.reply.send(Batch {
                bytes: Bytes::new(),
                got: 0,
                errors: 0,
                error: Some(err.clone()),
            });
        }
        err
    }
}

fn fail_job(job: Job, err: UpstreamError) {
    let _ = job.reply.send(Batch {
        bytes: Bytes::new(),
        got: 0,
        errors: 0,
        error: Some(err),
    });
}

/// Exponential reconnect delay with jitter: 50 ms doubling to 1 s, each delay drawn
/// from [d/2, d] so many sidecars restarting together do not reconnect in lockstep.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(50),
        }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(1));
        let half = d.as_millis() as u64 / 2;
        Duration::from_millis(half + fastrand::u64(0..=half))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_ceiling_with_jitter() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(50) && delays[0] >= Duration::from_millis(25));
        for d in &delays[6..] {
            assert!(
                *d >= Duration::from_millis(500) && *d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
    }
}
