//! Chaos 1: a whole zone is SIGKILLed under a mixed load. Every acknowledged write reads back
//! byte-exact, reads of existing objects keep succeeding, writes resume within seconds, and
//! after the zone returns repair restores the full spread.

use std::time::{Duration, Instant};

use crate::harness::{FAST_REPAIR, TestCluster, phase};
use crate::history::{History, Outcome, ReadResult};
use crate::workload::{self, Load, Mix, Values};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zone_kill_under_load_loses_nothing_and_repair_restores_the_spread() {
    let mut tc = TestCluster::start_with(2, FAST_REPAIR.to_vec()).await;
    tc.s3
        .create_bucket()
        .bucket("chaos")
        .send()
        .await
        .expect("bucket");
    let h = History::new();
    let values = std::sync::Arc::new(Values::default());
    let zones = ["zone-a", "zone-b", "zone-c"];
    let rounds = if workload::long() { 3 } else { 1 };
    for round in 0..rounds {
        let zone = zones[round % zones.len()];
        phase(&format!(
            "round {round}: a mixed load runs while {zone} is killed"
        ));
        let load = Load::start(
            &tc.s3,
            &h,
            &values,
            "chaos",
            "k",
            Mix {
                keys: 120,
                clients: 4,
                put: 60,
                delete: 5,
            },
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let killed_at = h.now();
        tc.kill_zone(zone).await;

        phase("writes resume within seconds");
        let resumed = loop {
            let ops = h.ops();
            let first = ops.iter().find(|o| {
                o.invoked > killed_at
                    && matches!(o.kind, crate::history::OpKind::Put { .. })
                    && o.outcome == Some(Outcome::Ok)
            });
            if let Some(op) = first {
                break op.completed.unwrap_or(op.invoked) - killed_at;
            }
            assert!(
                h.now() - killed_at < Duration::from_secs(30),
                "no write succeeded within 30 s of the zone kill"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!("[figure] round {round}: first acknowledged write {resumed:?} after the kill");
        assert!(
            resumed < Duration::from_secs(15),
            "writes resumed only after {resumed:?}"
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        let acked = load.stop().await;
        assert!(acked > 0, "no write acknowledged in round {round}");

        phase("with the zone down, every existing object reads");
        for key in workload::keys_of(&h) {
            let started = Instant::now();
            match workload::get(&tc.s3, &h, 500, "chaos", &key).await {
                Outcome::Read(ReadResult::Value(_) | ReadResult::NotFound) => {}
                other => panic!(
                    "read of {key} with {zone} down failed: {other:?} after {:?}",
                    started.elapsed()
                ),
            }
        }

        tc.restart_zone(zone).await;
        tc.wait_ready().await;
        phase("after the zone returns, repair restores the full spread");
        let (report, took) = tc.wait_full_redundancy(Duration::from_secs(180)).await;
        assert_eq!(
            report.off_spread, 0,
            "degraded blobs not moved back: {report:?}"
        );
        eprintln!(
            "[figure] round {round}: full redundancy {took:?} after restart; {} shards rebuilt so far",
            report.shards_rebuilt_total
        );
    }
    phase("final reads: every acknowledged write is there");
    workload::final_reads(
        &tc.s3,
        &h,
        "chaos",
        workload::keys_of(&h),
        Duration::from_secs(30),
    )
    .await;
    workload::assert_consistent(&h);
    eprintln!("[figure] zone kill: {rounds} rounds passed");
}
