//! Chaos 4: crash loops. Random processes (the meta leader included) are SIGKILLed and
//! restarted round after round during a mixed load; no acknowledged write and no committed
//! metadata is lost, and the cluster converges to full redundancy.

use std::time::Duration;

use tessera_devcluster::NodeRole;

use crate::harness::{FAST_REPAIR, TestCluster, phase};
use crate::history::History;
use crate::workload::{self, Load, Mix, Values};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loops_lose_nothing_and_converge() {
    let mut tc = TestCluster::start_with(2, FAST_REPAIR.to_vec()).await;
    tc.s3
        .create_bucket()
        .bucket("crash")
        .send()
        .await
        .expect("bucket");
    let h = History::new();
    let values = std::sync::Arc::new(Values::default());
    let rounds = if workload::long() { 20 } else { 4 };
    let load = Load::start(
        &tc.s3,
        &h,
        &values,
        "crash",
        "c",
        Mix {
            keys: 60,
            clients: 4,
            put: 50,
            delete: 10,
        },
    );
    let mut x: u64 = 0x853C_49E6_748F_EA9B;
    for round in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (role, id) = if round % 3 == 0 {
            match tc.meta_leader().await {
                Some(leader) => (NodeRole::Meta, leader),
                None => (NodeRole::Meta, 1),
            }
        } else {
            match x % 10 {
                0..=5 => (NodeRole::Data, 1 + x / 10 % 6),
                6 | 7 => (NodeRole::Meta, 1 + x / 10 % 3),
                8 => (NodeRole::Repair, 1),
                _ => (NodeRole::Gateway, 1),
            }
        };
        phase(&format!("crash round {round}: {role:?} {id}"));
        tc.kill(role, id).await;
        tokio::time::sleep(Duration::from_millis(1_500 + x % 2_500)).await;
        tc.restart(role, id).await;
        tc.wait_ready().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let acked = load.stop().await;
    assert!(acked > 0, "no write was acknowledged");
    phase("the cluster converges");
    let (_, took) = tc.wait_full_redundancy(Duration::from_secs(180)).await;
    eprintln!("[figure] crash loop: full redundancy {took:?} after the last round");
    tc.s3
        .head_bucket()
        .bucket("crash")
        .send()
        .await
        .expect("bucket survives");
    workload::final_reads(
        &tc.s3,
        &h,
        "crash",
        workload::keys_of(&h),
        Duration::from_secs(30),
    )
    .await;
    workload::assert_consistent(&h);
    eprintln!("[figure] crash loop: {rounds} rounds passed, {acked} writes acknowledged");
}
