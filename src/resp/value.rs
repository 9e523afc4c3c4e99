//! A small RESP2 value reader for control-plane replies (Sentinel answers,
//! `ROLE`, pub/sub messages, the sidecar's own SCAN/UNLINK/CONFIG calls).
//!
//! The data path never builds values: it forwards reply bytes untouched. The
//! discovery task and the sidecar's own calls, however, look inside a handful of replies, so
//! this module turns one complete frame (already measured by
//! [`crate::resp::ReplyScanner`]) into a [`Value`]. It does no IO, caps the
//! capacity it pre-allocates from lengths on the wire, and rejects the RESP3
//! types a RESP2 connection never sends.

use bytes::Bytes;

/// Elements pre-allocated for an array, whatever its header claims.
const PREALLOC_CAP: usize = 64;

/// One parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(Bytes),
    Error(Bytes),
    Int(i64),
    Bulk(Bytes),
    /// `$-1` or `*-1`.
    Nil,
    Array(Vec<Value>),
}

impl Value {
    /// The bytes of a simple or bulk string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// A simple or bulk string as text (lossy).
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The elements of an array.
    pub fn items(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The value after `key` in a RESP2 flat array of field/value pairs.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.items()?
            .chunks(2)
            .find(|pair| pair.first().and_then(Value::bytes) == Some(key.as_bytes()))
            .and_then(|pair| pair.get(1))
    }
}

/// Why a frame could not be read as a RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply from the server: {0}")]
pub struct ValueError(pub String);

/// Parse one complete RESP2 frame (`frame` holds exactly that frame).
pub fn parse(frame: &Bytes) -> Result<Value, ValueError> {
    let mut at = 0;
    let value = parse_at(frame, &mut at)?;
    if at != frame.len() {
        return Err(ValueError(format!(
            "{} bytes after the reply",
            frame.len() - at
        )));
    }
    Ok(value)
}

fn parse_at(frame: &Bytes, at: &mut usize) -> Result<Value, ValueError> {
    let line = next_line(frame, at)?;
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| ValueError("empty line".into()))?;
    let rest = frame.slice_ref(rest);
    match kind {
        b'+' => Ok(Value::Simple(rest)),
        b'-' => Ok(Value::Error(rest)),
        b':' => Ok(Value::Int(number(&rest)?)),
        b'$' => {
            let len = number(&rest)?;
            if len < 0 {
                return Ok(Value::Nil);
            }
            let len = usize::try_from(len).map_err(|_| ValueError("bulk length".into()))?;
            let end = at
                .checked_add(len)
                .filter(|end| end.checked_add(2).is_some_and(|e| e <= frame.len()))
                .ok_or_else(|| ValueError("truncated bulk string".into()))?;
            if &frame[end..end + 2] != b"\r\n" {
                return Err(ValueError("bulk string not followed by CRLF".into()));
            }
            let value = frame.slice(*at..end);
            *at = end + 2;
            Ok(Value::Bulk(value))
        }
        b'*' => {
            let len = number(&rest)?;
            if len < 0 {
                return Ok(Value::Nil);
            }
            let len = usize::try_from(len).map_err(|_| ValueError("array length".into()))?;
            let mut items = Vec::with_capacity(len.min(PREALLOC_CAP));
            for _ in 0..len {
                items.push(parse_at(frame, at)?);
            }
            Ok(Value::Array(items))
        }
        other => Err(ValueError(format!(
            "type byte {:?} on a RESP2 connection",
            char::from(*other)
        ))),
    }
}

/// The line starting at `at` without its CRLF; advances `at` past the CRLF.
fn next_line<'a>(frame: &'a Bytes, at: &mut usize) -> Result<&'a [u8], ValueError> {
    let rest = frame
        .get(*at..)
        .ok_or_else(|| ValueError("truncated reply".into()))?;
    let eol = memchr::memmem::find(rest, b"\r\n")
        .ok_or_else(|| ValueError("line without CRLF".into()))?;
    *at += eol + 2;
    Ok(&rest[..eol])
}

fn number(text: &[u8]) -> Result<i64, ValueError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ValueError(format!("bad number {:?}", String::from_utf8_lossy(text))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> Result<Value, ValueError> {
        parse(&Bytes::copy_from_slice(s))
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn scalars_and_nulls() {
        assert_eq!(p(b"+OK\r\n"), Ok(Value::Simple(Bytes::from_static(b"OK"))));
        assert_eq!(
            p(b"-ERR no\r\n"),
            Ok(Value::Error(Bytes::from_static(b"ERR no")))
        );
        assert_eq!(p(b":-42\r\n"), Ok(Value::Int(-42)));
        assert_eq!(p(b"$-1\r\n"), Ok(Value::Nil));
        assert_eq!(p(b"*-1\r\n"), Ok(Value::Nil));
        assert_eq!(p(b"$0\r\n\r\n"), Ok(bulk("")));
    }

    #[test]
    fn get_master_addr_reply() {
        let v = p(b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n");
        assert_eq!(v, Ok(Value::Array(vec![bulk("127.0.0.1"), bulk("6379")])));
    }

    #[test]
    fn role_reply_of_a_master_with_one_replica() {
        let v = p(b"*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n")
            .unwrap();
        let items = v.items().unwrap();
        assert_eq!(items[0].text().as_deref(), Some("master"));
        assert_eq!(items[1], Value::Int(3129659));
        assert_eq!(items[2].items().map(<[Value]>::len), Some(1));
    }

    #[test]
    fn flat_field_lookup() {
        let v = p(b"*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n$5\r\n26379\r\n").unwrap();
        assert_eq!(
            v.field("port").and_then(Value::text).as_deref(),
            Some("26379")
        );
        assert_eq!(v.field("nosuch"), None);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"+OK",
            b"$5\r\nab\r\n",
            b"$2\r\nabcd",
            b"*2\r\n:1\r\n",
            b":x\r\n",
            b"%1\r\n+a\r\n+b\r\n",
            b"+OK\r\n+OK\r\n",
            b"*9223372036854775807\r\n",
        ] {
            assert!(p(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
