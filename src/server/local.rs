//! Connection-level commands the sidecar answers itself, per client connection:
//! HELLO, AUTH, QUIT, RESET, `SELECT 0` and CLIENT ID/SETNAME/GETNAME/SETINFO/INFO.
//!
//! These must not travel over shared upstream connections (they would leak one
//! client's name, protocol or identity into every other client's), so the replies
//! are built here, matching Redis 7's texts.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::client::Client;
use crate::command::Local;
use crate::resp::{Protocol, Reply, Request};

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

impl<R, W> Client<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Answer one local command.
    pub(super) async fn local(&mut self, local: Local, req: &Request) -> Reply {
        let args = &req.args;
        let open = matches!(
            local,
            Local::Hello | Local::Auth | Local::Quit | Local::Reset
        );
        if !open && !self.conn.authenticated {
            return Reply::error("NOAUTH Authentication required.");
        }
        if !open {
            if let Err(denied) = self.ctx().live().policy.check(args) {
                return Reply::error(format!("NOPERM {}", denied.0));
            }
        }
        match local {
            Local::Hello => self.hello(args).await,
            Local::Auth => self.auth(args),
            Local::Quit => {
                self.set_quit();
                Reply::ok()
            }
            Local::Reset => {
                self.reset().await;
                Reply::simple("RESET")
            }
            Local::SelectZero => Reply::ok(),
            Local::Replication => Reply::error(
                "NOPERM replication commands (SYNC, PSYNC, REPLCONF) cannot pass through the sidecar; point replicas at Redis directly",
            ),
            Local::ClientId => Reply::Integer(self.conn.id as i64),
            Local::ClientSetName => match args.get(2) {
                Some(name) if args.len() == 3 => self.set_name(name.clone()),
                _ => arity("client|setname"),
            },
            Local::ClientGetName => match &self.conn.name {
                _ if args.len() != 2 => arity("client|getname"),
                Some(name) => Reply::Bulk(name.clone()),
                None => Reply::Null,
            },
            Local::ClientSetInfo => self.set_info(args),
            Local::Sidecar => self.sidecar(args).await,
            Local::InfoSidecar => Reply::Verbatim {
                format: *b"txt",
                text: Bytes::from(super::info::section(self.ctx())),
            },
            Local::ClientInfo => {
                if args.len() != 2 {
                    return arity("client|info");
                }
                Reply::Verbatim {
                    format: *b"txt",
                    text: Bytes::from(self.info_line()),
                }
            }
        }
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
    async fn hello(&mut self, args: &[Bytes]) -> Reply {
        let mut proto = self.conn.proto;
        let mut i = 1;
        if let Some(ver) = args.get(1) {
            proto = match std::str::from_utf8(ver)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
                None => {
                    return Reply::error("ERR Protocol version is not an integer or out of range")
                }
            };
            i = 2;
        }
        let mut auth = None;
        let mut setname = None;
        while i < args.len() {
            let more = args.len() - i - 1;
            if args[i].eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                auth = Some((args[i + 1].clone(), args[i + 2].clone()));
                i += 3;
            } else if args[i].eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                setname = Some(args[i + 1].clone());
                i += 2;
            } else {
                return Reply::error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                ));
            }
        }
        if let Some((user, pass)) = auth {
            if let Some(refused) = self.foreign_user(&user) {
                return refused;
            }
            if !self.check_password(&user, &pass) {
                return Reply::error(WRONGPASS);
            }
            self.conn.authenticated = true;
        }
        if !self.conn.authenticated {
            return Reply::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        if let Some(name) = setname {
            if let Reply::Error(e) = self.set_name(name) {
                return Reply::Error(e);
            }
        }
        if proto != self.conn.proto {
            self.switch_protocol(proto).await;
        }
        let hello = self.ctx().upstream.server_hello();
        let field = |k: &'static str| Reply::Bulk(Bytes::from_static(k.as_bytes()));
        Reply::Map(vec![
            (field("server"), Reply::bulk("redis")),
            (field("version"), Reply::bulk(hello.version)),
            (
                field("proto"),
                Reply::Integer(if proto == Protocol::Resp3 { 3 } else { 2 }),
            ),
            (field("id"), Reply::Integer(self.conn.id as i64)),
            (field("mode"), Reply::bulk(hello.mode)),
            (field("role"), Reply::bulk(hello.role)),
            (field("modules"), Reply::Array(Vec::new())),
        ])
    }

    /// `AUTH [username] password`. Without `server.requirepass` every AUTH is accepted, so
    /// apps that still send the upstream's password keep working after switching address.
    fn auth(&mut self, args: &[Bytes]) -> Reply {
        let (user, pass) = match args.len() {
            2 => (Bytes::from_static(b"default"), args[1].clone()),
            3 => (args[1].clone(), args[2].clone()),
            1 => return arity("auth"),
            _ => return Reply::error("ERR syntax error"),
        };
        if let Some(refused) = self.foreign_user(&user) {
            return refused;
        }
        if self.check_password(&user, &pass) {
            self.conn.authenticated = true;
            Reply::ok()
        } else {
            Reply::error(WRONGPASS)
        }
    }

    fn check_password(&self, user: &[u8], pass: &[u8]) -> bool {
        match &self.ctx().config.server.requirepass {
            None => true,
            Some(expected) => user == b"default" && constant_time_eq(pass, expected.as_bytes()),
        }
    }

    /// Redis sees every client through the sidecar's own upstream user, so a client logging
    /// in as some other ACL user must not believe it got that user's (narrower) rights.
    fn foreign_user(&self, user: &[u8]) -> Option<Reply> {
        if self.ctx().config.server.requirepass.is_some() {
            // The sidecar's own password: only `default` exists, others get WRONGPASS.
            return None;
        }
        let upstream_user = self
            .ctx()
            .config
            .upstream
            .username
            .as_deref()
            .unwrap_or("default");
        if user == b"default" || user == upstream_user.as_bytes() {
            return None;
        }
        Some(Reply::error(format!(
            "NOPERM the sidecar talks to Redis as user '{upstream_user}' for every client; per-client ACL users are not supported (set upstream.username instead)"
        )))
    }

    fn set_name(&mut self, name: Bytes) -> Reply {
        if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
            return Reply::error(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
        }
        self.conn.name = if name.is_empty() { None } else { Some(name) };
        Reply::ok()
    }

    /// `CLIENT SETINFO LIB-NAME|LIB-VER value` (Redis 7.2 semantics, accepted for every client library).
    fn set_info(&mut self, args: &[Bytes]) -> Reply {
        if args.len() != 4 {
            return arity("client|setinfo");
        }
        let value = args[3].clone();
        if value.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
            return Reply::error(
                "ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.",
            );
        }
        let value = if value.is_empty() { None } else { Some(value) };
        if args[2].eq_ignore_ascii_case(b"LIB-NAME") {
            self.conn.lib_name = value;
        } else if args[2].eq_ignore_ascii_case(b"LIB-VER") {
            self.conn.lib_ver = value;
        } else {
            return Reply::error(format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(&args[2])
            ));
        }
        Reply::ok()
    }

    /// The `CLIENT INFO` line for this connection, in Redis's field order (fields the
    /// sidecar does not track are reported with neutral values).
    fn info_line(&self) -> String {
        let c = &self.conn;
        let text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=client|info user=default redir=-1 resp={} lib-name={} lib-ver={}\n",
            c.id,
            c.peer,
            c.local,
            text(&c.name),
            c.since.elapsed().as_secs(),
            if c.proto == Protocol::Resp3 { 3 } else { 2 },
            text(&c.lib_name),
            text(&c.lib_ver),
        )
    }
}

fn arity(cmd: &str) -> Reply {
    Reply::error(format!("ERR wrong number of arguments for '{cmd}' command"))
}

/// Compare secrets without an early exit that would leak the matching prefix length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
