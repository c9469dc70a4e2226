//! Every bucket and object rule, applied by the real applier to an in-memory state; and one
//! pass through the RocksDB store to show that an entry's writes and its log id land together.

use tessera_core::names::VersionId;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::{command, command_result};

use crate::keys;
use crate::test_support::*;

fn ids(versions: &[tessera_core::object::ObjectVersion]) -> Vec<String> {
    versions
        .iter()
        .map(|v| v.version_id.as_str().to_owned())
        .collect()
}

fn bucket(sim: &Sim, name: &str) -> Option<tessera_core::object::Bucket> {
    crate::records::bucket(&sim.kv, name).expect("bucket")
}

fn no_such_bucket(name: &str) -> MetaRuleError {
    MetaRuleError::NoSuchBucket {
        bucket: name.into(),
    }
}

use tessera_core::meta_error::MetaRuleError;

fn is_invalid(e: &MetaRuleError) -> bool {
    matches!(e, MetaRuleError::InvalidArgument { .. })
}

// --- buckets -------------------------------------------------------------------------------

#[test]
fn create_bucket_reports_who_owns_an_existing_name() {
    let mut sim = Sim::new();
    sim.advance(5);
    sim.ok(create_bucket("photos", "alice"));
    let made = bucket(&sim, "photos").expect("created");
    assert_eq!(made.owner, "alice");
    assert_eq!(made.created_ms, T0 + 5, "creation time is the meta clock");
    assert_eq!(
        sim.rejected(create_bucket("photos", "alice")),
        MetaRuleError::BucketAlreadyOwnedByYou {
            bucket: "photos".into()
        }
    );
    assert_eq!(
        sim.rejected(create_bucket("photos", "bob")),
        MetaRuleError::BucketAlreadyExists {
            bucket: "photos".into()
        }
    );
    assert!(is_invalid(&sim.rejected(create_bucket("Bad_Name", "bob"))));
    assert!(is_invalid(&sim.rejected(command::Cmd::CreateBucket(
        pb::CreateBucket { bucket: None }
    ))));
}

#[test]
fn delete_bucket_refuses_versions_markers_and_uploads() {
    let mut sim = Sim::new();
    let drop = |name: &str| {
        command::Cmd::DeleteBucket(pb::DeleteBucket {
            name: name.to_owned(),
        })
    };
    let not_empty = MetaRuleError::BucketNotEmpty {
        bucket: "bkt".into(),
    };
    assert_eq!(sim.rejected(drop("nope")), no_such_bucket("nope"));
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningEnabled,
    ));

    // A live object.
    let v = stored(sim.ok(put("bkt", "k", "\"e\"", 1, sim.lease_id)));
    assert_eq!(sim.rejected(drop("bkt")), not_empty);
    // Only a delete marker left.
    sim.ok(delete("bkt", "k", Some(&v.version_id)));
    sim.ok(delete("bkt", "k", None));
    assert_eq!(sim.rejected(drop("bkt")), not_empty);
    let marker = sim.versions("bkt", "k").remove(0);
    sim.ok(delete("bkt", "k", Some(marker.version_id.as_str())));
    // An upload in progress.
    sim.ok(create_upload("bkt", "k", "up-1"));
    assert_eq!(sim.rejected(drop("bkt")), not_empty);
    sim.ok(abort("up-1"));

    sim.ok(drop("bkt"));
    assert!(bucket(&sim, "bkt").is_none());
}

#[test]
fn versioning_can_be_enabled_and_suspended_but_not_turned_off() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.rejected(versioning_cmd(
            "bkt",
            pb::VersioningState::VersioningEnabled
        )),
        no_such_bucket("bkt")
    );
    sim.ok(create_bucket("bkt", "o"));
    assert!(is_invalid(&sim.rejected(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningUnversioned
    ))));
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningEnabled,
    ));
    assert_eq!(
        bucket(&sim, "bkt").expect("bucket").versioning,
        tessera_core::object::VersioningState::Enabled
    );
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningSuspended,
    ));
    assert!(is_invalid(&sim.rejected(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningUnversioned
    ))));
    assert!(is_invalid(&sim.rejected(
        command::Cmd::SetBucketVersioning(pb::SetBucketVersioning {
            bucket: "bkt".into(),
            state: 42,
        })
    )));
}

// --- objects -------------------------------------------------------------------------------

#[test]
fn unversioned_puts_replace_the_null_version_and_discard_its_blob() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.rejected(put("bkt", "k", "\"e\"", 1, sim.lease_id)),
        no_such_bucket("bkt")
    );
    sim.ok(create_bucket("bkt", "o"));
    sim.advance(7);
    let (index, result) = sim.run(put("bkt", "k", "\"e1\"", 1, sim.lease_id));
    let first = stored(result);
    assert_eq!(first.version_id, "null");
    assert_eq!(first.seq, index);
    assert_eq!(
        first.last_modified_ms,
        T0 + 7,
        "the meta clock, not the command's"
    );
    let second = stored(sim.ok(put("bkt", "k", "\"e2\"", 2, sim.lease_id)));
    assert_eq!(second.version_id, "null");
    let all = sim.versions("bkt", "k");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].etag, "\"e2\"");
    assert_eq!(sim.garbage(), [1]);
    assert_eq!(
        sim.garbage_records()[0].3,
        T0 + 7,
        "garbage since the clock"
    );
    assert!(is_invalid(&sim.rejected(put(
        "bkt",
        "",
        "\"e\"",
        3,
        sim.lease_id
    ))));
    assert!(is_invalid(&sim.rejected(put(
        "bkt",
        "a\0b",
        "\"e\"",
        3,
        sim.lease_id
    ))));
}

#[test]
fn enabled_puts_keep_every_version_under_ids_made_from_the_log_index() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningEnabled,
    ));
    let (i1, r1) = sim.run(put("bkt", "k", "\"e1\"", 1, sim.lease_id));
    let (i2, r2) = sim.run(put("bkt", "k", "\"e2\"", 2, sim.lease_id));
    assert_eq!(stored(r1).version_id, VersionId::from_seq(i1).as_str());
    assert_eq!(stored(r2).version_id, VersionId::from_seq(i2).as_str());
    let all = sim.versions("bkt", "k");
    assert_eq!(
        ids(&all),
        [
            VersionId::from_seq(i2).as_str(),
            VersionId::from_seq(i1).as_str()
        ],
        "newest first"
    );
    assert!(sim.garbage().is_empty());
}

#[test]
fn suspended_puts_replace_only_the_null_version() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(put("bkt", "k", "\"e0\"", 1, sim.lease_id)); // null version from before versioning
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningEnabled,
    ));
    let (i2, _) = sim.run(put("bkt", "k", "\"e1\"", 2, sim.lease_id));
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningSuspended,
    ));
    sim.ok(put("bkt", "k", "\"e2\"", 3, sim.lease_id));
    let all = sim.versions("bkt", "k");
    assert_eq!(ids(&all), ["null", VersionId::from_seq(i2).as_str()]);
    assert_eq!(all[0].etag, "\"e2\"");
    assert_eq!(
        sim.garbage(),
        [1],
        "the pre-versioning null version was replaced"
    );
    sim.ok(put("bkt", "k", "\"e3\"", 4, sim.lease_id));
    assert_eq!(sim.versions("bkt", "k").len(), 2);
    assert_eq!(sim.garbage(), [1, 3]);
}

fn put_if(key: &str, precondition: pb::WritePrecondition) -> command::Cmd {
    command::Cmd::PutVersion(pb::PutVersion {
        version: Some(version_with("bkt", key, "\"new\"", inline(b"new"))),
        precondition: Some(precondition),
        lease_id: 0,
    })
}

#[test]
fn preconditions_are_checked_against_the_current_version() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningEnabled,
    ));
    let none_match = pb::WritePrecondition {
        if_none_match_any: true,
        if_match: None,
    };
    let matching = |etag: &str| pb::WritePrecondition {
        if_none_match_any: false,
        if_match: Some(etag.to_owned()),
    };
    let no_such_key = MetaRuleError::NoSuchKey {
        bucket: "bkt".into(),
        key: "k".into(),
    };
    let failed = |e: MetaRuleError| matches!(e, MetaRuleError::PreconditionFailed { .. });
    // Absent key: If-None-Match passes, If-Match fails with NoSuchKey (as S3 answers 404).
    assert_eq!(sim.rejected(put_if("k", matching("\"e1\""))), no_such_key);
    sim.ok(put_if("k", none_match.clone()));
    // Present: If-None-Match fails; If-Match passes only with the current ETag.
    assert!(failed(sim.rejected(put_if("k", none_match.clone()))));
    assert!(failed(sim.rejected(put_if("k", matching("\"other\"")))));
    sim.ok(put_if("k", matching("\"new\"")));
    sim.ok(put_if("k", matching("*")));
    // Behind a delete marker the key counts as absent.
    sim.ok(delete("bkt", "k", None));
    assert_eq!(sim.rejected(put_if("k", matching("\"new\""))), no_such_key);
    sim.ok(put_if("k", none_match));
}

#[test]
fn unversioned_delete_removes_the_null_version_and_succeeds_when_absent() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.rejected(delete("bkt", "k", None)),
        no_such_bucket("bkt")
    );
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(put("bkt", "k", "\"e\"", 7, sim.lease_id));
    let r = deletion(sim.ok(delete("bkt", "k", None)));
    assert!(!r.delete_marker);
    assert!(sim.versions("bkt", "k").is_empty());
    assert_eq!(sim.garbage(), [7]);
    let again = deletion(sim.ok(delete("bkt", "k", None)));
    assert!(!again.delete_marker);
    assert_eq!(sim.garbage(), [7]);
    assert!(is_invalid(&sim.rejected(delete("bkt", "", None))));
}

#[test]
fn enabled_delete_adds_markers_and_version_deletes_remove_exactly_one_version() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningEnabled,
    ));
    let v1 = stored(sim.ok(put("bkt", "k", "\"e1\"", 1, sim.lease_id)));
    sim.advance(2_000);
    let (marker_index, r) = sim.run(delete("bkt", "k", None));
    let marker = deletion(r);
    assert!(marker.delete_marker);
    assert_eq!(
        marker.version_id,
        VersionId::from_seq(marker_index).as_str()
    );
    let all = sim.versions("bkt", "k");
    assert_eq!(all.len(), 2);
    assert!(all[0].delete_marker, "the marker is current");
    assert_eq!(all[0].last_modified_ms, T0 + 2_000);

    // Deleting the marker by id brings the object back.
    let r = deletion(sim.ok(delete("bkt", "k", Some(&marker.version_id))));
    assert!(r.delete_marker);
    assert_eq!(r.version_id, marker.version_id);
    assert_eq!(ids(&sim.versions("bkt", "k")), [v1.version_id.as_str()]);
    assert!(sim.garbage().is_empty());

    // A valid id that names nothing is a silent success; a malformed id is not.
    let unknown = VersionId::from_seq(123_456).as_str().to_owned();
    let r = deletion(sim.ok(delete("bkt", "k", Some(&unknown))));
    assert!(!r.delete_marker);
    assert_eq!(sim.versions("bkt", "k").len(), 1);
    assert!(is_invalid(&sim.rejected(delete(
        "bkt",
        "k",
        Some("not-a-version")
    ))));

    let r = deletion(sim.ok(delete("bkt", "k", Some(&v1.version_id))));
    assert!(!r.delete_marker);
    assert!(sim.versions("bkt", "k").is_empty());
    assert_eq!(sim.garbage(), [1]);
}

#[test]
fn suspended_delete_replaces_the_null_version_by_a_null_marker() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningEnabled,
    ));
    let kept = stored(sim.ok(put("bkt", "k", "\"e1\"", 1, sim.lease_id)));
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningSuspended,
    ));
    sim.ok(put("bkt", "k", "\"e2\"", 2, sim.lease_id));
    let r = deletion(sim.ok(delete("bkt", "k", None)));
    assert_eq!(r.version_id, "null");
    assert!(r.delete_marker);
    let all = sim.versions("bkt", "k");
    assert_eq!(ids(&all), ["null", kept.version_id.as_str()]);
    assert!(all[0].delete_marker);
    assert_eq!(sim.garbage(), [2]);
    // Deleting "null" by id removes the marker.
    let r = deletion(sim.ok(delete("bkt", "k", Some("null"))));
    assert!(r.delete_marker);
    assert_eq!(ids(&sim.versions("bkt", "k")), [kept.version_id]);
}

#[test]
fn malformed_blobs_are_refused_before_anything_is_written() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    let lease = sim.lease_id;
    let with = |edit: &dyn Fn(&mut pb::ErasureBlob)| {
        let mut blob = erasure(1, SPREAD);
        if let Some(pb::blob::Storage::Erasure(e)) = &mut blob.storage {
            edit(e);
        }
        put_version(version_with("bkt", "k", "\"e\"", blob), lease)
    };
    // Missing digests, a digest of the wrong length, generation 0, a short data id, a shard
    // index past n, one shard twice on a node, no chunk size, no storage at all.
    let broken: [&dyn Fn(&mut pb::ErasureBlob); 7] = [
        &|e| e.shard_digests.clear(),
        &|e| e.shard_digests[1].truncate(31),
        &|e| e.shards[0].generation = 0,
        &|e| e.data_id.truncate(8),
        &|e| e.shards[2].shard_index = 3,
        &|e| e.shards[1] = e.shards[0],
        &|e| e.chunk_size = 0,
    ];
    for edit in broken {
        let cmd = with(edit);
        assert!(is_invalid(&sim.rejected(cmd)));
    }
    let mut no_storage = version_with("bkt", "k", "\"e\"", inline(b"x"));
    no_storage.parts[0].blob = Some(pb::Blob::default());
    assert!(is_invalid(
        &sim.rejected(put_version(no_storage, sim.lease_id))
    ));
}

#[test]
fn written_blobs_are_stamped_with_the_log_index_that_placed_them() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    let mut blob = erasure(1, SPREAD);
    if let Some(pb::blob::Storage::Erasure(e)) = &mut blob.storage {
        e.placed_at_index = 999_999; // whatever the client says
    }
    let (index, result) = sim.run(put_version(
        version_with("bkt", "k", "\"e\"", blob),
        sim.lease_id,
    ));
    let v = stored(result);
    assert_eq!(erasure_of(v.parts[0].blob.as_ref()).placed_at_index, index);
    let kept = sim.versions("bkt", "k").remove(0);
    assert_eq!(
        kept.parts[0]
            .blob
            .erasure()
            .expect("erasure")
            .placed_at_index,
        index
    );
}

#[test]
fn results_never_carry_inline_bytes_but_the_record_keeps_them() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    let v = stored(sim.ok(put_inline("bkt", "k", "\"e\"")));
    assert_eq!(
        v.parts[0].blob.as_ref().and_then(|b| b.storage.clone()),
        Some(pb::blob::Storage::InlineData(Vec::new()))
    );
    assert_eq!(v.parts[0].blob.as_ref().map(|b| b.size), Some(3));
    let kept = sim.versions("bkt", "k").remove(0);
    assert_eq!(
        kept.parts[0].blob.storage,
        tessera_core::blob::BlobStorage::Inline(b"abc".to_vec())
    );
}

// --- other ---------------------------------------------------------------------------------

fn register(addr: &str, state: pb::NodeState) -> command::Cmd {
    command::Cmd::RegisterDataNode(pb::RegisterDataNode {
        node: Some(pb::DataNode {
            node_id: 7,
            zone: "z1".into(),
            addr: addr.into(),
            registered_ms: 1,
            state: state as i32,
        }),
    })
}

fn set_state(node_id: u64, state: i32) -> command::Cmd {
    command::Cmd::SetDataNodeState(pb::SetDataNodeState { node_id, state })
}

fn node(sim: &Sim) -> tessera_core::object::DataNode {
    crate::records::data_node(&sim.kv, 7)
        .expect("read")
        .expect("registered")
}

#[test]
fn registration_upserts_and_keeps_the_operators_node_state() {
    use tessera_core::object::NodeState;
    let mut sim = Sim::new();
    assert!(is_invalid(
        &sim.rejected(set_state(7, pb::NodeState::Draining as i32))
    ));
    sim.ok(register("10.0.0.1:8000", pb::NodeState::Active));
    sim.ok(set_state(7, pb::NodeState::Draining as i32));
    sim.advance(50);
    // A registration never changes the operator's state, whatever it says.
    sim.ok(register("10.0.0.2:8000", pb::NodeState::Active));
    let n = node(&sim);
    assert_eq!(n.state, NodeState::Draining);
    assert_eq!(n.addr, "10.0.0.2:8000");
    assert_eq!(n.registered_ms, T0 + 50);
    sim.ok(set_state(7, pb::NodeState::Active as i32));
    assert_eq!(node(&sim).state, NodeState::Active);
    assert!(is_invalid(&sim.rejected(set_state(7, 42))));
    assert!(is_invalid(&sim.rejected(command::Cmd::RegisterDataNode(
        pb::RegisterDataNode { node: None }
    ))));
}

#[test]
fn repair_reports_are_kept_per_reporter() {
    let mut sim = Sim::new();
    let report = |reporter: &str, backlog: u64| {
        command::Cmd::PutRepairReport(pb::PutRepairReport {
            report: Some(pb::RepairReport {
                reporter: reporter.into(),
                backlog,
                ..pb::RepairReport::default()
            }),
        })
    };
    sim.ok(report("r1", 5));
    sim.ok(report("r1", 3));
    sim.ok(report("r2", 1));
    assert!(is_invalid(&sim.rejected(report("", 1))));
    let got: Vec<(String, u64)> = crate::query::repair_reports(&sim.kv)
        .expect("reports")
        .into_iter()
        .map(|r| (r.reporter, r.backlog))
        .collect();
    assert_eq!(got, [("r1".to_owned(), 3), ("r2".to_owned(), 1)]);
}

#[test]
fn an_empty_command_is_rejected() {
    let mut sim = Sim::new();
    let before = sim.dump();
    let (_, result) = sim.apply(&pb::Command {
        cmd: None,
        session: None,
        leader_time_ms: sim.now_ms,
    });
    assert!(matches!(
        rule_error(result),
        MetaRuleError::InvalidArgument { .. }
    ));
    assert_eq!(sim.dump(), before);
}

#[test]
fn inline_blobs_never_become_garbage() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(put_inline("bkt", "k", "\"e\""));
    sim.ok(delete("bkt", "k", None));
    assert!(sim.garbage().is_empty());
    assert!(sim.versions("bkt", "k").is_empty());
}

#[test]
fn the_same_commands_give_byte_identical_state() {
    let script = |sim: &mut Sim| {
        let lease = sim.lease_id;
        sim.run(create_bucket("bkt", "o"));
        sim.run(versioning_cmd(
            "bkt",
            pb::VersioningState::VersioningEnabled,
        ));
        sim.run(put("bkt", "a", "\"1\"", 1, lease));
        sim.advance(10);
        sim.run(put("bkt", "a", "\"2\"", 2, lease));
        sim.run(delete("bkt", "a", None));
        sim.run(create_upload("bkt", "m", "u"));
        sim.run(part("u", 1, MIB, "\"p\"", 3, lease));
        sim.run(complete("u", &[(1, "\"p\"")]));
        sim.run(create_bucket("bkt", "intruder"));
    };
    let mut first = Sim::new();
    let mut second = Sim::new();
    script(&mut first);
    script(&mut second);
    assert_eq!(first.dump(), second.dump());
}

#[test]
fn the_clock_only_moves_forward_and_every_record_takes_its_time_from_it() {
    let mut sim = Sim::new();
    assert_eq!(sim.clock(), T0);
    sim.advance(1_000);
    sim.ok(create_bucket("bkt", "o"));
    assert_eq!(sim.clock(), T0 + 1_000);
    // A new leader whose wall clock is behind: the clock stays, records keep the later time.
    sim.now_ms = T0 - 60_000;
    let (_, result) = sim.run(put_inline("bkt", "k", "\"e\""));
    assert_eq!(stored(result).last_modified_ms, T0 + 1_000);
    assert_eq!(sim.clock(), T0 + 1_000);
    // A blank entry carries no stamp and moves nothing.
    sim.apply_blank();
    assert_eq!(sim.clock(), T0 + 1_000);
    sim.now_ms = T0 + 5_000;
    sim.ok(create_upload("bkt", "k", "u"));
    let (_, upload) = crate::records::upload_by_id(&sim.kv, "u")
        .expect("read")
        .expect("open");
    assert_eq!(upload.initiated_ms, T0 + 5_000, "not the command's 10");
    sim.advance(1);
    sim.ok(part("u", 1, MIB, "\"p\"", 9, sim.lease_id));
    let parts = crate::records::parts(&sim.kv, "u").expect("parts");
    assert_eq!(
        parts[0].1.last_modified_ms,
        T0 + 5_001,
        "not the command's 20"
    );
}

#[test]
fn rocksdb_commits_an_entrys_writes_with_its_log_id_and_reports_index_and_clock() {
    use openraft::entry::EntryPayload;
    use openraft::{CommittedLeaderId, LogId};

    use crate::store::MetaStore;
    use crate::types::LogEntry;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = MetaStore::open(dir.path()).expect("open");
    let entry = |index: u64, cmd: command::Cmd, leader_time_ms: i64| LogEntry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(pb::Command {
            cmd: Some(cmd),
            session: Some(pb::CommandSession {
                client_id: vec![9; 16],
                seq: index,
                first_unacked: index,
            }),
            leader_time_ms,
        }),
    };
    let results = store
        .apply_entries(vec![
            entry(1, create_bucket("bkt", "o"), T0),
            entry(2, put_inline("bkt", "k", "\"e\""), T0 + 10),
            LogEntry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), 3),
                payload: EntryPayload::Blank,
            },
        ])
        .expect("apply");
    assert_eq!(results.len(), 3);
    assert!(matches!(
        results[1].result,
        Some(command_result::Result::PutVersion(_))
    ));
    let at = crate::query::applied_clock(&store).expect("applied clock");
    assert_eq!((at.applied_index, at.clock_ms), (3, T0 + 10));
    // Seq 4 applies (replacing the null version); the same seq committed again at index 5,
    // with another body, is answered with the first result and writes no version.
    let again = store
        .apply_entries(vec![entry(4, put_inline("bkt", "k", "\"other\""), T0 + 20)])
        .expect("apply");
    assert!(matches!(
        again[0].result,
        Some(command_result::Result::PutVersion(_))
    ));
    let mut retry = entry(5, put_inline("bkt", "k", "\"third\""), T0 + 30);
    if let EntryPayload::Normal(cmd) = &mut retry.payload
        && let Some(s) = &mut cmd.session
    {
        s.seq = 4;
    }
    let repeated = store.apply_entries(vec![retry]).expect("apply");
    assert_eq!(
        repeated[0], again[0],
        "the first result, applied no second time"
    );
    let view = store.latest().expect("view");
    let current = crate::records::current_version(&view, "bkt", "k")
        .expect("read")
        .expect("present");
    assert_eq!(current.etag, "\"other\"");
    assert!(
        crate::kv::KvRead::get(&view, &keys::session(&[9; 16]))
            .expect("read")
            .is_some()
    );
    drop(view);
    let at = crate::query::applied_clock(&store).expect("applied clock");
    assert_eq!((at.applied_index, at.clock_ms), (5, T0 + 30));
}

#[path = "apply_blobs_test.rs"]
mod blobs;
#[path = "interleave_test.rs"]
mod interleave;
#[path = "apply_keks_test.rs"]
mod keks;
#[path = "apply_leases_test.rs"]
mod leases;
#[path = "apply_uploads_test.rs"]
mod uploads;
