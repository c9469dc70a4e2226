use tessera_client::data::ListedShard;
use tessera_core::blob::ShardCopy;

use super::*;
use crate::fixtures::{self, blob_ref, copy, data_id, listed, spread_blob};

fn scan(view: &ClusterView, blobs: Vec<ErasureBlob>) -> ScanOutcome {
    let mut scanner = Scanner::new(view);
    for (i, blob) in blobs.into_iter().enumerate() {
        let time = 1_000 * (i as i64 + 1);
        scanner.judge(view, blob_ref(blob, 600, time));
    }
    scanner.finish()
}

/// Replaces what `node` lists with `shards`.
fn relist(view: &mut ClusterView, node: u64, shards: Vec<ListedShard>) {
    view.add_listing(NodeId(node), shards);
}

#[test]
fn a_healthy_blob_is_counted_and_needs_nothing() {
    let blob = spread_blob(data_id(1));
    let view = fixtures::healthy_view(&[&blob]);
    let out = scan(&view, vec![blob.clone()]);
    assert!(out.work.is_empty());
    assert_eq!(out.stats.blobs, 1);
    assert_eq!(out.stats.by_spare.get(&3), Some(&(1, 600)));
    assert_eq!(
        (out.stats.backlog, out.stats.below_full, out.stats.too_new),
        (0, 0, 0)
    );
    assert_eq!(out.stats.oldest_degraded_ms, 0);
    assert_eq!(out.stats.shards_per_node.get(&NodeId(4)), Some(&1));
    for c in &blob.shards {
        assert!(out.referenced.contains(&(blob.data_id, *c)));
    }
}

/// A placement applied after the index read before the listings names copies the listings may
/// predate: it is not judged, only counted, and its copies stay referenced.
#[test]
fn a_blob_placed_after_the_applied_index_is_unconfirmed() {
    let placed_late = {
        let mut b = spread_blob(data_id(1));
        b.placed_at_index = 11;
        b
    };
    let placed_at_the_index = {
        let mut b = spread_blob(data_id(2));
        b.placed_at_index = 10;
        b
    };
    // No node lists anything: a judged blob would be unreadable.
    let view = fixtures::healthy_view(&[]);
    assert_eq!(view.applied_index, 10);
    let out = scan(&view, vec![placed_late.clone(), placed_at_the_index]);
    assert_eq!(out.stats.too_new, 1);
    assert_eq!(out.stats.blobs, 1, "only the blob at the index is judged");
    assert_eq!(out.stats.unreadable, 1);
    assert!(out.work.is_empty());
    assert_eq!(out.stats.shards_per_node.get(&NodeId(1)), Some(&2));
    for c in &placed_late.shards {
        assert!(out.referenced.contains(&(placed_late.data_id, *c)));
    }
}

#[test]
fn a_listed_copy_of_another_generation_leaves_its_index_missing() {
    let blob = spread_blob(data_id(1));
    let mut view = fixtures::healthy_view(&[&blob]);
    let placed = blob.shards[2];
    let stale = copy(placed.shard_index, placed.node.0, 555);
    relist(&mut view, placed.node.0, vec![listed(&blob, &stale, 7)]);
    let out = scan(&view, vec![blob.clone()]);
    assert_eq!(out.work.len(), 1);
    let work = &out.work[0];
    assert_eq!(work.plan.spare, 2);
    assert!(
        work.plan
            .writes
            .iter()
            .any(|(i, _)| *i == placed.shard_index)
    );
    assert!(
        !work
            .plan
            .sources
            .contains(&(placed.shard_index, placed.node))
    );
    assert_eq!((out.stats.below_full, out.stats.backlog), (1, 1));
    assert_eq!(out.stats.oldest_degraded_ms, 1_000);
    // The stale copy is referenced by nothing: garbage collection may offer it as an orphan.
    assert!(!out.referenced.contains(&(blob.data_id, stale)));
}

#[test]
fn a_digest_mismatch_is_corrupt_and_rebuilt_around() {
    let blob = spread_blob(data_id(1));
    let mut view = fixtures::healthy_view(&[&blob]);
    let placed = blob.shards[0];
    let mut renamed = listed(&blob, &placed, 7);
    renamed.digest = fixtures::digest(&data_id(9), 0);
    relist(&mut view, placed.node.0, vec![renamed]);
    let out = scan(&view, vec![blob]);
    let work = &out.work[0];
    assert_eq!(work.plan.spare, 2);
    assert!(work.plan.writes.iter().any(|(i, _)| *i == 0));
    assert!(work.plan.sources.iter().all(|(i, _)| *i != 0));
}

#[test]
fn unreadable_blobs_are_counted_and_work_is_sorted_most_at_risk_first() {
    let two_lost = spread_blob(data_id(1));
    let one_lost = spread_blob(data_id(2));
    let four_lost = spread_blob(data_id(3));
    let mut view = fixtures::healthy_view(&[&two_lost, &one_lost, &four_lost]);
    // Keep on each node only what the test wants listed.
    let keep = |b: &ErasureBlob, lost: &[u32]| -> Vec<ShardCopy> {
        b.shards
            .iter()
            .copied()
            .filter(|c| !lost.contains(&c.shard_index))
            .collect()
    };
    let kept: Vec<(ErasureBlob, Vec<ShardCopy>)> = vec![
        (two_lost.clone(), keep(&two_lost, &[0, 1])),
        (one_lost.clone(), keep(&one_lost, &[5])),
        (four_lost.clone(), keep(&four_lost, &[0, 1, 2, 3])),
    ];
    for node in 1..=6u64 {
        let shards = kept
            .iter()
            .flat_map(|(b, copies)| {
                copies
                    .iter()
                    .filter(move |c| c.node == NodeId(node))
                    .map(move |c| listed(b, c, 7))
            })
            .collect();
        relist(&mut view, node, shards);
    }
    let out = scan(&view, vec![one_lost, two_lost, four_lost]);
    assert_eq!(out.stats.unreadable, 1);
    assert_eq!(out.stats.backlog, 3);
    assert_eq!(out.stats.below_full, 3);
    let spares: Vec<i32> = out.work.iter().map(|w| w.plan.spare).collect();
    assert_eq!(spares, vec![1, 2], "fewest spare shards first");
    assert_eq!(out.stats.by_spare.get(&-1), Some(&(1, 600)));
}
