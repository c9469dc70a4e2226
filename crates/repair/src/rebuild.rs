//! Rebuilding one blob: read any k healthy shards chunk by chunk, verify every chunk's blake3
//! hash, reconstruct the missing shards with Reed-Solomon, stream them to their target nodes,
//! and swap the placement in meta with compare-and-set.
//!
//! Invariant: no byte is written that was not derived from k verified chunks, so repair never
//! spreads corruption; and the placement only changes after every new copy is durable.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tessera_client::data::ShardChunkStream;
use tessera_client::{DataClient, DataClientError, MetaClient, MetaClientError};
use tessera_core::layout::Layout;
use tessera_core::names::NodeId;
use tessera_core::shard_format::{chunk_hash, verify_chunk};
use tessera_core::stripe::{Codec, StripeGeometry};
use tessera_proto::data::v1 as data_pb;
use tessera_proto::data::v1::write_shard_request::Msg;
use tessera_proto::meta::v1 as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::scan::BlobWork;
use crate::view::ClusterView;

/// How long one source chunk may take to arrive.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a rebuild did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Fewer than k healthy sources could be read.
    #[error("too few readable shards: {0}")]
    Sources(String),
    /// A source shard failed mid-read (missing, corrupt chunk, node gone).
    #[error("source shard {index} on node {node}: {reason}")]
    Source {
        /// Its index.
        index: u32,
        /// Its node.
        node: u64,
        /// What went wrong.
        reason: String,
    },
    /// Writing a rebuilt shard failed.
    #[error("writing shard {index} to node {node}: {reason}")]
    Target {
        /// Its index.
        index: u32,
        /// Its node.
        node: u64,
        /// What went wrong.
        reason: String,
    },
    /// The blob's layout or geometry is invalid.
    #[error("blob layout: {0}")]
    Layout(String),
    /// Meta did not answer.
    #[error("meta: {0}")]
    Meta(#[from] MetaClientError),
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
    /// Meta refused the swap: the blob changed or is gone since the scan (another daemon, an
    /// overwrite, a delete). The copies written are orphans for garbage collection.
    Superseded,
}

/// Spreads rebuilt bytes over time when a rate cap is set.
#[derive(Debug)]
pub struct Throttle {
    rate: u64,
    next_free: Mutex<Option<Instant>>,
}

impl Throttle {
    /// A throttle of `rate` bytes per second; 0 = none.
    pub fn new(rate: u64) -> Self {
        Throttle {
            rate,
            next_free: Mutex::new(None),
        }
    }

    /// Waits until `bytes` more may be written.
    pub async fn acquire(&self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        let start = {
            let mut next = self
                .next_free
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (start, after) = schedule(*next, Instant::now(), bytes, self.rate);
            *next = Some(after);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// When a write of `bytes` may start at `rate` bytes/s, given when the previous writes leave
/// the budget free (`next_free`) and the time `now`; and when the budget is free after it.
fn schedule(next_free: Option<Instant>, now: Instant, bytes: u64, rate: u64) -> (Instant, Instant) {
    let cost = Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
    let start = next_free.map_or(now, |n| n.max(now));
    (start, start + cost)
}

/// Everything a rebuild needs.
pub struct RebuildCtx<'a> {
    pub meta: &'a MetaClient,
    pub data: &'a DataClient,
    pub view: &'a ClusterView,
    pub throttle: &'a Throttle,
}

/// Rebuilds `work` and commits its new placement; retries once without a source that failed.
pub async fn rebuild(
    ctx: &RebuildCtx<'_>,
    work: &BlobWork,
) -> Result<RebuildOutcome, RebuildError> {
    // The scan may be minutes old: skip a blob that another daemon, an overwrite or a delete
    // has changed since, rather than rebuild it only to lose the compare-and-set.
    if !still_as_scanned(ctx.meta, work).await? {
        return Ok(RebuildOutcome::Superseded);
    }
    let mut excluded: Vec<(u32, NodeId)> = Vec::new();
    let mut written = (0u64, 0u64);
    if !work.plan.writes.is_empty() {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match write_shards(ctx, work, &excluded).await {
                Ok(w) => {
                    written = w;
                    break;
                }
                Err(RebuildError::Source {
                    index,
                    node,
                    reason,
                }) if attempt < 3 => {
                    tracing::warn!(data_id = %work.data_id, index, node, %reason,
                        "source shard unreadable; retrying without it");
                    excluded.push((index, NodeId(node)));
                }
                Err(e) => return Err(e),
            }
        }
    }
    commit(ctx.meta, work).await.map(|committed| {
        if committed {
            RebuildOutcome::Committed {
                shards: written.0,
                bytes: written.1,
            }
        } else {
            RebuildOutcome::Superseded
        }
    })
}

/// Whether the blob is still owned and placed as the scan saw it.
async fn still_as_scanned(meta: &MetaClient, work: &BlobWork) -> Result<bool, RebuildError> {
    let Some(current) = meta.get_blob(work.data_id.as_bytes()).await? else {
        return Ok(false);
    };
    let key = |s: &pb::ShardPlacement| (s.shard_index, s.node_id);
    let mut now: Vec<_> = current
        .blob
        .map(|b| b.shards)
        .unwrap_or_default()
        .iter()
        .map(key)
        .collect();
    let mut then: Vec<_> = work.blob.shards.iter().map(key).collect();
    now.sort_unstable();
    then.sort_unstable();
    Ok(now == then)
}

/// Swaps the placement; false when meta says the blob changed or is gone.
async fn commit(meta: &MetaClient, work: &BlobWork) -> Result<bool, RebuildError> {
    let cmd = pb::Command {
        cmd: Some(pb::command::Cmd::UpdatePlacement(pb::UpdatePlacement {
            data_id: work.data_id.as_bytes().to_vec(),
            expected: work.blob.shards.clone(),
            shards: work
                .plan
                .placement
                .iter()
                .map(|(index, node)| pb::ShardPlacement {
                    shard_index: *index,
                    node_id: node.0,
                    generation: 0,
                })
                .collect(),
            degraded: work.plan.degraded,
            ..pb::UpdatePlacement::default()
        })),
        ..pb::Command::default()
    };
    let result = meta.execute(cmd).await?;
    match result.result {
        Some(pb::command_result::Result::Error(e)) => {
            let code = pb::MetaErrorCode::try_from(e.code)
                .unwrap_or(pb::MetaErrorCode::MetaErrorUnspecified);
            match code {
                pb::MetaErrorCode::MetaErrorConflict | pb::MetaErrorCode::MetaErrorNoSuchKey => {
                    tracing::info!(data_id = %work.data_id, reason = %e.message,
                        "placement changed since the scan; rebuild superseded");
                    Ok(false)
                }
                _ => Err(RebuildError::Meta(MetaClientError::Decode(format!(
                    "update placement refused: {}",
                    e.message
                )))),
            }
        }
        _ => Ok(true),
    }
}

struct Source {
    index: u32,
    node: NodeId,
    stream: ShardChunkStream,
}

struct Target {
    index: u32,
    node: NodeId,
    tx: Option<mpsc::Sender<data_pb::WriteShardRequest>>,
    task: tokio::task::JoinHandle<Result<data_pb::WriteShardResponse, DataClientError>>,
}

impl Target {
    async fn send(&mut self, msg: Msg) -> Result<(), RebuildError> {
        let sent = match &self.tx {
            Some(tx) => tx
                .send(data_pb::WriteShardRequest { msg: Some(msg) })
                .await
                .is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The stream ended early: the task holds the reason.
        self.tx = None;
        let reason = match (&mut self.task).await {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(_)) => "stream closed early".to_owned(),
            Err(e) => e.to_string(),
        };
        Err(RebuildError::Target {
            index: self.index,
            node: self.node.0,
            reason,
        })
    }
}

/// Streams the plan's writes; returns (shards, bytes) written.
async fn write_shards(
    ctx: &RebuildCtx<'_>,
    work: &BlobWork,
    excluded: &[(u32, NodeId)],
) -> Result<(u64, u64), RebuildError> {
    let blob = &work.blob;
    let layout = Layout::new(blob.data_shards, blob.parity_shards)
        .map_err(|e| RebuildError::Layout(e.to_string()))?;
    let codec = Codec::new(layout).map_err(|e| RebuildError::Layout(e.to_string()))?;
    let geometry = StripeGeometry::try_new(layout, blob.chunk_size)
        .map_err(|e| RebuildError::Layout(e.to_string()))?;
    let chunk_count = geometry.chunk_count(work.size);
    let chunk_size = blob.chunk_size as usize;
    let k = layout.data_shards() as usize;
    let n = layout.total_shards() as usize;

    // Sources: the plan's healthy copies, data shards first, on nodes that answered this pass.
    let candidates: Vec<(u32, NodeId)> = work
        .plan
        .sources
        .iter()
        .copied()
        .filter(|s| !excluded.contains(s) && ctx.view.is_reachable(s.1))
        .collect();
    if candidates.len() < k {
        return Err(RebuildError::Sources(format!(
            "{} of {k} needed",
            candidates.len()
        )));
    }
    let mut sources = Vec::with_capacity(k);
    for (index, node) in candidates.into_iter().take(k) {
        let addr = ctx.view.addr(node).unwrap_or_default().to_owned();
        let stream = ctx
            .data
            .read_shard(&addr, crate::gc::legacy_shard_id(work.data_id, index), 0, 0)
            .await
            .map_err(|e| RebuildError::Source {
                index,
                node: node.0,
                reason: e.to_string(),
            })?;
        sources.push(Source {
            index,
            node,
            stream,
        });
    }

    let mut targets = Vec::with_capacity(work.plan.writes.len());
    for (index, node) in &work.plan.writes {
        let addr = ctx
            .view
            .addr(*node)
            .ok_or_else(|| RebuildError::Target {
                index: *index,
                node: node.0,
                reason: "node not registered".into(),
            })?
            .to_owned();
        let (tx, rx) = mpsc::channel(4);
        let data = ctx.data.clone();
        let task = tokio::spawn(async move {
            data.write_shard(&addr, tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        let mut target = Target {
            index: *index,
            node: *node,
            tx: Some(tx),
            task,
        };
        target
            .send(Msg::Header(data_pb::ShardHeader {
                id: Some(crate::gc::legacy_shard_id(work.data_id, *index)),
                data_shards: blob.data_shards,
                parity_shards: blob.parity_shards,
                chunk_size: blob.chunk_size,
                lease_id: 0,
            }))
            .await?;
        targets.push(target);
    }

    let mut bytes = 0u64;
    for chunk in 0..chunk_count {
        let reads = sources.iter_mut().map(|s| next_chunk(s, chunk, chunk_size));
        let mut row: Vec<Option<Vec<u8>>> = vec![None; n];
        for result in futures::future::join_all(reads).await {
            let (index, data) = result?;
            row[index as usize] = Some(data);
        }
        codec
            .reconstruct(&mut row)
            .map_err(|e| RebuildError::Sources(e.to_string()))?;
        for target in &mut targets {
            let Some(data) = row[target.index as usize].take() else {
                return Err(RebuildError::Layout(format!(
                    "shard {} was not reconstructed",
                    target.index
                )));
            };
            let hash = chunk_hash(&data);
            ctx.throttle.acquire(data.len() as u64).await;
            bytes += data.len() as u64;
            target
                .send(Msg::Chunk(data_pb::ShardChunk {
                    index: chunk,
                    data: Bytes::from(data),
                    blake3: Bytes::copy_from_slice(&hash),
                }))
                .await?;
        }
    }
    for target in &mut targets {
        target
            .send(Msg::Commit(data_pb::ShardCommit {
                chunks: chunk_count,
                ..data_pb::ShardCommit::default()
            }))
            .await?;
        target.tx = None;
    }
    for target in targets {
        let (index, node) = (target.index, target.node.0);
        match target.task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(RebuildError::Target {
                    index,
                    node,
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                return Err(RebuildError::Target {
                    index,
                    node,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok((work.plan.writes.len() as u64, bytes))
}

/// The verified chunk `expected` of a source.
async fn next_chunk(
    source: &mut Source,
    expected: u64,
    chunk_size: usize,
) -> Result<(u32, Vec<u8>), RebuildError> {
    let (index, node) = (source.index, source.node.0);
    let fail = move |reason: String| RebuildError::Source {
        index,
        node,
        reason,
    };
    let item = match tokio::time::timeout(CHUNK_TIMEOUT, source.stream.next()).await {
        Err(_) => return Err(fail("no chunk within the timeout".into())),
        Ok(None) => return Err(fail(format!("stream ended before chunk {expected}"))),
        Ok(Some(Err(e))) => return Err(fail(e.to_string())),
        Ok(Some(Ok(item))) => item,
    };
    if item.corrupt {
        return Err(fail(format!("chunk {} is corrupt", item.index)));
    }
    if item.index != expected {
        return Err(fail(format!(
            "chunk {} arrived, {expected} expected",
            item.index
        )));
    }
    if item.data.len() != chunk_size {
        return Err(fail(format!(
            "chunk of {} bytes, {chunk_size} expected",
            item.data.len()
        )));
    }
    let hash = item
        .hashes
        .as_ref()
        .map(|h| h.hashes.clone())
        .unwrap_or_default();
    if !verify_chunk(&item.data, &hash) {
        return Err(fail(format!("chunk {expected} fails its hash")));
    }
    Ok((source.index, item.data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_spaced_at_the_rate() {
        let t0 = Instant::now();
        let mut next = None;
        let mut starts = Vec::new();
        for _ in 0..5 {
            // All five arrive at once: each starts when the previous one's budget is spent.
            let (start, after) = schedule(next, t0, 500, 1_000);
            starts.push(start - t0);
            next = Some(after);
        }
        let ms: Vec<u128> = starts.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 500, 1000, 1500, 2000]);
        // After an idle spell the budget does not accumulate: a late write starts at once.
        let late = t0 + Duration::from_secs(10);
        assert_eq!(schedule(next, late, 500, 1_000).0, late);
    }
}
