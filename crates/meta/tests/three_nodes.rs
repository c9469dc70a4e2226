//! Three meta nodes in one process on loopback ports: writes and linearizable reads through
//! `MetaClient`, losing the leader, restarting it, and a lagging node catching up from a
//! snapshot. Each phase logs what must hold.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tessera_client::MetaClient;
use tessera_meta::{MetaConfig, MetaNodeError, MetaPeer, node::raft_config};
use tessera_proto::meta::v1::{
    Blob, Bucket, Command, CommandResult, CreateBucket, GetObjectRequest, ListObjectsRequest,
    ObjectPart, ObjectVersion, PutVersion, blob, command, command_result,
};
use tessera_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::info;

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

struct TestNode {
    config: MetaConfig,
    addr: SocketAddr,
    shutdown: Shutdown,
    task: Option<JoinHandle<Result<(), MetaNodeError>>>,
}

struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<TestNode>,
    raft: openraft::Config,
}

impl Cluster {
    async fn start(raft: openraft::Config) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        }
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr"))
            .collect();
        let peers: Vec<MetaPeer> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| MetaPeer {
                node_id: i as u64 + 1,
                addr: a.to_string(),
                zone: ZONES[i].to_owned(),
            })
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            raft,
            _dir: dir,
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let config = MetaConfig {
                node_id: i as u64 + 1,
                zone: ZONES[i].to_owned(),
                listen: addrs[i],
                advertise: None,
                data_dir: cluster.dir().join(format!("node-{}", i + 1)),
                peers: peers.clone(),
                suspect_after_ms: tessera_meta::config::DEFAULT_SUSPECT_AFTER_MS,
                dead_after_ms: tessera_meta::config::DEFAULT_DEAD_AFTER_MS,
            };
            let mut node = TestNode {
                config,
                addr: addrs[i],
                shutdown: Shutdown::new(),
                task: None,
            };
            node.spawn(listener, cluster.raft.clone());
            cluster.nodes.push(node);
        }
        cluster
    }

    fn dir(&self) -> PathBuf {
        self._dir.path().to_path_buf()
    }

    fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.to_string()).collect()
    }

    fn client(&self) -> MetaClient {
        MetaClient::new(self.addrs())
    }

    fn node(&mut self, id: u64) -> &mut TestNode {
        &mut self.nodes[id as usize - 1]
    }

    async fn restart(&mut self, id: u64) {
        let raft = self.raft.clone();
        let node = self.node(id);
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(node.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    info!(error = %e, "port not free yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", node.addr),
            }
        };
        node.shutdown = Shutdown::new();
        node.spawn(listener, raft);
    }
}

impl TestNode {
    fn spawn(&mut self, listener: TcpListener, raft: openraft::Config) {
        let config = self.config.clone();
        let shutdown = self.shutdown.clone();
        self.task = Some(tokio::spawn(tessera_meta::serve_with_raft_config(
            config, listener, shutdown, raft,
        )));
    }

    async fn stop(&mut self) {
        self.shutdown.trigger();
        let task = self.task.take().expect("node is running");
        let stopped = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("node stops within 20 s")
            .expect("node task did not panic");
        stopped.expect("node stops cleanly");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.shutdown.trigger();
        }
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn create_bucket(name: &str) -> Command {
    Command {
        cmd: Some(command::Cmd::CreateBucket(CreateBucket {
            bucket: Some(Bucket {
                name: name.into(),
                owner: "tester".into(),
                ..Bucket::default()
            }),
        })),
        ..Command::default()
    }
}

fn put(bucket: &str, key: &str) -> Command {
    let body = format!("body of {key}").into_bytes();
    Command {
        cmd: Some(command::Cmd::PutVersion(PutVersion {
            version: Some(ObjectVersion {
                bucket: bucket.into(),
                key: key.into(),
                size: body.len() as u64,
                etag: format!("\"{key}\""),
                parts: vec![ObjectPart {
                    part_number: 1,
                    size: body.len() as u64,
                    etag: format!("\"{key}\""),
                    blob: Some(Blob {
                        size: body.len() as u64,
                        storage: Some(blob::Storage::InlineData(body)),
                        ..Blob::default()
                    }),
                    checksums: Vec::new(),
                }],
                ..ObjectVersion::default()
            }),
            precondition: None,
            lease_id: 0,
        })),
        ..Command::default()
    }
}

fn accepted(result: CommandResult) {
    if let Some(command_result::Result::Error(e)) = result.result {
        panic!("command rejected: {e:?}");
    }
}

async fn write_keys(client: &MetaClient, bucket: &str, range: std::ops::Range<u32>) {
    for i in range {
        let result = client
            .execute(put(bucket, &format!("key-{i:04}")))
            .await
            .expect("write");
        accepted(result);
    }
}

async fn list_all(client: &MetaClient, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut marker = String::new();
    loop {
        let page = client
            .list_objects(ListObjectsRequest {
                bucket: bucket.into(),
                start_after: marker.clone(),
                max_keys: 100,
                ..ListObjectsRequest::default()
            })
            .await
            .expect("list");
        assert!(!page.no_such_bucket);
        keys.extend(page.objects.iter().map(|o| o.key.clone()));
        marker = page.next_marker;
        if !page.is_truncated {
            return keys;
        }
    }
}

fn expected_keys(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("key-{i:04}")).collect()
}

async fn leader_of(client: &MetaClient) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = client.cluster_status().await.expect("status");
        if let Some(leader) = status.leader_id {
            return leader;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until node `id` has applied at least `index`, as it reports itself.
async fn wait_applied(cluster: &Cluster, id: u64, index: u64) {
    let only = MetaClient::new(vec![cluster.nodes[id as usize - 1].addr.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = only.cluster_status().await.expect("status");
        let own = status
            .meta_nodes
            .iter()
            .find(|n| n.node_id == id)
            .expect("own entry");
        if own.last_applied >= index {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} stuck at {} < {index}",
            own.last_applied
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn applied_on_leader(client: &MetaClient) -> u64 {
    let status = client.cluster_status().await.expect("status");
    let leader = status.leader_id.expect("leader");
    let own = MetaClient::new(vec![
        status
            .meta_nodes
            .iter()
            .find(|n| n.node_id == leader)
            .expect("leader entry")
            .addr
            .clone(),
    ]);
    let status = own.cluster_status().await.expect("leader status");
    status
        .meta_nodes
        .iter()
        .find(|n| n.node_id == leader)
        .expect("leader entry")
        .last_applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_survive_losing_and_restarting_the_leader() {
    init_tracing();
    let mut cluster = Cluster::start(raft_config().expect("raft config")).await;
    let client = cluster.client();

    info!("phase 1: a fresh group elects a leader and accepts writes from any node");
    accepted(
        client
            .execute(create_bucket("photos"))
            .await
            .expect("create"),
    );
    write_keys(&client, "photos", 0..30).await;
    assert_eq!(list_all(&client, "photos").await, expected_keys(30));
    let status = client.cluster_status().await.expect("status");
    assert_eq!(status.meta_nodes.len(), 3);
    assert!(status.meta_nodes.iter().all(|n| n.role != "unreachable"));

    info!("phase 2: stopping the leader lets writes resume within seconds");
    let old_leader = leader_of(&client).await;
    cluster.node(old_leader).stop().await;
    let started = Instant::now();
    write_keys(&client, "photos", 30..31).await;
    let failover = started.elapsed();
    info!(?failover, "first write after losing the leader");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    write_keys(&client, "photos", 31..60).await;
    let new_leader = leader_of(&client).await;
    assert_ne!(new_leader, old_leader);

    info!("phase 3: every surviving node serves the same data, followers forward");
    for node in &cluster.nodes {
        if node.config.node_id == old_leader {
            continue;
        }
        let only = MetaClient::new(vec![node.addr.to_string()]);
        assert_eq!(list_all(&only, "photos").await, expected_keys(60));
        let got = only
            .get_object(GetObjectRequest {
                bucket: "photos".into(),
                key: "key-0007".into(),
                version_id: None,
            })
            .await
            .expect("get");
        assert_eq!(got.version.expect("present").etag, "\"key-0007\"");
    }
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.config.node_id != old_leader && n.config.node_id != new_leader)
        .expect("a live follower");
    let via_follower = MetaClient::new(vec![follower.addr.to_string()]);
    accepted(
        via_follower
            .execute(put("photos", "via-follower"))
            .await
            .expect("forwarded write"),
    );

    info!("phase 4: the old leader restarts with its state and catches up");
    cluster.restart(old_leader).await;
    let target = applied_on_leader(&client).await;
    wait_applied(&cluster, old_leader, target).await;
    let only_old = MetaClient::new(vec![cluster.node(old_leader).addr.to_string()]);
    assert!(
        only_old
            .get_bucket("photos")
            .await
            .expect("bucket")
            .is_some()
    );

    info!("phase 5: with another node down, the restarted node is part of the quorum");
    let current = leader_of(&client).await;
    let victim = (1..=3)
        .find(|id| *id != old_leader && *id != current)
        .expect("a follower");
    cluster.node(victim).stop().await;
    write_keys(&client, "photos", 60..70).await;
    let mut keys = expected_keys(70);
    keys.push("via-follower".to_owned());
    assert_eq!(list_all(&only_old, "photos").await, keys);

    for id in 1..=3 {
        if cluster.node(id).task.is_some() {
            cluster.node(id).stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_missed_purged_entries_catches_up_from_a_snapshot() {
    init_tracing();
    let mut raft = raft_config().expect("raft config");
    raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(20);
    raft.max_in_snapshot_log_to_keep = 0;
    raft.snapshot_max_chunk_size = 512; // several chunks per snapshot
    let mut cluster = Cluster::start(raft).await;
    let client = cluster.client();

    info!("phase 1: the group works with all three nodes");
    accepted(client.execute(create_bucket("logs")).await.expect("create"));
    write_keys(&client, "logs", 0..5).await;
    let leader = leader_of(&client).await;
    let lagging = (1..=3).find(|id| *id != leader).expect("a follower");

    info!("phase 2: while one follower is down, enough entries pass to be snapshotted and purged");
    cluster.node(lagging).stop().await;
    write_keys(&client, "logs", 5..80).await;

    info!("phase 3: the follower restarts and installs the snapshot");
    cluster.restart(lagging).await;
    let target = applied_on_leader(&client).await;
    wait_applied(&cluster, lagging, target).await;

    info!("phase 4: it serves everything with the third node gone");
    let other = (1..=3)
        .find(|id| *id != leader && *id != lagging)
        .expect("the other follower");
    cluster.node(other).stop().await;
    write_keys(&client, "logs", 80..85).await;
    let only = MetaClient::new(vec![cluster.node(lagging).addr.to_string()]);
    assert_eq!(list_all(&only, "logs").await, expected_keys(85));

    for id in 1..=3 {
        if cluster.node(id).task.is_some() {
            cluster.node(id).stop().await;
        }
    }
}
