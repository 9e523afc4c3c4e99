//! Authentication on both sides of the sidecar, and TLS to the upstream.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_reply, parse_one, show, RedisServer, Sidecar, SidecarProcess, SidecarToml, Value,
};

const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

fn sidecar_with_requirepass(redis: &RedisServer) -> Sidecar {
    Sidecar::start(&SidecarToml::new(&redis.url()).server("requirepass = \"s3cret\""))
}

#[test]
fn requirepass_refuses_commands_until_auth() {
    let redis = RedisServer::start();
    let sidecar = sidecar_with_requirepass(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["GET", "k"]), NOAUTH);
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), NOAUTH);
    // Nothing reached Redis.
    assert_reply(&redis.cmd(&["EXISTS", "k"]), b":0\r\n");
    assert_reply(&c.cmd_str(&["AUTH", "wrong"]), WRONGPASS);
    assert_reply(&c.cmd_str(&["GET", "k"]), NOAUTH);
    assert_reply(&c.cmd_str(&["AUTH", "s3cret"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    // Authentication is per connection.
    let mut other = sidecar.conn();
    assert_reply(&other.cmd_str(&["GET", "k"]), NOAUTH);
    assert_reply(&other.cmd_str(&["AUTH", "default", "s3cret"]), b"+OK\r\n");
    assert_reply(&other.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    let mut third = sidecar.conn();
    assert_reply(&third.cmd_str(&["AUTH", "default", "nope"]), WRONGPASS);
    assert_reply(&third.cmd_str(&["AUTH", "someone", "s3cret"]), WRONGPASS);
}

#[test]
fn requirepass_blocks_pipelined_commands_before_auth() {
    let redis = RedisServer::start();
    let sidecar = sidecar_with_requirepass(&redis);
    let mut c = sidecar.conn();
    let mut data = common::encode_str(&["SET", "early", "1"]);
    data.extend_from_slice(&common::encode_str(&["AUTH", "s3cret"]));
    data.extend_from_slice(&common::encode_str(&["SET", "late", "1"]));
    c.send(&data);
    assert_reply(&c.read_reply(), NOAUTH);
    assert_reply(&c.read_reply(), b"+OK\r\n");
    assert_reply(&c.read_reply(), b"+OK\r\n");
    assert_reply(&redis.cmd(&["EXISTS", "early", "late"]), b":1\r\n");
}

#[test]
fn hello_with_auth_authenticates_and_switches_protocol() {
    let redis = RedisServer::start();
    let sidecar = sidecar_with_requirepass(&redis);
    let mut c = sidecar.conn();
    let r = c.cmd_str(&["HELLO", "3", "AUTH", "default", "bad"]);
    assert_reply(&r, WRONGPASS);
    // Still unauthenticated and still RESP2.
    assert_reply(&c.cmd_str(&["GET", "k"]), NOAUTH);
    let hello = c.cmd_str(&[
        "HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "web-1",
    ]);
    let v = parse_one(&hello);
    assert_eq!(v.field("proto"), Some(&Value::Int(3)), "{}", show(&hello));
    assert_reply(&c.cmd_str(&["GET", "k"]), b"_\r\n");
    assert_reply(&c.cmd_str(&["CLIENT", "GETNAME"]), b"$5\r\nweb-1\r\n");
    // HELLO without AUTH on an unauthenticated connection is refused.
    let mut d = sidecar.conn();
    let r = d.cmd_str(&["HELLO", "3"]);
    assert!(r.starts_with(b"-NOAUTH "), "{}", show(&r));
}

/// Deliberately unlike Redis (which errors): without `requirepass` the
/// sidecar accepts any AUTH, so apps that still send the upstream's password
/// keep working after switching their address to the sidecar.
#[test]
fn auth_without_requirepass_is_accepted_for_apps_that_still_send_one() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["AUTH", "whatever"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["AUTH", "default", "whatever"]), b"+OK\r\n");
    let v = parse_one(&c.cmd_str(&["HELLO", "3", "AUTH", "default", "whatever"]));
    assert_eq!(v.field("proto"), Some(&Value::Int(3)));
    assert_reply(&c.cmd_str(&["GET", "k"]), b"_\r\n");
}

#[test]
fn auth_with_too_many_arguments_replies_like_redis() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start_for(&redis);
    let mut c = sidecar.conn();
    // Redis 7.0 answers `-ERR syntax error` here.
    assert_reply(
        &c.cmd_str(&["AUTH", "a", "b", "c"]),
        &redis.cmd(&["AUTH", "a", "b", "c"]),
    );
    assert_reply(&c.cmd_str(&["AUTH"]), &redis.cmd(&["AUTH"]));
}

fn protected_redis() -> RedisServer {
    RedisServer::start_with(&["--requirepass", "upstream-pw"])
}

fn check_upstream_auth(addr: std::net::SocketAddr, redis: &RedisServer) {
    let mut c = common::RawConn::connect(addr);
    // The client needs no password; the sidecar authenticates upstream.
    assert_reply(&c.cmd_str(&["SET", "ua", "1"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["INCR", "ua"]), b":2\r\n");
    assert_reply(&redis.cmd(&["GET", "ua"]), b"$1\r\n2\r\n");
    // Pinned connections are authenticated as well.
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["INCR", "ua"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n:3\r\n");
}

#[test]
fn upstream_password_from_url_userinfo() {
    let redis = protected_redis();
    let url = format!("redis://:upstream-pw@127.0.0.1:{}", redis.port());
    let sidecar = Sidecar::start(&SidecarToml::new(&url));
    check_upstream_auth(sidecar.addr(), &redis);
}

#[test]
fn upstream_password_from_config_key() {
    let redis = protected_redis();
    let sidecar =
        Sidecar::start(&SidecarToml::new(&redis.url()).upstream("password = \"upstream-pw\""));
    check_upstream_auth(sidecar.addr(), &redis);
}

#[test]
fn upstream_username_and_password_with_acl_user() {
    let redis = RedisServer::start();
    assert_reply(
        &redis.cmd(&[
            "ACL", "SETUSER", "app", "on", ">app-pw", "~*", "&*", "+@all",
        ]),
        b"+OK\r\n",
    );
    assert_reply(
        &redis.cmd(&["ACL", "SETUSER", "default", "off"]),
        b"+OK\r\n",
    );
    let url = format!("redis://app:app-pw@127.0.0.1:{}", redis.port());
    let sidecar = Sidecar::start(&SidecarToml::new(&url));
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "acl", "1"]), b"+OK\r\n");
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["AUTH", "app", "app-pw"]), b"+OK\r\n");
    assert_reply(&direct.cmd_str(&["GET", "acl"]), b"$1\r\n1\r\n");
}

#[test]
fn upstream_password_from_redis_password_env_in_the_binary() {
    let redis = protected_redis();
    let sidecar = SidecarProcess::start_with(
        &SidecarToml::new(&redis.url()),
        &[],
        &[("REDIS_PASSWORD", "upstream-pw")],
    );
    check_upstream_auth(sidecar.addr(), &redis);
}

#[test]
fn wrong_upstream_password_is_reported_not_hung() {
    let redis = protected_redis();
    let sidecar = Sidecar::start(
        &SidecarToml::new(&redis.url())
            .upstream("password = \"not-it\"")
            .upstream("connect_timeout = \"500ms\""),
    );
    let mut c = sidecar.conn();
    let started = std::time::Instant::now();
    let r = c.cmd_str(&["GET", "k"]);
    assert!(r.starts_with(b"-"), "expected an error, got {}", show(&r));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1/localhost and a client
    /// certificate, all signed by the CA, written as PEM files.
    fn generate() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let dir = tempfile::TempDir::new().expect("tempdir");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "resp-sidecar test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");

        let leaf = |names: Vec<String>, cn: &str| {
            let key = KeyPair::generate().expect("key");
            let mut p = CertificateParams::new(names).expect("params");
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.signed_by(&key, &ca, &ca_key).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "redis test server",
        );
        let (client_pem, client_key) = leaf(vec!["client".into()], "sidecar client");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write pem")
        };
        write("ca.pem", &ca.pem());
        write("server.pem", &server_pem);
        write("server.key", &server_key);
        write("client.pem", &client_pem);
        write("client.key", &client_key);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        path_str(&self.path(name))
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf8 path").to_string()
}

fn tls_redis(pki: &Pki, auth_clients: &str) -> RedisServer {
    let cert = pki.s("server.pem");
    let key = pki.s("server.key");
    let ca = pki.s("ca.pem");
    RedisServer::start_with(&[
        "--tls-port",
        "0",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        auth_clients,
    ])
}

fn tls_round_trip(sidecar: &Sidecar) {
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "tls", "secure value"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "tls"]), b"$12\r\nsecure value\r\n");
    let value = vec![b'z'; 300_000];
    assert_reply(&c.cmd(&[b"SET", b"tls-big", &value]), b"+OK\r\n");
    let got = c.cmd(&[b"GET", b"tls-big"]);
    assert_eq!(
        got.len(),
        300_000 + 11,
        "{}",
        show(&got[..40.min(got.len())])
    );
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["INCR", "tn"]), b"+QUEUED\r\n");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n:1\r\n");
}

#[test]
fn tls_upstream_with_rediss_url_and_ca_file() {
    let pki = Pki::generate();
    let redis = tls_redis(&pki, "optional");
    let url = format!("rediss://127.0.0.1:{}", redis.port());
    let sidecar = Sidecar::start(
        &SidecarToml::new(&url)
            .upstream(&format!("tls_ca_file = \"{}\"", pki.s("ca.pem")))
            .upstream("tls_server_name = \"localhost\""),
    );
    tls_round_trip(&sidecar);
}

#[test]
fn tls_upstream_with_client_certificate_required() {
    let pki = Pki::generate();
    let redis = tls_redis(&pki, "yes");
    let url = format!("rediss://127.0.0.1:{}", redis.port());
    let sidecar = Sidecar::start(
        &SidecarToml::new(&url)
            .upstream(&format!("tls_ca_file = \"{}\"", pki.s("ca.pem")))
            .upstream(&format!("tls_cert_file = \"{}\"", pki.s("client.pem")))
            .upstream(&format!("tls_key_file = \"{}\"", pki.s("client.key")))
            .upstream("tls_server_name = \"localhost\""),
    );
    tls_round_trip(&sidecar);
}

#[test]
fn tls_upstream_with_an_untrusted_certificate_is_refused() {
    let pki = Pki::generate();
    let other = Pki::generate();
    let redis = tls_redis(&pki, "optional");
    let url = format!("rediss://127.0.0.1:{}", redis.port());
    let sidecar = Sidecar::start(
        &SidecarToml::new(&url)
            .upstream(&format!("tls_ca_file = \"{}\"", other.s("ca.pem")))
            .upstream("tls_server_name = \"localhost\"")
            .upstream("connect_timeout = \"500ms\""),
    );
    let mut c = sidecar.conn();
    let r = c.cmd_str(&["GET", "k"]);
    assert!(
        r.starts_with(b"-TRYAGAIN "),
        "expected TRYAGAIN, got {}",
        show(&r)
    );
}

#[test]
fn tls_enabled_by_redis_tls_enabled_env_in_the_binary() {
    let pki = Pki::generate();
    let redis = tls_redis(&pki, "optional");
    let toml = SidecarToml::new(&redis.url())
        .upstream(&format!("tls_ca_file = \"{}\"", pki.s("ca.pem")))
        .upstream("tls_server_name = \"localhost\"");
    let sidecar = SidecarProcess::start_with(&toml, &[], &[("REDIS_TLS_ENABLED", "true")]);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "envtls", "1"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "envtls"]), b"$1\r\n1\r\n");
}
