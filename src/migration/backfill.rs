//! `resp-sidecar migrate`: copy the keys that exist before dual-write started.
//!
//! SCAN the source page by page (the next page is fetched while the current one is
//! copied); each page is copied in chunks on several connections at once, each chunk
//! one pipelined DUMP + PTTL on the source and one pipelined RESTORE on the target.
//! RESTORE is sent without REPLACE: a key the target already holds was written there
//! by dual-write after the backfill started and is newer, so BUSYKEY leaves it alone.
//! After each page the cursor and counts go to the checkpoint file.

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::cli::{Job, MigrateArgs};
use super::dump::{self, Snapshot};
use super::keymap::KeyMap;
use super::progress::{Checkpoint, Counts, Progress};
use crate::resp::value::Value;
use crate::server::{scan_args, scan_page};
use crate::upstream::Upstream;

/// Keys per pipelined chunk; chunks of one page run concurrently.
const CHUNK: usize = 250;

/// The outcome of a backfill.
#[derive(Debug, Clone)]
pub struct Report {
    pub counts: Counts,
    pub elapsed: Duration,
    pub keys_per_s: f64,
    pub dry_run: bool,
    pub already_done: bool,
}

impl Report {
    pub fn render(&self, label: &str) -> String {
        let c = &self.counts;
        let verb = if self.dry_run { "would copy" } else { "copied" };
        let mut out = format!(
            "migrate {label}: {}\n  scanned   {}\n  {verb:<9} {}\n  existing  {} (already in the target, newer: left alone)\n  gone      {} (deleted or expired before the copy)\n  failed    {}\n  elapsed   {:.1}s\n  rate      {:.0} keys/s\n",
            if self.already_done { "already complete (checkpoint)" } else if self.dry_run { "dry run, nothing written" } else { "done" },
            c.scanned, c.copied, c.existing, c.gone, c.failed,
            self.elapsed.as_secs_f64(), self.keys_per_s
        );
        if c.failed > 0 {
            out.push_str("  some keys failed: run migrate again without --resume (keys already copied are skipped), then verify\n");
        }
        out
    }
}

/// Run a backfill to the end (or until `stop`).
pub async fn run(
    job: &Job,
    args: &MigrateArgs,
    stop: &CancellationToken,
) -> Result<Report, String> {
    let (from, to) = job.connect(stop)?;
    let mut cp = Checkpoint {
        job: job.label.clone(),
        cursor: "0".into(),
        ..Checkpoint::default()
    };
    if args.resume {
        let saved = Checkpoint::load(&args.checkpoint)?;
        if saved.job != job.label {
            return Err(format!(
                "{} belongs to another job ({}); give the same --from, --to and scope, or start without --resume",
                args.checkpoint.display(),
                saved.job
            ));
        }
        cp = saved;
        if cp.done {
            return Ok(Report {
                counts: cp.counts,
                elapsed: Duration::ZERO,
                keys_per_s: 0.0,
                dry_run: args.dry_run,
                already_done: true,
            });
        }
    }
    let total = dbsize(&from).await;
    let exact = job.pattern.as_ref() == b"*";
    let mut progress = Progress::new(total, exact, cp.counts.scanned);
    let count: &'static [u8] = match args.rate {
        Some(r) if r < 200 => b"10",
        Some(r) if r < 20_000 => b"100",
        _ => b"1000",
    };
    let scan = |cursor: Bytes| {
        let from = from.clone();
        let pattern = job.pattern.clone();
        async move {
            let mut replies = from
                .call(&[scan_args(&cursor, &pattern, count)])
                .await
                .map_err(|e| format!("SCAN on the source: {e}"))?;
            scan_page(replies.pop().unwrap_or(Value::Nil)).map_err(|e| format!("SCAN: {e}"))
        }
    };
    let start = cp.counts.scanned;
    let mut page = scan(Bytes::from(cp.cursor.clone())).await?;
    loop {
        let (next, keys) = page;
        let more = next.as_ref() != b"0";
        let copying = copy_page(&from, &to, &job.map, keys, args.dry_run);
        let (counts, next_page) = tokio::join!(copying, async {
            if more {
                Some(scan(next.clone()).await)
            } else {
                None
            }
        });
        cp.counts.add(counts);
        cp.cursor = String::from_utf8_lossy(&next).into_owned();
        cp.done = !more;
        if !args.dry_run {
            cp.save(&args.checkpoint).map_err(|e| {
                format!("cannot write checkpoint {}: {e}", args.checkpoint.display())
            })?;
        }
        progress.update(cp.counts.scanned);
        if let Some(rate) = args.rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64((cp.counts.scanned - start) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(progress.elapsed()) {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        if stop.is_cancelled() {
            return Err("interrupted; continue with --resume".into());
        }
        match next_page {
            Some(p) => page = p?,
            None => break,
        }
    }
    progress.finish();
    Ok(Report {
        counts: cp.counts,
        elapsed: progress.elapsed(),
        keys_per_s: progress.rate(cp.counts.scanned),
        dry_run: args.dry_run,
        already_done: false,
    })
}

async fn dbsize(up: &Upstream) -> Option<u64> {
    match up
        .call(&[vec![Bytes::from_static(b"DBSIZE")]])
        .await
        .ok()?
        .pop()?
    {
        Value::Int(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

/// Copy one page of source keys, in concurrent chunks.
async fn copy_page(
    from: &Upstream,
    to: &Upstream,
    map: &KeyMap,
    keys: Vec<Bytes>,
    dry_run: bool,
) -> Counts {
    let mut tasks = JoinSet::new();
    for chunk in keys.chunks(CHUNK) {
        let (from, to, map, chunk) = (from.clone(), to.clone(), map.clone(), chunk.to_vec());
        tasks.spawn(async move { copy_chunk(&from, &to, &map, &chunk, dry_run).await });
    }
    let mut counts = Counts {
        scanned: keys.len() as u64,
        ..Counts::default()
    };
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(c) => counts.add(c),
            Err(_) => counts.failed += 1,
        }
    }
    counts
}

async fn copy_chunk(
    from: &Upstream,
    to: &Upstream,
    map: &KeyMap,
    keys: &[Bytes],
    dry_run: bool,
) -> Counts {
    let mut counts = Counts::default();
    let snaps = match from.call(&dump::read_commands(keys)).await {
        Ok(replies) => dump::parse(replies),
        Err(_) => {
            counts.failed = keys.len() as u64;
            return counts;
        }
    };
    let mut writes = Vec::with_capacity(keys.len());
    for (key, snap) in keys.iter().zip(snaps) {
        match snap {
            Ok(Snapshot::Gone) => counts.gone += 1,
            Ok(snap) => {
                let target = map.to_new(key);
                writes.push(if dry_run {
                    vec![Bytes::from_static(b"EXISTS"), target]
                } else {
                    dump::write_command(&target, &snap, false)
                });
            }
            Err(_) => counts.failed += 1,
        }
    }
    if writes.is_empty() {
        return counts;
    }
    match to.call(&writes).await {
        Ok(replies) => {
            for r in &replies {
                match r {
                    Value::Int(1) if dry_run => counts.existing += 1,
                    _ if dry_run => counts.copied += 1,
                    v if dump::is_busy_key(v) => counts.existing += 1,
                    Value::Error(_) => counts.failed += 1,
                    _ => counts.copied += 1,
                }
            }
        }
        Err(_) => counts.failed += writes.len() as u64,
    }
    counts
}
