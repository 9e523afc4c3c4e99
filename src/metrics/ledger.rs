//! Per-client bookkeeping that turns the data path's replies into
//! `sidecar_commands_total{command, outcome}` and `sidecar_command_duration_seconds`.
//!
//! A client loop owns one [`Ledger`] and tells it four things: a batch arrived
//! ([`Ledger::begin`]), a command was routed ([`Ledger::command`], in command order),
//! a reply slot was drained into the output (one call per slot, in slot order:
//! [`Ledger::ready`], [`Ledger::shared`], [`Ledger::pinned`], [`Ledger::replaced`]),
//! and the output is about to be written ([`Ledger::queued`]). Slots come out in the order the
//! commands went in, so the n-th slot answered resolves the n-th command waiting.
//!
//! Outcome: `refused` for the sidecar's own `-NOPERM` (policy and namespace rules),
//! `error` for any other reply starting with `-` or `!` (RESP3 blob error), else `ok`.
//! Latency: from the batch's arrival (one clock read per batch of pipelined commands)
//! to the reply being handed to the socket write (one clock read per write): the
//! counters move before the client can read its reply, so a scrape that follows a
//! reply sees it counted. With
//! `admin.command_metrics = false` nothing is recorded and no clock is read; the
//! `tryagain` error count, which is not a per-command series, is kept either way.
//!
//! The cost per command is a case-insensitive name lookup and a queue push and pop;
//! per run of commands with the same name and outcome answered together, one counter
//! increment and one histogram record (`examples/metrics_cost.rs`).

use std::collections::VecDeque;
use std::time::Instant;

use super::{ErrorKind, Metrics, Outcome};
use crate::resp::ReplyScanner;
use crate::upstream::{Batch, MAX_REPLY_DEPTH};

/// One client's commands between routing and the write of their replies. Boxed and
/// made on the first batch while command metrics are on: an idle connection's task
/// stays small, and with them off it holds nothing.
#[derive(Debug, Default)]
pub struct Ledger(Option<Box<State>>);

#[derive(Debug, Default)]
struct State {
    arrived: Option<Instant>,
    /// Commands in order; the first `answered` have their outcome.
    entries: VecDeque<Entry>,
    answered: usize,
    /// The outcome of the pinned slot being read (its first reply to the client).
    pinned: Option<Outcome>,
    /// The last name looked up, byte for byte, and its slot: a client usually sends the
    /// same command again (a pipeline of GETs), which then costs a short compare.
    last_name: [u8; LAST_NAME],
    last_len: usize,
    last_slot: u16,
}

/// Longest name [`State::last_name`] remembers.
const LAST_NAME: usize = 24;

#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: u16,
    outcome: Outcome,
}

/// `error` for an error reply (`-` simple error, `!` RESP3 blob error), else `ok`.
pub fn outcome_of(reply: &[u8]) -> Outcome {
    match reply.first() {
        Some(b'-' | b'!') => Outcome::Error,
        _ => Outcome::Ok,
    }
}

impl State {
    fn slot(&mut self, m: &Metrics, name: &[u8]) -> u16 {
        let same = self.last_len == name.len() && self.last_name.get(..name.len()) == Some(name);
        if same && !name.is_empty() {
            return self.last_slot;
        }
        let slot = u16::try_from(m.slot(name)).unwrap_or(u16::MAX);
        if let Some(keep) = self.last_name.get_mut(..name.len()) {
            keep.copy_from_slice(name);
            self.last_len = name.len();
            self.last_slot = slot;
        }
        slot
    }

    fn resolve(&mut self, outcome: Outcome) {
        if let Some(entry) = self.entries.get_mut(self.answered) {
            entry.outcome = outcome;
            self.answered += 1;
        }
    }
}

impl Ledger {
    /// A batch of commands was read from the client: the time they arrived. Reads
    /// `admin.command_metrics` (a reload turns it on or off from the next batch).
    pub fn begin(&mut self, m: &Metrics) {
        if m.command_metrics() {
            let state = self.0.get_or_insert_with(Box::default);
            state.arrived = Some(Instant::now());
        } else {
            self.0 = None;
        }
    }

    /// A command named `name` is being routed (every command gets exactly one slot).
    pub fn command(&mut self, m: &Metrics, name: &[u8]) {
        if let Some(state) = self.0.as_deref_mut() {
            let slot = state.slot(m, name);
            state.entries.push_back(Entry {
                slot,
                outcome: Outcome::Ok,
            });
        }
    }

    /// A reply the sidecar made itself (local answer, refusal, failure) was queued.
    pub fn ready(&mut self, m: &Metrics, reply: &[u8]) {
        if reply.starts_with(b"-TRYAGAIN") {
            m.error(ErrorKind::Tryagain).increment(1);
        }
        if let Some(state) = self.0.as_deref_mut() {
            let outcome = if reply.starts_with(b"-NOPERM") {
                Outcome::Refused
            } else {
                outcome_of(reply)
            };
            state.resolve(outcome);
        }
    }

    /// The replies of a shared job arrived for `commands` client commands (its first
    /// `commands` replies; any after them answer the sidecar's follow-ups). Commands
    /// without a reply got an error made from `batch.error`.
    pub fn shared(&mut self, m: &Metrics, batch: &Batch, commands: usize) {
        let missing = commands.saturating_sub(batch.got);
        if missing > 0 && batch.error.as_ref().is_some_and(|e| e.is_tryagain()) {
            m.error(ErrorKind::Tryagain).increment(missing as u64);
        }
        let Some(state) = self.0.as_deref_mut() else {
            return;
        };
        if batch.errors == 0 {
            for i in 0..commands {
                let outcome = if i < batch.got {
                    Outcome::Ok
                } else {
                    Outcome::Error
                };
                state.resolve(outcome);
            }
            return;
        }
        // Some reply is an error: find which (rare, so scanning here is fine).
        let mut scanner = ReplyScanner::new(MAX_REPLY_DEPTH);
        let mut at = 0;
        for _ in 0..commands {
            let rest = batch.bytes.get(at..).unwrap_or_default();
            match scanner.scan(rest) {
                Ok(Some(len)) => {
                    state.resolve(outcome_of(rest));
                    at += len;
                }
                _ => state.resolve(Outcome::Error),
            }
        }
    }

    /// A reply to the client from its pinned connection (only the first of a slot counts).
    pub fn note(&mut self, reply: &[u8]) {
        if let Some(state) = self.0.as_deref_mut() {
            state.pinned.get_or_insert(outcome_of(reply));
        }
    }

    /// A pinned slot was read; its outcome is its first reply's, or `ok` when the
    /// command has no reply (`CLIENT REPLY OFF`).
    pub fn pinned(&mut self) {
        if let Some(state) = self.0.as_deref_mut() {
            let outcome = state.pinned.take().unwrap_or(Outcome::Ok);
            state.resolve(outcome);
        }
    }

    /// A slot whose upstream replies are dropped and `reply` answered instead (EXEC
    /// after a refusal inside MULTI); an empty `reply` is the sidecar's own command
    /// (state rebuilt after a failover), which no client command waits for.
    pub fn replaced(&mut self, reply: &[u8]) {
        if let Some(state) = self.0.as_deref_mut() {
            state.pinned = None;
            if !reply.is_empty() {
                state.resolve(outcome_of(reply));
            }
        }
    }

    /// The output holding every answered command's reply is about to be written: count
    /// them and record their latency.
    pub fn queued(&mut self, m: &Metrics) {
        let Some(state) = self.0.as_deref_mut() else {
            return;
        };
        if state.answered == 0 {
            return;
        }
        let took = state.arrived.map(|t| t.elapsed());
        // Runs of the same command and outcome (a pipeline of GETs) are counted at once.
        let mut run: Option<(Entry, u64)> = None;
        for entry in state.entries.drain(..state.answered) {
            match run.as_mut() {
                Some((e, n)) if e.slot == entry.slot && e.outcome == entry.outcome => *n += 1,
                _ => {
                    if let Some((e, n)) = run.replace((entry, 1)) {
                        count(m, e, n, took);
                    }
                }
            }
        }
        if let Some((e, n)) = run {
            count(m, e, n, took);
        }
        state.answered = 0;
    }
}

/// `n` commands of one name and outcome, answered `took` after they arrived.
fn count(m: &Metrics, entry: Entry, n: u64, took: Option<std::time::Duration>) {
    let c = m.command_at(usize::from(entry.slot));
    c.outcome(entry.outcome).increment(n);
    if let Some(took) = took {
        c.latency.record_many(took, n);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::upstream::UpstreamError;

    fn count(m: &Metrics, command: &str, outcome: &str) -> f64 {
        let series =
            format!(r#"sidecar_commands_total{{command="{command}",outcome="{outcome}"}} "#);
        m.render()
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn batch(bytes: &'static [u8], got: usize, errors: usize) -> Batch {
        Batch {
            bytes: Bytes::from_static(bytes),
            got,
            errors,
            error: None,
        }
    }

    #[test]
    fn slots_resolve_commands_in_order() {
        let m = Metrics::new();
        let mut l = Ledger::default();
        l.begin(&m);
        for name in [&b"get"[..], b"GET", b"set", b"MULTI", b"EXEC", b""] {
            l.command(&m, name);
        }
        // GET ok, GET WRONGTYPE, SET refused by the sidecar.
        l.shared(&m, &batch(b"$1\r\na\r\n-WRONGTYPE x\r\n", 2, 1), 2);
        l.ready(&m, b"-NOPERM no\r\n");
        l.note(b"+OK\r\n");
        l.pinned();
        l.note(b"!5\r\nerror\r\n");
        l.note(b"+OK\r\n");
        l.pinned();
        l.ready(&m, b"-ERR unknown command\r\n");
        assert_eq!(count(&m, "GET", "ok"), 0.0, "nothing before the write");
        l.queued(&m);
        assert_eq!(count(&m, "GET", "ok"), 1.0);
        assert_eq!(count(&m, "GET", "error"), 1.0);
        assert_eq!(count(&m, "SET", "refused"), 1.0);
        assert_eq!(count(&m, "MULTI", "ok"), 1.0);
        assert_eq!(count(&m, "EXEC", "error"), 1.0);
        assert_eq!(count(&m, "other", "error"), 1.0);
        let text = m.render();
        assert!(
            text.contains(r#"sidecar_command_duration_seconds_count{command="GET"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn missing_shared_replies_are_errors_and_tryagain_is_counted() {
        let m = Metrics::new();
        let mut l = Ledger::default();
        l.begin(&m);
        for _ in 0..3 {
            l.command(&m, b"GET");
        }
        let mut b = batch(b"$1\r\na\r\n", 1, 0);
        b.error = Some(UpstreamError::Timeout(std::time::Duration::from_secs(1)));
        l.shared(&m, &b, 3);
        l.queued(&m);
        assert_eq!(count(&m, "GET", "ok"), 1.0);
        assert_eq!(count(&m, "GET", "error"), 2.0);
        let text = m.render();
        assert!(
            text.contains(r#"sidecar_errors_total{kind="tryagain"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn rebuilt_state_and_no_reply_commands_keep_the_order() {
        let m = Metrics::new();
        let mut l = Ledger::default();
        l.begin(&m);
        l.command(&m, b"CLIENT");
        l.command(&m, b"PING");
        // CLIENT REPLY OFF: a pinned slot without a reply; a swallowed rebuild; PING.
        // (`client` then `PING`: the remembered name must not leak into the next lookup.)
        l.pinned();
        l.replaced(b"");
        l.ready(&m, b"+PONG\r\n");
        l.queued(&m);
        assert_eq!(count(&m, "CLIENT", "ok"), 1.0);
        assert_eq!(count(&m, "PING", "ok"), 1.0);
    }

    #[test]
    fn off_records_nothing() {
        let m = Metrics::new();
        m.set_command_metrics(false);
        let mut l = Ledger::default();
        l.begin(&m);
        l.command(&m, b"GET");
        l.ready(&m, b"-TRYAGAIN no primary\r\n");
        l.queued(&m);
        let text = m.render();
        assert!(!text.contains("sidecar_commands_total{"), "{text}");
        assert!(
            text.contains(r#"sidecar_errors_total{kind="tryagain"} 1"#),
            "{text}"
        );
    }
}
