//! The metrics registry: every counter, gauge and histogram the sidecar exports on
//! `/metrics`, owned by one sidecar instance.
//!
//! Each instance builds its own Prometheus recorder and never installs it as the
//! process-global one: tests run several sidecars in one process and assert exact
//! counters. Handles are made when the instance starts, so the data path does
//! atomic increments only. Per-command series are the one exception: a command's
//! handles are registered the first time its name is seen (one `OnceLock` per name,
//! an atomic load afterwards), so a scrape carries the commands the application
//! uses instead of some 240 histograms that stay at zero.
//!
//! Labels come only from [`labels`]: closed enums and the Redis 7.0 command names,
//! never client input. This module does no IO: the admin HTTP server calls
//! [`Metrics::render`], and [`upkeep`] folds recorded histogram samples into their
//! buckets so memory stays bounded between scrapes. Gauges that mirror state kept
//! elsewhere (clients, pinned connections, the primary) are set at scrape time.

mod labels;
mod latency;
mod ledger;
mod upstream;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::metrics::{Counter, Gauge, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio_util::sync::CancellationToken;

pub use labels::command_names;
pub use labels::{ErrorKind, FlushKind, Outcome, RefusalRule, UpstreamKind, OTHER_COMMAND};
pub use latency::Latency;
pub use ledger::Ledger;

/// Upper bounds (seconds) of the latency histogram buckets: 50µs to 5s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// How often recorded histogram samples are folded into buckets when nobody scrapes.
pub const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// Longest command name kept in the lookup table (`GEORADIUSBYMEMBER_RO` is 20).
const MAX_NAME: usize = 32;

const COMMANDS_TOTAL: &str = "sidecar_commands_total";
const COMMAND_DURATION: &str = "sidecar_command_duration_seconds";
const COMMAND_DURATION_HELP: &str =
    "Time from a command's arrival to its reply being written, as the client sees it";

/// The handles of one command name (or of `"other"`).
pub struct CommandMetrics {
    /// `sidecar_commands_total{command, outcome="ok"}`.
    pub ok: Counter,
    /// `sidecar_commands_total{command, outcome="error"}`.
    pub error: Counter,
    /// `sidecar_commands_total{command, outcome="refused"}`.
    pub refused: Counter,
    /// `sidecar_command_duration_seconds{command}`: from the command's arrival to its
    /// reply being written to the client.
    pub latency: Latency,
    /// The `command` label.
    name: &'static str,
}

impl CommandMetrics {
    /// The counter of one outcome.
    pub fn outcome(&self, outcome: Outcome) -> &Counter {
        match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Error => &self.error,
            Outcome::Refused => &self.refused,
        }
    }
}

/// Every metric of one sidecar instance. Lives in `server::Ctx`.
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// `sidecar_client_connections`: connected now (set at scrape time).
    pub client_connections: Gauge,
    /// `sidecar_client_connections_total`: accepted by the listeners, including those
    /// then refused.
    pub client_connections_total: Counter,
    /// `sidecar_client_connections_rejected_total{reason="max_clients"}`.
    pub client_connections_rejected: Counter,
    /// `sidecar_pinned_connections`: held by clients now (set at scrape time).
    pub pinned_connections: Gauge,
    /// `sidecar_upstream_connected`: 1 while a shared upstream connection is up.
    pub upstream_connected: Gauge,
    /// `sidecar_primary_epoch`: changes with every new verified primary; 0 while none.
    pub primary_epoch: Gauge,
    /// `sidecar_failovers_total`: changes of the verified primary; set at scrape time
    /// from discovery's own count.
    pub failovers: Counter,
    /// `sidecar_unmatched_keys_allowed_total`: commands let through with keys outside
    /// every namespace (`policy.unmatched_keys = "allow"`); set at scrape time from
    /// `Ctx::unmatched`, which the namespace stage already counts.
    pub unmatched_keys_allowed: Counter,
    /// `sidecar_flush_keys_removed_total`: keys deleted by scoped flushes.
    pub flush_keys_removed: Counter,
    /// `sidecar_config_reloads_total{result="ok"|"error"}`.
    reloads: [Counter; 2],
    refusals: Vec<Counter>,
    flushes: Vec<Counter>,
    errors: Vec<Counter>,
    /// One slot per [`command_names`] entry, then `"other"`.
    commands: Box<[OnceLock<CommandMetrics>]>,
    index: HashMap<&'static [u8], usize, BuildHasherDefault<Fnv>>,
    /// `admin.command_metrics`: whether the data path counts and times each command.
    command_metrics: AtomicBool,
    upstream: upstream::UpstreamMetrics,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every fixed series at zero.
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let recorder = Arc::new(recorder);
        let registering = recorder.clone();
        let r = Registrar(&registering);
        r.describe_commands();
        let rejected = "Client connections refused, by reason";
        let refusals = "Commands refused by the policy or namespace rules, by rule";
        let flushes = "FLUSHALL, FLUSHDB and SIDECAR FLUSH served, by kind";
        let errors = "Failures by kind";
        Metrics {
            client_connections: r.gauge("sidecar_client_connections", "Client connections open"),
            client_connections_total: r.counter(
                "sidecar_client_connections_total",
                &[],
                "Client connections accepted (including those then refused)",
            ),
            client_connections_rejected: r.counter(
                "sidecar_client_connections_rejected_total",
                &[("reason", "max_clients")],
                rejected,
            ),
            pinned_connections: r.gauge(
                "sidecar_pinned_connections",
                "Upstream connections pinned to a client (MULTI, WATCH, blocking, pub/sub)",
            ),
            upstream_connected: r.gauge(
                "sidecar_upstream_connected",
                "1 while a shared upstream connection is up, else 0",
            ),
            primary_epoch: r.gauge(
                "sidecar_primary_epoch",
                "Increases with every newly verified primary; 0 while none is verified",
            ),
            failovers: r.counter(
                "sidecar_failovers_total",
                &[],
                "Changes of the verified primary",
            ),
            unmatched_keys_allowed: r.counter(
                "sidecar_unmatched_keys_allowed_total",
                &[],
                "Commands let through with keys outside every namespace",
            ),
            flush_keys_removed: r.counter(
                "sidecar_flush_keys_removed_total",
                &[],
                "Keys deleted by namespace-scoped flushes",
            ),
            reloads: ["ok", "error"].map(|result| {
                r.counter(
                    "sidecar_config_reloads_total",
                    &[("result", result)],
                    "Config reloads (SIGHUP, SIDECAR RELOAD), applied or refused",
                )
            }),
            refusals: RefusalRule::ALL
                .iter()
                .map(|rule| {
                    let labels = [("rule", rule.label())];
                    r.counter("sidecar_policy_refusals_total", &labels, refusals)
                })
                .collect(),
            flushes: FlushKind::ALL
                .iter()
                .map(|kind| r.counter("sidecar_flushes_total", &[("kind", kind.label())], flushes))
                .collect(),
            errors: ErrorKind::ALL
                .iter()
                .map(|kind| r.counter("sidecar_errors_total", &[("kind", kind.label())], errors))
                .collect(),
            commands: (0..=command_names().len())
                .map(|_| OnceLock::new())
                .collect(),
            index: command_names()
                .iter()
                .enumerate()
                .map(|(i, name)| (name.as_bytes(), i))
                .collect(),
            command_metrics: AtomicBool::new(true),
            upstream: upstream::UpstreamMetrics::new(&r),
            recorder,
            handle,
        }
    }

    /// The handles of command `name` (any case; not a Redis 7.0 command: `"other"`).
    /// No allocation once the name has been seen.
    pub fn command(&self, name: &[u8]) -> &CommandMetrics {
        self.command_at(self.slot(name))
    }

    /// Whether commands are counted and timed (`admin.command_metrics`). Off, the data
    /// path reads no clock and registers no per-command or upstream latency series.
    pub fn command_metrics(&self) -> bool {
        self.command_metrics.load(Ordering::Relaxed)
    }

    /// Turn per-command counting and timing on or off (start-up and reloads).
    pub fn set_command_metrics(&self, on: bool) {
        self.command_metrics.store(on, Ordering::Relaxed);
    }

    /// The handles of the command in `slot` (from [`Metrics::slot`]), registered on first use.
    fn command_at(&self, slot: usize) -> &CommandMetrics {
        let slot = slot.min(command_names().len());
        self.commands[slot].get_or_init(|| Registrar(&self.recorder).command(slot))
    }

    fn slot(&self, name: &[u8]) -> usize {
        let mut buf = [0u8; MAX_NAME];
        crate::command::upper(name, &mut buf)
            .and_then(|upper| self.index.get(upper).copied())
            .unwrap_or(command_names().len())
    }

    /// `sidecar_policy_refusals_total{rule}`.
    pub fn refusal(&self, rule: RefusalRule) -> &Counter {
        &self.refusals[rule as usize]
    }

    /// `sidecar_flushes_total{kind}`.
    pub fn flush(&self, kind: FlushKind) -> &Counter {
        &self.flushes[kind as usize]
    }

    /// `sidecar_config_reloads_total{result}`: `ok` when applied, `error` when refused.
    pub fn reload(&self, ok: bool) -> &Counter {
        &self.reloads[usize::from(!ok)]
    }

    /// `sidecar_errors_total{kind}`.
    pub fn error(&self, kind: ErrorKind) -> &Counter {
        &self.errors[kind as usize]
    }

    /// A handle other modules (the migration) register their own series with.
    pub fn registry(&self) -> Registry {
        Registry(self.recorder.clone())
    }

    /// Everything in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        let mut seen = self.commands.iter().filter_map(OnceLock::get).peekable();
        if seen.peek().is_some() {
            if !text.is_empty() && !text.ends_with("\n\n") {
                text.push('\n');
            }
            text.push_str(&format!(
                "# HELP {COMMAND_DURATION} {COMMAND_DURATION_HELP}\n# TYPE {COMMAND_DURATION} histogram\n"
            ));
            for c in seen {
                let labels = format!("command=\"{}\"", c.name);
                c.latency.render(COMMAND_DURATION, &labels, &mut text);
            }
        }
        text
    }

    /// A handle for [`upkeep`].
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }
}

/// Fold recorded histogram samples into their buckets every [`UPKEEP_PERIOD`] until
/// `shutdown`: without it, samples pile up between scrapes (or forever with no scraper).
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// Registers series owned by another module on one instance's recorder. Label values
/// must come from closed sets or the config, never from client input.
#[derive(Clone)]
pub struct Registry(Arc<PrometheusRecorder>);

impl Registry {
    pub fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, String)],
        help: &'static str,
    ) -> Counter {
        self.0
            .describe_counter(KeyName::from_const_str(name), None, help.into());
        self.0.register_counter(&owned_key(name, labels), &METADATA)
    }

    pub fn gauge(
        &self,
        name: &'static str,
        labels: &[(&'static str, String)],
        help: &'static str,
    ) -> Gauge {
        self.0
            .describe_gauge(KeyName::from_const_str(name), None, help.into());
        self.0.register_gauge(&owned_key(name, labels), &METADATA)
    }
}

fn owned_key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.clone()))
        .collect();
    Key::from_parts(name, labels)
}

/// Registers series on one recorder, with their help text.
struct Registrar<'a>(&'a PrometheusRecorder);

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl Registrar<'_> {
    fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::from_static_parts(k, v))
            .collect();
        Key::from_parts(name, labels)
    }

    fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
        help: &'static str,
    ) -> Counter {
        self.0
            .describe_counter(KeyName::from_const_str(name), None, help.into());
        self.0.register_counter(&Self::key(name, labels), &METADATA)
    }

    fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.0
            .describe_gauge(KeyName::from_const_str(name), None, help.into());
        self.0.register_gauge(&Self::key(name, &[]), &METADATA)
    }

    fn describe_commands(&self) {
        self.0.describe_counter(
            KeyName::from_const_str(COMMANDS_TOTAL),
            None,
            "Commands served, by command and outcome (ok, error, refused)".into(),
        );
    }

    fn command(&self, slot: usize) -> CommandMetrics {
        let name = command_names().get(slot).copied().unwrap_or(OTHER_COMMAND);
        let outcome = |outcome: &'static str| {
            let key = Self::key(COMMANDS_TOTAL, &[("command", name), ("outcome", outcome)]);
            self.0.register_counter(&key, &METADATA)
        };
        CommandMetrics {
            ok: outcome("ok"),
            error: outcome("error"),
            refused: outcome("refused"),
            latency: Latency::default(),
            name,
        }
    }
}

/// FNV-1a: command names are short and trusted-length (at most [`MAX_NAME`] bytes), so
/// a simple hash beats SipHash on the per-command lookup.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests;
