//! A small Sentinel client, plus the `ROLE` probe of a data node.
//!
//! Sentinel connections speak plain RESP2 (no `HELLO`, so any Sentinel
//! version answers): TCP, TLS when the upstream uses TLS (same CA, client
//! certificate and server-name settings), then `AUTH [user] pass` when
//! `upstream.sentinel_password` is set. On top of that: the three questions
//! discovery asks (`get-master-addr-by-name`, `sentinels`) and a subscription
//! to the failover event channels.
//!
//! Data nodes are reached with the upstream's own [`Connector`] (its TLS and
//! credentials, `HELLO 2`), then asked `ROLE`. Every exchange is bounded by
//! `upstream.connect_timeout`. This module keeps no state between calls
//! beyond the open connection; deciding what to do with answers is
//! the resolver's job.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Endpoint, UpstreamConfig};
use crate::resp::value::{self, Value};
use crate::resp::{Protocol, ReplyScanner, Request};
use crate::upstream::connect::{open, tls_setup, Conn, TlsSetup};
use crate::upstream::Connector;

/// Deepest nesting accepted in a control-plane reply (`ROLE` and `SENTINEL
/// sentinels` nest two or three levels; the value reader recurses per level).
const MAX_DEPTH: usize = 16;

/// Why a control-plane exchange failed; the text names the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(pub String);

/// How to reach and authenticate to sentinels; built once from the upstream config.
#[derive(Clone)]
pub struct SentinelAccess {
    tls: Option<TlsSetup>,
    username: Option<String>,
    password: Option<String>,
    timeout: Duration,
}

impl SentinelAccess {
    pub fn new(cfg: &UpstreamConfig) -> Result<SentinelAccess, LinkError> {
        let tls = match &cfg.tls {
            Some(tls) => Some(tls_setup(tls).map_err(|e| LinkError(e.to_string()))?),
            None => None,
        };
        Ok(SentinelAccess {
            tls,
            username: cfg.sentinel_username.clone(),
            password: cfg.sentinel_password.clone(),
            timeout: cfg.connect_timeout,
        })
    }

    /// Connect (and authenticate) within the connect timeout.
    pub async fn connect(&self, endpoint: &Endpoint) -> Result<SentinelLink, LinkError> {
        let open = async {
            let conn = open(endpoint, self.tls.as_ref())
                .await
                .map_err(|e| LinkError(format!("{endpoint}: {e}")))?;
            let mut link = SentinelLink {
                endpoint: endpoint.clone(),
                conn,
                timeout: self.timeout,
            };
            if let Some(password) = &self.password {
                let mut args = vec![Bytes::from_static(b"AUTH")];
                args.extend(self.username.clone().map(Bytes::from));
                args.push(Bytes::from(password.clone()));
                if let Value::Error(e) = link.exchange(args).await? {
                    return Err(LinkError(format!(
                        "{endpoint}: AUTH refused: {}",
                        String::from_utf8_lossy(&e)
                    )));
                }
            }
            Ok(link)
        };
        match tokio::time::timeout(self.timeout, open).await {
            Ok(result) => result,
            Err(_) => Err(LinkError(format!(
                "{endpoint}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// One open connection to a sentinel.
pub struct SentinelLink {
    endpoint: Endpoint,
    conn: Conn,
    timeout: Duration,
}

impl SentinelLink {
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `SENTINEL get-master-addr-by-name NAME`: `None` when this sentinel does not know the name.
    pub async fn master_addr(&mut self, name: &str) -> Result<Option<Endpoint>, LinkError> {
        let reply = self
            .call(&[b"SENTINEL", b"get-master-addr-by-name", name.as_bytes()])
            .await?;
        match &reply {
            Value::Nil => Ok(None),
            Value::Array(items) if items.len() == 2 => {
                let host = items[0].text();
                let port = items[1].text().and_then(|p| p.parse().ok());
                match (host, port) {
                    (Some(host), Some(port)) => Ok(Some(Endpoint { host, port })),
                    _ => Err(self.unexpected("get-master-addr-by-name", &reply)),
                }
            }
            _ => Err(self.unexpected("get-master-addr-by-name", &reply)),
        }
    }

    /// `SENTINEL sentinels NAME`: the other sentinels watching the master.
    pub async fn sentinels(&mut self, name: &str) -> Result<Vec<Endpoint>, LinkError> {
        let reply = self
            .call(&[b"SENTINEL", b"sentinels", name.as_bytes()])
            .await?;
        let Some(items) = reply.items() else {
            return Err(self.unexpected("SENTINEL sentinels", &reply));
        };
        Ok(items
            .iter()
            .filter_map(|s| {
                let host = s.field("ip")?.text()?;
                let port = s.field("port")?.text()?.parse().ok()?;
                Some(Endpoint { host, port })
            })
            .collect())
    }

    /// Subscribe to `channels` and `patterns`; the link then only carries messages.
    pub async fn subscribe(
        mut self,
        channels: &[&str],
        patterns: &[&str],
    ) -> Result<Subscription, LinkError> {
        let mut out = BytesMut::new();
        for (command, names) in [("SUBSCRIBE", channels), ("PSUBSCRIBE", patterns)] {
            if names.is_empty() {
                continue;
            }
            let mut args = vec![Bytes::from_static(command.as_bytes())];
            args.extend(names.iter().map(|n| Bytes::copy_from_slice(n.as_bytes())));
            out.extend_from_slice(&Request::from_args(args).raw);
        }
        self.write(&out).await?;
        Ok(Subscription { link: self })
    }

    /// Send one command and read its reply within the timeout. Error replies are values.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Value, LinkError> {
        let args = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(args)).await {
            Ok(result) => result,
            Err(_) => Err(LinkError(format!(
                "{}: no reply within {timeout:?}",
                self.endpoint
            ))),
        }
    }

    async fn exchange(&mut self, args: Vec<Bytes>) -> Result<Value, LinkError> {
        self.write(&Request::from_args(args).raw).await?;
        read_value(&mut self.conn, &self.endpoint).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.conn
            .write
            .write_all(bytes)
            .await
            .map_err(|e| LinkError(format!("{}: {e}", self.endpoint)))
    }

    fn unexpected(&self, what: &str, reply: &Value) -> LinkError {
        LinkError(format!(
            "{}: unexpected {what} reply {reply:?}",
            self.endpoint
        ))
    }
}

/// A subscribed sentinel connection.
pub struct Subscription {
    link: SentinelLink,
}

impl Subscription {
    pub fn endpoint(&self) -> &Endpoint {
        &self.link.endpoint
    }

    /// The next frame: `Some((channel, payload))` for a (p)message, `None` for
    /// anything else (subscription confirmations, PING answers).
    pub async fn next(&mut self) -> Result<Option<(Bytes, Bytes)>, LinkError> {
        let value = read_value(&mut self.link.conn, &self.link.endpoint).await?;
        let Some(items) = value.items() else {
            return Ok(None);
        };
        let kind = items.first().and_then(Value::bytes);
        let at = match kind {
            Some(b"message") => 1,
            Some(b"pmessage") => 2,
            _ => return Ok(None),
        };
        let part = |i: usize| match items.get(i) {
            Some(Value::Bulk(b)) => Some(b.clone()),
            _ => None,
        };
        Ok(part(at).zip(part(at + 1)))
    }

    /// A keep-alive: Sentinel answers PING on a subscribed connection.
    pub async fn ping(&mut self) -> Result<(), LinkError> {
        self.link.write(b"*1\r\n$4\r\nPING\r\n").await
    }
}

/// Connect to a data node with the upstream's settings and ask `ROLE`; returns the role word.
pub async fn role_of(
    cfg: &UpstreamConfig,
    endpoint: &Endpoint,
) -> Result<(String, RoleProbe), LinkError> {
    let mut node_cfg = cfg.clone();
    node_cfg.endpoint = endpoint.clone();
    let connector = Connector::new(&node_cfg).map_err(|e| LinkError(format!("{endpoint}: {e}")))?;
    let (conn, _) = connector
        .connect(Protocol::Resp2)
        .await
        .map_err(|e| LinkError(format!("{endpoint}: {e}")))?;
    let mut probe = RoleProbe {
        endpoint: endpoint.clone(),
        conn,
        timeout: cfg.connect_timeout,
    };
    let role = probe.role().await?;
    Ok((role, probe))
}

/// An open connection to a data node, kept to re-check its role cheaply.
pub struct RoleProbe {
    endpoint: Endpoint,
    conn: Conn,
    timeout: Duration,
}

impl RoleProbe {
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `ROLE`'s first element (`master`, `slave`, `sentinel`).
    pub async fn role(&mut self) -> Result<String, LinkError> {
        let ask = async {
            self.conn
                .write
                .write_all(b"*1\r\n$4\r\nROLE\r\n")
                .await
                .map_err(|e| LinkError(format!("{}: {e}", self.endpoint)))?;
            read_value(&mut self.conn, &self.endpoint).await
        };
        let reply = match tokio::time::timeout(self.timeout, ask).await {
            Ok(reply) => reply?,
            Err(_) => {
                return Err(LinkError(format!(
                    "{}: no ROLE reply within {:?}",
                    self.endpoint, self.timeout
                )))
            }
        };
        reply
            .items()
            .and_then(|items| items.first())
            .and_then(Value::text)
            .ok_or_else(|| {
                LinkError(format!(
                    "{}: unexpected ROLE reply {reply:?}",
                    self.endpoint
                ))
            })
    }
}

/// Read one complete frame and parse it.
async fn read_value(conn: &mut Conn, peer: &Endpoint) -> Result<Value, LinkError> {
    let mut scanner = ReplyScanner::new(MAX_DEPTH);
    loop {
        let measured = scanner
            .scan(&conn.rbuf)
            .map_err(|e| LinkError(format!("{peer}: {e}")))?;
        if let Some(len) = measured {
            let frame = conn.rbuf.split_to(len).freeze();
            return value::parse(&frame).map_err(|e| LinkError(format!("{peer}: {e}")));
        }
        conn.rbuf.reserve(4096);
        let n = conn
            .read
            .read_buf(&mut conn.rbuf)
            .await
            .map_err(|e| LinkError(format!("{peer}: {e}")))?;
        if n == 0 {
            return Err(LinkError(format!("{peer}: connection closed")));
        }
    }
}
