//! `[migration]`: moving data from an old store onto the upstream without downtime.
//!
//! Owns the raw shape of the section, its typed form (`MigrationConfig`, `Phase`),
//! validation (the old store's URL, `old_db` against the namespaces) and rendering
//! back to TOML. It does not act on any setting; `crate::migration` does.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{format_duration, parse_duration};
use super::url::{Scheme, UpstreamUrl};
use super::{ConfigError, NamespaceConfig, TlsConfig, UpstreamConfig, UpstreamMode, REDACTED};

/// Where the migration stands. Each step can be undone by going back one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The old store serves everything; the new one is not touched.
    #[default]
    Off,
    /// The old store serves and is the store of record; writes are copied to the new
    /// one and a sample of reads is compared against it.
    Shadow,
    /// The new store serves and is the store of record; writes are copied back to the
    /// old one (so going back to `shadow` loses nothing) and reads are sampled.
    Flipped,
    /// The new store only; the old one is no longer written.
    Done,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Off, Phase::Shadow, Phase::Flipped, Phase::Done];

    pub const fn label(self) -> &'static str {
        match self {
            Phase::Off => "off",
            Phase::Shadow => "shadow",
            Phase::Flipped => "flipped",
            Phase::Done => "done",
        }
    }

    /// Parses a phase name, any case.
    pub fn parse(text: &[u8]) -> Option<Phase> {
        Phase::ALL
            .into_iter()
            .find(|p| p.label().as_bytes().eq_ignore_ascii_case(text))
    }

    /// True when `to` is this phase or one step before or after it.
    pub fn can_move_to(self, to: Phase) -> bool {
        (self as i8 - to as i8).abs() <= 1
    }
}

/// The `[migration]` table as written.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug))]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawMigration {
    pub phase: Phase,
    pub old_url: String,
    pub old_password: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_db: Option<u32>,
    pub compare_sample: f64,
    pub queue_max: usize,
    pub batch: usize,
    pub retries: u32,
    pub retry_backoff: String,
    pub recheck_interval: String,
    pub recent_mismatches: usize,
    pub switch_timeout: String,
}

impl Default for RawMigration {
    fn default() -> RawMigration {
        render(&MigrationConfig::default())
    }
}

/// `[migration]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationConfig {
    pub phase: Phase,
    /// The old store; `None` = no migration configured (the other keys are unused).
    pub old: Option<UpstreamConfig>,
    /// The old store's keys live in this db, unprefixed; in the new store they carry
    /// the prefix of the namespace mapped to this db.
    pub old_db: Option<u32>,
    /// Reads compared against the other store, per million reads.
    pub compare_per_million: u32,
    /// Distinct keys waiting to be copied (and, separately, parked after failing).
    pub queue_max: usize,
    /// Keys copied per pipelined exchange.
    pub batch: usize,
    /// Attempts after the first before a key's copy is counted as failed and parked.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// How often parked keys are tried again.
    pub recheck_interval: Duration,
    /// Mismatches kept for `SIDECAR MIGRATION STATUS`.
    pub recent_mismatches: usize,
    /// How long a change of the store of record (shadow <-> flipped) may wait for
    /// in-flight writes and their copies before it is given up.
    pub switch_timeout: Duration,
}

impl Default for MigrationConfig {
    fn default() -> MigrationConfig {
        MigrationConfig {
            phase: Phase::Off,
            old: None,
            old_db: None,
            compare_per_million: 10_000,
            queue_max: 100_000,
            batch: 256,
            retries: 5,
            retry_backoff: Duration::from_millis(100),
            recheck_interval: Duration::from_secs(1),
            recent_mismatches: 16,
            switch_timeout: Duration::from_secs(5),
        }
    }
}

pub(crate) fn render(m: &MigrationConfig) -> RawMigration {
    let (old_url, old_password) = match &m.old {
        Some(old) => (
            old.url.clone(),
            old.password
                .as_ref()
                .map(|_| REDACTED.to_owned())
                .unwrap_or_default(),
        ),
        None => (String::new(), String::new()),
    };
    RawMigration {
        phase: m.phase,
        old_url,
        old_password,
        old_db: m.old_db,
        compare_sample: f64::from(m.compare_per_million) / 1e6,
        queue_max: m.queue_max,
        batch: m.batch,
        retries: m.retries,
        retry_backoff: format_duration(m.retry_backoff),
        recheck_interval: format_duration(m.recheck_interval),
        recent_mismatches: m.recent_mismatches,
        switch_timeout: format_duration(m.switch_timeout),
    }
}

/// Checks `[migration]`; `namespaces` are the validated `[[namespace]]` tables.
pub(crate) fn validate(
    origin: &str,
    raw: &RawMigration,
    base: &UpstreamConfig,
    namespaces: &[NamespaceConfig],
) -> Result<MigrationConfig, ConfigError> {
    let err = |key: &str, message: String| ConfigError::Invalid {
        origin: origin.to_owned(),
        key: format!("migration.{key}"),
        message,
    };
    let duration = |key: &str, text: &str| {
        parse_duration(text)
            .map_err(|e| err(key, e.to_string()))
            .and_then(|d| {
                if d.is_zero() {
                    Err(err(key, "must be greater than 0s".into()))
                } else {
                    Ok(d)
                }
            })
    };
    let at_least_one = |key: &str, v: usize| {
        if v == 0 {
            Err(err(key, "must be at least 1".into()))
        } else {
            Ok(v)
        }
    };
    if !(0.0..=1.0).contains(&raw.compare_sample) {
        return Err(err(
            "compare_sample",
            format!("{} is not a fraction between 0 and 1", raw.compare_sample),
        ));
    }
    let old = if raw.old_url.trim().is_empty() {
        if raw.phase != Phase::Off || raw.old_db.is_some() {
            return Err(err(
                "old_url",
                "the old store's URL is needed for a phase other than \"off\" or for old_db".into(),
            ));
        }
        None
    } else {
        Some(old_store(&raw.old_url, &raw.old_password, base).map_err(|m| err("old_url", m))?)
    };
    if let Some(db) = raw.old_db {
        if !namespaces.iter().any(|ns| ns.db == Some(db)) {
            return Err(err(
                "old_db",
                format!("no [[namespace]] has db = {db}: old_db keys take that namespace's prefix"),
            ));
        }
    }
    Ok(MigrationConfig {
        phase: raw.phase,
        old,
        old_db: raw.old_db,
        compare_per_million: (raw.compare_sample * 1e6).round() as u32,
        queue_max: at_least_one("queue_max", raw.queue_max)?,
        batch: at_least_one("batch", raw.batch)?,
        retries: raw.retries,
        retry_backoff: duration("retry_backoff", &raw.retry_backoff)?,
        recheck_interval: duration("recheck_interval", &raw.recheck_interval)?,
        recent_mismatches: raw.recent_mismatches,
        switch_timeout: duration("switch_timeout", &raw.switch_timeout)?,
    })
}

/// The old store's connection settings: `url` (standalone or sentinel) with the
/// upstream's timeouts and pool size.
pub fn old_store(
    url: &str,
    password: &str,
    base: &UpstreamConfig,
) -> Result<UpstreamConfig, String> {
    let parsed = UpstreamUrl::parse(url).map_err(|e| e.to_string())?;
    let endpoint = parsed
        .endpoints
        .first()
        .cloned()
        .ok_or_else(|| "missing host".to_owned())?;
    let sentinel = parsed.scheme == Scheme::RedisSentinel;
    let password = Some(password.to_owned())
        .filter(|p| !p.is_empty())
        .or(parsed.password.clone());
    Ok(UpstreamConfig {
        mode: if sentinel {
            UpstreamMode::Sentinel
        } else {
            UpstreamMode::Standalone
        },
        url: parsed.redacted.clone(),
        endpoint,
        username: parsed.username.clone(),
        // With Sentinel the same credentials are used for the sentinels and the primary.
        sentinel_username: parsed.username.clone().filter(|_| sentinel),
        sentinel_password: password.clone().filter(|_| sentinel),
        password,
        tls: parsed.tls().then(TlsConfig::default),
        sentinels: if sentinel {
            parsed.endpoints.clone()
        } else {
            Vec::new()
        },
        master_name: parsed.master_name.clone().unwrap_or_default(),
        db: 0,
        ..base.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn phases_move_one_step() {
        assert!(Phase::Off.can_move_to(Phase::Shadow));
        assert!(Phase::Flipped.can_move_to(Phase::Shadow));
        assert!(Phase::Done.can_move_to(Phase::Done));
        assert!(!Phase::Off.can_move_to(Phase::Flipped));
        assert!(!Phase::Done.can_move_to(Phase::Shadow));
        assert_eq!(Phase::parse(b"FLIPPED"), Some(Phase::Flipped));
        assert_eq!(Phase::parse(b"on"), None);
    }

    #[test]
    fn parses_and_renders() {
        let text = "[[namespace]]\nname = \"session\"\nprefix = \"session:\"\ndb = 3\n\
                    [migration]\nphase = \"shadow\"\nold_url = \"redis://:pw@10.0.0.1:6400\"\n\
                    old_db = 3\ncompare_sample = 0.5\nretries = 2\n";
        let config = Config::from_toml_str(text).expect("valid");
        let m = &config.migration;
        assert_eq!(m.phase, Phase::Shadow);
        assert_eq!(m.compare_per_million, 500_000);
        let old = m.old.as_ref().expect("old store");
        assert_eq!(old.endpoint.to_string(), "10.0.0.1:6400");
        assert_eq!(old.password.as_deref(), Some("pw"));
        let shown = config.to_redacted_toml();
        assert!(!shown.contains("pw@"), "{shown}");
        assert!(shown.contains("phase = \"shadow\""), "{shown}");
    }

    #[test]
    fn errors_name_the_key() {
        let bad = |text: &str| match Config::from_toml_str(text) {
            Ok(c) => panic!("accepted {c:?}"),
            Err(e) => e.to_string(),
        };
        assert!(bad("[migration]\nphase = \"shadow\"\n").contains("migration.old_url"));
        assert!(bad("[migration]\nphase = \"sideways\"\n").contains("migration.phase"));
        assert!(
            bad("[migration]\nold_url = \"redis://h\"\ncompare_sample = 2.0\n")
                .contains("migration.compare_sample")
        );
        assert!(
            bad("[migration]\nold_url = \"redis://h\"\nold_db = 4\n").contains("migration.old_db")
        );
        assert!(bad("[migration]\nold_url = \"http://h\"\n").contains("migration.old_url"));
        assert!(bad("[migration]\nolde_url = \"redis://h\"\n").contains("migration.olde_url"));
    }
}
