//! The rebuild figure: a data node holding one shard of every object dies; how long until every
//! object is back at full redundancy, and what clients see meanwhile (GET p99 during the
//! rebuild against healthy). Short in the suite (300 objects); TESSERA_CHAOS_LONG=1 uses 10,000.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use tessera_devcluster::NodeRole;

use crate::harness::{FAST_REPAIR, TestCluster, pattern, phase};
use crate::workload;

const SIZE: usize = 64 * 1024;

/// GETs random keys from `clients` tasks until `stop`; returns every latency.
async fn get_load(
    tc: &TestCluster,
    objects: usize,
    clients: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Duration> {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (s3, stop, latencies) = (tc.s3.clone(), stop.clone(), latencies.clone());
            tokio::spawn(async move {
                let mut x = 0x1234_5678_u64 + c as u64 * 7919;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = x as usize % objects;
                    let started = Instant::now();
                    let got = s3
                        .get_object()
                        .bucket("rebuild")
                        .key(format!("o{i}"))
                        .send()
                        .await;
                    let body = match got {
                        Ok(r) => r.body.collect().await.expect("body").into_bytes(),
                        Err(e) => panic!("GET o{i} failed during the rebuild: {e:?}"),
                    };
                    latencies.lock().expect("lock").push(started.elapsed());
                    assert!(
                        body.as_ref() == pattern(SIZE, i as u64).as_slice(),
                        "o{i} differs"
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("get client");
    }
    let mut l = latencies.lock().expect("lock").clone();
    l.sort();
    l
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_a_data_node_is_rebuilt_to_full_redundancy() {
    let objects = if workload::long() { 10_000 } else { 300 };
    let mut tc = TestCluster::start_with(2, FAST_REPAIR.to_vec()).await;
    tc.s3
        .create_bucket()
        .bucket("rebuild")
        .send()
        .await
        .expect("bucket");
    phase(&format!("writing {objects} objects of {SIZE} bytes"));
    let started = Instant::now();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let s3 = tc.s3.clone();
            tokio::spawn(async move {
                for i in (w..objects).step_by(16) {
                    s3.put_object()
                        .bucket("rebuild")
                        .key(format!("o{i}"))
                        .body(ByteStream::from(pattern(SIZE, i as u64)))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("put o{i}: {e:?}"));
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    eprintln!(
        "[figure] rebuild: wrote {objects} objects in {:?}",
        started.elapsed()
    );
    tc.wait_full_redundancy(Duration::from_secs(600)).await;

    phase("healthy GET latency");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(8)).await;
        stopper.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let healthy = get_load(&tc, objects, 8, stop).await;

    let victim = 1;
    let files = tc.shard_files(victim).len();
    phase(&format!(
        "data node {victim} ({files} shard files) dies; GETs continue during the rebuild"
    ));
    let killed = Instant::now();
    tc.kill(NodeRole::Data, victim).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let s3_tc = &tc;
        get_load(s3_tc, objects, 8, stop)
    };
    let wait = async {
        // Wait for the node to be declared dead and the first rebuild pass to begin.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let r = tc
            .wait_full_redundancy(Duration::from_secs(if workload::long() {
                3600
            } else {
                600
            }))
            .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    };
    let (during, (report, _)) = tokio::join!(load, wait);
    let restored = killed.elapsed();
    eprintln!(
        "[figure] rebuild: {objects} objects, node {victim} held {files} shards: full redundancy {restored:?} after the kill (dead after 4 s); {} shards / {} bytes rebuilt, {:.1} MiB/s during the last pass",
        report.shards_rebuilt_total,
        report.bytes_rebuilt_total,
        report.rebuild_bytes_per_sec / 1_048_576.0
    );
    eprintln!(
        "[figure] rebuild: GET p50/p99 healthy {:?}/{:?} ({} gets), during rebuild {:?}/{:?} ({} gets)",
        pct(&healthy, 0.5),
        pct(&healthy, 0.99),
        healthy.len(),
        pct(&during, 0.5),
        pct(&during, 0.99),
        during.len()
    );
    assert!(
        report.shards_rebuilt_total >= files as u64,
        "rebuilt fewer shards than were lost"
    );
}
