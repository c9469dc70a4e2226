//! Rebuilding one blob: read k copies chunk by chunk with [`VerifiedShardReader`] (each copy's
//! hash table checked against the manifest's digest, each chunk against its table entry),
//! reconstruct the missing shards with Reed-Solomon, write each with [`ShardWriter`] as a new
//! generation under the daemon's write lease, and swap the placement in meta with
//! compare-and-set on the exact copies scanned.
//!
//! Invariant: no byte is written that was not derived from k chunks verified against the
//! manifest, so a self-consistent but wrong copy (another blob's shard renamed, a stale write,
//! swapped chunks) is never a source; a rebuilt copy enters a placement only after the node
//! made it durable with exactly the manifest's digest; and it is always a new generation, so it
//! never replaces a file any placement or reader names. A refused swap leaves the new copies as
//! orphans for garbage collection, never as half a placement.

use std::collections::BTreeMap;

use bytes::Bytes;
use tessera_client::meta::PlacementChange;
use tessera_client::shard::{ShardReadSpec, ShardWriteError, ShardWriteSpec, WrittenShard};
use tessera_client::{
    CommandError, DataClient, LeaseError, LeaseGuard, LeaseHandle, MetaClient, MetaClientError,
    ShardId, ShardReadFault, ShardWriter, VerifiedShardReader,
};
use tessera_core::blob::{ErasureBlob, Generation, ShardCopy};
use tessera_core::meta_error::MetaRuleError;
use tessera_core::names::NodeId;
use tessera_core::repair::{RepairAction, RepairPlan, ShardHealth, ShardState};
use tessera_core::stripe::{Codec, CodecError};
use tessera_runtime::rate::SharedRateLimiter;
use tracing::{info, warn};

use crate::scan::BlobWork;
use crate::view::ClusterView;

/// Why a rebuild did not finish (the next pass plans the blob again).
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Fewer than k copies could be opened and verified.
    #[error("too few readable shards: {readable} of {needed} needed")]
    TooFewSources {
        /// Copies opened.
        readable: usize,
        /// k.
        needed: usize,
    },
    /// A source copy failed verification or its node failed mid-read.
    #[error("source shard {index} on node {node}: {source}")]
    Source {
        /// Its index.
        index: u32,
        /// Its node.
        node: NodeId,
        /// What went wrong.
        source: ShardReadFault,
    },
    /// Writing a rebuilt copy failed.
    #[error("writing shard {index} to node {node}: {source}")]
    Target {
        /// Its index.
        index: u32,
        /// Its node.
        node: NodeId,
        /// What went wrong.
        source: ShardWriteError,
    },
    /// A target node is not registered (it left since the scan).
    #[error("target node {node} is not registered")]
    UnknownNode {
        /// The node.
        node: NodeId,
    },
    /// The rebuilt copy's digest is not the manifest's: the sources cannot have been the
    /// manifest's shards; the copy is left as an orphan.
    #[error("rebuilt shard {index} on node {node} does not match the manifest's digest")]
    DigestMismatch {
        /// Its index.
        index: u32,
        /// Its node.
        node: NodeId,
    },
    /// The plan places a copy that is neither scanned nor written (a planner bug; nothing is
    /// committed).
    #[error("the plan places shard {index} on node {node} without a copy there")]
    Unplaced {
        /// The index.
        index: u32,
        /// The node.
        node: NodeId,
    },
    /// The manifest has no digest for an index (it cannot be verified).
    #[error("the manifest has no digest for shard {index}")]
    NoDigest {
        /// The index.
        index: u32,
    },
    /// Reed-Solomon failed.
    #[error("erasure coding: {0}")]
    Codec(#[from] CodecError),
    /// The daemon holds no live write lease to write under.
    #[error("no write lease: {0}")]
    Lease(#[from] LeaseError),
    /// Reading the blob's current placement failed.
    #[error("meta: {0}")]
    Meta(#[from] MetaClientError),
    /// Meta refused or lost the placement swap (other than a changed placement); the rebuilt
    /// copies are orphans.
    #[error("placement update: {0}")]
    Placement(CommandError),
}

impl RebuildError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RebuildError::TooFewSources { .. } => "rebuild_too_few_sources",
            RebuildError::Source { source, .. } => source.code(),
            RebuildError::Target { source, .. } => source.code(),
            RebuildError::UnknownNode { .. } => "rebuild_unknown_node",
            RebuildError::DigestMismatch { .. } => "rebuild_digest_mismatch",
            RebuildError::NoDigest { .. } => "rebuild_no_digest",
            RebuildError::Unplaced { .. } => "rebuild_unplaced",
            RebuildError::Codec(e) => e.code(),
            RebuildError::Lease(e) => e.code(),
            RebuildError::Meta(e) => e.code(),
            RebuildError::Placement(e) => e.code(),
        }
    }

    /// Whether a later pass may succeed where this one failed: everything but a digest
    /// mismatch, which needs an operator's look (the pass still retries it).
    pub fn is_retryable(&self) -> bool {
        match self {
            RebuildError::DigestMismatch { .. }
            | RebuildError::NoDigest { .. }
            | RebuildError::Unplaced { .. } => false,
            RebuildError::Codec(_) => false,
            RebuildError::TooFewSources { .. }
            | RebuildError::Source { .. }
            | RebuildError::Target { .. }
            | RebuildError::UnknownNode { .. }
            | RebuildError::Lease(_) => true,
            RebuildError::Meta(e) => e.is_retryable(),
            RebuildError::Placement(e) => e.is_retryable(),
        }
    }
}

/// What a rebuild achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildOutcome {
    /// The new placement is committed.
    Committed {
        /// Shards written.
        shards: u64,
        /// Bytes written (shard data).
        bytes: u64,
    },
    /// The blob changed or is gone since the scan (another daemon, an overwrite, a delete):
    /// skipped, or meta refused the swap (the copies written are orphans).
    Superseded,
}

/// Everything a rebuild needs.
pub struct RebuildCtx<'a> {
    /// Meta.
    pub meta: &'a MetaClient,
    /// Data nodes.
    pub data: &'a DataClient,
    /// This pass's view.
    pub view: &'a ClusterView,
    /// The daemon's write lease.
    pub lease: &'a LeaseHandle,
    /// The daemon's byte budget for rebuilt data.
    pub limiter: &'a SharedRateLimiter,
}

/// Rebuilds `work` and commits its new placement. A source that turns out not to be the
/// manifest's shard (missing, or failing the digest or a chunk hash) is marked corrupt and the
/// blob planned again, so it is rebuilt too; a source whose node fails is left out. Each retry
/// concerns another copy, so the attempts are bounded by the blob's copies.
pub async fn rebuild(
    ctx: &RebuildCtx<'_>,
    work: &BlobWork,
) -> Result<RebuildOutcome, RebuildError> {
    let blob = &work.blob;
    // The scan may be minutes old: skip a blob that another daemon, an overwrite or a delete
    // has changed since, rather than rebuild it only to lose the compare-and-set.
    if !still_as_scanned(ctx.meta, work).await? {
        return Ok(RebuildOutcome::Superseded);
    }
    let nodes = ctx.view.repair_nodes();
    let mut states = work.states.clone();
    let mut plan = work.plan.clone();
    let mut excluded: Vec<(u32, NodeId)> = Vec::new();
    // Held until meta answered the swap, so the lease stays renewed while its copies are
    // unplaced. A change that only drops copies adds none and needs no lease.
    let mut lease: Option<LeaseGuard> = None;
    let mut failures = 0;
    let (written, bytes) = loop {
        if plan.action != RepairAction::Rebuild {
            return Err(RebuildError::TooFewSources {
                readable: plan.healthy as usize,
                needed: blob.layout.data_shards() as usize,
            });
        }
        if plan.writes.is_empty() {
            break (Vec::new(), 0);
        }
        let lease_id = match &lease {
            Some(guard) => guard.lease_id(),
            None => lease.insert(ctx.lease.acquire()?).lease_id(),
        };
        match write_shards(ctx, blob, &plan, &excluded, lease_id).await {
            Ok(done) => break done,
            Err(RebuildError::Source {
                index,
                node,
                source,
            }) if failures < blob.shards.len() => {
                failures += 1;
                if source.is_copy_fault() {
                    warn!(data_id = %blob.data_id, index, node = node.0, code = source.code(),
                        error = %source, "source shard is not the manifest's; rebuilding it too");
                    mark_corrupt(&mut states, index, node);
                    plan = tessera_core::repair::plan(&blob.layout, &blob.data_id, &states, &nodes);
                } else {
                    warn!(data_id = %blob.data_id, index, node = node.0, code = source.code(),
                        error = %source, "source shard unreadable; retrying without it");
                    excluded.push((index, node));
                }
            }
            Err(e) => return Err(e),
        }
    };
    let change = PlacementChange {
        data_id: blob.data_id,
        expected: blob.shards.clone(),
        shards: new_placement(blob, &plan.placement, &written)?,
        degraded: plan.degraded,
        lease_id: lease.as_ref().map_or(0, LeaseGuard::lease_id),
    };
    let outcome = match ctx.meta.update_placement(&change).await {
        Ok(()) => Ok(RebuildOutcome::Committed {
            shards: written.len() as u64,
            bytes,
        }),
        Err(CommandError::Rule(MetaRuleError::Conflict { message })) => {
            info!(data_id = %blob.data_id, reason = %message, orphans = written.len(),
                "placement changed since the scan; rebuild superseded");
            Ok(RebuildOutcome::Superseded)
        }
        Err(e) => Err(RebuildError::Placement(e)),
    };
    drop(lease);
    outcome
}

/// Marks the copy of `index` on `node` corrupt (a read showed it is not the manifest's shard).
pub fn mark_corrupt(states: &mut [ShardState], index: u32, node: NodeId) {
    for state in states
        .iter_mut()
        .filter(|s| s.index == index && s.node == node)
    {
        state.health = ShardHealth::Corrupt;
    }
}

/// The placement after the rebuild: for each `(index, node)` of the plan's placement, the copy
/// just written there, else the scanned copy there (the planner keeps only healthy copies,
/// which the manifest names once per index and node). An entry with neither is refused rather
/// than dropped, so a placement never silently loses an index.
pub fn new_placement(
    blob: &ErasureBlob,
    placement: &[(u32, NodeId)],
    written: &[ShardCopy],
) -> Result<Vec<ShardCopy>, RebuildError> {
    let existing: BTreeMap<(u32, NodeId), ShardCopy> = blob
        .shards
        .iter()
        .map(|c| ((c.shard_index, c.node), *c))
        .collect();
    let fresh: BTreeMap<(u32, NodeId), ShardCopy> = written
        .iter()
        .map(|c| ((c.shard_index, c.node), *c))
        .collect();
    let mut copies = placement
        .iter()
        .map(|&(index, node)| {
            fresh
                .get(&(index, node))
                .or_else(|| existing.get(&(index, node)))
                .copied()
                .ok_or(RebuildError::Unplaced { index, node })
        })
        .collect::<Result<Vec<ShardCopy>, RebuildError>>()?;
    copies.sort_unstable();
    Ok(copies)
}

/// Whether the blob is still owned and placed exactly as the scan saw it (generations too).
async fn still_as_scanned(meta: &MetaClient, work: &BlobWork) -> Result<bool, RebuildError> {
    let Some(current) = meta.get_blob(&work.blob.data_id).await? else {
        return Ok(false);
    };
    let mut now = current.blob.shards;
    let mut then = work.blob.shards.clone();
    now.sort_unstable();
    then.sort_unstable();
    Ok(now == then)
}

/// A fresh generation for a rebuilt copy.
fn fresh_generation() -> Generation {
    Generation::from_random(rand::random())
}

/// Opens verified readers on k of the plan's sources on reachable nodes, data indices first. A
/// copy whose node fails is skipped for the next; a copy that is not the manifest's shard
/// (missing, digest or table size not the manifest's) fails the attempt, to be planned around.
async fn open_sources(
    ctx: &RebuildCtx<'_>,
    blob: &ErasureBlob,
    plan: &RepairPlan,
    excluded: &[(u32, NodeId)],
) -> Result<Vec<(u32, NodeId, VerifiedShardReader)>, RebuildError> {
    let k = blob.layout.data_shards() as usize;
    let mut sources = Vec::with_capacity(k);
    let candidates = plan
        .sources
        .iter()
        .copied()
        .filter(|s| !excluded.contains(s) && ctx.view.is_reachable(s.1));
    for (index, node) in candidates {
        if sources.len() == k {
            break;
        }
        let (Some(copy), Some(addr)) = (
            blob.shards
                .iter()
                .find(|c| c.shard_index == index && c.node == node),
            ctx.view.addr(node),
        ) else {
            continue;
        };
        let spec = ShardReadSpec::from_manifest(blob, copy, 0..blob.chunks_per_shard)
            .ok_or(RebuildError::NoDigest { index })?;
        match VerifiedShardReader::open(ctx.data, addr, spec).await {
            Ok(reader) => sources.push((index, node, reader)),
            // Not the manifest's shard: the caller marks it corrupt and plans again.
            Err(source) if source.is_copy_fault() => {
                return Err(RebuildError::Source {
                    index,
                    node,
                    source,
                });
            }
            Err(fault) => {
                warn!(data_id = %blob.data_id, index, node = node.0, code = fault.code(),
                    error = %fault, "source shard unreachable; trying another");
            }
        }
    }
    if sources.len() < k {
        return Err(RebuildError::TooFewSources {
            readable: sources.len(),
            needed: k,
        });
    }
    Ok(sources)
}

/// Streams the plan's writes as new generations under `lease_id`; returns the copies written
/// (each verified against the manifest's digest) and the bytes written.
async fn write_shards(
    ctx: &RebuildCtx<'_>,
    blob: &ErasureBlob,
    plan: &RepairPlan,
    excluded: &[(u32, NodeId)],
    lease_id: u64,
) -> Result<(Vec<ShardCopy>, u64), RebuildError> {
    let codec = Codec::new(blob.layout)?;
    let n = blob.layout.total_shards() as usize;
    // Zero chunks (an empty blob): nothing to read, empty shards to write.
    let mut sources = if blob.chunks_per_shard == 0 {
        Vec::new()
    } else {
        open_sources(ctx, blob, plan, excluded).await?
    };

    let mut targets = Vec::with_capacity(plan.writes.len());
    for &(index, node) in &plan.writes {
        let addr = ctx
            .view
            .addr(node)
            .ok_or(RebuildError::UnknownNode { node })?;
        let id = ShardId::new(blob.data_id, index, fresh_generation());
        let spec = ShardWriteSpec::new(id, blob.layout, blob.chunk_size, lease_id);
        let writer =
            ShardWriter::open(ctx.data, addr, spec).map_err(|source| RebuildError::Target {
                index,
                node,
                source,
            })?;
        targets.push((index, node, writer));
    }

    let mut bytes = 0u64;
    for _ in 0..blob.chunks_per_shard {
        let reads = sources.iter_mut().map(|(index, node, reader)| async move {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => Ok((*index, chunk.data)),
                // The reader ends at the manifest's chunk count, which the loop does not pass.
                Ok(None) => Err(RebuildError::Source {
                    index: *index,
                    node: *node,
                    source: ShardReadFault::Ended {
                        addr: reader.addr().to_owned(),
                        shard: reader.id(),
                        next: reader.next_index(),
                    },
                }),
                Err(source) => Err(RebuildError::Source {
                    index: *index,
                    node: *node,
                    source,
                }),
            }
        });
        let mut row: Vec<Option<Vec<u8>>> = vec![None; n];
        for (index, data) in futures::future::try_join_all(reads).await? {
            row[index as usize] = Some(data.to_vec());
        }
        codec.reconstruct(&mut row)?;
        let mut chunks = Vec::with_capacity(targets.len());
        for (index, _, _) in &targets {
            let data = row[*index as usize].take().unwrap_or_default();
            ctx.limiter.acquire(data.len() as u64).await;
            bytes += data.len() as u64;
            chunks.push(Bytes::from(data));
        }
        let sends =
            targets
                .iter_mut()
                .zip(chunks)
                .map(|((index, node, writer), data)| async move {
                    writer
                        .send_chunk(data)
                        .await
                        .map_err(|source| RebuildError::Target {
                            index: *index,
                            node: *node,
                            source,
                        })
                });
        futures::future::try_join_all(sends).await?;
    }
    drop(sources);

    let commits = targets.into_iter().map(|(index, node, writer)| async move {
        let written = writer
            .commit()
            .await
            .map_err(|source| RebuildError::Target {
                index,
                node,
                source,
            })?;
        check_written(blob, index, node, &written)?;
        Ok::<_, RebuildError>(written.id.copy_on(node))
    });
    let written = futures::future::try_join_all(commits).await?;
    Ok((written, bytes))
}

/// Whether a rebuilt copy is exactly the manifest's shard: same digest, same chunk count.
pub fn check_written(
    blob: &ErasureBlob,
    index: u32,
    node: NodeId,
    written: &WrittenShard,
) -> Result<(), RebuildError> {
    let expected = blob
        .digest_of(index)
        .ok_or(RebuildError::NoDigest { index })?;
    if written.digest != *expected || written.chunks != blob.chunks_per_shard {
        return Err(RebuildError::DigestMismatch { index, node });
    }
    Ok(())
}

#[cfg(test)]
#[path = "rebuild_test.rs"]
mod tests;
