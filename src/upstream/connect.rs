//! Opening one upstream connection: TCP, optional TLS (rustls), and the
//! `HELLO <proto> [AUTH user pass] SETNAME resp-sidecar` handshake.
//!
//! Owns socket setup and credentials. It does not decide which connection a
//! command uses (the pool and pinning logic in this module's siblings do).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::UpstreamError;
use crate::config::{Endpoint, TlsConfig, UpstreamConfig};
use crate::resp::{Protocol, ReplyScanner, Request};

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Deepest reply nesting accepted from Redis. Replies are trusted but bounded: a Lua
/// script returning a self-referencing table makes Redis 7.0 send about 8,000 levels
/// (seen with its own test suite), so the bound sits well above that; the scanner's
/// stack costs a few bytes a level.
pub const MAX_REPLY_DEPTH: usize = 1 << 16;

/// An open, authenticated upstream connection and its read buffer.
pub struct Conn {
    pub read: BoxRead,
    pub write: BoxWrite,
    pub rbuf: BytesMut,
}

/// What the upstream said about itself in its HELLO reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub version: String,
    pub mode: String,
    pub role: String,
    /// Redis's id for this connection (to translate client ids in CLIENT UNBLOCK and
    /// CLIENT TRACKING REDIRECT).
    pub id: Option<u64>,
}

impl Default for ServerHello {
    fn default() -> Self {
        ServerHello {
            version: "7.0.0".into(),
            mode: "standalone".into(),
            role: "master".into(),
            id: None,
        }
    }
}

/// Everything needed to open connections to one Redis server.
#[derive(Clone)]
pub struct Connector {
    endpoint: Endpoint,
    tls: Option<TlsSetup>,
    username: Option<String>,
    password: Option<String>,
    connect_timeout: Duration,
    /// Selected after the handshake when not 0 (the migration's old store only).
    db: u32,
}

impl Connector {
    pub fn new(cfg: &UpstreamConfig) -> Result<Connector, UpstreamError> {
        let tls = match &cfg.tls {
            Some(tls) => Some(tls_setup(tls)?),
            None => None,
        };
        Ok(Connector {
            endpoint: cfg.endpoint.clone(),
            tls,
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            connect_timeout: cfg.connect_timeout,
            db: cfg.db,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Connect to the configured endpoint (standalone mode).
    pub async fn connect(&self, proto: Protocol) -> Result<(Conn, ServerHello), UpstreamError> {
        self.connect_to(&self.endpoint, proto).await
    }

    /// Connect to `endpoint`, handshake in `proto`, and report the server's HELLO fields.
    pub async fn connect_to(
        &self,
        endpoint: &Endpoint,
        proto: Protocol,
    ) -> Result<(Conn, ServerHello), UpstreamError> {
        let addr = endpoint.to_string();
        let open = async {
            let mut conn = open(endpoint, self.tls.as_ref()).await?;
            let hello = self.handshake(&mut conn, proto).await?;
            if self.db != 0 {
                self.select(&mut conn).await?;
            }
            Ok((conn, hello))
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Connect(format!(
                "connect to {addr} timed out after {:?}",
                self.connect_timeout
            ))),
        }
    }

    async fn select(&self, conn: &mut Conn) -> Result<(), UpstreamError> {
        let db = Bytes::from(self.db.to_string());
        exchange(conn, vec![Bytes::from_static(b"SELECT"), db], "SELECT").await?;
        Ok(())
    }

    async fn handshake(
        &self,
        conn: &mut Conn,
        proto: Protocol,
    ) -> Result<ServerHello, UpstreamError> {
        let mut args: Vec<Bytes> = vec![
            Bytes::from_static(b"HELLO"),
            Bytes::from_static(match proto {
                Protocol::Resp2 => b"2",
                Protocol::Resp3 => b"3",
            }),
        ];
        if let Some(password) = &self.password {
            let user = self.username.clone().unwrap_or_else(|| "default".into());
            args.push(Bytes::from_static(b"AUTH"));
            args.push(Bytes::from(user));
            args.push(Bytes::from(password.clone()));
        }
        args.push(Bytes::from_static(b"SETNAME"));
        args.push(Bytes::from_static(b"resp-sidecar"));
        let reply = exchange(conn, args, "handshake").await?;
        Ok(ServerHello {
            version: field(&reply, b"version").unwrap_or_else(|| ServerHello::default().version),
            mode: field(&reply, b"mode").unwrap_or_else(|| "standalone".into()),
            role: field(&reply, b"role").unwrap_or_else(|| "master".into()),
            id: int_field(&reply, b"id"),
        })
    }
}

/// One command of the connection set-up and its reply; an error reply fails the set-up.
async fn exchange(conn: &mut Conn, args: Vec<Bytes>, what: &str) -> Result<Bytes, UpstreamError> {
    let req = Request::from_args(args);
    conn.write
        .write_all(&req.raw)
        .await
        .map_err(|e| UpstreamError::Connect(format!("{what} write: {e}")))?;
    let reply = read_one(conn).await?;
    if reply.first() == Some(&b'-') {
        let text = String::from_utf8_lossy(&reply[1..]).trim_end().to_string();
        return Err(UpstreamError::Handshake(text));
    }
    Ok(reply)
}

/// Read exactly one complete frame from a connection (handshake and control use only).
pub async fn read_one(conn: &mut Conn) -> Result<Bytes, UpstreamError> {
    let mut scanner = ReplyScanner::new(MAX_REPLY_DEPTH);
    loop {
        if let Some(len) = scanner
            .scan(&conn.rbuf)
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?
        {
            return Ok(conn.rbuf.split_to(len).freeze());
        }
        conn.rbuf.reserve(4096);
        let n = conn
            .read
            .read_buf(&mut conn.rbuf)
            .await
            .map_err(|e| UpstreamError::Connect(format!("handshake read: {e}")))?;
        if n == 0 {
            return Err(UpstreamError::Connect(
                "upstream closed the connection during the handshake".into(),
            ));
        }
    }
}

/// What follows the bulk-string key `name` in a flat HELLO reply (RESP2 array or RESP3 map).
fn after_key<'a>(reply: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut key = format!("${}\r\n", name.len()).into_bytes();
    key.extend_from_slice(name);
    key.extend_from_slice(b"\r\n");
    let at = memchr::memmem::find(reply, &key)? + key.len();
    Some(&reply[at..])
}

/// The integer value of `name` in a flat HELLO reply.
fn int_field(reply: &[u8], name: &[u8]) -> Option<u64> {
    let rest = after_key(reply, name)?.strip_prefix(b":")?;
    let eol = memchr::memmem::find(rest, b"\r\n")?;
    std::str::from_utf8(&rest[..eol]).ok()?.parse().ok()
}

/// The bulk-string value of `name` in a flat HELLO reply.
fn field(reply: &[u8], name: &[u8]) -> Option<String> {
    let rest = after_key(reply, name)?.strip_prefix(b"$")?;
    let eol = memchr::memmem::find(rest, b"\r\n")?;
    let len: usize = std::str::from_utf8(&rest[..eol]).ok()?.parse().ok()?;
    let value = rest.get(eol + 2..eol + 2 + len)?;
    Some(String::from_utf8_lossy(value).into_owned())
}

/// A TLS connector and the configured server name (`None`: verify the host connected to).
pub(crate) type TlsSetup = (TlsConnector, Option<ServerName<'static>>);

/// Open a TCP connection to `endpoint`, with TLS when `tls` is set. No timeout here:
/// callers bound the whole connect-and-handshake.
pub(crate) async fn open(
    endpoint: &Endpoint,
    tls: Option<&TlsSetup>,
) -> Result<Conn, UpstreamError> {
    let addr = endpoint.to_string();
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| UpstreamError::Connect(format!("connect to {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (read, write): (BoxRead, BoxWrite) = match tls {
        None => {
            let (r, w) = tcp.into_split();
            (Box::new(r), Box::new(w))
        }
        Some((connector, name)) => {
            let name = match name {
                Some(name) => name.clone(),
                None => ServerName::try_from(endpoint.host.clone()).map_err(|e| {
                    UpstreamError::Tls(format!("server name {:?}: {e}", endpoint.host))
                })?,
            };
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| UpstreamError::Connect(format!("TLS to {addr}: {e}")))?;
            let (r, w) = tokio::io::split(stream);
            (Box::new(r), Box::new(w))
        }
    };
    Ok(Conn {
        read,
        write,
        rbuf: BytesMut::with_capacity(16 * 1024),
    })
}

/// Build the rustls connector from the upstream's TLS settings (PEM files; the bundled
/// web PKI roots when no CA file is given).
pub(crate) fn tls_setup(tls: &TlsConfig) -> Result<TlsSetup, UpstreamError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| UpstreamError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert)?;
            let key = std::fs::File::open(key)
                .map_err(|e| UpstreamError::Tls(format!("{}: {e}", key.display())))
                .and_then(|f| {
                    rustls_pemfile::private_key(&mut std::io::BufReader::new(f))
                        .map_err(|e| UpstreamError::Tls(format!("{}: {e}", key.display())))?
                        .ok_or_else(|| {
                            UpstreamError::Tls(format!("{}: no private key", key.display()))
                        })
                })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| UpstreamError::Tls(format!("client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(UpstreamError::Tls(
                "upstream.tls_cert_file and upstream.tls_key_file must be set together".into(),
            ))
        }
    };
    let name = match &tls.server_name {
        Some(host) => Some(
            ServerName::try_from(host.clone())
                .map_err(|e| UpstreamError::Tls(format!("server name {host:?}: {e}")))?,
        ),
        None => None,
    };
    Ok((TlsConnector::from(Arc::new(config)), name))
}

fn read_certs(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, UpstreamError> {
    let file = std::fs::File::open(path)
        .map_err(|e| UpstreamError::Tls(format!("{}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UpstreamError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(UpstreamError::Tls(format!(
            "{}: no certificates",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_fields_are_read_from_resp2_and_resp3_replies() {
        let resp3 = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
        assert_eq!(field(resp3, b"version").as_deref(), Some("7.0.15"));
        assert_eq!(field(resp3, b"mode").as_deref(), Some("standalone"));
        assert_eq!(field(resp3, b"role").as_deref(), Some("master"));
        assert_eq!(field(resp3, b"nosuch"), None);
        assert_eq!(int_field(resp3, b"id"), Some(5));
        assert_eq!(int_field(resp3, b"proto"), Some(3));
    }
}
