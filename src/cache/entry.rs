//! How an entry is laid out in memory: one allocation per entry holding its header,
//! its key and, for a string, the whole reply to `GET`.
//!
//! A hit is memory-bound: every allocation it reads after the store's slot is one more
//! cache miss waiting on the one before. With the header, the key and the reply in one
//! allocation, a hit compares the key, checks generation and expiry, bumps the count
//! and copies the reply from memory it has already touched. The store's key and value
//! are two handles on the same allocation, so the count a lookup bumps (the store
//! clones the value) sits on the line the key compare has just loaded.
//!
//! ```text
//! Arc<[u8]>: [counts 16][gen 8][expires 8][value_len 8][key_len 4][ns 2][kind 1][pad 1][key][$len CRLF value CRLF]
//! ```
//!
//! A hash's fields are kept beside it (`fields`): they are answered field by field and
//! never copied whole.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::answer::{self, Data, DataRef};

const GEN: usize = 0;
const EXPIRES: usize = 8;
const VALUE_LEN: usize = 16;
const KEY_LEN: usize = 24;
const NS: usize = 28;
const KIND: usize = 30;
const HEADER: usize = 32;

const MISSING: u8 = 0;
const STR: u8 = 1;
const HASH: u8 = 2;

/// The header, or zeros for a buffer too short to hold one (which `stored` never makes).
fn head(buf: &[u8]) -> &[u8; HEADER] {
    buf.first_chunk::<HEADER>().unwrap_or(&[0; HEADER])
}

fn read_u64(head: &[u8; HEADER], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&head[at..at + 8]);
    u64::from_ne_bytes(b)
}

fn key_len(head: &[u8; HEADER]) -> usize {
    let mut b = [0u8; 4];
    b.copy_from_slice(&head[KEY_LEN..KEY_LEN + 4]);
    u32::from_ne_bytes(b) as usize
}

fn key_of(buf: &[u8]) -> &[u8] {
    buf.get(HEADER..HEADER + key_len(head(buf)))
        .unwrap_or_default()
}

/// What follows the key: a string's `GET` reply.
fn tail(buf: &[u8]) -> &[u8] {
    buf.get(HEADER + key_len(head(buf))..).unwrap_or_default()
}

/// The store's key: an entry's allocation, hashed and compared by the key it holds, so
/// that a lookup by `&[u8]` finds it.
#[derive(Clone)]
pub(super) struct Key(Arc<[u8]>);

impl Key {
    pub(super) fn bytes(&self) -> &[u8] {
        key_of(&self.0)
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The same as hashing the `[u8]` a lookup passes (Borrow's contract).
        self.bytes().hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Key {}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

/// One cached key. Cloning it bumps the count of its allocation (and of a hash's
/// fields).
#[derive(Clone)]
pub struct Entry {
    buf: Arc<[u8]>,
    fields: Option<Arc<[(Bytes, Bytes)]>>,
}

impl Entry {
    /// An entry and the key to store it under (`None` for a key too long to hold).
    /// Everything is copied, since `key` and
    /// `data` may be slices of a connection's read buffer, which an entry must not keep
    /// alive.
    pub(super) fn stored(
        key: &[u8],
        data: Data,
        gen: u64,
        expires_ns: u64,
        ns: u16,
    ) -> Option<(Key, Entry)> {
        let (kind, value_len) = match &data {
            Data::Str(v) => (STR, v.len()),
            Data::Hash(_) => (HASH, 0),
            Data::Missing => (MISSING, 0),
        };
        // A key of 4 GiB or more (possible only with a raised bulk limit) is not cached.
        let key_len = u32::try_from(key.len()).ok()?;
        let mut buf = BytesMut::with_capacity(HEADER + key.len() + value_len + 24);
        buf.extend_from_slice(&gen.to_ne_bytes());
        buf.extend_from_slice(&expires_ns.to_ne_bytes());
        buf.extend_from_slice(&(value_len as u64).to_ne_bytes());
        buf.extend_from_slice(&key_len.to_ne_bytes());
        buf.extend_from_slice(&ns.to_ne_bytes());
        buf.extend_from_slice(&[kind, 0]);
        buf.extend_from_slice(key);
        let fields = match data {
            Data::Str(v) => {
                answer::put_bulk(&mut buf, &v);
                None
            }
            Data::Hash(fields) => Some(
                fields
                    .iter()
                    .map(|(f, v)| (Bytes::copy_from_slice(f), Bytes::copy_from_slice(v)))
                    .collect::<Arc<[_]>>(),
            ),
            Data::Missing => None,
        };
        let buf: Arc<[u8]> = Arc::from(&buf[..]);
        Some((Key(buf.clone()), Entry { buf, fields }))
    }

    /// The stream generation it was filled under.
    pub(super) fn gen(&self) -> u64 {
        read_u64(head(&self.buf), GEN)
    }

    /// When it stops being served, in nanoseconds from the cache's epoch.
    pub(super) fn expires_ns(&self) -> u64 {
        read_u64(head(&self.buf), EXPIRES)
    }

    /// The id of its namespace's counters.
    pub(super) fn ns(&self) -> u16 {
        let h = head(&self.buf);
        u16::from_ne_bytes([h[NS], h[NS + 1]])
    }

    pub fn key(&self) -> &[u8] {
        key_of(&self.buf)
    }

    /// For a string: the whole reply to `GET` (`$len CRLF value CRLF`, the same in
    /// RESP2 and RESP3), so a hit is one copy.
    pub fn bulk(&self) -> Option<&[u8]> {
        (head(&self.buf)[KIND] == STR).then(|| tail(&self.buf))
    }

    /// What it holds.
    pub fn data(&self) -> DataRef<'_> {
        let h = head(&self.buf);
        match (h[KIND], &self.fields) {
            (STR, _) => {
                let bulk = tail(&self.buf);
                let len = read_u64(h, VALUE_LEN) as usize;
                let start = bulk.len().saturating_sub(len + 2);
                DataRef::Str(bulk.get(start..start + len).unwrap_or_default())
            }
            (HASH, Some(fields)) => DataRef::Hash(fields),
            _ => DataRef::Missing,
        }
    }

    /// What it counts against `max_bytes`: key, value and [`super::ENTRY_OVERHEAD`].
    pub(super) fn weight(&self) -> u64 {
        (self.key().len() + self.data().size() + super::ENTRY_OVERHEAD) as u64
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("data", &self.data())
            .field("gen", &self.gen())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of<T: Hash + ?Sized>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn the_header_key_and_reply_read_back() {
        let (key, e) = Entry::stored(
            b"s:a",
            Data::Str(Bytes::from_static(b"a\r\nb")),
            7,
            u64::MAX - 1,
            513,
        )
        .unwrap();
        assert_eq!(key.bytes(), b"s:a");
        assert_eq!(e.key(), b"s:a");
        assert_eq!((e.gen(), e.expires_ns(), e.ns()), (7, u64::MAX - 1, 513));
        assert_eq!(e.bulk(), Some(&b"$4\r\na\r\nb\r\n"[..]));
        assert_eq!(e.data(), DataRef::Str(b"a\r\nb"));
        assert_eq!(e.weight(), (3 + 4 + super::super::ENTRY_OVERHEAD) as u64);

        let (_, e) = Entry::stored(b"", Data::Str(Bytes::new()), 0, 0, 0).unwrap();
        assert_eq!((e.key(), e.bulk()), (&b""[..], Some(&b"$0\r\n\r\n"[..])));
        assert_eq!(e.data(), DataRef::Str(b""));

        let fields = vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))];
        let (_, e) = Entry::stored(b"s:h", Data::Hash(fields.clone()), 1, 2, 3).unwrap();
        assert_eq!((e.bulk(), e.data()), (None, DataRef::Hash(&fields)));
        let (_, e) = Entry::stored(b"s:m", Data::Missing, 1, 2, 3).unwrap();
        assert_eq!((e.bulk(), e.data()), (None, DataRef::Missing));
    }

    #[test]
    fn a_key_hashes_and_compares_as_the_bytes_it_holds() {
        let (a, _) = Entry::stored(b"s:a", Data::Missing, 1, 2, 3).unwrap();
        let (b, _) = Entry::stored(b"s:a", Data::Str(Bytes::from_static(b"x")), 9, 9, 9).unwrap();
        let (c, _) = Entry::stored(b"s:b", Data::Missing, 1, 2, 3).unwrap();
        assert_eq!(hash_of(&a), hash_of(&b"s:a"[..]));
        assert!(a == b && a != c);
        let borrowed: &[u8] = a.borrow();
        assert_eq!(borrowed, b"s:a");
    }
}
