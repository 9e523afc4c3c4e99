//! Command policy: which commands the sidecar refuses before they reach Redis.
//!
//! `check` is a pure function of the configured policy and a request's
//! arguments; the server calls it, counts and replies. This module owns the
//! `deny_commands` list (names and `NAME SUBCOMMAND` pairs). Key namespaces,
//! flush safety and TTL rules join it with the namespaces stage.

use std::collections::HashSet;

use bytes::Bytes;

use crate::command::display_name;

/// A compiled policy, built once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    denied_names: HashSet<String>,
    denied_subcommands: HashSet<String>,
}

/// Why a request was refused; the text becomes `-NOPERM <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl Policy {
    /// Build from `policy.deny_commands` entries (`NAME` or `NAME SUBCOMMAND`, any case).
    pub fn new(deny_commands: &[String]) -> Policy {
        let mut policy = Policy::default();
        for entry in deny_commands {
            let entry = entry.split_whitespace().collect::<Vec<_>>().join(" ");
            let entry = entry.to_ascii_uppercase();
            if entry.contains(' ') {
                policy.denied_subcommands.insert(entry);
            } else if !entry.is_empty() {
                policy.denied_names.insert(entry);
            }
        }
        policy
    }

    /// Allow or refuse one request.
    pub fn check(&self, args: &[Bytes]) -> Result<(), Denied> {
        if self.denied_names.is_empty() && self.denied_subcommands.is_empty() {
            return Ok(());
        }
        let (name, sub) = display_name(args);
        let refused = if self.denied_names.contains(&name) {
            Some(name)
        } else {
            sub.filter(|s| self.denied_subcommands.contains(s))
        };
        match refused {
            Some(what) => Err(Denied(format!(
                "'{what}' is refused by the sidecar's policy (policy.deny_commands); run it against Redis directly if an operator really needs it"
            ))),
            None => Ok(()),
        }
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
    fn empty_list_allows_everything() {
        let p = Policy::new(&[]);
        assert!(p.check(&args("SHUTDOWN")).is_ok());
    }
}
