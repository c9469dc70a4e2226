//! The latest worker report of every process (data nodes, gateways, repair daemons), kept in
//! this meta node's memory with the time it arrived, like heartbeats; never replicated.
//!
//! Invariant: memory stays bounded whatever senders do. One entry per process (role and id), at
//! most [`MAX_PROCESSES`] entries (the longest silent is evicted first), at most
//! [`MAX_WORKERS_PER_REPORT`] workers per report, text fields cut to [`MAX_TEXT_BYTES`], and a
//! process silent for [`FORGET_AFTER`] is dropped. Time is a parameter, never read here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tessera_proto::meta::v1 as pb;

/// Processes remembered at most.
pub const MAX_PROCESSES: usize = 4096;
/// Workers accepted in one report.
pub const MAX_WORKERS_PER_REPORT: usize = 256;
/// Bytes kept of each text field (progress, cursor, last error, names).
pub const MAX_TEXT_BYTES: usize = 1024;
/// A process that has not reported for this long is forgotten (it stopped or moved).
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Why a worker report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerReportError {
    /// The report does not say which process it comes from.
    #[error("worker report names no process (role and id are required)")]
    MissingProcess,
    /// The report lists more workers than a process may have.
    #[error("worker report lists {count} workers (at most {max})")]
    TooManyWorkers {
        /// Workers in the report.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl WorkerReportError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingProcess => "worker_report_missing_process",
            Self::TooManyWorkers { .. } => "worker_report_too_many_workers",
        }
    }

    /// The same report is refused again: never retryable.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

struct Received {
    report: pb::WorkerReport,
    at: Instant,
}

/// The table of latest reports; shared by the service's handlers.
#[derive(Default)]
pub struct WorkerReports {
    by_process: Mutex<HashMap<(String, String), Received>>,
}

fn cut(text: &mut String) {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

impl WorkerReports {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `report` as its process's latest, received at `now`.
    pub fn record(
        &self,
        mut report: pb::WorkerReport,
        now: Instant,
    ) -> Result<(), WorkerReportError> {
        let process = report
            .process
            .as_mut()
            .filter(|p| !p.role.is_empty() && !p.id.is_empty())
            .ok_or(WorkerReportError::MissingProcess)?;
        if report.workers.len() > MAX_WORKERS_PER_REPORT {
            return Err(WorkerReportError::TooManyWorkers {
                count: report.workers.len(),
                max: MAX_WORKERS_PER_REPORT,
            });
        }
        for text in [
            &mut process.role,
            &mut process.id,
            &mut process.zone,
            &mut process.addr,
        ] {
            cut(text);
        }
        let key = (process.role.clone(), process.id.clone());
        for worker in &mut report.workers {
            for text in [
                &mut worker.name,
                &mut worker.progress,
                &mut worker.cursor,
                &mut worker.last_error,
            ] {
                cut(text);
            }
        }
        let mut table = self
            .by_process
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table.retain(|_, r| now.saturating_duration_since(r.at) <= FORGET_AFTER);
        if !table.contains_key(&key) && table.len() >= MAX_PROCESSES {
            let oldest = table
                .iter()
                .min_by_key(|(_, r)| r.at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                table.remove(&oldest);
            }
        }
        table.insert(key, Received { report, at: now });
        Ok(())
    }

    /// Every remembered process with its workers and the age of its report at `now`, ordered
    /// by role then id.
    pub fn list(&self, now: Instant) -> Vec<pb::ProcessWorkers> {
        let mut table = self
            .by_process
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table.retain(|_, r| now.saturating_duration_since(r.at) <= FORGET_AFTER);
        let mut out: Vec<pb::ProcessWorkers> = table
            .values()
            .map(|r| pb::ProcessWorkers {
                process: r.report.process.clone(),
                age_ms: u64::try_from(now.saturating_duration_since(r.at).as_millis())
                    .unwrap_or(u64::MAX),
                workers: r.report.workers.clone(),
            })
            .collect();
        out.sort_by(|a, b| {
            let key = |p: &pb::ProcessWorkers| {
                p.process
                    .as_ref()
                    .map(|p| (p.role.clone(), p.id.clone()))
                    .unwrap_or_default()
            };
            key(a).cmp(&key(b))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(role: &str, id: &str, workers: &[&str]) -> pb::WorkerReport {
        pb::WorkerReport {
            process: Some(pb::ProcessId {
                role: role.into(),
                id: id.into(),
                zone: "zone-a".into(),
                addr: "127.0.0.1:1".into(),
            }),
            workers: workers
                .iter()
                .map(|name| pb::WorkerStatus {
                    name: (*name).into(),
                    state: pb::WorkerState::Active as i32,
                    steps: 3,
                    ..pb::WorkerStatus::default()
                })
                .collect(),
        }
    }

    #[test]
    fn the_latest_report_per_process_is_listed_with_its_age() {
        let reports = WorkerReports::new();
        let t0 = Instant::now();
        reports
            .record(report("data", "2", &["scrub"]), t0)
            .expect("record");
        reports
            .record(report("data", "1", &["scrub", "heartbeat"]), t0)
            .expect("record");
        reports
            .record(
                report("data", "2", &["scrub", "compact"]),
                t0 + Duration::from_secs(1),
            )
            .expect("record");
        reports
            .record(report("gateway", "1", &["lease"]), t0)
            .expect("record");
        let listed = reports.list(t0 + Duration::from_millis(2500));
        let summary: Vec<(String, String, u64, usize)> = listed
            .iter()
            .map(|p| {
                let id = p.process.as_ref().expect("process");
                (id.role.clone(), id.id.clone(), p.age_ms, p.workers.len())
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("data".into(), "1".into(), 2500, 2),
                ("data".into(), "2".into(), 1500, 2),
                ("gateway".into(), "1".into(), 2500, 1),
            ]
        );
        assert_eq!(listed[1].workers[1].name, "compact");
        assert_eq!(listed[1].workers[1].steps, 3);
    }

    #[test]
    fn silent_processes_are_forgotten_and_the_table_is_bounded() {
        let reports = WorkerReports::new();
        let t0 = Instant::now();
        reports
            .record(report("repair", "r1", &["scan"]), t0)
            .expect("record");
        assert_eq!(reports.list(t0 + FORGET_AFTER).len(), 1);
        assert!(
            reports
                .list(t0 + FORGET_AFTER + Duration::from_millis(1))
                .is_empty()
        );

        for i in 0..MAX_PROCESSES {
            reports
                .record(
                    report("data", &i.to_string(), &["scrub"]),
                    t0 + Duration::from_millis(i as u64),
                )
                .expect("record");
        }
        let later = t0 + Duration::from_secs(10);
        reports
            .record(report("data", "newcomer", &["scrub"]), later)
            .expect("record");
        let listed = reports.list(later);
        assert_eq!(listed.len(), MAX_PROCESSES);
        let ids: Vec<&str> = listed
            .iter()
            .filter_map(|p| p.process.as_ref().map(|p| p.id.as_str()))
            .collect();
        assert!(ids.contains(&"newcomer"));
        assert!(!ids.contains(&"0"), "the longest silent process is evicted");
        assert!(ids.contains(&"1"));
    }

    #[test]
    fn malformed_or_oversized_reports_are_refused_and_long_text_is_cut() {
        let reports = WorkerReports::new();
        let now = Instant::now();
        let mut anonymous = report("data", "1", &["scrub"]);
        anonymous.process = None;
        assert_eq!(
            reports.record(anonymous, now),
            Err(WorkerReportError::MissingProcess)
        );
        assert_eq!(
            reports.record(report("", "1", &[]), now),
            Err(WorkerReportError::MissingProcess)
        );
        let names: Vec<String> = (0..=MAX_WORKERS_PER_REPORT)
            .map(|i| format!("w{i}"))
            .collect();
        let many: Vec<&str> = names.iter().map(String::as_str).collect();
        let err = reports
            .record(report("data", "1", &many), now)
            .expect_err("too many workers");
        assert_eq!(
            err,
            WorkerReportError::TooManyWorkers {
                count: MAX_WORKERS_PER_REPORT + 1,
                max: MAX_WORKERS_PER_REPORT
            }
        );
        assert_eq!(err.code(), "worker_report_too_many_workers");
        assert!(reports.list(now).is_empty());

        let mut long = report("data", "1", &["scrub"]);
        long.workers[0].last_error = "é".repeat(MAX_TEXT_BYTES);
        reports.record(long, now).expect("record");
        let kept = &reports.list(now)[0].workers[0].last_error;
        assert!(kept.len() <= MAX_TEXT_BYTES && kept.len() >= MAX_TEXT_BYTES - 1);
        assert!(kept.chars().all(|c| c == 'é'));
    }
}
