//! What the daemon knows about redundancy, kept between passes: published to meta as a
//! `RepairReport` (for `tessera admin repair status`) and served as Prometheus metrics.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tessera_proto::meta::v1 as pb;
use tessera_runtime::Shutdown;
use tessera_runtime::clock::now_ms;
use tracing::{info, warn};

use crate::gc::GcOutcome;
use crate::scan::ScanStats;

/// The daemon's figures; cheap to clone, all clones share them.
#[derive(Clone, Debug, Default)]
pub struct RepairStats {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    last: ScanStats,
    scans_completed: u64,
    last_scan_started_ms: i64,
    last_scan_finished_ms: i64,
    last_scan_seconds: f64,
    shards_rebuilt_total: u64,
    bytes_rebuilt_total: u64,
    rebuild_failures_total: u64,
    superseded_total: u64,
    rebuild_bytes_per_sec: f64,
    below_full_ms_total: u64,
    /// When the previous pass ended with blobs below full redundancy.
    below_since_ms: Option<i64>,
    gc: GcOutcome,
    garbage_shards_deleted_total: u64,
    orphan_shards_deleted_total: u64,
}

impl RepairStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pass began.
    pub fn scan_started(&self, at_ms: i64) {
        self.lock().last_scan_started_ms = at_ms;
    }

    /// A pass's plan is known.
    pub fn scanned(&self, stats: &ScanStats) {
        let mut g = self.lock();
        g.last = stats.clone();
    }

    /// Rebuild work of a pass ended: `shards`/`bytes` written in `seconds`.
    pub fn rebuilt(&self, shards: u64, bytes: u64, failures: u64, superseded: u64, seconds: f64) {
        let mut g = self.lock();
        g.shards_rebuilt_total += shards;
        g.bytes_rebuilt_total += bytes;
        g.rebuild_failures_total += failures;
        g.superseded_total += superseded;
        // The rate of the last pass that rebuilt anything (an idle pass keeps it).
        if bytes > 0 && seconds > 0.0 {
            g.rebuild_bytes_per_sec = bytes as f64 / seconds;
        }
    }

    /// Garbage collection of a pass ended.
    pub fn collected(&self, gc: GcOutcome) {
        let mut g = self.lock();
        g.garbage_shards_deleted_total += gc.garbage_shards_deleted;
        g.orphan_shards_deleted_total += gc.orphan_shards_deleted;
        g.gc = gc;
    }

    /// A pass ended at `at_ms`; `below_full` blobs remained below full redundancy in its scan.
    pub fn scan_finished(&self, at_ms: i64) {
        let mut g = self.lock();
        g.scans_completed += 1;
        g.last_scan_seconds = (at_ms - g.last_scan_started_ms).max(0) as f64 / 1000.0;
        g.last_scan_finished_ms = at_ms;
        if let Some(since) = g.below_since_ms.take() {
            g.below_full_ms_total += u64::try_from((at_ms - since).max(0)).unwrap_or(0);
        }
        if g.last.below_full > 0 || g.last.unreadable > 0 {
            g.below_since_ms = Some(at_ms);
        }
    }

    /// The report published to meta.
    pub fn report(&self, reporter: &str, at_ms: i64) -> pb::RepairReport {
        let g = self.lock();
        let below_ms = g.below_full_ms_total
            + g.below_since_ms
                .map_or(0, |s| u64::try_from((at_ms - s).max(0)).unwrap_or(0));
        pb::RepairReport {
            reporter: reporter.to_owned(),
            at_ms,
            by_spare: g
                .last
                .by_spare
                .iter()
                .map(|(spare, (objects, bytes))| pb::SpareCount {
                    spare: *spare,
                    objects: *objects,
                    bytes: *bytes,
                })
                .collect(),
            backlog: g.last.backlog,
            below_full: g.last.below_full,
            oldest_degraded_ms: g.last.oldest_degraded_ms,
            rebuild_bytes_per_sec: g.rebuild_bytes_per_sec,
            shards_rebuilt_total: g.shards_rebuilt_total,
            bytes_rebuilt_total: g.bytes_rebuilt_total,
            below_full_ms_total: below_ms,
            scans_completed: g.scans_completed,
            last_scan_started_ms: g.last_scan_started_ms,
            last_scan_finished_ms: g.last_scan_finished_ms,
            garbage_records_pending: g.gc.garbage_records_pending,
            garbage_shards_deleted_total: g.garbage_shards_deleted_total,
            orphan_shards_deleted_total: g.orphan_shards_deleted_total,
            shards_per_node: g
                .last
                .shards_per_node
                .iter()
                .map(|(node, shards)| pb::NodeShardCount {
                    node_id: node.0,
                    shards: *shards,
                })
                .collect(),
            unreadable: g.last.unreadable,
            rebuild_failures_total: g.rebuild_failures_total,
            off_spread: g.last.off_spread,
            unconfirmed: g.last.too_new,
        }
    }

    /// The Prometheus text exposition of every figure.
    pub fn prometheus(&self, now_ms: i64) -> String {
        let g = self.lock();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let by_spare: BTreeMap<i32, (u64, u64)> = g.last.by_spare.clone();
        let objects: Vec<(String, f64)> = by_spare
            .iter()
            .map(|(s, (o, _))| (format!("{{spare=\"{s}\"}}"), *o as f64))
            .collect();
        let bytes: Vec<(String, f64)> = by_spare
            .iter()
            .map(|(s, (_, b))| (format!("{{spare=\"{s}\"}}"), *b as f64))
            .collect();
        let one = |v: f64| vec![(String::new(), v)];
        gauge(
            "tessera_repair_blobs",
            "Blobs by spare shards (more losses each survives) in the last scan.",
            "gauge",
            &objects,
        );
        gauge(
            "tessera_repair_bytes",
            "Bytes of blobs by spare shards in the last scan.",
            "gauge",
            &bytes,
        );
        gauge(
            "tessera_repair_backlog",
            "Blobs needing repair in the last scan.",
            "gauge",
            &one(g.last.backlog as f64),
        );
        gauge(
            "tessera_repair_below_full_redundancy",
            "Blobs below full redundancy (a shard missing, or a zone loss would leave fewer than k) in the last scan.",
            "gauge",
            &one(g.last.below_full as f64),
        );
        gauge(
            "tessera_repair_unconfirmed",
            "Blobs committed just before the last scan, judged by the next one.",
            "gauge",
            &one(g.last.too_new as f64),
        );
        gauge(
            "tessera_repair_off_spread",
            "Blobs at full redundancy but off the full zone spread in the last scan.",
            "gauge",
            &one(g.last.off_spread as f64),
        );
        gauge(
            "tessera_repair_unreadable",
            "Blobs with fewer than k healthy shards in the last scan.",
            "gauge",
            &one(g.last.unreadable as f64),
        );
        let oldest = if g.last.oldest_degraded_ms > 0 {
            (now_ms - g.last.oldest_degraded_ms).max(0) as f64 / 1000.0
        } else {
            0.0
        };
        gauge(
            "tessera_repair_oldest_degraded_age_seconds",
            "Age of the oldest blob below full redundancy (0 when none).",
            "gauge",
            &one(oldest),
        );
        gauge(
            "tessera_repair_rebuild_bytes_per_second",
            "Rebuilt bytes per second during the last pass that rebuilt anything.",
            "gauge",
            &one(g.rebuild_bytes_per_sec),
        );
        gauge(
            "tessera_repair_shards_rebuilt_total",
            "Shards rebuilt since start.",
            "counter",
            &one(g.shards_rebuilt_total as f64),
        );
        gauge(
            "tessera_repair_bytes_rebuilt_total",
            "Shard bytes rebuilt since start.",
            "counter",
            &one(g.bytes_rebuilt_total as f64),
        );
        gauge(
            "tessera_repair_superseded_total",
            "Rebuilds skipped or refused because the blob changed since the scan.",
            "counter",
            &one(g.superseded_total as f64),
        );
        gauge(
            "tessera_repair_failures_total",
            "Rebuilds that failed (retried next pass).",
            "counter",
            &one(g.rebuild_failures_total as f64),
        );
        let below = g.below_full_ms_total
            + g.below_since_ms
                .map_or(0, |s| u64::try_from((now_ms - s).max(0)).unwrap_or(0));
        gauge(
            "tessera_repair_below_full_seconds_total",
            "Time the cluster spent with blobs below full redundancy.",
            "counter",
            &one(below as f64 / 1000.0),
        );
        gauge(
            "tessera_repair_scans_total",
            "Completed passes.",
            "counter",
            &one(g.scans_completed as f64),
        );
        gauge(
            "tessera_repair_last_scan_seconds",
            "Duration of the last pass.",
            "gauge",
            &one(g.last_scan_seconds),
        );
        gauge(
            "tessera_gc_garbage_records_pending",
            "Garbage records not yet collected.",
            "gauge",
            &one(g.gc.garbage_records_pending as f64),
        );
        gauge(
            "tessera_gc_shards_deleted_total",
            "Shard copies deleted by garbage collection.",
            "counter",
            &[
                (
                    "{kind=\"garbage\"}".to_owned(),
                    g.garbage_shards_deleted_total as f64,
                ),
                (
                    "{kind=\"orphan\"}".to_owned(),
                    g.orphan_shards_deleted_total as f64,
                ),
            ],
        );
        let per_node: Vec<(String, f64)> = g
            .last
            .shards_per_node
            .iter()
            .map(|(n, c)| (format!("{{node=\"{}\"}}", n.0), *c as f64))
            .collect();
        gauge(
            "tessera_repair_node_shards",
            "Shard copies placed on each data node in the last scan.",
            "gauge",
            &per_node,
        );
        out
    }
}

/// Binds the metrics listener (so that a bad address fails the daemon's start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr()?, "metrics listening");
    Ok(listener)
}

/// Serves `GET /metrics` on `listener` until shutdown.
pub async fn serve(listener: tokio::net::TcpListener, stats: RepairStats, shutdown: Shutdown) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
            () = shutdown.wait() => return,
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let stats = stats.clone();
                async move {
                    let response = if req.uri().path() == "/metrics" {
                        http::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(stats.prometheus(now_ms()))))
                    } else {
                        http::Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"not found\n")))
                    };
                    Ok::<_, Infallible>(response.unwrap_or_default())
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::names::NodeId;

    fn stats_with(below: u64) -> ScanStats {
        let mut s = ScanStats {
            blobs: 3,
            backlog: below,
            below_full: below,
            oldest_degraded_ms: if below > 0 { 1_000 } else { 0 },
            ..ScanStats::default()
        };
        s.by_spare.insert(3, (2, 200));
        s.by_spare.insert(2, (1, 100));
        s.shards_per_node.insert(NodeId(4), 6);
        s
    }

    #[test]
    fn time_below_full_redundancy_accumulates_until_a_clean_pass() {
        let stats = RepairStats::default();
        stats.scan_started(0);
        stats.scanned(&stats_with(1));
        stats.scan_finished(10_000);
        // Still below at the next pass: the whole interval counts.
        stats.scan_started(11_000);
        stats.scanned(&stats_with(1));
        stats.scan_finished(20_000);
        // Clean: the interval up to this pass's end counts, then nothing more.
        stats.scan_started(21_000);
        stats.scanned(&stats_with(0));
        stats.scan_finished(30_000);
        let r = stats.report("r", 100_000);
        assert_eq!(r.below_full_ms_total, 20_000);
        assert_eq!(r.scans_completed, 3);
        assert_eq!(r.below_full, 0);
        assert_eq!(r.oldest_degraded_ms, 0);
    }

    #[test]
    fn report_and_metrics_carry_every_figure() {
        let stats = RepairStats::default();
        stats.scan_started(0);
        stats.scanned(&stats_with(1));
        stats.rebuilt(6, 6_000, 1, 2, 2.0);
        stats.collected(GcOutcome {
            garbage_records_pending: 4,
            garbage_shards_deleted: 5,
            orphan_shards_deleted: 7,
        });
        stats.scan_finished(5_000);
        let r = stats.report("repair-1", 6_000);
        assert_eq!(r.reporter, "repair-1");
        assert_eq!(r.by_spare.len(), 2);
        assert_eq!(r.shards_rebuilt_total, 6);
        assert_eq!(r.rebuild_bytes_per_sec, 3_000.0);
        assert_eq!(r.garbage_shards_deleted_total, 5);
        assert_eq!(r.orphan_shards_deleted_total, 7);
        assert_eq!(r.rebuild_failures_total, 1);
        assert_eq!(r.below_full_ms_total, 1_000);
        assert_eq!(r.shards_per_node[0].shards, 6);
        let text = stats.prometheus(6_000);
        for line in [
            "tessera_repair_blobs{spare=\"3\"} 2",
            "tessera_repair_bytes{spare=\"2\"} 100",
            "tessera_repair_backlog 1",
            "tessera_repair_below_full_redundancy 1",
            "tessera_repair_oldest_degraded_age_seconds 5",
            "tessera_repair_shards_rebuilt_total 6",
            "tessera_repair_superseded_total 2",
            "tessera_gc_shards_deleted_total{kind=\"orphan\"} 7",
            "tessera_repair_node_shards{node=\"4\"} 6",
            "# TYPE tessera_repair_scans_total counter",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
