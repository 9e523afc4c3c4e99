//! What counting one command costs the data path: `Metrics::command(name)` (the
//! case-insensitive lookup), one outcome counter increment and one latency histogram
//! record (the sidecar's own fixed-bucket histogram), next to each step alone. Then
//! the whole per-client path as a client loop runs it (`Ledger`: commands arrive, are
//! routed, answered and counted, clock reads included): one command per batch (-P 1),
//! sixteen GETs per batch (-P 16), sixteen different names per batch (the worst case
//! for grouping), and with `admin.command_metrics = false`. Also the cost, per sample,
//! of folding the recorder's own histogram samples (upstream latency) into buckets
//! (the periodic upkeep, off the data path). Run with
//! `cargo run --release --example metrics_cost`.
//!
//! Figures are nanoseconds per command (best and median of several rounds), for
//! quoting; nothing here asserts anything.

use std::hint::black_box;
use std::time::{Duration, Instant};

use resp_sidecar::metrics::{Ledger, Metrics, UpstreamKind};

const OPS: usize = 1_000_000;
const ROUNDS: usize = 15;

/// A session-store mix in the case clients send, plus one unknown name.
const NAMES: [&[u8]; 8] = [
    b"GET",
    b"get",
    b"SET",
    b"expire",
    b"HGETALL",
    b"del",
    b"EVALSHA",
    b"NOSUCHCMD",
];

fn rounds(metrics: &Metrics, mut op: impl FnMut(usize)) -> (f64, f64) {
    let mut per_op = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..OPS {
            op(i);
        }
        per_op.push(start.elapsed().as_nanos() as f64 / OPS as f64);
        // Keep recorded samples bounded between rounds, as the upkeep task does.
        metrics.handle().run_upkeep();
    }
    per_op.sort_by(f64::total_cmp);
    (per_op[0], per_op[ROUNDS / 2])
}

fn report(what: &str, (best, median): (f64, f64)) {
    println!("{what:<48} best {best:6.1} ns   median {median:6.1} ns");
}

fn main() {
    let metrics = Metrics::new();
    let latency = Duration::from_micros(180);

    report(
        "command(name) lookup",
        rounds(&metrics, |i| {
            black_box(metrics.command(black_box(NAMES[i % NAMES.len()])));
        }),
    );
    let get = metrics.command(b"GET");
    report(
        "counter increment",
        rounds(&metrics, |_| get.ok.increment(1)),
    );
    report(
        "histogram record",
        rounds(&metrics, |_| get.latency.record(black_box(latency))),
    );
    report(
        "lookup + increment + record (the per-command cost)",
        rounds(&metrics, |i| {
            let c = metrics.command(black_box(NAMES[i % NAMES.len()]));
            c.ok.increment(1);
            c.latency.record(black_box(latency));
        }),
    );

    let mut ledger = Ledger::default();
    report(
        "ledger: a one-command batch (-P 1), clocks included",
        rounds(&metrics, |i| {
            ledger.begin(&metrics);
            ledger.command(&metrics, black_box(NAMES[i % NAMES.len()]));
            ledger.ready(&metrics, black_box(b"$5\r\nvalue\r\n"));
            ledger.queued(&metrics);
        }),
    );
    report(
        "ledger: 16 GETs in a batch (-P 16), per command",
        rounds(&metrics, |i| {
            if i % 16 == 0 {
                ledger.begin(&metrics);
            }
            ledger.command(&metrics, black_box(b"GET"));
            ledger.ready(&metrics, black_box(b"$5\r\nvalue\r\n"));
            if i % 16 == 15 {
                ledger.queued(&metrics);
            }
        }),
    );
    report(
        "ledger: 16 mixed names in a batch, per command",
        rounds(&metrics, |i| {
            if i % 16 == 0 {
                ledger.begin(&metrics);
            }
            ledger.command(&metrics, black_box(NAMES[i % NAMES.len()]));
            ledger.ready(&metrics, black_box(b"$5\r\nvalue\r\n"));
            if i % 16 == 15 {
                ledger.queued(&metrics);
            }
        }),
    );
    let off = Metrics::new();
    off.set_command_metrics(false);
    let mut ledger = Ledger::default();
    report(
        "ledger with command_metrics = false",
        rounds(&off, |i| {
            ledger.begin(&off);
            ledger.command(&off, black_box(NAMES[i % NAMES.len()]));
            ledger.ready(&off, black_box(b"$5\r\nvalue\r\n"));
            ledger.queued(&off);
        }),
    );

    // Upkeep: fold OPS samples of the recorder's own histograms (upstream latency, one
    // sample per upstream job) into buckets.
    let mut per_sample = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        for _ in 0..OPS {
            metrics.upstream_duration(UpstreamKind::Shared, latency);
        }
        let start = Instant::now();
        metrics.handle().run_upkeep();
        per_sample.push(start.elapsed().as_nanos() as f64 / OPS as f64);
    }
    per_sample.sort_by(f64::total_cmp);
    report(
        "upkeep, per recorded sample (off the data path)",
        (per_sample[0], per_sample[ROUNDS / 2]),
    );

    let start = Instant::now();
    let text = metrics.render();
    println!(
        "render: {} bytes in {:?} ({} command names seen)",
        text.len(),
        start.elapsed(),
        NAMES.len() - 1
    );
}
