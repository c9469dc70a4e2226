//! Zone-aware rendezvous placement of a version's shards, and the write rule.
//!
//! Invariant: placement never puts more than m shards of one version in one zone, so losing any
//! one zone leaves at least k; and it never puts two shards on one node unless the available
//! nodes leave no other way to meet the zone limit (the result is then marked `degraded`).
//!
//! How: every node is ranked per key by `blake3(key || node id LE)` (highest first), every zone
//! by `blake3(key || zone name)`. Healthy case: each of the Z zones (all zones that have nodes,
//! up or down) gets floor(n/Z) or ceil(n/Z) shards, the extra shards going to zones in zone-rank
//! order, and inside a zone the shards go to its best-ranked available nodes. Shard indices are
//! dealt round-robin across zones in zone-rank order, so data shards 0..k spread over zones too.
//! Because ranks are per node, a node joining a zone only takes shards of the keys for which it
//! ranks among the zone's chosen nodes (about c/(N+1) of them for c shards on N+1 nodes).
//! Degraded case (a zone down or short of nodes): the fewest shards per node first (one, else
//! two, ...), then shards per zone as even as possible, never above m per zone.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::layout::Layout;
use crate::names::{DataId, NodeId, ZoneName};

/// What placement knows about one data node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// The failure domain the node lives in.
    pub zone: ZoneName,
    /// Whether the node can take writes now (up, healthy, not draining).
    pub available: bool,
}

/// Where the shards of one version go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The node of each shard: `shards[i]` holds shard i; `len() == n`.
    pub shards: Vec<NodeId>,
    /// True when this is not the healthy spread: some zone holds more or fewer shards than its
    /// even share, or some node holds two or more shards. Repair restores the spread later.
    pub degraded: bool,
}

impl Placement {
    /// Shards per zone, for the zones holding at least one shard. Nodes missing from `nodes`
    /// are not counted.
    pub fn zone_counts(&self, nodes: &[NodeInfo]) -> BTreeMap<ZoneName, u32> {
        let zone_of: BTreeMap<NodeId, &ZoneName> = nodes.iter().map(|n| (n.id, &n.zone)).collect();
        let mut counts = BTreeMap::new();
        for node in &self.shards {
            if let Some(zone) = zone_of.get(node) {
                *counts.entry((*zone).clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The shard indices placed on `node`, ascending.
    pub fn shards_on(&self, node: NodeId) -> Vec<u32> {
        (0u32..)
            .zip(&self.shards)
            .filter(|(_, n)| **n == node)
            .map(|(i, _)| i)
            .collect()
    }

    /// The largest number of shards any one node holds (0 for an empty placement).
    pub fn max_shards_per_node(&self) -> u32 {
        let mut per_node: BTreeMap<NodeId, u32> = BTreeMap::new();
        for node in &self.shards {
            *per_node.entry(*node).or_insert(0) += 1;
        }
        per_node.into_values().max().unwrap_or(0)
    }
}

/// Why no placement exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The available nodes cannot hold n shards with at most m per zone (for example only one
    /// zone is up). Retryable: it passes when nodes or zones come back.
    #[error(
        "cannot place {shards} shards with at most {max_per_zone} per zone on {available_nodes} \
         available nodes in {usable_zones} zones"
    )]
    InsufficientNodes {
        /// n, the shards to place.
        shards: u32,
        /// m, the most one zone may hold.
        max_per_zone: u32,
        /// Zones with at least one available node.
        usable_zones: u32,
        /// Available nodes in all zones.
        available_nodes: u32,
    },
    /// The node list names one node twice; the membership given to placement is inconsistent.
    #[error("node {node} appears more than once in the node list")]
    DuplicateNode {
        /// The repeated id.
        node: NodeId,
    },
}

impl PlacementError {
    /// A stable, short identifier of the error kind for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            PlacementError::InsufficientNodes { .. } => "insufficient_nodes",
            PlacementError::DuplicateNode { .. } => "duplicate_node",
        }
    }

    /// Whether the same request may succeed later without a change on the caller's side.
    pub fn is_retryable(&self) -> bool {
        match self {
            PlacementError::InsufficientNodes { .. } => true,
            PlacementError::DuplicateNode { .. } => false,
        }
    }
}

/// Rendezvous score of `node` for `key`; higher ranks first.
fn node_score(key: &DataId, node: NodeId) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(key.as_bytes());
    hasher.update(&node.0.to_le_bytes());
    *hasher.finalize().as_bytes()
}

/// Rendezvous score of `zone` for `key`; decides which zones take the extra shards and the
/// order in which zones receive shard indices.
fn zone_score(key: &DataId, zone: &ZoneName) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(key.as_bytes());
    hasher.update(zone.0.as_bytes());
    *hasher.finalize().as_bytes()
}

/// One zone during placement: its available nodes best-ranked first, and its shard count.
struct ZoneSlots<'a> {
    ranked_nodes: Vec<NodeId>,
    count: u32,
    zone: &'a ZoneName,
}

/// Chooses the node of every shard of the version stored under `key`; see the module doc.
pub fn place(
    layout: &Layout,
    nodes: &[NodeInfo],
    key: &DataId,
) -> Result<Placement, PlacementError> {
    let mut seen = BTreeSet::new();
    for node in nodes {
        if !seen.insert(node.id) {
            return Err(PlacementError::DuplicateNode { node: node.id });
        }
    }

    let mut by_zone: BTreeMap<&ZoneName, Vec<NodeId>> = BTreeMap::new();
    for node in nodes {
        let available = by_zone.entry(&node.zone).or_default();
        if node.available {
            available.push(node.id);
        }
    }
    let mut zones: Vec<ZoneSlots<'_>> = by_zone
        .into_iter()
        .map(|(zone, mut ranked_nodes)| {
            ranked_nodes.sort_by_cached_key(|id| (Reverse(node_score(key, *id)), *id));
            ZoneSlots {
                ranked_nodes,
                count: 0,
                zone,
            }
        })
        .collect();
    zones.sort_by_cached_key(|z| (Reverse(zone_score(key, z.zone)), z.zone.clone()));

    let n = layout.total_shards();
    let insufficient = || PlacementError::InsufficientNodes {
        shards: n,
        max_per_zone: layout.parity_shards(),
        usable_zones: count_u32(zones.iter().filter(|z| !z.ranked_nodes.is_empty()).count()),
        available_nodes: count_u32(zones.iter().map(|z| z.ranked_nodes.len()).sum()),
    };
    let available: Vec<u32> = zones
        .iter()
        .map(|z| count_u32(z.ranked_nodes.len()))
        .collect();
    let (per_node, counts) =
        spread_counts(n, layout.parity_shards(), &available).ok_or_else(insufficient)?;
    for (zone, count) in zones.iter_mut().zip(counts) {
        zone.count = count;
    }

    let zone_total = count_u32(zones.len());
    let (floor, ceil) = (n / zone_total, n.div_ceil(zone_total));
    let even = zones.iter().all(|z| (floor..=ceil).contains(&z.count));
    let degraded = per_node > 1 || !even;

    // Deal shard indices round-robin over zones in rank order; inside a zone, slot j goes to
    // the j-th best-ranked node, wrapping round when the zone must double up.
    let mut shards = Vec::with_capacity(n as usize);
    let mut round = 0usize;
    while shards.len() < n as usize {
        for zone in &zones {
            if round < zone.count as usize {
                shards.push(zone.ranked_nodes[round % zone.ranked_nodes.len()]);
            }
        }
        round += 1;
    }
    Ok(Placement { shards, degraded })
}

/// A count that came from a `u32`-bounded quantity (nodes, zones) as `u32`, saturating.
fn count_u32(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Shards per zone for `n` shards over zones with `available[i]` nodes, at most `max_per_zone`
/// per zone: the smallest per-node load that fits, then the most even spread, extra shards to
/// zones in the given (rank) order. Returns the per-node load and the counts, or `None`.
fn spread_counts(n: u32, max_per_zone: u32, available: &[u32]) -> Option<(u32, Vec<u32>)> {
    let total_available: u64 = available.iter().map(|&a| u64::from(a)).sum();
    if total_available == 0 {
        return None;
    }
    // Loads above max_per_zone cannot raise any zone's capacity further.
    for per_node in 1..=max_per_zone {
        let caps: Vec<u32> = available
            .iter()
            .map(|&a| {
                let by_nodes = u64::from(a) * u64::from(per_node);
                u32::try_from(by_nodes.min(u64::from(max_per_zone))).unwrap_or(max_per_zone)
            })
            .collect();
        if caps.iter().map(|&c| u64::from(c)).sum::<u64>() >= u64::from(n) {
            return Some((per_node, water_fill(n, &caps)));
        }
    }
    None
}

/// Distributes `n` (at most the sum of `caps`) as evenly as the caps allow: find the lowest
/// level t with sum(min(cap, t)) >= n, give every zone min(cap, t - 1), then one more to zones
/// that can reach t, in order.
fn water_fill(n: u32, caps: &[u32]) -> Vec<u32> {
    let filled = |level: u32| -> u64 { caps.iter().map(|&c| u64::from(c.min(level))).sum() };
    let top = caps.iter().copied().max().unwrap_or(0);
    let level = (1..=top)
        .find(|&t| filled(t) >= u64::from(n))
        .unwrap_or(top);
    let mut counts: Vec<u32> = caps
        .iter()
        .map(|&c| c.min(level.saturating_sub(1)))
        .collect();
    let mut rest = n.saturating_sub(counts.iter().sum());
    for (count, &cap) in counts.iter_mut().zip(caps) {
        if rest == 0 {
            break;
        }
        if cap >= level {
            *count += 1;
            rest -= 1;
        }
    }
    counts
}

/// The write rule: whether the durable shards alone survive the loss of any one zone, i.e. at
/// least k distinct shard indices remain when every shard of any single zone is gone (and at
/// least k exist at all). Indices >= n are ignored; one index durable in two zones counts once.
pub fn meets_write_rule(layout: &Layout, durable: &[(u32, ZoneName)]) -> bool {
    let n = layout.total_shards();
    let k = layout.data_shards() as usize;
    let valid: Vec<&(u32, ZoneName)> = durable.iter().filter(|(i, _)| *i < n).collect();
    let all: BTreeSet<u32> = valid.iter().map(|(i, _)| *i).collect();
    if all.len() < k {
        return false;
    }
    let zones: BTreeSet<&ZoneName> = valid.iter().map(|(_, z)| z).collect();
    zones.into_iter().all(|lost| {
        let outside: BTreeSet<u32> = valid
            .iter()
            .filter(|(_, z)| z != lost)
            .map(|(i, _)| *i)
            .collect();
        outside.len() >= k
    })
}

#[cfg(test)]
#[path = "placement_test.rs"]
mod tests;
