//! Garbage collection that cannot eat live data, through real processes. Clocks are skewed by
//! hours on a data node, another data node, the gateway and the repair daemon; the grace period
//! is at its minimum; a steady load overwrites, creates and aborts while the daemon collects
//! continuously. Every acknowledged write must read back, garbage must still be collected, and
//! an orphan is deleted only once the write lease it was written under has ended (judged by the
//! meta clock), never while its lease is live.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{ClusterOptions, TestCluster, pattern, phase};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tessera_client::shard::{ShardWriteSpec, ShardWriter};
use tessera_client::{DataClient, ShardId};
use tessera_core::blob::Generation;
use tessera_core::layout::Layout;
use tessera_core::lease::MIN_GC_GRACE_MS;
use tessera_core::names::DataId;
use tessera_devcluster::NodeRole;
use tokio::sync::Mutex;

const HOUR_MS: i64 = 3_600_000;

/// Writes one shard of a blob no manifest will ever reference, under `lease_id`, to a node.
async fn plant_orphan(data: &DataClient, addr: &str, lease_id: u64, seed: u8) -> ShardId {
    let id = ShardId::new(
        DataId::from_bytes([seed; 16]),
        0,
        Generation::from_random(u64::from(seed) * 7919),
    );
    let spec = ShardWriteSpec::new(id, Layout::new(3, 3).expect("layout"), 4096, lease_id);
    let mut writer = ShardWriter::open(data, addr, spec).expect("open shard writer");
    writer
        .send_chunk(Bytes::from(pattern(4096, u64::from(seed))))
        .await
        .expect("chunk");
    writer.commit().await.expect("commit orphan");
    id
}

async fn exists(data: &DataClient, addr: &str, id: &ShardId) -> bool {
    data.list_shards(addr)
        .await
        .expect("list shards")
        .iter()
        .any(|s| s.id == *id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skewed_clocks_and_minimum_grace_lose_nothing() {
    let grace_secs = (MIN_GC_GRACE_MS / 1000).to_string();
    let tc = TestCluster::start_opts(ClusterOptions {
        data_per_zone: 2,
        env: vec![
            ("TESSERA_SUSPECT_AFTER_MS", "2000"),
            ("TESSERA_DEAD_AFTER_MS", "4000"),
            ("TESSERA_REPAIR_INTERVAL_MS", "1000"),
            ("TESSERA_GC_GRACE_SECS", &grace_secs),
        ],
        node_env: vec![
            (
                NodeRole::Data,
                1,
                "TESSERA_CLOCK_SKEW_MS",
                &(-2 * HOUR_MS).to_string(),
            ),
            (
                NodeRole::Data,
                4,
                "TESSERA_CLOCK_SKEW_MS",
                &(3 * HOUR_MS).to_string(),
            ),
            (
                NodeRole::Gateway,
                1,
                "TESSERA_CLOCK_SKEW_MS",
                &(5 * HOUR_MS).to_string(),
            ),
            (
                NodeRole::Repair,
                1,
                "TESSERA_CLOCK_SKEW_MS",
                &(-HOUR_MS).to_string(),
            ),
        ],
        http: false,
    })
    .await;
    let b = "gc-safety";
    tc.s3
        .create_bucket()
        .bucket(b)
        .send()
        .await
        .expect("bucket");
    let (_, _, addr) = tc.data_nodes().into_iter().next().expect("a data node");
    let data = tc.data_as_gateway();

    phase("an orphan written under a live lease survives; one under an unknown lease goes");
    let lease = tc
        .meta()
        .grant_lease("test writer", Duration::from_secs(600))
        .await
        .expect("grant lease");
    let protected = plant_orphan(&data, &addr, lease.lease_id, 41).await;
    let forged = plant_orphan(&data, &addr, u64::MAX / 2, 42).await;

    phase("a steady load overwrites and creates objects while garbage is collected");
    let acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_millis(2 * MIN_GC_GRACE_MS + 15_000);
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let s3 = tc.s3.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let mut round = 0u64;
            while Instant::now() < deadline {
                round += 1;
                // Each writer owns its keys, so the last acknowledged body is the truth.
                let key = format!("w{w}/k{}", round % 5);
                let size = if round.is_multiple_of(3) {
                    5_000
                } else {
                    400_000 + (round as usize) * 97
                };
                let body = pattern(size, w * 1_000_000 + round);
                let put = s3
                    .put_object()
                    .bucket(b)
                    .key(&key)
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await;
                if put.is_ok() {
                    acked.lock().await.insert(key, body);
                }
                if round.is_multiple_of(7) {
                    let up = s3
                        .create_multipart_upload()
                        .bucket(b)
                        .key(format!("w{w}/aborted"))
                        .send()
                        .await
                        .expect("create upload");
                    let id = up.upload_id().expect("id").to_owned();
                    s3.upload_part()
                        .bucket(b)
                        .key(format!("w{w}/aborted"))
                        .upload_id(&id)
                        .part_number(1)
                        .body(ByteStream::from(pattern(300_000, round)))
                        .send()
                        .await
                        .expect("part");
                    s3.abort_multipart_upload()
                        .bucket(b)
                        .key(format!("w{w}/aborted"))
                        .upload_id(&id)
                        .send()
                        .await
                        .expect("abort");
                }
            }
        }));
    }
    // Reads race the collector: an overwritten object must never read as gone or wrong.
    let reader = {
        let s3 = tc.s3.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut reads = 0u64;
            while Instant::now() < deadline {
                let sample: Vec<String> = acked.lock().await.keys().take(8).cloned().collect();
                for key in sample {
                    let got = s3.get_object().bucket(b).key(&key).send().await;
                    let got = got.unwrap_or_else(|e| panic!("{key} unreadable mid-load: {e:?}"));
                    got.body.collect().await.expect("body");
                    reads += 1;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            reads
        })
    };
    for w in writers {
        w.await.expect("writer");
    }
    let reads = reader.await.expect("reader");
    assert!(reads > 0, "the reader never read");

    phase("garbage was collected during the load, by the meta clock");
    let report = tc.repair_report().await.expect("repair report");
    assert!(
        report.garbage_shards_deleted_total > 0,
        "nothing collected: {report:?}"
    );

    phase("every acknowledged write reads back exactly");
    let acked = acked.lock().await.clone();
    assert!(
        acked.len() >= 12,
        "too few writes acknowledged: {}",
        acked.len()
    );
    for (key, body) in &acked {
        let got = tc
            .s3
            .get_object()
            .bucket(b)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key} lost: {e:?}"))
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        assert!(got == body[..], "{key} reads back other bytes");
        if body.len() > 16 * 1024 {
            assert_eq!(tc.verify_shards(b, key).await, 6, "{key} lacks shards");
        }
    }

    phase("the orphan of a live lease is still there; the forged one was collected");
    assert!(
        exists(&data, &addr, &protected).await,
        "a live lease's shard was deleted"
    );
    assert!(
        !exists(&data, &addr, &forged).await,
        "an unknown lease's orphan was kept"
    );

    phase("once its lease is released, the protected orphan goes after the grace period");
    tc.meta()
        .release_lease(lease.lease_id)
        .await
        .expect("release lease");
    let gone_by = Instant::now() + Duration::from_millis(MIN_GC_GRACE_MS + 30_000);
    while exists(&data, &addr, &protected).await {
        assert!(
            Instant::now() < gone_by,
            "an orphan of an ended lease was never collected"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
