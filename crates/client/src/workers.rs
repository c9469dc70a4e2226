//! Reporting a process's background workers to meta, so `tessera admin workers` can list every
//! worker of every process from any meta node.
//!
//! Invariant: the reporter is itself a worker of the registry it reports (so it shows up too),
//! sends the whole registry every [`REPORT_INTERVAL`], and never fails: an unreachable meta node
//! simply misses a report.

use std::time::Duration;

use tessera_proto::meta::v1 as pb;
use tessera_runtime::worker::{
    StepOutcome, Worker, WorkerError, WorkerRegistry, WorkerState, WorkerStatus,
};

use crate::MetaClient;

/// How often a process reports its workers.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// Which process a report comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// "data", "gateway", "repair".
    pub role: String,
    /// Node id or daemon id.
    pub id: String,
    /// Failure domain, if the process has one.
    pub zone: String,
    /// Address it serves at, if any.
    pub addr: String,
}

/// The worker that reports its registry to every meta node.
pub struct WorkerReporter {
    meta: MetaClient,
    process: ProcessIdentity,
    registry: WorkerRegistry,
    reports: u64,
}

impl WorkerReporter {
    /// A reporter of `registry` for `process`; spawn it into the same registry.
    pub fn new(meta: MetaClient, process: ProcessIdentity, registry: WorkerRegistry) -> Self {
        Self {
            meta,
            process,
            registry,
            reports: 0,
        }
    }
}

impl Worker for WorkerReporter {
    fn name(&self) -> String {
        "worker-report".to_owned()
    }

    async fn step(&mut self) -> Result<StepOutcome, WorkerError> {
        let report = worker_report(&self.process, &self.registry.snapshot());
        self.meta.report_workers_all(report).await;
        self.reports += 1;
        Ok(StepOutcome::Idle(REPORT_INTERVAL))
    }

    fn progress(&self) -> tessera_runtime::worker::WorkerProgress {
        tessera_runtime::worker::WorkerProgress {
            text: format!("{} reports sent", self.reports),
            done: self.reports,
            ..Default::default()
        }
    }
}

/// The wire form of a process's worker statuses.
pub fn worker_report(process: &ProcessIdentity, workers: &[WorkerStatus]) -> pb::WorkerReport {
    pb::WorkerReport {
        process: Some(pb::ProcessId {
            role: process.role.clone(),
            id: process.id.clone(),
            zone: process.zone.clone(),
            addr: process.addr.clone(),
        }),
        workers: workers.iter().map(worker_status).collect(),
    }
}

/// The wire form of one worker's status.
pub fn worker_status(w: &WorkerStatus) -> pb::WorkerStatus {
    pb::WorkerStatus {
        name: w.name.clone(),
        state: state(w.state) as i32,
        progress: w.progress.text.clone(),
        done: w.progress.done,
        total: w.progress.total,
        cursor: w.progress.cursor.clone(),
        steps: w.steps,
        errors: w.errors,
        last_error: w.last_error.clone().unwrap_or_default(),
        last_step_ms: w.last_step_ms,
        rate_limit_bytes_per_sec: w.progress.rate_limit_bytes_per_sec,
    }
}

fn state(s: WorkerState) -> pb::WorkerState {
    match s {
        WorkerState::Starting => pb::WorkerState::Starting,
        WorkerState::Active => pb::WorkerState::Active,
        WorkerState::Idle => pb::WorkerState::Idle,
        WorkerState::Throttled => pb::WorkerState::Throttled,
        WorkerState::Backoff => pb::WorkerState::Backoff,
        WorkerState::Stopped => pb::WorkerState::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_runtime::worker::WorkerProgress;

    #[test]
    fn a_report_carries_every_field_of_every_worker() {
        let process = ProcessIdentity {
            role: "data".into(),
            id: "3".into(),
            zone: "zone-b".into(),
            addr: "127.0.0.1:7103".into(),
        };
        let status = WorkerStatus {
            name: "scrub".into(),
            state: WorkerState::Throttled,
            progress: WorkerProgress {
                text: "pass 2".into(),
                done: 5,
                total: 9,
                cursor: "ab/cd".into(),
                throttled: true,
                rate_limit_bytes_per_sec: 1024,
            },
            steps: 11,
            errors: 1,
            last_error: Some("disk".into()),
            last_step_ms: 77,
        };
        let report = worker_report(&process, &[status]);
        let p = report.process.expect("process");
        assert_eq!((p.role.as_str(), p.id.as_str()), ("data", "3"));
        assert_eq!(
            (p.zone.as_str(), p.addr.as_str()),
            ("zone-b", "127.0.0.1:7103")
        );
        let w = &report.workers[0];
        assert_eq!(w.state, pb::WorkerState::Throttled as i32);
        assert_eq!((w.done, w.total, w.steps, w.errors), (5, 9, 11, 1));
        assert_eq!(
            (
                w.progress.as_str(),
                w.cursor.as_str(),
                w.last_error.as_str()
            ),
            ("pass 2", "ab/cd", "disk")
        );
        assert_eq!((w.last_step_ms, w.rate_limit_bytes_per_sec), (77, 1024));
    }
}
