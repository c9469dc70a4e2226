//! The read half of the pipeline: a plaintext range of a blob, as the stored range that holds
//! it, stripe by stripe from any k shard copies, unsealed.
//!
//! Invariant: every byte emitted was unsealed from chunks the shared [`VerifiedShardReader`]
//! checked against the manifest's shard digest (so a copy whose table or chunk differs from
//! what the writer wrote there, whatever the node claims, is treated as missing and read
//! around), or from chunks rebuilt from k such chunks; at most k shard streams are open at a
//! time (data shards and live nodes preferred) and at most one stripe is buffered beyond what
//! the consumer has not yet taken.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tessera_client::shard::ShardReadSpec;
use tessera_client::{DataClient, ShardReadFault, VerifiedShardReader};
use tessera_core::blob::{Blob, BlobStorage, ErasureBlob, ShardCopy};
use tessera_core::layout::Layout;
use tessera_core::names::NodeId;
use tessera_core::stripe::{Codec, StripeGeometry};
use tokio::sync::mpsc;
use tracing::warn;

use super::sealing::{Opened, SealTarget, Unsealer};
use super::{BlobReadStream, BlobStore, PipelineError, PipelineMetrics};
use crate::nodes::NodeDirectory;

/// Reads the plaintext bytes `range` of `blob`; see [`BlobStore::read`]. The read is opened
/// (the data key fetched) on first poll.
pub(super) fn read_blob(
    store: &BlobStore,
    blob: &Blob,
    target: &SealTarget,
    range: Range<u64>,
) -> BlobReadStream {
    if range.start >= range.end {
        return Box::pin(futures::stream::empty());
    }
    let (store, blob, target) = (store.clone(), blob.clone(), target.clone());
    let opening = futures::stream::once(async move {
        open_blob(&store, &blob, &target, range)
            .await
            .unwrap_or_else(failed)
    });
    Box::pin(Exclusive(std::sync::Mutex::new(Box::pin(
        opening.flatten(),
    ))))
}

/// A stream that is `Sync` because it is only ever reached through `&mut` (polling): the
/// opening future (a key-service call) is `Send` but not `Sync`, and `Mutex::get_mut` needs no
/// lock.
struct Exclusive<S>(std::sync::Mutex<S>);

impl<S: Stream + Unpin> Stream for Exclusive<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Pin::new(inner).poll_next(cx)
    }
}

/// Opens a read of the plaintext bytes `range` (not empty, within the blob) of `blob` now
/// (the data key fetched, so a key refused fails here, before any byte) and streams it.
pub(super) async fn open_blob(
    store: &BlobStore,
    blob: &Blob,
    target: &SealTarget,
    range: Range<u64>,
) -> Result<BlobReadStream, PipelineError> {
    if range.end > blob.size {
        return Err(PipelineError::internal(
            "read",
            format!("range {range:?} beyond a blob of {} bytes", blob.size),
        ));
    }
    let opened = store
        .seals
        .opener(&blob.sealing, target, range.clone(), blob.size)
        .await?;
    let Opened {
        stored: stored_range,
        skip,
        unsealer,
    } = opened;
    if stored_range.start >= stored_range.end || stored_range.end > blob.stored_size {
        return Err(PipelineError::internal(
            "read",
            format!(
                "stored range {:?} outside a blob of {} stored bytes",
                stored_range, blob.stored_size
            ),
        ));
    }
    let stored = match &blob.storage {
        BlobStorage::Inline(data) => {
            if data.len() as u64 != blob.stored_size {
                return Err(PipelineError::internal(
                    "read",
                    "inline data length differs from the blob's stored size",
                ));
            }
            // Both ends are at most stored_size == data.len(), so they fit in usize.
            let (start, end) = (stored_range.start as usize, stored_range.end as usize);
            let piece = Bytes::copy_from_slice(&data[start..end]);
            Box::pin(futures::stream::iter([Ok(piece)])) as BlobReadStream
        }
        BlobStorage::Erasure(erasure) => Box::pin(ReadTaskStream {
            pending: Some(ErasureRead::new(store, erasure, stored_range.clone())?),
            rx: None,
            task: None,
        }),
    };
    Ok(Box::pin(UnsealStream {
        stored,
        unsealer,
        skip,
        remaining: range.end - range.start,
        done: false,
    }))
}

/// A stream of just one error.
fn failed(err: PipelineError) -> BlobReadStream {
    Box::pin(futures::stream::iter([Err(err)]))
}

/// Unseals stored pieces and cuts the plaintext to the range asked for: drops the first `skip`
/// bytes, ends after `remaining` more.
struct UnsealStream {
    stored: BlobReadStream,
    unsealer: Box<dyn Unsealer>,
    skip: u64,
    remaining: u64,
    done: bool,
}

impl UnsealStream {
    /// The part of freshly unsealed `plain` that lies in the range.
    fn cut(&mut self, mut plain: Bytes) -> Bytes {
        let skip = usize::try_from(self.skip.min(plain.len() as u64)).unwrap_or(plain.len());
        self.skip -= skip as u64;
        plain = plain.slice(skip..);
        let take = usize::try_from(self.remaining.min(plain.len() as u64)).unwrap_or(0);
        self.remaining -= take as u64;
        plain.slice(..take)
    }
}

impl Stream for UnsealStream {
    type Item = Result<Bytes, PipelineError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done || this.remaining == 0 {
                return Poll::Ready(None);
            }
            let unsealed = match this.stored.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(stored))) => this.unsealer.unseal(stored),
                Poll::Ready(None) => {
                    this.done = true;
                    this.unsealer.finish()
                }
            };
            match unsealed {
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Ok(plain) => {
                    let piece = this.cut(plain);
                    if !piece.is_empty() {
                        return Poll::Ready(Some(Ok(piece)));
                    }
                    if this.done && this.remaining > 0 {
                        return Poll::Ready(Some(Err(PipelineError::internal(
                            "unseal",
                            format!("the stored range ended {} bytes short", this.remaining),
                        ))));
                    }
                }
            }
        }
    }
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

/// Why one copy could not serve a read.
#[derive(Debug, thiserror::Error)]
enum ReadFault {
    #[error("the copy's node is not a member")]
    UnknownNode,
    #[error("the manifest has no digest for the copy's shard index")]
    NoDigest,
    #[error("the copy ended before chunk {next}")]
    Ended { next: u64 },
    #[error("{0}")]
    Copy(#[from] ShardReadFault),
}

impl ReadFault {
    fn code(&self) -> &'static str {
        match self {
            ReadFault::UnknownNode => "unknown_node",
            ReadFault::NoDigest => "no_manifest_digest",
            ReadFault::Ended { .. } => "shard_stream_ended",
            ReadFault::Copy(f) => f.code(),
        }
    }

    /// Whether the node, rather than this one copy, is in trouble.
    fn blames_node(&self) -> bool {
        match self {
            ReadFault::Copy(f) => f.blames_node(),
            ReadFault::Ended { .. } => true,
            ReadFault::UnknownNode | ReadFault::NoDigest => false,
        }
    }

    /// Whether the copy is missing or not what the manifest says (repair should rebuild it).
    fn is_copy_fault(&self) -> bool {
        match self {
            ReadFault::Copy(f) => f.is_copy_fault(),
            ReadFault::UnknownNode | ReadFault::NoDigest | ReadFault::Ended { .. } => false,
        }
    }
}

/// One open copy, positioned at chunk `next`.
struct Source {
    index: u32,
    node: NodeId,
    reader: VerifiedShardReader,
}

impl Source {
    /// The verified chunk `stripe` of this copy.
    async fn next_chunk(&mut self, stripe: u64) -> Result<Bytes, ReadFault> {
        match self.reader.next_chunk().await? {
            Some(chunk) if chunk.index == stripe => Ok(chunk.data),
            // The reader yields chunks in order from the one it was opened at.
            Some(_) | None => Err(ReadFault::Ended { next: stripe }),
        }
    }

    fn next(&self) -> u64 {
        self.reader.next_index()
    }
}

/// Everything one erasure-coded range read needs, owned so it can run as its own task.
struct ErasureRead {
    data: DataClient,
    nodes: NodeDirectory,
    metrics: Arc<PipelineMetrics>,
    blob: Arc<ErasureBlob>,
    layout: Layout,
    geometry: StripeGeometry,
    /// The placed copies, live nodes first, lowest index (data shards) first among them.
    candidates: Vec<ShardCopy>,
    /// The stored bytes to read.
    range: Range<u64>,
}

/// The moving parts of a read: open sources, copies tried, the codec once needed.
struct ReadState {
    active: Vec<Source>,
    tried: Vec<bool>,
    codec: Option<Arc<Codec>>,
}

impl ErasureRead {
    fn new(
        store: &BlobStore,
        erasure: &ErasureBlob,
        range: Range<u64>,
    ) -> Result<Self, PipelineError> {
        let layout = erasure.layout;
        let geometry = StripeGeometry::try_new(layout, erasure.chunk_size)
            .map_err(|e| PipelineError::internal("blob record", e))?;
        let last = geometry.stripes_for_range(range.start, range.end - 1).end;
        if last > erasure.chunks_per_shard {
            return Err(PipelineError::internal(
                "blob record",
                format!(
                    "stored range {range:?} needs {last} stripes, the manifest has {}",
                    erasure.chunks_per_shard
                ),
            ));
        }
        let mut candidates: Vec<ShardCopy> = erasure
            .shards
            .iter()
            .filter(|c| c.shard_index < layout.total_shards())
            .copied()
            .collect();
        // Copies on nodes known to be down go last, so a read during an outage does not first
        // try every dead node; among live ones, data shards come first (no decoding needed).
        let view = store.nodes.snapshot();
        let down = |node: NodeId| !view.iter().any(|v| v.id == node && v.available);
        candidates.sort_by_key(|c| (down(c.node), c.shard_index));
        Ok(Self {
            data: store.data.clone(),
            nodes: store.nodes.clone(),
            metrics: Arc::clone(&store.metrics),
            blob: Arc::new(erasure.clone()),
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
    /// failed sources with spare copies opened at this stripe.
    async fn stripe_chunks(
        &self,
        state: &mut ReadState,
        stripe: u64,
        end: u64,
    ) -> Result<Vec<Option<Bytes>>, PipelineError> {
        let k = self.layout.data_shards() as usize;
        let mut got: Vec<Option<Bytes>> = vec![None; self.layout.total_shards() as usize];
        let mut present = 0usize;
        while present < k {
            let want = k - present;
            let waiting = state.active.iter().filter(|s| s.next() == stripe).count();
            if waiting < want {
                self.open_spares(state, &got, stripe, end, want - waiting)
                    .await;
            }
            let waiting = state.active.iter().filter(|s| s.next() == stripe).count();
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
                    .filter(|s| s.next() == stripe)
                    .map(|source| async move {
                        let chunk = source.next_chunk(stripe).await;
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
                        self.copy_unreadable(index, node, stripe, &fault);
                        state
                            .active
                            .retain(|s| !(s.index == index && s.node == node));
                    }
                }
            }
        }
        Ok(got)
    }

    /// Opens up to `count` more sources at `stripe` from copies not tried yet whose index is
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
            let mut picks: Vec<ShardCopy> = Vec::new();
            for (slot, copy) in self.candidates.iter().enumerate() {
                if picks.len() == count - opened {
                    break;
                }
                let index = copy.shard_index;
                let busy = state.active.iter().any(|s| s.index == index)
                    || got.get(index as usize).is_some_and(Option::is_some)
                    || picks.iter().any(|p| p.shard_index == index);
                if !state.tried[slot] && !busy {
                    state.tried[slot] = true;
                    picks.push(*copy);
                }
            }
            if picks.is_empty() {
                return;
            }
            let opens = picks.iter().map(|copy| self.open_source(copy, stripe, end));
            for (result, copy) in futures::future::join_all(opens)
                .await
                .into_iter()
                .zip(picks)
            {
                match result {
                    Ok(source) => {
                        self.nodes.report_success(copy.node);
                        state.active.push(source);
                        opened += 1;
                    }
                    Err(fault) => {
                        self.copy_unreadable(copy.shard_index, copy.node, stripe, &fault);
                    }
                }
            }
        }
    }

    /// Opens `copy` for chunks `stripe..end`, its hash table checked against the manifest.
    async fn open_source(
        &self,
        copy: &ShardCopy,
        stripe: u64,
        end: u64,
    ) -> Result<Source, ReadFault> {
        let addr = self
            .nodes
            .addr_of(copy.node)
            .ok_or(ReadFault::UnknownNode)?;
        let spec = ShardReadSpec::from_manifest(&self.blob, copy, stripe..end)
            .ok_or(ReadFault::NoDigest)?;
        let reader = VerifiedShardReader::open(&self.data, &addr, spec).await?;
        Ok(Source {
            index: copy.shard_index,
            node: copy.node,
            reader,
        })
    }

    fn copy_unreadable(&self, index: u32, node: NodeId, stripe: u64, fault: &ReadFault) {
        warn!(
            data_id = %self.blob.data_id,
            shard_index = index,
            node_id = node.0,
            stripe,
            fault = fault.code(),
            copy_fault = fault.is_copy_fault(),
            error = %fault,
            "shard copy unreadable; reading around it"
        );
        self.metrics.shard_read_faults.with(&[fault.code()]).inc();
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
