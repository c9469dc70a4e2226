use tessera_core::names::NodeId;

use super::*;

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
    assert_eq!(stats.scans_completed(), 3);
    assert_eq!(r.below_full, 0);
    assert_eq!(r.oldest_degraded_ms, 0);
    assert_eq!(r.last_scan_started_ms, 21_000);
    assert_eq!(r.last_scan_finished_ms, 30_000);
    assert!(
        stats
            .prometheus(100_000)
            .contains("tessera_repair_last_scan_seconds 9\n")
    );
}

#[test]
fn report_and_metrics_carry_every_figure() {
    let stats = RepairStats::default();
    stats.scan_started(0);
    let mut scanned = stats_with(1);
    scanned.too_new = 2;
    scanned.off_spread = 1;
    scanned.unreadable = 1;
    stats.scanned(&scanned);
    stats.rebuilt(6, 6_000, 1, 2, 2.0);
    stats.collected(GcOutcome {
        garbage_records_pending: 4,
        garbage_shards_deleted: 5,
        orphan_shards_deleted: 7,
    });
    stats.scan_finished(5_000);
    let r = stats.report("repair-1", 6_000);
    assert_eq!(r.reporter, "repair-1");
    assert_eq!(r.at_ms, 6_000);
    assert_eq!(r.by_spare.len(), 2);
    assert_eq!(r.shards_rebuilt_total, 6);
    assert_eq!(r.bytes_rebuilt_total, 6_000);
    assert_eq!(r.rebuild_bytes_per_sec, 3_000.0);
    assert_eq!(r.garbage_records_pending, 4);
    assert_eq!(r.garbage_shards_deleted_total, 5);
    assert_eq!(r.orphan_shards_deleted_total, 7);
    assert_eq!(r.rebuild_failures_total, 1);
    assert_eq!(r.below_full_ms_total, 1_000);
    assert_eq!(r.shards_per_node[0].shards, 6);
    assert_eq!((r.unconfirmed, r.off_spread, r.unreadable), (2, 1, 1));
    let text = stats.prometheus(6_000);
    for line in [
        "tessera_repair_blobs{spare=\"3\"} 2\n",
        "tessera_repair_bytes{spare=\"2\"} 100\n",
        "tessera_repair_backlog 1\n",
        "tessera_repair_below_full_redundancy 1\n",
        "tessera_repair_unconfirmed 2\n",
        "tessera_repair_off_spread 1\n",
        "tessera_repair_unreadable 1\n",
        "tessera_repair_oldest_degraded_age_seconds 5\n",
        "tessera_repair_rebuild_bytes_per_second 3000\n",
        "tessera_repair_shards_rebuilt_total 6\n",
        "tessera_repair_bytes_rebuilt_total 6000\n",
        "tessera_repair_superseded_total 2\n",
        "tessera_repair_failures_total 1\n",
        "tessera_repair_below_full_seconds_total 1\n",
        "tessera_repair_scans_total 1\n",
        "tessera_gc_garbage_records_pending 4\n",
        "tessera_gc_shards_deleted_total{kind=\"garbage\"} 5\n",
        "tessera_gc_shards_deleted_total{kind=\"orphan\"} 7\n",
        "tessera_repair_node_shards{node=\"4\"} 6\n",
        "# TYPE tessera_repair_scans_total counter\n",
        "# TYPE tessera_repair_below_full_seconds_total counter\n",
        "# TYPE tessera_repair_backlog gauge\n",
        "# HELP tessera_repair_backlog Blobs needing repair in the last scan.\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// The metrics a fresh daemon serves before its first pass: every name, at zero.
#[test]
fn a_fresh_daemon_serves_every_metric_at_zero() {
    let text = RepairStats::default().prometheus(1_000);
    for line in [
        "tessera_repair_backlog 0\n",
        "tessera_repair_below_full_redundancy 0\n",
        "tessera_repair_oldest_degraded_age_seconds 0\n",
        "tessera_repair_shards_rebuilt_total 0\n",
        "tessera_repair_below_full_seconds_total 0\n",
        "tessera_gc_shards_deleted_total{kind=\"garbage\"} 0\n",
        "tessera_gc_shards_deleted_total{kind=\"orphan\"} 0\n",
        "# TYPE tessera_repair_blobs gauge\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// Spare counts and nodes the last scan no longer saw disappear from the metrics, as they do
/// from the report.
#[test]
fn labels_of_the_previous_scan_go_when_the_next_scan_lacks_them() {
    let stats = RepairStats::default();
    stats.scanned(&stats_with(1));
    let mut next = ScanStats::default();
    next.by_spare.insert(3, (5, 500));
    next.shards_per_node.insert(NodeId(5), 2);
    stats.scanned(&next);
    let text = stats.prometheus(0);
    assert!(
        text.contains("tessera_repair_blobs{spare=\"3\"} 5\n"),
        "{text}"
    );
    assert!(!text.contains("spare=\"2\""), "{text}");
    assert!(!text.contains("node=\"4\""), "{text}");
    assert!(
        text.contains("tessera_repair_node_shards{node=\"5\"} 2\n"),
        "{text}"
    );
    assert_eq!(stats.report("r", 0).by_spare.len(), 1);
}
