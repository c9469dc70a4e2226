//! Repair planning: from what is known of one blob's shard copies and of the cluster, decide
//! whether to rebuild, wait, or give up, and where every shard should live afterwards.
//!
//! Invariant: a plan never writes to a node that is dead, draining or suspect (holds a copy of
//! unknown health); never drops the last healthy copy of an index (every index of a new
//! placement either keeps a healthy copy or is rebuilt from at least k healthy sources); never
//! makes a placement with more than m shards in one zone; and is idempotent: once the plan's
//! placement is stored, planning again with the same cluster yields [`RepairAction::None`].
//!
//! How: the target is [`place`] over the nodes that can take writes. If the healthy copies
//! already form a full spread they stay. Otherwise, on a healthy cluster, the new placement
//! gives each zone the target's shard count and keeps as many healthy copies as those counts
//! allow (copies on their target node first, then a maximum flow), so a lost shard costs
//! exactly one write in its own zone and a degraded blob moves only its surplus. On a degraded
//! cluster (a zone down or short of nodes) healthy copies stay where they are and only missing
//! indices are written, within the target's per-node load and m per zone; when the copies
//! themselves break those limits the target is taken as is.

use std::collections::{BTreeMap, BTreeSet};

use crate::layout::Layout;
use crate::names::{DataId, NodeId, ZoneName};
use crate::placement::{NodeInfo, Placement, place};

/// What the last check found about one copy of one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShardHealth {
    /// Present and its checksums verify.
    Ok,
    /// The node answered but has no such shard.
    Missing,
    /// Present but a checksum does not verify.
    Corrupt,
    /// The node holding it is dead; the copy is gone.
    Lost,
    /// The node holding it is suspect or unreachable; the copy may come back.
    Unknown,
}

/// One copy of one shard as the metadata records it, with its health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardState {
    /// The shard index, 0..n (data shards first).
    pub index: u32,
    /// The node the copy is recorded on.
    pub node: NodeId,
    /// What the last check found.
    pub health: ShardHealth,
}

/// What the repair planner knows about one data node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairNode {
    /// The node's id.
    pub id: NodeId,
    /// The failure domain the node lives in.
    pub zone: ZoneName,
    /// Whether membership considers the node up; copies on dead nodes are gone.
    pub alive: bool,
    /// Whether the node is being emptied: still readable, never a target.
    pub draining: bool,
}

/// What to do about a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairAction {
    /// Nothing: the stored copies already are the plan's placement.
    None,
    /// Write the plan's `writes` from its `sources`, then record its `placement`.
    Rebuild,
    /// Do nothing now and plan again later.
    Wait(WaitReason),
    /// Fewer than k indices are readable and no suspect node can change that.
    Unrecoverable,
}

/// Why a repair waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// Some copy sits on a suspect node that may just be slow, and rebuilding around it is
    /// either unnecessary now (spare >= 1) or impossible without it (fewer than k healthy).
    SuspectNode,
    /// The nodes that can take writes cannot hold the blob with at most m shards per zone.
    NoPlacement,
}

/// The outcome of [`plan`] for one blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairPlan {
    /// What to do.
    pub action: RepairAction,
    /// Distinct shard indices with a healthy copy (Ok, on a live node).
    pub healthy: u32,
    /// `healthy - k`: how many more losses the blob survives; negative means unreadable.
    pub spare: i32,
    /// Every index is healthy and the copies on nodes that can take writes form the full spread.
    pub full_redundancy: bool,
    /// One healthy copy per readable index, ascending index (so data indices < k come first),
    /// preferring copies that stay in the new placement.
    pub sources: Vec<(u32, NodeId)>,
    /// The shards to (re)build: (index, target node), ascending index.
    pub writes: Vec<(u32, NodeId)>,
    /// The placement once the writes are done: one entry per index 0..n, ascending. For `Wait`
    /// and `Unrecoverable`, the current healthy copies (one per readable index) instead.
    pub placement: Vec<(u32, NodeId)>,
    /// Whether `placement` is not the full spread (see [`is_full_spread`]).
    pub degraded: bool,
}

/// Whether `placement` is the spread [`place`] gives a healthy cluster: exactly one node for
/// every index 0..n, no node twice, no node draining or absent from `nodes`, and each zone
/// with a node in `nodes` (alive or not) holding floor(n/Z) or ceil(n/Z) shards and at most m.
/// Liveness is health, not shape: a shard on a dead node does not make the spread uneven.
/// A node list naming a node twice has no full spread (placement refuses it too).
pub fn is_full_spread(layout: &Layout, placement: &[(u32, NodeId)], nodes: &[RepairNode]) -> bool {
    let n = layout.total_shards();
    if placement.len() != n as usize {
        return false;
    }
    let mut by_id: BTreeMap<NodeId, &RepairNode> = BTreeMap::new();
    for node in nodes {
        if by_id.insert(node.id, node).is_some() {
            return false;
        }
    }
    let mut per_zone: BTreeMap<&ZoneName, u32> = nodes.iter().map(|node| (&node.zone, 0)).collect();
    let (mut indices, mut used) = (BTreeSet::new(), BTreeSet::new());
    for &(index, id) in placement {
        if index >= n || !indices.insert(index) || !used.insert(id) {
            return false;
        }
        match by_id.get(&id) {
            Some(node) if !node.draining => *per_zone.entry(&node.zone).or_insert(0) += 1,
            _ => return false,
        }
    }
    let zones = u32::try_from(per_zone.len()).unwrap_or(u32::MAX);
    if zones == 0 {
        return false;
    }
    let (floor, ceil) = (n / zones, n.div_ceil(zones));
    let limit = ceil.min(layout.parity_shards());
    per_zone
        .values()
        .all(|&count| floor <= count && count <= limit)
}

/// Plans the repair of the blob `data_id` stored with `layout`, whose recorded copies and
/// their health are `shards`, on the cluster `nodes`; see the module doc. Records with an
/// index >= n are ignored. Nodes holding an `Unknown` copy are treated as suspect: never a
/// target, their copies never kept.
pub fn plan(
    layout: &Layout,
    data_id: &DataId,
    shards: &[ShardState],
    nodes: &[RepairNode],
) -> RepairPlan {
    let survey = Survey::new(layout, shards, nodes);
    let target = place(layout, &survey.node_infos(), data_id);
    let current = survey.current(target.as_ref().ok());
    let n = layout.total_shards();
    let k = layout.data_shards();
    let full_redundancy = survey.healthy == n
        && current.iter().all(|&(_, id)| survey.available(id))
        && is_full_spread(layout, &current, nodes);

    if full_redundancy && survey.records == current.iter().copied().collect() {
        return survey.finish(RepairAction::None, full_redundancy, current, Vec::new());
    }
    if survey.healthy < k {
        // Suspect copies may yet make the blob readable; only give up when they cannot.
        let suspect_only = (0..n)
            .filter(|&i| survey.unknown.contains(&i) && survey.healthy_on[i as usize].is_empty())
            .count();
        let action = if survey.healthy as usize + suspect_only >= k as usize && suspect_only > 0 {
            RepairAction::Wait(WaitReason::SuspectNode)
        } else {
            RepairAction::Unrecoverable
        };
        return survey.finish(action, full_redundancy, current, Vec::new());
    }
    if !survey.unknown.is_empty() && survey.spare >= 1 {
        let action = RepairAction::Wait(WaitReason::SuspectNode);
        return survey.finish(action, full_redundancy, current, Vec::new());
    }
    let Ok(target) = target else {
        let action = RepairAction::Wait(WaitReason::NoPlacement);
        return survey.finish(action, full_redundancy, current, Vec::new());
    };

    let chosen: Vec<NodeId> = if full_redundancy {
        // The copies already form a full spread; only extra records go.
        current.iter().map(|&(_, id)| id).collect()
    } else if target.degraded {
        survey.degraded_placement(&target)
    } else {
        survey.spread_placement(&target)
    };
    let placement: Vec<(u32, NodeId)> = (0u32..).zip(chosen).collect();
    let writes: Vec<(u32, NodeId)> = placement
        .iter()
        .copied()
        .filter(|&(i, id)| !survey.healthy_on[i as usize].contains(&id))
        .collect();
    let changed = survey.records != placement.iter().copied().collect();
    let action = if writes.is_empty() && !changed {
        RepairAction::None
    } else {
        RepairAction::Rebuild
    };
    survey.finish(action, full_redundancy, placement, writes)
}

/// Everything `plan` derives from its inputs before choosing: membership, healthy copies,
/// suspects and the recorded copies.
struct Survey<'a> {
    layout: &'a Layout,
    nodes: &'a [RepairNode],
    /// The first entry of each node id.
    by_id: BTreeMap<NodeId, &'a RepairNode>,
    /// Nodes holding a copy of unknown health.
    suspect: BTreeSet<NodeId>,
    /// `healthy_on[i]`: the nodes with a healthy copy of index i (every record of that copy
    /// says Ok and the node is alive).
    healthy_on: Vec<BTreeSet<NodeId>>,
    /// Indices with a copy of unknown health.
    unknown: BTreeSet<u32>,
    /// Every recorded (index, node) with index < n.
    records: BTreeSet<(u32, NodeId)>,
    healthy: u32,
    spare: i32,
}

impl<'a> Survey<'a> {
    fn new(layout: &'a Layout, shards: &[ShardState], nodes: &'a [RepairNode]) -> Self {
        let n = layout.total_shards();
        let mut by_id = BTreeMap::new();
        for node in nodes {
            by_id.entry(node.id).or_insert(node);
        }
        let mut all_ok: BTreeMap<(u32, NodeId), bool> = BTreeMap::new();
        let (mut suspect, mut unknown) = (BTreeSet::new(), BTreeSet::new());
        for shard in shards.iter().filter(|s| s.index < n) {
            let ok = all_ok.entry((shard.index, shard.node)).or_insert(true);
            *ok &= shard.health == ShardHealth::Ok;
            if shard.health == ShardHealth::Unknown {
                suspect.insert(shard.node);
                unknown.insert(shard.index);
            }
        }
        let mut healthy_on = vec![BTreeSet::new(); n as usize];
        for (&(index, id), &ok) in &all_ok {
            if ok && by_id.get(&id).is_some_and(|node: &&RepairNode| node.alive) {
                healthy_on[index as usize].insert(id);
            }
        }
        let healthy = healthy_on
            .iter()
            .filter(|copies| !copies.is_empty())
            .count();
        // n <= 255, so both counts fit any integer type.
        let healthy = u32::try_from(healthy).unwrap_or(u32::MAX);
        let spare = i64::from(healthy) - i64::from(layout.data_shards());
        Survey {
            layout,
            nodes,
            by_id,
            suspect,
            healthy_on,
            unknown,
            records: all_ok.into_keys().collect(),
            healthy,
            spare: i32::try_from(spare).unwrap_or(i32::MIN),
        }
    }

    /// Whether `id` can take writes and keep shards: alive, not draining, not suspect.
    fn available(&self, id: NodeId) -> bool {
        !self.suspect.contains(&id)
            && self
                .by_id
                .get(&id)
                .is_some_and(|node| node.alive && !node.draining)
    }

    fn zone(&self, id: NodeId) -> Option<&'a ZoneName> {
        self.by_id.get(&id).map(|node| &node.zone)
    }

    /// Whether index `i` has a healthy copy on `id` that can stay there.
    fn keepable(&self, i: usize, id: NodeId) -> bool {
        self.healthy_on[i].contains(&id) && self.available(id)
    }

    /// The membership as placement sees it, in input order (duplicates included, so that
    /// placement reports them).
    fn node_infos(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .map(|node| NodeInfo {
                id: node.id,
                zone: node.zone.clone(),
                available: node.alive && !node.draining && !self.suspect.contains(&node.id),
            })
            .collect()
    }

    /// One healthy copy per readable index: the copy on the target node if any, else one on a
    /// node that can keep it, else any; among equals a node not chosen yet, then the lowest id.
    fn current(&self, target: Option<&Placement>) -> Vec<(u32, NodeId)> {
        let mut chosen = BTreeSet::new();
        let mut current = Vec::new();
        for (i, copies) in (0u32..).zip(&self.healthy_on) {
            let on_target = target.and_then(|t| t.shards.get(i as usize)).copied();
            let best = copies.iter().copied().min_by_key(|&id| {
                (
                    Some(id) != on_target,
                    !self.available(id),
                    chosen.contains(&id),
                    id,
                )
            });
            if let Some(id) = best {
                chosen.insert(id);
                current.push((i, id));
            }
        }
        current
    }

    /// The new placement on a healthy cluster: each zone holds exactly the target's count of
    /// shards, on distinct available nodes, so the result is a full spread. Copies on their
    /// target node stay; then as many other healthy copies as the zones' room allows (a
    /// maximum flow: index -> node holding a copy -> zone); the rest go to their target node
    /// when it is free and its zone has room, else to a free target node of a zone with room.
    fn spread_placement(&self, target: &Placement) -> Vec<NodeId> {
        let t = &target.shards;
        let mut chosen: Vec<Option<NodeId>> = (0..t.len())
            .map(|i| Some(t[i]).filter(|&id| self.keepable(i, id)))
            .collect();
        let mut room: BTreeMap<&ZoneName, u32> = BTreeMap::new();
        for zone in t.iter().filter_map(|&id| self.zone(id)) {
            *room.entry(zone).or_insert(0) += 1;
        }
        let mut used = BTreeSet::new();
        let take = |id: NodeId, used: &mut BTreeSet<NodeId>, room: &mut BTreeMap<_, u32>| {
            used.insert(id);
            if let Some(left) = self.zone(id).and_then(|zone| room.get_mut(zone)) {
                *left = left.saturating_sub(1);
            }
        };
        for &id in chosen.iter().flatten() {
            take(id, &mut used, &mut room);
        }
        for (i, id) in self.keep_most(&chosen, &used, &room) {
            chosen[i] = Some(id);
            take(id, &mut used, &mut room);
        }
        let has_room = |id: NodeId, room: &BTreeMap<_, u32>| {
            self.zone(id)
                .and_then(|zone| room.get(zone))
                .is_some_and(|&left| left > 0)
        };
        for i in 0..t.len() {
            if chosen[i].is_none() && !used.contains(&t[i]) && has_room(t[i], &room) {
                chosen[i] = Some(t[i]);
                take(t[i], &mut used, &mut room);
            }
        }
        let mut placement = Vec::with_capacity(t.len());
        for slot in chosen {
            let node = match slot {
                Some(node) => node,
                None => {
                    // A zone with room r has at least r free target nodes: it has as many
                    // target nodes as shards, and each taken slot used at most one of them.
                    let free = t
                        .iter()
                        .copied()
                        .find(|&id| !used.contains(&id) && has_room(id, &room));
                    let Some(free) = free else {
                        return t.clone();
                    };
                    take(free, &mut used, &mut room);
                    free
                }
            };
            placement.push(node);
        }
        placement
    }

    /// The most healthy copies of the unplaced indices that can stay: one index per node, at
    /// most `room` per zone, never a node in `used`. Returns (index, node) pairs.
    fn keep_most(
        &self,
        chosen: &[Option<NodeId>],
        used: &BTreeSet<NodeId>,
        room: &BTreeMap<&ZoneName, u32>,
    ) -> Vec<(usize, NodeId)> {
        let mut network = FlowNetwork::default();
        let source = network.vertex();
        let sink = network.vertex();
        let mut node_vertex: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut zone_vertex: BTreeMap<&ZoneName, usize> = BTreeMap::new();
        let mut keep_edges = Vec::new();
        for (i, _) in chosen.iter().enumerate().filter(|(_, c)| c.is_none()) {
            let index_vertex = network.vertex();
            network.add_edge(source, index_vertex, 1);
            for &id in &self.healthy_on[i] {
                if !self.keepable(i, id) || used.contains(&id) {
                    continue;
                }
                let Some((zone, &left)) = self.zone(id).and_then(|z| room.get_key_value(z)) else {
                    continue;
                };
                if left == 0 {
                    continue;
                }
                let zone_v = match zone_vertex.get(zone) {
                    Some(&v) => v,
                    None => {
                        let v = network.vertex();
                        network.add_edge(v, sink, left);
                        zone_vertex.insert(zone, v);
                        v
                    }
                };
                let node_v = match node_vertex.get(&id) {
                    Some(&v) => v,
                    None => {
                        let v = network.vertex();
                        network.add_edge(v, zone_v, 1);
                        node_vertex.insert(id, v);
                        v
                    }
                };
                keep_edges.push((i, id, network.add_edge(index_vertex, node_v, 1)));
            }
        }
        network.max_flow(source, sink);
        keep_edges
            .into_iter()
            .filter(|&(_, _, edge)| network.carries(edge))
            .map(|(i, id, _)| (i, id))
            .collect()
    }

    /// The new placement on a degraded cluster: healthy copies stay (the one on the target
    /// node first, else the least loaded), missing indices go to their target node or, when
    /// that would exceed the target's per-node load or m in the zone, to the least loaded node
    /// that fits. When the kept copies alone break those limits, or nothing fits, the target.
    fn degraded_placement(&self, target: &Placement) -> Vec<NodeId> {
        let t = &target.shards;
        let max_per_node = target.max_shards_per_node();
        let max_per_zone = self.layout.parity_shards();
        let mut chosen: Vec<Option<NodeId>> = (0..t.len())
            .map(|i| Some(t[i]).filter(|&id| self.keepable(i, id)))
            .collect();
        let mut load: BTreeMap<NodeId, u32> = BTreeMap::new();
        for id in chosen.iter().flatten() {
            *load.entry(*id).or_insert(0) += 1;
        }
        for (i, slot) in chosen.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let kept = self.healthy_on[i]
                .iter()
                .copied()
                .filter(|&id| self.keepable(i, id))
                .min_by_key(|id| (load.get(id).copied().unwrap_or(0), *id));
            if let Some(id) = kept {
                *slot = Some(id);
                *load.entry(id).or_insert(0) += 1;
            }
        }
        let mut zone_load: BTreeMap<&ZoneName, u32> = BTreeMap::new();
        for (&id, &count) in &load {
            if let Some(zone) = self.zone(id) {
                *zone_load.entry(zone).or_insert(0) += count;
            }
        }
        if load.values().any(|&c| c > max_per_node) || zone_load.values().any(|&c| c > max_per_zone)
        {
            return t.clone();
        }

        let open: Vec<NodeId> = self
            .by_id
            .keys()
            .copied()
            .filter(|&id| self.available(id))
            .collect();
        let fits = |id: NodeId, load: &BTreeMap<NodeId, u32>, zone_load: &BTreeMap<_, u32>| {
            self.zone(id).is_some_and(|zone| {
                load.get(&id).copied().unwrap_or(0) < max_per_node
                    && zone_load.get(zone).copied().unwrap_or(0) < max_per_zone
            })
        };
        let mut placement = Vec::with_capacity(t.len());
        for (slot, &wanted) in chosen.iter().zip(t) {
            if let Some(id) = *slot {
                placement.push(id);
                continue;
            }
            let node = if fits(wanted, &load, &zone_load) {
                Some(wanted)
            } else {
                open.iter()
                    .copied()
                    .filter(|&id| fits(id, &load, &zone_load))
                    .min_by_key(|id| {
                        let zone = self.zone(*id);
                        (
                            load.get(id).copied().unwrap_or(0),
                            zone.and_then(|z| zone_load.get(z)).copied().unwrap_or(0),
                            *id,
                        )
                    })
            };
            let (Some(node), Some(zone)) = (node, node.and_then(|id| self.zone(id))) else {
                return t.clone();
            };
            *load.entry(node).or_insert(0) += 1;
            *zone_load.entry(zone).or_insert(0) += 1;
            placement.push(node);
        }
        placement
    }

    /// The plan with `placement` and `writes`, adding sources and `degraded`.
    fn finish(
        &self,
        action: RepairAction,
        full_redundancy: bool,
        placement: Vec<(u32, NodeId)>,
        writes: Vec<(u32, NodeId)>,
    ) -> RepairPlan {
        let placed: BTreeMap<u32, NodeId> = placement.iter().copied().collect();
        let sources = (0u32..)
            .zip(&self.healthy_on)
            .filter_map(|(i, copies)| {
                let source = copies.iter().copied().min_by_key(|&id| {
                    (
                        placed.get(&i) != Some(&id),
                        !self.available(id),
                        self.suspect.contains(&id),
                        id,
                    )
                })?;
                Some((i, source))
            })
            .collect();
        RepairPlan {
            action,
            healthy: self.healthy,
            spare: self.spare,
            full_redundancy,
            sources,
            writes,
            degraded: !is_full_spread(self.layout, &placement, self.nodes),
            placement,
        }
    }
}

/// A small flow network for unit augmenting paths; edge `e ^ 1` is the residual of edge `e`.
#[derive(Default)]
struct FlowNetwork {
    /// (head, residual capacity) of every edge.
    edges: Vec<(usize, u32)>,
    /// The edges leaving each vertex.
    adjacent: Vec<Vec<usize>>,
}

impl FlowNetwork {
    /// A new vertex.
    fn vertex(&mut self) -> usize {
        self.adjacent.push(Vec::new());
        self.adjacent.len() - 1
    }

    /// An edge `from -> to` of `capacity`; returns its id.
    fn add_edge(&mut self, from: usize, to: usize, capacity: u32) -> usize {
        let id = self.edges.len();
        self.edges.push((to, capacity));
        self.edges.push((from, 0));
        self.adjacent[from].push(id);
        self.adjacent[to].push(id + 1);
        id
    }

    /// Whether the (unit) edge `edge` carries flow.
    fn carries(&self, edge: usize) -> bool {
        self.edges.get(edge ^ 1).is_some_and(|&(_, back)| back > 0)
    }

    /// Pushes unit flows from `source` to `sink` until none is left (Ford-Fulkerson; the
    /// flow is at most n <= 255).
    fn max_flow(&mut self, source: usize, sink: usize) {
        loop {
            let mut visited = vec![false; self.adjacent.len()];
            if !self.augment(source, sink, &mut visited) {
                break;
            }
        }
    }

    /// Finds one augmenting path from `vertex` by depth-first search and pushes a unit on it.
    fn augment(&mut self, vertex: usize, sink: usize, visited: &mut [bool]) -> bool {
        if vertex == sink {
            return true;
        }
        visited[vertex] = true;
        for position in 0..self.adjacent[vertex].len() {
            let edge = self.adjacent[vertex][position];
            let (head, capacity) = self.edges[edge];
            if capacity == 0 || visited[head] {
                continue;
            }
            if self.augment(head, sink, visited) {
                self.edges[edge].1 -= 1;
                self.edges[edge ^ 1].1 += 1;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
#[path = "repair_test.rs"]
mod tests;
