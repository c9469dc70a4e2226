//! The scrubber: a [`Worker`] that reads every shard file in name order, checks everything a
//! node can check alone (see `scrub_check`), and quarantines the files it finds damaged, so
//! that repair sees those copies missing and rebuilds them.
//!
//! Invariant: a shard file found damaged is moved out of `shards/` (and counted, logged and
//! kept among the recent findings) only while it is still the very file that was checked, so
//! a copy written since is never lost. The pass in progress and the last file it checked are
//! persisted (`scrub.state`) at every pass start and end and at most [`PERSIST_EVERY`] apart in
//! between, so a restart resumes the pass where it stood, repeating at most that much work.
//!
//! A pass is throttled to the configured byte rate and pauses (one chunk at a time) while
//! clients stream shards; a pass asked for through [`ScrubHandle::request_pass`] abandons the
//! pass in progress, runs at full speed and does not pause. Copies a client read found damaged
//! (suspects) are checked before anything else, at full speed.

pub use crate::scrub_check::CorruptReason;
use crate::scrub_check::{Verdict, check_copy};
use crate::scrub_state::{LoadedState, ScrubCursor, load_blocking, save_blocking};
use crate::scrub_throttle::{ClientLoad, ClientLoadGuard, Pace, Pacer};
use crate::shard_dir::{FileStamp, Quarantine, blocking};
use crate::shard_key::ShardKey;
use crate::shard_walk::ShardWalk;
use crate::store::ShardStore;
use crate::store_error::ShardStoreError;
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tessera_runtime::Shutdown;
use tessera_runtime::clock::now_ms;
use tessera_runtime::worker::{
    StepOutcome, Worker, WorkerError, WorkerHandle, WorkerProgress, WorkerRegistry, WorkerWaker,
    spawn_worker,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// The name the scrubber is registered under.
pub const WORKER_NAME: &str = "scrub";

/// Findings kept for `ScrubStatus` (newest last); older ones are dropped.
pub const RECENT_FINDINGS: usize = 1000;

/// How often, at most, the cursor is written to disk during a pass (and at every pass start
/// and end): a crash or shutdown repeats at most this much work.
pub const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// Longest single idle wait between passes; the wait is recomputed after it.
pub const MAX_IDLE_SLEEP: Duration = Duration::from_secs(60);

/// Copies reported by client reads that may wait for the scrubber; more are dropped (the
/// pass finds them anyway).
const SUSPECT_QUEUE: usize = 1024;

/// How the scrubber runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrubConfig {
    /// Average read rate of a scheduled pass, bytes per second; 0 = unthrottled.
    pub rate_bytes_per_sec: u64,
    /// Time from the end of one scheduled pass to the start of the next.
    pub interval: Duration,
}

/// One damaged copy the scrubber moved to quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptFinding {
    /// The copy.
    pub key: ShardKey,
    /// What was wrong.
    pub reason: CorruptReason,
    /// The first damaged chunk (for `ChunkHash`, and `Io` or `Truncated` met while reading
    /// chunks); 0 otherwise.
    pub chunk: u64,
    /// When it was found, ms since the epoch.
    pub found_ms: i64,
}

/// The scrubber's progress and findings, as `ScrubStatus` reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubStatus {
    /// Passes run to their end (persisted across restarts).
    pub passes_completed: u64,
    /// Whether a pass is in progress (or asked for and about to start).
    pub running: bool,
    /// When the current (or last) pass started, ms since the epoch; 0 = never.
    pub last_pass_started_ms: i64,
    /// When the last completed pass ended, ms since the epoch; 0 = never.
    pub last_pass_finished_ms: i64,
    /// Shard files checked since the node started.
    pub shards_checked: u64,
    /// Bytes read by checks since the node started.
    pub bytes_checked: u64,
    /// Copies quarantined since the node started.
    pub corrupt_shards_found: u64,
    /// The latest findings, at most [`RECENT_FINDINGS`], newest last.
    pub recent_corrupt: Vec<CorruptFinding>,
    /// File name of the last copy the current pass checked; empty between passes.
    pub cursor: String,
    /// The current pass's rate limit in bytes per second; 0 = unthrottled.
    pub rate_bytes_per_sec: u64,
}

/// What the service holds of the scrubber: ask for a pass, read its status, report suspect
/// copies, count client streams. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ScrubHandle {
    shared: Arc<Shared>,
    suspects: mpsc::Sender<ShardKey>,
}

#[derive(Debug)]
struct Shared {
    progress: Mutex<Progress>,
    /// Wakes the worker from its idle wait; set once it is spawned.
    waker: Mutex<Option<WorkerWaker>>,
    load: ClientLoad,
    rate: u64,
}

/// Everything the worker and the handles share; one lock, so a pass request and a pass end
/// are ordered: a request made before the end turns that pass into an abandoned one.
#[derive(Debug, Default)]
struct Progress {
    cursor: ScrubCursor,
    /// A pass was asked for and has not started yet.
    requested: bool,
    /// The current pass was asked for: full speed, no pauses.
    unthrottled: bool,
    shards_checked: u64,
    bytes_checked: u64,
    corrupt_found: u64,
    recent: VecDeque<CorruptFinding>,
    /// Copies checked and quarantined by the current (or last) pass.
    pass_shards: u64,
    pass_corrupt: u64,
    /// Copies stored when the current (or last) pass started (or resumed).
    pass_total: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        // Every update leaves the counters and cursor consistent between statements, so a
        // panic elsewhere while holding the lock cannot leave them half-written.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waker) = waker.as_ref() {
            waker.wake();
        }
    }

    fn requested(&self) -> bool {
        self.lock().requested
    }
}

impl ScrubHandle {
    /// Asks for a full pass now: the pass in progress (if any) is abandoned and a new one
    /// starts from the first copy, unthrottled. Returns the `passes_completed` value the
    /// requested pass will reach when it ends.
    pub fn request_pass(&self) -> u64 {
        let pass = {
            let mut progress = self.shared.lock();
            progress.requested = true;
            progress.cursor.passes_completed + 1
        };
        self.shared.wake();
        info!(pass, "scrub pass requested");
        pass
    }

    /// The scrubber's progress and recent findings.
    pub fn status(&self) -> ScrubStatus {
        let progress = self.shared.lock();
        let running = progress.cursor.in_pass();
        ScrubStatus {
            passes_completed: progress.cursor.passes_completed,
            running: running || progress.requested,
            last_pass_started_ms: progress.cursor.last_pass_started_ms,
            last_pass_finished_ms: progress.cursor.last_pass_finished_ms,
            shards_checked: progress.shards_checked,
            bytes_checked: progress.bytes_checked,
            corrupt_shards_found: progress.corrupt_found,
            recent_corrupt: progress.recent.iter().copied().collect(),
            cursor: if running {
                progress.cursor.cursor.clone()
            } else {
                String::new()
            },
            rate_bytes_per_sec: if progress.unthrottled {
                0
            } else {
                self.shared.rate
            },
        }
    }

    /// Reports a copy a client read found damaged; the scrubber checks it before anything
    /// else (and quarantines it if the damage is real). Never blocks: when the queue is full
    /// the report is dropped, and the pass will find the copy.
    pub fn report_suspect(&self, key: ShardKey) {
        match self.suspects.try_send(key) {
            Ok(()) => {
                debug!(shard = %key, "suspect shard queued for the scrubber");
                self.shared.wake();
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!(shard = %key, "suspect queue full; the pass will check the shard");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Counts one client stream (ReadShard, WriteShard) until the guard is dropped; a
    /// throttled pass pauses while any is open.
    pub fn client_stream(&self) -> ClientLoadGuard {
        self.shared.load.begin()
    }
}

/// What one step of the scrubber did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Checked a suspect copy.
    Suspect,
    /// Started this pass.
    PassStarted(u64),
    /// Checked the next copy of the pass.
    Checked,
    /// Gave up the current copy or pass for a requested pass.
    Aborted,
    /// Ended this pass.
    PassFinished(u64),
    /// Nothing to do until the next pass is due, this long from now.
    Idle(Duration),
}

/// The worker; spawned with [`Scrubber::spawn`] (or driven step by step in tests).
#[derive(Debug)]
pub struct Scrubber {
    store: ShardStore,
    shared: Arc<Shared>,
    suspects: mpsc::Receiver<ShardKey>,
    /// Suspects to check again (the file changed under a quarantine), checked first.
    queued: VecDeque<ShardKey>,
    walk: ShardWalk,
    pacer: Pacer,
    interval: Duration,
    persist_every: Duration,
    last_persist: Instant,
    /// Whether the last step was held back by the rate or by clients.
    held_back: bool,
}

impl Scrubber {
    /// Reads the persisted cursor (a pass in progress resumes after its last checked copy)
    /// and returns the worker and the handle the service uses.
    pub async fn open(
        store: ShardStore,
        config: ScrubConfig,
    ) -> Result<(Scrubber, ScrubHandle), ShardStoreError> {
        let root = store.root().to_owned();
        let cursor = match blocking(move || load_blocking(&root)).await? {
            LoadedState::Absent => ScrubCursor::default(),
            LoadedState::Found(cursor) => cursor,
            LoadedState::Invalid(error) => {
                warn!(code = error.code(), error = %error, "scrub state unreadable; starting afresh");
                ScrubCursor::default()
            }
        };
        let mut walk = ShardWalk::new(store.shards_dir().to_owned());
        if cursor.in_pass() {
            walk.restart_after(&cursor.cursor);
        }
        let load = ClientLoad::default();
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress {
                cursor,
                pass_total: store.usage().shards,
                ..Progress::default()
            }),
            waker: Mutex::new(None),
            load: load.clone(),
            rate: config.rate_bytes_per_sec,
        });
        let (tx, rx) = mpsc::channel(SUSPECT_QUEUE);
        let handle = ScrubHandle {
            shared: Arc::clone(&shared),
            suspects: tx,
        };
        let scrubber = Scrubber {
            store,
            shared,
            suspects: rx,
            queued: VecDeque::new(),
            walk,
            pacer: Pacer::new(config.rate_bytes_per_sec, load),
            interval: config.interval,
            persist_every: PERSIST_EVERY,
            last_persist: Instant::now(),
            held_back: false,
        };
        Ok((scrubber, handle))
    }

    /// Runs the scrubber as a worker of `registry` until `shutdown` trips; requests and
    /// suspects wake it from its idle wait.
    pub fn spawn(self, registry: &WorkerRegistry, shutdown: Shutdown) -> WorkerHandle {
        {
            let progress = self.shared.lock();
            info!(
                rate_bytes_per_sec = self.pacer.rate(),
                interval_s = self.interval.as_secs(),
                pass = progress.cursor.pass,
                passes_completed = progress.cursor.passes_completed,
                cursor = %progress.cursor.cursor,
                "scrubber started"
            );
        }
        let shared = Arc::clone(&self.shared);
        let handle = spawn_worker(self, registry, shutdown);
        *shared.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle.waker());
        // A request or suspect that came before the waker was set is not lost.
        handle.wake();
        handle
    }

    /// Does one unit of work: a suspect, a pass start, one copy of the pass, or a pass end.
    pub(crate) async fn advance(&mut self) -> Result<Step, ShardStoreError> {
        let step = self.advance_inner().await;
        self.held_back = self.pacer.take_held_back();
        step
    }

    async fn advance_inner(&mut self) -> Result<Step, ShardStoreError> {
        if let Some(key) = self.next_suspect() {
            self.check(key, Pace::Urgent).await;
            return Ok(Step::Suspect);
        }
        if let Some(pass) = self.begin_pass_if_due() {
            self.persist(true).await?;
            return Ok(Step::PassStarted(pass));
        }
        let pace = {
            let progress = self.shared.lock();
            if !progress.cursor.in_pass() {
                return Ok(Step::Idle(self.until_due(&progress.cursor)));
            }
            if progress.unthrottled {
                Pace::Requested
            } else {
                Pace::Throttled
            }
        };
        let Some((name, key)) = self.walk.next().await? else {
            return self.finish_pass().await;
        };
        match self.check(key, pace).await {
            Verdict::Aborted => return Ok(Step::Aborted),
            Verdict::Intact { .. } | Verdict::Damaged { .. } => self.shared.lock().pass_shards += 1,
            Verdict::Gone => {}
        }
        self.shared.lock().cursor.cursor = name;
        self.persist(false).await?;
        Ok(Step::Checked)
    }

    /// The next suspect to check: those queued again, then the channel.
    fn next_suspect(&mut self) -> Option<ShardKey> {
        self.queued
            .pop_front()
            .or_else(|| self.suspects.try_recv().ok())
    }

    /// Starts a pass if one was requested, or if none is in progress and the interval since
    /// the last one ended has passed; returns its number.
    fn begin_pass_if_due(&mut self) -> Option<u64> {
        let total = self.store.usage().shards;
        let pass = {
            let mut progress = self.shared.lock();
            let requested = progress.requested;
            if !requested
                && (progress.cursor.in_pass() || !self.until_due(&progress.cursor).is_zero())
            {
                return None;
            }
            progress.requested = false;
            progress.unthrottled = requested;
            progress.pass_shards = 0;
            progress.pass_corrupt = 0;
            progress.pass_total = total;
            let cursor = &mut progress.cursor;
            cursor.pass = cursor.passes_completed + 1;
            cursor.cursor.clear();
            cursor.last_pass_started_ms = now_ms();
            info!(
                pass = cursor.pass,
                requested,
                shards = total,
                "scrub pass started"
            );
            cursor.pass
        };
        self.walk.restart_after("");
        self.pacer.restart();
        Some(pass)
    }

    /// Time until the next scheduled pass is due; zero if it is (or none ever ran).
    fn until_due(&self, cursor: &ScrubCursor) -> Duration {
        if cursor.last_pass_finished_ms == 0 {
            return Duration::ZERO;
        }
        let since = now_ms().saturating_sub(cursor.last_pass_finished_ms);
        let since = Duration::from_millis(u64::try_from(since).unwrap_or(0));
        self.interval.saturating_sub(since)
    }

    /// Ends the pass whose walk is exhausted, unless a pass was requested meanwhile: then
    /// this one counts as abandoned and the requested one starts next.
    pub(crate) async fn finish_pass(&mut self) -> Result<Step, ShardStoreError> {
        let pass = {
            let mut progress = self.shared.lock();
            if progress.requested {
                return Ok(Step::Aborted);
            }
            progress.unthrottled = false;
            let (shards, corrupt) = (progress.pass_shards, progress.pass_corrupt);
            let cursor = &mut progress.cursor;
            cursor.passes_completed = cursor.pass;
            cursor.last_pass_finished_ms = now_ms();
            cursor.cursor.clear();
            info!(pass = cursor.pass, shards, corrupt, "scrub pass finished");
            cursor.pass
        };
        self.persist(true).await?;
        Ok(Step::PassFinished(pass))
    }

    /// Checks one copy and quarantines it if damaged. Failures that show no damage (a
    /// transient I/O error) skip the copy with a warning; the next pass tries again.
    pub(crate) async fn check(&mut self, key: ShardKey, pace: Pace) -> Verdict {
        let path = self.store.shard_path(&key);
        let stamp = match blocking(move || match fs::metadata(&path) {
            Ok(meta) => Ok(Some(FileStamp::of(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ShardStoreError::io("stat", &path)(e)),
        })
        .await
        {
            Ok(Some(stamp)) => stamp,
            Ok(None) => return Verdict::Gone,
            Err(e) => {
                warn!(shard = %key, code = e.code(), error = %e, "shard not checked; skipped");
                return Verdict::Gone;
            }
        };
        let shared = Arc::clone(&self.shared);
        let verdict = check_copy(&self.store, key, pace, &mut self.pacer, || {
            shared.requested()
        })
        .await;
        let verdict = match verdict {
            Ok(verdict) => verdict,
            Err(e) => {
                warn!(shard = %key, code = e.code(), error = %e, "shard not checked; skipped");
                return Verdict::Gone;
            }
        };
        let bytes = match verdict {
            Verdict::Intact { bytes } | Verdict::Damaged { bytes, .. } => bytes,
            Verdict::Gone | Verdict::Aborted => return verdict,
        };
        {
            let mut progress = self.shared.lock();
            progress.shards_checked += 1;
            progress.bytes_checked += bytes;
        }
        if let Verdict::Damaged { reason, chunk, .. } = verdict {
            self.quarantine(key, reason, chunk, stamp).await;
        }
        verdict
    }

    /// Moves a damaged copy to quarantine if it is still the file checked, and records the
    /// finding; a file written since under the name is checked again instead.
    async fn quarantine(
        &mut self,
        key: ShardKey,
        reason: CorruptReason,
        chunk: u64,
        stamp: FileStamp,
    ) {
        let store = self.store.clone();
        let moved =
            blocking(move || store.quarantine_blocking(key, reason.as_str(), Some(stamp))).await;
        match moved {
            Ok(Quarantine::Moved(_)) => {}
            Ok(Quarantine::Absent) => return,
            Ok(Quarantine::Replaced) => {
                self.queued.push_back(key);
                return;
            }
            Err(e) => {
                // Reads still refuse the damaged bytes; the next pass tries again.
                warn!(shard = %key, code = e.code(), error = %e, "damaged shard not quarantined");
                return;
            }
        }
        warn!(shard = %key, reason = reason.as_str(), chunk, "scrubber found a damaged shard");
        let finding = CorruptFinding {
            key,
            reason,
            chunk,
            found_ms: now_ms(),
        };
        let mut progress = self.shared.lock();
        progress.corrupt_found += 1;
        progress.pass_corrupt += 1;
        if progress.recent.len() == RECENT_FINDINGS {
            progress.recent.pop_front();
        }
        progress.recent.push_back(finding);
    }

    /// Writes the cursor if `force`, or if [`PERSIST_EVERY`] passed since the last write.
    pub(crate) async fn persist(&mut self, force: bool) -> Result<(), ShardStoreError> {
        if !force && self.last_persist.elapsed() < self.persist_every {
            return Ok(());
        }
        let cursor = self.shared.lock().cursor.clone();
        let root = self.store.root().to_owned();
        blocking(move || save_blocking(&root, &cursor)).await?;
        self.last_persist = Instant::now();
        Ok(())
    }
}

impl Worker for Scrubber {
    fn name(&self) -> String {
        WORKER_NAME.to_owned()
    }

    async fn step(&mut self) -> Result<StepOutcome, WorkerError> {
        Ok(match self.advance().await? {
            Step::Idle(wait) => StepOutcome::Idle(wait.min(MAX_IDLE_SLEEP)),
            Step::Suspect
            | Step::PassStarted(_)
            | Step::Checked
            | Step::Aborted
            | Step::PassFinished(_) => StepOutcome::Busy,
        })
    }

    fn progress(&self) -> WorkerProgress {
        let progress = self.shared.lock();
        let cursor = &progress.cursor;
        let (done, total) = (progress.pass_shards, progress.pass_total);
        let text = if cursor.in_pass() {
            format!(
                "pass {}{}: {done}/{total} shards checked, {} corrupt",
                cursor.pass,
                if progress.unthrottled {
                    " (requested)"
                } else {
                    ""
                },
                progress.pass_corrupt
            )
        } else if cursor.passes_completed == 0 {
            "no pass yet".to_owned()
        } else {
            format!(
                "pass {} done: {done} shards checked, {} corrupt; next in {} s",
                cursor.passes_completed,
                progress.pass_corrupt,
                self.until_due(cursor).as_secs()
            )
        };
        WorkerProgress {
            text,
            done,
            total,
            cursor: if cursor.in_pass() {
                cursor.cursor.clone()
            } else {
                String::new()
            },
            throttled: self.held_back,
            rate_limit_bytes_per_sec: if progress.unthrottled {
                0
            } else {
                self.shared.rate
            },
        }
    }
}

#[cfg(test)]
#[path = "scrub_test.rs"]
mod tests;
