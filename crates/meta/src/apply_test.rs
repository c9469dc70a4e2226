//! Every command rule, applied through the state machine against a RocksDB in a temp dir.

use super::*;
use openraft::entry::EntryPayload;
use openraft::{CommittedLeaderId, LogId};
use tempfile::TempDir;
use tessera_proto::meta::v1::{
    CompletedPartRef, DataNode, ErasureBlob, MultipartUpload, ObjectPart, UploadedPart, blob,
};

use crate::types::LogEntry;

const MIB: u64 = 1024 * 1024;

struct Harness {
    _dir: TempDir,
    store: MetaStore,
    next_index: u64,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MetaStore::open(dir.path()).expect("open store");
        Harness {
            _dir: dir,
            store,
            next_index: 1,
        }
    }

    /// Applies one command as the next log entry; returns its index and result.
    fn run(&mut self, cmd: command::Cmd) -> (u64, command_result::Result) {
        let index = self.next_index;
        self.next_index += 1;
        let entry = LogEntry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command { cmd: Some(cmd) }),
        };
        let mut results = self.store.apply_entries(vec![entry]).expect("apply");
        let result = results.pop().and_then(|r| r.result).expect("a result");
        let (applied, _) = self.store.applied_state().expect("applied state");
        assert_eq!(
            applied.map(|l| l.index),
            Some(index),
            "last applied advances"
        );
        (index, result)
    }

    fn ok(&mut self, cmd: command::Cmd) -> command_result::Result {
        let (_, result) = self.run(cmd);
        if let command_result::Result::Error(e) = &result {
            panic!("command rejected: {e:?}");
        }
        result
    }

    fn rejected(&mut self, cmd: command::Cmd, code: MetaErrorCode) {
        let before = self.dump();
        let (_, result) = self.run(cmd);
        match result {
            command_result::Result::Error(e) => assert_eq!(e.code, code as i32, "{}", e.message),
            other => panic!("expected {code:?}, got {other:?}"),
        }
        assert_eq!(self.dump(), before, "a rejected command changes nothing");
    }

    /// Every state-machine record.
    fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let cf = self.store.cf(CF_SM).expect("cf");
        self.store
            .db()
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .map(|item| {
                let (k, v) = item.expect("read");
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }

    fn versions(&self, bucket: &str, key: &str) -> Vec<ObjectVersion> {
        let view = self.store.latest().expect("view");
        records::versions(&view, bucket, key).expect("versions")
    }

    fn bucket(&self, name: &str) -> Option<Bucket> {
        let view = self.store.latest().expect("view");
        records::bucket(&view, name).expect("bucket")
    }

    /// The data ids of every garbage blob, in key order.
    fn garbage(&self) -> Vec<u8> {
        let view = self.store.latest().expect("view");
        view.scan::<Garbage>(keys::GARBAGE_PREFIX.to_vec(), "garbage")
            .expect("scan")
            .into_iter()
            .map(|(_, g)| match g.blob.and_then(|b| b.storage) {
                Some(blob::Storage::Erasure(e)) => e.data_id[0],
                other => panic!("garbage without shards: {other:?}"),
            })
            .collect()
    }
}

fn erasure(id: u8) -> Blob {
    Blob {
        size: 100,
        storage: Some(blob::Storage::Erasure(ErasureBlob {
            data_id: vec![id; 16],
            data_shards: 2,
            parity_shards: 1,
            chunk_size: 65536,
            shards: Vec::new(),
            degraded: false,
        })),
    }
}

fn create_bucket(name: &str, owner: &str) -> command::Cmd {
    command::Cmd::CreateBucket(CreateBucket {
        bucket: Some(Bucket {
            name: name.into(),
            owner: owner.into(),
            created_ms: 1,
            ..Bucket::default()
        }),
    })
}

fn versioning_cmd(bucket: &str, state: VersioningState) -> command::Cmd {
    command::Cmd::SetBucketVersioning(SetBucketVersioning {
        bucket: bucket.into(),
        state: state as i32,
    })
}

fn version(bucket: &str, key: &str, etag: &str, blob: u8) -> ObjectVersion {
    ObjectVersion {
        bucket: bucket.into(),
        key: key.into(),
        etag: etag.into(),
        size: 100,
        last_modified_ms: 5_000,
        parts: vec![ObjectPart {
            part_number: 1,
            size: 100,
            etag: etag.into(),
            blob: Some(erasure(blob)),
            checksums: Vec::new(),
        }],
        ..ObjectVersion::default()
    }
}

fn put(bucket: &str, key: &str, etag: &str, blob: u8) -> command::Cmd {
    command::Cmd::PutVersion(PutVersion {
        version: Some(version(bucket, key, etag, blob)),
        precondition: None,
    })
}

/// A conditional put of a small (inline) object: each put is a new blob, as a real write.
fn put_if(bucket: &str, key: &str, precondition: WritePrecondition) -> command::Cmd {
    let mut v = version(bucket, key, "\"new\"", 0);
    v.parts[0].blob = Some(Blob {
        size: 3,
        storage: Some(blob::Storage::InlineData(b"new".to_vec())),
    });
    command::Cmd::PutVersion(PutVersion {
        version: Some(v),
        precondition: Some(precondition),
    })
}

fn delete(bucket: &str, key: &str, version_id: Option<&str>) -> command::Cmd {
    command::Cmd::DeleteObject(DeleteObject {
        bucket: bucket.into(),
        key: key.into(),
        version_id: version_id.map(str::to_owned),
        now_ms: 9_000,
    })
}

fn stored(result: command_result::Result) -> ObjectVersion {
    match result {
        command_result::Result::PutVersion(r) => r.version.expect("version"),
        other => panic!("not a put result: {other:?}"),
    }
}

fn deletion(result: command_result::Result) -> DeleteObjectResult {
    match result {
        command_result::Result::DeleteObject(r) => r,
        other => panic!("not a delete result: {other:?}"),
    }
}

fn ids(versions: &[ObjectVersion]) -> Vec<String> {
    versions.iter().map(|v| v.version_id.clone()).collect()
}

// --- buckets -------------------------------------------------------------------------------

#[test]
fn create_bucket_reports_who_owns_an_existing_name() {
    let mut h = Harness::new();
    h.ok(create_bucket("photos", "alice"));
    assert_eq!(h.bucket("photos").expect("created").owner, "alice");
    h.rejected(
        create_bucket("photos", "alice"),
        MetaErrorCode::MetaErrorBucketAlreadyOwnedByYou,
    );
    h.rejected(
        create_bucket("photos", "bob"),
        MetaErrorCode::MetaErrorBucketAlreadyExists,
    );
    h.rejected(
        create_bucket("Bad_Name", "bob"),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.rejected(
        command::Cmd::CreateBucket(CreateBucket { bucket: None }),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
}

#[test]
fn delete_bucket_refuses_versions_markers_and_uploads() {
    let mut h = Harness::new();
    let drop = |name: &str| {
        command::Cmd::DeleteBucket(DeleteBucket {
            name: name.to_owned(),
        })
    };
    h.rejected(drop("nope"), MetaErrorCode::MetaErrorNoSuchBucket);
    h.ok(create_bucket("bkt", "o"));
    h.ok(versioning_cmd("bkt", VersioningState::VersioningEnabled));

    // A live object.
    let v = stored(h.ok(put("bkt", "k", "\"e\"", 1)));
    h.rejected(drop("bkt"), MetaErrorCode::MetaErrorBucketNotEmpty);
    // Only a delete marker left.
    h.ok(delete("bkt", "k", Some(&v.version_id)));
    h.ok(delete("bkt", "k", None));
    h.rejected(drop("bkt"), MetaErrorCode::MetaErrorBucketNotEmpty);
    let marker = h.versions("bkt", "k").remove(0);
    h.ok(delete("bkt", "k", Some(&marker.version_id)));
    // An upload in progress.
    h.ok(create_upload("bkt", "k", "up-1"));
    h.rejected(drop("bkt"), MetaErrorCode::MetaErrorBucketNotEmpty);
    h.ok(abort("up-1"));

    h.ok(drop("bkt"));
    assert!(h.bucket("bkt").is_none());
}

#[test]
fn versioning_can_be_enabled_and_suspended_but_not_turned_off() {
    let mut h = Harness::new();
    h.rejected(
        versioning_cmd("bkt", VersioningState::VersioningEnabled),
        MetaErrorCode::MetaErrorNoSuchBucket,
    );
    h.ok(create_bucket("bkt", "o"));
    h.rejected(
        versioning_cmd("bkt", VersioningState::VersioningUnversioned),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.ok(versioning_cmd("bkt", VersioningState::VersioningEnabled));
    assert_eq!(
        h.bucket("bkt").expect("bucket").versioning,
        VersioningState::VersioningEnabled as i32
    );
    h.ok(versioning_cmd("bkt", VersioningState::VersioningSuspended));
    h.rejected(
        versioning_cmd("bkt", VersioningState::VersioningUnversioned),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.rejected(
        command::Cmd::SetBucketVersioning(SetBucketVersioning {
            bucket: "bkt".into(),
            state: 42,
        }),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
}

// --- objects -------------------------------------------------------------------------------

#[test]
fn unversioned_puts_replace_the_null_version_and_discard_its_blob() {
    let mut h = Harness::new();
    h.rejected(
        put("bkt", "k", "\"e\"", 1),
        MetaErrorCode::MetaErrorNoSuchBucket,
    );
    h.ok(create_bucket("bkt", "o"));
    let (index, result) = h.run(put("bkt", "k", "\"e1\"", 1));
    let first = stored(result);
    assert_eq!(first.version_id, "null");
    assert_eq!(first.seq, index);
    let second = stored(h.ok(put("bkt", "k", "\"e2\"", 2)));
    assert_eq!(second.version_id, "null");
    let all = h.versions("bkt", "k");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].etag, "\"e2\"");
    assert_eq!(h.garbage(), [1]);
    h.rejected(
        put("bkt", "", "\"e\"", 3),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.rejected(
        put("bkt", "a\0b", "\"e\"", 3),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
}

#[test]
fn enabled_puts_keep_every_version_under_ids_made_from_the_log_index() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(versioning_cmd("bkt", VersioningState::VersioningEnabled));
    let (i1, r1) = h.run(put("bkt", "k", "\"e1\"", 1));
    let (i2, r2) = h.run(put("bkt", "k", "\"e2\"", 2));
    assert_eq!(stored(r1).version_id, VersionId::from_seq(i1).as_str());
    assert_eq!(stored(r2).version_id, VersionId::from_seq(i2).as_str());
    let all = h.versions("bkt", "k");
    assert_eq!(
        ids(&all),
        [
            VersionId::from_seq(i2).as_str(),
            VersionId::from_seq(i1).as_str()
        ],
        "newest first"
    );
    assert!(h.garbage().is_empty());
}

#[test]
fn suspended_puts_replace_only_the_null_version() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(put("bkt", "k", "\"e0\"", 1)); // null version from before versioning
    h.ok(versioning_cmd("bkt", VersioningState::VersioningEnabled));
    let (i2, _) = h.run(put("bkt", "k", "\"e1\"", 2));
    h.ok(versioning_cmd("bkt", VersioningState::VersioningSuspended));
    h.ok(put("bkt", "k", "\"e2\"", 3));
    let all = h.versions("bkt", "k");
    assert_eq!(ids(&all), ["null", VersionId::from_seq(i2).as_str()]);
    assert_eq!(all[0].etag, "\"e2\"");
    assert_eq!(
        h.garbage(),
        [1],
        "the pre-versioning null version was replaced"
    );
    h.ok(put("bkt", "k", "\"e3\"", 4));
    assert_eq!(h.versions("bkt", "k").len(), 2);
    assert_eq!(h.garbage(), [1, 3]);
}

#[test]
fn preconditions_are_checked_against_the_current_version() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(versioning_cmd("bkt", VersioningState::VersioningEnabled));
    let none_match = WritePrecondition {
        if_none_match_any: true,
        if_match: None,
    };
    let matching = |etag: &str| WritePrecondition {
        if_none_match_any: false,
        if_match: Some(etag.to_owned()),
    };
    // Absent key: If-None-Match passes, If-Match fails with NoSuchKey (as S3 answers 404).
    h.rejected(
        put_if("bkt", "k", matching("\"e1\"")),
        MetaErrorCode::MetaErrorNoSuchKey,
    );
    h.ok(put_if("bkt", "k", none_match.clone()));
    // Present: If-None-Match fails; If-Match passes only with the current ETag.
    h.rejected(
        put_if("bkt", "k", none_match.clone()),
        MetaErrorCode::MetaErrorPreconditionFailed,
    );
    h.rejected(
        put_if("bkt", "k", matching("\"other\"")),
        MetaErrorCode::MetaErrorPreconditionFailed,
    );
    h.ok(put_if("bkt", "k", matching("\"new\"")));
    h.ok(put_if("bkt", "k", matching("*")));
    // Behind a delete marker the key counts as absent.
    h.ok(delete("bkt", "k", None));
    h.rejected(
        put_if("bkt", "k", matching("\"new\"")),
        MetaErrorCode::MetaErrorNoSuchKey,
    );
    h.ok(put_if("bkt", "k", none_match));
}

#[test]
fn unversioned_delete_removes_the_null_version_and_succeeds_when_absent() {
    let mut h = Harness::new();
    h.rejected(
        delete("bkt", "k", None),
        MetaErrorCode::MetaErrorNoSuchBucket,
    );
    h.ok(create_bucket("bkt", "o"));
    h.ok(put("bkt", "k", "\"e\"", 7));
    let r = deletion(h.ok(delete("bkt", "k", None)));
    assert!(!r.delete_marker);
    assert!(h.versions("bkt", "k").is_empty());
    assert_eq!(h.garbage(), [7]);
    let again = deletion(h.ok(delete("bkt", "k", None)));
    assert!(!again.delete_marker);
    assert_eq!(h.garbage(), [7]);
}

#[test]
fn enabled_delete_adds_markers_and_version_deletes_remove_exactly_one_version() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(versioning_cmd("bkt", VersioningState::VersioningEnabled));
    let v1 = stored(h.ok(put("bkt", "k", "\"e1\"", 1)));
    let (marker_index, r) = h.run(delete("bkt", "k", None));
    let marker = deletion(r);
    assert!(marker.delete_marker);
    assert_eq!(
        marker.version_id,
        VersionId::from_seq(marker_index).as_str()
    );
    let all = h.versions("bkt", "k");
    assert_eq!(all.len(), 2);
    assert!(all[0].delete_marker, "the marker is current");
    assert_eq!(all[0].last_modified_ms, 9_000);

    // Deleting the marker by id brings the object back.
    let r = deletion(h.ok(delete("bkt", "k", Some(&marker.version_id))));
    assert!(r.delete_marker);
    assert_eq!(r.version_id, marker.version_id);
    assert_eq!(ids(&h.versions("bkt", "k")), [v1.version_id.as_str()]);
    assert!(h.garbage().is_empty());

    // A valid id that names nothing is a silent success; a malformed id is not.
    let unknown = VersionId::from_seq(123_456).as_str().to_owned();
    let r = deletion(h.ok(delete("bkt", "k", Some(&unknown))));
    assert!(!r.delete_marker);
    assert_eq!(h.versions("bkt", "k").len(), 1);
    h.rejected(
        delete("bkt", "k", Some("not-a-version")),
        MetaErrorCode::MetaErrorInvalidArgument,
    );

    let r = deletion(h.ok(delete("bkt", "k", Some(&v1.version_id))));
    assert!(!r.delete_marker);
    assert!(h.versions("bkt", "k").is_empty());
    assert_eq!(h.garbage(), [1]);
}

#[test]
fn suspended_delete_replaces_the_null_version_by_a_null_marker() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(versioning_cmd("bkt", VersioningState::VersioningEnabled));
    let kept = stored(h.ok(put("bkt", "k", "\"e1\"", 1)));
    h.ok(versioning_cmd("bkt", VersioningState::VersioningSuspended));
    h.ok(put("bkt", "k", "\"e2\"", 2));
    let r = deletion(h.ok(delete("bkt", "k", None)));
    assert_eq!(r.version_id, "null");
    assert!(r.delete_marker);
    let all = h.versions("bkt", "k");
    assert_eq!(ids(&all), ["null", kept.version_id.as_str()]);
    assert!(all[0].delete_marker);
    assert_eq!(h.garbage(), [2]);
    // Deleting "null" by id removes the marker.
    let r = deletion(h.ok(delete("bkt", "k", Some("null"))));
    assert!(r.delete_marker);
    assert_eq!(ids(&h.versions("bkt", "k")), [kept.version_id]);
}

// --- multipart uploads ---------------------------------------------------------------------

fn create_upload(bucket: &str, key: &str, id: &str) -> command::Cmd {
    command::Cmd::CreateUpload(CreateUpload {
        upload: Some(MultipartUpload {
            bucket: bucket.into(),
            key: key.into(),
            upload_id: id.into(),
            initiated_ms: 10,
            ..MultipartUpload::default()
        }),
    })
}

fn part(upload_id: &str, number: u32, size: u64, etag: &str, blob: u8) -> command::Cmd {
    command::Cmd::PutPart(PutPart {
        part: Some(UploadedPart {
            upload_id: upload_id.into(),
            part_number: number,
            size,
            etag: etag.into(),
            last_modified_ms: 20,
            blob: Some(erasure(blob)),
            checksums: Vec::new(),
        }),
    })
}

fn complete(upload_id: &str, parts: &[(u32, &str)]) -> command::Cmd {
    command::Cmd::CompleteUpload(CompleteUpload {
        upload_id: upload_id.into(),
        parts: parts
            .iter()
            .map(|(n, e)| CompletedPartRef {
                part_number: *n,
                etag: (*e).to_owned(),
            })
            .collect(),
        version: Some(ObjectVersion {
            etag: "\"multi-2\"".into(),
            multipart: true,
            last_modified_ms: 30,
            ..ObjectVersion::default()
        }),
        precondition: None,
    })
}

fn abort(upload_id: &str) -> command::Cmd {
    command::Cmd::AbortUpload(AbortUpload {
        upload_id: upload_id.into(),
        now_ms: 40,
    })
}

#[test]
fn parts_need_an_upload_and_replacing_one_discards_its_blob() {
    let mut h = Harness::new();
    h.rejected(
        create_upload("bkt", "k", "u1"),
        MetaErrorCode::MetaErrorNoSuchBucket,
    );
    h.ok(create_bucket("bkt", "o"));
    h.ok(create_upload("bkt", "k", "u1"));
    h.rejected(
        create_upload("bkt", "k", "u1"),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.rejected(
        create_upload("bkt", "k", "a\0b"),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.rejected(
        part("nope", 1, MIB, "\"p\"", 1),
        MetaErrorCode::MetaErrorNoSuchUpload,
    );
    h.rejected(
        part("u1", 0, MIB, "\"p\"", 1),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.rejected(
        part("u1", 10_001, MIB, "\"p\"", 1),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.ok(part("u1", 1, MIB, "\"p1\"", 1));
    h.ok(part("u1", 1, MIB, "\"p1b\"", 2));
    assert_eq!(h.garbage(), [1]);
}

#[test]
fn complete_checks_parts_then_writes_the_version_and_discards_unused_parts() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.rejected(
        complete("u1", &[(1, "\"p1\"")]),
        MetaErrorCode::MetaErrorNoSuchUpload,
    );
    h.ok(put("bkt", "k", "\"old\"", 9));
    h.ok(create_upload("bkt", "k", "u1"));
    h.ok(part("u1", 1, 5 * MIB, "\"p1\"", 1));
    h.ok(part("u1", 2, 5 * MIB, "\"p2\"", 2));
    h.ok(part("u1", 3, MIB, "\"p3\"", 3));
    h.ok(part("u1", 4, MIB, "\"p4\"", 4));

    h.rejected(
        complete("u1", &[(1, "\"wrong\"")]),
        MetaErrorCode::MetaErrorInvalidPart,
    );
    h.rejected(
        complete("u1", &[(5, "\"p5\"")]),
        MetaErrorCode::MetaErrorInvalidPart,
    );
    h.rejected(
        complete("u1", &[(2, "\"p2\""), (1, "\"p1\"")]),
        MetaErrorCode::MetaErrorInvalidPartOrder,
    );
    h.rejected(
        complete("u1", &[(3, "\"p3\""), (4, "\"p4\"")]),
        MetaErrorCode::MetaErrorEntityTooSmall,
    );
    h.rejected(complete("u1", &[]), MetaErrorCode::MetaErrorInvalidArgument);
    let mut guarded = complete("u1", &[(1, "\"p1\"")]);
    if let command::Cmd::CompleteUpload(c) = &mut guarded {
        c.precondition = Some(WritePrecondition {
            if_none_match_any: true,
            if_match: None,
        });
    }
    h.rejected(guarded, MetaErrorCode::MetaErrorPreconditionFailed);

    // Parts 1, 2 and 4 make the object; part 3 is left out.
    let v = stored(h.ok(complete(
        "u1",
        &[(1, "\"p1\""), (2, "\"p2\""), (4, "\"p4\"")],
    )));
    assert_eq!((v.bucket.as_str(), v.key.as_str()), ("bkt", "k"));
    assert_eq!(v.version_id, "null");
    assert!(v.multipart);
    let all = h.versions("bkt", "k");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].etag, "\"multi-2\"");
    // The replaced old object and the unused part are garbage; used parts are not.
    let mut garbage = h.garbage();
    garbage.sort();
    assert_eq!(garbage, [3, 9]);
    let view = h.store.latest().expect("view");
    assert!(records::upload_by_id(&view, "u1").expect("read").is_none());
    assert!(records::parts(&view, "u1").expect("read").is_empty());
    assert!(!view.any(keys::uploads_of_bucket("bkt")).expect("read"));
    drop(view);
    h.rejected(
        complete("u1", &[(1, "\"p1\"")]),
        MetaErrorCode::MetaErrorNoSuchUpload,
    );
}

#[test]
fn abort_discards_every_part() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.rejected(abort("u1"), MetaErrorCode::MetaErrorNoSuchUpload);
    h.ok(create_upload("bkt", "k", "u1"));
    h.ok(part("u1", 1, MIB, "\"p1\"", 1));
    h.ok(part("u1", 2, MIB, "\"p2\"", 2));
    h.ok(abort("u1"));
    assert_eq!(h.garbage(), [1, 2]);
    let view = h.store.latest().expect("view");
    assert!(records::upload_by_id(&view, "u1").expect("read").is_none());
    assert!(records::parts(&view, "u1").expect("read").is_empty());
}

// --- other ---------------------------------------------------------------------------------

#[test]
fn data_nodes_are_upserted() {
    let mut h = Harness::new();
    let register = |addr: &str| {
        command::Cmd::RegisterDataNode(RegisterDataNode {
            node: Some(DataNode {
                node_id: 7,
                zone: "z1".into(),
                addr: addr.into(),
                registered_ms: 1,
                ..DataNode::default()
            }),
        })
    };
    h.ok(register("10.0.0.1:8000"));
    h.ok(register("10.0.0.2:8000"));
    let view = h.store.latest().expect("view");
    let nodes = view
        .scan::<DataNode>(keys::DATA_NODE_PREFIX.to_vec(), "data node")
        .expect("scan");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].1.addr, "10.0.0.2:8000");
    drop(view);
    h.rejected(
        command::Cmd::RegisterDataNode(RegisterDataNode { node: None }),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
}

#[test]
fn an_empty_command_is_rejected_but_still_applied() {
    let h = Harness::new();
    let entry = LogEntry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Normal(Command { cmd: None }),
    };
    let results = h.store.apply_entries(vec![entry]).expect("apply");
    assert!(matches!(
        results[0].result,
        Some(command_result::Result::Error(_))
    ));
    assert_eq!(
        h.store.applied_state().expect("state").0.map(|l| l.index),
        Some(1)
    );
}

#[test]
fn inline_blobs_never_become_garbage() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    let mut v = version("bkt", "k", "\"e\"", 0);
    v.parts[0].blob = Some(Blob {
        size: 3,
        storage: Some(blob::Storage::InlineData(b"abc".to_vec())),
    });
    h.ok(command::Cmd::PutVersion(PutVersion {
        version: Some(v),
        precondition: None,
    }));
    h.ok(delete("bkt", "k", None));
    assert!(h.garbage().is_empty());
}

#[test]
fn the_same_commands_give_byte_identical_state() {
    let script = |h: &mut Harness| {
        h.run(create_bucket("bkt", "o"));
        h.run(versioning_cmd("bkt", VersioningState::VersioningEnabled));
        h.run(put("bkt", "a", "\"1\"", 1));
        h.run(put("bkt", "a", "\"2\"", 2));
        h.run(delete("bkt", "a", None));
        h.run(create_upload("bkt", "m", "u"));
        h.run(part("u", 1, MIB, "\"p\"", 3));
        h.run(complete("u", &[(1, "\"p\"")]));
        h.run(create_bucket("bkt", "intruder"));
    };
    let mut first = Harness::new();
    let mut second = Harness::new();
    script(&mut first);
    script(&mut second);
    assert_eq!(first.dump(), second.dump());
}

#[path = "apply_blobs_test.rs"]
mod blobs;
