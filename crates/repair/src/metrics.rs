//! What the daemon knows about redundancy, kept between passes: published to meta as a
//! `RepairReport` (for `tessera admin repair status`) and served as Prometheus metrics.
//!
//! Invariant: the report and the metrics show the same figures: counters live in
//! `tessera_runtime::metrics` counters that the report reads, the last scan's figures are set
//! into gauges when the scan ends (labels of spare counts and nodes that the scan no longer saw
//! are removed), and the figures that are fractional or grow with the clock between passes
//! (seconds below full redundancy, the oldest degraded blob's age) are computed when read.
//! Report times are this daemon's wall clock: they are shown, never used to judge anything.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tessera_proto::meta::v1 as pb;
use tessera_runtime::metrics::{Counter, CounterVec, Gauge, GaugeVec};

use crate::gc::GcOutcome;
use crate::scan::ScanStats;

/// The daemon's figures; cheap to clone, all clones share them.
#[derive(Clone, Debug)]
pub struct RepairStats {
    inner: Arc<Inner>,
}

impl Default for RepairStats {
    fn default() -> Self {
        RepairStats {
            inner: Arc::new(Inner::new()),
        }
    }
}

/// The figures that change together, under one lock.
#[derive(Debug, Default)]
struct PassState {
    last: ScanStats,
    last_scan_started_ms: i64,
    last_scan_finished_ms: i64,
    last_scan_seconds: f64,
    rebuild_bytes_per_sec: f64,
    below_full_ms_total: u64,
    /// When the previous pass ended with blobs below full redundancy.
    below_since_ms: Option<i64>,
    garbage_records_pending: u64,
}

#[derive(Debug)]
struct Inner {
    pass: Mutex<PassState>,
    blobs: GaugeVec,
    bytes: GaugeVec,
    backlog: Gauge,
    below_full: Gauge,
    unconfirmed: Gauge,
    off_spread: Gauge,
    unreadable: Gauge,
    shards_rebuilt: Counter,
    bytes_rebuilt: Counter,
    superseded: Counter,
    failures: Counter,
    scans: Counter,
    gc_pending: Gauge,
    gc_deleted: CounterVec,
    garbage_deleted: Arc<Counter>,
    orphans_deleted: Arc<Counter>,
    node_shards: GaugeVec,
}

impl Inner {
    fn new() -> Inner {
        let gc_deleted = CounterVec::new(
            "tessera_gc_shards_deleted_total",
            "Shard copies deleted by garbage collection.",
            &["kind"],
        );
        Inner {
            pass: Mutex::new(PassState::default()),
            blobs: GaugeVec::new(
                "tessera_repair_blobs",
                "Blobs by spare shards (more losses each survives) in the last scan.",
                &["spare"],
            ),
            bytes: GaugeVec::new(
                "tessera_repair_bytes",
                "Bytes of blobs by spare shards in the last scan.",
                &["spare"],
            ),
            backlog: Gauge::new(
                "tessera_repair_backlog",
                "Blobs needing repair in the last scan.",
            ),
            below_full: Gauge::new(
                "tessera_repair_below_full_redundancy",
                "Blobs below full redundancy (a shard missing, or a zone loss would leave fewer \
                 than k) in the last scan.",
            ),
            unconfirmed: Gauge::new(
                "tessera_repair_unconfirmed",
                "Blobs committed just before the last scan, judged by the next one.",
            ),
            off_spread: Gauge::new(
                "tessera_repair_off_spread",
                "Blobs at full redundancy but off the full zone spread in the last scan.",
            ),
            unreadable: Gauge::new(
                "tessera_repair_unreadable",
                "Blobs with fewer than k healthy shards in the last scan.",
            ),
            shards_rebuilt: Counter::new(
                "tessera_repair_shards_rebuilt_total",
                "Shards rebuilt since start.",
            ),
            bytes_rebuilt: Counter::new(
                "tessera_repair_bytes_rebuilt_total",
                "Shard bytes rebuilt since start.",
            ),
            superseded: Counter::new(
                "tessera_repair_superseded_total",
                "Rebuilds skipped or refused because the blob changed since the scan.",
            ),
            failures: Counter::new(
                "tessera_repair_failures_total",
                "Rebuilds that failed (retried next pass).",
            ),
            scans: Counter::new("tessera_repair_scans_total", "Completed passes."),
            gc_pending: Gauge::new(
                "tessera_gc_garbage_records_pending",
                "Garbage records not yet collected.",
            ),
            garbage_deleted: gc_deleted.with(&["garbage"]),
            orphans_deleted: gc_deleted.with(&["orphan"]),
            gc_deleted,
            node_shards: GaugeVec::new(
                "tessera_repair_node_shards",
                "Shard copies placed on each data node in the last scan.",
                &["node"],
            ),
        }
    }
}

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn elapsed_ms(from_ms: i64, to_ms: i64) -> u64 {
    u64::try_from(to_ms.saturating_sub(from_ms)).unwrap_or(0)
}

/// Appends one sample with its HELP and TYPE lines, for the figures a `Gauge` (whole numbers)
/// cannot hold.
fn render_float(out: &mut String, name: &str, help: &str, kind: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

impl RepairStats {
    fn pass(&self) -> MutexGuard<'_, PassState> {
        self.inner
            .pass
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A pass began at `at_ms`.
    pub fn scan_started(&self, at_ms: i64) {
        self.pass().last_scan_started_ms = at_ms;
    }

    /// A pass's scan is complete: its figures replace the previous scan's.
    pub fn scanned(&self, stats: &ScanStats) {
        let m = &self.inner;
        let mut pass = self.pass();
        for spare in pass.last.by_spare.keys() {
            if !stats.by_spare.contains_key(spare) {
                m.blobs.remove(&[&spare.to_string()]);
                m.bytes.remove(&[&spare.to_string()]);
            }
        }
        for node in pass.last.shards_per_node.keys() {
            if !stats.shards_per_node.contains_key(node) {
                m.node_shards.remove(&[&node.0.to_string()]);
            }
        }
        for (spare, (objects, bytes)) in &stats.by_spare {
            let label = spare.to_string();
            m.blobs.with(&[&label]).set(gauge_value(*objects));
            m.bytes.with(&[&label]).set(gauge_value(*bytes));
        }
        for (node, shards) in &stats.shards_per_node {
            m.node_shards
                .with(&[&node.0.to_string()])
                .set(gauge_value(*shards));
        }
        m.backlog.set(gauge_value(stats.backlog));
        m.below_full.set(gauge_value(stats.below_full));
        m.unconfirmed.set(gauge_value(stats.too_new));
        m.off_spread.set(gauge_value(stats.off_spread));
        m.unreadable.set(gauge_value(stats.unreadable));
        pass.last = stats.clone();
    }

    /// Rebuild work of a pass ended: `shards`/`bytes` written in `seconds`.
    pub fn rebuilt(&self, shards: u64, bytes: u64, failures: u64, superseded: u64, seconds: f64) {
        let m = &self.inner;
        m.shards_rebuilt.inc_by(shards);
        m.bytes_rebuilt.inc_by(bytes);
        m.failures.inc_by(failures);
        m.superseded.inc_by(superseded);
        // The rate of the last pass that rebuilt anything (an idle pass keeps it).
        if bytes > 0 && seconds > 0.0 {
            self.pass().rebuild_bytes_per_sec = bytes as f64 / seconds;
        }
    }

    /// Garbage collection of a pass ended.
    pub fn collected(&self, gc: GcOutcome) {
        let m = &self.inner;
        m.garbage_deleted.inc_by(gc.garbage_shards_deleted);
        m.orphans_deleted.inc_by(gc.orphan_shards_deleted);
        m.gc_pending.set(gauge_value(gc.garbage_records_pending));
        self.pass().garbage_records_pending = gc.garbage_records_pending;
    }

    /// A pass ended at `at_ms`; the time below full redundancy runs on while its scan found
    /// blobs below full redundancy or unreadable.
    pub fn scan_finished(&self, at_ms: i64) {
        self.inner.scans.inc();
        let mut pass = self.pass();
        pass.last_scan_seconds = elapsed_ms(pass.last_scan_started_ms, at_ms) as f64 / 1000.0;
        pass.last_scan_finished_ms = at_ms;
        if let Some(since) = pass.below_since_ms.take() {
            pass.below_full_ms_total += elapsed_ms(since, at_ms);
        }
        if pass.last.below_full > 0 || pass.last.unreadable > 0 {
            pass.below_since_ms = Some(at_ms);
        }
    }

    /// Passes completed.
    pub fn scans_completed(&self) -> u64 {
        self.inner.scans.get()
    }

    /// Time below full redundancy up to `at_ms`.
    fn below_full_ms(pass: &PassState, at_ms: i64) -> u64 {
        pass.below_full_ms_total + pass.below_since_ms.map_or(0, |s| elapsed_ms(s, at_ms))
    }

    /// The report published to meta.
    pub fn report(&self, reporter: &str, at_ms: i64) -> pb::RepairReport {
        let m = &self.inner;
        let pass = self.pass();
        pb::RepairReport {
            reporter: reporter.to_owned(),
            at_ms,
            by_spare: pass
                .last
                .by_spare
                .iter()
                .map(|(spare, (objects, bytes))| pb::SpareCount {
                    spare: *spare,
                    objects: *objects,
                    bytes: *bytes,
                })
                .collect(),
            backlog: pass.last.backlog,
            below_full: pass.last.below_full,
            oldest_degraded_ms: pass.last.oldest_degraded_ms,
            rebuild_bytes_per_sec: pass.rebuild_bytes_per_sec,
            shards_rebuilt_total: m.shards_rebuilt.get(),
            bytes_rebuilt_total: m.bytes_rebuilt.get(),
            below_full_ms_total: Self::below_full_ms(&pass, at_ms),
            scans_completed: m.scans.get(),
            last_scan_started_ms: pass.last_scan_started_ms,
            last_scan_finished_ms: pass.last_scan_finished_ms,
            garbage_records_pending: pass.garbage_records_pending,
            garbage_shards_deleted_total: m.garbage_deleted.get(),
            orphan_shards_deleted_total: m.orphans_deleted.get(),
            shards_per_node: pass
                .last
                .shards_per_node
                .iter()
                .map(|(node, shards)| pb::NodeShardCount {
                    node_id: node.0,
                    shards: *shards,
                })
                .collect(),
            unreadable: pass.last.unreadable,
            rebuild_failures_total: m.failures.get(),
            off_spread: pass.last.off_spread,
            unconfirmed: pass.last.too_new,
        }
    }

    /// The Prometheus text exposition of every figure, as of `now_ms`.
    pub fn prometheus(&self, now_ms: i64) -> String {
        let m = &self.inner;
        let (oldest_age, rebuild_rate, below_ms, last_scan_seconds) = {
            let pass = self.pass();
            let oldest = pass.last.oldest_degraded_ms;
            let age = if oldest > 0 {
                elapsed_ms(oldest, now_ms) as f64 / 1000.0
            } else {
                0.0
            };
            (
                age,
                pass.rebuild_bytes_per_sec,
                Self::below_full_ms(&pass, now_ms),
                pass.last_scan_seconds,
            )
        };
        let mut out = String::new();
        m.blobs.render(&mut out);
        m.bytes.render(&mut out);
        m.backlog.render(&mut out);
        m.below_full.render(&mut out);
        m.unconfirmed.render(&mut out);
        m.off_spread.render(&mut out);
        m.unreadable.render(&mut out);
        render_float(
            &mut out,
            "tessera_repair_oldest_degraded_age_seconds",
            "Age of the oldest blob below full redundancy (0 when none).",
            "gauge",
            oldest_age,
        );
        render_float(
            &mut out,
            "tessera_repair_rebuild_bytes_per_second",
            "Rebuilt bytes per second during the last pass that rebuilt anything.",
            "gauge",
            rebuild_rate,
        );
        m.shards_rebuilt.render(&mut out);
        m.bytes_rebuilt.render(&mut out);
        m.superseded.render(&mut out);
        m.failures.render(&mut out);
        render_float(
            &mut out,
            "tessera_repair_below_full_seconds_total",
            "Time the cluster spent with blobs below full redundancy.",
            "counter",
            below_ms as f64 / 1000.0,
        );
        m.scans.render(&mut out);
        render_float(
            &mut out,
            "tessera_repair_last_scan_seconds",
            "Duration of the last pass.",
            "gauge",
            last_scan_seconds,
        );
        m.gc_pending.render(&mut out);
        m.gc_deleted.render(&mut out);
        m.node_shards.render(&mut out);
        out
    }
}

#[cfg(test)]
#[path = "metrics_test.rs"]
mod tests;
