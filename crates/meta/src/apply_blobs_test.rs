//! The data-id index, deletion marks and the repair commands, applied through the state machine.

use super::*;
use tessera_proto::meta::v1::{
    BlobOwner, ClaimShards, NodeState, ReleaseShards, RepairReport, SetDataNodeState,
    ShardPlacement, ShardRef, UpdatePlacement,
};

/// Shard copies as (shard index, node id).
type Copies<'a> = &'a [(u32, u64)];

/// A garbage record as tests look at it: key, data id (its first byte), copies, since.
type GarbageRow = (Vec<u8>, u8, Vec<(u32, u64)>, i64);

/// Blob `id` (2 data + 1 parity shards) placed on `copies`.
fn placed(id: u8, copies: Copies<'_>) -> Blob {
    let mut blob = erasure(id);
    if let Some(blob::Storage::Erasure(e)) = &mut blob.storage {
        e.shards = shards(copies);
    }
    blob
}

fn shards(copies: Copies<'_>) -> Vec<ShardPlacement> {
    copies
        .iter()
        .map(|(shard_index, node_id)| ShardPlacement {
            shard_index: *shard_index,
            node_id: *node_id,
        })
        .collect()
}

const SPREAD: &[(u32, u64)] = &[(0, 1), (1, 2), (2, 3)];

fn put_placed(key: &str, id: u8, copies: Copies<'_>) -> command::Cmd {
    let mut v = version("bkt", key, "\"e\"", id);
    v.parts[0].blob = Some(placed(id, copies));
    command::Cmd::PutVersion(PutVersion {
        version: Some(v),
        precondition: None,
    })
}

fn part_placed(upload_id: &str, number: u32, id: u8, copies: Copies<'_>) -> command::Cmd {
    let mut cmd = part(upload_id, number, 5 * MIB, &format!("\"p{number}\""), id);
    if let command::Cmd::PutPart(p) = &mut cmd
        && let Some(part) = &mut p.part
    {
        part.blob = Some(placed(id, copies));
    }
    cmd
}

fn update(id: u8, expected: Copies<'_>, new: Copies<'_>, degraded: bool) -> command::Cmd {
    command::Cmd::UpdatePlacement(UpdatePlacement {
        data_id: vec![id; 16],
        expected: shards(expected),
        shards: shards(new),
        degraded,
        now_ms: 77,
    })
}

fn shard_ref(id: u8, shard_index: u32, node_id: u64) -> ShardRef {
    ShardRef {
        data_id: vec![id; 16],
        shard_index,
        node_id,
    }
}

fn claim(refs: &[ShardRef]) -> command::Cmd {
    command::Cmd::ClaimShards(ClaimShards {
        shards: refs.to_vec(),
    })
}

fn claimed(result: command_result::Result) -> Vec<ShardRef> {
    match result {
        command_result::Result::ClaimShards(r) => r.claimed,
        other => panic!("not a claim result: {other:?}"),
    }
}

fn release(refs: &[ShardRef], garbage_keys: Vec<Vec<u8>>) -> command::Cmd {
    command::Cmd::ReleaseShards(ReleaseShards {
        shards: refs.to_vec(),
        garbage_keys,
    })
}

impl Harness {
    fn owner(&self, id: u8) -> Option<BlobOwner> {
        let view = self.store.latest().expect("view");
        records::blob_owner(&view, &[id; 16]).expect("owner")
    }

    /// The current placement of blob `id` in its owning record.
    fn placement(&self, id: u8) -> Option<(Vec<(u32, u64)>, bool)> {
        let view = self.store.latest().expect("view");
        let owned = records::owned_blob(&view, &[id; 16]).expect("read")?;
        let e = owned.erasure().expect("erasure");
        Some((
            e.shards
                .iter()
                .map(|s| (s.shard_index, s.node_id))
                .collect(),
            e.degraded,
        ))
    }

    fn marked(&self, id: u8, shard_index: u32, node_id: u64) -> bool {
        let view = self.store.latest().expect("view");
        view.get(&keys::deletion_mark(&[id; 16], shard_index, node_id))
            .expect("read")
            .is_some()
    }

    /// Every garbage record.
    fn garbage_records(&self) -> Vec<GarbageRow> {
        let view = self.store.latest().expect("view");
        view.scan::<Garbage>(keys::GARBAGE_PREFIX.to_vec(), "garbage")
            .expect("scan")
            .into_iter()
            .map(|(k, g)| {
                let e = records::erasure_of(g.blob.as_ref())
                    .expect("erasure")
                    .clone();
                let copies = e
                    .shards
                    .iter()
                    .map(|s| (s.shard_index, s.node_id))
                    .collect();
                (k, e.data_id[0], copies, g.since_ms)
            })
            .collect()
    }
}

fn owned_by(h: &Harness, id: u8) -> (Vec<u8>, u32) {
    let owner = h.owner(id).expect("indexed");
    (owner.record_key, owner.part_index)
}

// --- the data-id index ---------------------------------------------------------------------

#[test]
fn the_index_follows_versions_through_put_overwrite_and_delete() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    let first = stored(h.ok(put("bkt", "k", "\"1\"", 1)));
    let key1 = keys::object_version("bkt", "k", first.seq);
    assert_eq!(owned_by(&h, 1), (key1, 0));

    // Overwriting the null version moves nothing: the old blob loses its entry and is garbage.
    let second = stored(h.ok(put("bkt", "k", "\"2\"", 2)));
    assert_eq!(h.owner(1), None);
    assert_eq!(
        owned_by(&h, 2),
        (keys::object_version("bkt", "k", second.seq), 0)
    );
    assert_eq!(h.garbage(), [1]);
    h.ok(delete("bkt", "k", None));
    assert_eq!(h.owner(2), None);
    assert_eq!(h.garbage(), [1, 2]);

    // Versioned: every version keeps its entry until it is deleted itself.
    h.ok(versioning_cmd("bkt", VersioningState::VersioningEnabled));
    let v3 = stored(h.ok(put("bkt", "v", "\"3\"", 3)));
    let v4 = stored(h.ok(put("bkt", "v", "\"4\"", 4)));
    h.ok(delete("bkt", "v", None));
    assert!(h.owner(3).is_some() && h.owner(4).is_some());
    h.ok(delete("bkt", "v", Some(&v3.version_id)));
    assert_eq!(h.owner(3), None);
    assert_eq!(
        owned_by(&h, 4),
        (keys::object_version("bkt", "v", v4.seq), 0)
    );

    // One entry per erasure-coded part, at its index; inline parts have none.
    let mut multi = version("bkt", "m", "\"m\"", 5);
    let mut inline = multi.parts[0].clone();
    inline.blob = Some(Blob {
        size: 3,
        storage: Some(blob::Storage::InlineData(b"abc".to_vec())),
    });
    let mut sixth = multi.parts[0].clone();
    sixth.blob = Some(erasure(6));
    multi.parts = vec![inline, multi.parts[0].clone(), sixth];
    let m = stored(h.ok(command::Cmd::PutVersion(PutVersion {
        version: Some(multi),
        precondition: None,
    })));
    let mkey = keys::object_version("bkt", "m", m.seq);
    assert_eq!(owned_by(&h, 5), (mkey.clone(), 1));
    assert_eq!(owned_by(&h, 6), (mkey, 2));
    let view = h.store.latest().expect("view");
    let entries = view
        .scan::<BlobOwner>(keys::DATA_INDEX_PREFIX.to_vec(), "blob owner")
        .expect("scan");
    assert_eq!(entries.len(), 3, "blobs 4, 5 and 6 only");
}

#[test]
fn the_index_follows_parts_through_replace_complete_and_abort() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(create_upload("bkt", "k", "u1"));
    h.ok(part_placed("u1", 1, 1, SPREAD));
    assert_eq!(owned_by(&h, 1), (keys::part("u1", 1), 0));
    h.ok(part_placed("u1", 1, 2, SPREAD));
    assert_eq!(h.owner(1), None);
    assert_eq!(owned_by(&h, 2), (keys::part("u1", 1), 0));
    h.ok(part_placed("u1", 2, 3, SPREAD));
    h.ok(part_placed("u1", 3, 4, SPREAD));
    assert_eq!(h.garbage(), [1]);

    // Repair moves a shard of part 2 after the gateway read the parts.
    h.ok(update(3, SPREAD, &[(0, 1), (1, 2), (2, 9)], false));

    // The gateway builds the version from parts 1 and 2 as it read them; part 3 is unused.
    let mut cmd = complete("u1", &[(1, "\"p1\""), (2, "\"p2\"")]);
    if let command::Cmd::CompleteUpload(c) = &mut cmd
        && let Some(v) = &mut c.version
    {
        v.parts = [(1, 2), (2, 3)]
            .into_iter()
            .map(|(number, id)| ObjectPart {
                part_number: number,
                size: 5 * MIB,
                etag: format!("\"p{number}\""),
                blob: Some(placed(id, SPREAD)),
                checksums: Vec::new(),
            })
            .collect();
    }
    let v = stored(h.ok(cmd));
    let vkey = keys::object_version("bkt", "k", v.seq);
    assert_eq!(owned_by(&h, 2), (vkey.clone(), 0));
    assert_eq!(owned_by(&h, 3), (vkey, 1));
    assert_eq!(h.owner(4), None);
    assert_eq!(h.garbage(), [1, 3, 4], "the moved copy of 3, and unused 4");
    // The version took the part's current placement, not the gateway's stale copy.
    assert_eq!(h.placement(3), Some((vec![(0, 1), (1, 2), (2, 9)], false)));

    h.ok(create_upload("bkt", "k", "u2"));
    h.ok(part_placed("u2", 1, 5, SPREAD));
    h.ok(abort("u2"));
    assert_eq!(h.owner(5), None);
    assert_eq!(h.garbage(), [1, 3, 4, 5]);
}

#[test]
fn a_blob_belongs_to_one_record() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    // A retried unversioned put replaces the null version with the same blob: the blob stays
    // referenced, so it is not garbage.
    h.ok(put("bkt", "k", "\"1\"", 1));
    let again = stored(h.ok(put("bkt", "k", "\"1\"", 1)));
    assert_eq!(
        owned_by(&h, 1),
        (keys::object_version("bkt", "k", again.seq), 0)
    );
    assert!(h.garbage().is_empty());
    // Another key cannot take it, nor a second version of a versioned key.
    h.rejected(
        put("bkt", "other", "\"1\"", 1),
        MetaErrorCode::MetaErrorConflict,
    );
    h.ok(versioning_cmd("bkt", VersioningState::VersioningEnabled));
    h.rejected(
        put("bkt", "k", "\"1\"", 1),
        MetaErrorCode::MetaErrorConflict,
    );
    // Nor an uploaded part, nor two parts of one version.
    h.ok(create_upload("bkt", "k", "u1"));
    h.rejected(
        part("u1", 1, MIB, "\"p\"", 1),
        MetaErrorCode::MetaErrorConflict,
    );
    let mut twice = version("bkt", "t", "\"t\"", 2);
    twice.parts.push(twice.parts[0].clone());
    h.rejected(
        command::Cmd::PutVersion(PutVersion {
            version: Some(twice),
            precondition: None,
        }),
        MetaErrorCode::MetaErrorConflict,
    );
    // Data ids are 16 bytes.
    let mut short = version("bkt", "s", "\"s\"", 3);
    if let Some(blob::Storage::Erasure(e)) =
        &mut short.parts[0].blob.as_mut().expect("blob").storage
    {
        e.data_id.truncate(8);
    }
    h.rejected(
        command::Cmd::PutVersion(PutVersion {
            version: Some(short),
            precondition: None,
        }),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
}

// --- placement updates ---------------------------------------------------------------------

#[test]
fn update_placement_swaps_copies_and_turns_removed_ones_into_garbage() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(put_placed("k", 1, SPREAD));
    // Expected given in another order still matches; the new list is stored sorted.
    h.ok(update(
        1,
        &[(2, 3), (0, 1), (1, 2)],
        &[(2, 4), (1, 2), (0, 1)],
        true,
    ));
    assert_eq!(h.placement(1), Some((vec![(0, 1), (1, 2), (2, 4)], true)));
    let garbage = h.garbage_records();
    assert_eq!(garbage.len(), 1);
    assert_eq!(
        (garbage[0].1, garbage[0].2.clone(), garbage[0].3),
        (1, vec![(2, 3)], 77)
    );
    // Adding a copy without removing one makes no garbage; the index is untouched.
    let owner = h.owner(1);
    h.ok(update(
        1,
        &[(0, 1), (1, 2), (2, 4)],
        &[(0, 1), (1, 2), (2, 4), (2, 5)],
        false,
    ));
    assert_eq!(h.garbage_records().len(), 1);
    assert_eq!(h.owner(1), owner);
    assert_eq!(
        h.placement(1),
        Some((vec![(0, 1), (1, 2), (2, 4), (2, 5)], false))
    );
}

#[test]
fn update_placement_refuses_stale_expectations_and_bad_placements() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(put_placed("k", 1, SPREAD));
    // The placement changed since the caller read it.
    h.rejected(
        update(1, &[(0, 1), (1, 2)], &[(0, 1), (1, 2), (2, 4)], false),
        MetaErrorCode::MetaErrorConflict,
    );
    h.rejected(
        update(1, &[(0, 1), (1, 2), (2, 9)], SPREAD, false),
        MetaErrorCode::MetaErrorConflict,
    );
    // No record holds blob 2 (any more).
    h.rejected(
        update(2, SPREAD, SPREAD, false),
        MetaErrorCode::MetaErrorNoSuchKey,
    );
    h.ok(put_placed("k", 2, SPREAD));
    h.rejected(
        update(1, SPREAD, SPREAD, false),
        MetaErrorCode::MetaErrorNoSuchKey,
    );
    // Shard 3 does not exist in a 2+1 blob; a copy listed twice is a caller bug.
    h.rejected(
        update(2, SPREAD, &[(0, 1), (1, 2), (3, 4)], false),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.rejected(
        update(2, SPREAD, &[(0, 1), (1, 2), (2, 3), (2, 3)], false),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    // A copy garbage collection claimed cannot be added back; a kept one is fine.
    claimed(h.ok(claim(&[shard_ref(2, 2, 4)])));
    h.rejected(
        update(2, SPREAD, &[(0, 1), (1, 2), (2, 4)], false),
        MetaErrorCode::MetaErrorConflict,
    );
    h.ok(update(2, SPREAD, &[(0, 1), (1, 2), (2, 5)], false));
}

#[test]
fn update_placement_works_on_uploaded_parts() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(create_upload("bkt", "k", "u1"));
    h.ok(part_placed("u1", 1, 1, SPREAD));
    h.ok(update(1, SPREAD, &[(0, 1), (1, 5), (2, 3)], false));
    assert_eq!(h.placement(1), Some((vec![(0, 1), (1, 5), (2, 3)], false)));
    let view = h.store.latest().expect("view");
    let parts = records::parts(&view, "u1").expect("parts");
    assert_eq!(parts.len(), 1);
    assert_eq!(h.garbage_records()[0].2, [(1, 2)]);
}

// --- garbage collection --------------------------------------------------------------------

#[test]
fn claims_skip_referenced_copies_and_releases_clear_marks_and_records() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(put_placed("k", 1, SPREAD));
    h.ok(put_placed("k", 2, SPREAD));
    let refs = [
        shard_ref(1, 0, 1),
        shard_ref(2, 0, 1),
        shard_ref(2, 0, 9),
        shard_ref(7, 1, 1),
        shard_ref(1, 0, 1),
    ];
    let granted = claimed(h.ok(claim(&refs)));
    // Blob 1 is garbage now (its version was replaced); 2 is referenced on node 1 but not
    // on 9; nothing references blob 7. Duplicates count once.
    assert_eq!(
        granted,
        [shard_ref(1, 0, 1), shard_ref(2, 0, 9), shard_ref(7, 1, 1)]
    );
    assert!(h.marked(1, 0, 1) && h.marked(2, 0, 9) && h.marked(7, 1, 1));
    assert!(!h.marked(2, 0, 1));
    // Claiming again is idempotent.
    assert_eq!(claimed(h.ok(claim(&granted))), granted);

    let garbage_key = h.garbage_records()[0].0.clone();
    h.rejected(
        release(&granted, vec![keys::bucket("bkt")]),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.ok(release(&granted, vec![garbage_key]));
    assert!(!h.marked(1, 0, 1) && !h.marked(2, 0, 9) && !h.marked(7, 1, 1));
    assert!(h.garbage_records().is_empty());
    h.rejected(
        claim(&[ShardRef {
            data_id: vec![1; 3],
            shard_index: 0,
            node_id: 1,
        }]),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
}

#[test]
fn writes_refuse_copies_claimed_for_deletion() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "o"));
    h.ok(create_upload("bkt", "k", "u1"));
    claimed(h.ok(claim(&[shard_ref(8, 1, 2)])));
    h.rejected(put_placed("k", 8, SPREAD), MetaErrorCode::MetaErrorConflict);
    h.rejected(
        part_placed("u1", 1, 8, SPREAD),
        MetaErrorCode::MetaErrorConflict,
    );
    // The same blob elsewhere is fine, and so is the copy once released.
    h.ok(put_placed("k", 8, &[(0, 1), (1, 3), (2, 4)]));
    h.ok(release(&[shard_ref(8, 1, 2)], Vec::new()));
    h.ok(part_placed("u1", 1, 9, SPREAD));

    // CompleteUpload checks the version's blobs too.
    claimed(h.ok(claim(&[shard_ref(10, 0, 1)])));
    let mut cmd = complete("u1", &[(1, "\"p1\"")]);
    if let command::Cmd::CompleteUpload(c) = &mut cmd
        && let Some(v) = &mut c.version
    {
        v.parts = vec![ObjectPart {
            part_number: 1,
            size: 5 * MIB,
            etag: "\"p1\"".into(),
            blob: Some(placed(10, SPREAD)),
            checksums: Vec::new(),
        }];
    }
    h.rejected(cmd, MetaErrorCode::MetaErrorConflict);
}

// --- cluster -------------------------------------------------------------------------------

fn register(addr: &str) -> command::Cmd {
    command::Cmd::RegisterDataNode(RegisterDataNode {
        node: Some(DataNode {
            node_id: 7,
            zone: "z1".into(),
            addr: addr.into(),
            registered_ms: 1,
            state: NodeState::Active as i32,
        }),
    })
}

fn set_state(node_id: u64, state: NodeState) -> command::Cmd {
    command::Cmd::SetDataNodeState(SetDataNodeState {
        node_id,
        state: state as i32,
    })
}

fn node(h: &Harness, node_id: u64) -> DataNode {
    let view = h.store.latest().expect("view");
    view.get_pb(&keys::data_node(node_id), "data node")
        .expect("read")
        .expect("registered")
}

#[test]
fn registration_keeps_the_operators_node_state() {
    let mut h = Harness::new();
    h.rejected(
        set_state(7, NodeState::Draining),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
    h.ok(register("10.0.0.1:8000"));
    h.ok(set_state(7, NodeState::Draining));
    h.ok(register("10.0.0.2:8000"));
    let n = node(&h, 7);
    assert_eq!(n.state, NodeState::Draining as i32);
    assert_eq!(n.addr, "10.0.0.2:8000");
    h.ok(set_state(7, NodeState::Active));
    assert_eq!(node(&h, 7).state, NodeState::Active as i32);
    h.rejected(
        command::Cmd::SetDataNodeState(SetDataNodeState {
            node_id: 7,
            state: 42,
        }),
        MetaErrorCode::MetaErrorInvalidArgument,
    );
}

#[test]
fn repair_reports_are_kept_per_reporter() {
    let mut h = Harness::new();
    let report = |reporter: &str, backlog: u64| {
        command::Cmd::PutRepairReport(PutRepairReport {
            report: Some(RepairReport {
                reporter: reporter.into(),
                backlog,
                ..RepairReport::default()
            }),
        })
    };
    h.ok(report("r1", 5));
    h.ok(report("r1", 3));
    h.ok(report("r2", 1));
    h.rejected(report("", 1), MetaErrorCode::MetaErrorInvalidArgument);
    let view = h.store.latest().expect("view");
    let stored = view
        .scan::<RepairReport>(keys::REPAIR_REPORT_PREFIX.to_vec(), "repair report")
        .expect("scan");
    let got: Vec<(String, u64)> = stored
        .into_iter()
        .map(|(_, r)| (r.reporter, r.backlog))
        .collect();
    assert_eq!(got, [("r1".to_owned(), 3), ("r2".to_owned(), 1)]);
}

#[test]
fn a_format_1_store_gets_its_data_id_index_when_opened() {
    let mut h = Harness::new();
    h.ok(create_bucket("bkt", "me"));
    h.ok(put_placed("k", 7, &[(0, 1), (1, 2), (2, 3)]));
    let before = owned_by(&h, 7);
    // Make it look like a store written before the index existed.
    {
        let sm = h.store.cf(crate::store::CF_SM).expect("sm");
        let sm_meta = h.store.cf(crate::store::CF_SM_META).expect("sm_meta");
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_cf(sm, keys::data_index(&[7; 16]));
        batch.put_cf(
            sm_meta,
            crate::store::KEY_FORMAT,
            tessera_proto::raft::v1::StoreFormat { version: 1 }.encode_to_vec(),
        );
        h.store.write(batch, true).expect("write");
    }
    assert!(h.owner(7).is_none());
    let Harness { _dir, store, .. } = h;
    drop(store);
    let reopened = MetaStore::open(_dir.path()).expect("reopen migrates");
    let h = Harness {
        _dir,
        store: reopened,
        next_index: 100,
    };
    assert_eq!(owned_by(&h, 7), before);
}
