//! Chaos 3: bit rot. Hundreds of shard files are damaged on disk (a flipped byte in a chunk,
//! truncated, deleted, a damaged header). No corrupt byte is ever served; one scrub pass plus
//! repair finds and rebuilds every damaged shard; and repair never spreads corruption: at the
//! end every shard of every object verifies and every object reads back byte-exact.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{FAST_REPAIR, TestCluster, phase};
use crate::history::{History, Outcome, ReadResult};
use crate::workload::{self, Values};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bit_rot_is_detected_never_served_and_repaired_in_one_scrub_pass() {
    let mut env = FAST_REPAIR.to_vec();
    // Only the pass this test asks for runs.
    env.push(("TESSERA_SCRUB_INTERVAL_SECS", "100000"));
    let tc = TestCluster::start_with(2, env).await;
    tc.s3
        .create_bucket()
        .bucket("rot")
        .send()
        .await
        .expect("bucket");
    let h = History::new();
    let values = Values::default();
    let objects = if workload::long() { 400 } else { 120 };

    phase(&format!("writing {objects} erasure-coded objects"));
    let mut keys = Vec::new();
    for i in 0..objects {
        let key = format!("o{i}");
        // Sizes above the inline limit, one or two stripes.
        let mut v = values.next();
        while workload::size_for(v) < 100_000 {
            v = values.next();
        }
        assert!(
            workload::put(&tc.s3, &h, 0, "rot", &key, v).await,
            "put {key}"
        );
        keys.push(key);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    phase("damaging two shard files of every object");
    let mut damaged: BTreeMap<&str, u32> = BTreeMap::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for key in &keys {
        let blob = tc
            .erasure_blob("rot", key)
            .await
            .expect("erasure placement");
        let shards = &blob.shards;
        let first = (next() % shards.len() as u64) as usize;
        let second = (first + 1 + (next() % (shards.len() as u64 - 1)) as usize) % shards.len();
        for pick in [first, second] {
            let path = tc.shard_path(&blob.data_id, &shards[pick]);
            let len = std::fs::metadata(&path).expect("shard file").len();
            let kind = match next() % 4 {
                0 => {
                    let mut bytes = std::fs::read(&path).expect("read");
                    let at = (len / 2 + next() % (len / 2)) as usize;
                    bytes[at] ^= 0x5A;
                    std::fs::write(&path, bytes).expect("write");
                    "flipped"
                }
                1 => {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .expect("open");
                    f.set_len(len - 1 - next() % (len / 2)).expect("truncate");
                    "truncated"
                }
                2 => {
                    std::fs::remove_file(&path).expect("delete");
                    "deleted"
                }
                _ => {
                    let mut bytes = std::fs::read(&path).expect("read");
                    bytes[4 + (next() % 16) as usize] ^= 0xFF;
                    std::fs::write(&path, bytes).expect("write");
                    "header"
                }
            };
            *damaged.entry(kind).or_insert(0) += 1;
        }
    }
    eprintln!("[figure] damaged shard files: {damaged:?}");

    phase("no corrupt byte is ever served");
    for key in &keys {
        match workload::get(&tc.s3, &h, 1, "rot", key).await {
            Outcome::Read(ReadResult::Value(_)) => {}
            other => panic!("read of {key} with rotten shards gave {other:?}"),
        }
    }

    phase("one scrub pass, then repair");
    let found = tc.scrub_all().await;
    let (report, took) = tc.wait_full_redundancy(Duration::from_secs(180)).await;
    eprintln!(
        "[figure] bit rot: scrub pass found {found} corrupt shards; full redundancy {took:?} after the pass; {} shards rebuilt",
        report.shards_rebuilt_total
    );

    phase("every shard of every object verifies; repair spread no corruption");
    for key in &keys {
        assert_eq!(tc.verify_shards("rot", key).await, 6, "{key} lacks shards");
    }
    workload::final_reads(&tc.s3, &h, "rot", keys.clone(), Duration::from_secs(10)).await;
    workload::assert_consistent(&h);
}
