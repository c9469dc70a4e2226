//! The repair pass as a [`Worker`]: each step does one bounded piece of a pass, so the worker's
//! status shows where the pass is. A pass: (1) meta's membership and applied index, then every
//! alive node's listing; (2) one page of committed blobs per step, each judged and planned;
//! (3) rebuilds, most at risk first, a batch per step; (4) garbage collection (garbage records,
//! then orphans) in the same pass, since orphans are judged against this pass's listings and
//! placement scan; (5) the report to meta. A pass that changed something is followed at once by
//! another (to confirm and report the result), an idle one by the scan interval.
//!
//! Invariant: within a pass the applied index is read before any listing, the listings before
//! the placement scan, and the placement scan before the garbage scan; a pass whose step fails
//! is dropped whole, and the next step starts a new pass from the status call, so no judgement
//! mixes two passes' views.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tessera_client::{DataClient, LeaseHandle, MetaClient, MetaClientError};
use tessera_runtime::clock::now_ms;
use tessera_runtime::rate::SharedRateLimiter;
use tessera_runtime::worker::{StepOutcome, Worker, WorkerError, WorkerProgress};
use tracing::{info, warn};

use crate::config::RepairConfig;
use crate::gc::Collector;
use crate::metrics::RepairStats;
use crate::rebuild::{RebuildCtx, RebuildOutcome, rebuild};
use crate::scan::{ScanOutcome, Scanner};
use crate::view::ClusterView;

/// The pause after a pass that changed something, before the pass that confirms it.
const CONFIRM_PAUSE: Duration = Duration::from_millis(200);
/// Rebuild batches hold this many times `concurrency` blobs, so the pipeline stays full while
/// the worker's status still moves.
const BATCH_PER_SLOT: usize = 4;

/// Why a pass stopped (the worker backs off and starts a new one).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Meta's membership could not be read.
    #[error("reading the cluster status: {0}")]
    Status(MetaClientError),
    /// A page of blobs could not be read.
    #[error("scanning blobs: {0}")]
    Scan(MetaClientError),
}

impl PassError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            PassError::Status(e) | PassError::Scan(e) => e.code(),
        }
    }

    /// Whether a new pass may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PassError::Status(e) | PassError::Scan(e) => e.is_retryable(),
        }
    }
}

/// What a pass's rebuilds did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    committed: u64,
    shards: u64,
    bytes: u64,
    failures: u64,
    superseded: u64,
}

/// Where a pass is.
enum Stage {
    Scan(Scanner),
    Rebuild {
        scan: ScanOutcome,
        next: usize,
        tally: Tally,
        started: Instant,
    },
    Collect {
        scan: ScanOutcome,
        tally: Tally,
    },
}

struct Pass {
    number: u64,
    view: ClusterView,
    stage: Stage,
}

/// The last finished pass, for the worker's status.
#[derive(Debug, Default, Clone, Copy)]
struct PassSummary {
    number: u64,
    blobs: u64,
    backlog: u64,
    rebuilt: u64,
}

/// The repair daemon's pass worker.
pub struct RepairWorker {
    config: RepairConfig,
    meta: MetaClient,
    data: DataClient,
    lease: LeaseHandle,
    limiter: SharedRateLimiter,
    stats: RepairStats,
    pass: Option<Pass>,
    passes: u64,
    /// Blobs met by the last complete scan (the progress total of the next).
    last_total: u64,
    last: Option<PassSummary>,
    throttled: bool,
}

impl RepairWorker {
    /// A worker for `config` writing under `lease`, pacing rebuilt bytes with `limiter`, keeping
    /// its figures in `stats`.
    pub fn new(
        config: RepairConfig,
        meta: MetaClient,
        data: DataClient,
        lease: LeaseHandle,
        limiter: SharedRateLimiter,
        stats: RepairStats,
    ) -> RepairWorker {
        RepairWorker {
            config,
            meta,
            data,
            lease,
            limiter,
            stats,
            pass: None,
            passes: 0,
            last_total: 0,
            last: None,
            throttled: false,
        }
    }

    /// Stores the latest report in meta; a failure is only logged (the next pass retries).
    async fn publish(&self) {
        let report = self.stats.report(&self.config.id, now_ms());
        if let Err(e) = self.meta.put_repair_report(report).await {
            warn!(code = e.code(), error = %e, "publishing the repair report failed");
        }
    }

    /// Begins a pass: the applied index and membership first, then the listings.
    async fn begin(&mut self) -> Result<StepOutcome, PassError> {
        self.stats.scan_started(now_ms());
        let mut view = ClusterView::load(&self.meta)
            .await
            .map_err(PassError::Status)?;
        view.list_shards(&self.data).await;
        self.passes += 1;
        self.pass = Some(Pass {
            number: self.passes,
            stage: Stage::Scan(Scanner::new(&view)),
            view,
        });
        Ok(StepOutcome::Busy)
    }

    /// Does the next piece of the current pass, or begins one.
    async fn advance(&mut self) -> Result<StepOutcome, PassError> {
        let Some(Pass {
            number,
            view,
            stage,
        }) = self.pass.take()
        else {
            return self.begin().await;
        };
        let (stage, outcome) = match stage {
            Stage::Scan(mut scanner) => {
                let done = scanner
                    .next_page(&self.meta, &view, self.config.page_size)
                    .await
                    .map_err(PassError::Scan)?;
                if done {
                    (self.scanned(scanner.finish()).await, StepOutcome::Busy)
                } else {
                    (Stage::Scan(scanner), StepOutcome::Busy)
                }
            }
            Stage::Rebuild {
                scan,
                next,
                mut tally,
                started,
            } => {
                let end = self.rebuild_batch(&view, &scan, next, &mut tally).await;
                if end < scan.work.len() {
                    let stage = Stage::Rebuild {
                        scan,
                        next: end,
                        tally,
                        started,
                    };
                    (stage, StepOutcome::Busy)
                } else {
                    self.rebuilt(tally, started);
                    (Stage::Collect { scan, tally }, StepOutcome::Busy)
                }
            }
            Stage::Collect { scan, tally } => {
                self.collect(&view, &scan).await;
                self.stats.scan_finished(now_ms());
                self.publish().await;
                self.last = Some(PassSummary {
                    number,
                    blobs: scan.stats.blobs,
                    backlog: scan.stats.backlog,
                    rebuilt: tally.shards,
                });
                let pause = if tally.committed > 0 || tally.superseded > 0 {
                    CONFIRM_PAUSE
                } else {
                    self.config.scan_interval()
                };
                return Ok(StepOutcome::Idle(pause));
            }
        };
        self.pass = Some(Pass {
            number,
            view,
            stage,
        });
        Ok(outcome)
    }

    /// The scan is complete: its figures are published and the rebuilds begin.
    async fn scanned(&mut self, scan: ScanOutcome) -> Stage {
        self.stats.scanned(&scan.stats);
        self.last_total = scan.stats.blobs + scan.stats.too_new;
        self.publish().await;
        if !scan.work.is_empty() {
            info!(
                blobs = scan.stats.blobs,
                work = scan.work.len(),
                below_full = scan.stats.below_full,
                unreadable = scan.stats.unreadable,
                unconfirmed = scan.stats.too_new,
                "repair work found"
            );
        }
        Stage::Rebuild {
            scan,
            next: 0,
            tally: Tally::default(),
            started: Instant::now(),
        }
    }

    /// Rebuilds the next batch of work from `next`; returns where the following batch starts.
    async fn rebuild_batch(
        &self,
        view: &ClusterView,
        scan: &ScanOutcome,
        next: usize,
        tally: &mut Tally,
    ) -> usize {
        let concurrency = self.config.concurrency;
        let end = next
            .saturating_add(concurrency.saturating_mul(BATCH_PER_SLOT))
            .min(scan.work.len());
        let Some(batch) = scan.work.get(next..end) else {
            return scan.work.len();
        };
        let ctx = RebuildCtx {
            meta: &self.meta,
            data: &self.data,
            view,
            lease: &self.lease,
            limiter: &self.limiter,
        };
        // Most at risk first: the work list is sorted by spare shards, and buffered streams
        // start futures in order. (The futures are made before streaming: a lazily mapping
        // stream would make the step's future not provably `Send`.)
        let rebuilds: Vec<_> = batch
            .iter()
            .map(|w| {
                let ctx = &ctx;
                async move { (w, rebuild(ctx, w).await) }
            })
            .collect();
        let mut results = futures::stream::iter(rebuilds).buffer_unordered(concurrency);
        while let Some((w, result)) = results.next().await {
            match result {
                Ok(RebuildOutcome::Committed { shards, bytes }) => {
                    tally.committed += 1;
                    tally.shards += shards;
                    tally.bytes += bytes;
                }
                Ok(RebuildOutcome::Superseded) => tally.superseded += 1,
                Err(e) => {
                    tally.failures += 1;
                    warn!(data_id = %w.blob.data_id, code = e.code(),
                        retryable = e.is_retryable(), error = %e,
                        "rebuild failed; retried next pass");
                }
            }
        }
        end
    }

    /// The rebuilds of a pass ended.
    fn rebuilt(&self, tally: Tally, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        self.stats.rebuilt(
            tally.shards,
            tally.bytes,
            tally.failures,
            tally.superseded,
            seconds,
        );
        if tally.committed + tally.failures + tally.superseded > 0 {
            info!(
                blobs = tally.committed,
                shards = tally.shards,
                bytes = tally.bytes,
                failures = tally.failures,
                superseded = tally.superseded,
                seconds = format!("{seconds:.1}"),
                "repair work done"
            );
        }
    }

    /// Garbage collection of the pass; a failure is logged and the pass still ends (the next
    /// pass collects again).
    async fn collect(&self, view: &ClusterView, scan: &ScanOutcome) {
        let collector = Collector {
            meta: &self.meta,
            data: &self.data,
            view,
            claimer: &self.config.id,
            grace_ms: self.config.gc_grace_ms(),
            page_size: self.config.page_size,
        };
        match collector.collect(&scan.referenced).await {
            Ok(gc) => self.stats.collected(gc),
            Err(e) => {
                warn!(code = e.code(), retryable = e.is_retryable(), error = %e,
                    "garbage collection failed; retried next pass");
            }
        }
    }

    /// The one-line status of the worker.
    fn progress_text(&self) -> String {
        let Some(pass) = &self.pass else {
            return match self.last {
                Some(l) => format!(
                    "pass {} done: {} blobs, backlog {}, {} shards rebuilt; waiting",
                    l.number, l.blobs, l.backlog, l.rebuilt
                ),
                None => "starting".to_owned(),
            };
        };
        let n = pass.number;
        match &pass.stage {
            Stage::Scan(scanner) => format!(
                "pass {n}: scanning, {}/{} blobs",
                scanner.blobs_seen(),
                self.last_total
            ),
            Stage::Rebuild {
                scan, next, tally, ..
            } => format!(
                "pass {n}: rebuilding {next}/{} blobs, {} shards rebuilt, backlog {}",
                scan.work.len(),
                tally.shards,
                scan.stats.backlog
            ),
            Stage::Collect { scan, tally } => format!(
                "pass {n}: collecting garbage ({} blobs, {} shards rebuilt, backlog {})",
                scan.stats.blobs, tally.shards, scan.stats.backlog
            ),
        }
    }
}

impl Worker for RepairWorker {
    fn name(&self) -> String {
        "repair".to_owned()
    }

    async fn step(&mut self) -> Result<StepOutcome, WorkerError> {
        let waited = self.limiter.waited();
        let result = self.advance().await;
        self.throttled = self.limiter.waited() > waited;
        if let Err(e) = &result {
            warn!(code = e.code(), retryable = e.is_retryable(), error = %e,
                "repair pass failed; a new pass starts after the backoff");
        }
        Ok(result?)
    }

    fn progress(&self) -> WorkerProgress {
        let (done, total) = match self.pass.as_ref().map(|p| &p.stage) {
            Some(Stage::Scan(scanner)) => (scanner.blobs_seen(), self.last_total),
            Some(Stage::Rebuild { scan, .. } | Stage::Collect { scan, .. }) => {
                let seen = scan.stats.blobs + scan.stats.too_new;
                (seen, seen)
            }
            None => (self.last_total, self.last_total),
        };
        WorkerProgress {
            text: self.progress_text(),
            done,
            total,
            cursor: String::new(),
            throttled: self.throttled,
            rate_limit_bytes_per_sec: self.limiter.rate(),
        }
    }
}

#[cfg(test)]
#[path = "worker_test.rs"]
mod tests;
