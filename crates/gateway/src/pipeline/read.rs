//! The read half of the pipeline: a byte range of a blob, stripe by stripe, from any k shards.
//!
//! Invariant: every byte emitted comes from a chunk whose blake3 hash was verified here, or was
//! rebuilt from k such chunks; at most k shard streams are open at a time (data shards
//! preferred) and at most one stripe is buffered beyond what the consumer has not yet taken.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tessera_client::data::ShardChunkStream;
use tessera_client::{DataClient, DataClientError};
use tessera_core::layout::Layout;
use tessera_core::names::{DataId, NodeId};
use tessera_core::stripe::{Codec, StripeGeometry};
use tessera_proto::convert::data::data_id;
use tessera_proto::meta::v1 as pb;
use tokio::sync::mpsc;
use tracing::warn;

use super::{BlobReadStream, BlobStore, PipelineError};
use crate::nodes::NodeDirectory;

/// How long opening a shard stream or waiting for its next chunk may take before the shard is
/// given up for this read (dead connections are noticed sooner by HTTP/2 keepalive).
pub const SHARD_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Reads the bytes `range` of `blob`; see [`BlobStore::read`].
pub(super) fn read_blob(store: &BlobStore, blob: &pb::Blob, range: Range<u64>) -> BlobReadStream {
    if range.start >= range.end {
        return Box::pin(futures::stream::empty());
    }
    if range.end > blob.size {
        return failed(PipelineError::internal(
            "read",
            format!("range {range:?} beyond a blob of {} bytes", blob.size),
        ));
    }
    match &blob.storage {
        Some(pb::blob::Storage::InlineData(data)) => {
            if data.len() as u64 != blob.size {
                return failed(PipelineError::internal(
                    "read",
                    "inline data length differs from the blob size",
                ));
            }
            // Both ends are at most blob.size == data.len(), so they fit in usize.
            let (start, end) = (range.start as usize, range.end as usize);
            let piece = Bytes::copy_from_slice(&data[start..end]);
            Box::pin(futures::stream::iter([Ok(piece)]))
        }
        Some(pb::blob::Storage::Erasure(erasure)) => {
            match ErasureRead::new(store, erasure, range) {
                Ok(read) => Box::pin(ReadTaskStream {
                    pending: Some(read),
                    rx: None,
                    task: None,
                }),
                Err(e) => failed(e),
            }
        }
        None => failed(PipelineError::internal("read", "blob has no storage")),
    }
}

/// A stream of just one error.
fn failed(err: PipelineError) -> BlobReadStream {
    Box::pin(futures::stream::iter([Err(err)]))
}

/// Runs an [`ErasureRead`] as a task started on first poll, so that reading from the nodes
/// overlaps with the consumer sending the bytes on; dropping the stream stops the task.
struct ReadTaskStream {
    pending: Option<ErasureRead>,
    rx: Option<mpsc::Receiver<Result<Bytes, PipelineError>>>,
    task: Option<tokio::task::AbortHandle>,
}

impl Stream for ReadTaskStream {
    type Item = Result<Bytes, PipelineError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(read) = this.pending.take() {
            let (tx, rx) = mpsc::channel(read.layout.data_shards().max(1) as usize);
            this.task = Some(tokio::spawn(read.run(tx)).abort_handle());
            this.rx = Some(rx);
        }
        match &mut this.rx {
            Some(rx) => rx.poll_recv(cx),
            None => Poll::Ready(None),
        }
    }
}

impl Drop for ReadTaskStream {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One open shard stream, positioned at chunk `next`.
struct Source {
    index: u32,
    node: NodeId,
    stream: ShardChunkStream,
    next: u64,
}

impl Source {
    /// The verified chunk `stripe` of this shard.
    async fn next_chunk(&mut self, stripe: u64, chunk_size: u32) -> Result<Bytes, ReadFault> {
        let item = tokio::time::timeout(SHARD_READ_TIMEOUT, self.stream.next())
            .await
            .map_err(|_| ReadFault::Stalled)?;
        let chunk = match item {
            None => return Err(ReadFault::Ended),
            Some(Err(e)) => return Err(ReadFault::Node(e)),
            Some(Ok(chunk)) => chunk,
        };
        if chunk.corrupt {
            return Err(ReadFault::CorruptChunk);
        }
        if chunk.index != stripe {
            return Err(ReadFault::WrongChunk {
                expected: stripe,
                got: chunk.index,
            });
        }
        if chunk.data.len() != chunk_size as usize {
            return Err(ReadFault::WrongSize {
                len: chunk.data.len(),
            });
        }
        let Some(hashes) = &chunk.hashes else {
            return Err(ReadFault::HashMismatch);
        };
        if blake3::hash(&chunk.data).as_bytes().as_slice() != hashes.hashes.as_ref() {
            return Err(ReadFault::HashMismatch);
        }
        self.next = stripe + 1;
        Ok(chunk.data)
    }
}

/// Why one shard could not serve a read.
#[derive(Debug, thiserror::Error)]
enum ReadFault {
    #[error("the shard's node is not a member")]
    UnknownNode,
    #[error("{0}")]
    Node(#[from] DataClientError),
    #[error("no answer for {} s", SHARD_READ_TIMEOUT.as_secs())]
    Stalled,
    #[error("the shard stream ended early")]
    Ended,
    #[error("the node reports the chunk corrupt")]
    CorruptChunk,
    #[error("chunk {got} arrived, {expected} expected")]
    WrongChunk { expected: u64, got: u64 },
    #[error("chunk of {len} bytes")]
    WrongSize { len: usize },
    #[error("chunk hash mismatch")]
    HashMismatch,
}

impl ReadFault {
    fn code(&self) -> &'static str {
        match self {
            ReadFault::UnknownNode => "unknown_node",
            ReadFault::Node(e) => e.code(),
            ReadFault::Stalled => "stalled",
            ReadFault::Ended => "stream_ended",
            ReadFault::CorruptChunk => "corrupt_chunk",
            ReadFault::WrongChunk { .. } => "wrong_chunk",
            ReadFault::WrongSize { .. } => "wrong_chunk_size",
            ReadFault::HashMismatch => "hash_mismatch",
        }
    }

    /// Whether the fault says the node (rather than this one shard) is in trouble.
    fn blames_node(&self) -> bool {
        match self {
            ReadFault::Node(e) => e.is_retryable(),
            ReadFault::Stalled => true,
            ReadFault::UnknownNode
            | ReadFault::Ended
            | ReadFault::CorruptChunk
            | ReadFault::WrongChunk { .. }
            | ReadFault::WrongSize { .. }
            | ReadFault::HashMismatch => false,
        }
    }
}

/// Everything one erasure-coded range read needs, owned so it can run as its own task.
struct ErasureRead {
    data: DataClient,
    nodes: NodeDirectory,
    data_id: DataId,
    layout: Layout,
    geometry: StripeGeometry,
    /// The stored shards, lowest index (data shards) first.
    candidates: Vec<(u32, NodeId)>,
    range: Range<u64>,
}

/// The moving parts of a read: open sources, spares tried, the codec once needed.
struct ReadState {
    active: Vec<Source>,
    tried: Vec<bool>,
    codec: Option<Arc<Codec>>,
}

impl ErasureRead {
    fn new(
        store: &BlobStore,
        erasure: &pb::ErasureBlob,
        range: Range<u64>,
    ) -> Result<Self, PipelineError> {
        let id =
            data_id(&erasure.data_id).map_err(|e| PipelineError::internal("blob record", e))?;
        let layout = Layout::new(erasure.data_shards, erasure.parity_shards)
            .map_err(|e| PipelineError::internal("blob record", e))?;
        let geometry = StripeGeometry::try_new(layout, erasure.chunk_size)
            .map_err(|e| PipelineError::internal("blob record", e))?;
        let mut candidates: Vec<(u32, NodeId)> = erasure
            .shards
            .iter()
            .filter(|s| s.shard_index < layout.total_shards())
            .map(|s| (s.shard_index, NodeId(s.node_id)))
            .collect();
        // Shards on nodes known to be down go last, so a read during an outage does not first
        // try every dead node; among live ones, data shards come first (no decoding needed).
        let view = store.nodes.snapshot();
        let down = |node: NodeId| !view.iter().any(|v| v.id == node && v.available);
        candidates.sort_by_key(|&(index, node)| (down(node), index));
        Ok(Self {
            data: store.data.clone(),
            nodes: store.nodes.clone(),
            data_id: id,
            layout,
            geometry,
            candidates,
            range,
        })
    }

    /// Streams the range into `tx`, ending with an error if it cannot be read.
    async fn run(self, tx: mpsc::Sender<Result<Bytes, PipelineError>>) {
        if let Err(e) = self.stream_to(&tx).await {
            // The consumer may be gone already; then nobody needs the error.
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn stream_to(
        &self,
        tx: &mpsc::Sender<Result<Bytes, PipelineError>>,
    ) -> Result<(), PipelineError> {
        let stripes = self
            .geometry
            .stripes_for_range(self.range.start, self.range.end - 1);
        let mut state = ReadState {
            active: Vec::new(),
            tried: vec![false; self.candidates.len()],
            codec: None,
        };
        for stripe in stripes.clone() {
            let chunks = self.stripe_chunks(&mut state, stripe, stripes.end).await?;
            let data = self.data_chunks(&mut state, chunks).await?;
            for piece in self.pieces(stripe, &data) {
                if tx.send(Ok(piece)).await.is_err() {
                    // The consumer went away: nothing more to do.
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// At least k verified chunks of `stripe` (n entries, `None` where missing), replacing
    /// failed sources with spare shards opened at this stripe.
    async fn stripe_chunks(
        &self,
        state: &mut ReadState,
        stripe: u64,
        end: u64,
    ) -> Result<Vec<Option<Bytes>>, PipelineError> {
        let k = self.layout.data_shards() as usize;
        let chunk_size = self.geometry.chunk_size();
        let mut got: Vec<Option<Bytes>> = vec![None; self.layout.total_shards() as usize];
        let mut present = 0usize;
        while present < k {
            let want = k - present;
            let waiting = state.active.iter().filter(|s| s.next == stripe).count();
            if waiting < want {
                self.open_spares(state, &got, stripe, end, want - waiting)
                    .await;
            }
            let waiting = state.active.iter().filter(|s| s.next == stripe).count();
            if waiting < want {
                return Err(PipelineError::ReadUnavailable {
                    needed: self.layout.data_shards(),
                    available: u32::try_from(present + waiting).unwrap_or(u32::MAX),
                });
            }
            let fetches =
                state
                    .active
                    .iter_mut()
                    .filter(|s| s.next == stripe)
                    .map(|source| async move {
                        let chunk = source.next_chunk(stripe, chunk_size).await;
                        (source.index, source.node, chunk)
                    });
            let results = futures::future::join_all(fetches).await;
            for (index, node, chunk) in results {
                match chunk {
                    Ok(data) => {
                        got[index as usize] = Some(data);
                        present += 1;
                    }
                    Err(fault) => {
                        self.shard_unreadable(index, node, stripe, &fault);
                        state.active.retain(|s| s.index != index);
                    }
                }
            }
        }
        Ok(got)
    }

    /// Opens up to `count` more sources at `stripe` from shards not tried yet whose index is
    /// neither open nor already read for this stripe.
    async fn open_spares(
        &self,
        state: &mut ReadState,
        got: &[Option<Bytes>],
        stripe: u64,
        end: u64,
        count: usize,
    ) {
        let mut opened = 0;
        while opened < count {
            let mut picks: Vec<(u32, NodeId)> = Vec::new();
            for (slot, &(index, node)) in self.candidates.iter().enumerate() {
                if picks.len() == count - opened {
                    break;
                }
                let busy = state.active.iter().any(|s| s.index == index)
                    || got.get(index as usize).is_some_and(Option::is_some)
                    || picks.iter().any(|(i, _)| *i == index);
                if !state.tried[slot] && !busy {
                    state.tried[slot] = true;
                    picks.push((index, node));
                }
            }
            if picks.is_empty() {
                return;
            }
            let opens = picks
                .iter()
                .map(|&(index, node)| self.open_source(index, node, stripe, end));
            for (result, (index, node)) in futures::future::join_all(opens)
                .await
                .into_iter()
                .zip(picks)
            {
                match result {
                    Ok(source) => {
                        self.nodes.report_success(node);
                        state.active.push(source);
                        opened += 1;
                    }
                    Err(fault) => self.shard_unreadable(index, node, stripe, &fault),
                }
            }
        }
    }

    /// Opens shard `index` on `node` for chunks `stripe..end`.
    async fn open_source(
        &self,
        index: u32,
        node: NodeId,
        stripe: u64,
        end: u64,
    ) -> Result<Source, ReadFault> {
        let addr = self.nodes.addr_of(node).ok_or(ReadFault::UnknownNode)?;
        let id = legacy_shard_id(self.data_id, index);
        let stream = tokio::time::timeout(
            SHARD_READ_TIMEOUT,
            self.data.read_shard(&addr, id, stripe, end - stripe),
        )
        .await
        .map_err(|_| ReadFault::Stalled)??;
        Ok(Source {
            index,
            node,
            stream,
            next: stripe,
        })
    }

    fn shard_unreadable(&self, index: u32, node: NodeId, stripe: u64, fault: &ReadFault) {
        warn!(
            data_id = %self.data_id,
            shard_index = index,
            node_id = node.0,
            stripe,
            fault = fault.code(),
            error = %fault,
            "shard unreadable; reconstructed"
        );
        if fault.blames_node() {
            self.nodes.report_failure(node);
        }
    }

    /// The k data chunks of a stripe, rebuilt from parity when some are missing.
    async fn data_chunks(
        &self,
        state: &mut ReadState,
        mut chunks: Vec<Option<Bytes>>,
    ) -> Result<Vec<Bytes>, PipelineError> {
        let k = self.layout.data_shards() as usize;
        if chunks[..k].iter().all(Option::is_some) {
            chunks.truncate(k);
            return Ok(chunks.into_iter().flatten().collect());
        }
        let codec = match &state.codec {
            Some(codec) => Arc::clone(codec),
            None => {
                let codec = Arc::new(
                    Codec::new(self.layout).map_err(|e| PipelineError::internal("codec", e))?,
                );
                state.codec = Some(Arc::clone(&codec));
                codec
            }
        };
        let mut shards: Vec<Option<Vec<u8>>> =
            chunks.into_iter().map(|c| c.map(Vec::from)).collect();
        let rebuilt = tokio::task::spawn_blocking(move || {
            codec.reconstruct_data(&mut shards).map(|()| shards)
        })
        .await
        .map_err(|e| PipelineError::internal("reconstruct task", e))?
        .map_err(|e| PipelineError::internal("reconstruct", e))?;
        let mut data = Vec::with_capacity(k);
        for (index, shard) in rebuilt.into_iter().take(k).enumerate() {
            let shard = shard.ok_or_else(|| {
                PipelineError::internal("reconstruct", format!("data shard {index} not rebuilt"))
            })?;
            data.push(Bytes::from(shard));
        }
        Ok(data)
    }

    /// The parts of the data chunks of `stripe` that fall inside the range, in order.
    fn pieces(&self, stripe: u64, data: &[Bytes]) -> Vec<Bytes> {
        let offset = self.geometry.stripe_offset(stripe);
        let size = self.geometry.stripe_data_size();
        let lo = self.range.start.max(offset) - offset;
        let hi = self.range.end.min(offset + size) - offset;
        piece_bounds(lo, hi, u64::from(self.geometry.chunk_size()))
            .into_iter()
            .filter_map(|(chunk, r)| data.get(chunk).map(|d| d.slice(r)))
            .collect()
    }
}

/// For the stripe bytes `lo..hi`, which chunk each part is in and its bytes within the chunk.
fn piece_bounds(lo: u64, hi: u64, chunk_size: u64) -> Vec<(usize, Range<usize>)> {
    let mut out = Vec::new();
    if lo >= hi || chunk_size == 0 {
        return out;
    }
    for chunk in lo / chunk_size..hi.div_ceil(chunk_size) {
        let start = chunk * chunk_size;
        let a = lo.max(start) - start;
        let b = hi.min(start + chunk_size) - start;
        // Offsets within one chunk are below its u32 size, so they fit in usize.
        out.push((chunk as usize, a as usize..b as usize));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_exactly_the_asked_bytes() {
        assert_eq!(
            piece_bounds(0, 12, 4),
            vec![(0, 0..4), (1, 0..4), (2, 0..4)]
        );
        assert_eq!(piece_bounds(3, 5, 4), vec![(0, 3..4), (1, 0..1)]);
        assert_eq!(piece_bounds(5, 6, 4), vec![(1, 1..2)]);
        assert_eq!(piece_bounds(8, 12, 4), vec![(2, 0..4)]);
        assert!(piece_bounds(4, 4, 4).is_empty());
    }
}

/// Temporary bridge to generation-less shard ids (replaced by the verified shard reader).
fn legacy_shard_id(data_id: DataId, shard_index: u32) -> tessera_proto::data::v1::ShardId {
    tessera_proto::data::v1::ShardId {
        data_id: data_id.as_bytes().to_vec().into(),
        shard_index,
        generation: 0,
    }
}
