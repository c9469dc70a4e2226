//! Worker runner tests: a scripted worker on tokio's paused clock records when each step began,
//! so the loop's timing (busy, idle, wake-ups, backoff) is checked exactly and without sleeping.

use super::*;
use std::collections::VecDeque;
use tokio::time::Instant;

/// One scripted step.
#[derive(Debug, Clone, Copy)]
enum Step {
    Busy,
    Idle(Duration),
    Fail(&'static str),
    /// Never completes (until shutdown drops it).
    Hang,
    Panic,
}

/// Plays `script`, then idles until woken; logs when each step began.
struct Scripted {
    name: String,
    script: VecDeque<Step>,
    started: Instant,
    log: Arc<Mutex<Vec<Duration>>>,
    progress: WorkerProgress,
}

impl Worker for Scripted {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn step(&mut self) -> Result<StepOutcome, WorkerError> {
        self.log.lock().unwrap().push(self.started.elapsed());
        self.progress.done += 1;
        self.progress.text = format!("step {}", self.progress.done);
        match self.script.pop_front().unwrap_or(Step::Idle(Duration::MAX)) {
            Step::Busy => Ok(StepOutcome::Busy),
            Step::Idle(wait) => Ok(StepOutcome::Idle(wait)),
            Step::Fail(why) => Err(std::io::Error::other(why).into()),
            Step::Hang => std::future::pending().await,
            Step::Panic => panic!("scripted panic"),
        }
    }

    fn progress(&self) -> WorkerProgress {
        self.progress.clone()
    }
}

/// A scripted worker named `name` and the log of its step start times.
fn scripted(name: &str, script: &[Step]) -> (Scripted, Arc<Mutex<Vec<Duration>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let worker = Scripted {
        name: name.to_owned(),
        script: script.iter().cloned().collect(),
        started: Instant::now(),
        log: Arc::clone(&log),
        progress: WorkerProgress::default(),
    };
    (worker, log)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn steps_at(log: &Mutex<Vec<Duration>>) -> Vec<Duration> {
    log.lock().unwrap().clone()
}

#[test]
fn states_have_stable_names() {
    let names: Vec<_> = [
        WorkerState::Starting,
        WorkerState::Active,
        WorkerState::Idle,
        WorkerState::Throttled,
        WorkerState::Backoff,
        WorkerState::Stopped,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        names,
        [
            "starting",
            "active",
            "idle",
            "throttled",
            "backoff",
            "stopped"
        ]
    );
}

#[test]
fn backoff_doubles_to_its_cap_and_resets() {
    let mut backoff = Backoff::default();
    let waits: Vec<_> = (0..9).map(|_| backoff.next_delay().as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    backoff.reset();
    assert_eq!(backoff.next_delay(), BACKOFF_MIN);
}

#[test]
fn worker_errors_keep_their_type_and_message() {
    fn failing() -> Result<(), WorkerError> {
        std::fs::read("/nonexistent/tessera/cursor")?;
        Ok(())
    }
    let err = failing().unwrap_err();
    let io = err.downcast_ref::<std::io::Error>().expect("an io error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(err.to_string(), io.to_string());
    assert!(err.downcast_ref::<std::fmt::Error>().is_none());
    assert!(err.get_ref().to_string().contains("No such file"));
    let wrapped = WorkerError::new(std::fmt::Error);
    assert!(format!("{wrapped:?}").contains("Error"));
    assert!(wrapped.into_inner().is::<std::fmt::Error>());
}

#[tokio::test(start_paused = true)]
async fn a_worker_steps_while_busy_and_sleeps_while_idle() {
    let registry = WorkerRegistry::new();
    let (worker, log) = scripted(
        "scrub",
        &[Step::Busy, Step::Busy, Step::Idle(secs(10)), Step::Busy],
    );
    let handle = spawn_worker(worker, &registry, Shutdown::new());
    let status = handle.status().unwrap();
    assert_eq!(status.state, WorkerState::Starting);
    assert_eq!(status.steps, 0);
    assert_eq!(status.last_step_ms, 0);

    tokio::time::sleep(secs(5)).await;
    assert_eq!(steps_at(&log), [secs(0), secs(0), secs(0)]);
    assert_eq!(handle.status().unwrap().state, WorkerState::Idle);

    tokio::time::sleep(secs(10)).await;
    assert_eq!(
        steps_at(&log),
        [secs(0), secs(0), secs(0), secs(10), secs(10)]
    );
    let status = handle.status().unwrap();
    assert_eq!(status.name, "scrub");
    assert_eq!(status.state, WorkerState::Idle);
    assert_eq!(status.steps, 5);
    assert_eq!(status.errors, 0);
    assert_eq!(status.last_error, None);
    assert_eq!(status.progress.done, 5);
    assert_eq!(status.progress.text, "step 5");
    assert!(status.last_step_ms > 1_700_000_000_000);
}

#[tokio::test(start_paused = true)]
async fn a_wake_up_ends_the_idle_wait() {
    let registry = WorkerRegistry::new();
    let (worker, log) = scripted("gc", &[Step::Idle(secs(3_600))]);
    let handle = spawn_worker(worker, &registry, Shutdown::new());
    tokio::time::sleep(secs(1)).await;
    assert_eq!(steps_at(&log), [secs(0)]);
    handle.wake();
    tokio::time::sleep(ms(1)).await;
    assert_eq!(steps_at(&log), [secs(0), secs(1)]);
    // `Idle(Duration::MAX)` waits for the next wake-up only; a waker outlives the handle.
    let waker = handle.waker();
    drop(handle);
    tokio::time::sleep(secs(86_400)).await;
    assert_eq!(steps_at(&log).len(), 2);
    waker.wake();
    tokio::time::sleep(ms(1)).await;
    assert_eq!(steps_at(&log).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_wake_up_during_a_step_is_not_lost() {
    let registry = WorkerRegistry::new();
    let (worker, log) = scripted("gc", &[Step::Idle(secs(3_600))]);
    let handle = spawn_worker(worker, &registry, Shutdown::new());
    // Woken before its first step has even run: the idle wait after it returns at once.
    handle.wake();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(steps_at(&log), [secs(0), secs(0)]);
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_and_a_success_resets_the_backoff() {
    let registry = WorkerRegistry::new();
    let (worker, log) = scripted(
        "repair",
        &[
            Step::Fail("meta unreachable"),
            Step::Fail("meta unreachable"),
            Step::Fail("disk on fire"),
            Step::Busy,
            Step::Fail("meta unreachable"),
        ],
    );
    let handle = spawn_worker(worker, &registry, Shutdown::new());
    tokio::time::sleep(ms(6_500)).await;
    assert_eq!(steps_at(&log), [secs(0), secs(1), secs(3)]);
    let status = handle.status().unwrap();
    assert_eq!(status.state, WorkerState::Backoff);
    assert_eq!(status.errors, 3);
    assert_eq!(status.last_error.as_deref(), Some("disk on fire"));

    tokio::time::sleep(secs(10)).await;
    // Steps at 7 s (success, then at once a failure) and 8 s: one second of backoff again.
    assert_eq!(
        steps_at(&log),
        [secs(0), secs(1), secs(3), secs(7), secs(7), secs(8)]
    );
    let status = handle.status().unwrap();
    assert_eq!(status.state, WorkerState::Idle);
    assert_eq!(status.steps, 6);
    assert_eq!(status.errors, 4);
    assert_eq!(status.last_error.as_deref(), Some("meta unreachable"));
}

#[tokio::test(start_paused = true)]
async fn backoff_stops_growing_at_a_minute() {
    let registry = WorkerRegistry::new();
    let (worker, log) = scripted("lease", &[Step::Fail("down"); 9]);
    let _handle = spawn_worker(worker, &registry, Shutdown::new());
    tokio::time::sleep(secs(1_000)).await;
    let at: Vec<u64> = steps_at(&log).iter().map(Duration::as_secs).collect();
    assert_eq!(at, [0, 1, 3, 7, 15, 31, 63, 123, 183, 243]);
}

#[tokio::test(start_paused = true)]
async fn a_wake_up_does_not_cut_a_backoff_short() {
    let registry = WorkerRegistry::new();
    let (worker, log) = scripted("heartbeat", &[Step::Fail("down")]);
    let handle = spawn_worker(worker, &registry, Shutdown::new());
    tokio::time::sleep(ms(500)).await;
    handle.wake();
    tokio::time::sleep(secs(10)).await;
    // The retry waits its full second; the wake-up is kept for the idle wait after it.
    assert_eq!(steps_at(&log), [secs(0), secs(1), secs(1)]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_workers_in_every_state() {
    let registry = WorkerRegistry::new();
    let shutdown = Shutdown::new();
    let (idle, _) = scripted("idle", &[Step::Idle(secs(3_600))]);
    let (hung, _) = scripted("hung", &[Step::Busy, Step::Hang]);
    let (failing, _) = scripted("failing", &[Step::Fail("down"); 100]);
    let (busy, busy_log) = scripted("busy", &[Step::Busy; 3]);
    let handles = [
        spawn_worker(idle, &registry, shutdown.clone()),
        spawn_worker(hung, &registry, shutdown.clone()),
        spawn_worker(failing, &registry, shutdown.clone()),
    ];
    tokio::time::sleep(ms(1_500)).await;
    let states: Vec<_> = handles.iter().map(|h| h.status().unwrap().state).collect();
    assert_eq!(
        states,
        [WorkerState::Idle, WorkerState::Active, WorkerState::Backoff]
    );
    shutdown.trigger();
    let stopping_at = Instant::now();
    for handle in handles {
        let name = handle.name().to_owned();
        handle.stopped().await;
        assert_eq!(registry.get(&name).unwrap().state, WorkerState::Stopped);
    }
    assert_eq!(
        stopping_at.elapsed(),
        Duration::ZERO,
        "no worker waited out its sleep"
    );

    // A worker spawned after shutdown never steps.
    let late = spawn_worker(busy, &registry, shutdown.clone());
    let name = late.name().to_owned();
    late.stopped().await;
    assert!(steps_at(&busy_log).is_empty());
    assert_eq!(registry.get(&name).unwrap().state, WorkerState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_leaves_the_worker_running() {
    let registry = WorkerRegistry::new();
    let shutdown = Shutdown::new();
    let (worker, log) = scripted("refresh", &[Step::Idle(secs(1)); 5]);
    drop(spawn_worker(worker, &registry, shutdown.clone()));
    tokio::time::sleep(secs(10)).await;
    assert_eq!(steps_at(&log).len(), 6);
    let status = registry.get("refresh").unwrap();
    assert_eq!(status.state, WorkerState::Idle);
    assert_eq!(status.steps, 6);
    shutdown.trigger();
    tokio::time::sleep(ms(1)).await;
    assert_eq!(registry.get("refresh").unwrap().state, WorkerState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_throttled_worker_is_listed_as_throttled() {
    let registry = WorkerRegistry::new();
    let (mut worker, _) = scripted("scrub", &[Step::Busy, Step::Hang]);
    worker.progress = WorkerProgress {
        cursor: "0a1b".to_owned(),
        total: 100,
        throttled: true,
        rate_limit_bytes_per_sec: 1 << 20,
        ..WorkerProgress::default()
    };
    let handle = spawn_worker(worker, &registry, Shutdown::new());
    tokio::time::sleep(secs(1)).await;
    // Hanging in its second step: the state the first left stays.
    let status = handle.status().unwrap();
    assert_eq!(status.state, WorkerState::Throttled);
    assert_eq!(status.steps, 1);
    assert_eq!(status.progress.cursor, "0a1b");
    assert_eq!(status.progress.done, 1);
    assert_eq!(status.progress.total, 100);
    assert_eq!(status.progress.rate_limit_bytes_per_sec, 1 << 20);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_worker_is_listed_as_stopped_with_an_error() {
    let registry = WorkerRegistry::new();
    let (worker, _) = scripted("gc", &[Step::Busy, Step::Panic]);
    let handle = spawn_worker(worker, &registry, Shutdown::new());
    tokio::time::sleep(secs(1)).await;
    assert!(handle.is_finished());
    handle.stopped().await;
    let status = registry.get("gc").unwrap();
    assert_eq!(status.state, WorkerState::Stopped);
    assert_eq!(status.steps, 1);
    assert_eq!(status.errors, 1);
    assert_eq!(status.last_error.as_deref(), Some("worker panicked"));
}

#[tokio::test(start_paused = true)]
async fn the_registry_lists_workers_by_name_and_never_shares_a_running_name() {
    let registry = WorkerRegistry::new();
    let first = Shutdown::new();
    let (scrub, _) = scripted("scrub", &[]);
    let (gc, _) = scripted("gc", &[]);
    let (scrub_again, _) = scripted("scrub", &[]);
    let handles = [
        spawn_worker(scrub, &registry, first.clone()),
        spawn_worker(gc, &registry, first.clone()),
        spawn_worker(scrub_again, &registry, first.clone()),
    ];
    assert_eq!(handles[2].name(), "scrub#2");
    tokio::time::sleep(ms(1)).await;
    let listed: Vec<_> = registry
        .snapshot()
        .into_iter()
        .map(|s| (s.name, s.state))
        .collect();
    assert_eq!(
        listed,
        [
            ("gc".to_owned(), WorkerState::Idle),
            ("scrub".to_owned(), WorkerState::Idle),
            ("scrub#2".to_owned(), WorkerState::Idle),
        ]
    );

    first.trigger();
    for handle in handles {
        handle.stopped().await;
    }
    // Stopped workers stay listed, and give their name to the next worker that wants it.
    let (restarted, _) = scripted("scrub", &[]);
    let restarted = spawn_worker(restarted, &registry, Shutdown::new());
    assert_eq!(restarted.name(), "scrub");
    let listed: Vec<_> = registry
        .snapshot()
        .into_iter()
        .map(|s| (s.name, s.state))
        .collect();
    assert_eq!(
        listed,
        [
            ("gc".to_owned(), WorkerState::Stopped),
            ("scrub".to_owned(), WorkerState::Starting),
            ("scrub#2".to_owned(), WorkerState::Stopped),
        ]
    );
    assert_eq!(registry.get("scrub").unwrap().steps, 0);
}
