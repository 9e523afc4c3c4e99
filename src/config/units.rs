//! Human-readable durations and byte sizes as they appear in `sidecar.toml`.
//!
//! Owns parsing (`"500ms"`, `"30s"`, `"64MiB"`, `"100KB"`, `"4096"`) and the
//! inverse formatting used when the effective config is printed. It does not
//! know which key a value came from: callers attach the key to the error.

use std::time::Duration;

/// Why a duration or size string was refused. The text is quoted in the
/// message so the operator sees exactly what was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error(
        "invalid {kind} {text:?}: expected a number followed by a unit, for example {example}"
    )]
    Malformed {
        kind: &'static str,
        text: String,
        example: &'static str,
    },
    #[error("invalid duration {text:?}: missing unit (use ms, s, m, h or d, for example \"30s\")")]
    MissingUnit { text: String },
    #[error("invalid {kind} {text:?}: unknown unit {unit:?} (use {allowed})")]
    UnknownUnit {
        kind: &'static str,
        text: String,
        unit: String,
        allowed: &'static str,
    },
    #[error("invalid {kind} {text:?}: value is too large")]
    Overflow { kind: &'static str, text: String },
}

const DURATION_UNITS: &str = "ms, s, m, h or d";
const SIZE_UNITS: &str = "B, KB, MB, GB, TB, KiB, MiB, GiB or TiB";

/// Splits `"64 MiB"` into `(64, "MiB")`; the unit may be empty.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    if digits_end == 0 {
        return None;
    }
    let (digits, unit) = trimmed.split_at(digits_end);
    let number = digits.parse::<u64>().ok()?;
    Some((number, unit.trim()))
}

/// Parses a duration such as `"500ms"`, `"30s"`, `"5m"`, `"24h"`, `"7d"` or
/// `"0s"`. A unit is required so that `"30"` is never silently read as
/// seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let Some((number, unit)) = split_number(text) else {
        return Err(UnitError::Malformed {
            kind: "duration",
            text: text.to_owned(),
            example: "\"30s\"",
        });
    };
    let millis_per_unit: u64 = match unit {
        "" => {
            return Err(UnitError::MissingUnit {
                text: text.to_owned(),
            })
        }
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(UnitError::UnknownUnit {
                kind: "duration",
                text: text.to_owned(),
                unit: other.to_owned(),
                allowed: DURATION_UNITS,
            })
        }
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| UnitError::Overflow {
            kind: "duration",
            text: text.to_owned(),
        })
}

/// Formats a duration with the largest unit that represents it exactly, so
/// that `parse_duration(&format_duration(d)) == d` at millisecond precision.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000)] {
        if millis % size == 0 {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// Byte multipliers, matched case-insensitively. `KB` is 1000 bytes and
/// `KiB` is 1024 bytes, as their names say.
const SIZE_MULTIPLIERS: [(&str, u64); 9] = [
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

/// Parses a byte size such as `"64MiB"`, `"1GiB"`, `"100KB"` or `"4096"`
/// (plain bytes).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let Some((number, unit)) = split_number(text) else {
        return Err(UnitError::Malformed {
            kind: "size",
            text: text.to_owned(),
            example: "\"64MiB\"",
        });
    };
    if unit.is_empty() {
        return Ok(number);
    }
    let lower = unit.to_ascii_lowercase();
    let Some(&(_, multiplier)) = SIZE_MULTIPLIERS.iter().find(|(name, _)| *name == lower) else {
        return Err(UnitError::UnknownUnit {
            kind: "size",
            text: text.to_owned(),
            unit: unit.to_owned(),
            allowed: SIZE_UNITS,
        });
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| UnitError::Overflow {
            kind: "size",
            text: text.to_owned(),
        })
}

/// Formats a size with the largest binary unit that divides it exactly, then
/// the largest decimal one, else as plain bytes.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_owned();
    }
    let binary = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    let decimal = [
        ("TB", 1_000_000_000_000u64),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
    ];
    for (unit, size) in binary.into_iter().chain(decimal) {
        if bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn bad_durations_are_refused_with_the_text() {
        for bad in ["", "s", "-5s", "1.5s", "5x", "5 sec", "5S", "ten"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert_eq!(
            parse_duration("30"),
            Err(UnitError::MissingUnit { text: "30".into() })
        );
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(UnitError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration("999999999999999999d"),
            Err(UnitError::Overflow { .. })
        ));
    }

    #[test]
    fn sizes_binary_decimal_and_plain() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("100KB"), Ok(100_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("1TB"), Ok(1_000_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("64 mib"), Ok(64 << 20));
    }

    #[test]
    fn bad_sizes_are_refused_with_the_text() {
        let err = parse_size("12XB").expect_err("unknown unit");
        assert!(
            err.to_string().starts_with("invalid size \"12XB\""),
            "{err}"
        );
        assert!(err.to_string().contains("MiB"), "{err}");
        for bad in ["", "MiB", "-1", "1.5GiB", "1 G", "lots"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_size("20000000TiB"),
            Err(UnitError::Overflow { .. })
        ));
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["500ms", "30s", "5m", "24h", "0s", "1500ms", "90s"] {
            let parsed = parse_duration(text).expect(text);
            assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed));
        }
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(100_000), "100KB");
        assert_eq!(format_size(4097), "4097");
        assert_eq!(format_size(0), "0");
        for bytes in [1u64, 1000, 1024, 1 << 30, 123_456_789] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }
    }
}
