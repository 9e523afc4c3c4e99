//! Encoding the replies the sidecar makes itself (errors, admin answers, cache
//! hits) for a client speaking RESP2 or RESP3.
//!
//! RESP3 values are down-converted for RESP2 clients exactly as Redis 7.0
//! does in `networking.c`. This module does not touch replies forwarded from
//! Redis: those bytes pass through untouched (see `reply`).

use bytes::{Bytes, BytesMut};

use super::{put_decimal, put_header};

/// The protocol a client negotiated (`HELLO 3` switches to RESP3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

/// A reply value built by the sidecar.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(Bytes),
    /// The error text without the leading '-', e.g. `NOPERM ...` or `ERR ...`.
    Error(Bytes),
    Integer(i64),
    Bulk(Bytes),
    /// RESP3 `_`, RESP2 `$-1`.
    Null,
    /// RESP3 `_`, RESP2 `*-1`.
    NullArray,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Double(f64),
    Boolean(bool),
    Verbatim {
        format: [u8; 3],
        text: Bytes,
    },
    Push(Vec<Reply>),
}

impl Reply {
    /// `+OK`
    pub fn ok() -> Reply {
        Reply::Simple(Bytes::from_static(b"OK"))
    }

    pub fn simple(s: &str) -> Reply {
        Reply::Simple(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// An error reply; `msg` starts with its code, e.g. `Reply::error("NOPERM ...")`.
    pub fn error(msg: impl Into<String>) -> Reply {
        Reply::Error(Bytes::from(msg.into()))
    }

    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    pub fn to_bytes(&self, proto: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        encode(self, proto, &mut out);
        out.freeze()
    }
}

/// Append the encoding of `reply` for a client speaking `proto`.
///
/// RESP2 down-conversion as Redis 7 does it: Map -> flat array of 2n, Set -> array,
/// Double -> bulk string (`%.17g`, `inf`/`-inf`), Boolean -> integer 1/0, Verbatim -> bulk
/// string of the text only, Push -> array, Null -> `$-1`, NullArray -> `*-1`.
/// Simple string and error text is sanitised: CR and LF become spaces.
pub fn encode(reply: &Reply, proto: Protocol, out: &mut BytesMut) {
    let resp3 = proto == Protocol::Resp3;
    match reply {
        Reply::Simple(text) => put_line(out, b'+', text),
        Reply::Error(text) => put_line(out, b'-', text),
        Reply::Integer(n) => {
            out.extend_from_slice(b":");
            put_decimal(out, *n);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Bulk(data) => put_bulk(out, b'$', data),
        Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
        Reply::Null => out.extend_from_slice(b"$-1\r\n"),
        Reply::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
        Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(items) => put_aggregate(out, b'*', items, proto),
        Reply::Set(items) => put_aggregate(out, if resp3 { b'~' } else { b'*' }, items, proto),
        Reply::Push(items) => put_aggregate(out, if resp3 { b'>' } else { b'*' }, items, proto),
        Reply::Map(pairs) => {
            if resp3 {
                put_header(out, b'%', pairs.len());
            } else {
                put_header(out, b'*', pairs.len().saturating_mul(2));
            }
            for (key, value) in pairs {
                encode(key, proto, out);
                encode(value, proto, out);
            }
        }
        Reply::Double(d) => {
            let text = format_double(*d);
            if resp3 {
                put_line(out, b',', text.as_bytes());
            } else {
                put_bulk(out, b'$', text.as_bytes());
            }
        }
        Reply::Boolean(b) if resp3 => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Reply::Boolean(b) => out.extend_from_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
        Reply::Verbatim { format, text } if resp3 => {
            put_header(out, b'=', text.len().saturating_add(4));
            out.extend_from_slice(
                &format.map(|b| if matches!(b, b'\r' | b'\n') { b' ' } else { b }),
            );
            out.extend_from_slice(b":");
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Verbatim { text, .. } => put_bulk(out, b'$', text),
    }
}

fn put_aggregate(out: &mut BytesMut, kind: u8, items: &[Reply], proto: Protocol) {
    put_header(out, kind, items.len());
    for item in items {
        encode(item, proto, out);
    }
}

fn put_bulk(out: &mut BytesMut, kind: u8, data: &[u8]) {
    put_header(out, kind, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A one-line value; CR and LF would break the framing, so they become spaces
/// (what Redis does to error texts).
fn put_line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.extend_from_slice(&[kind]);
    if memchr::memchr2(b'\r', b'\n', text).is_some() {
        out.extend(
            text.iter()
                .map(|&b| if matches!(b, b'\r' | b'\n') { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(text);
    }
    out.extend_from_slice(b"\r\n");
}

/// Format a double like C's `printf("%.17g")`, which Redis 7.0 uses for
/// doubles, except infinities, which Redis writes as `inf` and `-inf` itself.
/// NaN is written as glibc does: `nan` or `-nan`.
pub(crate) fn format_double(d: f64) -> String {
    let sign = if d.is_sign_negative() { "-" } else { "" };
    if d.is_nan() {
        return format!("{sign}nan");
    }
    if d.is_infinite() {
        return format!("{sign}inf");
    }
    // 17 significant digits, correctly rounded: "d.dddddddddddddddde<exp>".
    let scientific = format!("{:.16e}", d.abs());
    let (mantissa, exp) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..17).contains(&exp) {
        let (first, rest) = digits.split_at_checked(1).unwrap_or(("0", ""));
        let rest = rest.trim_end_matches('0');
        let point = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{point}{rest}e{exp_sign}{:02}",
            exp.unsigned_abs()
        );
    }
    let fixed = if exp >= 0 {
        let (int, frac) = digits
            .split_at_checked(exp.unsigned_abs() as usize + 1)
            .unwrap_or((&digits, ""));
        format!("{int}.{frac}")
    } else {
        format!("0.{}{digits}", "0".repeat(exp.unsigned_abs() as usize - 1))
    };
    let fixed = fixed.trim_end_matches('0').trim_end_matches('.');
    format!("{sign}{fixed}")
}
