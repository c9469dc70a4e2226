//! Wall-clock time as the cluster records it: milliseconds since the Unix epoch. Records and
//! commands carry these numbers (the state machine never reads a clock), so every role turns
//! `SystemTime` into them the same way: times before the epoch are 0, times past `i64::MAX` ms
//! saturate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch of `time`.
pub fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
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
}
