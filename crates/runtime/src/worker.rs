//! Every background loop of a process (scrubber, repair, garbage collection, node refresh,
//! heartbeats, lease renewal) is a [`Worker`]: a name, a step function, a progress report. One
//! runner ([`spawn_worker`]) drives them all the same way: it steps while there is work, sleeps
//! when the worker says it is idle (until woken), backs off exponentially after errors, and stops
//! on the shutdown signal; a [`WorkerRegistry`] holds every worker's status so that one command
//! lists all the workers of a node.
//!
//! Invariant: a worker's entry in its registry says what its loop last did (the state is
//! updated before and after every step), and the entry reads `Stopped` once the loop has ended
//! for any reason: shutdown, a panic in the step, or the runtime dropping the task. While a
//! worker runs, no other running worker holds its registry name.
//!
//! A step may be dropped at any await point when shutdown trips; workers that must not redo
//! work after a restart keep a cursor, persisted with [`CursorFile`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::shutdown::Shutdown;

pub use crate::cursor_file::CursorFile;

/// The first wait after a failed step; each further failure in a row doubles it.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);

/// The longest wait after failed steps: a worker whose dependency is down retries at least
/// once a minute, so it resumes soon after the dependency returns.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What a worker's loop is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerState {
    /// Spawned, first step not yet begun.
    Starting,
    /// Stepping.
    Active,
    /// Nothing to do: waiting for its idle time to pass or to be woken.
    Idle,
    /// Stepping, held back by its rate limit.
    Throttled,
    /// Its last step failed: waiting before the next try.
    Backoff,
    /// Its loop has ended.
    Stopped,
}

impl WorkerState {
    /// The state's stable name, as status listings and metrics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Active => "active",
            Self::Idle => "idle",
            Self::Throttled => "throttled",
            Self::Backoff => "backoff",
            Self::Stopped => "stopped",
        }
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a worker has come, in its own terms (a scrub pass, a GC sweep).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerProgress {
    /// One line for an operator ("pass 3: 1200/5000 shards").
    pub text: String,
    /// Units of work done in the current pass.
    pub done: u64,
    /// Units of work in the current pass (0 when unknown).
    pub total: u64,
    /// Where the worker would resume after a restart (empty when it starts over).
    pub cursor: String,
    /// Whether the last step was held back by the worker's rate limit.
    pub throttled: bool,
    /// The worker's rate limit in bytes per second (0 = unlimited).
    pub rate_limit_bytes_per_sec: u64,
}

/// A worker's status, as its registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    /// The name the worker is registered under.
    pub name: String,
    /// What its loop is doing.
    pub state: WorkerState,
    /// Its own account of its progress, taken after its last step.
    pub progress: WorkerProgress,
    /// Steps run, failed ones included.
    pub steps: u64,
    /// Steps that failed (or panicked).
    pub errors: u64,
    /// The message of its most recent failure, kept after later successes.
    pub last_error: Option<String>,
    /// When its last step ended, in ms since the Unix epoch (0 before the first).
    pub last_step_ms: i64,
}

impl WorkerStatus {
    fn starting(name: String) -> Self {
        Self {
            name,
            state: WorkerState::Starting,
            progress: WorkerProgress::default(),
            steps: 0,
            errors: 0,
            last_error: None,
            last_step_ms: 0,
        }
    }
}

/// What a successful step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// There is more to do: step again at once.
    Busy,
    /// Nothing to do: sleep this long, or until woken (`Duration::MAX` waits for a wake-up).
    Idle(Duration),
}

/// Why a step failed: the worker's own error, boxed. The runner only logs and counts it; the
/// worker's domain error keeps its type for `downcast_ref`.
///
/// It deliberately does not implement `std::error::Error` itself, so that `?` converts any
/// error into it.
pub struct WorkerError(Box<dyn std::error::Error + Send + Sync>);

impl WorkerError {
    /// Wraps a worker's error.
    pub fn new<E: std::error::Error + Send + Sync + 'static>(error: E) -> Self {
        Self(Box::new(error))
    }

    /// The wrapped error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The wrapped error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }

    /// Unwraps the error.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync> {
        self.0
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for WorkerError {
    fn from(error: E) -> Self {
        Self::new(error)
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A background loop, driven by [`spawn_worker`].
pub trait Worker: Send + 'static {
    /// The name it is listed under ("scrub", "repair", "gc"); unique within a process.
    fn name(&self) -> String;

    /// Does one bounded piece of work. It may be dropped at any await point when shutdown
    /// trips, so it must leave nothing half-done that a restart could not redo.
    fn step(&mut self) -> impl Future<Output = Result<StepOutcome, WorkerError>> + Send;

    /// Its progress, read after every step.
    fn progress(&self) -> WorkerProgress {
        WorkerProgress::default()
    }
}

/// The statuses of a process's workers; cheap to clone, all clones share them.
#[derive(Debug, Clone, Default)]
pub struct WorkerRegistry {
    inner: Arc<Mutex<BTreeMap<String, WorkerStatus>>>,
}

impl WorkerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, WorkerStatus>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every worker's status, in name order; stopped workers stay listed until a worker of
    /// the same name starts.
    pub fn snapshot(&self) -> Vec<WorkerStatus> {
        self.lock().values().cloned().collect()
    }

    /// The status of the worker registered as `name`.
    pub fn get(&self, name: &str) -> Option<WorkerStatus> {
        self.lock().get(name).cloned()
    }

    /// Registers a starting worker under `name`, or under `name#2`, `name#3`.. while a running
    /// worker holds the name (a stopped one gives it up), and returns the name used.
    fn claim(&self, name: String) -> String {
        let mut map = self.lock();
        let free = |map: &BTreeMap<String, WorkerStatus>, key: &str| {
            map.get(key)
                .is_none_or(|status| status.state == WorkerState::Stopped)
        };
        let key = if free(&map, &name) {
            name
        } else {
            let key = (2u64..)
                .map(|n| format!("{name}#{n}"))
                .find(|key| free(&map, key))
                .unwrap_or_else(|| unreachable!("u64 suffixes cannot all be taken"));
            tracing::warn!(worker = %name, registered = %key, "worker name already running");
            key
        };
        map.insert(key.clone(), WorkerStatus::starting(key.clone()));
        key
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut WorkerStatus)) {
        if let Some(status) = self.lock().get_mut(name) {
            change(status);
        }
    }
}

/// Wakes one worker from its idle wait; cheap to clone, so the component that creates work
/// (a queue, a watcher) can hold one.
#[derive(Debug, Clone)]
pub struct WorkerWaker(Arc<Notify>);

impl WorkerWaker {
    /// Ends the worker's idle wait now, or its next one at once if it is not idle (a wake-up
    /// during a step is not lost). A wake-up does not cut short the backoff after an error.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// A running worker. Dropping the handle leaves the worker running: only the shutdown signal
/// stops it.
#[derive(Debug)]
pub struct WorkerHandle {
    name: String,
    registry: WorkerRegistry,
    waker: WorkerWaker,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// The name the worker is registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Wakes the worker (see [`WorkerWaker::wake`]).
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// A waker for this worker that outlives the handle.
    pub fn waker(&self) -> WorkerWaker {
        self.waker.clone()
    }

    /// The worker's current status.
    pub fn status(&self) -> Option<WorkerStatus> {
        self.registry.get(&self.name)
    }

    /// Whether the worker's loop has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Completes when the worker's loop has ended (after shutdown, or a panic, which its
    /// status records).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Starts `worker`'s loop on a tokio task (call it within a runtime), registered in
/// `registry`; it runs until `shutdown` trips.
pub fn spawn_worker<W: Worker>(
    worker: W,
    registry: &WorkerRegistry,
    shutdown: Shutdown,
) -> WorkerHandle {
    let name = registry.claim(worker.name());
    let waker = WorkerWaker(Arc::new(Notify::new()));
    let record = Record {
        registry: registry.clone(),
        name: name.clone(),
    };
    let task = tokio::spawn(run(worker, record, Arc::clone(&waker.0), shutdown));
    WorkerHandle {
        name,
        registry: registry.clone(),
        waker,
        task,
    }
}

/// The waits after failed steps in a row: [`BACKOFF_MIN`] doubling up to [`BACKOFF_MAX`].
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The wait after one more failure.
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(BACKOFF_MAX);
        delay
    }

    /// A step succeeded: the next failure waits [`BACKOFF_MIN`] again.
    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// A worker's entry in its registry, written by its loop; marks the worker stopped when
/// dropped, so a loop that ends any way (shutdown, panic, task dropped) is listed as stopped.
struct Record {
    registry: WorkerRegistry,
    name: String,
}

impl Record {
    fn update(&self, change: impl FnOnce(&mut WorkerStatus)) {
        self.registry.update(&self.name, change);
    }

    /// Records a finished step: its progress, the state it leaves, and its error if it failed.
    fn stepped(&self, progress: WorkerProgress, state: WorkerState, error: Option<String>) {
        self.update(|status| {
            status.progress = progress;
            status.state = state;
            status.steps += 1;
            status.last_step_ms = now_ms();
            if let Some(error) = error {
                status.errors += 1;
                status.last_error = Some(error);
            }
        });
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        if panicked {
            tracing::error!(worker = %self.name, "worker panicked");
        }
        self.update(|status| {
            status.state = WorkerState::Stopped;
            if panicked {
                status.errors += 1;
                status.last_error = Some("worker panicked".to_owned());
            }
        });
    }
}

/// The loop behind [`spawn_worker`].
async fn run<W: Worker>(mut worker: W, record: Record, wake: Arc<Notify>, shutdown: Shutdown) {
    let mut backoff = Backoff::default();
    while !shutdown.is_triggered() {
        record.update(|status| {
            if !matches!(status.state, WorkerState::Active | WorkerState::Throttled) {
                status.state = WorkerState::Active;
            }
        });
        let result = tokio::select! {
            biased;
            () = shutdown.wait() => break,
            result = worker.step() => result,
        };
        let progress = worker.progress();
        let (wait, wakeable) = match result {
            Ok(StepOutcome::Busy) => {
                backoff.reset();
                let state = if progress.throttled {
                    WorkerState::Throttled
                } else {
                    WorkerState::Active
                };
                record.stepped(progress, state, None);
                tokio::task::yield_now().await;
                continue;
            }
            Ok(StepOutcome::Idle(wait)) => {
                backoff.reset();
                record.stepped(progress, WorkerState::Idle, None);
                (wait, true)
            }
            Err(e) => {
                tracing::warn!(worker = %record.name, error = %e, "worker step failed");
                record.stepped(progress, WorkerState::Backoff, Some(e.to_string()));
                (backoff.next_delay(), false)
            }
        };
        let woken = async {
            if wakeable {
                wake.notified().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            () = shutdown.wait() => break,
            () = woken => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
#[path = "worker_test.rs"]
mod tests;
