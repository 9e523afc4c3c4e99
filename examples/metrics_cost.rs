//! What counting one command costs the data path: `Metrics::command(name)` (the
//! case-insensitive lookup), one outcome counter increment and one latency histogram
//! record, next to each step alone. Also the cost, per sample, of folding samples into
//! buckets (the periodic upkeep, off the data path). Run with
//! `cargo run --release --example metrics_cost`.
//!
//! Figures are nanoseconds per command (best and median of several rounds), for
//! quoting; nothing here asserts anything.

use std::hint::black_box;
use std::time::{Duration, Instant};

use resp_sidecar::metrics::Metrics;

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

    // Upkeep: fold OPS samples into buckets.
    let mut per_sample = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        for _ in 0..OPS {
            get.latency.record(latency);
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
