//! Helpers for the migration tests: the `[migration]` section, STATUS as a map,
//! polling a store for a value, and running the `migrate` / `verify` subcommands.

use std::collections::HashMap;
use std::process::Output;
use std::time::Duration;

use super::{parse_one, sidecar_command, wait_for, RawConn, RedisServer, Value};

/// How long convergence may take before a test fails.
pub const CONVERGE: Duration = Duration::from_secs(20);

/// A `[migration]` section for `old` in `phase`, plus extra lines.
pub fn section(old: &RedisServer, phase: &str, extra: &[&str]) -> String {
    let mut s = format!(
        "[migration]\nold_url = \"{}\"\nphase = \"{phase}\"\n",
        old.url()
    );
    for l in extra {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// `SIDECAR MIGRATION STATUS` as `name -> value`.
pub fn status(conn: &mut RawConn) -> HashMap<String, String> {
    let reply = parse_one(&conn.cmd_str(&["SIDECAR", "MIGRATION", "STATUS"]));
    let Value::Array(lines) = reply else {
        panic!("STATUS is not an array: {reply:?}");
    };
    lines
        .iter()
        .filter_map(|l| {
            let text = String::from_utf8_lossy(l.bytes()?).to_string();
            let (k, v) = text.split_once(':')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// A STATUS field as a number (0 when absent).
pub fn number(conn: &mut RawConn, field: &str) -> u64 {
    status(conn)
        .get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Moves the phase through the sidecar; returns the reply bytes.
pub fn phase(conn: &mut RawConn, to: &str) -> Vec<u8> {
    conn.cmd_str(&["SIDECAR", "MIGRATION", "PHASE", to])
}

/// Polls until the copy queue is empty and nothing is parked.
pub fn wait_copied(conn: &mut RawConn) {
    wait_for("the copy queue to empty", CONVERGE, || {
        let s = status(conn);
        (s.get("queue_depth").map(String::as_str) == Some("0")
            && s.get("parked_keys").map(String::as_str) == Some("0"))
        .then_some(())
    });
}

/// Polls `server` until `args` answers `want` (exact bytes).
pub fn wait_reply(server: &RedisServer, args: &[&str], want: &[u8]) {
    let what = format!("{args:?} to answer {}", super::show(want));
    wait_for(&what, CONVERGE, || (server.cmd(args) == want).then_some(()));
}

/// Runs `resp-sidecar` with `args` to completion.
pub fn tool(args: &[&str]) -> Output {
    sidecar_command()
        .args(args)
        .output()
        .expect("run resp-sidecar")
}

/// stdout and stderr of a finished tool run, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `verify --from a --to b` plus `extra`; panics with the report unless it is clean.
pub fn assert_verified(from: &RedisServer, to: &RedisServer, extra: &[&str]) {
    let (f, t) = (from.url(), to.url());
    let mut args = vec!["verify", "--from", &f, "--to", &t];
    args.extend_from_slice(extra);
    let out = tool(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify found differences:\n{}",
        text(&out)
    );
    assert!(text(&out).contains(" 0 differences"), "{}", text(&out));
}

/// `migrate --from a --to b` plus `extra`, with its checkpoint in a temp dir.
pub fn migrate(from: &RedisServer, to: &RedisServer, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = dir.path().join("checkpoint").to_string_lossy().to_string();
    let (f, t) = (from.url(), to.url());
    let mut args = vec!["migrate", "--from", &f, "--to", &t, "--checkpoint", &cp];
    args.extend_from_slice(extra);
    tool(&args)
}
