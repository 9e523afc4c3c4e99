//! `resp-sidecar verify`: do two stores hold the same keys?
//!
//! Every source key (or `--sample N` of them) is read on both sides in pipelined
//! chunks: TYPE, PTTL and DUMP. Equal DUMP payloads mean equal values; when they
//! differ (the same value can be encoded two ways), the values are read and compared
//! by type. TTLs match when both have none or both are within the tolerance. Then the
//! target is scanned for keys the source does not have. Differences are listed with
//! the key, quoted; this is a report for the operator, not a log.

use std::time::Duration;

use bytes::Bytes;

use super::cli::Job;
use super::keymap::KeyMap;
use crate::resp::value::Value;
use crate::server::{scan_args, scan_page};
use crate::upstream::Upstream;

const CHUNK: usize = 500;

/// What differs about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Missing,
    Extra,
    Type { from: String, to: String },
    Value,
    Ttl { from_ms: i64, to_ms: i64 },
}

impl Difference {
    fn describe(&self) -> String {
        match self {
            Difference::Missing => "missing in the target".into(),
            Difference::Extra => "only in the target".into(),
            Difference::Type { from, to } => {
                format!("type {from} in the source, {to} in the target")
            }
            Difference::Value => "different value".into(),
            Difference::Ttl { from_ms, to_ms } => format!(
                "TTL {} in the source, {} in the target",
                ttl(*from_ms),
                ttl(*to_ms)
            ),
        }
    }
}

fn ttl(ms: i64) -> String {
    if ms < 0 {
        "none".into()
    } else {
        format!("{ms}ms")
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub compared: u64,
    pub differences: Vec<(Bytes, Difference)>,
    /// Differences beyond `max_report`, counted only.
    pub unlisted: u64,
}

impl Outcome {
    pub fn clean(&self) -> bool {
        self.differences.is_empty() && self.unlisted == 0
    }

    pub fn render(&self, label: &str) -> String {
        let total = self.differences.len() as u64 + self.unlisted;
        let mut out = format!(
            "verify {label}: {} keys compared, {total} differences\n",
            self.compared
        );
        for (key, d) in &self.differences {
            out.push_str(&format!("  {}: {}\n", quote(key), d.describe()));
        }
        if self.unlisted > 0 {
            out.push_str(&format!("  ... and {} more\n", self.unlisted));
        }
        out
    }

    fn push(&mut self, key: Bytes, d: Difference, max: usize) {
        if self.differences.len() < max {
            self.differences.push((key, d));
        } else {
            self.unlisted += 1;
        }
    }
}

/// A key as redis-cli would quote it (for reports and STATUS, never for logs).
pub(super) fn quote(key: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in key {
        match b {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(b as char);
            }
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    s
}

pub async fn run(
    job: &Job,
    from: &Upstream,
    to: &Upstream,
    sample: Option<u64>,
    tolerance: Duration,
    max_report: usize,
) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    let limit = sample.unwrap_or(u64::MAX);
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let (next, keys) = scan(from, &cursor, &job.pattern).await?;
        for chunk in keys.chunks(CHUNK) {
            let room = (limit - out.compared) as usize;
            let chunk = &chunk[..chunk.len().min(room)];
            compare(from, to, &job.map, chunk, tolerance, max_report, &mut out).await?;
            out.compared += chunk.len() as u64;
        }
        if next.as_ref() == b"0" || out.compared >= limit {
            break;
        }
        cursor = next;
    }
    if sample.is_none() {
        extra_keys(job, from, to, max_report, &mut out).await?;
    }
    Ok(out)
}

async fn scan(
    up: &Upstream,
    cursor: &Bytes,
    pattern: &Bytes,
) -> Result<(Bytes, Vec<Bytes>), String> {
    let mut r = up
        .call(&[scan_args(cursor, pattern, b"1000")])
        .await
        .map_err(|e| format!("SCAN: {e}"))?;
    scan_page(r.pop().unwrap_or(Value::Nil)).map_err(|e| format!("SCAN: {e}"))
}

fn reads(keys: &[Bytes]) -> Vec<Vec<Bytes>> {
    let mut cmds = Vec::with_capacity(keys.len() * 3);
    for k in keys {
        for c in [&b"TYPE"[..], b"PTTL", b"DUMP"] {
            cmds.push(vec![Bytes::from_static(c), k.clone()]);
        }
    }
    cmds
}

fn text(v: &Value) -> String {
    v.bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

async fn compare(
    from: &Upstream,
    to: &Upstream,
    map: &KeyMap,
    keys: &[Bytes],
    tolerance: Duration,
    max: usize,
    out: &mut Outcome,
) -> Result<(), String> {
    let targets: Vec<Bytes> = keys.iter().map(|k| map.to_new(k)).collect();
    let (ra, rb) = (reads(keys), reads(&targets));
    let (a, b) = tokio::join!(from.call(&ra), to.call(&rb));
    let a = a.map_err(|e| format!("source: {e}"))?;
    let b = b.map_err(|e| format!("target: {e}"))?;
    for (i, key) in keys.iter().enumerate() {
        let (sa, sb) = (&a[i * 3..i * 3 + 3], &b[i * 3..i * 3 + 3]);
        let (ta, tb) = (text(&sa[0]), text(&sb[0]));
        if ta == "none" {
            continue; // deleted or expired since SCAN
        }
        let diff = if tb == "none" {
            Some(Difference::Missing)
        } else if ta != tb {
            Some(Difference::Type {
                from: ta.clone(),
                to: tb,
            })
        } else if sa[2] != sb[2] && !same_value(from, to, &ta, key, &targets[i]).await? {
            Some(Difference::Value)
        } else {
            ttl_difference(&sa[1], &sb[1], tolerance)
        };
        if let Some(d) = diff {
            out.push(key.clone(), d, max);
        }
    }
    Ok(())
}

fn ttl_difference(a: &Value, b: &Value, tolerance: Duration) -> Option<Difference> {
    let (Value::Int(x), Value::Int(y)) = (a, b) else {
        return None;
    };
    let close = (*x < 0 && *y < 0)
        || (*x >= 0 && *y >= 0 && x.abs_diff(*y) <= tolerance.as_millis() as u64);
    (!close).then_some(Difference::Ttl {
        from_ms: *x,
        to_ms: *y,
    })
}

/// Compare by type when the DUMP payloads differ.
async fn same_value(
    from: &Upstream,
    to: &Upstream,
    kind: &str,
    a: &Bytes,
    b: &Bytes,
) -> Result<bool, String> {
    let read = |k: &Bytes| -> Option<Vec<Bytes>> {
        let s = |t: &'static [u8]| Bytes::from_static(t);
        Some(match kind {
            "string" => vec![s(b"GET"), k.clone()],
            "list" => vec![s(b"LRANGE"), k.clone(), s(b"0"), s(b"-1")],
            "set" => vec![s(b"SMEMBERS"), k.clone()],
            "zset" => vec![s(b"ZRANGE"), k.clone(), s(b"0"), s(b"-1"), s(b"WITHSCORES")],
            "hash" => vec![s(b"HGETALL"), k.clone()],
            "stream" => vec![s(b"XRANGE"), k.clone(), s(b"-"), s(b"+")],
            _ => return None,
        })
    };
    let (Some(ra), Some(rb)) = (read(a), read(b)) else {
        return Ok(false);
    };
    let (ra, rb) = ([ra], [rb]);
    let (x, y) = tokio::join!(from.call(&ra), to.call(&rb));
    let mut x = x.map_err(|e| format!("source: {e}"))?;
    let mut y = y.map_err(|e| format!("target: {e}"))?;
    let (mut x, mut y) = (x.pop().unwrap_or(Value::Nil), y.pop().unwrap_or(Value::Nil));
    if kind == "set" || kind == "hash" {
        sort(&mut x, kind == "hash");
        sort(&mut y, kind == "hash");
    }
    Ok(x == y)
}

/// Sort an array reply whose order depends on the store's internals (field/value
/// pairs kept together when `pairs`).
pub(super) fn sort(v: &mut Value, pairs: bool) {
    let Value::Array(items) = v else { return };
    let key = |v: &Value| v.bytes().map(<[u8]>::to_vec).unwrap_or_default();
    if pairs {
        let mut chunks: Vec<Vec<Value>> = items.chunks(2).map(<[Value]>::to_vec).collect();
        chunks.sort_by_key(|c| c.first().map(key).unwrap_or_default());
        *items = chunks.into_iter().flatten().collect();
    } else {
        items.sort_by_key(key);
    }
}

/// Target keys in scope that the source does not have.
async fn extra_keys(
    job: &Job,
    from: &Upstream,
    to: &Upstream,
    max: usize,
    out: &mut Outcome,
) -> Result<(), String> {
    let pattern = match job.map.prefix() {
        Some(p) => super::cli::prefix_glob(p),
        None => job.pattern.clone(),
    };
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let (next, keys) = scan(to, &cursor, &pattern).await?;
        let sources: Vec<Bytes> = keys.iter().filter_map(|k| job.map.to_old(k)).collect();
        if !sources.is_empty() {
            let cmds: Vec<Vec<Bytes>> = sources
                .iter()
                .map(|k| vec![Bytes::from_static(b"EXISTS"), k.clone()])
                .collect();
            let found = from.call(&cmds).await.map_err(|e| format!("source: {e}"))?;
            for (k, v) in sources.iter().zip(found) {
                if v == Value::Int(0) {
                    out.push(job.map.to_new(k), Difference::Extra, max);
                }
            }
        }
        if next.as_ref() == b"0" {
            return Ok(());
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_within_tolerance_match() {
        let t = Duration::from_secs(2);
        assert_eq!(ttl_difference(&Value::Int(-1), &Value::Int(-1), t), None);
        assert_eq!(
            ttl_difference(&Value::Int(10_000), &Value::Int(9_000), t),
            None
        );
        assert!(ttl_difference(&Value::Int(-1), &Value::Int(9_000), t).is_some());
        assert!(ttl_difference(&Value::Int(60_000), &Value::Int(9_000), t).is_some());
        assert_eq!(quote(b"a\"b\x00"), "\"a\\\"b\\x00\"");
    }
}
