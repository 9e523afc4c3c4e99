//! Upstream URLs: `redis://`, `rediss://` and `redis-sentinel://`.
//!
//! Owns splitting a URL into scheme, credentials, endpoints and master name,
//! and `host:port` endpoint parsing. It does not decide precedence between a
//! URL's credentials and other sources (that is `config::overlay`), and it
//! never puts a password into an error message or `Debug` output.

use std::fmt;

use super::Endpoint;

pub const REDIS_PORT: u16 = 6379;
pub const SENTINEL_PORT: u16 = 26379;

/// Why an upstream URL or endpoint was refused. Messages describe the part
/// that is wrong without repeating the userinfo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("unsupported URL scheme {0:?} (use redis://, rediss:// or redis-sentinel://)")]
    Scheme(String),
    #[error("missing host")]
    MissingHost,
    #[error("invalid port in {0:?}")]
    Port(String),
    #[error("invalid endpoint {0:?}: IPv6 addresses need brackets, like [::1]:6379")]
    Ipv6NeedsBrackets(String),
    #[error("invalid endpoint {0:?}")]
    Endpoint(String),
    #[error("only redis-sentinel:// URLs may list several hosts")]
    SeveralHosts,
    #[error("use [[namespace]] db mapping instead of a DB index in the URL")]
    DbIndex,
    #[error("invalid DB index {0:?} in the URL path")]
    BadPath(String),
    #[error("redis-sentinel:// URL needs the master name as its path, like redis-sentinel://host:26379/mymaster")]
    MissingMasterName,
    #[error("URL query parameters are not supported; set the sidecar.toml keys instead")]
    Query,
    #[error("invalid percent-escape in the URL userinfo")]
    PercentEscape,
    #[error("URL userinfo is not valid UTF-8 after percent-decoding")]
    Utf8,
}

/// The URL's scheme, which decides TLS and the upstream mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Redis,
    Rediss,
    RedisSentinel,
}

/// A parsed upstream URL. For `redis-sentinel://` the endpoints are the
/// sentinels and the credentials belong to the primary.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    pub endpoints: Vec<Endpoint>,
    pub master_name: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The URL as written, with the password (if any) replaced by
    /// `<redacted>`; safe to log and print.
    pub redacted: String,
}

impl fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamUrl")
            .field("scheme", &self.scheme)
            .field("endpoints", &self.endpoints)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| super::REDACTED))
            .finish()
    }
}

impl UpstreamUrl {
    /// Parses `redis://[user:pass@]host[:port][/0]`, `rediss://...` and
    /// `redis-sentinel://[user:pass@]h1[:p1][,h2[:p2]...]/MASTER_NAME`.
    pub fn parse(text: &str) -> Result<UpstreamUrl, UrlError> {
        let text = text.trim();
        let (scheme_text, rest) = text
            .split_once("://")
            .ok_or(UrlError::Scheme(String::new()))?;
        let scheme = match scheme_text.to_ascii_lowercase().as_str() {
            "redis" => Scheme::Redis,
            "rediss" => Scheme::Rediss,
            "redis-sentinel" => Scheme::RedisSentinel,
            other => return Err(UrlError::Scheme(other.to_owned())),
        };
        // The userinfo ends at the last '@', so a password may hold '/', '?'
        // or '#' unescaped without being mistaken for a path or query.
        let (userinfo, after) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        if after.contains('?') || after.contains('#') {
            return Err(UrlError::Query);
        }
        let (hosts, path) = match after.find('/') {
            Some(at) => after.split_at(at),
            None => (after, ""),
        };
        let (username, password) = match userinfo {
            Some(info) => split_userinfo(info)?,
            None => (None, None),
        };
        let default_port = match scheme {
            Scheme::RedisSentinel => SENTINEL_PORT,
            Scheme::Redis | Scheme::Rediss => REDIS_PORT,
        };
        let endpoints = hosts
            .split(',')
            .map(|host| Endpoint::parse(host, default_port))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.len() > 1 && scheme != Scheme::RedisSentinel {
            return Err(UrlError::SeveralHosts);
        }
        let master_name = check_path(scheme, path)?;
        let redacted = redact(text, scheme_text.len() + 3, userinfo);
        Ok(UpstreamUrl {
            scheme,
            endpoints,
            master_name,
            username,
            password,
            redacted,
        })
    }

    /// True for `rediss://`.
    pub fn tls(&self) -> bool {
        self.scheme == Scheme::Rediss
    }
}

/// `user:pass`, `:pass` or `user`; empty parts mean "not given".
fn split_userinfo(info: &str) -> Result<(Option<String>, Option<String>), UrlError> {
    let (user, pass) = match info.split_once(':') {
        Some((user, pass)) => (user, Some(pass)),
        None => (info, None),
    };
    let user = Some(percent_decode(user)?).filter(|u| !u.is_empty());
    let pass = match pass {
        Some(pass) => Some(percent_decode(pass)?).filter(|p| !p.is_empty()),
        None => None,
    };
    Ok((user, pass))
}

/// The path is `/MASTER_NAME` for sentinel URLs and empty, `/` or `/0` for
/// the others.
fn check_path(scheme: Scheme, path: &str) -> Result<Option<String>, UrlError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    match scheme {
        Scheme::RedisSentinel => {
            if trimmed.is_empty() || trimmed.contains('/') {
                return Err(UrlError::MissingMasterName);
            }
            Ok(Some(percent_decode(trimmed)?))
        }
        Scheme::Redis | Scheme::Rediss => {
            if trimmed.is_empty() {
                return Ok(None);
            }
            match trimmed.parse::<u32>() {
                Ok(0) => Ok(None),
                Ok(_) => Err(UrlError::DbIndex),
                Err(_) => Err(UrlError::BadPath(trimmed.to_owned())),
            }
        }
    }
}

/// Replaces the password in the userinfo (which starts at `start`) with
/// `<redacted>`, leaving the rest of the URL as the operator wrote it.
fn redact(text: &str, start: usize, userinfo: Option<&str>) -> String {
    let Some(info) = userinfo else {
        return text.to_owned();
    };
    let Some((user, pass)) = info.split_once(':') else {
        return text.to_owned();
    };
    if pass.is_empty() {
        return text.to_owned();
    }
    let tail = &text[start + info.len()..];
    format!("{}{user}:{}{tail}", &text[..start], super::REDACTED)
}

fn percent_decode(text: &str) -> Result<String, UrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(UrlError::PercentEscape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| UrlError::PercentEscape)?;
            let value = u8::from_str_radix(hex, 16).map_err(|_| UrlError::PercentEscape)?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::Utf8)
}

impl Endpoint {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`, using
    /// `default_port` when none is given.
    pub fn parse(text: &str, default_port: u16) -> Result<Endpoint, UrlError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(UrlError::MissingHost);
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| UrlError::Endpoint(text.to_owned()))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| UrlError::Endpoint(text.to_owned()))?,
                ),
            };
            (host, port)
        } else {
            match text.matches(':').count() {
                0 => (text, None),
                1 => text
                    .split_once(':')
                    .map(|(h, p)| (h, Some(p)))
                    .ok_or_else(|| UrlError::Endpoint(text.to_owned()))?,
                _ => return Err(UrlError::Ipv6NeedsBrackets(text.to_owned())),
            }
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        if host.contains(|c: char| c.is_whitespace() || "/@[]".contains(c)) {
            return Err(UrlError::Endpoint(text.to_owned()));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(UrlError::Port(text.to_owned())),
            },
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn plain_url_with_defaults() {
        let url = UpstreamUrl::parse("redis://10.0.0.5").expect("valid");
        assert_eq!(url.scheme, Scheme::Redis);
        assert_eq!(url.endpoints, vec![ep("10.0.0.5", 6379)]);
        assert_eq!((&url.username, &url.password), (&None, &None));
        assert!(!url.tls());
        assert!(UpstreamUrl::parse("redis://h:7000/").is_ok());
        assert!(UpstreamUrl::parse("redis://h:7000/0").is_ok());
    }

    #[test]
    fn tls_url_with_percent_encoded_credentials() {
        let url =
            UpstreamUrl::parse("rediss://app%40svc:p%3Ass%2Fw@cache.internal:6380").expect("valid");
        assert!(url.tls());
        assert_eq!(url.username.as_deref(), Some("app@svc"));
        assert_eq!(url.password.as_deref(), Some("p:ss/w"));
        assert_eq!(url.endpoints, vec![ep("cache.internal", 6380)]);
        assert_eq!(
            url.redacted,
            "rediss://app%40svc:<redacted>@cache.internal:6380"
        );
        assert!(!format!("{url:?}").contains("p:ss"));
    }

    #[test]
    fn password_only_userinfo() {
        let url = UpstreamUrl::parse("redis://:hunter2@h").expect("valid");
        assert_eq!(url.username, None);
        assert_eq!(url.password.as_deref(), Some("hunter2"));
        assert_eq!(url.redacted, "redis://:<redacted>@h");
    }

    #[test]
    fn sentinel_url() {
        let url = UpstreamUrl::parse("redis-sentinel://u:pw@s1:26380,s2,[::1]:26381/primary-a")
            .expect("valid");
        assert_eq!(url.scheme, Scheme::RedisSentinel);
        assert_eq!(
            url.endpoints,
            vec![ep("s1", 26380), ep("s2", 26379), ep("::1", 26381)]
        );
        assert_eq!(url.master_name.as_deref(), Some("primary-a"));
        assert_eq!(url.password.as_deref(), Some("pw"));
        assert_eq!(
            UpstreamUrl::parse("redis-sentinel://s1:26379"),
            Err(UrlError::MissingMasterName)
        );
    }

    #[test]
    fn ipv6_endpoints() {
        let url = UpstreamUrl::parse("redis://[::1]:6379").expect("valid");
        assert_eq!(url.endpoints, vec![ep("::1", 6379)]);
        assert_eq!(url.endpoints[0].to_string(), "[::1]:6379");
        assert_eq!(Endpoint::parse("[fe80::1]", 1), Ok(ep("fe80::1", 1)));
        assert!(matches!(
            Endpoint::parse("::1:6379", 1),
            Err(UrlError::Ipv6NeedsBrackets(_))
        ));
    }

    #[test]
    fn bad_urls() {
        assert_eq!(
            UpstreamUrl::parse("redis://h:6379/3"),
            Err(UrlError::DbIndex)
        );
        assert!(UpstreamUrl::parse("redis://h:6379/3")
            .unwrap_err()
            .to_string()
            .contains("use [[namespace]] db mapping instead of a DB index in the URL"));
        assert!(matches!(
            UpstreamUrl::parse("http://h"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            UpstreamUrl::parse("h:6379"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            UpstreamUrl::parse("redis://h:0"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            UpstreamUrl::parse("redis://h:99999"),
            Err(UrlError::Port(_))
        ));
        assert_eq!(UpstreamUrl::parse("redis://"), Err(UrlError::MissingHost));
        assert_eq!(
            UpstreamUrl::parse("redis://a,b"),
            Err(UrlError::SeveralHosts)
        );
        assert_eq!(UpstreamUrl::parse("redis://h?x=1"), Err(UrlError::Query));
        assert!(matches!(
            UpstreamUrl::parse("redis://h/abc"),
            Err(UrlError::BadPath(_))
        ));
        assert_eq!(
            UpstreamUrl::parse("redis://u:%zz@h"),
            Err(UrlError::PercentEscape)
        );
    }

    #[test]
    fn errors_never_repeat_the_password() {
        let bad = [
            "redis://u:s3cret@h:abc",
            "redis://u:s3cret@h/5",
            "redis://u:s3cret@::1:5",
            "redis://u:s3cret@a,b",
            "redis://u:pa/ss@h:abc",
        ];
        for text in bad {
            let err = UpstreamUrl::parse(text).expect_err(text);
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
        let url = UpstreamUrl::parse("redis://u:pa?s/s#@h:1").expect("unescaped password");
        assert_eq!(url.password.as_deref(), Some("pa?s/s#"));
        assert_eq!(url.endpoints, vec![ep("h", 1)]);
    }
}
