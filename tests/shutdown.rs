//! Graceful shutdown: in-flight commands finish, new connections are refused,
//! the process exits 0 within `server.shutdown_grace`.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    assert_reply, encode_str, wait_for, RawConn, ReadEnd, RedisServer, Sidecar, SidecarProcess,
    SidecarToml,
};

/// True once a new client can no longer get a command served.
fn refuses_new_clients(addr: std::net::SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        Err(_) => true,
        Ok(_) => {
            let Ok(mut c) = RawConn::try_connect(addr) else {
                return true;
            };
            c.set_read_timeout(Duration::from_millis(300));
            if c.try_send(b"PING\r\n").is_err() {
                return true;
            }
            !matches!(c.try_read_reply(), Ok(r) if r == b"+PONG\r\n")
        }
    }
}

#[test]
fn sigterm_lets_an_in_flight_blocking_command_finish() {
    let redis = RedisServer::start();
    let mut sidecar =
        SidecarProcess::start(&SidecarToml::new(&redis.url()).server("shutdown_grace = \"5s\""));
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
    c.send(&encode_str(&["BLPOP", "jobs", "10"]));
    wait_for("BLPOP to block in Redis", Duration::from_secs(5), || {
        (redis.info_field("blocked_clients") == Some(1)).then_some(())
    });
    let started = Instant::now();
    sidecar.signal("TERM");
    wait_for(
        "the listener to stop accepting",
        Duration::from_secs(3),
        || refuses_new_clients(sidecar.addr()).then_some(()),
    );
    // The in-flight command completes normally after the signal.
    assert_reply(&redis.cmd(&["RPUSH", "jobs", "last"]), b":1\r\n");
    assert_reply(&c.read_reply(), b"*2\r\n$4\r\njobs\r\n$4\r\nlast\r\n");
    let status = sidecar
        .wait_exit(Duration::from_secs(8))
        .expect("sidecar did not exit within shutdown_grace");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn sigterm_answers_a_slow_command_already_sent() {
    let redis = RedisServer::start_with(&["--enable-debug-command", "local"]);
    let mut sidecar =
        SidecarProcess::start(&SidecarToml::new(&redis.url()).server("shutdown_grace = \"5s\""));
    let mut c = sidecar.conn();
    // DEBUG SLEEP holds Redis itself; detect that it is running by a direct
    // PING that cannot be answered promptly.
    c.send(&encode_str(&["DEBUG", "SLEEP", "0.8"]));
    let mut probe = redis.conn();
    probe.set_read_timeout(Duration::from_millis(100));
    wait_for(
        "DEBUG SLEEP to occupy Redis",
        Duration::from_secs(5),
        || {
            probe.send(b"PING\r\n");
            match probe.try_read_reply() {
                Ok(_) => None,
                Err(ReadEnd::TimedOut) => Some(()),
                Err(e) => panic!("probe: {e:?}"),
            }
        },
    );
    sidecar.signal("TERM");
    assert_reply(&c.read_reply(), b"+OK\r\n");
    let status = sidecar
        .wait_exit(Duration::from_secs(6))
        .expect("sidecar did not exit");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigint_also_shuts_down_cleanly() {
    let redis = RedisServer::start();
    let mut sidecar =
        SidecarProcess::start(&SidecarToml::new(&redis.url()).server("shutdown_grace = \"2s\""));
    let mut idle = sidecar.conn();
    assert_reply(&idle.cmd_str(&["PING"]), b"+PONG\r\n");
    sidecar.signal("INT");
    let status = sidecar
        .wait_exit(Duration::from_secs(5))
        .expect("sidecar did not exit");
    assert_eq!(status.code(), Some(0));
    // Idle clients were closed, not left hanging.
    idle.expect_closed(Duration::from_secs(2));
}

#[test]
fn grace_deadline_bounds_shutdown_with_a_stuck_command() {
    let redis = RedisServer::start();
    let mut sidecar =
        SidecarProcess::start(&SidecarToml::new(&redis.url()).server("shutdown_grace = \"500ms\""));
    let mut c = sidecar.conn();
    c.send(&encode_str(&["BLPOP", "never", "30"]));
    wait_for("BLPOP to block", Duration::from_secs(5), || {
        (redis.info_field("blocked_clients") == Some(1)).then_some(())
    });
    let started = Instant::now();
    sidecar.signal("TERM");
    let status = sidecar
        .wait_exit(Duration::from_secs(5))
        .expect("sidecar ignored its grace deadline");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "exit took {:?} with a 500ms grace",
        started.elapsed()
    );
    assert!(status.code().is_some(), "killed by a signal: {status}");
}

#[test]
fn library_run_returns_after_cancel_and_finishes_in_flight_work() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&SidecarToml::new(&redis.url()).server("shutdown_grace = \"3s\""));
    let mut c = sidecar.conn();
    c.send(&encode_str(&["BLPOP", "q", "10"]));
    wait_for("BLPOP to block", Duration::from_secs(5), || {
        (redis.info_field("blocked_clients") == Some(1)).then_some(())
    });
    let addr = sidecar.addr();
    let pusher = std::thread::spawn({
        let url_port = redis.port();
        move || {
            // Give the value once the listener is gone.
            wait_for("listener closed", Duration::from_secs(3), || {
                refuses_new_clients(addr).then_some(())
            });
            let mut d = RawConn::connect(std::net::SocketAddr::from(([127, 0, 0, 1], url_port)));
            d.cmd_str(&["RPUSH", "q", "v"])
        }
    });
    let result = sidecar.shutdown(Duration::from_secs(6));
    assert_reply(&pusher.join().expect("pusher"), b":1\r\n");
    assert_eq!(result, Ok(()));
    assert_reply(&c.read_reply(), b"*2\r\n$1\r\nq\r\n$1\r\nv\r\n");
}
