use super::*;
use proptest::prelude::*;

const ZONES: [&str; 5] = ["zone-a", "zone-b", "zone-c", "zone-d", "zone-e"];

fn rs(k: u32, m: u32) -> Layout {
    Layout::new(k, m).unwrap_or_else(|e| panic!("RS({k},{m}): {e}"))
}

/// `sizes[z]` nodes in zone z, ids `100 * z + i`, all available.
fn cluster(sizes: &[u32]) -> Vec<NodeInfo> {
    let mut nodes = Vec::new();
    for (z, &size) in sizes.iter().enumerate() {
        for i in 0..size {
            nodes.push(NodeInfo {
                id: NodeId(100 * z as u64 + u64::from(i)),
                zone: ZoneName::from(ZONES[z]),
                available: true,
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

fn must_place(layout: &Layout, nodes: &[NodeInfo], key: &DataId) -> Placement {
    place(layout, nodes, key).unwrap_or_else(|e| panic!("{layout} on {nodes:?}: {e}"))
}

fn zone_of(nodes: &[NodeInfo], id: NodeId) -> ZoneName {
    nodes
        .iter()
        .find(|n| n.id == id)
        .map(|n| n.zone.clone())
        .unwrap_or_else(|| panic!("{id} not in cluster"))
}

fn durable_all(p: &Placement, nodes: &[NodeInfo]) -> Vec<(u32, ZoneName)> {
    (0u32..)
        .zip(&p.shards)
        .map(|(i, id)| (i, zone_of(nodes, *id)))
        .collect()
}

fn set_available(nodes: &mut [NodeInfo], id: u64, available: bool) {
    for n in nodes.iter_mut().filter(|n| n.id == NodeId(id)) {
        n.available = available;
    }
}

#[test]
fn placement_is_deterministic() {
    let nodes = cluster(&[3, 3, 3]);
    let layout = rs(5, 4);
    for i in 0..100 {
        let a = must_place(&layout, &nodes, &key(i));
        let mut reversed = nodes.clone();
        reversed.reverse();
        let b = must_place(&layout, &reversed, &key(i));
        assert_eq!(a, b, "node order must not matter");
    }
    assert_ne!(
        must_place(&layout, &nodes, &key(1)),
        must_place(&layout, &nodes, &key(2))
    );
}

#[test]
fn healthy_spread_for_architecture_layouts() {
    for z in [1u32, 2, 3, 5] {
        let nodes = cluster(&[z, z, z]);
        for layout in [Layout::zone_plus_one(z), Layout::zone_only(z)] {
            let layout = layout.unwrap_or_else(|e| panic!("{e}"));
            let k = layout.data_shards() as usize;
            for i in 0..200 {
                let p = must_place(&layout, &nodes, &key(i));
                assert_eq!(p.shards.len(), 3 * z as usize);
                assert!(!p.degraded);
                assert_eq!(p.max_shards_per_node(), 1, "{layout} z={z}");
                let counts = p.zone_counts(&nodes);
                assert_eq!(counts.len(), 3);
                assert!(counts.values().all(|&c| c == z));
                // Data shards are spread over the zones as evenly as possible.
                let mut data_per_zone: BTreeMap<ZoneName, usize> = BTreeMap::new();
                for id in &p.shards[..k] {
                    *data_per_zone.entry(zone_of(&nodes, *id)).or_default() += 1;
                }
                assert!(data_per_zone.values().all(|&c| c <= k.div_ceil(3)));
                assert!(meets_write_rule(&layout, &durable_all(&p, &nodes)));
                assert!(layout.survives_zone_plus_one(z) || layout.survives_zone(z));
            }
        }
    }
}

#[test]
fn balance_over_ten_thousand_keys() {
    // Unequal zones and more nodes than shards per zone: each node's share is c / N_zone.
    let nodes = cluster(&[3, 4, 5]);
    let layout = rs(3, 3);
    let keys = 10_000u64;
    let mut per_node: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut first_shard: BTreeMap<NodeId, u64> = BTreeMap::new();
    for i in 0..keys {
        let p = must_place(&layout, &nodes, &key(i));
        assert!(!p.degraded);
        for id in &p.shards {
            *per_node.entry(*id).or_default() += 1;
        }
        *first_shard.entry(p.shards[0]).or_default() += 1;
    }
    for node in &nodes {
        let zone_size = nodes.iter().filter(|n| n.zone == node.zone).count() as f64;
        let fair = keys as f64 * 2.0 / zone_size;
        let got = per_node.get(&node.id).copied().unwrap_or(0) as f64;
        assert!(
            (got - fair).abs() <= 0.05 * fair,
            "{}: {got} vs {fair}",
            node.id
        );
        // Shard 0 (the first data shard, read most) is balanced too: zones take turns.
        let fair_first = keys as f64 / 3.0 / zone_size;
        let got_first = first_shard.get(&node.id).copied().unwrap_or(0) as f64;
        assert!(
            (got_first - fair_first).abs() <= 0.15 * fair_first,
            "{}: {got_first} vs {fair_first}",
            node.id
        );
    }
}

#[test]
fn extra_shards_rotate_between_zones() {
    // RS(4,3): 7 shards over 3 zones, one zone takes 3 per key; by zone rank, evenly.
    let nodes = cluster(&[3, 3, 3]);
    let layout = rs(4, 3);
    let keys = 9_000u64;
    let mut per_zone: BTreeMap<ZoneName, u64> = BTreeMap::new();
    for i in 0..keys {
        let p = must_place(&layout, &nodes, &key(i));
        assert!(!p.degraded);
        for (zone, c) in p.zone_counts(&nodes) {
            assert!(c == 2 || c == 3);
            *per_zone.entry(zone).or_default() += u64::from(c);
        }
    }
    let fair = keys as f64 * 7.0 / 3.0;
    for (zone, got) in per_zone {
        assert!((got as f64 - fair).abs() <= 0.02 * fair, "{zone}: {got}");
    }
}

#[test]
fn adding_a_node_moves_only_its_share() {
    let before = cluster(&[4, 4, 4]);
    let mut after = before.clone();
    let newcomer = NodeId(4);
    after.push(NodeInfo {
        id: newcomer,
        zone: ZoneName::from(ZONES[0]),
        available: true,
    });
    let layout = rs(3, 3);
    let keys = 10_000u64;
    let mut moved_keys = 0u64;
    let mut moved_shards = 0u64;
    for i in 0..keys {
        let old = must_place(&layout, &before, &key(i));
        let new = must_place(&layout, &after, &key(i));
        let old_set: BTreeSet<NodeId> = old.shards.iter().copied().collect();
        let new_set: BTreeSet<NodeId> = new.shards.iter().copied().collect();
        if old_set == new_set {
            assert_eq!(old, new);
            continue;
        }
        moved_keys += 1;
        // The newcomer replaced exactly one node of its own zone; nothing else changed.
        assert!(new_set.contains(&newcomer));
        assert_eq!(old_set.difference(&new_set).count(), 1);
        for (idx, (o, n)) in old.shards.iter().zip(&new.shards).enumerate() {
            if o != n {
                moved_shards += 1;
                assert_eq!(
                    zone_of(&before, *o),
                    ZoneName::from(ZONES[0]),
                    "shard {idx}"
                );
            }
        }
    }
    // The newcomer ranks among its zone's top 2 of 5 for 2/5 of the keys.
    let expected = keys as f64 * 2.0 / 5.0;
    assert!((moved_keys as f64) < expected * 1.1, "{moved_keys}");
    assert!((moved_keys as f64) > expected * 0.9, "{moved_keys}");
    // A shard moves to the newcomer, at most one more shifts between two old nodes.
    assert!(moved_shards <= 2 * moved_keys);
    assert!(moved_keys as f64 / keys as f64 <= 0.45);
}

#[test]
fn one_zone_down_with_two_nodes_per_zone() {
    let mut nodes = cluster(&[2, 2, 2]);
    for id in [200, 201] {
        set_available(&mut nodes, id, false);
    }
    let layout = rs(3, 3);
    for i in 0..500 {
        let p = must_place(&layout, &nodes, &key(i));
        assert!(p.degraded);
        assert_eq!(p.shards.len(), 6);
        let counts = p.zone_counts(&nodes);
        assert_eq!(counts.get(&ZoneName::from(ZONES[0])), Some(&3));
        assert_eq!(counts.get(&ZoneName::from(ZONES[1])), Some(&3));
        assert_eq!(counts.get(&ZoneName::from(ZONES[2])), None);
        assert_eq!(p.max_shards_per_node(), 2);
        for id in [0, 1, 100, 101] {
            let on = p.shards_on(NodeId(id)).len();
            assert!(on == 1 || on == 2, "node {id} has {on}");
        }
        assert!(meets_write_rule(&layout, &durable_all(&p, &nodes)));
    }
}

#[test]
fn one_node_down() {
    // z = 2: the short zone doubles up on its remaining node, spread stays 2/2/2.
    let mut nodes = cluster(&[2, 2, 2]);
    set_available(&mut nodes, 1, false);
    let layout = rs(3, 3);
    for i in 0..300 {
        let p = must_place(&layout, &nodes, &key(i));
        assert!(p.degraded);
        assert!(!p.shards.contains(&NodeId(1)));
        assert_eq!(p.shards_on(NodeId(0)).len(), 2);
        assert!(p.zone_counts(&nodes).values().all(|&c| c == 2));
        assert!(meets_write_rule(&layout, &durable_all(&p, &nodes)));
    }
    // z = 3, RS(5,4): 3/3/3 with one node of the short zone holding two shards.
    let mut nodes = cluster(&[3, 3, 3]);
    set_available(&mut nodes, 102, false);
    let layout = rs(5, 4);
    for i in 0..300 {
        let p = must_place(&layout, &nodes, &key(i));
        assert!(p.degraded);
        assert!(!p.shards.contains(&NodeId(102)));
        assert_eq!(p.max_shards_per_node(), 2);
        assert!(p.zone_counts(&nodes).values().all(|&c| c == 3));
    }
    // A spare node in the zone keeps the healthy spread.
    let mut nodes = cluster(&[3, 3, 3]);
    set_available(&mut nodes, 0, false);
    let layout = rs(3, 3);
    for i in 0..300 {
        let p = must_place(&layout, &nodes, &key(i));
        assert!(!p.degraded);
        assert!(!p.shards.contains(&NodeId(0)));
    }
}

#[test]
fn short_zone_shifts_shards_before_doubling() {
    // Zone a has one node; b and c have three. One shard per node is still possible.
    let nodes = cluster(&[1, 3, 3]);
    let layout = rs(3, 3);
    for i in 0..300 {
        let p = must_place(&layout, &nodes, &key(i));
        assert!(p.degraded, "zone a holds less than its even share");
        assert_eq!(p.max_shards_per_node(), 1);
        let counts = p.zone_counts(&nodes);
        assert_eq!(counts.get(&ZoneName::from(ZONES[0])), Some(&1));
        assert!(counts.values().all(|&c| c <= 3));
    }
}

#[test]
fn insufficient_nodes() {
    let layout = rs(3, 3);
    let mut nodes = cluster(&[2, 2, 2]);
    for id in [100, 101, 200, 201] {
        set_available(&mut nodes, id, false);
    }
    assert_eq!(
        place(&layout, &nodes, &key(1)),
        Err(PlacementError::InsufficientNodes {
            shards: 6,
            max_per_zone: 3,
            usable_zones: 1,
            available_nodes: 2,
        })
    );
    assert!(matches!(
        place(&layout, &[], &key(1)),
        Err(PlacementError::InsufficientNodes {
            usable_zones: 0,
            ..
        })
    ));
    // No parity: no zone may hold a shard, so nothing can be placed.
    assert_eq!(
        place(&rs(2, 0), &cluster(&[2, 2, 2]), &key(1)),
        Err(PlacementError::InsufficientNodes {
            shards: 2,
            max_per_zone: 0,
            usable_zones: 3,
            available_nodes: 6,
        })
    );
    // With k > m two zones can never hold the n shards: RS(5,4) cannot write while a zone is
    // down (the write rule would not be met), and says so.
    let mut nodes = cluster(&[3, 3, 3]);
    for id in [200, 201, 202] {
        set_available(&mut nodes, id, false);
    }
    let err = place(&rs(5, 4), &nodes, &key(1)).err();
    assert_eq!(
        err,
        Some(PlacementError::InsufficientNodes {
            shards: 9,
            max_per_zone: 4,
            usable_zones: 2,
            available_nodes: 6,
        })
    );
    assert!(
        err.as_ref().is_some_and(PlacementError::is_retryable),
        "{err:?}"
    );
    assert_eq!(err.map(|e| e.code()), Some("insufficient_nodes"));
}

#[test]
fn duplicate_nodes_are_refused() {
    let mut nodes = cluster(&[2, 2, 2]);
    nodes.push(NodeInfo {
        id: NodeId(0),
        zone: ZoneName::from("elsewhere"),
        available: true,
    });
    let err = place(&rs(3, 3), &nodes, &key(1));
    assert_eq!(err, Err(PlacementError::DuplicateNode { node: NodeId(0) }));
    assert!(err.is_err_and(|e| !e.is_retryable() && e.code() == "duplicate_node"));
}

#[test]
fn fewer_shards_than_zones() {
    let nodes = cluster(&[1, 1, 1, 1, 1]);
    let layout = rs(1, 2);
    let mut used: BTreeMap<NodeId, u32> = BTreeMap::new();
    for i in 0..1000 {
        let p = must_place(&layout, &nodes, &key(i));
        assert!(!p.degraded);
        assert_eq!(p.zone_counts(&nodes).len(), 3);
        for id in p.shards {
            *used.entry(id).or_default() += 1;
        }
    }
    assert_eq!(used.len(), 5);
    assert!(used.values().all(|&c| (500..=700).contains(&c)), "{used:?}");
}

#[test]
fn zone_counts_and_shards_on() {
    let nodes = cluster(&[2, 2, 2]);
    let p = Placement {
        shards: vec![NodeId(0), NodeId(100), NodeId(0), NodeId(999)],
        degraded: true,
    };
    let counts = p.zone_counts(&nodes);
    assert_eq!(counts.get(&ZoneName::from(ZONES[0])), Some(&2));
    assert_eq!(counts.get(&ZoneName::from(ZONES[1])), Some(&1));
    assert_eq!(counts.len(), 2, "unknown node 999 is not counted");
    assert_eq!(p.shards_on(NodeId(0)), vec![0, 2]);
    assert_eq!(p.max_shards_per_node(), 2);
    let empty = Placement {
        shards: vec![],
        degraded: false,
    };
    assert_eq!(empty.max_shards_per_node(), 0);
}

#[test]
fn write_rule_examples() {
    let layout = rs(3, 3);
    let z = |s: &str| ZoneName::from(s);
    let full: Vec<(u32, ZoneName)> = vec![
        (0, z("a")),
        (1, z("b")),
        (2, z("c")),
        (3, z("a")),
        (4, z("b")),
        (5, z("c")),
    ];
    assert!(meets_write_rule(&layout, &full));
    // Five of six: losing the zone with two still leaves three.
    assert!(meets_write_rule(&layout, &full[..5]));
    // Four: losing a zone with two leaves two.
    assert!(!meets_write_rule(&layout, &full[..4]));
    // Degraded over two zones: 3 + 3.
    let two_zones: Vec<(u32, ZoneName)> = (0..6)
        .map(|i| (i, if i % 2 == 0 { z("a") } else { z("b") }))
        .collect();
    assert!(meets_write_rule(&layout, &two_zones));
    assert!(!meets_write_rule(&layout, &two_zones[..5]));
    // All in one zone never survives that zone's loss.
    let one_zone: Vec<(u32, ZoneName)> = (0..6).map(|i| (i, z("a"))).collect();
    assert!(!meets_write_rule(&layout, &one_zone));
    // Duplicate indices count once; out-of-range indices not at all.
    let dup = vec![(0, z("a")), (0, z("b")), (1, z("c")), (2, z("c"))];
    assert!(!meets_write_rule(&layout, &dup));
    let junk = vec![
        (0, z("a")),
        (1, z("b")),
        (2, z("c")),
        (7, z("a")),
        (9, z("b")),
    ];
    assert!(!meets_write_rule(&layout, &junk));
    assert!(!meets_write_rule(&layout, &[]));
    // The same index in two zones survives the loss of either.
    let copies = rs(1, 2);
    assert!(meets_write_rule(&copies, &[(0, z("a")), (0, z("b"))]));
    assert!(!meets_write_rule(&copies, &[(0, z("a"))]));
}

/// The write rule by its definition, for every zone including ones not in `durable`.
fn write_rule_by_definition(layout: &Layout, durable: &[(u32, ZoneName)]) -> bool {
    let k = layout.data_shards() as usize;
    let n = layout.total_shards();
    let surviving = |lost: Option<&ZoneName>| -> usize {
        durable
            .iter()
            .filter(|(i, zone)| *i < n && Some(zone) != lost)
            .map(|(i, _)| *i)
            .collect::<BTreeSet<_>>()
            .len()
    };
    surviving(None) >= k && durable.iter().all(|(_, zone)| surviving(Some(zone)) >= k)
}

fn arb_cluster() -> impl Strategy<Value = Vec<NodeInfo>> {
    proptest::collection::vec(proptest::collection::vec(any::<bool>(), 0..7), 1..=5).prop_map(
        |zones| {
            let mut nodes = Vec::new();
            for (z, avail) in zones.iter().enumerate() {
                for (i, &available) in avail.iter().enumerate() {
                    nodes.push(NodeInfo {
                        id: NodeId(100 * z as u64 + i as u64),
                        zone: ZoneName::from(ZONES[z]),
                        available,
                    });
                }
            }
            nodes
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn placement_properties(
        nodes in arb_cluster(),
        k in 1u32..8,
        m in 0u32..7,
        key_bytes in any::<[u8; 16]>(),
    ) {
        let layout = rs(k, m);
        let n = layout.total_shards();
        let key = DataId::from_bytes(key_bytes);
        let mut avail_per_zone: BTreeMap<&ZoneName, u32> = BTreeMap::new();
        for node in &nodes {
            *avail_per_zone.entry(&node.zone).or_default() += u32::from(node.available);
        }
        let usable = avail_per_zone.values().filter(|&&a| a > 0).count() as u32;
        match place(&layout, &nodes, &key) {
            Err(PlacementError::InsufficientNodes { .. }) => {
                // Only when even stacking m shards on every usable zone falls short.
                prop_assert!(u64::from(usable) * u64::from(m) < u64::from(n));
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
            Ok(p) => {
                prop_assert_eq!(p.shards.len(), n as usize);
                for id in &p.shards {
                    prop_assert!(nodes.iter().any(|x| x.id == *id && x.available));
                }
                let counts = p.zone_counts(&nodes);
                prop_assert!(counts.values().all(|&c| c <= m));
                prop_assert!(meets_write_rule(&layout, &durable_all(&p, &nodes)));
                // One shard per node whenever the zone limit allows it.
                let one_each: u64 = avail_per_zone.values().map(|&a| u64::from(a.min(m))).sum();
                if one_each >= u64::from(n) {
                    prop_assert_eq!(p.max_shards_per_node(), 1);
                }
                // Healthy whenever every zone can take its even share.
                let zones = avail_per_zone.len() as u32;
                let ceil = n.div_ceil(zones);
                let healthy_possible =
                    ceil <= m && avail_per_zone.values().all(|&a| a >= ceil);
                if healthy_possible {
                    prop_assert!(!p.degraded);
                }
                if !p.degraded {
                    prop_assert_eq!(p.max_shards_per_node(), 1);
                    let floor = n / zones;
                    for zone in avail_per_zone.keys() {
                        let c = counts.get(*zone).copied().unwrap_or(0);
                        prop_assert!(c >= floor && c <= ceil);
                    }
                }
                prop_assert_eq!(place(&layout, &nodes, &key), Ok(p));
            }
        }
    }

    #[test]
    fn write_rule_matches_definition(
        k in 1u32..6,
        m in 0u32..6,
        durable in proptest::collection::vec((0u32..12, 0usize..4), 0..14),
    ) {
        let layout = rs(k, m);
        let durable: Vec<(u32, ZoneName)> =
            durable.into_iter().map(|(i, z)| (i, ZoneName::from(ZONES[z]))).collect();
        prop_assert_eq!(
            meets_write_rule(&layout, &durable),
            write_rule_by_definition(&layout, &durable)
        );
    }

    #[test]
    fn write_rule_is_monotonic(
        durable in proptest::collection::vec((0u32..9, 0usize..3), 0..12),
        extra in (0u32..9, 0usize..3),
    ) {
        let layout = rs(5, 4);
        let mut durable: Vec<(u32, ZoneName)> =
            durable.into_iter().map(|(i, z)| (i, ZoneName::from(ZONES[z]))).collect();
        let before = meets_write_rule(&layout, &durable);
        durable.push((extra.0, ZoneName::from(ZONES[extra.1])));
        prop_assert!(!before || meets_write_rule(&layout, &durable));
    }
}
