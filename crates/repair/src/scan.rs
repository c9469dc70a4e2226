//! One pass over meta: every committed blob (versions' parts and open uploads' parts) judged
//! against the cluster view and planned, page by page, with the figures the report and metrics
//! show.
//!
//! Invariant: a blob whose placement was applied after the view's applied index is not judged
//! (its copies may postdate the listings): it counts as unconfirmed and the next pass judges it.
//! Every placed copy, judged or not, goes into `referenced` with its exact generation, so no copy
//! a scanned placement names is ever offered to garbage collection as an orphan.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use tessera_client::MetaClient;
use tessera_client::MetaClientError;
use tessera_client::meta::{BlobFamily, BlobRef};
use tessera_core::blob::{ErasureBlob, ShardCopy};
use tessera_core::names::{DataId, NodeId, ZoneName};
use tessera_core::placement::meets_write_rule;
use tessera_core::repair::{RepairAction, RepairNode, RepairPlan, ShardHealth, ShardState, plan};

use crate::view::ClusterView;

/// The record families that hold committed blobs, in scan order.
const FAMILIES: [BlobFamily; 2] = [BlobFamily::Versions, BlobFamily::UploadParts];

/// One blob that needs work, with the plan made from this pass's view.
#[derive(Debug, Clone)]
pub struct BlobWork {
    /// The manifest as scanned (placement with generations, digests).
    pub blob: ErasureBlob,
    /// Last modified (meta clock), for ordering and the report.
    pub time_ms: i64,
    /// Every placed copy with the health the listings gave it (planned again when a read finds
    /// a copy is not the manifest's).
    pub states: Vec<ShardState>,
    /// What to do.
    pub plan: RepairPlan,
}

/// Counts of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// spare -> (blobs, bytes)
    pub by_spare: BTreeMap<i32, (u64, u64)>,
    /// Blobs judged.
    pub blobs: u64,
    /// Blobs needing work (rebuild, wait, or unreadable).
    pub backlog: u64,
    /// Blobs below full redundancy.
    pub below_full: u64,
    /// At full redundancy but off the full zone spread.
    pub off_spread: u64,
    /// Blobs with fewer than k healthy shards.
    pub unreadable: u64,
    /// Blobs waiting (suspect node, no placement possible).
    pub waiting: u64,
    /// Last-modified time of the oldest blob below full redundancy (0: none).
    pub oldest_degraded_ms: i64,
    /// Placed copies per node, of every scanned blob.
    pub shards_per_node: BTreeMap<NodeId, u64>,
    /// Blobs placed after the applied index read before the listings; judged next pass.
    pub too_new: u64,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Blobs to rebuild, most at risk first.
    pub work: Vec<BlobWork>,
    /// The pass's figures.
    pub stats: ScanStats,
    /// Every exact copy a scanned placement references.
    pub referenced: HashSet<(DataId, ShardCopy)>,
}

/// A scan in progress: which family and where in it, and what was found so far.
#[derive(Debug)]
pub struct Scanner {
    nodes: Vec<RepairNode>,
    family: usize,
    after: Vec<u8>,
    outcome: ScanOutcome,
}

impl Scanner {
    /// A scan from the start, planning against `view`'s nodes.
    pub fn new(view: &ClusterView) -> Scanner {
        Scanner {
            nodes: view.repair_nodes(),
            family: 0,
            after: Vec::new(),
            outcome: ScanOutcome::default(),
        }
    }

    /// Whether every family was scanned.
    pub fn is_done(&self) -> bool {
        self.family >= FAMILIES.len()
    }

    /// Blobs met so far (judged or too new).
    pub fn blobs_seen(&self) -> u64 {
        self.outcome.stats.blobs + self.outcome.stats.too_new
    }

    /// Reads and judges the next page; true once the scan is done.
    pub async fn next_page(
        &mut self,
        meta: &MetaClient,
        view: &ClusterView,
        page_size: u32,
    ) -> Result<bool, MetaClientError> {
        let Some(&family) = FAMILIES.get(self.family) else {
            return Ok(true);
        };
        let page = meta.scan_blobs(family, &self.after, page_size).await?;
        for blob_ref in page.blobs {
            self.judge(view, blob_ref);
        }
        if page.done || page.next_after.is_empty() {
            self.family += 1;
            self.after.clear();
        } else {
            self.after = page.next_after;
        }
        Ok(self.is_done())
    }

    /// The outcome, its work sorted by spare shards (fewest first), then age.
    pub fn finish(mut self) -> ScanOutcome {
        self.outcome.work.sort_by_key(|w| (w.plan.spare, w.time_ms));
        self.outcome
    }

    /// Judges one blob against `view` and counts it.
    pub fn judge(&mut self, view: &ClusterView, blob_ref: BlobRef) {
        let out = &mut self.outcome;
        let blob = blob_ref.blob;
        for copy in &blob.shards {
            out.referenced.insert((blob.data_id, *copy));
            *out.stats.shards_per_node.entry(copy.node).or_insert(0) += 1;
        }
        if blob.placed_at_index > view.applied_index {
            out.stats.too_new += 1;
            return;
        }
        let shards: Vec<ShardState> = blob
            .shards
            .iter()
            .map(|copy| ShardState {
                index: copy.shard_index,
                node: copy.node,
                health: view.health(&blob, copy),
            })
            .collect();
        let p = plan(&blob.layout, &blob.data_id, &shards, &self.nodes);
        // Full redundancy: every index has a healthy copy, and the healthy copies survive the loss
        // of any one zone. The full spread (one shard per node, even zones) is judged apart: it is
        // impossible while a node is missing, yet the blob is then as safe as the nodes allow.
        let healthy: Vec<(u32, ZoneName)> = shards
            .iter()
            .filter(|s| s.health == ShardHealth::Ok)
            .filter_map(|s| view.nodes.get(&s.node).map(|n| (s.index, n.zone.clone())))
            .collect();
        let distinct: BTreeSet<u32> = healthy.iter().map(|(i, _)| *i).collect();
        let redundant = distinct.len() == blob.layout.total_shards() as usize
            && meets_write_rule(&blob.layout, &healthy);
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
                    blob,
                    time_ms: blob_ref.time_ms,
                    states: shards,
                    plan: p,
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "scan_test.rs"]
mod tests;
