//! The scrubber: a background worker that reads every shard file in name order, checks its
//! header, its length and every chunk's blake3 hash, and quarantines the files it finds
//! damaged, so that repair sees those shards missing and rebuilds them.
//!
//! Invariant: a shard file found damaged is moved out of `shards/` (and counted, logged and
//! kept among the recent findings) only while it is still the very file that was checked, so
//! a shard rewritten meanwhile is never lost. The pass in progress and the last file it
//! checked are persisted (`scrub.state`), so a restart resumes the pass where it stood.
//!
//! A pass is throttled to the configured byte rate and pauses (one chunk at a time) while
//! clients stream shards; a pass asked for through [`ScrubHandle::request_pass`] aborts the
//! pass in progress, runs at full speed and does not pause. Shards a client read found
//! damaged (suspects) are checked before anything else, at full speed.

use crate::scrub_state::{LoadedState, ScrubCursor, load_blocking, save_blocking};
use crate::scrub_throttle::{ClientLoad, ClientLoadGuard, RateLimiter};
use crate::shard_reader::ChunkRead;
use crate::shard_walk::ShardWalk;
use crate::store::{FileStamp, Quarantine, ShardKey, ShardStore, blocking, now_ms};
use crate::store_error::ShardStoreError;
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tessera_core::shard_format::{HEADER_LEN, ShardFormatError, chunk_record_len};
use tessera_runtime::Shutdown;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

/// Findings kept for `ScrubStatus` (newest last); older ones are dropped.
pub const RECENT_FINDINGS: usize = 1000;

/// How often a paused scrubber looks whether clients are still streaming.
pub const LOAD_POLL: Duration = Duration::from_millis(50);

/// Longest a throttled scrubber waits for client streams to end before it reads one more
/// chunk anyway: a node that always has a client stream open is still scrubbed, slowly.
pub const MAX_LOAD_PAUSE: Duration = Duration::from_secs(1);

/// How often, at most, the cursor is written to disk during a pass (and at every pass start
/// and end, and at shutdown): a crash repeats at most this much work.
pub const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// Shards reported by client reads that may wait for the scrubber; more are dropped (the
/// pass finds them anyway).
const SUSPECT_QUEUE: usize = 1024;

/// Longest single sleep while pacing, so a requested pass takes over promptly.
const PACE_SLICE: Duration = Duration::from_millis(100);

/// Longest single sleep between passes; the wait is recomputed after it.
const MAX_IDLE_SLEEP: Duration = Duration::from_secs(60);

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// EIO: the device could not read the data; the same number on Linux, the BSDs and macOS.
const EIO: i32 = 5;

/// How the scrubber runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrubConfig {
    /// Average read rate of a scheduled pass, bytes per second; 0 = unthrottled.
    pub rate_bytes_per_sec: u64,
    /// Time from the end of one scheduled pass to the start of the next.
    pub interval: Duration,
}

/// Why the scrubber quarantined a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CorruptReason {
    /// A chunk does not match its stored blake3 hash.
    ChunkHash,
    /// The file is not a header plus whole chunk records.
    Truncated,
    /// The header does not decode, breaks a rule, or names another shard.
    Header,
    /// The device failed to read the file.
    Io,
}

impl CorruptReason {
    /// The reason's wire name: "chunk_hash", "truncated", "header" or "io".
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ChunkHash => "chunk_hash",
            Self::Truncated => "truncated",
            Self::Header => "header",
            Self::Io => "io",
        }
    }
}

/// One damaged shard the scrubber moved to quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptFinding {
    /// The shard.
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
    /// Shards quarantined since the node started.
    pub corrupt_shards_found: u64,
    /// The latest findings, at most [`RECENT_FINDINGS`], newest last.
    pub recent_corrupt: Vec<CorruptFinding>,
    /// File name of the last shard the current pass checked; empty between passes.
    pub cursor: String,
    /// The current pass's rate limit in bytes per second; 0 = unthrottled.
    pub rate_bytes_per_sec: u64,
}

/// What the service holds of the scrubber: ask for a pass, read its status, report suspect
/// shards, count client streams. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ScrubHandle {
    shared: Arc<Shared>,
    suspects: mpsc::Sender<ShardKey>,
}

#[derive(Debug)]
struct Shared {
    progress: Mutex<Progress>,
    /// Wakes an idle scrubber for a requested pass.
    wake: Notify,
    load: ClientLoad,
    rate: u64,
}

/// Everything the worker and the handles share; one lock, so a pass request and a pass end
/// are ordered: a request made before the end turns that pass into an aborted one.
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
    /// Shards and findings of the current pass, for its log line.
    pass_shards: u64,
    pass_corrupt: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        // Every update leaves the counters and cursor consistent between statements, so a
        // panic elsewhere while holding the lock cannot leave them half-written.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ScrubHandle {
    /// Asks for a full pass now: the pass in progress (if any) is abandoned and a new one
    /// starts from the first shard, unthrottled. Returns the `passes_completed` value the
    /// requested pass will reach when it ends.
    pub fn request_pass(&self) -> u64 {
        let pass = {
            let mut progress = self.shared.lock();
            progress.requested = true;
            progress.cursor.passes_completed + 1
        };
        self.shared.wake.notify_one();
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

    /// Reports a shard a client read found damaged; the scrubber checks it before anything
    /// else (and quarantines it if the damage is real). Never blocks: when the queue is full
    /// the report is dropped, and the pass will find the shard.
    pub fn report_suspect(&self, key: ShardKey) {
        match self.suspects.try_send(key) {
            Ok(()) => debug!(shard = %key, "suspect shard queued for the scrubber"),
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

/// What one step of the worker did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Checked a suspect shard.
    Suspect,
    /// Started this pass.
    PassStarted(u64),
    /// Checked the next shard of the pass.
    Checked,
    /// Gave up the current shard or pass for a requested pass.
    Aborted,
    /// Ended this pass.
    PassFinished(u64),
    /// Nothing to do until the next pass is due, this long from now.
    Idle(Duration),
}

/// What checking one shard found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Header, length and every chunk check out; `bytes` were read.
    Intact { bytes: u64 },
    /// The file is damaged.
    Damaged {
        reason: CorruptReason,
        chunk: u64,
        bytes: u64,
    },
    /// No file holds the shard any more (deleted since it was listed), or it could not be
    /// checked this time (logged).
    Gone,
    /// A pass was requested; the check was abandoned.
    Aborted,
}

/// How a check reads chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pace {
    /// At the configured rate, pausing for client streams; gives way to a requested pass.
    Throttled,
    /// At full speed; gives way to a newer requested pass.
    Requested,
    /// At full speed, to the end (a suspect).
    Urgent,
}

/// The worker; owned by its task (or driven step by step in tests).
#[derive(Debug)]
pub struct Scrubber {
    store: ShardStore,
    shared: Arc<Shared>,
    suspects: mpsc::Receiver<ShardKey>,
    /// Suspects received while idle, checked first.
    queued: VecDeque<ShardKey>,
    walk: ShardWalk,
    limiter: RateLimiter,
    interval: Duration,
    persist_every: Duration,
    last_persist: Instant,
}

impl Scrubber {
    /// Reads the persisted cursor (a pass in progress resumes after its last checked shard)
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
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress {
                cursor,
                ..Progress::default()
            }),
            wake: Notify::new(),
            load: ClientLoad::default(),
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
            limiter: RateLimiter::new(config.rate_bytes_per_sec, Instant::now()),
            interval: config.interval,
            persist_every: PERSIST_EVERY,
            last_persist: Instant::now(),
        };
        Ok((scrubber, handle))
    }

    /// Runs passes until `shutdown` trips, then persists the cursor. Failures (a directory
    /// that cannot be listed, a state file that cannot be written) back off and retry.
    pub async fn run(mut self, shutdown: Shutdown) {
        {
            let progress = self.shared.lock();
            info!(
                rate_bytes_per_sec = self.limiter.rate(),
                interval_s = self.interval.as_secs(),
                pass = progress.cursor.pass,
                passes_completed = progress.cursor.passes_completed,
                cursor = %progress.cursor.cursor,
                "scrubber started"
            );
        }
        let mut backoff = BACKOFF_FIRST;
        loop {
            let step = tokio::select! {
                biased;
                () = shutdown.wait() => break,
                step = self.step() => step,
            };
            match step {
                Ok(Step::Idle(wait)) => {
                    backoff = BACKOFF_FIRST;
                    tokio::select! {
                        biased;
                        () = shutdown.wait() => break,
                        () = self.shared.wake.notified() => {}
                        Some(key) = self.suspects.recv() => self.queued.push_back(key),
                        () = tokio::time::sleep(wait.min(MAX_IDLE_SLEEP)) => {}
                    }
                }
                Ok(_) => backoff = BACKOFF_FIRST,
                Err(e) => {
                    warn!(
                        code = e.code(),
                        error = %e,
                        backoff_ms = backoff.as_millis() as u64,
                        "scrub step failed; retrying"
                    );
                    tokio::select! {
                        biased;
                        () = shutdown.wait() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        if let Err(e) = self.persist(true).await {
            warn!(code = e.code(), error = %e, "scrub cursor not saved at shutdown");
        }
        info!("scrubber stopped");
    }

    /// Does one unit of work: a suspect, a pass start, one shard of the pass, or a pass end.
    pub(crate) async fn step(&mut self) -> Result<Step, ShardStoreError> {
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
        if self.check(key, pace).await == Verdict::Aborted {
            return Ok(Step::Aborted);
        }
        self.shared.lock().cursor.cursor = name;
        self.persist(false).await?;
        Ok(Step::Checked)
    }

    /// The next suspect to check: those received while idle, then the channel.
    fn next_suspect(&mut self) -> Option<ShardKey> {
        self.queued
            .pop_front()
            .or_else(|| self.suspects.try_recv().ok())
    }

    /// Starts a pass if one was requested, or if none is in progress and the interval since
    /// the last one ended has passed; returns its number.
    fn begin_pass_if_due(&mut self) -> Option<u64> {
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
            let cursor = &mut progress.cursor;
            cursor.pass = cursor.passes_completed + 1;
            cursor.cursor.clear();
            cursor.last_pass_started_ms = now_ms();
            info!(pass = cursor.pass, requested, "scrub pass started");
            cursor.pass
        };
        self.walk.restart_after("");
        self.limiter.restart(Instant::now());
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
    async fn finish_pass(&mut self) -> Result<Step, ShardStoreError> {
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

    /// Checks one shard and quarantines it if damaged. Failures that do not show damage
    /// (a transient I/O error) skip the shard with a warning; the next pass tries again.
    async fn check(&mut self, key: ShardKey, pace: Pace) -> Verdict {
        let path = self.store.shard_path(&key);
        let stat_path = path.clone();
        let stamp = match blocking(move || match fs::metadata(&stat_path) {
            Ok(meta) => Ok(Some(FileStamp::of(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ShardStoreError::io("stat", &stat_path)(e)),
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
        let verdict = match self.verify(key, pace).await {
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
            progress.pass_shards += 1;
        }
        if let Verdict::Damaged { reason, chunk, .. } = verdict {
            self.quarantine(key, reason, chunk, stamp).await;
        }
        verdict
    }

    /// Reads the shard's header and every chunk.
    async fn verify(&mut self, key: ShardKey, pace: Pace) -> Result<Verdict, ShardStoreError> {
        let reader = match self.store.open_read(key).await {
            Ok(reader) => reader,
            Err(ShardStoreError::NotFound { .. }) => return Ok(Verdict::Gone),
            Err(e) => {
                return match damage_of(&e) {
                    Some(reason) => Ok(Verdict::Damaged {
                        reason,
                        chunk: 0,
                        bytes: 0,
                    }),
                    None => Err(e),
                };
            }
        };
        let record_len = chunk_record_len(reader.header().chunk_size);
        let mut bytes = HEADER_LEN;
        for index in 0..reader.chunk_count() {
            if !self.pace(pace).await {
                return Ok(Verdict::Aborted);
            }
            let read = reader.read_chunk(index).await;
            if pace == Pace::Throttled {
                self.limiter.consumed(record_len);
            }
            bytes += record_len;
            let reason = match read {
                Ok(ChunkRead::Intact { .. }) => continue,
                Ok(ChunkRead::Corrupt { .. }) => {
                    if reader
                        .file_len_now()
                        .is_ok_and(|len| len < reader.stat().file_len)
                    {
                        CorruptReason::Truncated
                    } else {
                        CorruptReason::ChunkHash
                    }
                }
                Err(e) => damage_of(&e).ok_or(e)?,
            };
            return Ok(Verdict::Damaged {
                reason,
                chunk: index,
                bytes,
            });
        }
        Ok(Verdict::Intact { bytes })
    }

    /// Waits before the next chunk as `pace` demands; `false` if the check should give way
    /// to a requested pass.
    async fn pace(&mut self, pace: Pace) -> bool {
        match pace {
            Pace::Urgent => return true,
            Pace::Requested => return !self.shared.lock().requested,
            Pace::Throttled => {}
        }
        let mut paused = Duration::ZERO;
        while self.shared.load.in_flight() > 0 && paused < MAX_LOAD_PAUSE {
            if self.shared.lock().requested {
                return false;
            }
            tokio::time::sleep(LOAD_POLL).await;
            paused += LOAD_POLL;
        }
        if !paused.is_zero() {
            // Time paused for clients is not credit for a burst.
            self.limiter.restart(Instant::now());
        }
        loop {
            if self.shared.lock().requested {
                return false;
            }
            let delay = self.limiter.delay(Instant::now());
            if delay.is_zero() {
                return true;
            }
            tokio::time::sleep(delay.min(PACE_SLICE)).await;
        }
    }

    /// Moves a damaged shard to quarantine if it is still the file checked, and records the
    /// finding; a shard rewritten since is checked again instead.
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

/// The kind of damage a store error shows, or `None` if it shows none (the shard is fine
/// as far as we know; the operation failed for another reason).
fn damage_of(err: &ShardStoreError) -> Option<CorruptReason> {
    match err {
        ShardStoreError::CorruptHeader {
            source: ShardFormatError::Truncated,
            ..
        }
        | ShardStoreError::Truncated { .. } => Some(CorruptReason::Truncated),
        ShardStoreError::CorruptHeader { .. }
        | ShardStoreError::ImpossibleHeader { .. }
        | ShardStoreError::Misplaced { .. } => Some(CorruptReason::Header),
        ShardStoreError::Io { source, .. }
            if source.raw_os_error() == Some(EIO)
                || source.kind() == io::ErrorKind::InvalidData =>
        {
            Some(CorruptReason::Io)
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "scrub_test.rs"]
mod tests;
