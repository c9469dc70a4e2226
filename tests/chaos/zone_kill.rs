//! Zone kill under a write load.

use crate::harness::{TestCluster, pattern, phase};
use aws_sdk_s3::primitives::ByteStream;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn rounds() -> usize {
    if std::env::var("TESSERA_CHAOS_LONG").is_ok_and(|v| v == "1") {
        6
    } else {
        1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zone_kill_under_write_load_loses_no_acknowledged_write() {
    let mut tc = TestCluster::start(2).await;
    tc.s3
        .create_bucket()
        .bucket("chaos")
        .send()
        .await
        .expect("bucket");
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let zones = ["zone-a", "zone-b", "zone-c"];
    for round in 0..rounds() {
        let zone = zones[round % zones.len()];
        phase(&format!(
            "round {round}: a write load runs while {zone} is killed"
        ));
        let stop_at = Instant::now() + Duration::from_secs(12);
        let mut writers = Vec::new();
        for w in 0..4_u64 {
            let s3 = tc.s3.clone();
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                let mut n = 0_u64;
                let mut ok = 0_u64;
                while Instant::now() < stop_at {
                    let seed = (round as u64) << 32 | w << 20 | n;
                    let key = format!("r{round}/w{w}/{n}");
                    let size = if n.is_multiple_of(3) {
                        3_000
                    } else {
                        300_000 + (n as usize % 7) * 1000
                    };
                    let body = pattern(size, seed);
                    let res = s3
                        .put_object()
                        .bucket("chaos")
                        .key(&key)
                        .body(ByteStream::from(body))
                        .send()
                        .await;
                    if res.is_ok() {
                        acked
                            .lock()
                            .expect("lock")
                            .insert(key, seed << 24 | size as u64);
                        ok += 1;
                    }
                    n += 1;
                }
                ok
            }));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        tc.kill_zone(zone).await;
        let mut after_kill = 0;
        for w in writers {
            after_kill += w.await.expect("writer");
        }
        assert!(after_kill > 0, "no write succeeded in round {round}");

        phase("with the zone down, new writes succeed and every acknowledged write reads back");
        tc.s3
            .put_object()
            .bucket("chaos")
            .key(format!("r{round}/while-down"))
            .body(ByteStream::from(pattern(500_000, 99)))
            .send()
            .await
            .expect("write while a zone is down");
        verify_all(&tc, &acked).await;

        tc.restart_zone(zone).await;
        tc.wait_ready().await;
        phase("after the zone returns, the cluster serves fully again");
        verify_all(&tc, &acked).await;
    }
}

async fn verify_all(tc: &TestCluster, acked: &Arc<Mutex<BTreeMap<String, u64>>>) {
    let snapshot = acked.lock().expect("lock").clone();
    for (key, tag) in snapshot {
        let seed = tag >> 24;
        let size = (tag & 0xFF_FFFF) as usize;
        let got = tc
            .s3
            .get_object()
            .bucket("chaos")
            .key(&key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledged {key} unreadable: {e:?}"));
        let body = got.body.collect().await.expect("body").into_bytes();
        assert!(
            body.as_ref() == pattern(size, seed).as_slice(),
            "acknowledged {key} differs"
        );
    }
}
