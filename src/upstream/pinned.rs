//! Pinned upstream connections: one client's dedicated connection for as long as
//! it holds per-connection state in Redis (MULTI, WATCH, blocking commands,
//! subscriptions, a selected db, tracking, CLIENT REPLY).
//!
//! The owning client task writes to it and reads frames from it directly; no
//! other client ever sees it. A connection that ends its state cleanly goes back
//! to a small idle list for reuse; one whose state is unknown is closed.

use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, OwnedSemaphorePermit};

use std::sync::Arc;

use super::connect::{Conn, MAX_REPLY_DEPTH};
use super::sentinel::PrimaryState;
use super::UpstreamError;
use crate::metrics::{ErrorKind, Metrics, UpstreamKind};
use crate::resp::{Protocol, ReplyScanner};

/// A dedicated upstream connection held by one client.
pub struct PinnedConn {
    pub(super) conn: Conn,
    pub(super) scanner: ReplyScanner,
    pub(super) proto: Protocol,
    pub(super) _permit: Option<OwnedSemaphorePermit>,
    pub(super) idle_since: Instant,
    /// The primary epoch this connection was opened in.
    pub(super) epoch: u64,
    /// Redis's id for this connection, when its HELLO reply said.
    pub(super) upstream_id: Option<u64>,
    /// Where it is counted (connections, losses, upstream latency); set by the pool.
    pub(super) metrics: Option<Arc<Metrics>>,
    /// When commands were written that no reply has come back for yet (timed only while
    /// command metrics are on).
    written_at: Option<Instant>,
    /// Which [`super::Upstream`] opened it: only that one takes it back for reuse.
    pub(super) origin: usize,
}

impl PinnedConn {
    pub(super) fn new(
        conn: Conn,
        proto: Protocol,
        permit: Option<OwnedSemaphorePermit>,
        epoch: u64,
        upstream_id: Option<u64>,
    ) -> Self {
        PinnedConn {
            conn,
            scanner: ReplyScanner::new(MAX_REPLY_DEPTH),
            proto,
            _permit: permit,
            idle_since: Instant::now(),
            epoch,
            upstream_id,
            metrics: None,
            written_at: None,
            origin: 0,
        }
    }

    /// The connection broke under a client: count it.
    fn lost(&self, err: UpstreamError) -> UpstreamError {
        if let Some(m) = &self.metrics {
            m.error(ErrorKind::UpstreamLost).increment(1);
        }
        err
    }

    /// Redis's id for this connection (`CLIENT ID` as Redis would answer it).
    pub fn upstream_id(&self) -> Option<u64> {
        self.upstream_id
    }

    /// The primary epoch this connection was opened in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    /// Send raw command bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        if self.written_at.is_none() && self.metrics.as_ref().is_some_and(|m| m.command_metrics()) {
            self.written_at = Some(Instant::now());
        }
        match self.conn.write.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.lost(UpstreamError::Io(e.to_string()))),
        }
    }

    /// The next complete frame from Redis: a reply, or a push (pub/sub message, invalidation).
    ///
    /// Cancel-safe: partial progress stays in the connection's buffer and scanner, so this
    /// can sit in a `select!` beside the client socket.
    pub async fn read_frame(&mut self) -> Result<Bytes, UpstreamError> {
        loop {
            match self.scanner.scan(&self.conn.rbuf) {
                Ok(Some(len)) => {
                    if let Some((at, m)) = self.written_at.take().zip(self.metrics.as_ref()) {
                        m.upstream_duration(UpstreamKind::Pinned, at.elapsed());
                    }
                    return Ok(self.conn.rbuf.split_to(len).freeze());
                }
                Ok(None) => {}
                Err(e) => return Err(self.lost(UpstreamError::Protocol(e.to_string()))),
            }
            if self.conn.rbuf.capacity() - self.conn.rbuf.len() < 8 * 1024 {
                self.conn.rbuf.reserve(64 * 1024);
            }
            match self.conn.read.read_buf(&mut self.conn.rbuf).await {
                Ok(0) => return Err(self.lost(UpstreamError::Closed)),
                Ok(_) => {}
                Err(e) => return Err(self.lost(UpstreamError::Io(e.to_string()))),
            }
        }
    }

    /// True when nothing is buffered and the peer has not closed: safe to hand to another client.
    pub(super) async fn is_reusable(&mut self) -> bool {
        if !self.conn.rbuf.is_empty() {
            return false;
        }
        let probe = self.conn.read.read_buf(&mut self.conn.rbuf);
        // A ready read on an idle connection is either EOF or unexpected bytes: both disqualify.
        tokio::time::timeout(std::time::Duration::ZERO, probe)
            .await
            .is_err()
    }
}

impl PinnedConn {
    /// Switch this connection's protocol with HELLO, keeping its state (HELLO does not reset it).
    pub async fn switch_protocol(&mut self, proto: Protocol) -> Result<(), UpstreamError> {
        let hello: &[u8] = match proto {
            Protocol::Resp2 => b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n",
            Protocol::Resp3 => b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
        };
        self.write(hello).await?;
        loop {
            let frame = self.read_frame().await?;
            // Out-of-band pushes cannot arrive on a RESP2 connection; a RESP3 one may carry
            // invalidations before the HELLO reply, which are dropped with the old protocol.
            if frame.first() == Some(&b'-') {
                return Err(UpstreamError::Protocol(
                    String::from_utf8_lossy(&frame).trim_end().into(),
                ));
            }
            if frame.first() != Some(&b'>') {
                break;
            }
        }
        self.proto = proto;
        Ok(())
    }
}

impl Drop for PinnedConn {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.upstream_disconnected(UpstreamKind::Pinned);
        }
    }
}

/// Resolves once the primary of `epoch` is no longer the verified one (a failover
/// started or finished): connections opened in that epoch must be dropped. Never
/// resolves in standalone mode, where the primary never changes.
pub async fn retired(state: &mut watch::Receiver<PrimaryState>, epoch: u64) {
    let moved =
        |s: &PrimaryState| !matches!(s, PrimaryState::Verified { epoch: e, .. } if *e == epoch);
    if state.wait_for(moved).await.is_err() {
        std::future::pending::<()>().await;
    }
}
