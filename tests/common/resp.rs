//! A minimal, independent RESP2/RESP3 reply reader for the tests: finds where
//! one reply ends (so tests can compare exact bytes) and parses a reply into a
//! value tree for structural assertions. It trusts nothing it has not seen:
//! an incomplete buffer is `Ok(None)`.

/// A parsed reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or RESP3 `_`.
    Nil,
    Array(Vec<Value>),
    Set(Vec<Value>),
    Push(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Double(Vec<u8>),
    Bool(bool),
    BigNumber(Vec<u8>),
    Verbatim(Vec<u8>),
    BlobError(Vec<u8>),
}

impl Value {
    /// The bytes of a simple or bulk string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(b) | Value::Verbatim(b) => Some(b),
            _ => None,
        }
    }

    /// Looks up a key (given as text) in a RESP3 map or a RESP2 flat array of
    /// pairs.
    pub fn field(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.bytes() == Some(key.as_bytes()))
                .map(|(_, v)| v),
            Value::Array(items) => items
                .chunks(2)
                .find(|p| p[0].bytes() == Some(key.as_bytes()))
                .and_then(|p| p.get(1)),
            _ => None,
        }
    }

    /// Keys of a RESP3 map, or of a flat RESP2 pair array, as text.
    pub fn keys(&self) -> Vec<String> {
        let ks: Vec<&Value> = match self {
            Value::Map(pairs) => pairs.iter().map(|(k, _)| k).collect(),
            Value::Array(items) => items.iter().step_by(2).collect(),
            _ => vec![],
        };
        ks.iter()
            .map(|k| String::from_utf8_lossy(k.bytes().unwrap_or(b"?")).to_string())
            .collect()
    }
}

/// Length of the first complete reply in `buf`, `Ok(None)` when more bytes
/// are needed, `Err` when the bytes are not RESP.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, String> {
    Ok(parse_at(buf, 0)?.map(|(_, end)| end))
}

/// Parses the first complete reply in `buf`.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, String> {
    parse_at(buf, 0)
}

/// Parses exactly one whole reply, panicking otherwise (test helper).
#[track_caller]
pub fn parse_one(buf: &[u8]) -> Value {
    match parse(buf) {
        Ok(Some((v, end))) if end == buf.len() => v,
        other => panic!("not exactly one reply ({other:?}): {}", super::show(buf)),
    }
}

fn line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let i = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..i], pos + i + 2))
}

fn int(b: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad integer {:?}", String::from_utf8_lossy(b)))
}

fn parse_at(buf: &[u8], pos: usize) -> Result<Option<(Value, usize)>, String> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((head, after)) = line(buf, pos + 1) else {
        return Ok(None);
    };
    let head = head.to_vec();
    match tag {
        b'+' => Ok(Some((Value::Simple(head), after))),
        b'-' => Ok(Some((Value::Error(head), after))),
        b':' => Ok(Some((Value::Int(int(&head)?), after))),
        b'_' => Ok(Some((Value::Nil, after))),
        b',' => Ok(Some((Value::Double(head), after))),
        b'(' => Ok(Some((Value::BigNumber(head), after))),
        b'#' => match head.as_slice() {
            b"t" => Ok(Some((Value::Bool(true), after))),
            b"f" => Ok(Some((Value::Bool(false), after))),
            _ => Err("bad boolean".into()),
        },
        b'$' | b'!' | b'=' => {
            let n = int(&head)?;
            if n < 0 {
                return if tag == b'$' && n == -1 {
                    Ok(Some((Value::Nil, after)))
                } else {
                    Err(format!("bad length {n}"))
                };
            }
            let end = after + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err("bulk not terminated by CRLF".into());
            }
            let data = buf[after..end].to_vec();
            let v = match tag {
                b'$' => Value::Bulk(data),
                b'!' => Value::BlobError(data),
                _ => Value::Verbatim(data),
            };
            Ok(Some((v, end + 2)))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = int(&head)?;
            if n < 0 {
                return if tag == b'*' && n == -1 {
                    Ok(Some((Value::Nil, after)))
                } else {
                    Err(format!("bad count {n}"))
                };
            }
            let elems = if matches!(tag, b'%' | b'|') { n * 2 } else { n };
            let mut items = Vec::with_capacity(elems.min(1024) as usize);
            let mut at = after;
            for _ in 0..elems {
                match parse_at(buf, at)? {
                    Some((v, next)) => {
                        items.push(v);
                        at = next;
                    }
                    None => return Ok(None),
                }
            }
            match tag {
                b'*' => Ok(Some((Value::Array(items), at))),
                b'~' => Ok(Some((Value::Set(items), at))),
                b'>' => Ok(Some((Value::Push(items), at))),
                b'%' => {
                    let mut pairs = Vec::new();
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Ok(Some((Value::Map(pairs), at)))
                }
                // An attribute belongs to the reply that follows it.
                _ => parse_at(buf, at),
            }
        }
        _ => Err(format!("unknown type byte {:?}", tag as char)),
    }
}
