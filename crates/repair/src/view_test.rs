use tessera_proto::meta::v1 as pb;

use super::*;
use crate::fixtures::{self, copy, data_id, listed, spread_blob};

#[test]
fn health_follows_liveness_and_listings() {
    let blob = spread_blob(data_id(1));
    let mut view = ClusterView::from_status(&fixtures::status(
        &[
            (1, "z", pb::Liveness::Alive, pb::NodeState::Active),
            (2, "z", pb::Liveness::Suspect, pb::NodeState::Active),
            (3, "z", pb::Liveness::Dead, pb::NodeState::Active),
            (4, "z", pb::Liveness::Alive, pb::NodeState::Active),
        ],
        10,
    ));
    // Node 1 lists shard 0 honestly; node 4 is alive but its listing failed.
    view.add_listing(NodeId(1), vec![listed(&blob, &blob.shards[0], 7)]);
    view.unlisted.insert(NodeId(4));

    let on = |index: u32, node: u64| copy(index, node, 100 + u64::from(index));
    assert_eq!(view.health(&blob, &on(0, 1)), ShardHealth::Ok);
    assert_eq!(view.health(&blob, &on(1, 1)), ShardHealth::Missing);
    assert_eq!(view.health(&blob, &on(0, 2)), ShardHealth::Unknown);
    assert_eq!(view.health(&blob, &on(0, 3)), ShardHealth::Lost);
    assert_eq!(view.health(&blob, &on(0, 4)), ShardHealth::Unknown);
    assert_eq!(
        view.health(&blob, &on(0, 9)),
        ShardHealth::Lost,
        "unregistered"
    );

    let nodes = view.repair_nodes();
    assert!(nodes.iter().any(|n| n.id == NodeId(1) && n.alive));
    assert!(nodes.iter().any(|n| n.id == NodeId(4) && !n.alive));
    assert!(view.is_reachable(NodeId(1)) && !view.is_reachable(NodeId(4)));
    assert!(view.is_registered(NodeId(3)) && !view.is_registered(NodeId(9)));
}

/// Only the placement's exact generation, listed with the manifest's digest and chunk count,
/// satisfies a placement; the node's own word about a file is never enough.
#[test]
fn a_copy_is_ok_only_with_the_exact_generation_and_the_manifest_digest() {
    let blob = spread_blob(data_id(1));
    let placed = blob.shards[0];
    let judge = |listing: Vec<ListedShard>| {
        let mut view = fixtures::healthy_view(&[]);
        view.add_listing(placed.node, listing);
        view.health(&blob, &placed)
    };
    assert_eq!(judge(vec![listed(&blob, &placed, 7)]), ShardHealth::Ok);

    // The same index on the same node under another generation (a stale copy, or a rebuild
    // whose placement change never committed): the placement is not satisfied.
    let other_generation = copy(placed.shard_index, placed.node.0, 999);
    assert_eq!(
        judge(vec![listed(&blob, &other_generation, 7)]),
        ShardHealth::Missing
    );

    // The exact file name, but its digest is another blob's shard (a renamed file), or a
    // self-consistent rewrite of the same shard with other bytes: corrupt.
    let mut renamed = listed(&blob, &placed, 7);
    renamed.digest = fixtures::digest(&data_id(2), placed.shard_index);
    assert_eq!(judge(vec![renamed]), ShardHealth::Corrupt);
    let mut swapped = listed(&blob, &placed, 7);
    swapped.digest = fixtures::digest(&blob.data_id, placed.shard_index + 1);
    assert_eq!(judge(vec![swapped]), ShardHealth::Corrupt);

    // The manifest's digest but another chunk count (a truncated table) is corrupt too.
    let mut short = listed(&blob, &placed, 7);
    short.chunks -= 1;
    assert_eq!(judge(vec![short]), ShardHealth::Corrupt);

    // Both generations listed: the placed one decides.
    assert_eq!(
        judge(vec![
            listed(&blob, &other_generation, 7),
            listed(&blob, &placed, 7)
        ]),
        ShardHealth::Ok
    );
}

#[test]
fn the_status_gives_membership_states_and_the_applied_index() {
    let view = ClusterView::from_status(&fixtures::status(
        &[
            (1, "zone-a", pb::Liveness::Alive, pb::NodeState::Active),
            (2, "zone-b", pb::Liveness::Alive, pb::NodeState::Draining),
        ],
        42,
    ));
    assert_eq!(view.applied_index, 42);
    assert_eq!(view.nodes.len(), 2);
    assert!(view.nodes[&NodeId(2)].draining && !view.nodes[&NodeId(1)].draining);
    assert_eq!(view.addr(NodeId(1)), Some("127.0.0.1:7101"));
    assert_eq!(view.nodes[&NodeId(1)].zone, ZoneName("zone-a".into()));
    // Nothing listed yet: no node is reachable, so none is a target or a source.
    assert!(view.repair_nodes().iter().all(|n| !n.alive));

    let mut odd = fixtures::status(&[(3, "z", pb::Liveness::Alive, pb::NodeState::Active)], 1);
    odd.data_nodes[0].liveness = 77;
    let view = ClusterView::from_status(&odd);
    assert_eq!(view.nodes[&NodeId(3)].liveness, Liveness::Dead);
}

#[test]
fn a_listing_replaces_a_failed_one_and_lists_every_copy_with_its_node() {
    let blob = spread_blob(data_id(3));
    let mut view = fixtures::healthy_view(&[&blob]);
    assert_eq!(view.all_listed().count(), 6);
    view.unlisted.insert(NodeId(1));
    view.add_listing(NodeId(1), Vec::new());
    assert!(view.is_reachable(NodeId(1)));
    assert_eq!(view.all_listed().count(), 5);
    let id = ShardId::of_copy(blob.data_id, &blob.shards[1]);
    assert_eq!(view.listed(NodeId(2), &id).map(|l| l.lease_id), Some(7));
    assert!(view.listed(NodeId(1), &id).is_none());
}
