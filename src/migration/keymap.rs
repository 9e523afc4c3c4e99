//! Key names in the old and the new store.
//!
//! Without `old_db` a key has the same name in both stores. With it, the old store
//! keeps the keys unprefixed in one db and the new store puts the prefix of the
//! namespace mapped to that db in front: `abc` in old db 3 is `session:abc` in the new
//! store. Keys of the new store outside that prefix are not part of the migration.

use bytes::{Bytes, BytesMut};

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Old,
    New,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Old => Side::New,
            Side::New => Side::Old,
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Side::Old => "old",
            Side::New => "new",
        }
    }
}

/// How key names translate between the stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMap {
    /// The prefix old-db keys take in the new store; `None` = same names.
    prefix: Option<Bytes>,
}

impl KeyMap {
    pub fn same() -> KeyMap {
        KeyMap { prefix: None }
    }

    pub fn prefixed(prefix: Bytes) -> KeyMap {
        KeyMap {
            prefix: Some(prefix),
        }
    }

    /// The prefix new-store names carry, when keys are renamed.
    pub fn prefix(&self) -> Option<&Bytes> {
        self.prefix.as_ref()
    }

    /// A new-store name as the old store knows it; `None` when the key is outside the
    /// migrated prefix.
    pub fn to_old(&self, key: &Bytes) -> Option<Bytes> {
        match &self.prefix {
            None => Some(key.clone()),
            Some(p) if key.starts_with(p) => Some(key.slice(p.len()..)),
            Some(_) => None,
        }
    }

    /// An old-store name as the new store knows it.
    pub fn to_new(&self, key: &[u8]) -> Bytes {
        match &self.prefix {
            None => Bytes::copy_from_slice(key),
            Some(p) => {
                let mut out = BytesMut::with_capacity(p.len() + key.len());
                out.extend_from_slice(p);
                out.extend_from_slice(key);
                out.freeze()
            }
        }
    }

    /// A new-store name on `side`.
    pub fn on(&self, side: Side, key: &Bytes) -> Option<Bytes> {
        match side {
            Side::New => Some(key.clone()),
            Side::Old => self.to_old(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_names_round_trip() {
        let map = KeyMap::prefixed(Bytes::from_static(b"session:"));
        let new = map.to_new(b"abc");
        assert_eq!(&new[..], b"session:abc");
        assert_eq!(map.to_old(&new).as_deref(), Some(&b"abc"[..]));
        assert_eq!(map.to_old(&Bytes::from_static(b"lock:x")), None);
        let same = KeyMap::same();
        assert_eq!(same.on(Side::Old, &new), Some(new.clone()));
        assert_eq!(Side::Old.other(), Side::New);
    }
}
