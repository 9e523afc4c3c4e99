//! The per-command latency histogram: fixed buckets ([`LATENCY_BUCKETS`]) counted with
//! two atomic adds per record, however many samples it carries.
//!
//! The Prometheus recorder's own histograms append every sample to a queue that the
//! upkeep task folds into buckets: about 26 ns a sample, which the data path would pay
//! for every command. Here a bucket index is found and counted directly, and the
//! commands of one pipeline that share a command name and an answer time are recorded
//! in one call, so the cost per command falls with the pipeline depth. Rendered in the
//! text format next to the recorder's own series by [`super::Metrics::render`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::LATENCY_BUCKETS;

/// Bucket upper bounds in nanoseconds, for an integer search.
const BOUNDS_NS: [u64; LATENCY_BUCKETS.len()] = {
    let mut out = [0u64; LATENCY_BUCKETS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (LATENCY_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// One command's latency histogram.
#[derive(Debug, Default)]
pub struct Latency {
    /// Samples per bucket (not cumulative); the last one is above every bound (`+Inf`).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Latency {
    /// One sample.
    pub fn record(&self, took: Duration) {
        self.record_many(took, 1);
    }

    /// `count` samples of the same duration.
    pub fn record_many(&self, took: Duration, count: u64) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // The first bound at or above the sample: Prometheus buckets are `le`.
        let i = BOUNDS_NS.partition_point(|&bound| bound < ns);
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(count, Ordering::Relaxed);
        }
        self.sum_ns
            .fetch_add(ns.saturating_mul(count), Ordering::Relaxed);
    }

    /// Samples recorded so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Append the `_bucket`, `_sum` and `_count` lines of series `name{labels}` (labels
    /// already rendered, e.g. `command="GET"`).
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match LATENCY_BUCKETS.get(i) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn samples_land_in_their_le_bucket() {
        let h = Latency::default();
        h.record(Duration::from_micros(50)); // exactly on the first bound
        h.record(Duration::from_micros(200));
        h.record_many(Duration::from_millis(3), 3);
        h.record(Duration::from_secs(60));
        let mut text = String::new();
        h.render("x_seconds", "command=\"GET\"", &mut text);
        let le = |b: &str| {
            line(
                &text,
                &format!("x_seconds_bucket{{command=\"GET\",le=\"{b}\"}}"),
            )
        };
        assert_eq!(le("0.00005"), Some("1"), "{text}");
        assert_eq!(le("0.0001"), Some("1"), "{text}");
        assert_eq!(le("0.00025"), Some("2"), "{text}");
        assert_eq!(le("0.0025"), Some("2"), "{text}");
        assert_eq!(le("0.005"), Some("5"), "{text}");
        assert_eq!(le("5"), Some("5"), "{text}");
        assert_eq!(le("+Inf"), Some("6"), "{text}");
        assert_eq!(line(&text, "x_seconds_count{command=\"GET\"}"), Some("6"));
        assert_eq!(
            line(&text, "x_seconds_sum{command=\"GET\"}"),
            Some("60.00925")
        );
        assert_eq!(h.count(), 6);
    }
}
