//! One pass over meta: every committed blob (versions' parts and open uploads' parts) planned
//! against the cluster view, with the figures the report and metrics show.

use std::collections::{BTreeMap, HashSet};

use tessera_client::{MetaClient, MetaClientError};
use tessera_core::layout::Layout;
use tessera_core::names::{DataId, NodeId};
use tessera_core::placement::meets_write_rule;
use tessera_core::repair::{RepairAction, RepairPlan, ShardHealth, ShardState, plan};
use tessera_core::stripe::StripeGeometry;
use tessera_proto::convert::data::data_id;
use tessera_proto::meta::v1 as pb;
use tracing::warn;

use crate::view::ClusterView;

/// One blob that needs work, with the plan made from this pass's view.
#[derive(Debug, Clone)]
pub struct BlobWork {
    pub data_id: DataId,
    pub blob: pb::ErasureBlob,
    pub size: u64,
    pub time_ms: i64,
    pub plan: RepairPlan,
}

/// Counts of one pass.
#[derive(Debug, Clone, Default)]
pub struct ScanStats {
    /// spare -> (blobs, bytes)
    pub by_spare: BTreeMap<i32, (u64, u64)>,
    pub blobs: u64,
    pub backlog: u64,
    pub below_full: u64,
    /// At full redundancy but off the full zone spread.
    pub off_spread: u64,
    pub unreadable: u64,
    pub waiting: u64,
    pub oldest_degraded_ms: i64,
    pub shards_per_node: BTreeMap<NodeId, u64>,
    /// Blobs committed after the listings began; planned next pass.
    pub too_new: u64,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    pub work: Vec<BlobWork>,
    pub stats: ScanStats,
    /// Every copy (data id, index, node) a committed placement references.
    pub referenced: HashSet<(DataId, u32, NodeId)>,
}

/// How long before the listings began a blob must have been committed to be judged by them.
const SETTLE_MS: i64 = 1_000;

/// Pages through the versions and upload parts and plans every blob.
pub async fn scan(
    meta: &MetaClient,
    view: &ClusterView,
    listed_at_ms: i64,
    page_size: u32,
) -> Result<ScanOutcome, MetaClientError> {
    let nodes = view.repair_nodes();
    let mut out = ScanOutcome::default();
    for family in [pb::BlobFamily::Versions, pb::BlobFamily::UploadParts] {
        let mut after = Vec::new();
        loop {
            let page = meta.scan_blobs(family, after.clone(), page_size).await?;
            for blob_ref in page.blobs {
                judge(view, &nodes, listed_at_ms, blob_ref, &mut out);
            }
            if page.done || page.next_after.is_empty() {
                break;
            }
            after = page.next_after;
        }
    }
    out.work.sort_by_key(|w| (w.plan.spare, w.time_ms));
    Ok(out)
}

fn judge(
    view: &ClusterView,
    nodes: &[tessera_core::repair::RepairNode],
    listed_at_ms: i64,
    blob_ref: pb::BlobRef,
    out: &mut ScanOutcome,
) {
    let Some(blob) = blob_ref.blob else { return };
    let Ok(id) = data_id(&blob.data_id) else {
        warn!(key = %blob_ref.key, "blob with a malformed data id skipped");
        return;
    };
    for s in &blob.shards {
        out.referenced
            .insert((id, s.shard_index, NodeId(s.node_id)));
        *out.stats
            .shards_per_node
            .entry(NodeId(s.node_id))
            .or_insert(0) += 1;
    }
    if blob_ref.time_ms > listed_at_ms - SETTLE_MS {
        out.stats.too_new += 1;
        return;
    }
    let Ok(layout) = Layout::new(blob.data_shards, blob.parity_shards) else {
        warn!(key = %blob_ref.key, "blob with an invalid layout skipped");
        return;
    };
    let chunks = match StripeGeometry::try_new(layout, blob.chunk_size) {
        Ok(g) => g.chunk_count(blob_ref.size),
        Err(_) => 0,
    };
    let shards: Vec<ShardState> = blob
        .shards
        .iter()
        .map(|s| ShardState {
            index: s.shard_index,
            node: NodeId(s.node_id),
            health: view.health(&id, s.shard_index, NodeId(s.node_id), chunks),
        })
        .collect();
    let p = plan(&layout, &id, &shards, nodes);
    // Full redundancy: every index has a healthy copy, and the healthy copies survive the loss
    // of any one zone. The full spread (one shard per node, even zones) is judged apart: it is
    // impossible while a node is missing, yet the blob is then as safe as the nodes allow.
    let healthy: Vec<(u32, tessera_core::names::ZoneName)> = shards
        .iter()
        .filter(|s| s.health == ShardHealth::Ok)
        .filter_map(|s| view.nodes.get(&s.node).map(|n| (s.index, n.zone.clone())))
        .collect();
    let distinct: std::collections::BTreeSet<u32> = healthy.iter().map(|(i, _)| *i).collect();
    let redundant =
        distinct.len() as u32 == layout.total_shards() && meets_write_rule(&layout, &healthy);
    let stats = &mut out.stats;
    stats.blobs += 1;
    let entry = stats.by_spare.entry(p.spare).or_insert((0, 0));
    entry.0 += 1;
    entry.1 += blob_ref.size;
    if redundant && !p.full_redundancy {
        stats.off_spread += 1;
    }
    if !redundant {
        stats.below_full += 1;
        if stats.oldest_degraded_ms == 0 || blob_ref.time_ms < stats.oldest_degraded_ms {
            stats.oldest_degraded_ms = blob_ref.time_ms;
        }
    }
    match p.action {
        RepairAction::None => {}
        RepairAction::Unrecoverable => {
            stats.unreadable += 1;
            stats.backlog += 1;
        }
        RepairAction::Wait(_) => {
            stats.waiting += 1;
            stats.backlog += 1;
        }
        RepairAction::Rebuild => {
            stats.backlog += 1;
            out.work.push(BlobWork {
                data_id: id,
                blob,
                size: blob_ref.size,
                time_ms: blob_ref.time_ms,
                plan: p,
            });
        }
    }
}
