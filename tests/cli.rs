//! The binary's command line: `check-config` exit codes, redaction, and the
//! flag > env > file > default precedence, plus serving with flags only.

mod common;

use std::path::Path;
use std::process::Output;

use common::{assert_reply, sidecar_command, RedisServer};

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("sidecar.toml");
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf8").to_string()
}

fn check_config(config: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = sidecar_command();
    cmd.arg("check-config")
        .args(["--config", config])
        .args(extra);
    cmd.envs(env.iter().copied());
    cmd.output().expect("run check-config")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const VALID: &str = r#"
[server]
listen = "127.0.0.1:7101"
requirepass = "topsecret-sidecar"
max_clients = 50
idle_timeout = "30s"
max_bulk_len = "8MiB"

[admin]
listen = ""

[upstream]
url = "redis://:topsecret-url@127.0.0.1:6399"
password = "topsecret-upstream"
pool_size = 3

[policy]
deny_commands = ["FLUSHALL"]
"#;

#[test]
fn check_config_accepts_a_valid_file_and_redacts_secrets() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = write_config(dir.path(), VALID);
    let out = check_config(&path, &[], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "check-config failed: {all}");
    assert!(
        all.contains("127.0.0.1:7101"),
        "effective listen missing: {all}"
    );
    assert!(
        all.contains("127.0.0.1:6399"),
        "upstream address missing: {all}"
    );
    for secret in ["topsecret-sidecar", "topsecret-url", "topsecret-upstream"] {
        assert!(!all.contains(secret), "secret {secret} printed: {all}");
    }
}

#[test]
fn check_config_rejects_an_unknown_key_naming_it() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = write_config(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:7102\"\nmax_clientz = 5\n",
    );
    let out = check_config(&path, &[], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("max_clientz"),
        "key not named: {}",
        text(&out)
    );
}

#[test]
fn check_config_rejects_a_bad_value_naming_the_key() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    for (body, key) in [
        ("[server]\nidle_timeout = \"soon\"\n", "idle_timeout"),
        ("[server]\nmax_bulk_len = \"lots\"\n", "max_bulk_len"),
        ("[server]\nlisten = \"not an address\"\n", "listen"),
        ("[upstream]\nurl = \"http://127.0.0.1:6379\"\n", "url"),
    ] {
        let path = write_config(dir.path(), body);
        let out = check_config(&path, &[], &[]);
        assert_eq!(out.status.code(), Some(64), "{body}: {}", text(&out));
        assert!(
            text(&out).contains(key),
            "{body}: key not named: {}",
            text(&out)
        );
    }
}

#[test]
fn check_config_with_a_missing_file_fails() {
    let out = check_config("/nonexistent/dir/sidecar.toml", &[], &[]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn listen_precedence_flag_over_env_over_file() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = write_config(dir.path(), "[server]\nlisten = \"127.0.0.1:7201\"\n");

    let file_only = text(&check_config(&path, &[], &[]));
    assert!(file_only.contains("127.0.0.1:7201"), "{file_only}");

    let env = text(&check_config(
        &path,
        &[],
        &[("SIDECAR_LISTEN", "127.0.0.1:7202")],
    ));
    assert!(env.contains("127.0.0.1:7202"), "env ignored: {env}");
    assert!(!env.contains("127.0.0.1:7201"), "file beat env: {env}");

    let flag = check_config(
        &path,
        &["--listen", "127.0.0.1:7203"],
        &[("SIDECAR_LISTEN", "127.0.0.1:7202")],
    );
    let flag_text = text(&flag);
    assert_eq!(flag.status.code(), Some(0), "{flag_text}");
    assert!(
        flag_text.contains("127.0.0.1:7203"),
        "flag ignored: {flag_text}"
    );
    assert!(
        !flag_text.contains("127.0.0.1:7202") && !flag_text.contains("127.0.0.1:7201"),
        "flag did not win: {flag_text}"
    );
}

#[test]
fn upstream_precedence_flag_over_env_over_file() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = write_config(dir.path(), "[upstream]\nurl = \"redis://10.0.0.1:7301\"\n");
    let file_only = text(&check_config(&path, &[], &[]));
    assert!(file_only.contains("10.0.0.1:7301"), "{file_only}");

    let env = text(&check_config(
        &path,
        &[],
        &[("REDIS_URL", "redis://10.0.0.2:7302")],
    ));
    assert!(
        env.contains("10.0.0.2:7302") && !env.contains("10.0.0.1:7301"),
        "{env}"
    );

    let flag = text(&check_config(
        &path,
        &["--upstream", "redis://10.0.0.3:7303"],
        &[("REDIS_URL", "redis://10.0.0.2:7302")],
    ));
    assert!(flag.contains("10.0.0.3:7303"), "{flag}");
    assert!(
        !flag.contains("10.0.0.2:7302") && !flag.contains("10.0.0.1:7301"),
        "{flag}"
    );
}

#[test]
fn redis_password_env_is_applied_and_redacted() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = write_config(dir.path(), "[upstream]\nurl = \"redis://127.0.0.1:7401\"\n");
    let out = check_config(&path, &[], &[("REDIS_PASSWORD", "env-secret-pw")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains("env-secret-pw"), "password printed: {all}");
    assert!(
        all.contains("<redacted>"),
        "password not shown as redacted: {all}"
    );
    // Without the variable there is nothing to redact for the upstream.
    let plain = text(&check_config(&path, &[], &[]));
    assert!(!plain.contains("env-secret-pw"));
}

#[test]
fn redis_tls_enabled_env_turns_tls_on() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = write_config(dir.path(), "[upstream]\nurl = \"redis://127.0.0.1:7501\"\n");
    let off = text(&check_config(&path, &[], &[]));
    let on = text(&check_config(&path, &[], &[("REDIS_TLS_ENABLED", "true")]));
    assert_ne!(off, on, "REDIS_TLS_ENABLED had no visible effect");
    assert!(
        on.contains("tls = true") || on.contains("rediss://"),
        "{on}"
    );
}

#[test]
fn binary_serves_with_flags_only() {
    // No config file: --listen and --upstream are enough to run.
    let redis = RedisServer::start();
    let dir = tempfile::TempDir::new().expect("tempdir");
    let port = common::free_port();
    let mut child = sidecar_command()
        .current_dir(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &redis.url()])
        .args(["--admin", &format!("127.0.0.1:{}", common::free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(&mut child);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = common::wait_for("binary to listen", common::READY_TIMEOUT, || {
        if let Ok(Some(s)) = guard.0.try_wait() {
            panic!("resp-sidecar exited: {s}");
        }
        // Only its own listener counts (see `common::listens_on`).
        common::listens_on(guard.0.id(), port)
            .then(|| common::RawConn::try_connect(addr).ok())
            .flatten()
    });
    assert_reply(&c.cmd_str(&["SET", "flags", "only"]), b"+OK\r\n");
    assert_reply(&redis.cmd(&["GET", "flags"]), b"$4\r\nonly\r\n");
}

#[test]
fn reference_sidecar_toml_passes_check_config() {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecar.toml");
    let out = check_config(reference.to_str().expect("utf8"), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn binary_also_serves_on_the_unix_socket() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let redis = RedisServer::start();
    let dir = tempfile::TempDir::new().expect("tempdir");
    let sock = dir.path().join("sidecar.sock");
    let toml = common::SidecarToml::new(&redis.url())
        .server(&format!("unix_socket = \"{}\"", sock.display()));
    let _sidecar = common::SidecarProcess::start(&toml);
    let mut s = common::wait_for("the unix socket", common::READY_TIMEOUT, || {
        UnixStream::connect(&sock).ok()
    });
    s.set_read_timeout(Some(common::READ_TIMEOUT))
        .expect("timeout");
    s.write_all(&common::encode_str(&["SET", "via", "unix"]))
        .expect("write");
    s.write_all(b"GET via\r\n").expect("write");
    let want: &[u8] = b"+OK\r\n$4\r\nunix\r\n";
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "unix socket closed after {}", common::show(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_reply(&got, want);
    assert_reply(&redis.cmd(&["GET", "via"]), b"$4\r\nunix\r\n");
}
