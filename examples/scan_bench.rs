//! Throughput of the RESP codec on a pipelined buffer of GET/SET commands and
//! their replies, next to the `redis-protocol` crate's decoders on the same
//! bytes. Run with `cargo run --release --example scan_bench`.
//!
//! Figures are nanoseconds per command (best of several rounds), for quoting;
//! nothing here asserts anything.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use resp_sidecar::resp::{ReplyScanner, RequestDecoder, RequestLimits};

const COMMANDS: usize = 100_000;
const ROUNDS: usize = 15;

/// Pipelined requests and the matching RESP2 replies: even commands are SETs
/// (reply `+OK`), odd ones GETs (a 32-byte value, or a miss every fourth one).
fn workload() -> (Vec<u8>, Vec<u8>) {
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    let value = [b'v'; 32];
    for i in 0..COMMANDS {
        let key = format!("session:{i:08}");
        if i % 2 == 0 {
            requests.extend_from_slice(
                format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$32\r\n", key.len()).as_bytes(),
            );
            requests.extend_from_slice(&value);
            requests.extend_from_slice(b"\r\n");
            replies.extend_from_slice(b"+OK\r\n");
        } else {
            requests.extend_from_slice(
                format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
            );
            if i % 4 == 3 {
                replies.extend_from_slice(b"$-1\r\n");
            } else {
                replies.extend_from_slice(b"$32\r\n");
                replies.extend_from_slice(&value);
                replies.extend_from_slice(b"\r\n");
            }
        }
    }
    (requests, replies)
}

/// Best time over `ROUNDS` runs of `run` on a fresh copy of `input` (copied
/// outside the timing), in ns per command; `run` returns how many items it saw.
fn measure(name: &str, input: &[u8], mut run: impl FnMut(BytesMut) -> usize) {
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let buf = BytesMut::from(input);
        let start = Instant::now();
        let seen = black_box(run(buf));
        let elapsed = start.elapsed().as_nanos() as f64;
        assert_eq!(seen, COMMANDS, "{name} saw {seen} items");
        best = best.min(elapsed / COMMANDS as f64);
    }
    println!("{name:<48} {best:>7.1} ns/command");
}

fn main() {
    let (requests, replies) = workload();
    // The same replies as a RESP3 client gets them: a miss is `_` instead of `$-1`.
    let replies3: Vec<u8> = String::from_utf8_lossy(&replies)
        .replace("$-1\r\n", "_\r\n")
        .into_bytes();
    println!(
        "{COMMANDS} pipelined GET/SET commands: {} bytes of requests, {} bytes of replies\n",
        requests.len(),
        replies.len()
    );
    let limits = RequestLimits {
        max_bulk_len: 512 << 20,
        max_array_len: 1 << 20,
        max_inline_len: 64 << 10,
    };

    measure("resp::RequestDecoder::decode", &requests, |mut buf| {
        let mut decoder = RequestDecoder::new(limits);
        let mut n = 0;
        while let Ok(Some(request)) = decoder.decode(&mut buf) {
            black_box(&request);
            n += 1;
        }
        n
    });
    measure(
        "redis_protocol::resp2::decode_bytes_mut",
        &requests,
        |mut buf| {
            let mut n = 0;
            while let Ok(Some(frame)) = redis_protocol::resp2::decode::decode_bytes_mut(&mut buf) {
                black_box(&frame);
                n += 1;
            }
            n
        },
    );
    println!();
    measure(
        "resp::ReplyScanner::scan (RESP2 replies)",
        &replies,
        |replies| {
            let mut scanner = ReplyScanner::new(32);
            let (mut at, mut n) = (0, 0);
            while let Ok(Some(len)) = scanner.scan(&replies[at..]) {
                at += len;
                n += 1;
            }
            n
        },
    );
    measure("redis_protocol::resp2::decode_range", &replies, |replies| {
        let (mut at, mut n) = (0, 0);
        while let Ok(Some((frame, len))) =
            redis_protocol::resp2::decode::decode_range(&replies[at..])
        {
            black_box(&frame);
            at += len;
            n += 1;
        }
        n
    });
    println!();
    measure(
        "resp::ReplyScanner::scan (RESP3 replies)",
        &replies3,
        |replies| {
            let mut scanner = ReplyScanner::new(32);
            let (mut at, mut n) = (0, 0);
            while let Ok(Some(len)) = scanner.scan(&replies[at..]) {
                at += len;
                n += 1;
            }
            n
        },
    );
    measure(
        "redis_protocol::resp3::complete::decode_range",
        &replies3,
        |replies| {
            let (mut at, mut n) = (0, 0);
            while let Ok(Some((frame, len))) =
                redis_protocol::resp3::decode::complete::decode_range(&replies[at..])
            {
                black_box(&frame);
                at += len;
                n += 1;
            }
            n
        },
    );
}
