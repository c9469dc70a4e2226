//! Chaos 2: with the default layout (RS(3,3), two data nodes per zone) a whole zone and one
//! more data node of another zone are SIGKILLed: nothing acknowledged is lost, every object
//! still reads, and once everything returns repair restores full redundancy.

use std::time::Duration;

use tessera_devcluster::NodeRole;

use crate::harness::{FAST_REPAIR, TestCluster, phase};
use crate::history::{History, Outcome, ReadResult};
use crate::workload::{self, Load, Mix, Values};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zone_plus_one_node_lost_loses_nothing_acknowledged() {
    let mut tc = TestCluster::start_with(2, FAST_REPAIR.to_vec()).await;
    tc.s3
        .create_bucket()
        .bucket("chaos")
        .send()
        .await
        .expect("bucket");
    let h = History::new();
    let values = std::sync::Arc::new(Values::default());
    let rounds = if workload::long() { 3 } else { 1 };
    let zones = ["zone-c", "zone-a", "zone-b"];
    for round in 0..rounds {
        let zone = zones[round % 3];
        // One data node of the next zone.
        let extra = tc
            .data_nodes()
            .into_iter()
            .find(|(_, z, _)| z == zones[(round + 1) % 3])
            .map(|(id, _, _)| id)
            .expect("a data node in another zone");
        phase(&format!(
            "round {round}: load, then {zone} and data node {extra} die"
        ));
        let load = Load::start(
            &tc.s3,
            &h,
            &values,
            "chaos",
            "z",
            Mix {
                keys: 80,
                clients: 4,
                put: 70,
                delete: 0,
            },
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        tc.kill_zone(zone).await;
        tc.kill(NodeRole::Data, extra).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        load.stop().await;

        phase("with a zone and one more node down, every object still reads");
        for key in workload::keys_of(&h) {
            match workload::get(&tc.s3, &h, 500, "chaos", &key).await {
                Outcome::Read(ReadResult::Value(_) | ReadResult::NotFound) => {}
                other => panic!("read of {key} failed with zone plus one down: {other:?}"),
            }
        }
        tc.restart_zone(zone).await;
        tc.restart(NodeRole::Data, extra).await;
        tc.wait_ready().await;
        let (_, took) = tc.wait_full_redundancy(Duration::from_secs(180)).await;
        eprintln!("[figure] zone plus one round {round}: full redundancy {took:?} after restart");
    }
    workload::final_reads(
        &tc.s3,
        &h,
        "chaos",
        workload::keys_of(&h),
        Duration::from_secs(30),
    )
    .await;
    workload::assert_consistent(&h);
    eprintln!("[figure] zone plus one: {rounds} rounds passed");
}
