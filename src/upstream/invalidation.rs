//! The cache's invalidation listener: one RESP3 connection to the verified primary with
//! `CLIENT TRACKING ON BCAST PREFIX <each cached namespace>`, so Redis pushes the name of
//! every key under those prefixes that anyone changes (writes, expiry, eviction, scripts,
//! transactions; `FLUSHALL`/`FLUSHDB` as a null invalidation).
//!
//! The subscription is `NOLOOP`: Redis does not notify this connection of its own
//! writes. That is what lets a plain `SET` of a cached key, sent through this
//! connection ([`WriteFill`], `cache.fill_on_write`), leave the value it wrote in the
//! cache: any other client's write of the key after it is still notified (in BCAST mode
//! Redis remembers the last writer of each key), and the cache itself does for the
//! write what the notification would have done ([`Cache::written`]).
//!
//! The cache is verified only while this connection is subscribed and answers its
//! heartbeat. A disconnect, a failover (the verified primary moved), a missed heartbeat
//! or a namespace reload ends the generation before anything else can be served; a
//! failed reconnect tells the cache Redis is unreachable (graceful degradation).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{encode_command, retired, Conn, Upstream, UpstreamError, MAX_REPLY_DEPTH};
use crate::cache::answer::Reader;
use crate::cache::{Cache, NsStats, Ticket};
use crate::resp::{Protocol, ReplyScanner};

/// How often the listener PINGs; a PING unanswered by the next tick loses the stream.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How many [`WriteFill`]s may wait for the invalidation connection; beyond that a
/// write goes through the shared pool and only invalidates.
pub const WRITE_QUEUE: usize = 1024;
/// Writes sent on the connection in one system call, at most.
const WRITE_BATCH: usize = 64;

/// A plain `SET` of a cached key to send on the invalidation connection, so that the
/// cache keeps the value it wrote (see the module docs).
pub struct WriteFill {
    /// The command as Redis is to receive it.
    pub bytes: Bytes,
    /// The key as Redis names it.
    pub key: Bytes,
    /// The value and TTL a successful write leaves (see `cache::plan::plain_set`).
    pub value: Bytes,
    pub ttl: Option<Duration>,
    pub ns: Arc<NsStats>,
    pub reply: oneshot::Sender<Written>,
}

/// What became of a [`WriteFill`].
#[derive(Debug)]
pub enum Written {
    /// Redis's reply (`+OK` or an error, the same in RESP2 and RESP3).
    Reply(Bytes),
    /// Sent, but the connection was lost before the reply: it may have run.
    Lost,
    /// Never sent (the stream is down or changing): send it the ordinary way.
    NotSent,
}

/// What the invalidation connection subscribes to: the cached namespaces' prefixes
/// (empty: nothing is cached), and whether it carries writes ([`WriteFill`], with
/// `NOLOOP`; `cache.fill_on_write`). Redis builds a separate push for each `NOLOOP`
/// subscriber, so without `fill_on_write` the subscription does without it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub prefixes: Vec<Bytes>,
    pub noloop: bool,
}

/// What the connection owes replies for, in order.
enum Owed {
    Pong,
    Write { job: WriteFill, ticket: Ticket },
}

/// Keep the cache's invalidation stream up until `shutdown`. `prefixes` holds what to
/// subscribe to (a reload sends a new one); `writes` brings the writes to send on it.
pub async fn listen(
    upstream: Upstream,
    cache: Arc<Cache>,
    mut prefixes: watch::Receiver<Subscription>,
    mut writes: mpsc::Receiver<WriteFill>,
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    let mut logged_down = false;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        decline(&mut writes);
        let wanted = prefixes.borrow_and_update().clone();
        if wanted.prefixes.is_empty() {
            cache.lost("no namespace is cached".into());
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = prefixes.changed() => if r.is_err() { return } else { break },
                    Some(job) = writes.recv() => { let _ = job.reply.send(Written::NotSent); }
                }
            }
            continue;
        }
        let failed = match subscribe(&upstream, &wanted).await {
            Ok((conn, epoch)) => {
                cache.verified();
                info!(
                    prefixes = wanted.prefixes.len(),
                    fill_on_write = wanted.noloop,
                    "cache invalidation stream subscribed"
                );
                logged_down = false;
                backoff = BACKOFF_MIN;
                let mut stream = Stream {
                    upstream: &upstream,
                    cache: &cache,
                    conn,
                    epoch,
                    noloop: wanted.noloop,
                    owed: VecDeque::new(),
                    wbuf: bytes::BytesMut::new(),
                };
                let reason = stream.follow(&mut prefixes, &mut writes, &shutdown).await;
                stream.abandon();
                cache.lost(reason.clone());
                decline(&mut writes);
                if shutdown.is_cancelled() {
                    return;
                }
                warn!("cache invalidation stream lost ({reason}): cached entries are unverified until it is back");
                continue;
            }
            Err(e) => e,
        };
        let reason = match failed {
            Failed::Unreachable(reason) => {
                cache.lost(reason.clone());
                cache.unreachable(reason.clone());
                reason
            }
            // Redis answers but refuses tracking (an ACL, say): the data path works, so
            // nothing is refused because of it; the cache simply serves nothing.
            Failed::Refused(reason) => {
                cache.lost(reason.clone());
                reason
            }
        };
        if !logged_down {
            warn!("cache invalidation stream cannot connect ({reason}): degraded mode");
            logged_down = true;
        } else {
            debug!("cache invalidation stream still down: {reason}");
        }
        let pause = backoff.mul_f64(0.5 + fastrand::f64());
        backoff = (backoff * 2).min(BACKOFF_MAX);
        let until = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(until) => break,
                Some(job) = writes.recv() => { let _ = job.reply.send(Written::NotSent); }
            }
        }
    }
}

/// Send back every write waiting while the stream is not followed: the client sends
/// it through the shared pool instead.
fn decline(writes: &mut mpsc::Receiver<WriteFill>) {
    while let Ok(job) = writes.try_recv() {
        let _ = job.reply.send(Written::NotSent);
    }
}

/// Why the stream could not be set up.
enum Failed {
    /// No connection to the primary: Redis is unreachable (degraded mode).
    Unreachable(String),
    /// Connected, but the subscription was refused or failed.
    Refused(String),
}

/// Connect to the primary and subscribe to invalidations of `prefixes`.
async fn subscribe(upstream: &Upstream, wanted: &Subscription) -> Result<(Conn, u64), Failed> {
    let (mut conn, epoch) =
        upstream
            .connect_primary(Protocol::Resp3)
            .await
            .map_err(|e| match e {
                UpstreamError::Handshake(_) | UpstreamError::Tls(_) => {
                    Failed::Refused(e.to_string())
                }
                _ => Failed::Unreachable(e.to_string()),
            })?;
    let mut args = vec![
        Bytes::from_static(b"CLIENT"),
        Bytes::from_static(b"TRACKING"),
        Bytes::from_static(b"ON"),
        Bytes::from_static(b"BCAST"),
    ];
    if wanted.noloop {
        args.push(Bytes::from_static(b"NOLOOP"));
    }
    for p in &wanted.prefixes {
        args.push(Bytes::from_static(b"PREFIX"));
        args.push(p.clone());
    }
    let mut out = bytes::BytesMut::new();
    encode_command(&args, &mut out);
    conn.write
        .write_all(&out)
        .await
        .map_err(|e| Failed::Refused(format!("subscribe: {e}")))?;
    let reply = tokio::time::timeout(Duration::from_secs(5), next_frame(&mut conn))
        .await
        .map_err(|_| Failed::Refused("CLIENT TRACKING not answered within 5s".into()))?
        .map_err(|e| Failed::Refused(e.to_string()))?;
    if !reply.starts_with(b"+OK") {
        return Err(Failed::Refused(format!(
            "CLIENT TRACKING refused: {}",
            String::from_utf8_lossy(&reply).trim_end()
        )));
    }
    Ok((conn, epoch))
}

/// A subscribed invalidation connection and the replies it owes.
struct Stream<'a> {
    upstream: &'a Upstream,
    cache: &'a Arc<Cache>,
    conn: Conn,
    epoch: u64,
    /// Subscribed with `NOLOOP`: writes may be sent.
    noloop: bool,
    owed: VecDeque<Owed>,
    wbuf: bytes::BytesMut,
}

impl Stream<'_> {
    /// Apply invalidations and send writes until the stream is lost; returns why.
    async fn follow(
        &mut self,
        prefixes: &mut watch::Receiver<Subscription>,
        writes: &mut mpsc::Receiver<WriteFill>,
        shutdown: &CancellationToken,
    ) -> String {
        let mut primary = self.upstream.discovery().subscribe();
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ping_sent: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return "shutting down".into(),
                frame = next_frame(&mut self.conn) => match frame {
                    Ok(frame) => match invalidation(&frame) {
                        Some(Some(keys)) => self.cache.invalidate(&keys),
                        Some(None) => self.cache.flush(),
                        None if crate::resp::is_push(&frame) => {
                            debug!("invalidation stream: unexpected push ignored");
                        }
                        None => match self.owed.pop_front() {
                            Some(Owed::Pong) => ping_sent = None,
                            Some(Owed::Write { job, ticket }) => {
                                let value = frame
                                    .starts_with(b"+OK\r\n")
                                    .then(|| (job.value.clone(), job.ttl));
                                self.cache.written(&ticket, &job.key, value, &job.ns);
                                drop(ticket);
                                let _ = job.reply.send(Written::Reply(frame));
                            }
                            None => return "a reply nothing was sent for".into(),
                        },
                    },
                    Err(e) => return e.to_string(),
                },
                _ = retired(&mut primary, self.epoch) => return "the primary changed (failover)".into(),
                r = prefixes.changed() => {
                    return if r.is_ok() { "cached namespaces changed (reload)".into() } else { "shutting down".into() };
                }
                _ = tick.tick() => {
                    if let Some(at) = ping_sent {
                        return format!("heartbeat not answered within {:?}", at.elapsed());
                    }
                    if let Err(e) = self.conn.write.write_all(b"*1\r\n$4\r\nPING\r\n").await {
                        return format!("heartbeat: {e}");
                    }
                    self.owed.push_back(Owed::Pong);
                    ping_sent = Some(Instant::now());
                }
                Some(job) = writes.recv() => {
                    if let Err(e) = self.send(job, writes, &primary).await {
                        return e;
                    }
                }
            }
        }
    }

    /// Send `first` and the writes queued behind it (up to [`WRITE_BATCH`]) in one
    /// write, each key marked in flight first (as a read is) so that an invalidation
    /// arriving before its reply keeps the value out of the cache.
    async fn send(
        &mut self,
        first: WriteFill,
        writes: &mut mpsc::Receiver<WriteFill>,
        primary: &watch::Receiver<super::sentinel::PrimaryState>,
    ) -> Result<(), String> {
        let still_primary = self.noloop
            && matches!(
                &*primary.borrow(),
                super::sentinel::PrimaryState::Verified { epoch, .. } if *epoch == self.epoch
            );
        self.wbuf.clear();
        let mut next = Some(first);
        let mut count = 0;
        while let Some(job) = next.take() {
            count += 1;
            let ticket = if still_primary {
                self.cache.begin_fill(vec![job.key.clone()])
            } else {
                None
            };
            match ticket {
                Some(ticket) => {
                    self.wbuf.extend_from_slice(&job.bytes);
                    self.owed.push_back(Owed::Write { job, ticket });
                }
                None => {
                    let _ = job.reply.send(Written::NotSent);
                }
            }
            if count < WRITE_BATCH {
                next = writes.try_recv().ok();
            }
        }
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.conn
            .write
            .write_all(&self.wbuf)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// The stream is lost: every write still owed a reply may or may not have run, and
    /// Redis will not say (NOLOOP), so its key is invalidated and the client told.
    fn abandon(&mut self) {
        for owed in self.owed.drain(..) {
            if let Owed::Write { job, ticket, .. } = owed {
                self.cache.written(&ticket, &job.key, None, &job.ns);
                let _ = job.reply.send(Written::Lost);
            }
        }
    }
}

/// Read one complete frame (cancel-safe: bytes stay in the connection's buffer).
async fn next_frame(conn: &mut Conn) -> Result<Bytes, UpstreamError> {
    loop {
        let mut scanner = ReplyScanner::new(MAX_REPLY_DEPTH);
        if let Some(len) = scanner
            .scan(&conn.rbuf)
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?
        {
            return Ok(conn.rbuf.split_to(len).freeze());
        }
        conn.rbuf.reserve(16 * 1024);
        let n = conn
            .read
            .read_buf(&mut conn.rbuf)
            .await
            .map_err(|e| UpstreamError::Io(e.to_string()))?;
        if n == 0 {
            return Err(UpstreamError::Closed);
        }
    }
}

/// `>2 invalidate [keys]` -> `Some(Some(keys))`; `>2 invalidate _` (a flush) ->
/// `Some(None)`; any other frame -> `None`.
pub fn invalidation(frame: &Bytes) -> Option<Option<Vec<Bytes>>> {
    let mut r = Reader::new(frame);
    let (kind, n) = r.aggregate()?;
    if kind != b'>' || n != 2 || r.bulk()?? != b"invalidate"[..] {
        return None;
    }
    if frame.get(r.at()) == Some(&b'_') {
        return Some(None);
    }
    let (_, count) = r.aggregate()?;
    let keys = (0..count)
        .map(|_| r.bulk().flatten())
        .collect::<Option<Vec<_>>>()?;
    Some(Some(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidation_pushes_are_read() {
        let keys =
            Bytes::from_static(b">2\r\n$10\r\ninvalidate\r\n*2\r\n$3\r\ns:a\r\n$3\r\ns:b\r\n");
        assert_eq!(
            invalidation(&keys),
            Some(Some(vec![
                Bytes::from_static(b"s:a"),
                Bytes::from_static(b"s:b")
            ]))
        );
        let flush = Bytes::from_static(b">2\r\n$10\r\ninvalidate\r\n_\r\n");
        assert_eq!(invalidation(&flush), Some(None));
        assert_eq!(invalidation(&Bytes::from_static(b"+PONG\r\n")), None);
        let message = Bytes::from_static(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n");
        assert_eq!(invalidation(&message), None);
    }
}
