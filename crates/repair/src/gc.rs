//! Garbage collection: shards of deleted or replaced blobs (meta's garbage records) and orphans
//! (shard files no placement references, left by failed writes, aborted uploads or superseded
//! rebuilds), once older than the grace period.
//!
//! Every deletion is claimed in meta first: the claim is refused for a copy that any placement
//! references, and once granted meta refuses placements that would use the copy until it is
//! released after the deletion. So a shard referenced by a committed manifest is never deleted,
//! whatever runs concurrently.

use std::time::Duration;

use futures::StreamExt;
use tessera_client::{DataClient, MetaClient, MetaClientError};
use tessera_core::names::NodeId;
use tessera_proto::convert::data::data_id;
use tessera_proto::meta::v1 as pb;
use tessera_runtime::clock::now_ms;
use tracing::{info, warn};

use crate::scan::ScanOutcome;
use crate::view::ClusterView;

/// Copies claimed (or released) per meta command.
const CLAIM_BATCH: usize = 1000;
/// Garbage records collected per pass at most.
const MAX_RECORDS: usize = 20_000;

/// What one collection did.
#[derive(Debug, Default, Clone, Copy)]
pub struct GcOutcome {
    pub garbage_records_pending: u64,
    pub garbage_shards_deleted: u64,
    pub orphan_shards_deleted: u64,
}

/// Collects garbage records and orphans older than `grace`.
pub async fn collect(
    meta: &MetaClient,
    data: &DataClient,
    view: &ClusterView,
    scan: &ScanOutcome,
    listed_at_ms: i64,
    grace: Duration,
    page_size: u32,
) -> Result<GcOutcome, MetaClientError> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let now = now_ms();
    let mut out = GcOutcome::default();

    // Garbage records older than the grace period, at most MAX_RECORDS per pass. Copies on
    // nodes that are down are not claimed (a claim would only block repair from reusing them);
    // their records wait until the node returns or leaves the membership.
    let mut records: Vec<(Vec<u8>, Vec<pb::ShardRef>, bool)> = Vec::new();
    let mut after = Vec::new();
    loop {
        let page = meta
            .scan_blobs(pb::BlobFamily::Garbage, after.clone(), page_size)
            .await?;
        for record in page.blobs {
            out.garbage_records_pending += 1;
            if record.time_ms > now.saturating_sub(grace_ms) || records.len() >= MAX_RECORDS {
                continue;
            }
            let Some(blob) = &record.blob else { continue };
            let mut refs = Vec::new();
            let mut waiting = false;
            for s in &blob.shards {
                let node = NodeId(s.node_id);
                if view.nodes.contains_key(&node) && !view.is_reachable(node) {
                    waiting = true;
                    continue;
                }
                refs.push(pb::ShardRef {
                    data_id: blob.data_id.clone(),
                    shard_index: s.shard_index,
                    node_id: s.node_id,
                    ..pb::ShardRef::default()
                });
            }
            records.push((record.record_key.clone(), refs, waiting));
        }
        if page.done || page.next_after.is_empty() {
            break;
        }
        after = page.next_after;
    }
    let all: Vec<pb::ShardRef> = records.iter().flat_map(|(_, r, _)| r.clone()).collect();
    let claimed = claim(meta, all).await?;
    let (deleted, _) = delete_all(data, view, &claimed).await;
    let key_of = |r: &pb::ShardRef| (r.data_id.clone(), r.shard_index, r.node_id);
    let claimed_set: std::collections::HashSet<_> = claimed.iter().map(key_of).collect();
    let deleted_set: std::collections::HashSet<_> = deleted.iter().map(key_of).collect();
    out.garbage_shards_deleted += deleted.len() as u64;
    // A record is collected when none of its copies waits for a node and every claimed copy
    // was deleted (an unclaimed copy is referenced again: not garbage any more).
    let done: Vec<Vec<u8>> = records
        .iter()
        .filter(|(_, refs, waiting)| {
            !waiting
                && refs
                    .iter()
                    .all(|r| !claimed_set.contains(&key_of(r)) || deleted_set.contains(&key_of(r)))
        })
        .map(|(key, _, _)| key.clone())
        .collect();
    out.garbage_records_pending = out
        .garbage_records_pending
        .saturating_sub(done.len() as u64);
    let mut keys = done.into_iter();
    for batch in deleted.chunks(CLAIM_BATCH) {
        let batch_keys: Vec<Vec<u8>> = keys.by_ref().take(CLAIM_BATCH).collect();
        release(meta, batch.to_vec(), batch_keys).await?;
    }
    loop {
        let batch_keys: Vec<Vec<u8>> = keys.by_ref().take(CLAIM_BATCH).collect();
        if batch_keys.is_empty() {
            break;
        }
        release(meta, Vec::new(), batch_keys).await?;
    }

    // Orphans: listed copies no placement referenced at scan time, older than the grace.
    let mut orphans = Vec::new();
    for (node, listing) in &view.listings {
        for ((id, index), shard) in listing {
            if shard.modified_ms > listed_at_ms.saturating_sub(grace_ms) {
                continue;
            }
            if scan.referenced.contains(&(*id, *index, *node)) {
                continue;
            }
            orphans.push(pb::ShardRef {
                data_id: id.as_bytes().to_vec(),
                shard_index: *index,
                node_id: node.0,
                ..pb::ShardRef::default()
            });
        }
    }
    for batch in orphans.chunks(CLAIM_BATCH) {
        let claimed = claim(meta, batch.to_vec()).await?;
        let (deleted, _) = delete_all(data, view, &claimed).await;
        out.orphan_shards_deleted += deleted.len() as u64;
        release(meta, deleted, Vec::new()).await?;
    }
    if out.garbage_shards_deleted + out.orphan_shards_deleted > 0 {
        info!(
            garbage = out.garbage_shards_deleted,
            orphans = out.orphan_shards_deleted,
            "garbage shards deleted"
        );
    }
    Ok(out)
}

/// Claims copies for deletion in batches; returns those meta granted.
async fn claim(
    meta: &MetaClient,
    refs: Vec<pb::ShardRef>,
) -> Result<Vec<pb::ShardRef>, MetaClientError> {
    let mut granted = Vec::new();
    for batch in refs.chunks(CLAIM_BATCH) {
        let cmd = pb::Command {
            cmd: Some(pb::command::Cmd::ClaimShards(pb::ClaimShards {
                orphans: batch.to_vec(),
                ..pb::ClaimShards::default()
            })),
            ..pb::Command::default()
        };
        match meta.execute(cmd).await?.result {
            Some(pb::command_result::Result::ClaimShards(r)) => granted.extend(r.claimed),
            Some(pb::command_result::Result::Error(e)) => {
                return Err(MetaClientError::Decode(format!(
                    "claim refused: {}",
                    e.message
                )));
            }
            _ => {
                return Err(MetaClientError::Decode(
                    "claim answered without a result".into(),
                ));
            }
        }
    }
    Ok(granted)
}

/// Releases deleted copies and removes fully collected garbage records.
async fn release(
    meta: &MetaClient,
    shards: Vec<pb::ShardRef>,
    garbage_keys: Vec<Vec<u8>>,
) -> Result<(), MetaClientError> {
    if shards.is_empty() && garbage_keys.is_empty() {
        return Ok(());
    }
    let cmd = pb::Command {
        cmd: Some(pb::command::Cmd::ReleaseShards(pb::ReleaseShards {
            shards,
            garbage_keys,
        })),
        ..pb::Command::default()
    };
    if let Some(pb::command_result::Result::Error(e)) = meta.execute(cmd).await?.result {
        return Err(MetaClientError::Decode(format!(
            "release refused: {}",
            e.message
        )));
    }
    Ok(())
}

/// Deletes claimed copies; returns the deleted ones (a node no longer registered counts as
/// deleted) and how many remain for a later pass (node down).
async fn delete_all(
    data: &DataClient,
    view: &ClusterView,
    claimed: &[pb::ShardRef],
) -> (Vec<pb::ShardRef>, u64) {
    let calls = claimed.iter().map(|r| async move {
        let node = NodeId(r.node_id);
        if !view.nodes.contains_key(&node) {
            return (r, true);
        }
        if !view.is_reachable(node) {
            return (r, false);
        }
        let Ok(id) = data_id(&r.data_id) else {
            return (r, true);
        };
        let addr = view.addr(node).unwrap_or_default();
        match data.delete_shard(addr, legacy_shard_id(id, r.shard_index)).await {
            Ok(_) => (r, true),
            Err(e) => {
                warn!(node = r.node_id, error = %e, "deleting a garbage shard failed; retried later");
                (r, false)
            }
        }
    });
    let mut deleted = Vec::new();
    let mut pending = 0;
    let results = futures::stream::iter(calls)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for (r, ok) in results {
        if ok {
            deleted.push(r.clone());
        } else {
            pending += 1;
        }
    }
    (deleted, pending)
}

/// Temporary bridge to generation-less shard ids (replaced by exact-generation deletes).
pub(crate) fn legacy_shard_id(
    data_id: tessera_core::names::DataId,
    shard_index: u32,
) -> tessera_proto::data::v1::ShardId {
    tessera_proto::data::v1::ShardId {
        data_id: data_id.as_bytes().to_vec().into(),
        shard_index,
        generation: 0,
    }
}
