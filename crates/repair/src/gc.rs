//! Garbage collection: copies of deleted or replaced blobs (meta's garbage records) and orphans
//! (listed copies no placement references: failed writes, aborted uploads, superseded
//! rebuilds).
//!
//! Invariant: the daemon judges nothing by time. It names exact copies (generation, and the
//! write lease its listing shows) and meta grants by its own clock: a garbage record's copies
//! once the record is `grace` old, an orphan once its writer lease ended `grace` ago, never a
//! copy a placement references or another claimer holds; a granted copy cannot enter a
//! placement until released. The daemon deletes exactly the granted generations, releases only
//! what it deleted, and removes a garbage record only once every copy of it is deleted. Copies
//! on registered nodes that are down are not claimed; their records wait. A copy that a garbage
//! record names is never offered as an orphan, so the record's grace (which protects readers of
//! the old manifest) is never bypassed.

use std::collections::HashSet;

use futures::StreamExt;
use tessera_client::meta::{BlobFamily, BlobRef, GarbageClaim, ShardClaim};
use tessera_client::{
    CommandError, DataClient, DataClientError, MetaClient, MetaClientError, ShardId,
};
use tessera_core::blob::{ShardCopy, ShardRef};
use tessera_core::names::DataId;
use tracing::{info, warn};

use crate::view::ClusterView;

/// Copies claimed (or released) per meta command.
pub const CLAIM_BATCH: usize = 1000;
/// Garbage records claimed per pass at most (every record is still read, to protect its copies
/// from the orphan path).
pub const MAX_RECORDS: usize = 20_000;
/// Deletions in flight at once.
const DELETE_CONCURRENCY: usize = 16;

/// What one collection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcOutcome {
    /// Garbage records left after this collection.
    pub garbage_records_pending: u64,
    /// Copies of garbage records deleted.
    pub garbage_shards_deleted: u64,
    /// Orphan copies deleted.
    pub orphan_shards_deleted: u64,
}

/// Why a collection stopped (the next pass starts it again; marks it left are its own and are
/// claimed again).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Reading the garbage records failed.
    #[error("scanning garbage: {0}")]
    Scan(#[from] MetaClientError),
    /// Meta refused or lost a claim.
    #[error("claiming shards: {0}")]
    Claim(CommandError),
    /// Meta refused or lost a release.
    #[error("releasing shards: {0}")]
    Release(CommandError),
}

impl GcError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            GcError::Scan(e) => e.code(),
            GcError::Claim(e) | GcError::Release(e) => e.code(),
        }
    }

    /// Whether the next pass may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            GcError::Scan(e) => e.is_retryable(),
            GcError::Claim(e) | GcError::Release(e) => e.is_retryable(),
        }
    }
}

/// One garbage record as this pass can collect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarbageRecord {
    /// Its state-machine key.
    pub key: Vec<u8>,
    /// Its copies that can be claimed now (on reachable or unregistered nodes).
    pub copies: Vec<ShardRef>,
    /// Whether a copy sits on a registered node that is down: the record waits for it.
    pub waiting: bool,
}

impl GarbageRecord {
    /// The record `record` as `view` lets it be collected; each copy carries the lease id its
    /// node's listing shows (0 when not listed).
    pub fn new(view: &ClusterView, record: &BlobRef) -> GarbageRecord {
        let blob = &record.blob;
        let mut copies = Vec::with_capacity(blob.shards.len());
        let mut waiting = false;
        for copy in &blob.shards {
            if view.is_registered(copy.node) && !view.is_reachable(copy.node) {
                waiting = true;
                continue;
            }
            let lease_id = view
                .listed(copy.node, &ShardId::of_copy(blob.data_id, copy))
                .map_or(0, |l| l.lease_id);
            copies.push(ShardRef {
                data_id: blob.data_id,
                copy: *copy,
                lease_id,
            });
        }
        GarbageRecord {
            key: record.record_key.clone(),
            copies,
            waiting,
        }
    }
}

/// The exact copy a ref names.
fn key_of(r: &ShardRef) -> (DataId, ShardCopy) {
    (r.data_id, r.copy)
}

/// The keys of the records that are fully collected once `deleted` are gone: none of their
/// copies waits for a node and every one was deleted.
pub fn finished_records(records: &[GarbageRecord], deleted: &[ShardRef]) -> Vec<Vec<u8>> {
    let deleted: HashSet<(DataId, ShardCopy)> = deleted.iter().map(key_of).collect();
    records
        .iter()
        .filter(|r| !r.waiting && r.copies.iter().all(|c| deleted.contains(&key_of(c))))
        .map(|r| r.key.clone())
        .collect()
}

/// Groups records, whole, into batches of at most [`CLAIM_BATCH`] copies (a record larger than
/// that makes a batch of its own).
pub fn record_batches(records: &[GarbageRecord]) -> Vec<&[GarbageRecord]> {
    let mut batches = Vec::new();
    let (mut start, mut copies) = (0, 0);
    for (i, record) in records.iter().enumerate() {
        if i > start && copies + record.copies.len() > CLAIM_BATCH {
            batches.push(&records[start..i]);
            (start, copies) = (i, 0);
        }
        copies += record.copies.len();
    }
    if start < records.len() {
        batches.push(&records[start..]);
    }
    batches
}

/// Every listed copy that neither a scanned placement (`referenced`) nor a garbage record
/// (`garbage`) names, with the lease id its listing shows; sorted, so claims are reproducible.
pub fn find_orphans(
    view: &ClusterView,
    referenced: &HashSet<(DataId, ShardCopy)>,
    garbage: &HashSet<(DataId, ShardCopy)>,
) -> Vec<ShardRef> {
    let mut orphans: Vec<ShardRef> = view
        .all_listed()
        .map(|(node, listed)| listed.shard_ref(node))
        .filter(|r| !referenced.contains(&key_of(r)) && !garbage.contains(&key_of(r)))
        .collect();
    orphans.sort_unstable();
    orphans
}

/// Everything a collection needs.
pub struct Collector<'a> {
    /// Meta.
    pub meta: &'a MetaClient,
    /// Data nodes.
    pub data: &'a DataClient,
    /// This pass's view.
    pub view: &'a ClusterView,
    /// This daemon's id.
    pub claimer: &'a str,
    /// The configured grace, for meta to apply.
    pub grace_ms: u64,
    /// Records per meta page.
    pub page_size: u32,
}

impl Collector<'_> {
    /// Collects garbage records, then orphans (copies listed this pass that neither a placement
    /// of the scan, `referenced`, nor a garbage record names).
    pub async fn collect(
        &self,
        referenced: &HashSet<(DataId, ShardCopy)>,
    ) -> Result<GcOutcome, GcError> {
        let mut out = GcOutcome::default();
        // Every record is read (after the placements were scanned, so a copy that left a
        // placement before the scan read it is in a record by now), at most MAX_RECORDS claimed.
        let mut records = Vec::new();
        let mut garbage: HashSet<(DataId, ShardCopy)> = HashSet::new();
        let mut after = Vec::new();
        loop {
            let page = self
                .meta
                .scan_blobs(BlobFamily::Garbage, &after, self.page_size)
                .await?;
            for record in &page.blobs {
                out.garbage_records_pending += 1;
                garbage.extend(record.blob.shards.iter().map(|c| (record.blob.data_id, *c)));
                if records.len() < MAX_RECORDS {
                    records.push(GarbageRecord::new(self.view, record));
                }
            }
            if page.done || page.next_after.is_empty() {
                break;
            }
            after = page.next_after;
        }

        for batch in record_batches(&records) {
            let claim = ShardClaim {
                claimer: self.claimer.to_owned(),
                grace_ms: self.grace_ms,
                orphans: Vec::new(),
                garbage: batch
                    .iter()
                    .map(|r| GarbageClaim {
                        garbage_key: r.key.clone(),
                        shards: r.copies.clone(),
                    })
                    .collect(),
            };
            let granted = self.claim(&claim).await?;
            let deleted = self.delete_all(&granted).await;
            let finished = finished_records(batch, &deleted);
            out.garbage_shards_deleted += deleted.len() as u64;
            out.garbage_records_pending = out
                .garbage_records_pending
                .saturating_sub(finished.len() as u64);
            self.release(&deleted, &finished).await?;
        }

        let orphans = find_orphans(self.view, referenced, &garbage);
        for batch in orphans.chunks(CLAIM_BATCH) {
            let claim = ShardClaim {
                claimer: self.claimer.to_owned(),
                grace_ms: self.grace_ms,
                orphans: batch.to_vec(),
                garbage: Vec::new(),
            };
            let granted = self.claim(&claim).await?;
            let deleted = self.delete_all(&granted).await;
            out.orphan_shards_deleted += deleted.len() as u64;
            self.release(&deleted, &[]).await?;
        }
        if out.garbage_shards_deleted + out.orphan_shards_deleted > 0 {
            info!(
                garbage = out.garbage_shards_deleted,
                orphans = out.orphan_shards_deleted,
                pending_records = out.garbage_records_pending,
                "garbage shards deleted"
            );
        }
        Ok(out)
    }

    async fn claim(&self, claim: &ShardClaim) -> Result<Vec<ShardRef>, GcError> {
        if claim.orphans.is_empty() && claim.garbage.is_empty() {
            return Ok(Vec::new());
        }
        self.meta.claim_shards(claim).await.map_err(GcError::Claim)
    }

    async fn release(&self, shards: &[ShardRef], garbage_keys: &[Vec<u8>]) -> Result<(), GcError> {
        if shards.is_empty() && garbage_keys.is_empty() {
            return Ok(());
        }
        self.meta
            .release_shards(shards, garbage_keys)
            .await
            .map_err(GcError::Release)
    }

    /// Deletes exactly the granted copies; returns those gone now (a copy on a node no longer
    /// registered is gone with it). A copy whose node cannot be reached stays claimed by this
    /// daemon and is deleted by a later pass.
    async fn delete_all(&self, granted: &[ShardRef]) -> Vec<ShardRef> {
        let view = self.view;
        // Made before streaming, so the step's future stays provably `Send`.
        let calls: Vec<_> = granted
            .iter()
            .map(|r| async move {
                let node = r.copy.node;
                if !view.is_registered(node) {
                    return Some(*r);
                }
                let addr = view.addr(node).filter(|_| view.is_reachable(node))?;
                match self
                    .data
                    .delete_shard(addr, &ShardId::of_copy(r.data_id, &r.copy))
                    .await
                {
                    // Absent is as good as deleted: the exact generation is not there.
                    Ok(_) | Err(DataClientError::NotFound { .. }) => Some(*r),
                    Err(e) => {
                        warn!(node = node.0, data_id = %r.data_id, code = e.code(), error = %e,
                        "deleting a claimed shard failed; retried next pass");
                        None
                    }
                }
            })
            .collect();
        futures::stream::iter(calls)
            .buffer_unordered(DELETE_CONCURRENCY)
            .filter_map(|deleted| async move { deleted })
            .collect()
            .await
    }
}

#[cfg(test)]
#[path = "gc_test.rs"]
mod tests;
