use tessera_client::meta::BlobFamily;
use tessera_core::names::NodeId;

use super::*;
use crate::fixtures::{self, blob, blob_ref, copy, data_id, listed, spread_blob};

fn garbage_ref(blob: tessera_core::blob::ErasureBlob, key: &str) -> BlobRef {
    BlobRef {
        family: BlobFamily::Garbage,
        record_key: key.as_bytes().to_vec(),
        ..blob_ref(blob, 600, 0)
    }
}

fn shard_ref(id: DataId, c: ShardCopy, lease_id: u64) -> ShardRef {
    ShardRef {
        data_id: id,
        copy: c,
        lease_id,
    }
}

/// Orphans are listed copies no placement names with that exact generation; a copy a garbage
/// record names is left to its record.
#[test]
fn orphans_are_listed_copies_no_placement_or_garbage_record_names() {
    let live = spread_blob(data_id(1));
    let dead = spread_blob(data_id(2));
    let mut view = fixtures::healthy_view(&[&live, &dead]);
    // Node 1 also holds a stale generation of the live blob's shard 0 (a superseded rebuild),
    // written under lease 44, and a shard of a blob meta never heard of.
    let stale = copy(0, 1, 999);
    let stray = spread_blob(data_id(3));
    let mut on_one: Vec<_> = view
        .all_listed()
        .filter(|(n, _)| *n == NodeId(1))
        .map(|(_, l)| *l)
        .collect();
    on_one.push(listed(&live, &stale, 44));
    on_one.push(listed(&stray, &stray.shards[0], 45));
    view.add_listing(NodeId(1), on_one);

    let referenced: HashSet<(DataId, ShardCopy)> =
        live.shards.iter().map(|c| (live.data_id, *c)).collect();
    let garbage: HashSet<(DataId, ShardCopy)> =
        dead.shards.iter().map(|c| (dead.data_id, *c)).collect();
    let orphans = find_orphans(&view, &referenced, &garbage);
    assert_eq!(
        orphans,
        vec![
            shard_ref(live.data_id, stale, 44),
            shard_ref(stray.data_id, stray.shards[0], 45),
        ]
    );

    // Without the garbage records' copies, the dead blob's copies would be offered too.
    let unprotected = find_orphans(&view, &referenced, &HashSet::new());
    assert_eq!(unprotected.len(), 2 + 6);
}

#[test]
fn a_garbage_record_waits_for_down_nodes_and_names_listed_leases() {
    let dead = blob(
        data_id(2),
        2,
        2,
        vec![
            copy(0, 1, 10),
            copy(1, 2, 11),
            copy(2, 3, 12),
            copy(3, 9, 13),
        ],
        5,
    );
    let mut view = fixtures::healthy_view(&[&dead]);
    let record = GarbageRecord::new(&view, &garbage_ref(dead.clone(), "g/1"));
    // Node 9 is not registered: its copy is gone with it and is claimed (meta still judges the
    // record's age) with no lease known.
    assert!(!record.waiting);
    assert_eq!(record.key, b"g/1".to_vec());
    assert_eq!(
        record.copies,
        vec![
            shard_ref(dead.data_id, copy(0, 1, 10), 7),
            shard_ref(dead.data_id, copy(1, 2, 11), 7),
            shard_ref(dead.data_id, copy(2, 3, 12), 7),
            shard_ref(dead.data_id, copy(3, 9, 13), 0),
        ]
    );

    // Node 2 turns suspect and node 3's listing fails: their copies are not claimed and the
    // record waits.
    view.nodes.get_mut(&NodeId(2)).expect("node 2").liveness = crate::view::Liveness::Suspect;
    view.listings.remove(&NodeId(3));
    view.unlisted.insert(NodeId(3));
    let record = GarbageRecord::new(&view, &garbage_ref(dead.clone(), "g/1"));
    assert!(record.waiting);
    assert_eq!(
        record.copies,
        vec![
            shard_ref(dead.data_id, copy(0, 1, 10), 7),
            shard_ref(dead.data_id, copy(3, 9, 13), 0),
        ]
    );
}

#[test]
fn a_record_is_finished_only_when_every_copy_was_deleted() {
    let id = data_id(4);
    let a = shard_ref(id, copy(0, 1, 1), 0);
    let b = shard_ref(id, copy(1, 2, 2), 0);
    let record = |key: &str, copies: Vec<ShardRef>, waiting| GarbageRecord {
        key: key.as_bytes().to_vec(),
        copies,
        waiting,
    };
    let records = vec![
        record("all", vec![a, b], false),
        record("half", vec![a, shard_ref(id, copy(2, 3, 3), 0)], false),
        record("waits", vec![a], true),
        record("empty", Vec::new(), false),
    ];
    // Deleted under another generation than the record's: not its copy.
    let wrong_generation = shard_ref(id, copy(2, 3, 4), 0);
    let finished = finished_records(&records, &[a, b, wrong_generation]);
    assert_eq!(finished, vec![b"all".to_vec(), b"empty".to_vec()]);
    // A record none of whose copies were granted (too young by the meta clock) is kept.
    assert_eq!(finished_records(&records[..1], &[]), Vec::<Vec<u8>>::new());
}

#[test]
fn claims_batch_whole_records() {
    let id = data_id(5);
    let record = |n: usize| GarbageRecord {
        key: vec![u8::try_from(n % 256).unwrap_or(0)],
        copies: (0..n)
            .map(|i| shard_ref(id, copy(0, 1, i as u64 + 1), 0))
            .collect(),
        waiting: false,
    };
    let records = vec![
        record(600),
        record(300),
        record(200),
        record(1500),
        record(1),
    ];
    let sizes: Vec<Vec<usize>> = record_batches(&records)
        .iter()
        .map(|batch| batch.iter().map(|r| r.copies.len()).collect())
        .collect();
    assert_eq!(sizes, vec![vec![600, 300], vec![200], vec![1500], vec![1]]);
    assert!(record_batches(&[]).is_empty());
}

#[test]
fn gc_errors_have_codes_and_retry_policy() {
    let unavailable = MetaClientError::Unavailable {
        attempts: 3,
        last: "refused".into(),
    };
    let scan = GcError::Scan(unavailable.clone());
    assert_eq!(scan.code(), "meta_unavailable");
    assert!(scan.is_retryable());
    let refused = GcError::Claim(CommandError::Rule(
        tessera_core::meta_error::MetaRuleError::invalid("grace"),
    ));
    assert_eq!(refused.code(), "invalid_argument");
    assert!(!refused.is_retryable());
}
