//! The cache's invalidation listener: one RESP3 connection to the verified primary with
//! `CLIENT TRACKING ON BCAST PREFIX <each cached namespace>`, so Redis pushes the name of
//! every key under those prefixes that anyone changes (writes, expiry, eviction, scripts,
//! transactions; `FLUSHALL`/`FLUSHDB` as a null invalidation).
//!
//! The cache is verified only while this connection is subscribed and answers its
//! heartbeat. A disconnect, a failover (the verified primary moved), a missed heartbeat
//! or a namespace reload ends the generation before anything else can be served; a
//! failed reconnect tells the cache Redis is unreachable (graceful degradation).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{encode_command, retired, Conn, Upstream, UpstreamError, MAX_REPLY_DEPTH};
use crate::cache::answer::Reader;
use crate::cache::Cache;
use crate::resp::{Protocol, ReplyScanner};

/// How often the listener PINGs; a PING unanswered by the next tick loses the stream.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Keep the cache's invalidation stream up until `shutdown`. `prefixes` holds the
/// cached namespaces' prefixes (a reload sends new ones; empty = nothing cached).
pub async fn listen(
    upstream: Upstream,
    cache: Arc<Cache>,
    mut prefixes: watch::Receiver<Vec<Bytes>>,
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    let mut logged_down = false;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let wanted = prefixes.borrow_and_update().clone();
        if wanted.is_empty() {
            cache.lost("no namespace is cached".into());
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = prefixes.changed() => if r.is_err() { return },
            }
            continue;
        }
        let failed = match subscribe(&upstream, &wanted).await {
            Ok((conn, epoch)) => {
                cache.verified();
                info!(
                    prefixes = wanted.len(),
                    "cache invalidation stream subscribed"
                );
                logged_down = false;
                backoff = BACKOFF_MIN;
                let reason = follow(&upstream, &cache, conn, epoch, &mut prefixes, &shutdown).await;
                cache.lost(reason.clone());
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
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
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
async fn subscribe(upstream: &Upstream, prefixes: &[Bytes]) -> Result<(Conn, u64), Failed> {
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
    for p in prefixes {
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

/// Apply invalidations until the stream is lost; returns why.
async fn follow(
    upstream: &Upstream,
    cache: &Cache,
    mut conn: Conn,
    epoch: u64,
    prefixes: &mut watch::Receiver<Vec<Bytes>>,
    shutdown: &CancellationToken,
) -> String {
    let mut primary = upstream.discovery().subscribe();
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping_sent: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return "shutting down".into(),
            frame = next_frame(&mut conn) => match frame {
                Ok(frame) => match invalidation(&frame) {
                    Some(Some(keys)) => cache.invalidate(&keys),
                    Some(None) => cache.flush(),
                    None if frame.starts_with(b"+PONG") => ping_sent = None,
                    None => debug!("invalidation stream: unexpected frame ignored"),
                },
                Err(e) => return e.to_string(),
            },
            _ = retired(&mut primary, epoch) => return "the primary changed (failover)".into(),
            r = prefixes.changed() => {
                return if r.is_ok() { "cached namespaces changed (reload)".into() } else { "shutting down".into() };
            }
            _ = tick.tick() => {
                if let Some(at) = ping_sent {
                    return format!("heartbeat not answered within {:?}", at.elapsed());
                }
                if let Err(e) = conn.write.write_all(b"*1\r\n$4\r\nPING\r\n").await {
                    return format!("heartbeat: {e}");
                }
                ping_sent = Some(Instant::now());
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
