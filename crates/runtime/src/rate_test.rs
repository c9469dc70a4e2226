//! Rate limiter tests: the pacing arithmetic with explicit instants, then the shared limiter on
//! tokio's paused clock (no test sleeps in real time).

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
fn huge_debts_saturate_instead_of_overflowing() {
    assert_eq!(
        pace_delay(1, u64::MAX, Duration::ZERO),
        Duration::from_nanos(u64::MAX)
    );
}

#[test]
fn rate_zero_is_unlimited() {
    assert_eq!(pace_delay(0, u64::MAX, Duration::ZERO), Duration::ZERO);
    let mut limiter = RateLimiter::new(0, Instant::now());
    limiter.consumed(u64::MAX);
    limiter.consumed(u64::MAX);
    assert_eq!(limiter.delay(Instant::now()), Duration::ZERO);
    assert_eq!(limiter.rate(), 0);
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
fn falling_a_little_behind_keeps_the_debt() {
    let start = Instant::now();
    let mut limiter = RateLimiter::new(MIB, start);
    limiter.consumed(MIB);
    // Half a second behind (within MAX_RATE_CREDIT): the window is kept, so the next megabyte
    // is due half a second from now, not a full second.
    let late = start + Duration::from_millis(1_500);
    assert_eq!(limiter.delay(late), Duration::ZERO);
    limiter.consumed(MIB);
    assert_eq!(limiter.delay(late), Duration::from_millis(500));
}

#[test]
fn a_new_rate_restarts_the_window() {
    let start = Instant::now();
    let mut limiter = RateLimiter::new(100 * MIB, start);
    limiter.consumed(100 * MIB);
    // Lowered to 1 MiB/s: the 100 MiB moved at the old rate are not paced again (100 s).
    limiter.set_rate(MIB, start);
    assert_eq!(limiter.rate(), MIB);
    assert_eq!(limiter.delay(start), Duration::ZERO);
    limiter.consumed(MIB);
    assert_eq!(limiter.delay(start), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn an_unlimited_budget_never_waits() {
    let budget = SharedRateLimiter::default();
    assert_eq!(budget.rate(), 0);
    let start = tokio::time::Instant::now();
    for _ in 0..100 {
        budget.acquire(u64::MAX).await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(budget.waited(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn acquire_paces_the_bytes_before_it() {
    let budget = SharedRateLimiter::new(MIB);
    let start = tokio::time::Instant::now();
    budget.acquire(MIB).await;
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the first transfer goes at once"
    );
    budget.acquire(MIB / 2).await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    budget.acquire(MIB).await;
    assert_eq!(start.elapsed(), Duration::from_millis(1_500));
    assert_eq!(budget.waited(), Duration::from_millis(1_500));
}

#[tokio::test(start_paused = true)]
async fn an_idle_spell_buys_no_burst() {
    let budget = SharedRateLimiter::new(MIB);
    budget.acquire(MIB).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let resumed = tokio::time::Instant::now();
    budget.acquire(MIB).await;
    budget.acquire(MIB).await;
    // One minute idle is not a minute of credit: the second megabyte after it waits its second.
    assert_eq!(resumed.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_budget() {
    let budget = SharedRateLimiter::new(MIB);
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let budget = budget.clone();
            tokio::spawn(async move {
                for _ in 0..2 {
                    budget.acquire(MIB / 2).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // 4 MiB through a 1 MiB/s budget: the last half megabyte starts once 3.5 MiB are due.
    assert_eq!(start.elapsed(), Duration::from_millis(3_500));
}

#[tokio::test(start_paused = true)]
async fn throttling_shows_while_a_caller_waits() {
    let budget = SharedRateLimiter::new(MIB);
    budget.acquire(MIB).await;
    assert!(!budget.is_throttling());
    let waiter = tokio::spawn({
        let budget = budget.clone();
        async move { budget.acquire(MIB).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(budget.is_throttling());
    waiter.await.unwrap();
    assert!(!budget.is_throttling());
    assert_eq!(budget.waited(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_rate_change_applies_to_waiting_callers() {
    let budget = SharedRateLimiter::new(1);
    budget.acquire(1_000_000).await;
    let start = tokio::time::Instant::now();
    let waiter = tokio::spawn({
        let budget = budget.clone();
        async move { budget.acquire(1).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(budget.is_throttling(), "a million seconds due at 1 B/s");
    budget.set_rate(0);
    assert_eq!(budget.rate(), 0);
    waiter.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(10));
    assert!(!budget.is_throttling());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_wait_counts_nothing() {
    let budget = SharedRateLimiter::new(MIB);
    budget.acquire(MIB).await;
    let gave_up = tokio::time::timeout(Duration::from_millis(100), budget.acquire(64 * MIB)).await;
    assert!(gave_up.is_err());
    assert!(!budget.is_throttling());
    assert_eq!(budget.waited(), Duration::from_millis(100));
    // The abandoned 64 MiB were never counted: the next transfer is due after the first MiB.
    let start = tokio::time::Instant::now();
    budget.acquire(1).await;
    assert_eq!(start.elapsed(), Duration::from_millis(900));
}
