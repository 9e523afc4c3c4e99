//! Environment and command-line layers on top of the file.
//!
//! Owns the variable names (`REDIS_URL`, `REDIS_PASSWORD`,
//! `REDIS_TLS_ENABLED`, `SIDECAR_LISTEN`), checking each overriding value
//! where it enters (so errors name the variable or flag, not a file key),
//! and the precedence rules for applying a layer onto the raw file values.
//! It does not read the process environment itself: callers pass a lookup
//! function, so tests can inject one.

use std::fmt;
use std::net::SocketAddr;

use super::raw::RawConfig;
use super::url::UpstreamUrl;
use super::{ConfigError, REDACTED};

pub const ENV_REDIS_URL: &str = "REDIS_URL";
pub const ENV_REDIS_PASSWORD: &str = "REDIS_PASSWORD";
pub const ENV_REDIS_TLS_ENABLED: &str = "REDIS_TLS_ENABLED";
pub const ENV_SIDECAR_LISTEN: &str = "SIDECAR_LISTEN";

/// One layer of overrides (the environment, or the command line), already
/// checked. Build it with `from_env` or `from_flags`; apply layers lowest
/// precedence first.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    listen: Option<SocketAddr>,
    /// `Some(None)` disables the admin listener.
    admin_listen: Option<Option<SocketAddr>>,
    upstream: Option<(String, UpstreamUrl)>,
    password: Option<String>,
    tls: Option<bool>,
}

impl fmt::Debug for Overlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overlay")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field(
                "upstream",
                &self.upstream.as_ref().map(|(_, url)| &url.redacted),
            )
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("tls", &self.tls)
            .finish()
    }
}

fn override_error(source_name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Override {
        source_name: source_name.to_owned(),
        message: message.into(),
    }
}

fn parse_addr(source_name: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        override_error(
            source_name,
            format!("invalid address {text:?}: expected IP:PORT, like \"127.0.0.1:6380\""),
        )
    })
}

fn parse_url(source_name: &str, text: &str) -> Result<(String, UpstreamUrl), ConfigError> {
    let url = UpstreamUrl::parse(text).map_err(|e| override_error(source_name, e.to_string()))?;
    Ok((text.trim().to_owned(), url))
}

/// `true/false/1/0/yes/no`, case-insensitive; anything else is an error.
fn parse_bool(source_name: &str, text: &str) -> Result<bool, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(override_error(
            source_name,
            format!("invalid value {text:?}: expected true, false, 1, 0, yes or no"),
        )),
    }
}

impl Overlay {
    /// Reads the environment through `env`. Variables that are unset or
    /// empty are ignored, so `REDIS_PASSWORD=` means "no override".
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Overlay, ConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let mut layer = Overlay::default();
        if let Some(text) = get(ENV_SIDECAR_LISTEN) {
            layer.listen = Some(parse_addr(ENV_SIDECAR_LISTEN, &text)?);
        }
        if let Some(text) = get(ENV_REDIS_URL) {
            layer.upstream = Some(parse_url(ENV_REDIS_URL, &text)?);
        }
        layer.password = get(ENV_REDIS_PASSWORD);
        if let Some(text) = get(ENV_REDIS_TLS_ENABLED) {
            layer.tls = Some(parse_bool(ENV_REDIS_TLS_ENABLED, &text)?);
        }
        Ok(layer)
    }

    /// The `--listen`, `--upstream` and `--admin` flags. `--admin ""`
    /// disables the admin listener.
    pub fn from_flags(
        listen: Option<&str>,
        upstream: Option<&str>,
        admin: Option<&str>,
    ) -> Result<Overlay, ConfigError> {
        let mut layer = Overlay::default();
        if let Some(text) = listen {
            layer.listen = Some(parse_addr("--listen", text)?);
        }
        if let Some(text) = upstream {
            layer.upstream = Some(parse_url("--upstream", text)?);
        }
        if let Some(text) = admin {
            layer.admin_listen = Some(match text.trim() {
                "" => None,
                text => Some(parse_addr("--admin", text)?),
            });
        }
        Ok(layer)
    }

    /// Applies this layer over `raw`, which holds the file and any lower
    /// layers. Within one source an explicit setting beats the URL: a
    /// separate password beats the URL's userinfo, and a TLS switch set to
    /// false turns a `rediss://` URL into `redis://`. Across sources the
    /// higher layer wins, so credentials in a higher layer's URL replace a
    /// lower layer's explicit ones.
    pub(crate) fn apply(&self, raw: &mut RawConfig) {
        if let Some(listen) = self.listen {
            raw.server.listen = listen.to_string();
        }
        if let Some(admin) = self.admin_listen {
            raw.admin.listen = admin.map(|a| a.to_string()).unwrap_or_default();
        }
        if let Some((text, url)) = &self.upstream {
            raw.upstream.url = text.clone();
            if url.username.is_some() {
                raw.upstream.username.clear();
            }
            if url.password.is_some() {
                raw.upstream.password.clear();
            }
        }
        if let Some(password) = &self.password {
            raw.upstream.password = password.clone();
        }
        if let Some(tls) = self.tls {
            raw.upstream.tls = tls;
            raw.upstream.tls_switched_off = !tls;
            if !tls {
                raw.upstream.url = without_tls_scheme(&raw.upstream.url);
            }
        }
    }
}

/// `rediss://h` -> `redis://h`; anything else unchanged.
fn without_tls_scheme(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("rediss") => format!("redis://{rest}"),
        _ => url.to_owned(),
    }
}
