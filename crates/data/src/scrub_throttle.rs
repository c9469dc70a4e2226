//! What keeps the scrubber from competing with clients: a byte-rate limit (the runtime's one
//! `RateLimiter`) and a count of client streams in flight, which a throttled pass pauses for.
//!
//! Invariant: over any stretch without pauses, a throttled scrubber reads on average at most
//! its configured rate (plus one chunk); time spent paused for client load never turns into
//! credit for a burst afterwards (the limiter's window restarts after a pause). A pause for
//! clients lasts at most [`MAX_LOAD_PAUSE`] per chunk, so a node that always has a client
//! stream open is still scrubbed, slowly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tessera_runtime::rate::RateLimiter;

/// How often a paused scrubber looks whether clients are still streaming.
pub const LOAD_POLL: Duration = Duration::from_millis(50);

/// Longest a throttled scrubber waits for client streams to end before it reads one more
/// chunk anyway.
pub const MAX_LOAD_PAUSE: Duration = Duration::from_secs(1);

/// Longest single sleep while pacing, so a requested pass takes over promptly.
const PACE_SLICE: Duration = Duration::from_millis(100);

/// How a check reads chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// At the configured rate, pausing for client streams; gives way to a requested pass.
    Throttled,
    /// At full speed; gives way to a newer requested pass.
    Requested,
    /// At full speed, to the end (a suspect).
    Urgent,
}

/// Paces the scrubber's chunk reads.
#[derive(Debug)]
pub(crate) struct Pacer {
    limiter: RateLimiter,
    load: ClientLoad,
    /// Whether a read was held back (by the rate or by clients) since the last look.
    held_back: bool,
}

impl Pacer {
    /// A pacer to `rate` bytes per second (0 = unthrottled) that pauses for `load`.
    pub(crate) fn new(rate: u64, load: ClientLoad) -> Self {
        Self {
            limiter: RateLimiter::new(rate, Instant::now()),
            load,
            held_back: false,
        }
    }

    /// The configured rate.
    pub(crate) fn rate(&self) -> u64 {
        self.limiter.rate()
    }

    /// Starts a new rate window now (at a pass start: idle time is no credit).
    pub(crate) fn restart(&mut self) {
        self.limiter.restart(Instant::now());
    }

    /// Records `bytes` read at the throttled pace.
    pub(crate) fn consumed(&mut self, bytes: u64) {
        self.limiter.consumed(bytes);
    }

    /// Whether a read was held back since the last call (and forgets it).
    pub(crate) fn take_held_back(&mut self) -> bool {
        std::mem::take(&mut self.held_back)
    }

    /// Waits before the next chunk as `pace` demands; `false` if the check should give way
    /// (`give_way` says a requested pass is waiting).
    pub(crate) async fn before_chunk(&mut self, pace: Pace, give_way: impl Fn() -> bool) -> bool {
        match pace {
            Pace::Urgent => return true,
            Pace::Requested => return !give_way(),
            Pace::Throttled => {}
        }
        let mut paused = Duration::ZERO;
        while self.load.in_flight() > 0 && paused < MAX_LOAD_PAUSE {
            if give_way() {
                return false;
            }
            self.held_back = true;
            tokio::time::sleep(LOAD_POLL).await;
            paused += LOAD_POLL;
        }
        if !paused.is_zero() {
            // Time paused for clients is not credit for a burst.
            self.limiter.restart(Instant::now());
        }
        loop {
            if give_way() {
                return false;
            }
            let delay = self.limiter.delay(Instant::now());
            if delay.is_zero() {
                return true;
            }
            self.held_back = true;
            tokio::time::sleep(delay.min(PACE_SLICE)).await;
        }
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

    #[tokio::test]
    async fn a_throttled_read_waits_for_its_rate_and_says_so() {
        let mut pacer = Pacer::new(1000, ClientLoad::default());
        assert!(pacer.before_chunk(Pace::Throttled, || false).await);
        assert!(!pacer.take_held_back(), "the first read goes at once");
        pacer.consumed(100);
        let started = Instant::now();
        assert!(pacer.before_chunk(Pace::Throttled, || false).await);
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(pacer.take_held_back());
        assert!(!pacer.take_held_back(), "taken once");
        // Unthrottled paces never wait; a requested pass gives way when a newer one waits.
        pacer.consumed(1_000_000);
        assert!(pacer.before_chunk(Pace::Urgent, || true).await);
        assert!(!pacer.before_chunk(Pace::Requested, || true).await);
        assert!(!pacer.before_chunk(Pace::Throttled, || true).await);
    }

    #[tokio::test]
    async fn a_throttled_read_pauses_for_clients_up_to_the_longest_pause() {
        let load = ClientLoad::default();
        let mut pacer = Pacer::new(0, load.clone());
        let guard = load.begin();
        let started = Instant::now();
        assert!(pacer.before_chunk(Pace::Throttled, || false).await);
        assert!(started.elapsed() >= MAX_LOAD_PAUSE);
        assert!(pacer.take_held_back());
        drop(guard);
        let started = Instant::now();
        assert!(pacer.before_chunk(Pace::Throttled, || false).await);
        assert!(started.elapsed() < MAX_LOAD_PAUSE);
        assert!(!pacer.take_held_back());
    }
}
