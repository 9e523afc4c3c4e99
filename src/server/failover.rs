//! What a client sees when its upstream connection is lost or the primary changes
//! (Sentinel failover): nothing is replayed except commands Redis refused with
//! `-READONLY` (never executed), retried once on the new primary; a lost transaction
//! aborts at EXEC; subscriptions, the selected db and tracking are rebuilt on a new
//! pinned connection.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::client::{Client, Closed};
use super::session::Session;
use crate::command::Pin;
use crate::resp::{Protocol, Reply, ReplyScanner, Request, RequestDecoder, RequestLimits};
use crate::upstream::{Batch, Job};

/// RESP3 "invalidate everything" push: Redis sends it on FLUSHALL; the sidecar sends it
/// when a tracking connection was lost and invalidations may have been missed.
const INVALIDATE_ALL: &[u8] = b">2\r\n$10\r\ninvalidate\r\n_\r\n";

/// True when a batch of replies holds a `-READONLY` error reply.
pub(super) fn has_readonly(replies: &[u8]) -> bool {
    replies.starts_with(b"-READONLY") || memchr::memmem::find(replies, b"\r\n-READONLY").is_some()
}

/// Split a buffer of complete frames; None if it does not scan cleanly.
fn frames(bytes: &Bytes) -> Option<Vec<Bytes>> {
    let mut scanner = ReplyScanner::new(crate::upstream::MAX_REPLY_DEPTH);
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = scanner.scan(&bytes[at..]).ok()??;
        out.push(bytes.slice(at..at + len));
        at += len;
    }
    Some(out)
}

impl<R, W> Client<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Commands of a transaction whose connection was lost. Returns true when the command
    /// was answered here.
    pub(super) async fn lost_transaction(&mut self, pin: Option<Pin>) -> bool {
        use super::client::TxLost as Lost;
        let proto = self.conn.proto;
        let Some(lost) = self.tx_lost() else {
            return false;
        };
        match (lost, pin) {
            (Lost::Multi, Some(Pin::Exec)) => {
                self.clear_tx_lost();
                self.answer(Reply::error(
                    "EXECABORT Transaction discarded because the upstream connection was lost (failover or disconnect).",
                ))
                .await;
                true
            }
            (Lost::Multi, Some(Pin::Discard)) => {
                self.clear_tx_lost();
                self.answer(Reply::ok()).await;
                true
            }
            (Lost::Multi, _) => {
                self.answer(Reply::error(
                    "ERR transaction aborted: the upstream connection was lost (failover or disconnect); EXEC will answer EXECABORT",
                ))
                .await;
                true
            }
            (Lost::Watch, Some(Pin::Exec)) => {
                self.clear_tx_lost();
                if self.in_pinned_multi() {
                    // The watch cannot be honoured any more: abort like a watched key changed.
                    self.discard_instead_of_exec(Reply::NullArray.to_bytes(proto));
                    return true;
                }
                false
            }
            (Lost::Watch, Some(Pin::Discard | Pin::Unwatch)) => {
                self.clear_tx_lost();
                false
            }
            _ => false,
        }
    }

    /// Rebuild what a lost pinned connection carried on a new one, before serving more.
    pub(super) async fn restore(&mut self, old: Session) -> Result<(), Closed> {
        if old.monitor {
            return Err(Closed::UpstreamLost);
        }
        if old.tracking && self.conn.proto == Protocol::Resp3 {
            self.push_out(INVALIDATE_ALL);
        }
        let commands = old.restore_commands();
        if commands.is_empty() {
            return self.write_out().await;
        }
        if let Err(e) = self.pin_now().await {
            warn!(client = self.conn.id, error = %e, "could not re-establish a pinned connection; closing the client so it reconnects");
            return Err(Closed::UpstreamLost);
        }
        debug!(
            client = self.conn.id,
            commands = commands.len(),
            "re-establishing connection state on the new primary"
        );
        for (args, pin) in commands {
            let req = Request::from_args(args);
            self.queue_swallowed(&req, pin);
        }
        self.drain().await
    }

    /// Retry once, on the new primary, the commands of a batch that Redis answered
    /// `-READONLY` (a replica refused them, so they were not executed).
    pub(super) async fn retry_readonly(
        &mut self,
        sent: Bytes,
        replies: Bytes,
        epoch: u64,
    ) -> Bytes {
        let (Some(mut answers), Some(requests)) = (frames(&replies), split_requests(&sent)) else {
            return replies;
        };
        if answers.len() != requests.len() {
            return replies;
        }
        let retry: Vec<usize> = (0..answers.len())
            .filter(|&i| answers[i].starts_with(b"-READONLY"))
            .collect();
        if !self.ctx().upstream.wait_newer_primary(epoch).await {
            return replies;
        }
        let mut bytes = BytesMut::new();
        for &i in &retry {
            bytes.extend_from_slice(&requests[i].raw);
        }
        let (tx, rx) = oneshot::channel();
        let job = Job {
            bytes: bytes.freeze(),
            count: retry.len(),
            reply: tx,
            budget: self.budget(),
        };
        let conn = self.ctx().upstream.shared(self.conn.proto, self.conn.id);
        if conn.send(job).await.is_err() {
            return replies;
        }
        let Ok(Batch { bytes, got, .. }) = rx.await else {
            return replies;
        };
        self.budget().written(bytes.len());
        let Some(again) = frames(&bytes) else {
            return replies;
        };
        debug!(
            client = self.conn.id,
            retried = retry.len(),
            answered = got,
            "retried -READONLY commands on the new primary"
        );
        for (k, frame) in again.into_iter().enumerate() {
            answers[retry[k]] = frame;
        }
        let mut out = BytesMut::with_capacity(replies.len());
        for a in answers {
            out.extend_from_slice(&a);
        }
        out.freeze()
    }
}

/// Split a run of RESP commands (as sent upstream) back into requests.
fn split_requests(sent: &Bytes) -> Option<Vec<Request>> {
    let mut decoder = RequestDecoder::new(RequestLimits {
        max_bulk_len: usize::MAX,
        max_array_len: usize::MAX,
        max_inline_len: usize::MAX,
    });
    let mut buf = BytesMut::from(&sent[..]);
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(decoder.decode(&mut buf).ok()??);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readonly_is_found_at_reply_boundaries_only() {
        assert!(has_readonly(
            b"-READONLY You can't write against a read only replica.\r\n"
        ));
        assert!(has_readonly(b"+OK\r\n-READONLY You can't write\r\n"));
        assert!(!has_readonly(b"$9\r\nREADONLY!\r\n"));
    }

    #[test]
    fn sent_commands_split_back_into_requests() {
        let sent = Bytes::from_static(
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n",
        );
        let reqs = split_requests(&sent).unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].name(), b"SET");
        let replies = Bytes::from_static(b"$-1\r\n-READONLY x\r\n");
        assert_eq!(frames(&replies).unwrap().len(), 2);
    }

    #[test]
    fn invalidate_all_is_a_resp3_push_with_a_null_payload() {
        assert!(crate::resp::is_push(INVALIDATE_ALL));
        let mut scanner = ReplyScanner::new(8);
        assert_eq!(
            scanner.scan(INVALIDATE_ALL).unwrap(),
            Some(INVALIDATE_ALL.len())
        );
    }
}
