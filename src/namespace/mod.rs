//! The namespace stage: which namespace a key belongs to, legacy `SELECT n` mapped
//! onto a prefix, and the rewriting both ways (prefix on the way in, strip on the way out).
//!
//! Pure: no IO. The server asks [`Namespaces`] about each request's keys (found by
//! [`crate::keys`]); `reply` rewrites replies and pub/sub frames that carry key names,
//! `ttl` applies the per-namespace TTL rules.

pub mod reply;
mod touch;
pub mod ttl;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::cache::{Cache, NsStats};

use crate::config::NamespaceConfig;

/// One configured namespace, compiled.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub prefix: Bytes,
    /// `prefix` with glob metacharacters escaped, to start a `MATCH` / `KEYS` pattern.
    pub prefix_glob: Bytes,
    /// What [`Namespace::has_ttl_rules`] answers (asked per key).
    ttl_rules: bool,
    /// The prefix's first 8 bytes (fewer: zero-padded) as a little-endian word, and the
    /// mask of the bytes it has, for [`Namespace::contains`].
    head: u64,
    head_mask: u64,
    pub config: NamespaceConfig,
    /// Cache counters, set when this namespace is cached (`cache = true` and the cache on).
    pub cache: Option<Arc<NsStats>>,
}

impl Namespace {
    pub fn new(config: NamespaceConfig) -> Namespace {
        let prefix = Bytes::copy_from_slice(config.prefix.as_bytes());
        let c = &config;
        let mut head = [0u8; 8];
        let mut mask = [0u8; 8];
        for ((h, m), &p) in head.iter_mut().zip(mask.iter_mut()).zip(prefix.iter()) {
            *h = p;
            *m = 0xff;
        }
        Namespace {
            head: u64::from_le_bytes(head),
            head_mask: u64::from_le_bytes(mask),
            prefix_glob: glob_escape(&prefix),
            prefix,
            ttl_rules: c.default_ttl.is_some()
                || c.max_ttl.is_some()
                || c.require_ttl
                || c.touch_on_read.is_some(),
            config,
            cache: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// A default, maximum, required or sliding TTL applies to this namespace's keys.
    pub fn has_ttl_rules(&self) -> bool {
        self.ttl_rules
    }

    /// True when `key` (as Redis sees it) lies in this namespace.
    pub fn contains(&self, key: &[u8]) -> bool {
        // Asked for every key of every request: a key of 8 bytes or more is compared a
        // word at a time, which is all of it for the usual short prefix.
        match key.first_chunk::<8>() {
            Some(word) => {
                u64::from_le_bytes(*word) & self.head_mask == self.head
                    && (self.prefix.len() <= 8 || key.starts_with(&self.prefix))
            }
            None => key.starts_with(&self.prefix),
        }
    }

    /// The name Redis sees for a key a mapped-db client names `key`.
    pub fn add_prefix(&self, key: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.prefix.len() + key.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(key);
        out.freeze()
    }

    /// The name a mapped-db client knows for `key`; `None` when `key` is not in this namespace.
    pub fn strip<'a>(&self, key: &'a [u8]) -> Option<&'a [u8]> {
        key.strip_prefix(self.prefix.as_ref())
    }

    /// A client's glob pattern (KEYS, SCAN MATCH, PSUBSCRIBE on keyspace channels) scoped to
    /// this namespace: the escaped prefix, then the pattern unchanged.
    pub fn scope_pattern(&self, pattern: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.prefix_glob.len() + pattern.len());
        out.extend_from_slice(&self.prefix_glob);
        out.extend_from_slice(pattern);
        out.freeze()
    }
}

/// Every configured namespace. Prefixes never overlap (the config refuses it), so a key
/// belongs to at most one.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    list: Vec<Namespace>,
    /// `(db, index into list)` of the namespaces legacy dbs map onto (asked per request).
    dbs: Vec<(u32, usize)>,
    /// Some namespace has a TTL rule (default, max, required or sliding).
    ttl_rules: bool,
    /// Some namespace is served from the local cache.
    cached: bool,
}

impl Namespaces {
    pub fn new(configs: &[NamespaceConfig]) -> Namespaces {
        let list: Vec<Namespace> = configs.iter().cloned().map(Namespace::new).collect();
        Namespaces {
            ttl_rules: list.iter().any(Namespace::has_ttl_rules),
            dbs: list
                .iter()
                .enumerate()
                .filter_map(|(i, ns)| ns.config.db.map(|db| (db, i)))
                .collect(),
            cached: false,
            list,
        }
    }

    /// Serve the namespaces with `cache = true` from `cache`.
    pub fn attach_cache(&mut self, cache: &Cache) {
        for ns in self.list.iter_mut().filter(|ns| ns.config.cache) {
            ns.cache = Some(cache.stats_for(&ns.config.name));
            self.cached = true;
        }
    }

    /// True when some namespace is served from the local cache.
    pub fn any_cached(&self) -> bool {
        self.cached
    }

    /// The prefixes of the cached namespaces (what the invalidation stream subscribes to).
    pub fn cached_prefixes(&self) -> Vec<Bytes> {
        self.list
            .iter()
            .filter(|ns| ns.cache.is_some())
            .map(|ns| ns.prefix.clone())
            .collect()
    }

    /// True when some namespace has a TTL rule (so requests need a TTL plan).
    pub fn any_ttl_rules(&self) -> bool {
        self.ttl_rules
    }

    /// With no namespace configured the sidecar is a transparent proxy.
    pub fn enabled(&self) -> bool {
        !self.list.is_empty()
    }

    /// The namespace `key` (as Redis sees it) belongs to.
    pub fn of_key(&self, key: &[u8]) -> Option<&Namespace> {
        self.list.iter().find(|ns| ns.contains(key))
    }

    /// The namespace legacy `SELECT db` maps onto.
    pub fn by_db(&self, db: u32) -> Option<&Namespace> {
        let &(_, i) = self.dbs.iter().find(|&&(d, _)| d == db)?;
        self.list.get(i)
    }

    /// Case-sensitive, as configured.
    pub fn by_name(&self, name: &[u8]) -> Option<&Namespace> {
        self.list
            .iter()
            .find(|ns| ns.config.name.as_bytes() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Namespace> {
        self.list.iter()
    }
}

/// Escape the glob metacharacters Redis's `stringmatchlen` knows (`* ? [ ] \`), so the
/// bytes match only themselves.
pub fn glob_escape(bytes: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(bytes.len() + 4);
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.extend_from_slice(b"\\");
        }
        out.extend_from_slice(&[b]);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use proptest::prelude::*;

    fn namespaces(prefixes: &[String]) -> Namespaces {
        let mut toml = String::new();
        for (i, p) in prefixes.iter().enumerate() {
            toml.push_str(&format!(
                "[[namespace]]\nname = \"ns{i}\"\nprefix = {p:?}\ndb = {}\n",
                i + 1
            ));
        }
        Namespaces::new(&Config::from_toml_str(&toml).unwrap().namespaces)
    }

    #[test]
    fn glob_escape_covers_every_metacharacter() {
        assert_eq!(
            glob_escape(b"a*b?c[d]e\\f").as_ref(),
            b"a\\*b\\?c\\[d\\]e\\\\f"
        );
        let ns = Namespace::new(namespaces(&["we*ird:".into()]).list[0].config.clone());
        assert_eq!(ns.scope_pattern(b"u1*").as_ref(), b"we\\*ird:u1*");
    }

    #[test]
    fn keys_are_found_by_prefix_and_dbs_by_mapping() {
        let ns = namespaces(&["session:".into(), "lock:".into()]);
        assert_eq!(ns.of_key(b"session:x").map(Namespace::name), Some("ns0"));
        assert_eq!(ns.of_key(b"lock:").map(Namespace::name), Some("ns1"));
        assert!(ns.of_key(b"sessio").is_none());
        assert_eq!(ns.by_db(2).map(Namespace::name), Some("ns1"));
        assert!(ns.by_db(0).is_none());
        assert_eq!(
            ns.by_name(b"ns0").map(|n| n.prefix.as_ref()),
            Some(&b"session:"[..])
        );
    }

    /// Prefixes the config accepts: non-empty, no braces, none starting another.
    fn prefix_sets() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-z0-9:*?_\\[\\]-]{1,8}", 1..5).prop_map(|mut list| {
            let mut kept: Vec<String> = Vec::new();
            list.sort();
            for p in list.drain(..) {
                if !kept
                    .iter()
                    .any(|k| k.starts_with(&p) || p.starts_with(k.as_str()))
                {
                    kept.push(p);
                }
            }
            kept
        })
    }

    proptest! {
        /// The word-at-a-time prefix test is `starts_with`, at every length on both sides.
        #[test]
        fn contains_is_starts_with(
            prefix in "[a-c:]{1,12}",
            key in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b':')], 0..16),
        ) {
            let ns = &namespaces(std::slice::from_ref(&prefix)).list[0];
            prop_assert_eq!(ns.contains(&key), key.starts_with(prefix.as_bytes()));
            let mut inside = prefix.clone().into_bytes();
            inside.extend_from_slice(&key);
            prop_assert!(ns.contains(&inside));
        }

        /// For random keys and namespaces: prefixing then stripping gives the key back,
        /// and the prefixed key always belongs to the namespace it was prefixed for.
        #[test]
        fn rewrite_then_strip_is_the_identity(
            prefixes in prefix_sets(),
            key in proptest::collection::vec(any::<u8>(), 0..40),
            pick in any::<usize>(),
        ) {
            let all = namespaces(&prefixes);
            let ns = &all.list[pick % all.list.len()];
            let upstream = ns.add_prefix(&key);
            prop_assert_eq!(ns.strip(&upstream), Some(&key[..]));
            prop_assert_eq!(all.of_key(&upstream).map(Namespace::name), Some(ns.name()));
            // A key that carries hash tags keeps them: the prefix holds no braces.
            let braces = ns.prefix.iter().any(|&b| b == b'{' || b == b'}');
            prop_assert!(!braces);
            if let Some(open) = key.iter().position(|&b| b == b'{') {
                let shifted = open + ns.prefix.len();
                prop_assert_eq!(upstream.iter().position(|&b| b == b'{'), Some(shifted));
            }
        }
    }
}
