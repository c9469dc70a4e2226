//! The data-id index, placement updates with generations, deletion marks and claims.

use tessera_core::lease::{MAX_GC_GRACE_MS, MIN_GC_GRACE_MS};

use super::*;

const GRACE: u64 = MIN_GC_GRACE_MS;
const GRACE_MS: i64 = MIN_GC_GRACE_MS as i64;

impl Sim {
    fn owner(&self, id: u8) -> Option<pb::BlobOwner> {
        crate::records::blob_owner(&self.kv, &data_id(id)).expect("owner")
    }

    /// The current placement of blob `id` in its owning record, with its degraded flag and
    /// placement index.
    fn placement(&self, id: u8) -> Option<(Vec<CopySpec>, bool, u64)> {
        let owned = crate::records::owned_blob(&self.kv, &data_id(id)).expect("read")?;
        let e = owned.erasure().expect("erasure");
        Some((
            e.shards
                .iter()
                .map(|c| (c.shard_index, c.node.0, c.generation.get()))
                .collect(),
            e.degraded,
            e.placed_at_index,
        ))
    }

    fn copies_of(&self, id: u8) -> Vec<CopySpec> {
        self.placement(id).expect("owned").0
    }

    fn marked(&self, id: u8, (index, node, generation): CopySpec) -> Option<String> {
        let key = keys::deletion_mark(&[id; 16], index, node, generation);
        crate::kv::KvReadExt::get_pb::<pb::DeletionMark>(&self.kv, &key, "mark")
            .expect("read")
            .map(|m| m.claimer)
    }
}

fn data_id(id: u8) -> tessera_core::names::DataId {
    tessera_core::names::DataId::from_bytes([id; 16])
}

fn owned_by(sim: &Sim, id: u8) -> (Vec<u8>, u32) {
    let owner = sim.owner(id).expect("indexed");
    (owner.record_key, owner.part_index)
}

fn put_placed(sim: &Sim, key: &str, id: u8, copies: &[CopySpec]) -> command::Cmd {
    put_version(
        version_with("bkt", key, "\"e\"", erasure(id, copies)),
        sim.lease_id,
    )
}

fn conflict(e: MetaRuleError) -> bool {
    matches!(e, MetaRuleError::Conflict { .. })
}

// --- the data-id index ---------------------------------------------------------------------

#[test]
fn the_index_follows_versions_through_put_overwrite_and_delete() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    let first = stored(sim.ok(put("bkt", "k", "\"1\"", 1, lease)));
    assert_eq!(
        owned_by(&sim, 1),
        (keys::object_version("bkt", "k", first.seq), 0)
    );

    // Overwriting the null version: the old blob loses its entry and is garbage.
    let second = stored(sim.ok(put("bkt", "k", "\"2\"", 2, lease)));
    assert_eq!(sim.owner(1), None);
    assert_eq!(
        owned_by(&sim, 2),
        (keys::object_version("bkt", "k", second.seq), 0)
    );
    assert_eq!(sim.garbage(), [1]);
    sim.ok(delete("bkt", "k", None));
    assert_eq!(sim.owner(2), None);
    assert_eq!(sim.garbage(), [1, 2]);

    // Versioned: every version keeps its entry until it is deleted itself.
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningEnabled,
    ));
    let v3 = stored(sim.ok(put("bkt", "v", "\"3\"", 3, lease)));
    let v4 = stored(sim.ok(put("bkt", "v", "\"4\"", 4, lease)));
    sim.ok(delete("bkt", "v", None));
    assert!(sim.owner(3).is_some() && sim.owner(4).is_some());
    sim.ok(delete("bkt", "v", Some(&v3.version_id)));
    assert_eq!(sim.owner(3), None);
    assert_eq!(
        owned_by(&sim, 4),
        (keys::object_version("bkt", "v", v4.seq), 0)
    );

    // One entry per erasure-coded part, at its index; inline parts have none.
    let mut multi = version_with("bkt", "m", "\"m\"", erasure(5, SPREAD));
    let mut inline_part = multi.parts[0].clone();
    inline_part.blob = Some(inline(b"abc"));
    let mut sixth = multi.parts[0].clone();
    sixth.blob = Some(erasure(6, SPREAD));
    multi.parts = vec![inline_part, multi.parts[0].clone(), sixth];
    let m = stored(sim.ok(put_version(multi, lease)));
    let mkey = keys::object_version("bkt", "m", m.seq);
    assert_eq!(owned_by(&sim, 5), (mkey.clone(), 1));
    assert_eq!(owned_by(&sim, 6), (mkey, 2));
    let entries =
        crate::kv::KvReadExt::scan_pb::<pb::BlobOwner>(&sim.kv, keys::DATA_INDEX_PREFIX, "owner")
            .expect("scan");
    assert_eq!(entries.len(), 3, "blobs 4, 5 and 6 only");
}

#[test]
fn the_index_follows_parts_through_replace_complete_and_abort() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(create_upload("bkt", "k", "u1"));
    sim.ok(part("u1", 1, 5 * MIB, "\"p1\"", 1, lease));
    assert_eq!(owned_by(&sim, 1), (keys::part("u1", 1), 0));
    sim.ok(part("u1", 1, 5 * MIB, "\"p1\"", 2, lease));
    assert_eq!(sim.owner(1), None);
    assert_eq!(owned_by(&sim, 2), (keys::part("u1", 1), 0));
    sim.ok(part("u1", 2, 5 * MIB, "\"p2\"", 3, lease));
    sim.ok(part("u1", 3, 5 * MIB, "\"p3\"", 4, lease));
    assert_eq!(sim.garbage(), [1]);

    // Repair moves a shard of part 2 after the gateway read the parts.
    let moved = [(0, 1, 1), (1, 2, 1), (2, 9, 5)];
    sim.ok(update(3, SPREAD, &moved, false, lease));

    // The gateway's stale copy of the parts does not matter: the state machine builds the
    // version from the stored parts.
    let mut cmd = complete("u1", &[(1, "\"p1\""), (2, "\"p2\"")]);
    if let command::Cmd::CompleteUpload(c) = &mut cmd
        && let Some(v) = &mut c.version
    {
        v.parts = vec![pb::ObjectPart {
            part_number: 2,
            blob: Some(erasure(3, SPREAD)),
            ..pb::ObjectPart::default()
        }];
    }
    let v = stored(sim.ok(cmd));
    let vkey = keys::object_version("bkt", "k", v.seq);
    assert_eq!(owned_by(&sim, 2), (vkey.clone(), 0));
    assert_eq!(owned_by(&sim, 3), (vkey, 1));
    assert_eq!(sim.owner(4), None);
    assert_eq!(
        sim.garbage(),
        [1, 3, 4],
        "the moved copy of 3, and unused 4"
    );
    assert_eq!(sim.copies_of(3), moved);

    sim.ok(create_upload("bkt", "k", "u2"));
    sim.ok(part("u2", 1, MIB, "\"p1\"", 5, lease));
    sim.ok(abort("u2"));
    assert_eq!(sim.owner(5), None);
    assert_eq!(sim.garbage(), [1, 3, 4, 5]);
}

#[test]
fn a_blob_belongs_to_one_record() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    // An unversioned put naming the blob of the null version it replaces keeps that blob
    // referenced, so it is not garbage.
    sim.ok(put("bkt", "k", "\"1\"", 1, lease));
    let again = stored(sim.ok(put("bkt", "k", "\"1\"", 1, lease)));
    assert_eq!(
        owned_by(&sim, 1),
        (keys::object_version("bkt", "k", again.seq), 0)
    );
    assert!(sim.garbage().is_empty());
    // Another key cannot take it, nor a second version of a versioned key.
    assert!(conflict(
        sim.rejected(put("bkt", "other", "\"1\"", 1, lease))
    ));
    sim.ok(versioning_cmd(
        "bkt",
        pb::VersioningState::VersioningEnabled,
    ));
    assert!(conflict(sim.rejected(put("bkt", "k", "\"1\"", 1, lease))));
    // Nor an uploaded part, nor two parts of one version.
    sim.ok(create_upload("bkt", "k", "u1"));
    assert!(conflict(
        sim.rejected(part("u1", 1, MIB, "\"p\"", 1, lease))
    ));
    let mut twice = version_with("bkt", "t", "\"t\"", erasure(2, SPREAD));
    twice.parts.push(twice.parts[0].clone());
    assert!(conflict(sim.rejected(put_version(twice, lease))));
}

// --- placement updates ---------------------------------------------------------------------

#[test]
fn update_placement_swaps_exact_copies_and_turns_removed_ones_into_garbage() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(put_placed(&sim, "k", 1, SPREAD));
    // Expected given in another order still matches; the new list is stored sorted; a
    // rewrite of shard 2 on the same node is a new generation, the old one is garbage.
    sim.advance(77);
    let (index, _) = sim.run(update(
        1,
        &[(2, 3, 1), (0, 1, 1), (1, 2, 1)],
        &[(2, 3, 8), (1, 2, 1), (0, 1, 1)],
        true,
        lease,
    ));
    assert_eq!(
        sim.placement(1),
        Some((vec![(0, 1, 1), (1, 2, 1), (2, 3, 8)], true, index))
    );
    let garbage = sim.garbage_records();
    assert_eq!(garbage.len(), 1);
    assert_eq!(
        (garbage[0].1, garbage[0].2.clone(), garbage[0].3),
        (1, vec![(2, 3, 1)], T0 + 77)
    );
    // Adding a copy without removing one makes no garbage; the index is untouched.
    let owner = sim.owner(1);
    sim.ok(update(
        1,
        &[(0, 1, 1), (1, 2, 1), (2, 3, 8)],
        &[(0, 1, 1), (1, 2, 1), (2, 3, 8), (2, 4, 3)],
        false,
        lease,
    ));
    assert_eq!(sim.garbage_records().len(), 1);
    assert_eq!(sim.owner(1), owner);
    assert_eq!(
        sim.copies_of(1),
        [(0, 1, 1), (1, 2, 1), (2, 3, 8), (2, 4, 3)]
    );
}

#[test]
fn update_placement_is_a_compare_and_set_on_generations_too() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(put_placed(&sim, "k", 1, SPREAD));
    // Same (index, node) pairs, another generation: the placement changed since the read.
    assert!(conflict(sim.rejected(update(
        1,
        &[(0, 1, 1), (1, 2, 1), (2, 3, 2)],
        &[(0, 1, 1), (1, 2, 1), (2, 4, 1)],
        false,
        lease,
    ))));
    // A subset or a superset is no match either.
    assert!(conflict(sim.rejected(update(
        1,
        &[(0, 1, 1), (1, 2, 1)],
        SPREAD,
        false,
        lease
    ))));
    // No record holds blob 2 (any more).
    assert!(conflict(
        sim.rejected(update(2, SPREAD, SPREAD, false, lease))
    ));
    sim.ok(put_placed(&sim, "k", 2, SPREAD));
    assert!(conflict(
        sim.rejected(update(1, SPREAD, SPREAD, false, lease))
    ));
    // Shard 3 does not exist in a 2+1 blob; a copy listed twice, two generations of one
    // shard on one node, and generation 0 are caller bugs.
    for bad in [
        vec![(0, 1, 1), (1, 2, 1), (3, 4, 1)],
        vec![(0, 1, 1), (1, 2, 1), (2, 3, 1), (2, 3, 1)],
        vec![(0, 1, 1), (1, 2, 1), (2, 3, 1), (2, 3, 2)],
        vec![(0, 1, 1), (1, 2, 1), (2, 4, 0)],
    ] {
        assert!(is_invalid(
            &sim.rejected(update(2, SPREAD, &bad, false, lease))
        ));
    }
    assert!(is_invalid(&sim.rejected(command::Cmd::UpdatePlacement(
        pb::UpdatePlacement {
            data_id: vec![2; 8],
            ..pb::UpdatePlacement::default()
        }
    ))));
}

#[test]
fn update_placement_needs_a_live_lease_only_to_add_copies() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(put_placed(&sim, "k", 1, SPREAD));
    let grown = [(0, 1, 1), (1, 2, 1), (2, 3, 1), (2, 4, 7)];
    assert_eq!(
        sim.rejected(update(1, SPREAD, &grown, false, 0)),
        MetaRuleError::LeaseExpired { lease_id: 0 }
    );
    assert_eq!(
        sim.rejected(update(1, SPREAD, &grown, false, 12_345)),
        MetaRuleError::LeaseExpired { lease_id: 12_345 }
    );
    sim.ok(update(1, SPREAD, &grown, false, lease));
    // Dropping a copy adds nothing: no lease needed.
    sim.ok(update(1, &grown, SPREAD, false, 0));
    assert_eq!(sim.copies_of(1), SPREAD);
}

#[test]
fn update_placement_works_on_uploaded_parts() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(create_upload("bkt", "k", "u1"));
    sim.ok(part("u1", 1, MIB, "\"p1\"", 1, lease));
    let (index, _) = sim.run(update(
        1,
        SPREAD,
        &[(0, 1, 1), (1, 5, 2), (2, 3, 1)],
        false,
        lease,
    ));
    assert_eq!(
        sim.placement(1),
        Some((vec![(0, 1, 1), (1, 5, 2), (2, 3, 1)], false, index))
    );
    let parts = crate::records::parts(&sim.kv, "u1").expect("parts");
    assert_eq!(parts.len(), 1);
    assert_eq!(sim.garbage_records()[0].2, [(1, 2, 1)]);
}

// --- deletion marks ------------------------------------------------------------------------

#[test]
fn placement_changes_refuse_marked_generations_but_not_other_generations() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(create_upload("bkt", "k", "u1"));
    // Orphan files of blob 8 (lease 0: unknown, long ended) are claimed.
    let orphan = shard_ref(8, (1, 2, 1), 0);
    assert_eq!(
        claimed(sim.ok(claim("gc", GRACE, vec![orphan.clone()], &[]))),
        vec![orphan.clone()]
    );
    assert_eq!(sim.marked(8, (1, 2, 1)).as_deref(), Some("gc"));
    assert!(conflict(sim.rejected(put_placed(&sim, "k", 8, SPREAD))));
    assert!(conflict(sim.rejected(part_with(
        "u1",
        1,
        MIB,
        "\"p\"",
        erasure(8, SPREAD),
        lease
    ))));
    // Another generation of the same shard on the same node is another file.
    sim.ok(put_placed(&sim, "k", 8, &[(0, 1, 1), (1, 2, 2), (2, 3, 1)]));
    // UpdatePlacement may not add the marked copy either, but may add another one.
    let current = [(0, 1, 1), (1, 2, 2), (2, 3, 1)];
    assert!(conflict(sim.rejected(update(
        8,
        &current,
        &[(0, 1, 1), (1, 2, 2), (2, 3, 1), (1, 2, 1)],
        false,
        lease
    ))));
    sim.ok(update(
        8,
        &current,
        &[(0, 1, 1), (1, 2, 2), (2, 3, 1), (1, 4, 1)],
        false,
        lease,
    ));
    // Released, the copy may be placed again.
    sim.ok(release(&[orphan], Vec::new()));
    assert_eq!(sim.marked(8, (1, 2, 1)), None);
    sim.ok(part_with("u1", 1, MIB, "\"p\"", erasure(9, SPREAD), lease));
}

// --- claims --------------------------------------------------------------------------------

#[test]
fn claims_need_a_valid_grace_a_claimer_and_well_formed_refs() {
    let mut sim = Sim::new();
    let r = shard_ref(7, (0, 1, 1), 0);
    for grace in [0, GRACE - 1, MAX_GC_GRACE_MS + 1] {
        assert!(is_invalid(&sim.rejected(claim(
            "gc",
            grace,
            vec![r.clone()],
            &[]
        ))));
    }
    assert!(is_invalid(&sim.rejected(claim(
        "",
        GRACE,
        vec![r.clone()],
        &[]
    ))));
    let mut short = r.clone();
    short.data_id.truncate(3);
    assert!(is_invalid(&sim.rejected(claim(
        "gc",
        GRACE,
        vec![short],
        &[]
    ))));
    let mut no_generation = r.clone();
    no_generation.generation = 0;
    assert!(is_invalid(&sim.rejected(claim(
        "gc",
        GRACE,
        vec![no_generation],
        &[]
    ))));
    assert!(is_invalid(&sim.rejected(claim(
        "gc",
        GRACE,
        vec![],
        &[(keys::bucket("bkt"), vec![r.clone()])]
    ))));
    assert_eq!(
        claimed(sim.ok(claim("gc", MAX_GC_GRACE_MS, vec![r.clone()], &[]))),
        [r]
    );
}

#[test]
fn an_orphan_is_granted_only_unreferenced_unheld_and_grace_after_its_lease_ended() {
    let mut sim = Sim::new();
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(put_placed(&sim, "k", 1, SPREAD));
    let writer = sim.grant("gateway", 60_000);
    let lease = crate::records::lease(&sim.kv, writer)
        .expect("read")
        .expect("granted");

    // Referenced by the owner's placement (exact generation): never.
    let referenced = shard_ref(1, (0, 1, 1), 0);
    // The same shard on the same node, another generation: an orphan.
    let stale = shard_ref(1, (0, 1, 9), 0);
    // Written under a live lease.
    let fresh = shard_ref(2, (0, 4, 1), writer);
    assert_eq!(
        claimed(sim.ok(claim(
            "gc",
            GRACE,
            vec![referenced, stale.clone(), fresh.clone()],
            &[]
        ))),
        vec![stale.clone()]
    );
    // Held by another claimer: not granted; re-claim by the holder is.
    assert!(claimed(sim.ok(claim("other", GRACE, vec![stale.clone()], &[]))).is_empty());
    assert_eq!(
        claimed(sim.ok(claim("gc", GRACE, vec![stale.clone()], &[]))),
        [stale]
    );

    // The lease ends at `expires_ms`; the orphan is granted exactly `grace` later.
    sim.now_ms = lease.expires_ms - 1;
    assert!(claimed(sim.ok(claim("gc", GRACE, vec![fresh.clone()], &[]))).is_empty());
    sim.now_ms = lease.expires_ms + GRACE_MS - 1;
    assert!(claimed(sim.ok(claim("gc", GRACE, vec![fresh.clone()], &[]))).is_empty());
    sim.now_ms = lease.expires_ms + GRACE_MS;
    assert_eq!(
        claimed(sim.ok(claim("gc", GRACE, vec![fresh.clone(), fresh.clone()], &[]))),
        vec![fresh.clone()],
        "granted once however often named"
    );
    assert_eq!(sim.marked(2, (0, 4, 1)).as_deref(), Some("gc"));
}

#[test]
fn a_released_lease_starts_the_grace_period_at_its_release() {
    let mut sim = Sim::new();
    let writer = sim.grant("gateway", 600_000);
    sim.advance(1_000);
    let released_at = sim.now_ms;
    sim.ok(command::Cmd::ReleaseLease(pb::ReleaseLease {
        lease_id: writer,
    }));
    let orphan = shard_ref(3, (1, 1, 1), writer);
    sim.now_ms = released_at + GRACE_MS - 1;
    assert!(claimed(sim.ok(claim("gc", GRACE, vec![orphan.clone()], &[]))).is_empty());
    sim.now_ms = released_at + GRACE_MS;
    assert_eq!(
        claimed(sim.ok(claim("gc", GRACE, vec![orphan.clone()], &[]))),
        [orphan]
    );
}

#[test]
fn a_garbage_copy_is_granted_only_if_its_record_lists_it_and_is_old_enough() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(put_placed(&sim, "k", 1, SPREAD));
    sim.advance(500);
    let made_at = sim.now_ms;
    sim.ok(put_placed(&sim, "k", 2, SPREAD)); // blob 1 becomes garbage
    let (key, id, copies, since) = sim.garbage_records().remove(0);
    assert_eq!((id, copies.as_slice(), since), (1, SPREAD, made_at));
    let listed: Vec<pb::ShardRef> = SPREAD.iter().map(|c| shard_ref(1, *c, lease)).collect();
    let gc = |shards: Vec<pb::ShardRef>| claim("gc", GRACE, vec![], &[(key.clone(), shards)]);

    // Too young, by one millisecond.
    sim.now_ms = made_at + GRACE_MS - 1;
    assert!(claimed(sim.ok(gc(listed.clone()))).is_empty());
    sim.now_ms = made_at + GRACE_MS;
    // A copy the record does not list (another generation, another blob) is not granted
    // through it, nor through a key that is no garbage record.
    let unlisted = shard_ref(1, (0, 1, 2), lease);
    let other_blob = shard_ref(2, (0, 1, 1), lease);
    assert!(claimed(sim.ok(gc(vec![unlisted, other_blob.clone()]))).is_empty());
    assert!(
        claimed(sim.ok(claim(
            "gc",
            GRACE,
            vec![],
            &[(keys::garbage(999, 0), listed.clone())]
        )))
        .is_empty()
    );
    // Held by another claimer: that copy is not granted to this one.
    assert_eq!(
        claimed(sim.ok(claim(
            "other",
            GRACE,
            vec![],
            &[(key.clone(), vec![listed[0].clone()])]
        ))),
        vec![listed[0].clone()]
    );
    assert_eq!(claimed(sim.ok(gc(listed.clone()))), listed[1..]);
    // Released, the record and its marks are gone; claiming again grants nothing.
    sim.ok(release(&listed, vec![key.clone()]));
    assert!(sim.garbage_records().is_empty());
    assert!(SPREAD.iter().all(|c| sim.marked(1, *c).is_none()));
    assert!(claimed(sim.ok(gc(listed))).is_empty());
    assert!(is_invalid(
        &sim.rejected(release(&[], vec![keys::bucket("bkt")]))
    ));
}

#[test]
fn a_garbage_copy_that_a_placement_names_again_is_not_granted() {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(put_placed(&sim, "k", 1, SPREAD));
    // Repair drops copy (2, 3, 1), then puts the very same file back into the placement.
    sim.ok(update(1, SPREAD, &[(0, 1, 1), (1, 2, 1)], false, lease));
    sim.ok(update(1, &[(0, 1, 1), (1, 2, 1)], SPREAD, false, lease));
    let (key, ..) = sim.garbage_records().remove(0);
    sim.advance(GRACE_MS);
    let copy = shard_ref(1, (2, 3, 1), lease);
    assert!(
        claimed(sim.ok(claim("gc", GRACE, vec![copy.clone()], &[(key, vec![copy])]))).is_empty()
    );
}
