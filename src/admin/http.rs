//! Just enough HTTP/1.1 for probes and scrapers: one `GET` per connection, answered
//! and closed (`Connection: close`).
//!
//! The request head is bounded ([`Limits::max_head`], 431 past it) and must arrive
//! within [`Limits::read_timeout`] (408 otherwise). Headers are checked for shape and
//! otherwise ignored; a request body is never read. Parsing ([`head_len`], [`parse`])
//! is pure; [`serve_connection`] does the socket side. What each path answers is the
//! caller's business (`admin::route`).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bounds on one admin connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head (request line and headers) accepted.
    pub max_head: usize,
    /// Time for the whole request head to arrive.
    pub read_timeout: Duration,
    /// Time for the response to be written.
    pub write_timeout: Duration,
    /// After the response: how long unread request bytes are drained before closing,
    /// so the client reads the response instead of a connection reset.
    pub linger: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 8 * 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(1),
        }
    }
}

/// Most bytes drained after a response (see [`Limits::linger`]).
const LINGER_BYTES: usize = 64 * 1024;

/// The parts of a request the routes look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The target's path, without query string or fragment.
    pub path: &'a str,
}

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed request line")]
    RequestLine,
    #[error("unsupported HTTP version")]
    Version,
    #[error("malformed header line")]
    Header,
}

impl ParseError {
    fn status(self) -> u16 {
        match self {
            ParseError::Version => 505,
            ParseError::RequestLine | ParseError::Header => 400,
        }
    }
}

/// The length of the request head (through its blank line) once it is all in `buf`.
/// Bare `\n` line ends are accepted as well as `\r\n`.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let end = from + i + 1;
        match &buf[end..] {
            [b'\n', ..] => return Some(end + 1),
            [b'\r', b'\n', ..] => return Some(end + 2),
            _ => from = end,
        }
    }
    None
}

/// Parse a complete request head (as measured by [`head_len`]).
pub fn parse(head: &[u8]) -> Result<Request<'_>, ParseError> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().ok_or(ParseError::RequestLine)?;
    let line = std::str::from_utf8(line).map_err(|_| ParseError::RequestLine)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::RequestLine);
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(ParseError::RequestLine);
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ParseError::RequestLine);
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => return Err(ParseError::Version),
        _ => return Err(ParseError::RequestLine),
    }
    for header in lines.take_while(|l| !l.is_empty()) {
        let name_len = header
            .iter()
            .position(|&b| b == b':')
            .ok_or(ParseError::Header)?;
        if name_len == 0 || !header[..name_len].iter().copied().all(is_token) {
            return Err(ParseError::Header);
        }
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok(Request { method, path })
}

/// RFC 9110 token characters (method and header names).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A complete response; always sent with `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Read one request from `stream`, answer it with `respond` (or with the error status
/// a bad request earns), then close. IO errors end the connection quietly.
pub async fn serve_connection<S, F>(mut stream: S, limits: &Limits, respond: F)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request<'_>) -> Response,
{
    let mut buf = Vec::with_capacity(1024);
    let response = match tokio::time::timeout(
        limits.read_timeout,
        read_head(&mut stream, &mut buf, limits.max_head),
    )
    .await
    {
        Err(_) => Response::text(408, "request head not received in time\n"),
        Ok(Err(())) => return,
        Ok(Ok(None)) => Response::text(
            431,
            format!("request head larger than {} bytes\n", limits.max_head),
        ),
        Ok(Ok(Some(len))) => match parse(&buf[..len]) {
            Ok(request) => respond(&request),
            Err(e) => Response::text(e.status(), format!("{e}\n")),
        },
    };
    let bytes = response.encode();
    let written = tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        let _ = tokio::time::timeout(limits.linger, drain(&mut stream)).await;
    }
}

/// Read until the head is complete: `Some(len)`, or `None` once `max` bytes came
/// without one. `Err` when the peer closed or the socket failed first.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<usize>, ()> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(len) = head_len(buf) {
            return Ok(Some(len));
        }
        if buf.len() >= max {
            return Ok(None);
        }
        let want = chunk.len().min(max - buf.len());
        match stream.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Read and discard until EOF or [`LINGER_BYTES`].
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut chunk = [0u8; 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
