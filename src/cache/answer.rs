//! What a cache entry holds, how a hit is answered in the client's protocol, and how
//! the replies of a fill are read. Pure: no IO.
//!
//! A hit must be byte for byte what Redis would have sent: RESP2 and RESP3 differ in
//! nulls (`$-1` / `_`) and hashes (a flat array / a map). A reply the cache cannot
//! reproduce exactly (a read of the wrong type, which Redis answers with WRONGTYPE) is
//! not answered from the cache: the request goes to Redis.

use bytes::{Bytes, BytesMut};

use crate::resp::{parse_i64, put_decimal, put_header, Protocol};

/// The cached state of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A string value (GET).
    Str(Bytes),
    /// Every field of a hash, in the order Redis sent them (HGETALL).
    Hash(Vec<(Bytes, Bytes)>),
    /// The key does not exist.
    Missing,
}

#[cfg(test)]
impl Data {
    /// A view of it, which is what replies are encoded from.
    pub fn view(&self) -> DataRef<'_> {
        match self {
            Data::Str(v) => DataRef::Str(v),
            Data::Hash(fields) => DataRef::Hash(fields),
            Data::Missing => DataRef::Missing,
        }
    }
}

/// Cached data as an entry holds it (or as a fill read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataRef<'a> {
    Str(&'a [u8]),
    Hash(&'a [(Bytes, Bytes)]),
    Missing,
}

impl<'a> DataRef<'a> {
    /// Bytes held (values and field names).
    pub fn size(self) -> usize {
        match self {
            DataRef::Str(v) => v.len(),
            DataRef::Hash(fields) => fields.iter().map(|(f, v)| f.len() + v.len() + 16).sum(),
            DataRef::Missing => 0,
        }
    }

    /// Bytes a reply to a read of this entry needs (to size the output once).
    pub fn reply_len(self) -> usize {
        self.size() + 32
    }

    /// The reply to `GET`; false when only Redis can answer (wrong type).
    pub fn get(self, proto: Protocol, out: &mut BytesMut) -> bool {
        match self {
            DataRef::Str(v) => put_bulk(out, v),
            DataRef::Missing => put_null(out, proto),
            DataRef::Hash(_) => return false,
        }
        true
    }

    /// One element of an `MGET` reply (Redis answers nil for a key of another type).
    pub fn mget_item(self, proto: Protocol, out: &mut BytesMut) {
        match self {
            DataRef::Str(v) => put_bulk(out, v),
            _ => put_null(out, proto),
        }
    }

    fn field(self, name: &[u8]) -> Option<Option<&'a Bytes>> {
        match self {
            DataRef::Hash(fields) => Some(fields.iter().find(|(f, _)| f == name).map(|(_, v)| v)),
            DataRef::Missing => Some(None),
            DataRef::Str(_) => None,
        }
    }

    /// The reply to `HGET key field`; false when only Redis can answer.
    pub fn hget(self, field: &[u8], proto: Protocol, out: &mut BytesMut) -> bool {
        match self.field(field) {
            Some(Some(v)) => put_bulk(out, v),
            Some(None) => put_null(out, proto),
            None => return false,
        }
        true
    }

    /// The reply to `HMGET key field...`; false when only Redis can answer.
    pub fn hmget(self, fields: &[Bytes], proto: Protocol, out: &mut BytesMut) -> bool {
        if matches!(self, DataRef::Str(_)) {
            return false;
        }
        put_header(out, b'*', fields.len());
        for f in fields {
            match self.field(f) {
                Some(Some(v)) => put_bulk(out, v),
                _ => put_null(out, proto),
            }
        }
        true
    }

    /// The reply to `HGETALL key`; false when only Redis can answer.
    pub fn hgetall(self, proto: Protocol, out: &mut BytesMut) -> bool {
        let fields: &[(Bytes, Bytes)] = match self {
            DataRef::Hash(fields) => fields,
            DataRef::Missing => &[],
            DataRef::Str(_) => return false,
        };
        match proto {
            Protocol::Resp2 => put_header(out, b'*', fields.len() * 2),
            Protocol::Resp3 => put_header(out, b'%', fields.len()),
        }
        for (f, v) in fields {
            put_bulk(out, f);
            put_bulk(out, v);
        }
        true
    }

    pub fn exists(self) -> bool {
        !matches!(self, DataRef::Missing)
    }
}

pub fn put_bulk(out: &mut BytesMut, v: &[u8]) {
    put_header(out, b'$', v.len());
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
}

pub fn put_null(out: &mut BytesMut, proto: Protocol) {
    out.extend_from_slice(match proto {
        Protocol::Resp2 => b"$-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}

pub fn put_integer(out: &mut BytesMut, n: i64) {
    out.extend_from_slice(b":");
    put_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// A reader over one complete frame from Redis.
pub(crate) struct Reader<'a> {
    frame: &'a Bytes,
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(frame: &'a Bytes) -> Self {
        Reader { frame, at: 0 }
    }

    /// Where the next element starts.
    pub(crate) fn at(&self) -> usize {
        self.at
    }

    /// The type byte and the rest of the line.
    fn line(&mut self) -> Option<(u8, &'a [u8])> {
        let buf: &'a [u8] = self.frame;
        let rest = buf.get(self.at..)?;
        let eol = memchr::memchr(b'\r', rest)?;
        let kind = *rest.first()?;
        let line = &rest[1..eol];
        self.at += eol + 2;
        Some((kind, line))
    }

    /// A bulk string (`None` inside for a null).
    pub(crate) fn bulk(&mut self) -> Option<Option<Bytes>> {
        match self.line()? {
            (b'$', b"-1") | (b'_', b"") => Some(None),
            (b'$', len) => {
                let len = usize::try_from(parse_i64(len)?).ok()?;
                let value = self.frame.get(self.at..self.at + len)?;
                let value = self.frame.slice_ref(value);
                self.at += len + 2;
                Some(Some(value))
            }
            _ => None,
        }
    }

    /// The element count of an array (`*`) or push (`>`), or the pair count of a map (`%`).
    pub(crate) fn aggregate(&mut self) -> Option<(u8, usize)> {
        match self.line()? {
            (kind @ (b'*' | b'%' | b'>'), n) => Some((kind, usize::try_from(parse_i64(n)?).ok()?)),
            _ => None,
        }
    }
}

/// A `GET` reply as cache data; `None` for anything else (an error).
pub fn read_get(frame: &Bytes) -> Option<Data> {
    Some(match Reader::new(frame).bulk()? {
        Some(v) => Data::Str(v),
        None => Data::Missing,
    })
}

/// An `HGETALL` reply (RESP2 flat array or RESP3 map) as cache data.
pub fn read_hgetall(frame: &Bytes) -> Option<Data> {
    let mut r = Reader::new(frame);
    let (kind, n) = r.aggregate()?;
    let pairs = match kind {
        b'%' => n,
        b'*' => n / 2,
        _ => return None,
    };
    let mut fields = Vec::with_capacity(pairs.min(1024));
    for _ in 0..pairs {
        let f = r.bulk()??;
        let v = r.bulk()??;
        fields.push((f, v));
    }
    Some(if fields.is_empty() {
        Data::Missing
    } else {
        Data::Hash(fields)
    })
}

/// The elements of an `MGET` reply.
pub fn read_mget(frame: &Bytes) -> Option<Vec<Option<Bytes>>> {
    let mut r = Reader::new(frame);
    let (kind, n) = r.aggregate()?;
    if kind != b'*' {
        return None;
    }
    (0..n).map(|_| r.bulk()).collect()
}

/// An integer reply (`PTTL`).
pub fn read_integer(frame: &[u8]) -> Option<i64> {
    let line = frame.strip_prefix(b":")?;
    let eol = memchr::memchr(b'\r', line)?;
    parse_i64(&line[..eol])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl Fn(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(&mut out);
        out.to_vec()
    }

    #[test]
    fn get_answers_match_redis_in_both_protocols() {
        let v = Data::Str(Bytes::from_static(b"a\r\nb"));
        assert_eq!(
            enc(|o| assert!(v.view().get(Protocol::Resp2, o))),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(
            enc(|o| assert!(Data::Missing.view().get(Protocol::Resp2, o))),
            b"$-1\r\n"
        );
        assert_eq!(
            enc(|o| assert!(Data::Missing.view().get(Protocol::Resp3, o))),
            b"_\r\n"
        );
        let h = Data::Hash(vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))]);
        assert!(!h.view().get(Protocol::Resp2, &mut BytesMut::new()));
    }

    #[test]
    fn hashes_are_arrays_in_resp2_and_maps_in_resp3() {
        let h = Data::Hash(vec![
            (Bytes::from_static(b"a"), Bytes::from_static(b"1")),
            (Bytes::from_static(b"b"), Bytes::from_static(b"22")),
        ]);
        assert_eq!(
            enc(|o| assert!(h.view().hgetall(Protocol::Resp2, o))),
            b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$2\r\n22\r\n"
        );
        assert_eq!(
            enc(|o| assert!(h.view().hgetall(Protocol::Resp3, o))),
            b"%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$2\r\n22\r\n"
        );
        assert_eq!(
            enc(|o| assert!(Data::Missing.view().hgetall(Protocol::Resp3, o))),
            b"%0\r\n"
        );
        let fields = [Bytes::from_static(b"b"), Bytes::from_static(b"x")];
        assert_eq!(
            enc(|o| assert!(h.view().hmget(&fields, Protocol::Resp3, o))),
            b"*2\r\n$2\r\n22\r\n_\r\n"
        );
        assert_eq!(
            enc(|o| assert!(h.view().hget(b"a", Protocol::Resp2, o))),
            b"$1\r\n1\r\n"
        );
    }

    #[test]
    fn fill_replies_are_read_back_to_the_same_bytes() {
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            let h = Data::Hash(vec![
                (Bytes::from_static(b"f\r\n"), Bytes::from_static(b"")),
                (Bytes::from_static(b"g"), Bytes::from_static(b"\0")),
            ]);
            let frame = Bytes::from(enc(|o| assert!(h.view().hgetall(proto, o))));
            assert_eq!(read_hgetall(&frame), Some(h.clone()));
            let s = Data::Str(Bytes::from_static(b"xyz"));
            let frame = Bytes::from(enc(|o| assert!(s.view().get(proto, o))));
            assert_eq!(read_get(&frame), Some(s));
            let frame = Bytes::from(enc(|o| assert!(Data::Missing.view().get(proto, o))));
            assert_eq!(read_get(&frame), Some(Data::Missing));
        }
        assert_eq!(read_get(&Bytes::from_static(b"-WRONGTYPE x\r\n")), None);
        assert_eq!(
            read_hgetall(&Bytes::from_static(b"*0\r\n")),
            Some(Data::Missing)
        );
        assert_eq!(
            read_mget(&Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n")),
            Some(vec![Some(Bytes::from_static(b"a")), None])
        );
        assert_eq!(read_integer(b":-2\r\n"), Some(-2));
        assert_eq!(read_integer(b":1500\r\n"), Some(1500));
    }
}
