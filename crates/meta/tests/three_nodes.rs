//! Three meta nodes in one process on loopback ports: writes and linearizable reads through
//! `MetaClient`, losing the leader, restarting it, lagging and wiped nodes catching up through
//! streamed snapshots, a wiped voter that must not found a group of its own, a second process
//! on one folder, and a snapshot install interrupted by a crash. Each phase logs what must hold.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tessera_client::MetaClient;
use tessera_meta::store::StateFingerprint;
use tessera_meta::{MetaConfig, MetaNodeError, MetaPeer, MetaStore, StoreError, node::raft_config};
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
                // Node 1 founds the group on this first start; nobody initialises again.
                initialize: i == 0,
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
    fn meta_dir(&self) -> PathBuf {
        self.config.meta_dir()
    }

    /// Deletes the node's whole folder (it must be stopped), as a lost disk would.
    fn wipe(&self) {
        assert!(self.task.is_none(), "wipe a stopped node only");
        std::fs::remove_dir_all(&self.config.data_dir).expect("wipe");
    }

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
                        stored_size: body.len() as u64,
                        storage: Some(blob::Storage::InlineData(body)),
                        ..Blob::default()
                    }),
                    checksums: Vec::new(),
                }],
                ..ObjectVersion::default()
            }),
            ..PutVersion::default()
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

/// A Raft configuration that snapshots every 20 entries, keeps no log after a snapshot and
/// sends snapshots in many small chunks.
fn snapshotting_raft() -> openraft::Config {
    let mut raft = raft_config().expect("raft config");
    raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(20);
    raft.max_in_snapshot_log_to_keep = 0;
    raft.snapshot_max_chunk_size = 4096;
    raft
}

/// Stops the running nodes in `order` (followers first keeps the leader from committing
/// anything after the others stopped), then reads each node's state from its store.
async fn stop_and_fingerprint(cluster: &mut Cluster, order: [u64; 3]) -> Vec<StateFingerprint> {
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
async fn assert_identical_state(cluster: &mut Cluster, client: &MetaClient) {
    let leader = leader_of(client).await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let prints = stop_and_fingerprint(cluster, [followers[0], followers[1], leader]).await;
    info!(?prints, "state of every node");
    assert!(prints[0].pairs > 0);
    assert_eq!(prints[0], prints[1], "nodes 1 and 2 differ");
    assert_eq!(prints[1], prints[2], "nodes 2 and 3 differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_follower_catches_up_through_a_streamed_snapshot_with_identical_state() {
    init_tracing();
    let mut cluster = Cluster::start(snapshotting_raft()).await;
    let client = cluster.client();

    info!("phase 1: the group takes writes, snapshots and purges its log");
    accepted(
        client
            .execute(create_bucket("wiped"))
            .await
            .expect("create"),
    );
    write_keys(&client, "wiped", 0..60).await;
    let leader = leader_of(&client).await;
    let wiped = (1..=3).find(|id| *id != leader).expect("a follower");

    info!("phase 2: a follower loses its whole folder while more entries are snapshotted away");
    cluster.node(wiped).stop().await;
    cluster.node(wiped).wipe();
    write_keys(&client, "wiped", 60..130).await;

    info!("phase 3: restarted empty and without --init, it is sent the snapshot in chunks");
    cluster.restart(wiped).await;
    let target = applied_on_leader(&client).await;
    wait_applied(&cluster, wiped, target).await;
    let snapshot = cluster
        .node(wiped)
        .meta_dir()
        .join("snapshot")
        .join("current");
    assert!(
        snapshot.exists(),
        "the installed snapshot is kept as the node's own"
    );
    let leftovers: Vec<String> = std::fs::read_dir(snapshot.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "current")
        .collect();
    assert!(
        leftovers.is_empty(),
        "transfer files left behind: {leftovers:?}"
    );

    info!("phase 4: it serves as part of the quorum, then every node holds identical state");
    let other = (1..=3)
        .find(|id| *id != leader && *id != wiped)
        .expect("the other follower");
    cluster.node(other).stop().await;
    write_keys(&client, "wiped", 130..135).await;
    cluster.restart(other).await;
    let target = applied_on_leader(&client).await;
    wait_applied(&cluster, other, target).await;
    wait_applied(&cluster, wiped, target).await;
    assert_identical_state(&mut cluster, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_voter_restarted_empty_without_init_rejoins_instead_of_founding_a_group() {
    init_tracing();
    let mut cluster = Cluster::start(raft_config().expect("raft config")).await;
    let client = cluster.client();

    info!("phase 1: node 1 founded the group; it takes writes");
    accepted(
        client
            .execute(create_bucket("rejoin"))
            .await
            .expect("create"),
    );
    write_keys(&client, "rejoin", 0..20).await;
    let term_before = client.cluster_status().await.expect("status").term;

    info!("phase 2: alone and wiped, the founding node stays uninitialised past elections");
    for id in 1..=3 {
        cluster.node(id).stop().await;
    }
    cluster.node(1).wipe();
    cluster.restart(1).await;
    let alone = MetaClient::new(vec![cluster.node(1).addr.to_string()]);
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        let status = alone.cluster_status().await.expect("status");
        assert_eq!(status.term, 0, "the wiped node started an election");
        assert_eq!(status.leader_id, None);
        assert!(status.meta_nodes.is_empty(), "it knows no membership");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    info!("phase 3: with node 3 still down, node 1 gives node 2 no vote: no leader is elected");
    cluster.restart(2).await;
    let only_two = MetaClient::new(vec![cluster.node(2).addr.to_string()]);
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        // Node 2 may still name its old leader (node 1) from its stored vote; what must not
        // happen is node 2 winning an election.
        let status = only_two.cluster_status().await.expect("status");
        let own_role = status
            .meta_nodes
            .iter()
            .find(|n| n.node_id == 2)
            .map(|n| n.role.clone());
        assert_ne!(
            status.leader_id,
            Some(2),
            "a leader was elected with the vote of a node that forgot its log"
        );
        assert_ne!(own_role.as_deref(), Some("leader"));
        assert_eq!(alone.cluster_status().await.expect("status").term, 0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    info!("phase 4: node 3 returns; the group's leader catches node 1 up");
    cluster.restart(3).await;
    write_keys(&client, "rejoin", 20..25).await;
    let target = applied_on_leader(&client).await;
    wait_applied(&cluster, 1, target).await;
    let status = alone.cluster_status().await.expect("status");
    assert!(status.term >= term_before);
    assert_eq!(
        status.meta_nodes.len(),
        3,
        "node 1 knows the group's membership"
    );

    info!("phase 5: node 1 is a voter of the same group: with another node down, writes go on");
    let leader = leader_of(&client).await;
    let victim = if leader == 2 { 3 } else { 2 };
    cluster.node(victim).stop().await;
    write_keys(&client, "rejoin", 25..30).await;
    assert_eq!(list_all(&client, "rejoin").await, expected_keys(30));
    cluster.restart(victim).await;
    let target = applied_on_leader(&client).await;
    for id in 1..=3 {
        wait_applied(&cluster, id, target).await;
    }
    assert_identical_state(&mut cluster, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_node_on_the_same_folder_is_refused() {
    init_tracing();
    let mut cluster = Cluster::start(raft_config().expect("raft config")).await;
    let client = cluster.client();
    accepted(
        client
            .execute(create_bucket("locked"))
            .await
            .expect("create"),
    );

    info!("phase 1: a second process for node 2's folder fails at once, naming the holder");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = cluster.node(2).config.clone();
    let second = tessera_meta::serve_with_raft_config(
        config,
        listener,
        Shutdown::new(),
        raft_config().expect("raft config"),
    );
    match tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("refused promptly")
    {
        Err(MetaNodeError::Store(StoreError::Locked(e))) => {
            let message = e.to_string();
            assert!(message.contains("meta"), "{message}");
            assert!(
                message.contains(&cluster.node(2).meta_dir().display().to_string()),
                "{message}"
            );
            assert_eq!(e.code(), "dir_lock_held");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(()) => panic!("a second node ran on a folder in use"),
    }

    info!("phase 2: the running node 2 is unaffected");
    write_keys(&client, "locked", 0..5).await;
    let target = applied_on_leader(&client).await;
    wait_applied(&cluster, 2, target).await;
    for id in 1..=3 {
        cluster.node(id).stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_in_the_middle_of_a_snapshot_install_completes_at_open() {
    init_tracing();
    let mut cluster = Cluster::start(snapshotting_raft()).await;
    let client = cluster.client();

    info!("phase 1: a wiped follower is caught up from a snapshot");
    accepted(
        client
            .execute(create_bucket("crash"))
            .await
            .expect("create"),
    );
    write_keys(&client, "crash", 0..50).await;
    let leader = leader_of(&client).await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.node(victim).stop().await;
    cluster.node(victim).wipe();
    write_keys(&client, "crash", 50..100).await;
    cluster.restart(victim).await;
    let target = applied_on_leader(&client).await;
    wait_applied(&cluster, victim, target).await;

    info!("phase 2: the node crashes mid-install: marker durable, old state half replaced");
    cluster.node(victim).stop().await;
    let meta_dir = cluster.node(victim).meta_dir();
    let snapshot_dir = meta_dir.join("snapshot");
    let kept = snapshot_dir.join("receiving-crashed");
    std::fs::copy(snapshot_dir.join("current"), &kept).expect("copy");
    let snapshot_meta = {
        let file = std::io::BufReader::new(std::fs::File::open(&kept).expect("open"));
        let reader = tessera_meta::store::snapshot_file::SnapshotFileReader::open(
            file,
            tessera_meta::store::FORMAT_VERSION,
        )
        .expect("header");
        reader.meta().clone()
    };
    {
        use prost::Message;
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(false);
        let db = rocksdb::DB::open_cf(
            &opts,
            meta_dir.join("db"),
            [
                tessera_meta::store::CF_LOGS,
                tessera_meta::store::CF_RAFT,
                tessera_meta::store::CF_SM,
                tessera_meta::store::CF_SM_META,
            ],
        )
        .expect("open db");
        let sm = db.cf_handle(tessera_meta::store::CF_SM).expect("sm");
        let sm_meta = db
            .cf_handle(tessera_meta::store::CF_SM_META)
            .expect("sm_meta");
        let marker = tessera_proto::raft::v1::SnapshotInstall {
            file: "receiving-crashed".into(),
            meta: Some(tessera_meta::convert::snapshot_meta_to_pb(&snapshot_meta)),
        };
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(
            sm_meta,
            tessera_meta::store::KEY_INSTALLING,
            marker.encode_to_vec(),
        );
        batch.delete_range_cf(sm, b"o/".to_vec(), b"o/crash\0key-0040".to_vec());
        batch.put_cf(sm, b"zz/left over from the old state", b"garbage");
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        db.write_opt(batch, &sync).expect("write");
    }

    info!("phase 3: restarted, the node completes the install at open and rejoins");
    cluster.restart(victim).await;
    write_keys(&client, "crash", 100..105).await;
    let target = applied_on_leader(&client).await;
    wait_applied(&cluster, victim, target).await;
    assert!(!kept.exists(), "the kept file became the node's snapshot");
    assert_identical_state(&mut cluster, &client).await;
}
