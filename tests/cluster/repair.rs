//! Durability operations through real processes: garbage collection (deleted versions and
//! orphans, never a referenced shard), node drain, a new node joining, two repair daemons at
//! once, and the operator's views (`admin locate`, `admin repair status`, `/metrics`).

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tessera_client::ShardId;
use tessera_client::shard::{ShardWriteSpec, ShardWriter};
use tessera_core::blob::Generation;
use tessera_core::layout::Layout;
use tessera_core::names::DataId;
use tessera_devcluster::NodeRole;

use crate::harness::{FAST_REPAIR, TestCluster, pattern, phase};

fn env_with(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env: Vec<(&str, &str)> = FAST_REPAIR
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .copied()
        .collect();
    env.extend_from_slice(overrides);
    env
}

async fn put(tc: &TestCluster, bucket: &str, key: &str, size: usize, seed: u64) {
    tc.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(pattern(size, seed)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

async fn read_back(tc: &TestCluster, bucket: &str, key: &str, size: usize, seed: u64) {
    let got = tc
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    let body = got.body.collect().await.expect("body").into_bytes();
    assert!(
        body.as_ref() == pattern(size, seed).as_slice(),
        "{key} differs"
    );
}

/// The erasure placement of the current version of `key`: (data id, [(index, node)]).
async fn placement(tc: &TestCluster, bucket: &str, key: &str) -> (DataId, Vec<(u32, u64)>) {
    let (id, shards, _) = tc
        .placement(bucket, key)
        .await
        .unwrap_or_else(|| panic!("{key} is not erasure coded"));
    (id, shards)
}

fn total_shard_files(tc: &TestCluster) -> usize {
    tc.data_nodes()
        .iter()
        .map(|(id, _, _)| tc.shard_files(*id).len())
        .sum()
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_and_orphans_are_collected_and_referenced_shards_never() {
    let tc = TestCluster::start_with(2, env_with(&[("TESSERA_GC_GRACE_SECS", "30")])).await;
    tc.s3
        .create_bucket()
        .bucket("gc-test")
        .send()
        .await
        .expect("bucket");
    for i in 0..10 {
        put(&tc, "gc-test", &format!("keep{i}"), 100_000, i).await;
        put(&tc, "gc-test", &format!("drop{i}"), 100_000, 100 + i).await;
    }
    // An overwrite turns the first version's blob into garbage too.
    put(&tc, "gc-test", "keep0", 120_000, 1_000).await;
    assert_eq!(total_shard_files(&tc), 21 * 6);

    phase("an orphan: a shard no manifest references, written under no live lease");
    let data = tc.data_as_gateway();
    let (node, _, addr) = tc.data_nodes()[0].clone();
    let orphan = ShardId::new(
        DataId::from_bytes(rand_bytes()),
        0,
        Generation::from_random(0x5eed),
    );
    let mut writer = ShardWriter::open(
        &data,
        &addr,
        ShardWriteSpec::new(orphan, Layout::new(3, 3).expect("layout"), 4096, 0),
    )
    .expect("orphan writer");
    writer
        .send_chunk(Bytes::from(vec![7u8; 4096]))
        .await
        .expect("orphan chunk");
    writer.commit().await.expect("orphan write");

    phase("deleting half the objects");
    for i in 0..10 {
        tc.s3
            .delete_object()
            .bucket("gc-test")
            .key(format!("drop{i}"))
            .send()
            .await
            .expect("delete");
    }
    wait_until(
        "garbage and the orphan to be deleted",
        Duration::from_secs(90),
        async || total_shard_files(&tc) == 10 * 6,
    )
    .await;
    assert!(
        matches!(
            data.stat_shard(&addr, &orphan).await,
            Err(tessera_client::DataClientError::NotFound { .. })
        ),
        "orphan on node {node} kept"
    );
    let report = tc.repair_report().await.expect("report");
    assert!(report.garbage_shards_deleted_total >= 11 * 6, "{report:?}");
    assert!(report.orphan_shards_deleted_total >= 1, "{report:?}");

    phase("every kept object still reads, every referenced shard is on disk");
    for i in 0..10 {
        let (size, seed) = if i == 0 {
            (120_000, 1_000)
        } else {
            (100_000, i)
        };
        read_back(&tc, "gc-test", &format!("keep{i}"), size, seed).await;
    }
    // Several more passes must delete nothing else.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(total_shard_files(&tc), 10 * 6);
}

fn rand_bytes() -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(1);
    let mut out = [0u8; 16];
    out.copy_from_slice(&(nanos ^ 0xA5A5_5A5A_0F0F_F0F0_1234_5678_9ABC_DEF0).to_le_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_a_node_moves_every_shard_off_and_stops_new_writes() {
    let mut tc = TestCluster::start_with(3, FAST_REPAIR.to_vec()).await;
    tc.s3
        .create_bucket()
        .bucket("drain")
        .send()
        .await
        .expect("bucket");
    for i in 0..30 {
        put(&tc, "drain", &format!("o{i}"), 80_000, i).await;
    }
    let victim = 2;
    let on_victim = {
        let mut n = 0;
        for i in 0..30 {
            n += placement(&tc, "drain", &format!("o{i}"))
                .await
                .1
                .iter()
                .filter(|(_, node)| *node == victim)
                .count();
        }
        n
    };
    assert!(on_victim > 0, "node {victim} holds nothing to drain");

    phase(&format!(
        "draining node {victim} ({on_victim} shards) with the admin command"
    ));
    let stdout = tc.admin_ok(&["node", "drain", &victim.to_string(), "--timeout", "120"]);
    assert!(stdout.contains("holds no shards"), "{stdout}");

    phase("no placement uses the drained node; new writes avoid it; everything reads");
    // Let the gateway's view of the membership refresh.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 30..45 {
        put(&tc, "drain", &format!("o{i}"), 80_000, i).await;
    }
    for i in 0..45 {
        let (_, shards) = placement(&tc, "drain", &format!("o{i}")).await;
        assert!(
            shards.iter().all(|(_, node)| *node != victim),
            "o{i} still on node {victim}"
        );
        // Three nodes per zone: RS(6,3), all nine shards placed.
        assert_eq!(shards.len(), 9);
        read_back(&tc, "drain", &format!("o{i}"), 80_000, i).await;
    }
    tc.wait_full_redundancy(Duration::from_secs(60)).await;
    // Once drained, it can be stopped without any loss of redundancy.
    tc.kill(NodeRole::Data, victim).await;
    for i in 0..45 {
        read_back(&tc, "drain", &format!("o{i}"), 80_000, i).await;
    }

    phase("admin status shows the drain; an unknown node is refused; activate undoes the drain");
    let status = tc.admin_ok(&["status"]);
    assert!(status.contains("draining"), "{status}");
    let unknown = tc.admin_output(&["node", "drain", "999", "--no-wait"]);
    assert!(
        !unknown.status.success(),
        "draining an unknown node succeeded"
    );
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("no such data node"), "{stderr}");
    let activated = tc.admin_ok(&["node", "activate", &victim.to_string()]);
    assert!(activated.contains("NODE_STATE_ACTIVE"), "{activated}");
    assert!(!tc.admin_ok(&["status"]).contains("draining"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_empty_node_joins_and_gets_new_writes() {
    let mut tc = TestCluster::start_with(2, FAST_REPAIR.to_vec()).await;
    tc.s3
        .create_bucket()
        .bucket("join")
        .send()
        .await
        .expect("bucket");
    let new = tc.cluster.add_data_node("zone-b").expect("add node");
    tc.wait_ready().await;
    // The gateway refreshes its membership every second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..40 {
        put(&tc, "join", &format!("o{i}"), 50_000, i).await;
    }
    let mut on_new = 0;
    for i in 0..40 {
        on_new += placement(&tc, "join", &format!("o{i}"))
            .await
            .1
            .iter()
            .filter(|(_, n)| *n == new)
            .count();
        read_back(&tc, "join", &format!("o{i}"), 50_000, i).await;
    }
    eprintln!("[figure] join: new node {new} took {on_new} of 80 zone-b shards");
    assert!(on_new >= 10, "new node {new} took only {on_new} shards");
    assert_eq!(tc.shard_files(new).len(), on_new);
    tc.wait_full_redundancy(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_repair_daemons_at_once_rebuild_without_corrupting_placements() {
    let mut tc = TestCluster::start_with(2, FAST_REPAIR.to_vec()).await;
    tc.s3
        .create_bucket()
        .bucket("two")
        .send()
        .await
        .expect("bucket");
    for i in 0..60 {
        put(&tc, "two", &format!("o{i}"), 90_000, i).await;
    }
    tc.cluster
        .start_extra_repair(2)
        .expect("second repair daemon");
    let victim = 4;
    phase(&format!(
        "node {victim} dies and its folder is wiped; two daemons race to rebuild"
    ));
    tc.kill(NodeRole::Data, victim).await;
    std::fs::remove_dir_all(tc.data_dir(victim)).expect("wipe");
    tc.restart(NodeRole::Data, victim).await;
    tc.wait_ready().await;
    tc.wait_full_redundancy(Duration::from_secs(120)).await;
    for i in 0..60 {
        assert_eq!(tc.verify_shards("two", &format!("o{i}")).await, 6);
        read_back(&tc, "two", &format!("o{i}"), 90_000, i).await;
    }
    let status = tc.meta().cluster_status().await.expect("status");
    let reporters: Vec<&str> = status
        .repair_reports
        .iter()
        .map(|r| r.reporter.as_str())
        .collect();
    assert!(
        reporters.contains(&"repair-1") && reporters.contains(&"repair-2"),
        "{reporters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locate_repair_status_and_metrics_show_redundancy() {
    let mut tc = TestCluster::start_with(2, FAST_REPAIR.to_vec()).await;
    tc.s3
        .create_bucket()
        .bucket("locate")
        .send()
        .await
        .expect("bucket");
    put(&tc, "locate", "big", 300_000, 5).await;
    put(&tc, "locate", "tiny", 100, 6).await;
    let out = tc.admin_ok(&["locate", "locate", "big"]);
    assert_eq!(out.matches(" ok ").count(), 6, "{out}");
    assert!(
        out.contains("zone-a") && out.contains("zone-b") && out.contains("zone-c"),
        "{out}"
    );
    assert!(out.contains("/shards/"), "{out}");
    assert!(
        tc.admin_ok(&["locate", "locate", "tiny"])
            .contains("inline")
    );

    phase("a deleted shard file shows as missing, then repair puts it back");
    let blob = tc
        .erasure_blob("locate", "big")
        .await
        .expect("erasure coded");
    std::fs::remove_file(tc.shard_path(&blob.data_id, &blob.shards[0])).expect("rm");
    let out = tc.admin_ok(&["locate", "locate", "big"]);
    assert!(out.contains("missing"), "{out}");
    let status = tc.admin_ok(&["repair", "status", "--wait-healthy", "--timeout", "60"]);
    assert!(status.contains("full redundancy"), "{status}");
    assert_eq!(
        tc.admin_ok(&["locate", "locate", "big"])
            .matches(" ok ")
            .count(),
        6
    );

    phase("a data node dies: status and metrics show the loss, then the return to zero");
    tc.kill(NodeRole::Data, 1).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    tc.restart(NodeRole::Data, 1).await;
    tc.wait_ready().await;
    tc.wait_full_redundancy(Duration::from_secs(60)).await;
    let repair = tc.cluster.layout().repair().expect("repair").addr();
    let metrics = http_get(&repair, "/metrics").await;
    for name in [
        "tessera_repair_blobs{spare=\"3\"}",
        "tessera_repair_backlog 0",
        "tessera_repair_below_full_redundancy 0",
        "tessera_repair_shards_rebuilt_total",
        "tessera_repair_below_full_seconds_total",
        "tessera_repair_oldest_degraded_age_seconds 0",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
    let text = tc.admin_ok(&["repair", "status"]);
    assert!(
        text.contains("SPARE") && text.contains("backlog: 0"),
        "{text}"
    );
    let scrub = tc.admin_ok(&["scrub", "start"]);
    assert!(scrub.contains("scrub complete: 0 corrupt"), "{scrub}");
    let scrub_status = tc.admin_ok(&["scrub", "status"]);
    assert_eq!(
        scrub_status.matches("data node ").count(),
        6,
        "{scrub_status}"
    );
    assert!(scrub_status.contains("corrupt 0"), "{scrub_status}");
}

async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}
