//! The eviction advisor: sessions and locks must not be evicted, so when a namespace
//! marked `must_not_evict` shares a Redis whose `maxmemory-policy` can evict its keys,
//! say so in the log and in `SIDECAR NAMESPACES`.
//!
//! The upstream's settings are read when the sidecar connects, after every failover
//! (a new primary may be configured differently) and once a minute (CONFIG SET).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Ctx;
use crate::namespace::Namespaces;
use crate::resp::value::Value;

/// How often the upstream's eviction settings are read again.
const RECHECK: Duration = Duration::from_secs(60);
/// Retry delay while the upstream cannot be asked.
const RETRY: Duration = Duration::from_secs(1);

/// The warning for `policy` / `maxmemory` (bytes, 0 = no limit), or `None` when the
/// protected namespaces are safe.
pub(super) fn eviction_advice(
    policy: &str,
    maxmemory: u64,
    namespaces: &Namespaces,
) -> Option<String> {
    let protected: Vec<&str> = namespaces
        .iter()
        .filter(|ns| ns.config.must_not_evict)
        .map(|ns| ns.name())
        .collect();
    if protected.is_empty() || policy == "noeviction" {
        return None;
    }
    let which = if policy.starts_with("volatile-") {
        "keys with a TTL (sessions and locks have one)"
    } else {
        "any key"
    };
    let limit = if maxmemory == 0 {
        "once a maxmemory limit is set (none is set now)".to_owned()
    } else {
        format!("when memory reaches maxmemory ({maxmemory} bytes)")
    };
    Some(format!(
        "namespaces {} are must_not_evict but Redis's maxmemory-policy is {policy}, which evicts {which} {limit}; set maxmemory-policy noeviction or give them a Redis of their own",
        protected.join(", ")
    ))
}

/// One `CONFIG GET name` value from the upstream.
async fn config_get(ctx: &Ctx, name: &'static str) -> Result<String, String> {
    let args = vec![
        Bytes::from_static(b"CONFIG"),
        Bytes::from_static(b"GET"),
        Bytes::from_static(name.as_bytes()),
    ];
    let reply = ctx
        .upstream
        .call(&[args])
        .await
        .map_err(|e| e.to_string())?;
    match reply.into_iter().next() {
        Some(Value::Array(items)) if items.len() == 2 => {
            items[1].text().ok_or_else(|| "unexpected reply".to_owned())
        }
        Some(Value::Error(text)) => Err(String::from_utf8_lossy(&text).into_owned()),
        _ => Err("unexpected reply".to_owned()),
    }
}

/// Read the settings, record the advice and log it when it changes.
async fn check(ctx: &Ctx, last: &mut Option<Option<String>>) -> Result<(), String> {
    if !ctx
        .live()
        .namespaces
        .iter()
        .any(|ns| ns.config.must_not_evict)
    {
        // Nothing to protect (a reload may add some): no need to ask Redis.
        if let Ok(mut list) = ctx.advisories.lock() {
            list.clear();
        }
        *last = None;
        return Ok(());
    }
    let policy = config_get(ctx, "maxmemory-policy").await?;
    let maxmemory = config_get(ctx, "maxmemory")
        .await?
        .parse::<u64>()
        .unwrap_or(0);
    let advice = eviction_advice(&policy, maxmemory, &ctx.live().namespaces);
    if last.as_ref() != Some(&advice) {
        match &advice {
            Some(text) => warn!("{text}"),
            None => info!(%policy, "eviction policy keeps must_not_evict namespaces safe"),
        }
        if let Ok(mut list) = ctx.advisories.lock() {
            *list = advice.iter().cloned().collect();
        }
        *last = Some(advice);
    }
    Ok(())
}

/// Keep the advice current until shutdown.
pub(super) async fn watch_eviction(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut primary = ctx.upstream.discovery().subscribe();
    let mut last = None;
    let mut logged_failure = false;
    loop {
        let wait = match check(&ctx, &mut last).await {
            Ok(()) => {
                logged_failure = false;
                RECHECK
            }
            Err(e) => {
                if !logged_failure {
                    info!(error = %e, "could not read the upstream's maxmemory-policy yet (eviction advisor)");
                    logged_failure = true;
                }
                RETRY
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            // A failover: the new primary may be configured differently.
            changed = primary.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn namespaces(protect: bool) -> Namespaces {
        let toml = format!(
            "[[namespace]]\nname = \"session\"\nprefix = \"s:\"\nmust_not_evict = {protect}\n\
             [[namespace]]\nname = \"cache\"\nprefix = \"c:\"\n"
        );
        Namespaces::new(&Config::from_toml_str(&toml).unwrap().namespaces)
    }

    #[test]
    fn only_noeviction_keeps_protected_namespaces_safe() {
        let ns = namespaces(true);
        assert_eq!(eviction_advice("noeviction", 1 << 30, &ns), None);
        let lru = eviction_advice("allkeys-lru", 1 << 30, &ns).unwrap();
        assert!(
            lru.contains("session") && lru.contains("allkeys-lru") && lru.contains("any key"),
            "{lru}"
        );
        assert!(!lru.contains("cache"), "{lru}");
        let volatile = eviction_advice("volatile-ttl", 0, &ns).unwrap();
        assert!(
            volatile.contains("keys with a TTL")
                && volatile.contains("once a maxmemory limit is set"),
            "{volatile}"
        );
    }

    #[test]
    fn nothing_to_say_without_protected_namespaces() {
        assert_eq!(
            eviction_advice("allkeys-lru", 1 << 30, &namespaces(false)),
            None
        );
    }
}
