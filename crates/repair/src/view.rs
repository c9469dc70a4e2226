//! The cluster as one pass sees it: every registered data node with its zone, liveness and
//! state, and the shards each live node listed.

use std::collections::{BTreeMap, HashMap, HashSet};

use tessera_client::{DataClient, MetaClient, MetaClientError};
use tessera_core::names::{DataId, NodeId, ZoneName};
use tessera_core::repair::{RepairNode, ShardHealth};
use tessera_proto::meta::v1 as pb;
use tracing::warn;

/// One registered data node.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub id: NodeId,
    pub zone: ZoneName,
    pub addr: String,
    pub liveness: pb::Liveness,
    pub draining: bool,
}

/// What one node holds: shard id -> chunk count.
pub type Listing = HashMap<(DataId, u32), ListedShard>;

/// One listed shard file.
#[derive(Clone, Copy, Debug)]
pub struct ListedShard {
    pub chunks: u64,
    pub modified_ms: i64,
}

/// The registered nodes and the listings of the ones that answered.
#[derive(Debug, Default)]
pub struct ClusterView {
    pub nodes: BTreeMap<NodeId, NodeView>,
    pub listings: HashMap<NodeId, Listing>,
    /// Alive nodes whose listing failed: their copies are of unknown health this pass.
    pub unlisted: HashSet<NodeId>,
}

impl ClusterView {
    /// Reads the membership from meta.
    pub async fn load_nodes(meta: &MetaClient) -> Result<ClusterView, MetaClientError> {
        let status = meta.cluster_status().await?;
        let mut nodes = BTreeMap::new();
        for s in status.data_nodes {
            let Some(node) = s.node else { continue };
            let liveness = pb::Liveness::try_from(s.liveness).unwrap_or(pb::Liveness::Dead);
            nodes.insert(
                NodeId(node.node_id),
                NodeView {
                    id: NodeId(node.node_id),
                    zone: ZoneName(node.zone.clone()),
                    addr: node.addr.clone(),
                    liveness,
                    draining: node.state == pb::NodeState::Draining as i32,
                },
            );
        }
        Ok(ClusterView {
            nodes,
            ..ClusterView::default()
        })
    }

    /// Lists the shards of every alive node, concurrently.
    pub async fn list_shards(&mut self, data: &DataClient) {
        let alive: Vec<NodeView> = self
            .nodes
            .values()
            .filter(|n| n.liveness == pb::Liveness::Alive)
            .cloned()
            .collect();
        let calls = alive.into_iter().map(|node| {
            let data = data.clone();
            async move { (node.id, data.list_shards(&node.addr).await) }
        });
        for (id, result) in futures::future::join_all(calls).await {
            match result {
                Ok(entries) => {
                    let mut listing = Listing::with_capacity(entries.len());
                    for e in entries {
                        let Some(sid) = e.id else { continue };
                        let Ok(data_id) = tessera_proto::convert::data::data_id(&sid.data_id)
                        else {
                            continue;
                        };
                        listing.insert(
                            (data_id, sid.shard_index),
                            ListedShard {
                                chunks: e.chunks,
                                modified_ms: 0,
                            },
                        );
                    }
                    self.listings.insert(id, listing);
                }
                Err(e) => {
                    warn!(node = id.0, error = %e, "listing shards failed; node skipped this pass");
                    self.unlisted.insert(id);
                }
            }
        }
    }

    /// The nodes as the planner sees them: alive means heartbeats arrive and the listing worked.
    pub fn repair_nodes(&self) -> Vec<RepairNode> {
        self.nodes
            .values()
            .map(|n| RepairNode {
                id: n.id,
                zone: n.zone.clone(),
                alive: n.liveness == pb::Liveness::Alive && !self.unlisted.contains(&n.id),
                draining: n.draining,
            })
            .collect()
    }

    /// The health of shard `index` of `data_id` on `node`, expecting `chunks` chunks.
    pub fn health(&self, data_id: &DataId, index: u32, node: NodeId, chunks: u64) -> ShardHealth {
        let Some(view) = self.nodes.get(&node) else {
            return ShardHealth::Lost;
        };
        match view.liveness {
            pb::Liveness::Dead => return ShardHealth::Lost,
            pb::Liveness::Suspect => return ShardHealth::Unknown,
            pb::Liveness::Alive => {}
        }
        let Some(listing) = self.listings.get(&node) else {
            return ShardHealth::Unknown;
        };
        match listing.get(&(*data_id, index)) {
            None => ShardHealth::Missing,
            Some(l) if chunks != 0 && l.chunks != chunks => ShardHealth::Corrupt,
            Some(_) => ShardHealth::Ok,
        }
    }

    /// The address of a node.
    pub fn addr(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(&node).map(|n| n.addr.as_str())
    }

    /// Whether a node is alive and answered its listing.
    pub fn is_reachable(&self, node: NodeId) -> bool {
        self.nodes
            .get(&node)
            .is_some_and(|n| n.liveness == pb::Liveness::Alive)
            && self.listings.contains_key(&node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, liveness: pb::Liveness) -> NodeView {
        NodeView {
            id: NodeId(id),
            zone: ZoneName("z".into()),
            addr: format!("127.0.0.1:{id}"),
            liveness,
            draining: false,
        }
    }

    #[test]
    fn health_follows_liveness_and_listings() {
        let id = DataId::from_bytes([1; 16]);
        let mut view = ClusterView::default();
        for (n, l) in [
            (1, pb::Liveness::Alive),
            (2, pb::Liveness::Suspect),
            (3, pb::Liveness::Dead),
            (4, pb::Liveness::Alive),
        ] {
            view.nodes.insert(NodeId(n), node(n, l));
        }
        let mut listing = Listing::new();
        listing.insert(
            (id, 0),
            ListedShard {
                chunks: 2,
                modified_ms: 0,
            },
        );
        listing.insert(
            (id, 1),
            ListedShard {
                chunks: 1,
                modified_ms: 0,
            },
        );
        view.listings.insert(NodeId(1), listing);
        // Node 4 is alive but its listing failed.
        view.unlisted.insert(NodeId(4));
        assert_eq!(view.health(&id, 0, NodeId(1), 2), ShardHealth::Ok);
        assert_eq!(view.health(&id, 1, NodeId(1), 2), ShardHealth::Corrupt);
        assert_eq!(view.health(&id, 2, NodeId(1), 2), ShardHealth::Missing);
        assert_eq!(view.health(&id, 0, NodeId(2), 2), ShardHealth::Unknown);
        assert_eq!(view.health(&id, 0, NodeId(3), 2), ShardHealth::Lost);
        assert_eq!(view.health(&id, 0, NodeId(4), 2), ShardHealth::Unknown);
        assert_eq!(view.health(&id, 0, NodeId(9), 2), ShardHealth::Lost);
        let nodes = view.repair_nodes();
        assert!(nodes.iter().any(|n| n.id == NodeId(1) && n.alive));
        assert!(nodes.iter().any(|n| n.id == NodeId(4) && !n.alive));
        assert!(view.is_reachable(NodeId(1)) && !view.is_reachable(NodeId(4)));
    }
}
