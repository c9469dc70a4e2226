//! One byte-rate limiter for every background worker (scrub, repair, garbage collection), so
//! that each paces its disk and network traffic the same way.
//!
//! Invariant: over any stretch without pauses, a throttled caller moves on average at most its
//! configured rate (plus one request's bytes); time spent paused or idle never turns into credit
//! for a burst afterwards, nor does time the disk was slower than the rate (at most
//! [`MAX_RATE_CREDIT`] of debt is kept). A rate of 0 means unlimited.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How far behind its rate the limiter may fall before it forgets the debt: a slow disk (or a
/// long check between reads) must not buy a burst at full speed later.
pub const MAX_RATE_CREDIT: Duration = Duration::from_secs(1);

/// How long to wait, after moving `bytes` in `elapsed`, so that the average stays at most
/// `rate` bytes per second; zero when unlimited (`rate = 0`) or already behind.
pub fn pace_delay(rate: u64, bytes: u64, elapsed: Duration) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    let due_nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate);
    let due = Duration::from_nanos(u64::try_from(due_nanos).unwrap_or(u64::MAX));
    due.saturating_sub(elapsed)
}

/// Paces a stream of transfers to a byte rate over a window that restarts after pauses. Time is
/// a parameter, so the pacing is tested without sleeping.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u64,
    window_start: Instant,
    window_bytes: u64,
}

impl RateLimiter {
    /// A limiter to `rate` bytes per second (0 = unlimited), its window starting `now`.
    pub fn new(rate: u64, now: Instant) -> Self {
        Self {
            rate,
            window_start: now,
            window_bytes: 0,
        }
    }

    /// The configured rate in bytes per second (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Changes the rate from `now` on; the window restarts, so bytes moved at the old rate are
    /// neither paced again at the new one nor count as credit.
    pub fn set_rate(&mut self, rate: u64, now: Instant) {
        self.rate = rate;
        self.restart(now);
    }

    /// Starts a new window at `now`: what came before (a pause, an idle spell) is forgotten.
    pub fn restart(&mut self, now: Instant) {
        self.window_start = now;
        self.window_bytes = 0;
    }

    /// Records `bytes` moved.
    pub fn consumed(&mut self, bytes: u64) {
        self.window_bytes = self.window_bytes.saturating_add(bytes);
    }

    /// How long to wait at `now` before the next transfer. A limiter that fell more than
    /// [`MAX_RATE_CREDIT`] behind its rate restarts its window here.
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

/// A [`RateLimiter`] shared by every task of one budget (all scrub reads of a node, say); cheap
/// to clone, all clones share the budget. It reads tokio's clock, so tests drive it with
/// `tokio::time::pause`.
#[derive(Clone, Debug)]
pub struct SharedRateLimiter {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limiter: Mutex<RateLimiter>,
    /// Wakes waiters when the rate changes, so a raised (or removed) limit applies at once.
    rate_changed: Notify,
    /// Callers sleeping in `acquire` now.
    waiting: AtomicUsize,
    /// Nanoseconds callers have spent sleeping in `acquire`, in total.
    waited_nanos: AtomicU64,
}

/// Counts one caller as waiting until dropped (also when its `acquire` is cancelled).
struct WaitingGuard<'a> {
    shared: &'a Shared,
    since: tokio::time::Instant,
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        let waited = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.shared
            .waited_nanos
            .fetch_add(waited, Ordering::Relaxed);
        self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for SharedRateLimiter {
    /// An unlimited budget.
    fn default() -> Self {
        Self::new(0)
    }
}

impl SharedRateLimiter {
    /// A shared limiter to `rate` bytes per second (0 = unlimited).
    pub fn new(rate: u64) -> Self {
        Self {
            inner: Arc::new(Shared {
                limiter: Mutex::new(RateLimiter::new(rate, now().into_std())),
                rate_changed: Notify::new(),
                waiting: AtomicUsize::new(0),
                waited_nanos: AtomicU64::new(0),
            }),
        }
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, RateLimiter> {
        self.inner
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The configured rate in bytes per second (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.limiter().rate()
    }

    /// Changes the rate for every clone; callers already waiting re-check against it at once.
    pub fn set_rate(&self, rate: u64) {
        self.limiter().set_rate(rate, now().into_std());
        self.inner.rate_changed.notify_waiters();
    }

    /// Waits until `bytes` more may move within the budget, then counts them. The bytes before
    /// this call are paced, not these: the first transfer after a pause goes at once, the next
    /// waits for it. Cancel-safe: a caller dropped while waiting has counted nothing.
    pub async fn acquire(&self, bytes: u64) {
        let mut guard: Option<WaitingGuard<'_>> = None;
        loop {
            // Registered before the delay is computed, so a rate change in between still wakes
            // this caller.
            let rate_changed = self.inner.rate_changed.notified();
            tokio::pin!(rate_changed);
            rate_changed.as_mut().enable();
            let delay = {
                let mut limiter = self.limiter();
                let delay = limiter.delay(now().into_std());
                if delay.is_zero() {
                    limiter.consumed(bytes);
                    return;
                }
                delay
            };
            if guard.is_none() {
                self.inner.waiting.fetch_add(1, Ordering::Relaxed);
                guard = Some(WaitingGuard {
                    shared: &self.inner,
                    since: now(),
                });
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = &mut rate_changed => {}
            }
        }
    }

    /// Whether a caller is waiting for the budget now.
    pub fn is_throttling(&self) -> bool {
        self.inner.waiting.load(Ordering::Relaxed) > 0
    }

    /// Time callers have spent waiting for the budget, in total since the limiter was made. A
    /// worker compares it before and after a step to report whether the step was throttled
    /// (`is_throttling` is false again by the time the step returns).
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.inner.waited_nanos.load(Ordering::Relaxed))
    }
}

fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

#[cfg(test)]
#[path = "rate_test.rs"]
mod tests;
