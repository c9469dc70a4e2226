use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::placement::{NodeInfo, Placement, PlacementError, place};
use proptest::prelude::*;

const ZONES: [&str; 5] = ["zone-a", "zone-b", "zone-c", "zone-d", "zone-e"];

fn rs(k: u32, m: u32) -> Layout {
    Layout::new(k, m).unwrap_or_else(|e| panic!("RS({k},{m}): {e}"))
}

/// `sizes[z]` nodes in zone z, ids `100 * z + i`, all alive and not draining.
fn cluster(sizes: &[u32]) -> Vec<RepairNode> {
    let mut nodes = Vec::new();
    for (z, &size) in sizes.iter().enumerate() {
        for i in 0..size {
            nodes.push(RepairNode {
                id: NodeId(100 * z as u64 + u64::from(i)),
                zone: ZoneName::from(ZONES[z]),
                alive: true,
                draining: false,
            });
        }
    }
    nodes
}

fn key(i: u64) -> DataId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&i.to_le_bytes());
    bytes[8..].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    DataId::from_bytes(bytes)
}

/// The membership as placement sees it when no node is suspect.
fn infos(nodes: &[RepairNode]) -> Vec<NodeInfo> {
    nodes
        .iter()
        .map(|n| NodeInfo {
            id: n.id,
            zone: n.zone.clone(),
            available: n.alive && !n.draining,
        })
        .collect()
}

fn target(layout: &Layout, nodes: &[RepairNode], key: &DataId) -> Placement {
    place(layout, &infos(nodes), key).unwrap_or_else(|e| panic!("{layout} on {nodes:?}: {e}"))
}

fn pairs(shards: &[NodeId]) -> Vec<(u32, NodeId)> {
    (0u32..).zip(shards.iter().copied()).collect()
}

/// One Ok copy of each index on the given node.
fn stored(shards: &[NodeId]) -> Vec<ShardState> {
    (0u32..)
        .zip(shards)
        .map(|(index, &node)| ShardState {
            index,
            node,
            health: ShardHealth::Ok,
        })
        .collect()
}

fn node_mut(nodes: &mut [RepairNode], id: NodeId) -> &mut RepairNode {
    nodes
        .iter_mut()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("{id} not in cluster"))
}

fn zone_of(nodes: &[RepairNode], id: NodeId) -> ZoneName {
    nodes
        .iter()
        .find(|n| n.id == id)
        .map(|n| n.zone.clone())
        .unwrap_or_else(|| panic!("{id} not in cluster"))
}

fn zone_counts(nodes: &[RepairNode], placement: &[(u32, NodeId)]) -> BTreeMap<ZoneName, u32> {
    let mut counts = BTreeMap::new();
    for &(_, id) in placement {
        *counts.entry(zone_of(nodes, id)).or_insert(0) += 1;
    }
    counts
}

/// Runs `plan` and checks what every plan must satisfy, whatever its input.
fn checked_plan(
    layout: &Layout,
    key: &DataId,
    shards: &[ShardState],
    nodes: &[RepairNode],
) -> RepairPlan {
    let p = plan(layout, key, shards, nodes);
    let (n, k, m) = (
        layout.total_shards(),
        layout.data_shards(),
        layout.parity_shards(),
    );
    let alive = |id: NodeId| nodes.iter().find(|x| x.id == id).is_some_and(|x| x.alive);
    let mut all_ok: BTreeMap<(u32, NodeId), bool> = BTreeMap::new();
    for s in shards.iter().filter(|s| s.index < n) {
        *all_ok.entry((s.index, s.node)).or_insert(true) &= s.health == ShardHealth::Ok;
    }
    let healthy_pairs: BTreeSet<(u32, NodeId)> = all_ok
        .iter()
        .filter(|&(&(_, id), &ok)| ok && alive(id))
        .map(|(&pair, _)| pair)
        .collect();
    let healthy: BTreeSet<u32> = healthy_pairs.iter().map(|&(i, _)| i).collect();
    assert_eq!(p.healthy as usize, healthy.len(), "{p:?}");
    assert_eq!(p.spare, healthy.len() as i32 - k as i32);

    // Sources: one healthy copy per readable index, ascending.
    let source_indices: Vec<u32> = p.sources.iter().map(|&(i, _)| i).collect();
    assert_eq!(source_indices, healthy.iter().copied().collect::<Vec<_>>());
    assert!(p.sources.iter().all(|s| healthy_pairs.contains(s)));

    // Writes only to nodes that can take them, ascending.
    let suspect: BTreeSet<NodeId> = shards
        .iter()
        .filter(|s| s.health == ShardHealth::Unknown && s.index < n)
        .map(|s| s.node)
        .collect();
    let usable = |id: NodeId| {
        !suspect.contains(&id)
            && nodes
                .iter()
                .find(|x| x.id == id)
                .is_some_and(|x| x.alive && !x.draining)
    };
    assert!(p.writes.iter().all(|&(_, id)| usable(id)), "{p:?}");
    assert!(p.writes.windows(2).all(|w| w[0].0 < w[1].0));

    match p.action {
        RepairAction::Wait(_) | RepairAction::Unrecoverable => {
            assert!(p.writes.is_empty());
            if p.action == RepairAction::Unrecoverable {
                assert!(p.spare < 0);
            }
        }
        RepairAction::None | RepairAction::Rebuild => {
            let indices: Vec<u32> = p.placement.iter().map(|&(i, _)| i).collect();
            assert_eq!(indices, (0..n).collect::<Vec<_>>(), "{p:?}");
            assert!(p.placement.iter().all(|&(_, id)| usable(id)), "{p:?}");
            // Every index keeps a healthy copy or is rebuilt from at least k sources.
            let expected_writes: Vec<(u32, NodeId)> = p
                .placement
                .iter()
                .copied()
                .filter(|pair| !healthy_pairs.contains(pair))
                .collect();
            assert_eq!(p.writes, expected_writes);
            if !p.writes.is_empty() {
                assert!(p.sources.len() >= k as usize);
            }
            assert!(zone_counts(nodes, &p.placement).values().all(|&c| c <= m));
            assert_eq!(p.degraded, !is_full_spread(layout, &p.placement, nodes));
            let records: BTreeSet<(u32, NodeId)> = all_ok.keys().copied().collect();
            let placed: BTreeSet<(u32, NodeId)> = p.placement.iter().copied().collect();
            if p.action == RepairAction::None {
                assert!(p.writes.is_empty());
                assert_eq!(records, placed);
            } else {
                assert!(!p.writes.is_empty() || records != placed);
            }
            // On a healthy cluster the result is the full spread.
            let mut view = infos(nodes);
            for info in view.iter_mut().filter(|i| suspect.contains(&i.id)) {
                info.available = false;
            }
            if place(layout, &view, key).is_ok_and(|t| !t.degraded) {
                assert!(!p.degraded, "{p:?}");
            }
            // Idempotent: once the placement is stored (suspects declared dead), nothing to do.
            let mut after = nodes.to_vec();
            for node in after.iter_mut().filter(|x| suspect.contains(&x.id)) {
                node.alive = false;
            }
            let placed_nodes: Vec<NodeId> = p.placement.iter().map(|&(_, id)| id).collect();
            let again = plan(layout, key, &stored(&placed_nodes), &after);
            assert_eq!(again.action, RepairAction::None, "{p:?} then {again:?}");
            assert_eq!(again.placement, p.placement);
            assert_eq!(again.degraded, p.degraded);
        }
    }
    p
}

/// The layouts and clusters the architecture uses, each with a spare node per zone.
fn architectures() -> Vec<(Layout, Vec<u32>)> {
    vec![
        (rs(1, 2), vec![2, 2, 2]),
        (rs(2, 1), vec![2, 2, 2]),
        (rs(3, 3), vec![3, 3, 3]),
        (rs(4, 2), vec![3, 3, 3]),
        (rs(5, 4), vec![4, 4, 4]),
        (rs(6, 3), vec![4, 4, 4]),
        (rs(8, 4), vec![4, 4, 4, 4]),
    ]
}

#[test]
fn healthy_blob_needs_nothing() {
    let mut cases = architectures();
    cases.push((rs(3, 3), vec![2, 2, 2]));
    cases.push((rs(6, 3), vec![3, 3, 3]));
    for (layout, sizes) in cases {
        let nodes = cluster(&sizes);
        for i in 0..40 {
            let t = target(&layout, &nodes, &key(i));
            let p = checked_plan(&layout, &key(i), &stored(&t.shards), &nodes);
            assert_eq!(p.action, RepairAction::None, "{layout} {p:?}");
            assert!(p.writes.is_empty() && !p.degraded && p.full_redundancy);
            assert_eq!(p.placement, pairs(&t.shards));
            assert_eq!(p.sources, pairs(&t.shards));
            assert_eq!(p.healthy, layout.total_shards());
            assert_eq!(p.spare, layout.parity_shards() as i32);
        }
    }
}

#[test]
fn one_lost_shard_on_a_dead_node_costs_one_write_in_its_zone() {
    for (layout, sizes) in architectures() {
        let nodes = cluster(&sizes);
        for i in 0..20 {
            let t = target(&layout, &nodes, &key(i));
            for (index, &lost) in (0u32..).zip(&t.shards) {
                let mut nodes = nodes.clone();
                node_mut(&mut nodes, lost).alive = false;
                let mut shards = stored(&t.shards);
                shards[index as usize].health = ShardHealth::Lost;
                let p = checked_plan(&layout, &key(i), &shards, &nodes);
                assert_eq!(p.action, RepairAction::Rebuild);
                assert_eq!(p.writes.len(), 1, "{layout} {p:?}");
                let (written, to) = p.writes[0];
                assert_eq!(written, index);
                assert_eq!(zone_of(&nodes, to), zone_of(&nodes, lost));
                assert!(!p.degraded && is_full_spread(&layout, &p.placement, &nodes));
                assert!(!p.full_redundancy);
                assert_eq!(p.sources.len() as u32, layout.total_shards() - 1);
            }
        }
    }
}

/// Every subset of the indices 0..n as a bit mask.
fn subsets(n: u32) -> impl Iterator<Item = BTreeSet<u32>> {
    (0u32..1 << n).map(move |mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
}

#[test]
fn every_loss_on_live_nodes_is_rewritten_in_place_or_unrecoverable() {
    let layout = rs(3, 3);
    let nodes = cluster(&[2, 2, 2]);
    for i in 0..8 {
        let t = target(&layout, &nodes, &key(i));
        for lost in subsets(6) {
            for bad in [ShardHealth::Missing, ShardHealth::Corrupt] {
                let mut shards = stored(&t.shards);
                for &index in &lost {
                    shards[index as usize].health = bad;
                }
                let p = checked_plan(&layout, &key(i), &shards, &nodes);
                if lost.len() > 3 {
                    assert_eq!(p.action, RepairAction::Unrecoverable);
                    assert_eq!(p.spare, 3 - lost.len() as i32);
                    continue;
                }
                let expected: Vec<(u32, NodeId)> =
                    lost.iter().map(|&x| (x, t.shards[x as usize])).collect();
                assert_eq!(p.writes, expected, "rewritten on the same nodes");
                assert_eq!(p.placement, pairs(&t.shards));
                assert!(!p.degraded);
                let want = if lost.is_empty() {
                    RepairAction::None
                } else {
                    RepairAction::Rebuild
                };
                assert_eq!(p.action, want);
            }
        }
    }
}

#[test]
fn every_loss_of_dead_nodes_is_repaired_or_unrecoverable() {
    let layout = rs(3, 3);
    for sizes in [[2, 2, 2], [3, 3, 3]] {
        let nodes = cluster(&sizes);
        for i in 0..8 {
            let t = target(&layout, &nodes, &key(i));
            for lost in subsets(6) {
                let mut nodes = nodes.clone();
                let mut shards = stored(&t.shards);
                for &index in &lost {
                    node_mut(&mut nodes, t.shards[index as usize]).alive = false;
                    shards[index as usize].health = ShardHealth::Lost;
                }
                let p = checked_plan(&layout, &key(i), &shards, &nodes);
                if lost.len() > 3 {
                    assert_eq!(p.action, RepairAction::Unrecoverable);
                    continue;
                }
                if lost.is_empty() {
                    assert_eq!(p.action, RepairAction::None);
                    continue;
                }
                assert_eq!(p.action, RepairAction::Rebuild, "{p:?}");
                assert_eq!(p.writes.len(), lost.len(), "{sizes:?} {p:?}");
                let healthy_cluster = !target(&layout, &nodes, &key(i)).degraded;
                assert_eq!(p.degraded, !healthy_cluster);
                if healthy_cluster {
                    // The full spread of 2 per zone keeps every survivor's zone.
                    for &(index, to) in &p.writes {
                        let from = t.shards[index as usize];
                        assert_eq!(zone_of(&nodes, to), zone_of(&nodes, from));
                    }
                }
            }
        }
    }
}

#[test]
fn corrupt_copy_is_rewritten_on_its_own_node() {
    for (layout, sizes) in architectures() {
        let nodes = cluster(&sizes);
        for i in 0..10 {
            let t = target(&layout, &nodes, &key(i));
            let mut shards = stored(&t.shards);
            shards[0].health = ShardHealth::Corrupt;
            let p = checked_plan(&layout, &key(i), &shards, &nodes);
            assert_eq!(p.action, RepairAction::Rebuild);
            assert_eq!(p.writes, vec![(0, t.shards[0])]);
            assert_eq!(p.sources.len() as u32, layout.total_shards() - 1);
        }
    }
}

#[test]
fn draining_node_is_emptied_and_never_used() {
    for (layout, sizes) in architectures() {
        let nodes = cluster(&sizes);
        for i in 0..10 {
            let t = target(&layout, &nodes, &key(i));
            for (index, &drained) in (0u32..).zip(&t.shards) {
                let mut nodes = nodes.clone();
                node_mut(&mut nodes, drained).draining = true;
                let p = checked_plan(&layout, &key(i), &stored(&t.shards), &nodes);
                assert_eq!(p.action, RepairAction::Rebuild);
                assert_eq!(p.writes.len(), 1);
                assert_eq!(p.writes[0].0, index);
                assert_eq!(zone_of(&nodes, p.writes[0].1), zone_of(&nodes, drained));
                assert!(p.placement.iter().all(|&(_, id)| id != drained));
                // The draining copy is still readable and counts.
                assert_eq!(p.healthy, layout.total_shards());
                assert!(p.sources.contains(&(index, drained)));
                assert!(!p.degraded && !p.full_redundancy);
            }
        }
    }
    // With no spare node in the zone the shard still moves off, doubling up within the limits.
    let layout = rs(3, 3);
    let nodes = cluster(&[2, 2, 2]);
    let t = target(&layout, &nodes, &key(1));
    let mut draining = nodes.clone();
    node_mut(&mut draining, t.shards[0]).draining = true;
    let p = checked_plan(&layout, &key(1), &stored(&t.shards), &draining);
    assert_eq!(p.action, RepairAction::Rebuild);
    assert!(p.degraded);
    assert!(p.placement.iter().all(|&(_, id)| id != t.shards[0]));
}

#[test]
fn degraded_blob_returns_to_the_full_spread_when_the_zone_returns() {
    let layout = rs(3, 3);
    let healthy = cluster(&[2, 2, 2]);
    for i in 0..30 {
        let mut zone_down = healthy.clone();
        for node in zone_down.iter_mut().filter(|n| n.zone.as_str() == "zone-c") {
            node.alive = false;
        }
        let written = target(&layout, &zone_down, &key(i));
        assert!(written.degraded && written.max_shards_per_node() == 2);
        let shards = stored(&written.shards);

        // While the zone is down, a blob written degraded is left alone.
        let p = checked_plan(&layout, &key(i), &shards, &zone_down);
        assert_eq!(p.action, RepairAction::None);
        assert!(p.degraded && !p.full_redundancy);
        assert_eq!(p.placement, pairs(&written.shards));

        // Back up: only zone C's share is written, and the result is the full spread.
        let p = checked_plan(&layout, &key(i), &shards, &healthy);
        assert_eq!(p.action, RepairAction::Rebuild);
        assert!(!p.degraded && is_full_spread(&layout, &p.placement, &healthy));
        assert_eq!(p.writes.len(), 2, "{p:?}");
        assert!(
            p.writes
                .iter()
                .all(|&(_, id)| zone_of(&healthy, id).as_str() == "zone-c")
        );
    }
}

#[test]
fn zone_down_waits_or_stays_within_m_per_zone() {
    let cases = [
        (rs(3, 3), [2, 2, 2]),
        (rs(3, 3), [3, 3, 3]),
        (rs(4, 2), [2, 2, 2]),
        (rs(6, 3), [3, 3, 3]),
        (rs(5, 4), [3, 3, 3]),
        (rs(1, 2), [1, 1, 1]),
    ];
    for (layout, sizes) in cases {
        let nodes = cluster(&sizes);
        for i in 0..20 {
            let t = target(&layout, &nodes, &key(i));
            for down in ["zone-a", "zone-b", "zone-c"] {
                let mut nodes = nodes.clone();
                let mut shards = stored(&t.shards);
                for node in nodes.iter_mut().filter(|n| n.zone.as_str() == down) {
                    node.alive = false;
                }
                for shard in shards.iter_mut() {
                    if zone_of(&nodes, shard.node).as_str() == down {
                        shard.health = ShardHealth::Lost;
                    }
                }
                let p = checked_plan(&layout, &key(i), &shards, &nodes);
                match p.action {
                    RepairAction::Wait(WaitReason::NoPlacement) => {
                        // The two zones left hold fewer than n shards at m per zone.
                        let alive = nodes.iter().filter(|n| n.alive).count();
                        assert_eq!(
                            place(&layout, &infos(&nodes), &key(i)),
                            Err(PlacementError::InsufficientNodes {
                                shards: layout.total_shards(),
                                max_per_zone: layout.parity_shards(),
                                usable_zones: 2,
                                available_nodes: u32::try_from(alive).expect("few nodes"),
                            })
                        );
                    }
                    RepairAction::Rebuild => {
                        assert!(p.degraded);
                        let counts = zone_counts(&nodes, &p.placement);
                        assert!(counts.values().all(|&c| c <= layout.parity_shards()));
                        assert!(!counts.contains_key(&ZoneName::from(down)));
                    }
                    other => panic!("{layout} zone {down} down: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn suspect_node_waits_while_there_is_spare_and_is_avoided_without() {
    let layout = rs(3, 3);
    let nodes = cluster(&[3, 3, 3]);
    for i in 0..20 {
        let t = target(&layout, &nodes, &key(i));
        let suspect = t.shards[0];

        // spare 2: wait for the suspect node.
        let mut shards = stored(&t.shards);
        shards[0].health = ShardHealth::Unknown;
        let p = checked_plan(&layout, &key(i), &shards, &nodes);
        assert_eq!(p.action, RepairAction::Wait(WaitReason::SuspectNode));
        assert_eq!((p.healthy, p.spare), (5, 2));

        // spare 0: rebuild, treating the suspect copy as gone and never writing to its node.
        let mut dead = nodes.clone();
        for index in [1, 2] {
            shards[index].health = ShardHealth::Lost;
            node_mut(&mut dead, t.shards[index]).alive = false;
        }
        let p = checked_plan(&layout, &key(i), &shards, &dead);
        assert_eq!(p.spare, 0);
        assert_eq!(p.action, RepairAction::Rebuild);
        let written: Vec<u32> = p.writes.iter().map(|&(x, _)| x).collect();
        assert_eq!(written, vec![0, 1, 2]);
        assert!(p.placement.iter().all(|&(_, id)| id != suspect));

        // Below k, but the suspect copies could make it readable again: wait, not give up.
        shards[3].health = ShardHealth::Unknown;
        let p = checked_plan(&layout, &key(i), &shards, &dead);
        assert_eq!(p.spare, -1);
        assert_eq!(p.action, RepairAction::Wait(WaitReason::SuspectNode));
        shards[0].health = ShardHealth::Lost;
        shards[4].health = ShardHealth::Lost;
        let p = checked_plan(&layout, &key(i), &shards, &dead);
        assert_eq!(p.action, RepairAction::Unrecoverable);
    }
}

#[test]
fn extra_and_stale_records_are_dropped_without_writes() {
    let layout = rs(4, 2);
    let nodes = cluster(&[3, 3, 3]);
    for i in 0..20 {
        let t = target(&layout, &nodes, &key(i));
        let spare_node = nodes
            .iter()
            .map(|n| n.id)
            .find(|id| !t.shards.contains(id))
            .unwrap_or_else(|| panic!("no spare node"));
        for health in [ShardHealth::Ok, ShardHealth::Missing, ShardHealth::Lost] {
            let mut shards = stored(&t.shards);
            shards.push(ShardState {
                index: 1,
                node: spare_node,
                health,
            });
            let p = checked_plan(&layout, &key(i), &shards, &nodes);
            assert_eq!(p.action, RepairAction::Rebuild);
            assert!(p.writes.is_empty() && p.full_redundancy && !p.degraded);
            assert_eq!(p.placement, pairs(&t.shards));
        }
        // Records past n and unknown nodes are not the blob's.
        let mut shards = stored(&t.shards);
        shards.push(ShardState {
            index: 6,
            node: spare_node,
            health: ShardHealth::Ok,
        });
        let p = checked_plan(&layout, &key(i), &shards, &nodes);
        assert_eq!(p.action, RepairAction::None);
    }
}

#[test]
fn no_nodes_or_no_copies_is_unrecoverable_and_duplicates_wait() {
    let layout = rs(3, 3);
    let p = checked_plan(&layout, &key(0), &[], &cluster(&[2, 2, 2]));
    assert_eq!(p.action, RepairAction::Unrecoverable);
    assert_eq!((p.healthy, p.spare), (0, -3));
    let nodes = cluster(&[2, 2, 2]);
    let t = target(&layout, &nodes, &key(0));
    let p = checked_plan(&layout, &key(0), &stored(&t.shards), &[]);
    assert_eq!(p.action, RepairAction::Unrecoverable);

    // An inconsistent membership gets no placement, and no full spread either.
    let mut doubled = nodes.clone();
    doubled.push(nodes[0].clone());
    let mut shards = stored(&t.shards);
    shards[0].health = ShardHealth::Missing;
    let p = checked_plan(&layout, &key(0), &shards, &doubled);
    assert_eq!(p.action, RepairAction::Wait(WaitReason::NoPlacement));
    assert!(!is_full_spread(&layout, &pairs(&t.shards), &doubled));
}

#[test]
fn is_full_spread_follows_its_definition() {
    let layout = rs(3, 3);
    let nodes = cluster(&[2, 2, 2]);
    let t = target(&layout, &nodes, &key(3));
    let full = pairs(&t.shards);
    assert!(is_full_spread(&layout, &full, &nodes));
    // Order does not matter; a missing, repeated or foreign index does.
    let mut reversed = full.clone();
    reversed.reverse();
    assert!(is_full_spread(&layout, &reversed, &nodes));
    assert!(!is_full_spread(&layout, &full[1..], &nodes));
    let mut repeated = full.clone();
    repeated[1].0 = 0;
    assert!(!is_full_spread(&layout, &repeated, &nodes));
    let mut foreign = full.clone();
    foreign[1].1 = NodeId(999);
    assert!(!is_full_spread(&layout, &foreign, &nodes));
    // A dead node is a health problem, a draining one is not where shards stay.
    let mut states = nodes.clone();
    node_mut(&mut states, t.shards[0]).alive = false;
    assert!(is_full_spread(&layout, &full, &states));
    node_mut(&mut states, t.shards[0]).draining = true;
    assert!(!is_full_spread(&layout, &full, &states));
    // A fourth zone, even empty of live nodes, changes the even share.
    let mut wider = cluster(&[2, 2, 2, 1]);
    wider[6].alive = false;
    assert!(!is_full_spread(&layout, &full, &wider));
    // Never more than m in a zone, even when that is the even share.
    let two_zones = cluster(&[3, 3]);
    let three_each: Vec<(u32, NodeId)> = (0u32..).zip(two_zones.iter().map(|n| n.id)).collect();
    assert!(is_full_spread(&layout, &three_each, &two_zones));
    assert!(!is_full_spread(&rs(4, 2), &three_each, &two_zones));
}

fn layout_from(choice: u8) -> Layout {
    match choice % 7 {
        0 => rs(1, 2),
        1 => rs(2, 1),
        2 => rs(3, 3),
        3 => rs(4, 2),
        4 => rs(5, 4),
        5 => rs(6, 3),
        _ => rs(2, 2),
    }
}

fn health_from(choice: u8) -> ShardHealth {
    match choice % 12 {
        0 => ShardHealth::Missing,
        1 => ShardHealth::Corrupt,
        2 => ShardHealth::Lost,
        3 => ShardHealth::Unknown,
        _ => ShardHealth::Ok,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn place_is_full_spread_exactly_when_not_degraded(
        sizes in prop::collection::vec(1u32..=4, 1..=5),
        k in 1u32..=8,
        m in 0u32..=6,
        flags in prop::collection::vec(0u8..8, 20),
        seed in any::<u64>(),
    ) {
        let layout = rs(k, m);
        let mut nodes = cluster(&sizes);
        // Check first with everything available, then with some nodes dead or draining.
        for round in 0..2 {
            if round == 1 {
                for (node, &flag) in nodes.iter_mut().zip(&flags) {
                    node.alive = flag != 0;
                    node.draining = flag == 1;
                }
            }
            if let Ok(p) = place(&layout, &infos(&nodes), &key(seed)) {
                prop_assert_eq!(is_full_spread(&layout, &pairs(&p.shards), &nodes), !p.degraded);
            }
        }
        // A cluster with room for the even share in every zone always gets the full spread.
        let zones = sizes.len() as u32;
        let share = layout.total_shards().div_ceil(zones);
        if share <= m && sizes.iter().all(|&s| s >= share) {
            let all = cluster(&sizes);
            let p = place(&layout, &infos(&all), &key(seed));
            prop_assert!(p.is_ok_and(|p| is_full_spread(&layout, &pairs(&p.shards), &all)));
        }
    }

    #[test]
    fn plans_meet_their_invariants_under_random_damage(
        choice in any::<u8>(),
        sizes in prop::collection::vec(1u32..=4, 3..=4),
        written_flags in prop::collection::vec(0u8..10, 16),
        now_flags in prop::collection::vec(0u8..10, 16),
        healths in prop::collection::vec(any::<u8>(), 9),
        extras in prop::collection::vec((0u32..10, 0usize..16, any::<u8>()), 0..3),
        seed in any::<u64>(),
    ) {
        let layout = layout_from(choice);
        // Written while some nodes were down (possibly degraded)...
        let mut written = cluster(&sizes);
        for (node, &flag) in written.iter_mut().zip(&written_flags) {
            node.alive = flag != 0;
        }
        let Ok(t) = place(&layout, &infos(&written), &key(seed)) else {
            return Ok(());
        };
        // ...checked now, with other nodes dead or draining and copies damaged.
        let mut nodes = cluster(&sizes);
        for (node, &flag) in nodes.iter_mut().zip(&now_flags) {
            node.alive = flag != 0;
            node.draining = flag == 1;
        }
        let mut shards = stored(&t.shards);
        for (shard, &h) in shards.iter_mut().zip(&healths) {
            shard.health = health_from(h);
        }
        for &(index, at, h) in &extras {
            let node = nodes[at % nodes.len()].id;
            shards.push(ShardState { index, node, health: health_from(h) });
        }
        checked_plan(&layout, &key(seed), &shards, &nodes);
    }
}
