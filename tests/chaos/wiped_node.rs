//! Chaos 5: a data node's folder is deleted while it is down; after it restarts (empty, same
//! id) repair refills it and every object reads back.

use std::time::Duration;

use tessera_devcluster::NodeRole;

use crate::harness::{FAST_REPAIR, TestCluster, phase};
use crate::history::History;
use crate::workload::{self, Values};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wiped_data_node_is_refilled() {
    let mut tc = TestCluster::start_with(2, FAST_REPAIR.to_vec()).await;
    tc.s3
        .create_bucket()
        .bucket("wipe")
        .send()
        .await
        .expect("bucket");
    let h = History::new();
    let values = Values::default();
    let objects = if workload::long() { 300 } else { 60 };
    for i in 0..objects {
        let v = values.next();
        assert!(workload::put(&tc.s3, &h, 0, "wipe", &format!("w{i}"), v).await);
    }
    let victim = 3;
    let before = tc.shard_files(victim).len();
    assert!(before > 0, "node {victim} holds no shards to lose");

    phase(&format!(
        "node {victim} goes down and its folder is wiped ({before} shard files)"
    ));
    tc.kill(NodeRole::Data, victim).await;
    std::fs::remove_dir_all(tc.data_dir(victim)).expect("wipe");
    tc.restart(NodeRole::Data, victim).await;
    tc.wait_ready().await;

    phase("repair refills it");
    let (report, took) = tc.wait_full_redundancy(Duration::from_secs(180)).await;
    let after = tc.shard_files(victim).len();
    eprintln!(
        "[figure] wiped node: {before} shard files before, {after} after refill, full redundancy in {took:?} ({} shards rebuilt)",
        report.shards_rebuilt_total
    );
    assert!(
        after >= before,
        "node {victim} refilled with {after} of {before} shards"
    );
    workload::final_reads(
        &tc.s3,
        &h,
        "wipe",
        workload::keys_of(&h),
        Duration::from_secs(10),
    )
    .await;
    workload::assert_consistent(&h);
}
