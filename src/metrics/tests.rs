//! Tests of the registry: command lookups, label sets and what a scrape shows.

use std::collections::HashSet;
use std::time::Duration;

use super::*;

/// The value of the series `series` (name plus labels, exactly as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn command_lookup_ignores_case() {
    let m = Metrics::new();
    let upper = m.command(b"GET") as *const CommandMetrics;
    assert!(std::ptr::eq(upper, m.command(b"get")));
    assert!(std::ptr::eq(upper, m.command(b"gEt")));
    assert!(!std::ptr::eq(upper, m.command(b"SET")));
    assert!(std::ptr::eq(
        m.command(b"restore-asking"),
        m.command(b"RESTORE-ASKING")
    ));
    assert!(std::ptr::eq(m.command(b"sidecar"), m.command(b"SIDECAR")));
}

#[test]
fn unknown_names_share_the_other_slot() {
    let m = Metrics::new();
    let other = m.command(b"NOSUCHCOMMAND") as *const CommandMetrics;
    for name in [
        &b""[..],
        b"x",
        b"GETT",
        b"GE",
        b"\xff\xfe",
        b"GET\0",
        &[b'A'; 33],
        &[b'G'; 4096],
    ] {
        assert!(std::ptr::eq(other, m.command(name)), "{name:?}");
    }
    // Subcommands are counted under their container command, not looked up here.
    assert!(std::ptr::eq(other, m.command(b"CONFIG GET")));
}

#[test]
fn every_listed_name_has_its_own_slot() {
    let m = Metrics::new();
    let mut seen = HashSet::new();
    for name in command_names() {
        assert_eq!(name.to_ascii_uppercase(), *name, "not upper case");
        assert!(name.len() <= MAX_NAME, "{name} is longer than MAX_NAME");
        assert!(seen.insert(m.slot(name.as_bytes())), "{name} shares a slot");
        assert!(m.slot(name.to_ascii_lowercase().as_bytes()) < command_names().len());
    }
    assert_eq!(seen.len(), 241, "Redis 7.0's 240 commands plus SIDECAR");
}

#[test]
fn command_counters_render_with_their_labels() {
    let m = Metrics::new();
    let get = m.command(b"get");
    get.ok.increment(1);
    get.outcome(Outcome::Ok).increment(1);
    get.latency.record(Duration::from_micros(200));
    m.command(b"FLUSHALL").refused.increment(1);
    m.command(b"bogus").error.increment(3);
    let text = m.render();
    let get_ok = r#"sidecar_commands_total{command="GET",outcome="ok"}"#;
    assert_eq!(value(&text, get_ok), Some(2.0), "{text}");
    let get_error = r#"sidecar_commands_total{command="GET",outcome="error"}"#;
    assert_eq!(value(&text, get_error), Some(0.0), "{text}");
    let flushall = r#"sidecar_commands_total{command="FLUSHALL",outcome="refused"}"#;
    assert_eq!(value(&text, flushall), Some(1.0), "{text}");
    let other = r#"sidecar_commands_total{command="other",outcome="error"}"#;
    assert_eq!(value(&text, other), Some(3.0), "{text}");
    let count = r#"sidecar_command_duration_seconds_count{command="GET"}"#;
    assert_eq!(value(&text, count), Some(1.0), "{text}");
    // 200µs falls in the 250µs bucket, not the 100µs one.
    let le = |bound: &str| {
        let series =
            format!(r#"sidecar_command_duration_seconds_bucket{{command="GET",le="{bound}"}}"#);
        value(&text, &series)
    };
    assert_eq!(le("0.0001"), Some(0.0), "{text}");
    assert_eq!(le("0.00025"), Some(1.0), "{text}");
    assert_eq!(le("+Inf"), Some(1.0), "{text}");
    // Commands never seen export nothing.
    assert!(!text.contains(r#"command="SET""#), "{text}");
    assert!(
        text.contains("# TYPE sidecar_command_duration_seconds histogram"),
        "{text}"
    );
}

#[test]
fn fixed_series_start_at_zero() {
    let m = Metrics::new();
    let text = m.render();
    for series in [
        "sidecar_client_connections_total",
        r#"sidecar_client_connections_rejected_total{reason="max_clients"}"#,
        "sidecar_client_connections",
        "sidecar_pinned_connections",
        "sidecar_upstream_connected",
        "sidecar_primary_epoch",
        "sidecar_failovers_total",
        "sidecar_unmatched_keys_allowed_total",
        "sidecar_flush_keys_removed_total",
    ] {
        assert_eq!(value(&text, series), Some(0.0), "{series} in\n{text}");
    }
    for rule in RefusalRule::ALL {
        let series = format!(
            r#"sidecar_policy_refusals_total{{rule="{}"}}"#,
            rule.label()
        );
        assert_eq!(value(&text, &series), Some(0.0), "{series}");
    }
    for kind in FlushKind::ALL {
        let series = format!(r#"sidecar_flushes_total{{kind="{}"}}"#, kind.label());
        assert_eq!(value(&text, &series), Some(0.0), "{series}");
    }
    for kind in ErrorKind::ALL {
        let series = format!(r#"sidecar_errors_total{{kind="{}"}}"#, kind.label());
        assert_eq!(value(&text, &series), Some(0.0), "{series}");
    }
    assert!(text.contains("# HELP sidecar_errors_total "), "{text}");
}

#[test]
fn enum_accessors_hit_their_own_label() {
    let m = Metrics::new();
    for (i, rule) in RefusalRule::ALL.into_iter().enumerate() {
        m.refusal(rule).increment(i as u64 + 1);
    }
    for (i, kind) in FlushKind::ALL.into_iter().enumerate() {
        m.flush(kind).increment(i as u64 + 1);
    }
    for (i, kind) in ErrorKind::ALL.into_iter().enumerate() {
        m.error(kind).increment(i as u64 + 1);
    }
    let text = m.render();
    for (i, rule) in RefusalRule::ALL.into_iter().enumerate() {
        let series = format!(
            r#"sidecar_policy_refusals_total{{rule="{}"}}"#,
            rule.label()
        );
        assert_eq!(value(&text, &series), Some(i as f64 + 1.0), "{series}");
    }
    for (i, kind) in FlushKind::ALL.into_iter().enumerate() {
        let series = format!(r#"sidecar_flushes_total{{kind="{}"}}"#, kind.label());
        assert_eq!(value(&text, &series), Some(i as f64 + 1.0), "{series}");
    }
    for (i, kind) in ErrorKind::ALL.into_iter().enumerate() {
        let series = format!(r#"sidecar_errors_total{{kind="{}"}}"#, kind.label());
        assert_eq!(value(&text, &series), Some(i as f64 + 1.0), "{series}");
    }
}

#[test]
fn instances_do_not_share_counters() {
    let a = Metrics::new();
    let b = Metrics::new();
    a.client_connections_total.increment(5);
    a.command(b"PING").ok.increment(1);
    let text = b.render();
    assert_eq!(value(&text, "sidecar_client_connections_total"), Some(0.0));
    assert!(!text.contains("PING"), "{text}");
    assert_eq!(
        value(&a.render(), "sidecar_client_connections_total"),
        Some(5.0)
    );
}

#[test]
fn upkeep_keeps_samples() {
    // The recorder's own histograms (upstream latency) queue samples until upkeep.
    let m = Metrics::new();
    for _ in 0..1000 {
        m.upstream_duration(UpstreamKind::Shared, Duration::from_millis(3));
    }
    m.handle().run_upkeep();
    m.upstream_duration(UpstreamKind::Shared, Duration::from_millis(3));
    let text = m.render();
    let count = r#"sidecar_upstream_duration_seconds_count{kind="shared"}"#;
    assert_eq!(value(&text, count), Some(1001.0), "{text}");
}

#[test]
fn command_latency_renders_once_per_family_after_the_recorder_series() {
    let m = Metrics::new();
    m.command(b"GET").latency.record(Duration::from_micros(80));
    m.command(b"SET")
        .latency
        .record_many(Duration::from_millis(2), 4);
    let text = m.render();
    assert_eq!(
        text.matches("# TYPE sidecar_command_duration_seconds histogram")
            .count(),
        1,
        "{text}"
    );
    let get = r#"sidecar_command_duration_seconds_count{command="GET"}"#;
    assert_eq!(value(&text, get), Some(1.0), "{text}");
    let set = r#"sidecar_command_duration_seconds_bucket{command="SET",le="0.0025"}"#;
    assert_eq!(value(&text, set), Some(4.0), "{text}");
}
