//! Per-namespace TTL rules. (Interface stub; filled in on its own branch.)

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::Namespace;
use crate::keys::{CommandInfo, KeyArg};

pub struct TtlPlan {
    pub args: Option<Vec<Bytes>>,
    pub follow_ups: Vec<Vec<Bytes>>,
}

pub fn plan(
    cmd: &CommandInfo,
    args: &[Bytes],
    keys: &[(KeyArg, &Namespace)],
    touch: &TouchThrottle,
    now: SystemTime,
    mono: Instant,
) -> Result<TtlPlan, String> {
    let _ = (cmd, args, keys, touch, now, mono);
    Ok(TtlPlan {
        args: None,
        follow_ups: Vec::new(),
    })
}

pub struct TouchThrottle {}

impl TouchThrottle {
    pub fn new(capacity: usize) -> TouchThrottle {
        let _ = capacity;
        TouchThrottle {}
    }

    pub fn due(&self, key: &[u8], interval: Duration, now: Instant) -> bool {
        let _ = (key, interval, now);
        false
    }
}
