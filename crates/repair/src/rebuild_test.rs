use tessera_client::ShardId;
use tessera_client::shard::WrittenShard;

use super::*;
use crate::fixtures::{self, copy, data_id, spread_blob};

#[test]
fn the_new_placement_keeps_scanned_generations_and_takes_new_ones_for_writes() {
    let blob = spread_blob(data_id(1));
    // Shard 2 moves from node 3 to node 7 (rebuilt there); shard 5 is rebuilt on its own node
    // as a new generation; every other copy stays with its scanned generation.
    let mut plan: Vec<(u32, NodeId)> = blob
        .shards
        .iter()
        .map(|c| (c.shard_index, c.node))
        .collect();
    plan[2] = (2, NodeId(7));
    let written = vec![copy(2, 7, 4242), copy(5, 6, 5151)];
    let placement = new_placement(&blob, &plan, &written).expect("resolved");
    assert_eq!(
        placement,
        vec![
            copy(0, 1, 100),
            copy(1, 2, 101),
            copy(2, 7, 4242),
            copy(3, 4, 103),
            copy(4, 5, 104),
            copy(5, 6, 5151),
        ]
    );
    // A placement that drops an extra record keeps only what it names.
    let fewer = new_placement(&blob, &plan[..2], &[]).expect("resolved");
    assert_eq!(fewer, vec![copy(0, 1, 100), copy(1, 2, 101)]);
    // An entry with neither a scanned nor a written copy is refused, never dropped.
    assert!(matches!(
        new_placement(&blob, &plan[..3], &[]),
        Err(RebuildError::Unplaced {
            index: 2,
            node: NodeId(7)
        })
    ));
}

#[test]
fn a_rebuilt_copy_must_carry_the_manifest_digest_and_chunk_count() {
    let blob = spread_blob(data_id(1));
    let written = |index: u32, digest, chunks| WrittenShard {
        id: ShardId::new(blob.data_id, index, fresh_generation()),
        chunks,
        digest,
    };
    let right = fixtures::digest(&blob.data_id, 3);
    assert!(check_written(&blob, 3, NodeId(4), &written(3, right, fixtures::CHUNKS)).is_ok());
    let other_blob = fixtures::digest(&data_id(2), 3);
    assert!(matches!(
        check_written(
            &blob,
            3,
            NodeId(4),
            &written(3, other_blob, fixtures::CHUNKS)
        ),
        Err(RebuildError::DigestMismatch {
            index: 3,
            node: NodeId(4)
        })
    ));
    assert!(matches!(
        check_written(
            &blob,
            3,
            NodeId(4),
            &written(3, right, fixtures::CHUNKS + 1)
        ),
        Err(RebuildError::DigestMismatch { index: 3, .. })
    ));
    assert!(matches!(
        check_written(&blob, 6, NodeId(4), &written(6, right, fixtures::CHUNKS)),
        Err(RebuildError::NoDigest { index: 6 })
    ));
}

#[test]
fn rebuilt_copies_get_fresh_nonzero_generations() {
    let generations: std::collections::BTreeSet<u64> =
        (0..64).map(|_| fresh_generation().get()).collect();
    assert_eq!(generations.len(), 64, "64 random generations collided");
    assert!(!generations.contains(&0));
}

#[test]
fn rebuild_errors_have_codes_and_retry_policy() {
    let mismatch = RebuildError::DigestMismatch {
        index: 1,
        node: NodeId(2),
    };
    assert_eq!(mismatch.code(), "rebuild_digest_mismatch");
    assert!(!mismatch.is_retryable());
    let expired = RebuildError::Placement(CommandError::Rule(MetaRuleError::LeaseExpired {
        lease_id: 9,
    }));
    assert_eq!(expired.code(), "lease_expired");
    assert!(expired.is_retryable());
    let no_lease = RebuildError::Lease(LeaseError::NotGranted);
    assert_eq!(no_lease.code(), "lease_not_granted");
    assert!(no_lease.is_retryable());
}

/// A source that a read shows is not the manifest's shard (the listing had vouched for it) is
/// marked corrupt, and the blob planned again rebuilds that index from other copies.
#[test]
fn a_source_found_bad_is_planned_around_and_rebuilt() {
    let blob = spread_blob(data_id(1));
    let view = fixtures::healthy_view(&[&blob]);
    let nodes = view.repair_nodes();
    let mut states: Vec<ShardState> = blob
        .shards
        .iter()
        .map(|c| ShardState {
            index: c.shard_index,
            node: c.node,
            health: view.health(&blob, c),
        })
        .collect();
    let before = tessera_core::repair::plan(&blob.layout, &blob.data_id, &states, &nodes);
    assert_eq!(before.action, RepairAction::None);
    assert!(before.sources.contains(&(0, NodeId(1))));

    mark_corrupt(&mut states, 0, NodeId(1));
    assert_eq!(states[0].health, ShardHealth::Corrupt);
    assert!(states[1..].iter().all(|s| s.health == ShardHealth::Ok));
    let after = tessera_core::repair::plan(&blob.layout, &blob.data_id, &states, &nodes);
    assert_eq!(after.action, RepairAction::Rebuild);
    assert_eq!(after.spare, 2);
    assert!(after.writes.iter().any(|(i, _)| *i == 0));
    assert!(after.sources.iter().all(|(i, _)| *i != 0));
    // Marking a copy the manifest does not have changes nothing.
    let unchanged = states.clone();
    mark_corrupt(&mut states, 0, NodeId(6));
    assert_eq!(states, unchanged);
}
