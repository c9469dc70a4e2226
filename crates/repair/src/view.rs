//! The cluster as one pass sees it: every registered data node with its zone, liveness and
//! state, meta's applied log index read before any node was listed, and the exact shard copies
//! each live node listed.
//!
//! Invariant: a placed copy counts as healthy only against the manifest, never on the node's
//! word alone: its node is alive and answered its listing, and lists exactly the placement's
//! generation with the manifest's digest and chunk count. A listed copy of the same index on the
//! same node under another generation satisfies nothing. And because `applied_index` was read
//! (after meta's read barrier) before the first listing began, every placement applied at or
//! below it names copies that were durable before the listings: their absence is real.

use std::collections::{BTreeMap, HashMap, HashSet};

use tessera_client::data::ListedShard;
use tessera_client::{DataClient, MetaClient, MetaClientError, ShardId};
use tessera_core::blob::{ErasureBlob, ShardCopy};
use tessera_core::names::{NodeId, ZoneName};
use tessera_core::repair::{RepairNode, ShardHealth};
use tessera_proto::meta::v1 as pb;
use tracing::warn;

/// What meta's membership says of a data node's heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Heartbeats arrive.
    Alive,
    /// Heartbeats stopped a little while ago: its copies may come back.
    Suspect,
    /// Heartbeats stopped long ago: its copies count as lost.
    Dead,
}

impl Liveness {
    /// The liveness a status names; an unknown value counts as dead (never trusted, never a
    /// target).
    fn from_pb(value: i32) -> Liveness {
        match pb::Liveness::try_from(value) {
            Ok(pb::Liveness::Alive) => Liveness::Alive,
            Ok(pb::Liveness::Suspect) => Liveness::Suspect,
            Ok(pb::Liveness::Dead) | Err(_) => Liveness::Dead,
        }
    }
}

/// One registered data node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// Its id.
    pub id: NodeId,
    /// Its failure domain.
    pub zone: ZoneName,
    /// Where it serves.
    pub addr: String,
    /// Whether its heartbeats arrive.
    pub liveness: Liveness,
    /// Whether it is being emptied (readable, never a target).
    pub draining: bool,
}

/// What one node listed: every stored copy by its exact id.
pub type Listing = HashMap<ShardId, ListedShard>;

/// The registered nodes, the applied index and the listings of the nodes that answered.
#[derive(Debug, Default)]
pub struct ClusterView {
    /// Every registered data node.
    pub nodes: BTreeMap<NodeId, NodeView>,
    /// Meta's applied log index, read before the listings: placements applied above it are too
    /// new to be judged by them.
    pub applied_index: u64,
    /// The listings of the alive nodes that answered.
    pub listings: HashMap<NodeId, Listing>,
    /// Alive nodes whose listing failed: their copies are of unknown health this pass.
    pub unlisted: HashSet<NodeId>,
}

impl ClusterView {
    /// The membership and applied index of a cluster status, without listings.
    pub fn from_status(status: &pb::ClusterStatusResponse) -> ClusterView {
        let mut nodes = BTreeMap::new();
        for s in &status.data_nodes {
            let Some(node) = &s.node else { continue };
            let id = NodeId(node.node_id);
            nodes.insert(
                id,
                NodeView {
                    id,
                    zone: ZoneName(node.zone.clone()),
                    addr: node.addr.clone(),
                    liveness: Liveness::from_pb(s.liveness),
                    draining: node.state == pb::NodeState::Draining as i32,
                },
            );
        }
        ClusterView {
            nodes,
            applied_index: status.applied_index,
            ..ClusterView::default()
        }
    }

    /// Reads the membership and the applied index from meta (one linearizable status call);
    /// call it before listing.
    pub async fn load(meta: &MetaClient) -> Result<ClusterView, MetaClientError> {
        Ok(ClusterView::from_status(&meta.cluster_status().await?))
    }

    /// Lists the shards of every alive node, concurrently.
    pub async fn list_shards(&mut self, data: &DataClient) {
        let alive: Vec<(NodeId, String)> = self
            .nodes
            .values()
            .filter(|n| n.liveness == Liveness::Alive)
            .map(|n| (n.id, n.addr.clone()))
            .collect();
        let calls = alive.into_iter().map(|(id, addr)| {
            let data = data.clone();
            async move { (id, data.list_shards(&addr).await) }
        });
        for (id, result) in futures::future::join_all(calls).await {
            match result {
                Ok(shards) => self.add_listing(id, shards),
                Err(e) => {
                    warn!(node = id.0, code = e.code(), error = %e,
                        "listing shards failed; node skipped this pass");
                    self.unlisted.insert(id);
                }
            }
        }
    }

    /// Records what `node` listed.
    pub fn add_listing(&mut self, node: NodeId, shards: Vec<ListedShard>) {
        let listing: Listing = shards.into_iter().map(|s| (s.id, s)).collect();
        self.unlisted.remove(&node);
        self.listings.insert(node, listing);
    }

    /// The nodes as the planner sees them: alive means heartbeats arrive and the listing worked.
    pub fn repair_nodes(&self) -> Vec<RepairNode> {
        self.nodes
            .values()
            .map(|n| RepairNode {
                id: n.id,
                zone: n.zone.clone(),
                alive: self.is_reachable(n.id),
                draining: n.draining,
            })
            .collect()
    }

    /// The health of the placed copy `copy` of `blob`, judged against the manifest (see the
    /// module invariant).
    pub fn health(&self, blob: &ErasureBlob, copy: &ShardCopy) -> ShardHealth {
        let Some(node) = self.nodes.get(&copy.node) else {
            return ShardHealth::Lost;
        };
        match node.liveness {
            Liveness::Dead => return ShardHealth::Lost,
            Liveness::Suspect => return ShardHealth::Unknown,
            Liveness::Alive => {}
        }
        let Some(listing) = self.listings.get(&copy.node) else {
            return ShardHealth::Unknown;
        };
        let Some(listed) = listing.get(&ShardId::of_copy(blob.data_id, copy)) else {
            return ShardHealth::Missing;
        };
        let digest_matches = blob
            .digest_of(copy.shard_index)
            .is_some_and(|expected| *expected == listed.digest);
        if digest_matches && listed.chunks == blob.chunks_per_shard {
            ShardHealth::Ok
        } else {
            ShardHealth::Corrupt
        }
    }

    /// The address of a node.
    pub fn addr(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(&node).map(|n| n.addr.as_str())
    }

    /// Whether a node is registered at all (a copy on an unregistered node is gone for good).
    pub fn is_registered(&self, node: NodeId) -> bool {
        self.nodes.contains_key(&node)
    }

    /// Whether a node is alive and answered its listing.
    pub fn is_reachable(&self, node: NodeId) -> bool {
        self.nodes
            .get(&node)
            .is_some_and(|n| n.liveness == Liveness::Alive)
            && self.listings.contains_key(&node)
    }

    /// What `node` listed for the exact copy `id`, if it did.
    pub fn listed(&self, node: NodeId, id: &ShardId) -> Option<&ListedShard> {
        self.listings.get(&node)?.get(id)
    }

    /// Every listed copy with its node.
    pub fn all_listed(&self) -> impl Iterator<Item = (NodeId, &ListedShard)> {
        self.listings
            .iter()
            .flat_map(|(node, listing)| listing.values().map(move |s| (*node, s)))
    }
}

#[cfg(test)]
#[path = "view_test.rs"]
mod tests;
