//! Three meta nodes in one process on loopback ports: writes and linearizable reads through
//! `MetaClient`, losing the leader, restarting it, lagging and wiped nodes catching up through
//! streamed snapshots, a wiped voter that must not found a group of its own, a second process
//! on one folder, a snapshot install interrupted by a crash, worker reports and the applied
//! index. Each phase logs what must hold.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tessera_client::MetaClient;
use tessera_client::meta::WrappingKey;
use tessera_core::names::BucketName;
use tessera_meta::{MetaNodeError, StoreError, node::raft_config};
use tessera_runtime::Shutdown;
use tokio::net::TcpListener;
use tracing::info;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_survive_losing_and_restarting_the_leader() {
    init_tracing();
    let mut cluster = Cluster::start(raft_config().expect("raft config")).await;
    let client = cluster.client();

    info!("phase 1: a fresh group elects a leader and accepts writes from any node");
    create_bucket(&client, "photos").await;
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
        let got = current(&only, "photos", "key-0007").await;
        assert_eq!(got.expect("present").etag, "\"key-0007\"");
    }
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.config.node_id != old_leader && n.config.node_id != new_leader)
        .expect("a live follower");
    let via_follower = MetaClient::new(vec![follower.addr.to_string()]);
    put_key(&via_follower, "photos", "via-follower").await;

    info!("phase 4: the old leader restarts with its state and catches up");
    cluster.restart(old_leader).await;
    let target = applied_on_leader(&client).await;
    wait_applied(&cluster, old_leader, target).await;
    let only_old = MetaClient::new(vec![cluster.node(old_leader).addr.to_string()]);
    assert!(
        only_old
            .get_bucket(&BucketName::parse("photos").expect("name"))
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
    create_bucket(&client, "logs").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_follower_catches_up_through_a_streamed_snapshot_with_identical_state() {
    init_tracing();
    let mut cluster = Cluster::start(snapshotting_raft()).await;
    let client = cluster.client();

    info!("phase 1: the group takes writes, snapshots and purges its log");
    create_bucket(&client, "wiped").await;
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
    create_bucket(&client, "rejoin").await;
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
    create_bucket(&client, "locked").await;

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
    create_bucket(&client, "crash").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_node_lists_worker_reports_and_a_linearizable_applied_index() {
    init_tracing();
    let mut cluster = Cluster::start(raft_config().expect("raft config")).await;
    let client = cluster.client();
    create_bucket(&client, "status").await;

    info!("phase 1: a process reports its workers to every node; each lists them");
    let report = tessera_proto::meta::v1::WorkerReport {
        process: Some(tessera_proto::meta::v1::ProcessId {
            role: "data".into(),
            id: "7".into(),
            zone: "zone-b".into(),
            addr: "127.0.0.1:7107".into(),
        }),
        workers: vec![tessera_proto::meta::v1::WorkerStatus {
            name: "scrub".into(),
            state: tessera_proto::meta::v1::WorkerState::Active as i32,
            progress: "pass 1".into(),
            done: 3,
            total: 9,
            ..Default::default()
        }],
    };
    client.report_workers_all(report).await;
    for node in &cluster.nodes {
        let only = MetaClient::new(vec![node.addr.to_string()]);
        let listed = only.list_workers().await.expect("list");
        assert_eq!(listed.answered_by, node.config.node_id);
        assert_eq!(listed.processes.len(), 1, "{listed:?}");
        let process = &listed.processes[0];
        assert_eq!(process.process.as_ref().expect("id").id, "7");
        assert_eq!(process.workers[0].name, "scrub");
        assert_eq!((process.workers[0].done, process.workers[0].total), (3, 9));
        assert!(process.age_ms < 10_000);
    }
    let mut raw = tessera_proto::meta::v1::meta_service_client::MetaServiceClient::connect(
        format!("http://{}", cluster.nodes[0].addr),
    )
    .await
    .expect("connect");
    let refused = raw
        .report_workers(tessera_proto::meta::v1::WorkerReport::default())
        .await
        .expect_err("a report naming no process is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        tessera_meta::worker_reports::WorkerReportError::MissingProcess.to_string()
    );

    info!(
        "phase 2: every node's ClusterStatus applied index covers every write acknowledged before"
    );
    for round in 0..3u32 {
        write_keys(&client, "status", round * 5..round * 5 + 5).await;
        let acknowledged = applied_on_leader(&client).await;
        for node in &cluster.nodes {
            let only = MetaClient::new(vec![node.addr.to_string()]);
            let status = only.cluster_status().await.expect("status");
            assert!(
                status.applied_index >= acknowledged,
                "node {} answered applied index {} below {acknowledged}",
                node.config.node_id,
                status.applied_index
            );
        }
    }
    for id in 1..=3 {
        cluster.node(id).stop().await;
    }
}

/// Sends one raw command (session included) to the node at `addr`, as a client's retry would.
async fn raw_execute(
    addr: &str,
    cmd: tessera_proto::meta::v1::Command,
) -> tessera_proto::meta::v1::CommandResult {
    use tessera_proto::meta::v1::meta_service_client::MetaServiceClient;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = async {
            let mut c = MetaServiceClient::connect(format!("http://{addr}"))
                .await
                .ok()?;
            c.execute(cmd.clone())
                .await
                .ok()
                .map(tonic::Response::into_inner)
        };
        if let Some(result) = attempt.await {
            return result;
        }
        assert!(
            Instant::now() < deadline,
            "no node at {addr} applied the command"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_command_answers_its_first_result_across_leader_changes_and_snapshots() {
    use openraft::storage::RaftStateMachine;
    use tessera_core::names::ObjectKey;
    use tessera_core::object::VersioningState;
    use tessera_proto::meta::v1 as pb;

    init_tracing();
    let mut cluster = Cluster::start(snapshotting_raft()).await;
    let client = cluster.client();
    create_bucket(&client, "once").await;
    let bucket = BucketName::parse("once").expect("name");
    client
        .set_bucket_versioning(&bucket, VersioningState::Enabled)
        .await
        .expect("versioning");

    info!("phase 1: a command with a session commits once through the leader");
    let typed = put("once", "k");
    let cmd = pb::Command {
        cmd: Some(pb::command::Cmd::PutVersion(pb::PutVersion {
            version: Some((&typed.version).into()),
            precondition: None,
            lease_id: 0,
        })),
        session: Some(pb::CommandSession {
            client_id: vec![0x5e; 16],
            seq: 1,
            first_unacked: 1,
        }),
        leader_time_ms: 0,
    };
    let leader = leader_of(&client).await;
    let leader_addr = cluster.node(leader).addr.to_string();
    let first = raw_execute(&leader_addr, cmd.clone()).await;
    assert!(
        matches!(
            first.result,
            Some(pb::command_result::Result::PutVersion(_))
        ),
        "{first:?}"
    );
    let versions = |client: &MetaClient| {
        let client = client.clone();
        let bucket = bucket.clone();
        async move {
            client
                .list_versions(&bucket, &ObjectKey::parse("k").expect("key"))
                .await
                .expect("list versions")
                .expect("bucket")
                .len()
        }
    };
    assert_eq!(versions(&client).await, 1);

    info!("phase 2: after the leader is lost, the retry answers the first result and adds nothing");
    cluster.node(leader).stop().await;
    let survivor = (1..=3).find(|id| *id != leader).expect("a survivor");
    let survivor_addr = cluster.node(survivor).addr.to_string();
    let second = raw_execute(&survivor_addr, cmd.clone()).await;
    assert_eq!(second, first, "the retry must get the first result");
    assert_eq!(versions(&client).await, 1, "the retry applied again");

    info!("phase 3: a node restored from a snapshot answers the retry the same way");
    cluster.restart(leader).await;
    write_keys(&client, "once", 0..60).await;
    let now_leader = leader_of(&client).await;
    let wiped = (1..=3).find(|id| *id != now_leader).expect("a follower");
    cluster.node(wiped).stop().await;
    cluster.node(wiped).wipe();
    write_keys(&client, "once", 60..100).await;
    cluster.restart(wiped).await;
    let target = applied_on_leader(&client).await;
    wait_applied(&cluster, wiped, target).await;
    cluster.node(wiped).stop().await;
    let store =
        tessera_meta::MetaStore::open(&cluster.node(wiped).meta_dir()).expect("open the store");
    let mut sm = store.state_machine();
    let (applied, _) = sm.applied_state().await.expect("applied state");
    let applied = applied.expect("the node applied entries");
    let entry = tessera_meta::types::LogEntry {
        log_id: openraft::LogId::new(applied.leader_id, applied.index + 1),
        payload: openraft::EntryPayload::Normal(cmd.clone()),
    };
    let results = sm.apply(vec![entry]).await.expect("apply the retry");
    assert_eq!(
        results,
        vec![first],
        "the snapshot lost the command's first result"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_service_answers_on_every_node_and_clients_cannot_propose_keks() {
    use tessera_core::sealing::segments::Binding;
    use tessera_proto::meta::v1 as pb;
    use tessera_proto::meta::v1::meta_service_client::MetaServiceClient;

    init_tracing();
    let mut cluster = Cluster::start(snapshotting_raft()).await;
    let client = cluster.client();
    let leader = leader_of(&client).await;
    let binding = Binding {
        bucket: "bkt",
        key: "k",
        part_number: 1,
    };
    info!("phase 1: the first data key makes sse-s3/1, from whichever node is asked");
    let made = client
        .generate_data_key(WrappingKey::Kek("sse-s3"), &binding, 1, &[])
        .await
        .expect("generate");
    assert_eq!(made.kek_id, "sse-s3/1");
    for id in 1..=3 {
        let node = MetaClient::new(vec![cluster.node(id).addr.to_string()]);
        let key = node
            .decrypt_data_key(&made.kek_id, &made.wrapped, &binding, 1, &[])
            .await
            .expect("every node unwraps it");
        assert_eq!(key.expose(), made.key.expose(), "node {id}");
    }
    let moved = Binding {
        key: "other",
        ..binding
    };
    assert!(
        client
            .decrypt_data_key(&made.kek_id, &made.wrapped, &moved, 1, &[])
            .await
            .is_err(),
        "a key wrapped for one object does not unwrap for another"
    );

    info!("phase 2: a rotation asked of a follower is made by the leader");
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let follower_client = MetaClient::new(vec![cluster.node(follower).addr.to_string()]);
    assert_eq!(
        follower_client.rotate_kek("sse-s3").await.expect("rotate"),
        "sse-s3/2"
    );
    let versions: Vec<u32> = client
        .list_keks()
        .await
        .expect("list")
        .iter()
        .map(|k| k.version)
        .collect();
    assert_eq!(versions, [1, 2]);
    let old = client
        .decrypt_data_key(&made.kek_id, &made.wrapped, &binding, 1, &[])
        .await
        .expect("version 1 still unwraps");
    assert_eq!(old.expose(), made.key.expose());

    info!("phase 3: a client's CreateKek or RewrapKeys is refused and changes nothing");
    let addr = cluster.node(leader).addr.to_string();
    let mut raw = MetaServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    for cmd in [
        pb::command::Cmd::CreateKek(pb::CreateKek {
            name: "sse-s3".into(),
            version: 3,
            wrapped: vec![0; 61],
        }),
        pb::command::Cmd::RewrapKeys(pb::RewrapKeys::default()),
        pb::command::Cmd::CreateKmsKey(pb::CreateKmsKey::default()),
        pb::command::Cmd::UpdateKmsKey(pb::UpdateKmsKey::default()),
    ] {
        let refused = raw
            .execute(pb::Command {
                cmd: Some(cmd),
                session: None,
                leader_time_ms: 0,
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    }
    assert_eq!(client.list_keks().await.expect("list").len(), 2);
    for id in 1..=3 {
        cluster.node(id).stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kms_keys_wrap_only_while_enabled_and_the_default_key_is_made_on_first_use() {
    use tessera_core::sealing::segments::Binding;
    use tessera_proto::meta::v1 as pb;

    init_tracing();
    let mut cluster = Cluster::start(snapshotting_raft()).await;
    let client = cluster.client();
    let leader = leader_of(&client).await;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let via_follower = MetaClient::new(vec![cluster.node(follower).addr.to_string()]);
    let binding = Binding {
        bucket: "bkt",
        key: "k",
        part_number: 1,
    };
    let context: &[u8] = br#"{"dept":"finance"}"#;
    let refusal = |e: tessera_client::MetaClientError| match e {
        tessera_client::MetaClientError::Rejected { code, message, .. } => (code, message),
        other => panic!("not a refusal: {other}"),
    };

    info!("phase 1: a key created through a follower wraps and unwraps by its alias");
    let created = via_follower
        .create_kms_key("finance", "finance data")
        .await
        .expect("create");
    let record = created.key.expect("the record");
    assert_eq!(record.alias, "finance");
    assert_eq!(record.state, pb::KmsKeyState::KmsKeyEnabled as i32);
    assert!(tessera_core::kms::is_key_id(&record.key_id));
    let key_id = record.key_id.clone();
    let taken = client
        .create_kms_key("finance", "")
        .await
        .expect_err("the alias is taken");
    assert_eq!(refusal(taken).0, tonic::Code::AlreadyExists);
    let made = client
        .generate_data_key(WrappingKey::Kms("alias/finance"), &binding, 1, context)
        .await
        .expect("generate");
    assert_eq!(made.kms_key_id.as_deref(), Some(key_id.as_str()));
    assert_eq!(made.kek_id, format!("kms-{key_id}/1"));
    let decrypt = |client: MetaClient| {
        let kek_id = made.kek_id.clone();
        let wrapped = made.wrapped.clone();
        async move {
            client
                .decrypt_data_key(&kek_id, &wrapped, &binding, 1, context)
                .await
        }
    };
    let back = decrypt(via_follower.clone()).await.expect("decrypt");
    assert_eq!(back.expose(), made.key.expose());
    assert!(
        client
            .decrypt_data_key(&made.kek_id, &made.wrapped, &binding, 1, &[])
            .await
            .is_err(),
        "the encryption context is bound in"
    );
    let described = client
        .describe_kms_key(&key_id, false)
        .await
        .expect("by id");
    assert_eq!(described.key.map(|k| k.alias).as_deref(), Some("finance"));
    assert!(described.now_ms > 0);

    info!("phase 2: a disabled key neither wraps nor unwraps until enabled again");
    let disabled = client
        .update_kms_key("finance", pb::KmsKeyAction::Disable, 0)
        .await
        .expect("disable");
    assert_eq!(
        disabled.key.map(|k| k.state),
        Some(pb::KmsKeyState::KmsKeyDisabled as i32)
    );
    for node in 1..=3 {
        let only = MetaClient::new(vec![cluster.node(node).addr.to_string()]);
        let (code, message) = refusal(
            only.generate_data_key(WrappingKey::Kms(&key_id), &binding, 1, context)
                .await
                .expect_err("disabled"),
        );
        assert_eq!(code, tonic::Code::FailedPrecondition, "node {node}");
        assert!(message.starts_with("KMS.DisabledException"), "{message}");
        let (code, message) = refusal(decrypt(only).await.expect_err("disabled"));
        assert_eq!(code, tonic::Code::FailedPrecondition, "node {node}");
        assert!(message.starts_with("KMS.DisabledException"), "{message}");
    }
    client
        .update_kms_key(&key_id, pb::KmsKeyAction::Enable, 0)
        .await
        .expect("enable");
    let back = decrypt(client.clone()).await.expect("enabled again");
    assert_eq!(back.expose(), made.key.expose());

    info!("phase 3: a key pending deletion is refused; cancelling leaves it disabled");
    let scheduled = via_follower
        .update_kms_key(&key_id, pb::KmsKeyAction::ScheduleDeletion, 7)
        .await
        .expect("schedule");
    let scheduled_key = scheduled.key.expect("record");
    assert_eq!(
        scheduled_key.state,
        pb::KmsKeyState::KmsKeyPendingDeletion as i32
    );
    assert!(scheduled_key.deletion_ms >= scheduled.now_ms + 7 * 24 * 3600 * 1000 - 60_000);
    let (code, message) = refusal(decrypt(client.clone()).await.expect_err("pending"));
    assert_eq!(code, tonic::Code::FailedPrecondition);
    assert!(
        message.starts_with("KMS.KMSInvalidStateException"),
        "{message}"
    );
    let (code, _) = refusal(
        client
            .update_kms_key(&key_id, pb::KmsKeyAction::Enable, 0)
            .await
            .expect_err("pending deletion cannot be enabled"),
    );
    assert_eq!(code, tonic::Code::FailedPrecondition);
    let cancelled = client
        .update_kms_key(&key_id, pb::KmsKeyAction::CancelDeletion, 0)
        .await
        .expect("cancel");
    assert_eq!(
        cancelled.key.map(|k| (k.state, k.deletion_ms)),
        Some((pb::KmsKeyState::KmsKeyDisabled as i32, 0))
    );

    info!("phase 4: the default key aws/s3 is made on its first use, once");
    let unknown = client
        .describe_kms_key("alias/aws/s3", false)
        .await
        .expect_err("not made yet");
    assert_eq!(refusal(unknown).0, tonic::Code::NotFound);
    let first = via_follower
        .generate_data_key(WrappingKey::Kms("aws/s3"), &binding, 1, &[])
        .await
        .expect("default key");
    let default_id = first.kms_key_id.clone().expect("the default key's id");
    let again = client
        .generate_data_key(WrappingKey::Kms("alias/aws/s3"), &binding, 2, &[])
        .await
        .expect("default key again");
    assert_eq!(again.kms_key_id.as_deref(), Some(default_id.as_str()));
    let described = client
        .describe_kms_key("aws/s3", true)
        .await
        .expect("describe");
    assert_eq!(
        described.key.map(|k| (k.key_id, k.description)),
        Some((default_id, "Default key for SSE-KMS".to_owned()))
    );
    let keys = client.list_kms_keys().await.expect("list");
    assert_eq!(keys.len(), 2, "{keys:?}");
    let (code, message) = refusal(
        client
            .generate_data_key(WrappingKey::Kms("alias/nope"), &binding, 1, &[])
            .await
            .expect_err("unknown alias"),
    );
    assert_eq!(code, tonic::Code::NotFound);
    assert!(message.starts_with("KMS.NotFoundException"), "{message}");
    for id in 1..=3 {
        cluster.node(id).stop().await;
    }
}
