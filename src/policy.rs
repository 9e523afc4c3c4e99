//! Command policy: which commands the sidecar refuses before they reach Redis.
//!
//! `check` is a pure function of the configured policy and a request's
//! arguments; the server calls it, counts and replies. This module owns the
//! `deny_commands` list (names and `NAME SUBCOMMAND` pairs). Key namespaces,
//! flush safety and TTL rules join it with the namespaces stage.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::command::{display_name, is_container, upper};

/// A compiled policy, built once from the configuration. Names are stored upper-cased
/// as bytes so a check costs a stack copy and a hash lookup, with no allocation; and
/// most commands (GET, SET...) are let through before that by [`Screen`].
#[derive(Debug, Clone, Default)]
pub struct Policy {
    denied_names: HashSet<Vec<u8>>,
    /// Container command (`CONFIG`) -> its denied subcommands (`SET`).
    denied_subcommands: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    screen: Screen,
}

/// The (upper-cased first byte, length) pairs of every denied name and of every
/// container with denied subcommands: a command whose pair is not here is allowed
/// without hashing its name. Lengths of 63 and more share the last bit.
#[derive(Debug, Clone)]
struct Screen([u64; 256]);

impl Default for Screen {
    fn default() -> Screen {
        Screen([0; 256])
    }
}

impl Screen {
    fn bit(len: usize) -> u64 {
        1 << len.min(63)
    }

    fn add(&mut self, name: &[u8]) {
        if let Some(&first) = name.first() {
            self.0[first.to_ascii_uppercase() as usize] |= Screen::bit(name.len());
        }
    }

    /// False when `name` (any case) cannot be denied.
    fn may_deny(&self, name: &[u8]) -> bool {
        name.first().is_some_and(|&first| {
            self.0[first.to_ascii_uppercase() as usize] & Screen::bit(name.len()) != 0
        })
    }
}

/// Why a request was refused; the text becomes `-NOPERM <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl Policy {
    /// Build from `policy.deny_commands` entries (`NAME` or `NAME SUBCOMMAND`, any case).
    /// A subcommand entry only applies to commands that have subcommands (`CONFIG SET`).
    pub fn new(deny_commands: &[String]) -> Policy {
        let mut policy = Policy::default();
        for entry in deny_commands {
            let entry = entry.to_ascii_uppercase();
            let words: Vec<&str> = entry.split_whitespace().collect();
            match words.as_slice() {
                [name] => {
                    policy.screen.add(name.as_bytes());
                    policy.denied_names.insert(name.as_bytes().to_vec());
                }
                [name, sub] if is_container(name) => {
                    policy.screen.add(name.as_bytes());
                    policy
                        .denied_subcommands
                        .entry(name.as_bytes().to_vec())
                        .or_default()
                        .insert(sub.as_bytes().to_vec());
                }
                _ => {}
            }
        }
        policy
    }

    /// Allow or refuse one request.
    pub fn check(&self, args: &[Bytes]) -> Result<(), Denied> {
        let Some(first) = args.first() else {
            return Ok(());
        };
        let Some(name_denied) = self.denial(first, args.get(1).map(|a| &a[..])) else {
            return Ok(());
        };
        let (name, sub) = display_name(args);
        let what = if name_denied {
            name
        } else {
            sub.unwrap_or(name)
        };
        Err(Denied(format!(
            "'{what}' is refused by the sidecar's policy (policy.deny_commands); run it against Redis directly if an operator really needs it"
        )))
    }

    /// Whether a request named `first` (with `second` after it) is refused: `Some(true)`
    /// by its name, `Some(false)` by its subcommand, `None` when allowed.
    #[inline]
    pub fn denial(&self, first: &[u8], second: Option<&[u8]>) -> Option<bool> {
        if self.denied_names.is_empty() && self.denied_subcommands.is_empty() {
            return None;
        }
        if !self.screen.may_deny(first) {
            return None;
        }
        let mut name_buf = [0u8; 32];
        let owned;
        let name = match upper(first, &mut name_buf) {
            Some(name) => name,
            None => {
                owned = first.to_ascii_uppercase();
                &owned
            }
        };
        if self.denied_names.contains(name) {
            return Some(true);
        }
        let sub_denied = match (self.denied_subcommands.get(name), second) {
            (Some(subs), Some(sub)) => {
                let mut sub_buf = [0u8; 32];
                upper(sub, &mut sub_buf).is_some_and(|sub| subs.contains(sub))
            }
            _ => false,
        };
        sub_denied.then_some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_args as args;

    #[test]
    fn refuses_names_and_subcommands_in_any_case() {
        let p = Policy::new(&["debug".into(), "CONFIG  set".into()]);
        assert!(p.check(&args("DEBUG sleep 0")).is_err());
        assert!(p.check(&args("config SET maxmemory 1")).is_err());
        assert!(p.check(&args("CONFIG GET maxmemory")).is_ok());
        assert!(p.check(&args("GET debug")).is_ok());
        let Denied(text) = p.check(&args("Config Set a b")).unwrap_err();
        assert!(text.starts_with("'CONFIG SET' is refused"), "{text}");
    }

    #[test]
    fn the_screen_passes_only_names_that_cannot_be_denied() {
        let p = Policy::new(&["flushall".into(), "client kill".into()]);
        assert!(p.check(&args("FLUSHALL")).is_err());
        assert!(p.check(&args("fLuShAlL")).is_err());
        assert!(p.check(&args("client KILL id 3")).is_err());
        // Same first letter and length as a denied name: hashed, and allowed.
        assert!(p.check(&args("FLUSHDBX")).is_ok());
        assert!(p.check(&args("CLIENT LIST")).is_ok());
        assert!(p.screen.may_deny(b"flushall"));
        assert!(!p.screen.may_deny(b"GET"));
        assert!(!p.screen.may_deny(b"FLUSHDB"));
        assert!(!p.screen.may_deny(b""));
    }

    #[test]
    fn empty_list_allows_everything() {
        let p = Policy::new(&[]);
        assert!(p.check(&args("SHUTDOWN")).is_ok());
    }
}
