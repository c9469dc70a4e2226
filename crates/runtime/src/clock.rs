//! Wall-clock time as the cluster records it: milliseconds since the Unix epoch. Records and
//! commands carry these numbers (the state machine never reads a clock), so every role turns
//! `SystemTime` into them the same way: times before the epoch are 0, times past `i64::MAX` ms
//! saturate.
//!
//! Invariant: `now_ms()` is the process's wall clock plus a skew fixed for the life of the
//! process. The skew is 0 unless the test-and-chaos hook `TESSERA_CLOCK_SKEW_MS` (a signed
//! integer of milliseconds) is set when the clock is first read; it lets a test run one process
//! with its clock hours off without touching the machine's clock. `unix_ms` converts a given
//! time and is never skewed, so file times and other recorded instants keep their meaning.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that skews `now_ms()` (tests and chaos runs only).
pub const CLOCK_SKEW_ENV: &str = "TESSERA_CLOCK_SKEW_MS";

/// The skew read from the environment, once per process.
static SKEW_MS: OnceLock<i64> = OnceLock::new();

/// A `TESSERA_CLOCK_SKEW_MS` value that is not a signed integer of milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockSkewError {
    /// The value does not parse as an `i64`.
    #[error("{CLOCK_SKEW_ENV}={value:?} is not a signed integer of milliseconds")]
    NotAnInteger {
        /// The value as found in the environment.
        value: String,
    },
}

impl ClockSkewError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAnInteger { .. } => "clock_skew_not_an_integer",
        }
    }

    /// Whether trying again could succeed: never, the environment does not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NotAnInteger { .. } => false,
        }
    }
}

/// Parses a `TESSERA_CLOCK_SKEW_MS` value: absent or blank is no skew; otherwise a signed
/// decimal integer (`-7200000`, `+500`, surrounding whitespace allowed).
pub fn parse_skew(value: Option<&str>) -> Result<i64, ClockSkewError> {
    let Some(raw) = value else { return Ok(0) };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(0);
    }
    trimmed
        .parse::<i64>()
        .map_err(|_| ClockSkewError::NotAnInteger {
            value: raw.to_owned(),
        })
}

/// The skew `now_ms()` adds to the wall clock, in milliseconds (0 unless `TESSERA_CLOCK_SKEW_MS`
/// is set). Read from the environment on first use; an invalid value is logged and ignored,
/// since failing every clock read of a running process would be worse than no skew.
pub fn skew_ms() -> i64 {
    *SKEW_MS.get_or_init(|| {
        let value = std::env::var(CLOCK_SKEW_ENV).ok();
        match parse_skew(value.as_deref()) {
            Ok(0) => 0,
            Ok(skew) => {
                tracing::warn!(skew_ms = skew, "wall clock skewed by TESSERA_CLOCK_SKEW_MS");
                skew
            }
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "clock skew ignored");
                0
            }
        }
    })
}

/// Milliseconds since the Unix epoch of `time` (never skewed).
pub fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `wall_ms` moved by `skew_ms`, kept within `0..=i64::MAX` like every recorded time.
fn skewed(wall_ms: i64, skew_ms: i64) -> i64 {
    wall_ms.saturating_add(skew_ms).max(0)
}

/// Milliseconds since the Unix epoch, now, as this process sees it (wall clock plus
/// [`skew_ms`]).
pub fn now_ms() -> i64 {
    skewed(unix_ms(SystemTime::now()), skew_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn epoch_and_before_are_zero_and_later_times_count_ms() {
        assert_eq!(unix_ms(UNIX_EPOCH), 0);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1_234)), 1_234);
        assert!(now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn absent_or_blank_skew_is_zero() {
        assert_eq!(parse_skew(None), Ok(0));
        assert_eq!(parse_skew(Some("")), Ok(0));
        assert_eq!(parse_skew(Some("  ")), Ok(0));
    }

    #[test]
    fn skew_is_a_signed_integer_of_milliseconds() {
        assert_eq!(parse_skew(Some("7200000")), Ok(7_200_000));
        assert_eq!(parse_skew(Some("-7200000")), Ok(-7_200_000));
        assert_eq!(parse_skew(Some("+500")), Ok(500));
        assert_eq!(parse_skew(Some(" 42\n")), Ok(42));
        assert_eq!(
            parse_skew(Some(&i64::MIN.to_string())),
            Ok(i64::MIN),
            "the full range parses"
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_value() {
        for bad in ["2h", "1.5", "0x10", "1e3", "- 5", "99999999999999999999"] {
            let err = parse_skew(Some(bad)).unwrap_err();
            assert_eq!(
                err,
                ClockSkewError::NotAnInteger {
                    value: bad.to_owned()
                }
            );
            assert_eq!(err.code(), "clock_skew_not_an_integer");
            assert!(!err.is_retryable());
            assert!(err.to_string().contains(CLOCK_SKEW_ENV), "{err}");
        }
    }

    #[test]
    fn skew_moves_the_clock_and_saturates_at_the_ends() {
        assert_eq!(skewed(1_000, 0), 1_000);
        assert_eq!(skewed(1_000, 3_600_000), 3_601_000);
        assert_eq!(skewed(3_601_000, -3_600_000), 1_000);
        assert_eq!(skewed(1_000, -5_000), 0, "never before the epoch");
        assert_eq!(skewed(i64::MAX - 1, 10), i64::MAX);
        assert_eq!(skewed(0, i64::MIN), 0);
    }

    #[test]
    fn now_follows_the_process_skew() {
        // The test process has no skew set unless its runner set one; either way `now_ms` is
        // the wall clock moved by exactly `skew_ms()`.
        let before = unix_ms(SystemTime::now());
        let now = now_ms();
        let after = unix_ms(SystemTime::now());
        let skew = skew_ms();
        assert!(skewed(before, skew) <= now && now <= skewed(after, skew));
    }
}
