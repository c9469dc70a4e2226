use std::collections::{BTreeMap, BTreeSet};

use openraft::{CommittedLeaderId, Membership};
use tessera_runtime::dirlock::DirLockError;

use super::*;
use crate::store::KEY_FORMAT;
use crate::types::MetaNode;

fn lid(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn membership(index: u64) -> StoredMembership {
    let nodes = BTreeMap::from([(
        1,
        MetaNode {
            addr: "a:1".into(),
            zone: "z".into(),
        },
    )]);
    StoredMembership::new(
        Some(lid(index)),
        Membership::new(vec![BTreeSet::from([1])], nodes),
    )
}

/// Writes `count` records named after `tag` and records `applied` as the last applied log id,
/// the way applying entries would.
fn fill(store: &MetaStore, tag: &str, count: u32, applied: u64) {
    let sm = store.cf(CF_SM).expect("cf");
    let sm_meta = store.cf(CF_SM_META).expect("cf");
    let mut batch = WriteBatch::default();
    for i in 0..count {
        batch.put_cf(
            sm,
            format!("o/{tag}\0key-{i:06}\0").as_bytes(),
            format!("{tag} value {i}").repeat(1 + (i % 7) as usize),
        );
    }
    batch.put_cf(
        sm_meta,
        KEY_LAST_APPLIED,
        convert::log_id_to_pb(&lid(applied)).encode_to_vec(),
    );
    batch.put_cf(
        sm_meta,
        KEY_LAST_MEMBERSHIP,
        convert::stored_membership_to_pb(&membership(1)).encode_to_vec(),
    );
    store.write(batch, true).expect("write");
}

fn snapshot_files(store: &MetaStore) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.snapshot_dir())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A copy of `source`'s current snapshot file as a received transfer in `target`'s folder.
fn received_copy(source: &MetaStore, target: &MetaStore) -> PathBuf {
    let path = target.receiving_path();
    std::fs::copy(source.snapshot_path(), &path).expect("copy");
    path
}

#[test]
fn a_built_snapshot_installs_into_another_store_with_identical_state() {
    let a_dir = tempfile::tempdir().expect("tempdir");
    let a = MetaStore::open(a_dir.path()).expect("open");
    fill(&a, "alpha", 5000, 40);
    let built = a.build_snapshot_file().expect("build");
    assert_eq!(built.pairs, 5000);
    assert_eq!(built.meta.last_log_id, Some(lid(40)));
    assert_eq!(built.meta.last_membership, membership(1));
    assert_eq!(built.path, a.snapshot_path());
    assert_eq!(
        snapshot_files(&a),
        ["current"],
        "only the newest file is kept"
    );
    let current = a.current_snapshot().expect("read").expect("present");
    assert_eq!(current.meta, built.meta);
    assert_eq!(
        std::fs::metadata(&current.path).expect("stat").len(),
        built.bytes
    );

    let b_dir = tempfile::tempdir().expect("tempdir");
    let b = MetaStore::open(b_dir.path()).expect("open");
    fill(&b, "zulu", 300, 7);
    let received = received_copy(&a, &b);
    let pairs = b
        .install_snapshot_file(&built.meta, &received)
        .expect("install");
    assert_eq!(pairs, 5000);
    assert_eq!(
        b.state_fingerprint().expect("b"),
        a.state_fingerprint().expect("a")
    );
    assert_eq!(
        b.applied_state().expect("state"),
        (Some(lid(40)), membership(1))
    );
    assert_eq!(
        b.get_pb::<pb::SnapshotInstall>(CF_SM_META, KEY_INSTALLING, "m")
            .expect("read"),
        None
    );
    assert_eq!(
        snapshot_files(&b),
        ["current"],
        "the received file became current"
    );
    assert_eq!(
        b.current_snapshot().expect("read").expect("kept").meta,
        built.meta
    );
}

#[test]
fn an_install_interrupted_by_a_crash_completes_when_the_store_opens() {
    let a_dir = tempfile::tempdir().expect("tempdir");
    let a = MetaStore::open(a_dir.path()).expect("open");
    fill(&a, "alpha", 3000, 90);
    let built = a.build_snapshot_file().expect("build");

    let b_dir = tempfile::tempdir().expect("tempdir");
    let received = {
        let b = MetaStore::open(b_dir.path()).expect("open");
        fill(&b, "zulu", 2000, 12);
        let received = received_copy(&a, &b);
        // The crash: the marker is durable, the old state half deleted, a first batch of the
        // new state written, and nothing else.
        let marker = pb::SnapshotInstall {
            file: received
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            meta: Some(convert::snapshot_meta_to_pb(&built.meta)),
        };
        let sm = b.cf(CF_SM).expect("cf");
        let mut batch = WriteBatch::default();
        batch.put_cf(
            b.cf(CF_SM_META).expect("cf"),
            KEY_INSTALLING,
            marker.encode_to_vec(),
        );
        batch.delete_range_cf(sm, b"o/zulu".to_vec(), b"o/zulu\0key-001000".to_vec());
        batch.put_cf(sm, b"o/alpha\0key-000001\0", b"half written");
        b.write(batch, true).expect("write");
        received
    };
    assert!(received.exists());

    let b = MetaStore::open(b_dir.path()).expect("reopen completes the install");
    assert_eq!(
        b.state_fingerprint().expect("b"),
        a.state_fingerprint().expect("a")
    );
    assert_eq!(b.applied_state().expect("state").0, Some(lid(90)));
    assert_eq!(
        b.get_pb::<pb::SnapshotInstall>(CF_SM_META, KEY_INSTALLING, "m")
            .expect("read"),
        None
    );
    assert_eq!(snapshot_files(&b), ["current"]);
    assert_eq!(
        b.current_snapshot().expect("read").expect("kept").meta,
        built.meta
    );
    drop(b);
    // Opening again finds nothing left to do.
    let b = MetaStore::open(b_dir.path()).expect("reopen");
    assert_eq!(
        b.state_fingerprint().expect("b"),
        a.state_fingerprint().expect("a")
    );
}

#[test]
fn a_corrupt_or_mismatched_file_is_refused_before_the_state_is_touched() {
    let a_dir = tempfile::tempdir().expect("tempdir");
    let a = MetaStore::open(a_dir.path()).expect("open");
    fill(&a, "alpha", 1000, 20);
    let built = a.build_snapshot_file().expect("build");

    let b_dir = tempfile::tempdir().expect("tempdir");
    let b = MetaStore::open(b_dir.path()).expect("open");
    fill(&b, "zulu", 100, 5);
    let before = b.state_fingerprint().expect("fingerprint");

    let corrupt = received_copy(&a, &b);
    let mut bytes = std::fs::read(&corrupt).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&corrupt, &bytes).expect("write");
    match b.install_snapshot_file(&built.meta, &corrupt) {
        Err(StoreError::SnapshotFormat { source, .. }) => assert!(
            matches!(
                source,
                SnapshotFileError::ChecksumMismatch | SnapshotFileError::Decode { .. }
            ),
            "{source}"
        ),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a corrupt snapshot was installed"),
    }
    assert_eq!(b.state_fingerprint().expect("fingerprint"), before);

    let other = received_copy(&a, &b);
    let mut wrong_meta = built.meta.clone();
    wrong_meta.snapshot_id = "someone-else".into();
    match b.install_snapshot_file(&wrong_meta, &other) {
        Err(StoreError::SnapshotMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, "someone-else");
            assert_eq!(found, built.meta.snapshot_id);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a snapshot was installed as another"),
    }
    assert_eq!(b.state_fingerprint().expect("fingerprint"), before);
    assert_eq!(
        b.get_pb::<pb::SnapshotInstall>(CF_SM_META, KEY_INSTALLING, "m")
            .expect("read"),
        None
    );
}

#[test]
fn an_older_snapshot_never_replaces_a_newer_file_and_leftovers_are_removed_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let older = {
        let store = MetaStore::open(dir.path()).expect("open");
        fill(&store, "alpha", 10, 4);
        let older = store.build_snapshot_file().expect("build");
        // Keep a copy of the older file, then build a newer one.
        let copy = store.temporary_path(BUILDING_PREFIX);
        std::fs::copy(&older.path, &copy).expect("copy");
        fill(&store, "alpha", 20, 9);
        let newer = store.build_snapshot_file().expect("build");
        assert_eq!(newer.meta.last_log_id, Some(lid(9)));
        let kept = store
            .publish_snapshot_file(&copy, &older.meta)
            .expect("publish");
        assert_eq!(kept, None, "the older file is dropped");
        assert!(!copy.exists());
        assert_eq!(
            store
                .current_snapshot()
                .expect("read")
                .expect("present")
                .meta,
            newer.meta
        );
        // A crash leaves a build and a transfer behind.
        std::fs::write(store.temporary_path(BUILDING_PREFIX), b"partial").expect("write");
        std::fs::write(store.receiving_path(), b"partial").expect("write");
        assert_eq!(snapshot_files(&store).len(), 3);
        older
    };
    let store = MetaStore::open(dir.path()).expect("reopen");
    assert_eq!(snapshot_files(&store), ["current"]);
    let current = store.current_snapshot().expect("read").expect("present");
    assert!(current.meta.last_log_id > older.meta.last_log_id);
}

#[test]
fn a_second_store_on_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = MetaStore::open(dir.path()).expect("open");
    match MetaStore::open(dir.path()) {
        Err(StoreError::Locked(DirLockError::Held { holder, .. })) => {
            assert_eq!(holder, format!("{} meta", std::process::id()));
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("two stores opened one folder"),
    }
    drop(first);
    MetaStore::open(dir.path()).expect("free again once the first is closed");
}

#[test]
fn earlier_and_unknown_store_formats_are_refused() {
    for (version, earlier) in [(1, true), (2, true), (99, false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = MetaStore::open(dir.path()).expect("open");
            let mut batch = WriteBatch::default();
            batch.put_cf(
                store.cf(CF_SM_META).expect("cf"),
                KEY_FORMAT,
                pb::StoreFormat { version }.encode_to_vec(),
            );
            store.write(batch, true).expect("write");
        }
        match MetaStore::open(dir.path()) {
            Err(e @ StoreError::EarlierFormat { .. }) if earlier => {
                let message = e.to_string();
                assert!(message.contains("earlier development build"), "{message}");
                assert!(message.contains("empty folder"), "{message}");
                assert!(
                    message.contains(&dir.path().display().to_string()),
                    "{message}"
                );
                assert_eq!(e.code(), "store_earlier_format");
            }
            Err(StoreError::UnknownFormat { found, supported }) if !earlier => {
                assert_eq!((found, supported), (99, FORMAT_VERSION));
            }
            Err(e) => panic!("format {version}: unexpected error {e}"),
            Ok(_) => panic!("a store of format {version} was opened"),
        }
    }
}
