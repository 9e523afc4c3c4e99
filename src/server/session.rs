//! Per-client connection state that lives upstream while a connection is pinned:
//! transaction, watch, subscriptions, selected db, tracking and CLIENT REPLY mode.
//!
//! Pure bookkeeping, updated as commands are sent: it says how many reply frames
//! a command will produce, whether a frame from Redis is a reply or an out-of-band
//! push, and whether the pinned connection is clean enough to give back.

use std::collections::HashSet;

use bytes::Bytes;

use crate::command::{Pin, SubKind};
use crate::resp::Protocol;

/// How Redis is currently replying to this connection (`CLIENT REPLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ReplyMode {
    #[default]
    On,
    Off,
    SkipNext,
}

/// Upstream state of one client's pinned connection, predicted at send time.
#[derive(Debug, Default)]
pub struct Session {
    pub multi: bool,
    /// A command was refused by the sidecar inside MULTI: EXEC must abort like Redis does.
    pub multi_refused: bool,
    pub watch: bool,
    pub db_selected: bool,
    pub tracking: bool,
    pub monitor: bool,
    reply: ReplyMode,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    shards: HashSet<Bytes>,
    /// The arguments of the last `SELECT n` (n != 0) and `CLIENT TRACKING on ...`, to
    /// rebuild that state on a new primary after a failover.
    select_args: Option<Vec<Bytes>>,
    tracking_args: Option<Vec<Bytes>>,
}

impl Session {
    /// True when the connection carries no state and can serve another client.
    pub fn is_clean(&self) -> bool {
        !self.multi
            && !self.watch
            && !self.db_selected
            && !self.tracking
            && !self.monitor
            && self.reply == ReplyMode::On
            && !self.subscribed()
    }

    pub fn subscribed(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shards.is_empty())
    }

    /// Record that `args` (routed as `pin`, or as a plain command when `None`) is being sent
    /// on the pinned connection, and return how many reply frames Redis will send for it.
    pub fn sent(&mut self, args: &[Bytes], pin: Option<Pin>) -> usize {
        let replies = self.replies_for(args, pin);
        match pin {
            Some(Pin::Multi) => self.multi = true,
            Some(Pin::Exec) | Some(Pin::Discard) => {
                self.multi = false;
                self.multi_refused = false;
                self.watch = false;
            }
            Some(Pin::Watch) if !self.multi => self.watch = true,
            Some(Pin::Unwatch) if !self.multi => self.watch = false,
            Some(Pin::Select) => {
                self.db_selected = args.get(1).map(|a| a.as_ref() != b"0").unwrap_or(true);
                self.select_args = self.db_selected.then(|| args.to_vec());
            }
            Some(Pin::Tracking) => {
                if let Some(on) = args.get(2) {
                    if on.eq_ignore_ascii_case(b"on") {
                        self.tracking = true;
                        self.tracking_args = Some(args.to_vec());
                    } else if on.eq_ignore_ascii_case(b"off") {
                        self.tracking = false;
                        self.tracking_args = None;
                    }
                }
            }
            Some(Pin::Monitor) => self.monitor = true,
            Some(Pin::Subscribe(kind)) => {
                let set = self.set(kind);
                set.extend(args[1..].iter().cloned());
            }
            Some(Pin::Unsubscribe(kind)) => {
                let set = self.set(kind);
                if args.len() > 1 {
                    for a in &args[1..] {
                        set.remove(a);
                    }
                } else {
                    set.clear();
                }
            }
            _ => {}
        }
        replies
    }

    fn replies_for(&mut self, args: &[Bytes], pin: Option<Pin>) -> usize {
        if pin == Some(Pin::ClientReply) {
            let mode = args.get(2);
            let is = |m: &[u8]| mode.map(|a| a.eq_ignore_ascii_case(m)).unwrap_or(false);
            if args.len() == 3 && is(b"on") {
                self.reply = ReplyMode::On;
                return 1;
            }
            if args.len() == 3 && is(b"off") {
                self.reply = ReplyMode::Off;
                return 0;
            }
            if args.len() == 3 && is(b"skip") {
                if self.reply == ReplyMode::On {
                    self.reply = ReplyMode::SkipNext;
                }
                return 0;
            }
            // A syntax error is answered (unless replies are off).
        }
        match self.reply {
            ReplyMode::Off => return 0,
            ReplyMode::SkipNext => {
                self.reply = ReplyMode::On;
                return 0;
            }
            ReplyMode::On => {}
        }
        match pin {
            Some(Pin::Subscribe(_)) => args.len().saturating_sub(1).max(1),
            Some(Pin::Unsubscribe(kind)) => {
                if args.len() > 1 {
                    args.len() - 1
                } else {
                    self.set(kind).len().max(1)
                }
            }
            _ => 1,
        }
    }

    fn set(&mut self, kind: SubKind) -> &mut HashSet<Bytes> {
        match kind {
            SubKind::Channel => &mut self.channels,
            SubKind::Pattern => &mut self.patterns,
            SubKind::Shard => &mut self.shards,
        }
    }

    /// Commands that rebuild this connection state on a new primary: the selected db,
    /// tracking, and every subscription. Transactions and watches are not rebuilt (their
    /// guarantees died with the old connection) and neither is MONITOR.
    pub fn restore_commands(&self) -> Vec<(Vec<Bytes>, Pin)> {
        let mut out = Vec::new();
        if let Some(args) = self.select_args.clone().filter(|_| self.db_selected) {
            out.push((args, Pin::Select));
        }
        if let Some(args) = self.tracking_args.clone().filter(|_| self.tracking) {
            out.push((args, Pin::Tracking));
        }
        let subs = [
            ("SUBSCRIBE", &self.channels, SubKind::Channel),
            ("PSUBSCRIBE", &self.patterns, SubKind::Pattern),
            ("SSUBSCRIBE", &self.shards, SubKind::Shard),
        ];
        for (name, set, kind) in subs {
            if !set.is_empty() {
                let mut args = vec![Bytes::from_static(name.as_bytes())];
                args.extend(set.iter().cloned());
                out.push((args, Pin::Subscribe(kind)));
            }
        }
        out
    }

    /// True when `frame` answers a command (counts against the expected replies);
    /// false for out-of-band frames: pub/sub messages, tracking invalidations, MONITOR lines.
    pub fn is_reply(&self, frame: &[u8], proto: Protocol) -> bool {
        match frame.first() {
            Some(b'>') => matches!(
                first_element(frame),
                Some(
                    b"subscribe"
                        | b"unsubscribe"
                        | b"psubscribe"
                        | b"punsubscribe"
                        | b"ssubscribe"
                        | b"sunsubscribe"
                )
            ),
            Some(b'*') if proto == Protocol::Resp2 && self.subscribed() => !matches!(
                first_element(frame),
                Some(b"message" | b"pmessage" | b"smessage")
            ),
            Some(b'+') if self.monitor => !is_monitor_line(frame),
            _ => true,
        }
    }
}

/// The first element of an aggregate frame when it is a bulk string.
fn first_element(frame: &[u8]) -> Option<&[u8]> {
    let header_end = memchr::memmem::find(frame, b"\r\n")?;
    let rest = frame.get(header_end + 2..)?;
    let rest = rest.strip_prefix(b"$")?;
    let len_end = memchr::memmem::find(rest, b"\r\n")?;
    let len: usize = std::str::from_utf8(&rest[..len_end]).ok()?.parse().ok()?;
    rest.get(len_end + 2..len_end + 2 + len)
}

/// MONITOR lines look like `+1700000000.123456 [0 127.0.0.1:1234] "GET" "k"`.
fn is_monitor_line(frame: &[u8]) -> bool {
    frame.len() > 2 && frame[1].is_ascii_digit() && memchr::memchr(b'[', frame).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_args as args;

    #[test]
    fn transaction_and_watch_state() {
        let mut s = Session::default();
        assert_eq!(s.sent(&args("WATCH k"), Some(Pin::Watch)), 1);
        assert!(s.watch && !s.is_clean());
        s.sent(&args("MULTI"), Some(Pin::Multi));
        s.sent(&args("SET k v"), None);
        s.sent(&args("EXEC"), Some(Pin::Exec));
        assert!(s.is_clean());
    }

    #[test]
    fn subscription_reply_counts() {
        let mut s = Session::default();
        assert_eq!(
            s.sent(
                &args("SUBSCRIBE a b a"),
                Some(Pin::Subscribe(SubKind::Channel))
            ),
            3
        );
        assert_eq!(
            s.sent(
                &args("PSUBSCRIBE p*"),
                Some(Pin::Subscribe(SubKind::Pattern))
            ),
            1
        );
        // Unsubscribe without arguments answers once per channel (a, b), patterns stay.
        assert_eq!(
            s.sent(
                &args("UNSUBSCRIBE"),
                Some(Pin::Unsubscribe(SubKind::Channel))
            ),
            2
        );
        assert!(s.subscribed());
        assert_eq!(
            s.sent(
                &args("PUNSUBSCRIBE"),
                Some(Pin::Unsubscribe(SubKind::Pattern))
            ),
            1
        );
        assert!(!s.subscribed() && s.is_clean());
        // Nothing subscribed: one reply with a null channel.
        assert_eq!(
            s.sent(
                &args("UNSUBSCRIBE"),
                Some(Pin::Unsubscribe(SubKind::Channel))
            ),
            1
        );
    }

    #[test]
    fn restore_rebuilds_db_tracking_and_subscriptions_only() {
        let mut s = Session::default();
        s.sent(&args("SELECT 5"), Some(Pin::Select));
        s.sent(&args("CLIENT TRACKING on BCAST"), Some(Pin::Tracking));
        s.sent(
            &args("SUBSCRIBE a b"),
            Some(Pin::Subscribe(SubKind::Channel)),
        );
        s.sent(
            &args("PSUBSCRIBE p*"),
            Some(Pin::Subscribe(SubKind::Pattern)),
        );
        s.sent(&args("MULTI"), Some(Pin::Multi));
        let restore = s.restore_commands();
        let names: Vec<_> = restore.iter().map(|(a, _)| a[0].clone()).collect();
        assert_eq!(names, vec!["SELECT", "CLIENT", "SUBSCRIBE", "PSUBSCRIBE"]);
        assert_eq!(restore[1].0.len(), 4);
        assert_eq!(restore[2].0.len(), 3);
        s.sent(&args("SELECT 0"), Some(Pin::Select));
        s.sent(&args("CLIENT TRACKING off"), Some(Pin::Tracking));
        assert_eq!(s.restore_commands().len(), 2);
    }

    #[test]
    fn client_reply_modes() {
        let mut s = Session::default();
        assert_eq!(
            s.sent(&args("CLIENT REPLY SKIP"), Some(Pin::ClientReply)),
            0
        );
        assert_eq!(s.sent(&args("SET a 1"), None), 0);
        assert_eq!(s.sent(&args("SET a 1"), None), 1);
        assert_eq!(s.sent(&args("CLIENT REPLY OFF"), Some(Pin::ClientReply)), 0);
        assert!(!s.is_clean());
        assert_eq!(s.sent(&args("SET a 1"), None), 0);
        assert_eq!(s.sent(&args("CLIENT REPLY ON"), Some(Pin::ClientReply)), 1);
        assert!(s.is_clean());
    }

    #[test]
    fn classifies_messages_and_replies() {
        let mut s = Session::default();
        s.sent(&args("SUBSCRIBE a"), Some(Pin::Subscribe(SubKind::Channel)));
        let msg2 = b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n";
        let pong2 = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";
        assert!(!s.is_reply(msg2, Protocol::Resp2));
        assert!(s.is_reply(pong2, Protocol::Resp2));
        let sub3 = b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n";
        let msg3 = b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n";
        assert!(s.is_reply(sub3, Protocol::Resp3));
        assert!(!s.is_reply(msg3, Protocol::Resp3));
        assert!(s.is_reply(b"+OK\r\n", Protocol::Resp3));
    }
}
