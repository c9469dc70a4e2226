use std::collections::{BTreeMap, BTreeSet};

use openraft::{CommittedLeaderId, Membership};
use tessera_proto::meta::v1::{Bucket, Command, CreateBucket, command};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::*;
use crate::types::MetaNode;

fn lid(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn create(name: &str, index: u64) -> LogEntry {
    LogEntry {
        log_id: lid(index),
        payload: EntryPayload::Normal(Command {
            cmd: Some(command::Cmd::CreateBucket(CreateBucket {
                bucket: Some(Bucket {
                    name: name.into(),
                    owner: "o".into(),
                    ..Bucket::default()
                }),
            })),
            ..Command::default()
        }),
    }
}

fn membership_entry(index: u64) -> LogEntry {
    let nodes = BTreeMap::from([(
        1,
        MetaNode {
            addr: "a:1".into(),
            zone: "z".into(),
        },
    )]);
    LogEntry {
        log_id: lid(index),
        payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], nodes)),
    }
}

/// What openraft does on both ends of a transfer: read the sender's snapshot in chunks, write
/// them into a file from `begin_receiving_snapshot`, hand that file to `install_snapshot`.
async fn transfer(
    mut from: Box<SnapshotFile>,
    to: &mut StateMachineStore,
    meta: &SnapshotMeta,
    chunk: usize,
) {
    let mut into = to.begin_receiving_snapshot().await.expect("begin");
    let end = from.seek(std::io::SeekFrom::End(0)).await.expect("end");
    from.seek(std::io::SeekFrom::Start(0)).await.expect("start");
    let mut offset = 0u64;
    let mut buf = vec![0u8; chunk];
    while offset < end {
        let n = from.read(&mut buf).await.expect("read chunk");
        assert!(n > 0, "file ended early");
        into.seek(std::io::SeekFrom::Start(offset))
            .await
            .expect("seek");
        into.write_all(&buf[..n]).await.expect("write chunk");
        offset += n as u64;
    }
    into.shutdown().await.expect("flush");
    to.install_snapshot(meta, into).await.expect("install");
}

#[tokio::test]
async fn applied_state_and_snapshots_survive_restart_and_a_transfer_replaces_everything() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let (meta, fingerprint) = {
        let store = MetaStore::open(source_dir.path()).expect("open");
        let mut sm = store.state_machine();
        let results = sm
            .apply(vec![
                membership_entry(1),
                create("alpha", 2),
                create("bravo", 3),
            ])
            .await
            .expect("apply");
        assert_eq!(results.len(), 3);
        let (applied, membership) = sm.applied_state().await.expect("state");
        assert_eq!(applied, Some(lid(3)));
        assert_eq!(membership.log_id(), &Some(lid(1)));
        let mut builder = sm.get_snapshot_builder().await;
        let snap = builder.build_snapshot().await.expect("build");
        assert_eq!(snap.meta.last_log_id, Some(lid(3)));
        (
            snap.meta.clone(),
            store.state_fingerprint().expect("fingerprint"),
        )
    };
    // Restarted, the node still has its state and its snapshot.
    let store = MetaStore::open(source_dir.path()).expect("reopen");
    let mut sm = store.state_machine();
    assert_eq!(sm.applied_state().await.expect("state").0, Some(lid(3)));
    let current = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("present");
    assert_eq!(current.meta, meta);

    // Another node with different data receives it in small chunks and ends up identical.
    let target_dir = tempfile::tempdir().expect("tempdir");
    let target = MetaStore::open(target_dir.path()).expect("open");
    let mut target_sm = target.state_machine();
    target_sm
        .apply(vec![create("zulu", 1)])
        .await
        .expect("apply");
    transfer(current.snapshot, &mut target_sm, &meta, 97).await;
    assert_eq!(
        target.state_fingerprint().expect("fingerprint"),
        fingerprint
    );
    let view = target.latest().expect("view");
    assert!(
        crate::records::bucket(&view, "alpha")
            .expect("read")
            .is_some()
    );
    assert!(
        crate::records::bucket(&view, "zulu")
            .expect("read")
            .is_none()
    );
    let (applied, membership) = target_sm.applied_state().await.expect("state");
    assert_eq!(applied, Some(lid(3)));
    assert_eq!(membership, meta.last_membership);
    let kept = target_sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(kept.meta, meta);
    assert_eq!(kept.snapshot.path(), target.snapshot_path());
}

#[tokio::test]
async fn an_abandoned_transfer_leaves_no_file_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MetaStore::open(dir.path()).expect("open");
    let mut sm = store.state_machine();
    let mut receiving = sm.begin_receiving_snapshot().await.expect("begin");
    receiving.write_all(b"first chunk").await.expect("write");
    receiving.flush().await.expect("flush");
    let path = receiving.path().to_path_buf();
    assert!(path.exists());
    assert!(path.starts_with(store.snapshot_dir()));
    drop(receiving);
    assert!(!path.exists(), "the abandoned transfer was removed");
}
