//! The upstream connections' series: connects, disconnects and connections open per
//! kind (shared, pinned), and the time commands spend at Redis.
//!
//! The upstream stage calls these where connections open and close and where a reply
//! completes; what counts as a failure (`sidecar_errors_total`) is decided there too.

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, KeyName, Recorder, Unit};

use super::{Metrics, Registrar, UpstreamKind, METADATA};

const UPSTREAM_DURATION: &str = "sidecar_upstream_duration_seconds";

/// Handles of the upstream series, one per [`UpstreamKind`].
pub(super) struct UpstreamMetrics {
    connects: [Counter; 2],
    disconnects: [Counter; 2],
    open: [Gauge; 2],
    /// Registered on first use, so a sidecar with `admin.command_metrics = false`
    /// exports no latency series at all.
    duration: [OnceLock<Histogram>; 2],
}

impl UpstreamMetrics {
    pub(super) fn new(r: &Registrar<'_>) -> UpstreamMetrics {
        let recorder = r.0;
        recorder.describe_counter(
            KeyName::from_const_str("sidecar_upstream_connects_total"),
            None,
            "Upstream connections established (handshake done), by kind".into(),
        );
        recorder.describe_counter(
            KeyName::from_const_str("sidecar_upstream_disconnects_total"),
            None,
            "Upstream connections closed or lost, by kind".into(),
        );
        recorder.describe_gauge(
            KeyName::from_const_str("sidecar_upstream_connections"),
            None,
            "Upstream connections open now, by kind (pinned includes idle ones kept for reuse)"
                .into(),
        );
        recorder.describe_histogram(
            KeyName::from_const_str(UPSTREAM_DURATION),
            Some(Unit::Seconds),
            "Time from writing commands to Redis to their reply, per shared job or pinned write"
                .into(),
        );
        let labelled = |name: &'static str, kind: UpstreamKind| {
            Registrar::key(name, &[("kind", kind.label())])
        };
        UpstreamMetrics {
            connects: UpstreamKind::ALL.map(|k| {
                recorder
                    .register_counter(&labelled("sidecar_upstream_connects_total", k), &METADATA)
            }),
            disconnects: UpstreamKind::ALL.map(|k| {
                let key = labelled("sidecar_upstream_disconnects_total", k);
                recorder.register_counter(&key, &METADATA)
            }),
            open: UpstreamKind::ALL.map(|k| {
                recorder.register_gauge(&labelled("sidecar_upstream_connections", k), &METADATA)
            }),
            duration: [OnceLock::new(), OnceLock::new()],
        }
    }
}

impl Metrics {
    /// An upstream connection of `kind` is established.
    pub fn upstream_connected(&self, kind: UpstreamKind) {
        self.upstream.connects[kind as usize].increment(1);
        self.upstream.open[kind as usize].increment(1.0);
    }

    /// An upstream connection of `kind` closed, for whatever reason.
    pub fn upstream_disconnected(&self, kind: UpstreamKind) {
        self.upstream.disconnects[kind as usize].increment(1);
        self.upstream.open[kind as usize].decrement(1.0);
    }

    /// Record how long Redis took to answer (callers check [`Metrics::command_metrics`]
    /// before reading the clock).
    pub fn upstream_duration(&self, kind: UpstreamKind, took: Duration) {
        let histogram = self.upstream.duration[kind as usize].get_or_init(|| {
            let key = Registrar::key(UPSTREAM_DURATION, &[("kind", kind.label())]);
            self.recorder.register_histogram(&key, &METADATA)
        });
        histogram.record(took);
    }
}
