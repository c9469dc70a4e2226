//! The harness of the three-node tests: three meta nodes in this process on loopback ports
//! (node 1 founds the group on the first start only), their folders, and the client-side
//! helpers the tests share. Every node is stopped by its shutdown signal, never by name.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tessera_client::MetaClient;
use tessera_client::meta::{ListObjects, PutVersion};
use tessera_core::names::{BucketName, ObjectKey};
use tessera_core::object::{Bucket, ObjectPart, ObjectVersion, VersioningState};
use tessera_meta::store::StateFingerprint;
use tessera_meta::{MetaConfig, MetaNodeError, MetaPeer, MetaStore, node::raft_config};
use tessera_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::info;

/// The zones of nodes 1, 2 and 3.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// One meta node of the test cluster, running as a task of this process (or stopped).
pub struct TestNode {
    pub config: MetaConfig,
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub task: Option<JoinHandle<Result<(), MetaNodeError>>>,
}

/// Three meta nodes with their folders in one temporary directory.
pub struct Cluster {
    pub _dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
    pub raft: openraft::Config,
}

impl Cluster {
    /// Starts three nodes on fresh loopback ports; node 1 founds the group.
    pub async fn start(raft: openraft::Config) -> Cluster {
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
        // Every node of a group shares one root key.
        let root_key_file = cluster.dir().join("root.key");
        std::fs::write(&root_key_file, "5e".repeat(32)).expect("write the root key");
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
                // Node 1 founds the group on this first start; nobody initialises again.
                initialize: i == 0,
                root_key_file: Some(root_key_file.clone()),
                tls: Default::default(),
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

    /// The cluster's temporary directory.
    pub fn dir(&self) -> PathBuf {
        self._dir.path().to_path_buf()
    }

    /// Every node's address.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.to_string()).collect()
    }

    /// A client of all three nodes.
    pub fn client(&self) -> MetaClient {
        MetaClient::new(self.addrs())
    }

    /// Node `id` (1-based).
    pub fn node(&mut self, id: u64) -> &mut TestNode {
        &mut self.nodes[id as usize - 1]
    }

    /// Starts node `id` again on its port, never initialising.
    pub async fn restart(&mut self, id: u64) {
        let raft = self.raft.clone();
        let node = self.node(id);
        node.config.initialize = false;
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
    /// The node's meta folder.
    pub fn meta_dir(&self) -> PathBuf {
        self.config.meta_dir()
    }

    /// Deletes the node's whole folder (it must be stopped), as a lost disk would.
    pub fn wipe(&self) {
        assert!(self.task.is_none(), "wipe a stopped node only");
        std::fs::remove_dir_all(&self.config.data_dir).expect("wipe");
    }

    /// Runs the node on `listener` as a task.
    pub fn spawn(&mut self, listener: TcpListener, raft: openraft::Config) {
        let config = self.config.clone();
        let shutdown = self.shutdown.clone();
        self.task = Some(tokio::spawn(tessera_meta::serve_with_raft_config(
            config, listener, shutdown, raft,
        )));
    }

    /// Stops the node and waits until it released its store.
    pub async fn stop(&mut self) {
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

/// Logs to the test output, filtered by RUST_LOG.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Creates bucket `name` (owned by "tester").
pub async fn create_bucket(client: &MetaClient, name: &str) {
    client
        .create_bucket(&Bucket {
            name: BucketName::parse(name).expect("bucket name"),
            created_ms: 0,
            versioning: VersioningState::Unversioned,
            owner: "tester".into(),
            region: "us-east-1".into(),
            encryption: None,
        })
        .await
        .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
}

/// The command putting a small inline object at `key`.
pub fn put(bucket: &str, key: &str) -> PutVersion {
    let body = format!("body of {key}").into_bytes();
    let etag = format!("\"{key}\"");
    PutVersion {
        version: ObjectVersion {
            size: body.len() as u64,
            etag: etag.clone(),
            parts: vec![ObjectPart {
                part_number: 1,
                size: body.len() as u64,
                etag,
                blob: tessera_core::blob::Blob::inline(body),
                checksums: Vec::new(),
            }],
            storage_class: "STANDARD".into(),
            ..ObjectVersion::new(
                BucketName::parse(bucket).expect("bucket name"),
                ObjectKey::parse(key).expect("key"),
            )
        },
        precondition: None,
        lease_id: 0,
    }
}

/// Puts one small object, panicking on any failure.
pub async fn put_key(client: &MetaClient, bucket: &str, key: &str) -> ObjectVersion {
    client
        .put_version(&put(bucket, key))
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
}

/// Puts `key-NNNN` for every number in `range`, one command each.
pub async fn write_keys(client: &MetaClient, bucket: &str, range: std::ops::Range<u32>) {
    for i in range {
        put_key(client, bucket, &format!("key-{i:04}")).await;
    }
}

/// Every key of `bucket`, page by page.
pub async fn list_all(client: &MetaClient, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut marker = String::new();
    loop {
        let page = client
            .list_objects(&ListObjects {
                start_after: marker.clone(),
                max_keys: 100,
                ..ListObjects::new(BucketName::parse(bucket).expect("bucket name"))
            })
            .await
            .expect("list");
        assert!(!page.no_such_bucket);
        keys.extend(page.objects.iter().map(|o| o.key.as_str().to_owned()));
        marker = page.next_marker;
        if !page.is_truncated {
            return keys;
        }
    }
}

/// The current version of `bucket/key`.
pub async fn current(client: &MetaClient, bucket: &str, key: &str) -> Option<ObjectVersion> {
    client
        .get_object(
            &BucketName::parse(bucket).expect("bucket name"),
            &ObjectKey::parse(key).expect("key"),
            None,
        )
        .await
        .expect("get object")
        .version
}

/// `key-0000` .. the key before `key-{n}`.
pub fn expected_keys(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("key-{i:04}")).collect()
}

/// The current leader, waiting for an election if needed.
pub async fn leader_of(client: &MetaClient) -> u64 {
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
pub async fn wait_applied(cluster: &Cluster, id: u64, index: u64) {
    let only = MetaClient::new(vec![cluster.nodes[id as usize - 1].addr.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = only.cluster_status().await.expect("status");
        // A node that has not been contacted yet knows no membership, not even itself.
        let applied = status
            .meta_nodes
            .iter()
            .find(|n| n.node_id == id)
            .map_or(0, |own| own.last_applied);
        if applied >= index {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} stuck at {applied} < {index}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The leader's last applied index, as it reports itself.
pub async fn applied_on_leader(client: &MetaClient) -> u64 {
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

/// A Raft configuration that snapshots every 20 entries, keeps no log after a snapshot and
/// sends snapshots in many small chunks.
pub fn snapshotting_raft() -> openraft::Config {
    let mut raft = raft_config().expect("raft config");
    raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(20);
    raft.max_in_snapshot_log_to_keep = 0;
    raft.snapshot_max_chunk_size = 4096;
    raft
}

/// Stops the running nodes in `order` (followers first keeps the leader from committing
/// anything after the others stopped), then reads each node's state from its store.
pub async fn stop_and_fingerprint(cluster: &mut Cluster, order: [u64; 3]) -> Vec<StateFingerprint> {
    for id in order {
        if cluster.node(id).task.is_some() {
            cluster.node(id).stop().await;
        }
    }
    (1..=3)
        .map(|id| {
            let store = MetaStore::open(&cluster.node(id).meta_dir()).expect("open stopped store");
            store.state_fingerprint().expect("fingerprint")
        })
        .collect()
}

/// Stops followers first, then the leader, and checks all three hold the same state.
pub async fn assert_identical_state(cluster: &mut Cluster, client: &MetaClient) {
    let leader = leader_of(client).await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let prints = stop_and_fingerprint(cluster, [followers[0], followers[1], leader]).await;
    info!(?prints, "state of every node");
    assert!(prints[0].pairs > 0);
    assert_eq!(prints[0], prints[1], "nodes 1 and 2 differ");
    assert_eq!(prints[1], prints[2], "nodes 2 and 3 differ");
}
