//! `INFO`'s `# Sidecar` section: built from the sidecar's own state, so `INFO sidecar`
//! answers even while Redis is down, and appended to the upstream's full `INFO`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::Ctx;
use crate::config::{FlushMode, UpstreamMode};
use crate::upstream::sentinel::PrimaryState;

/// The `# Sidecar` section, lines ending in CRLF like the rest of INFO.
pub(super) fn section(ctx: &Ctx) -> String {
    let mut s = String::from("# Sidecar\r\n");
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        let _ = write!(s, "{key}:{value}\r\n");
    };
    let up = &ctx.upstream;
    line("sidecar_version", &env!("CARGO_PKG_VERSION"));
    line("uptime_in_seconds", &ctx.started.elapsed().as_secs());
    let mode = match ctx.config.upstream.mode {
        UpstreamMode::Standalone => "standalone",
        UpstreamMode::Sentinel => "sentinel",
        UpstreamMode::Cluster => "cluster",
    };
    line("upstream_mode", &mode);
    match up.discovery().current() {
        PrimaryState::Verified {
            endpoint, epoch, ..
        } => {
            line("primary", &endpoint);
            line("primary_state", &"verified");
            line("primary_epoch", &epoch);
        }
        PrimaryState::FailingOver { since } => {
            line("primary", &"");
            line(
                "primary_state",
                &format!("failing_over ({}ms)", since.elapsed().as_millis()),
            );
        }
        PrimaryState::Unknown { reason } => {
            line("primary", &"");
            // One line: the reason must not break the INFO format.
            line(
                "primary_state",
                &format!("unknown ({})", reason.replace(['\r', '\n'], " ")),
            );
        }
    }
    line("failovers", &up.discovery().failovers());
    line("upstream_connected", &u8::from(up.is_connected()));
    let hello = up.server_hello();
    line("upstream_redis_version", &hello.version);
    line("connected_clients", &ctx.clients());
    line("max_clients", &ctx.config.server.max_clients);
    line("pinned_connections", &up.pinned_in_use());
    line("max_pinned", &ctx.config.upstream.max_pinned);
    let live = ctx.live();
    line("namespaces", &live.namespaces.iter().count());
    for ns in live.namespaces.iter() {
        let c = &ns.config;
        let flush = match c.flush {
            FlushMode::Deny => "deny",
            FlushMode::Allow => "allow",
        };
        let db = c.db.map(|d| d.to_string()).unwrap_or_default();
        line(
            &format!("namespace_{}", c.name),
            &format!("prefix={},db={db},flush={flush}", c.prefix),
        );
    }
    line(
        "unmatched_keys_allowed",
        &ctx.unmatched.load(Ordering::Relaxed),
    );
    for (key, value) in cache_lines(ctx) {
        line(&key, &value);
    }
    let warnings = ctx
        .advisories
        .lock()
        .map(|list| list.clone())
        .unwrap_or_default();
    line("warnings", &warnings.len());
    for (i, text) in warnings.iter().enumerate() {
        line(&format!("warning_{i}"), &text.replace(['\r', '\n'], " "));
    }
    s
}

/// The cache's figures as `key:value` pairs (`INFO sidecar`, `SIDECAR CACHE`).
pub(super) fn cache_lines(ctx: &Ctx) -> Vec<(String, String)> {
    let Some(cache) = &ctx.cache else {
        return vec![("cache_enabled".into(), "0".into())];
    };
    let snap = cache.snapshot();
    let total = snap.total();
    let state = match &snap.down {
        None if snap.live => "live".to_string(),
        None => "down".to_string(),
        Some(d) => format!(
            "{} for {}ms ({})",
            if d.unreachable { "unreachable" } else { "down" },
            d.since.elapsed().as_millis(),
            d.reason.replace(['\r', '\n'], " ")
        ),
    };
    let mut out = vec![
        ("cache_enabled".to_string(), "1".to_string()),
        ("cache_state".into(), state),
        ("cache_entries".into(), snap.entries.to_string()),
        ("cache_bytes".into(), snap.bytes.to_string()),
        ("cache_max_bytes".into(), snap.max_bytes.to_string()),
        ("cache_hits".into(), total.hits.to_string()),
        ("cache_stale_hits".into(), total.stale_hits.to_string()),
        ("cache_misses".into(), total.misses.to_string()),
        ("cache_hit_rate".into(), format!("{:.4}", total.hit_rate())),
        ("cache_fills".into(), total.fills.to_string()),
        (
            "cache_fills_discarded".into(),
            total.fills_discarded.to_string(),
        ),
        ("cache_write_fills".into(), total.write_fills.to_string()),
        (
            "cache_invalidations".into(),
            total.invalidations.to_string(),
        ),
        ("cache_evictions".into(), total.evictions.to_string()),
        ("cache_flushes".into(), snap.flushes_total.to_string()),
        (
            "cache_streams_verified".into(),
            snap.verified_total.to_string(),
        ),
        ("cache_streams_lost".into(), snap.lost_total.to_string()),
    ];
    for n in &snap.namespaces {
        out.push((
            format!("cache_ns_{}", n.name),
            format!(
                "entries={},bytes={},hits={},stale_hits={},misses={},hit_rate={:.4},fills={},fills_discarded={},write_fills={},invalidations={},evictions={}",
                n.entries, n.bytes, n.hits, n.stale_hits, n.misses, n.hit_rate(), n.fills,
                n.fills_discarded, n.write_fills, n.invalidations, n.evictions
            ),
        ));
    }
    out
}

/// `INFO` sections that include the sidecar's: none given, `default`, `all`, `everything`.
pub(super) fn wants_section(args: &[Bytes]) -> bool {
    args.len() == 1
        || args[1..].iter().any(|a| {
            a.eq_ignore_ascii_case(b"default")
                || a.eq_ignore_ascii_case(b"all")
                || a.eq_ignore_ascii_case(b"everything")
        })
}

/// Append `section` to an INFO reply (RESP2 bulk or RESP3 verbatim string); any other
/// reply (an error) is returned unchanged.
pub(super) fn append(frame: &Bytes, section: &str) -> Bytes {
    let Some(&kind) = frame.first() else {
        return frame.clone();
    };
    if kind != b'$' && kind != b'=' {
        return frame.clone();
    }
    let Some(header_end) = frame.windows(2).position(|w| w == b"\r\n") else {
        return frame.clone();
    };
    let Some(len) = std::str::from_utf8(&frame[1..header_end])
        .ok()
        .and_then(|l| l.parse::<usize>().ok())
    else {
        return frame.clone();
    };
    let body_start = header_end + 2;
    if frame.len() != body_start + len + 2 {
        return frame.clone();
    }
    let body = &frame[body_start..body_start + len];
    let mut joined = BytesMut::with_capacity(len + section.len() + 32);
    joined.extend_from_slice(body);
    if !body.ends_with(b"\r\n") && !body.is_empty() {
        joined.extend_from_slice(b"\r\n");
    }
    joined.extend_from_slice(b"\r\n");
    joined.extend_from_slice(section.as_bytes());
    let mut out = BytesMut::with_capacity(joined.len() + 16);
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(joined.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&joined);
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_args as args;

    #[test]
    fn sections_that_include_the_sidecar() {
        assert!(wants_section(&args("INFO")));
        assert!(wants_section(&args("info ALL")));
        assert!(wants_section(&args("INFO server everything")));
        assert!(!wants_section(&args("INFO keyspace")));
    }

    #[test]
    fn appends_to_bulk_and_verbatim_replies() {
        let body = "# Server\r\na:1\r\n";
        let bulk = Bytes::from(format!("${}\r\n{body}\r\n", body.len()));
        let joined = format!("{body}\r\n# Sidecar\r\nx:1\r\n");
        assert_eq!(
            append(&bulk, "# Sidecar\r\nx:1\r\n"),
            Bytes::from(format!("${}\r\n{joined}\r\n", joined.len()))
        );
        let text = format!("txt:{body}");
        let verbatim = Bytes::from(format!("={}\r\n{text}\r\n", text.len()));
        let joined = format!("{text}\r\n# Sidecar\r\n");
        assert_eq!(
            append(&verbatim, "# Sidecar\r\n"),
            Bytes::from(format!("={}\r\n{joined}\r\n", joined.len()))
        );
        let error = Bytes::from_static(b"-ERR no\r\n");
        assert_eq!(append(&error, "# Sidecar\r\n"), error);
        let truncated = Bytes::from_static(b"$99\r\nshort\r\n");
        assert_eq!(append(&truncated, "# Sidecar\r\n"), truncated);
    }
}
