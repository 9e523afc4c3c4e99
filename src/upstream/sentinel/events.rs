//! Sentinel's pub/sub event messages, parsed into what discovery acts on.
//!
//! Pure: no IO. Sentinel publishes each event on a channel named after it
//! (`+switch-master`, `+selected-slave`, ...) with a text payload in one of two
//! shapes (as observed from redis-sentinel 7.0.15):
//!
//! - `+switch-master`: `<master-name> <old-ip> <old-port> <new-ip> <new-port>`;
//! - everything else, "instance details":
//!   `<type> <name> <ip> <port> [@ <master-name> <master-ip> <master-port>] [text...]`,
//!   where `<type>` is `master`, `slave` or `sentinel` and the `@` part is
//!   present unless the instance is the master itself.
//!
//! The leader sentinel publishes the failover steps; the others only see the
//! replica's role change and `+switch-master`. This module does not filter by
//! master name or keep state; the discovery task does both.

use crate::config::Endpoint;

/// Channels subscribed on every sentinel.
pub const CHANNELS: &[&str] = &[
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
    "+failover-end",
    "+failover-end-for-timeout",
    "+switch-master",
    "+convert-to-slave",
    "-role-change",
];

/// Patterns subscribed on every sentinel (the abort reasons vary).
pub const PATTERNS: &[&str] = &["-failover-abort-*"];

/// One event about some master, as far as discovery cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The leader sentinel is promoting a replica of `master`, whose primary
    /// is `primary` (the one being replaced): writes must wait.
    FailoverStarted { master: String, primary: Endpoint },
    /// A replica of `master` (whose primary is `primary`) reports itself as a
    /// master. Every sentinel sees this, not just the leader: a promotion
    /// happened or is happening, or a former primary has not been demoted yet.
    ReplicaClaimsMaster {
        master: String,
        primary: Endpoint,
        replica: Endpoint,
    },
    /// Sentinel now names `new` as the primary of `master`.
    SwitchMaster {
        master: String,
        old: Endpoint,
        new: Endpoint,
    },
    /// The failover finished or an instance was reconfigured: re-resolve.
    Settled { master: String },
    /// The failover of `primary` was abandoned; it stays: re-resolve.
    Aborted { master: String, primary: Endpoint },
}

impl Event {
    /// The master name the event is about.
    pub fn master(&self) -> &str {
        match self {
            Event::FailoverStarted { master, .. }
            | Event::ReplicaClaimsMaster { master, .. }
            | Event::SwitchMaster { master, .. }
            | Event::Settled { master }
            | Event::Aborted { master, .. } => master,
        }
    }
}

/// Parse one message; `None` for channels discovery ignores or malformed payloads.
pub fn parse(channel: &[u8], payload: &[u8]) -> Option<Event> {
    let channel = std::str::from_utf8(channel).ok()?;
    let payload = std::str::from_utf8(payload).ok()?;
    if channel == "+switch-master" {
        return switch_master(payload);
    }
    let instance = Instance::parse(payload)?;
    let master = instance.master.to_owned();
    let primary = instance.master_addr.clone();
    match channel {
        "+selected-slave"
        | "+failover-state-send-slaveof-noone"
        | "+failover-state-wait-promotion"
        | "+promoted-slave"
        | "+failover-state-reconf-slaves" => Some(Event::FailoverStarted { master, primary }),
        "+failover-end" | "+failover-end-for-timeout" | "+convert-to-slave" => {
            Some(Event::Settled { master })
        }
        "-role-change"
            if instance.kind == "slave"
                && instance.rest.ends_with("new reported role is master") =>
        {
            Some(Event::ReplicaClaimsMaster {
                master,
                primary,
                replica: instance.addr,
            })
        }
        c if c.starts_with("-failover-abort-") => Some(Event::Aborted { master, primary }),
        _ => None,
    }
}

fn switch_master(payload: &str) -> Option<Event> {
    let mut words = payload.split_ascii_whitespace();
    let master = words.next()?.to_owned();
    let old = endpoint(words.next()?, words.next()?)?;
    let new = endpoint(words.next()?, words.next()?)?;
    Some(Event::SwitchMaster { master, old, new })
}

/// The instance-details payload.
struct Instance<'a> {
    kind: &'a str,
    addr: Endpoint,
    master: &'a str,
    /// The master's address: after `@`, or the instance's own for a master.
    master_addr: Endpoint,
    /// Free text after the address parts (e.g. `new reported role is master`).
    rest: String,
}

impl<'a> Instance<'a> {
    fn parse(payload: &'a str) -> Option<Instance<'a>> {
        let words: Vec<&str> = payload.split_ascii_whitespace().collect();
        let (&kind, &name) = (words.first()?, words.get(1)?);
        let addr = endpoint(words.get(2)?, words.get(3)?)?;
        let (master, master_addr, rest_from) = if words.get(4) == Some(&"@") {
            let master_addr = endpoint(words.get(6)?, words.get(7)?)?;
            (*words.get(5)?, master_addr, 8)
        } else if kind == "master" {
            (name, addr.clone(), 4)
        } else {
            return None;
        };
        let rest = words.get(rest_from..).unwrap_or_default().join(" ");
        Some(Instance {
            kind,
            addr,
            master,
            master_addr,
            rest,
        })
    }
}

fn endpoint(host: &str, port: &str) -> Option<Endpoint> {
    Some(Endpoint {
        host: host.to_owned(),
        port: port.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn ev(channel: &str, payload: &str) -> Option<Event> {
        parse(channel.as_bytes(), payload.as_bytes())
    }

    fn started() -> Option<Event> {
        Some(Event::FailoverStarted {
            master: "mymaster".into(),
            primary: ep(17302),
        })
    }

    // Payloads below were captured from redis-sentinel 7.0.15 during `SENTINEL FAILOVER`.

    #[test]
    fn leader_failover_steps_start_a_failover() {
        let replica = "slave 127.0.0.1:17301 127.0.0.1 17301 @ mymaster 127.0.0.1 17302";
        assert_eq!(ev("+selected-slave", replica), started());
        assert_eq!(ev("+failover-state-send-slaveof-noone", replica), started());
        assert_eq!(ev("+failover-state-wait-promotion", replica), started());
        assert_eq!(ev("+promoted-slave", replica), started());
        assert_eq!(
            ev(
                "+failover-state-reconf-slaves",
                "master mymaster 127.0.0.1 17302"
            ),
            started()
        );
    }

    #[test]
    fn switch_master_carries_both_addresses() {
        assert_eq!(
            ev("+switch-master", "mymaster 127.0.0.1 17302 127.0.0.1 17301"),
            Some(Event::SwitchMaster {
                master: "mymaster".into(),
                old: ep(17302),
                new: ep(17301),
            })
        );
        assert_eq!(
            ev("+switch-master", "mymaster 127.0.0.1 17302 127.0.0.1"),
            None
        );
        assert_eq!(
            ev("+switch-master", "mymaster 127.0.0.1 x 127.0.0.1 1"),
            None
        );
    }

    #[test]
    fn end_and_reconfiguration_settle() {
        let settled = Some(Event::Settled {
            master: "mymaster".into(),
        });
        assert_eq!(
            ev("+failover-end", "master mymaster 127.0.0.1 17302"),
            settled
        );
        assert_eq!(
            ev(
                "+convert-to-slave",
                "slave 127.0.0.1:17302 127.0.0.1 17302 @ mymaster 127.0.0.1 17301"
            ),
            settled
        );
    }

    #[test]
    fn aborts_are_recognised_by_prefix() {
        assert_eq!(
            ev(
                "-failover-abort-not-elected",
                "master mymaster 127.0.0.1 17302"
            ),
            Some(Event::Aborted {
                master: "mymaster".into(),
                primary: ep(17302),
            })
        );
    }

    #[test]
    fn only_a_replica_claiming_master_counts_as_a_role_change() {
        let promoted = "slave 127.0.0.1:17301 127.0.0.1 17301 @ mymaster 127.0.0.1 17302 new reported role is master";
        assert_eq!(
            ev("-role-change", promoted),
            Some(Event::ReplicaClaimsMaster {
                master: "mymaster".into(),
                primary: ep(17302),
                replica: ep(17301),
            })
        );
        let demoted = "slave 127.0.0.1:17301 127.0.0.1 17301 @ mymaster 127.0.0.1 17302 new reported role is slave";
        assert_eq!(ev("-role-change", demoted), None);
        assert_eq!(ev("+role-change", demoted), None);
    }

    #[test]
    fn master_names_come_from_the_right_place() {
        let other = ev(
            "+selected-slave",
            "slave 10.0.0.2:6379 10.0.0.2 6379 @ othermaster 10.0.0.1 6379",
        );
        assert_eq!(other.as_ref().map(Event::master), Some("othermaster"));
    }

    #[test]
    fn ignored_and_malformed_messages() {
        assert_eq!(ev("+new-epoch", "2"), None);
        assert_eq!(ev("+vote-for-leader", "99abb1e90f2cfe 2"), None);
        assert_eq!(ev("+selected-slave", "slave 127.0.0.1:1 127.0.0.1 1"), None);
        assert_eq!(
            ev("+selected-slave", "slave a:1 a 1 @ mymaster 127.0.0.1"),
            None
        );
        assert_eq!(ev("+selected-slave", ""), None);
        assert_eq!(ev("+failover-end", "master mymaster 127.0.0.1"), None);
        assert_eq!(parse(b"+failover-end", b"master \xff 127.0.0.1 1"), None);
    }
}
