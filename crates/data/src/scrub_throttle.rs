//! What keeps the scrubber from competing with clients: a byte-rate limiter and a count of
//! client streams in flight.
//!
//! Invariant: over any stretch without pauses, a throttled scrubber reads on average at most
//! its configured rate (plus one chunk); time spent paused for client load never turns into
//! credit for a burst afterwards, nor does time the disk was slower than the rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How far behind its rate the limiter may fall before it forgets the debt: a slow disk (or a
/// long shard check) must not buy a burst at full speed later.
pub const MAX_RATE_CREDIT: Duration = Duration::from_secs(1);

/// How long to wait, after reading `bytes` in `elapsed`, so that the average stays at most
/// `rate` bytes per second; zero when unthrottled (`rate = 0`) or already behind.
pub fn pace_delay(rate: u64, bytes: u64, elapsed: Duration) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    let due_nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate);
    let due = Duration::from_nanos(u64::try_from(due_nanos).unwrap_or(u64::MAX));
    due.saturating_sub(elapsed)
}

/// Paces a stream of reads to a byte rate over a window that restarts after pauses.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u64,
    window_start: Instant,
    window_bytes: u64,
}

impl RateLimiter {
    /// A limiter to `rate` bytes per second (0 = unthrottled), its window starting `now`.
    pub fn new(rate: u64, now: Instant) -> Self {
        Self {
            rate,
            window_start: now,
            window_bytes: 0,
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Starts a new window at `now`: what came before (a pause, an idle spell) is forgotten.
    pub fn restart(&mut self, now: Instant) {
        self.window_start = now;
        self.window_bytes = 0;
    }

    /// Records `bytes` read.
    pub fn consumed(&mut self, bytes: u64) {
        self.window_bytes = self.window_bytes.saturating_add(bytes);
    }

    /// How long to wait at `now` before the next read.
    pub fn delay(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.window_start);
        let delay = pace_delay(self.rate, self.window_bytes, elapsed);
        if delay.is_zero() && self.rate != 0 {
            let behind =
                elapsed.saturating_sub(pace_delay(self.rate, self.window_bytes, Duration::ZERO));
            if behind > MAX_RATE_CREDIT {
                self.restart(now);
            }
        }
        delay
    }
}

/// The number of client streams (ReadShard, WriteShard) in flight; cheap to clone, all clones
/// share the count.
#[derive(Clone, Debug, Default)]
pub struct ClientLoad {
    in_flight: Arc<AtomicU64>,
}

impl ClientLoad {
    /// Counts one client stream until the guard is dropped.
    pub fn begin(&self) -> ClientLoadGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        ClientLoadGuard {
            in_flight: Arc::clone(&self.in_flight),
        }
    }

    /// Client streams in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One client stream in flight; dropping it ends the count.
#[derive(Debug)]
pub struct ClientLoadGuard {
    in_flight: Arc<AtomicU64>,
}

impl Drop for ClientLoadGuard {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_delay_keeps_the_average_at_the_rate() {
        // 16 MiB at 16 MiB/s is due after one second.
        let rate = 16 * MIB;
        assert_eq!(
            pace_delay(rate, 16 * MIB, Duration::ZERO),
            Duration::from_secs(1)
        );
        assert_eq!(
            pace_delay(rate, 16 * MIB, Duration::from_millis(300)),
            Duration::from_millis(700)
        );
        assert_eq!(
            pace_delay(rate, 4 * MIB, Duration::ZERO),
            Duration::from_millis(250)
        );
        // Already behind: no wait.
        assert_eq!(
            pace_delay(rate, 16 * MIB, Duration::from_secs(2)),
            Duration::ZERO
        );
    }

    #[test]
    fn rate_zero_is_unthrottled() {
        assert_eq!(pace_delay(0, u64::MAX, Duration::ZERO), Duration::ZERO);
        let mut limiter = RateLimiter::new(0, Instant::now());
        limiter.consumed(u64::MAX);
        assert_eq!(limiter.delay(Instant::now()), Duration::ZERO);
    }

    #[test]
    fn the_limiter_paces_its_window_and_forgets_pauses() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(MIB, start);
        assert_eq!(limiter.delay(start), Duration::ZERO);
        limiter.consumed(MIB / 2);
        assert_eq!(limiter.delay(start), Duration::from_millis(500));
        assert_eq!(
            limiter.delay(start + Duration::from_millis(200)),
            Duration::from_millis(300)
        );
        // A pause: the window restarts, so the time paused is not credit.
        let resumed = start + Duration::from_secs(30);
        limiter.restart(resumed);
        limiter.consumed(MIB);
        assert_eq!(limiter.delay(resumed), Duration::from_secs(1));
    }

    #[test]
    fn falling_far_behind_buys_no_burst() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(MIB, start);
        limiter.consumed(MIB);
        // The disk took 10 s for what the rate allows in 1 s: the debt is forgotten...
        let late = start + Duration::from_secs(10);
        assert_eq!(limiter.delay(late), Duration::ZERO);
        // ...so the next megabyte is paced from now, not let through at once.
        limiter.consumed(MIB);
        assert_eq!(limiter.delay(late), Duration::from_secs(1));
    }

    #[test]
    fn the_load_count_follows_its_guards() {
        let load = ClientLoad::default();
        assert_eq!(load.in_flight(), 0);
        let a = load.begin();
        let b = load.clone().begin();
        assert_eq!(load.in_flight(), 2);
        drop(a);
        assert_eq!(load.in_flight(), 1);
        drop(b);
        assert_eq!(load.in_flight(), 0);
    }
}
