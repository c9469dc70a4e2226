//! The write half of the pipeline: a body becomes an inline blob or k + m shard streams, each
//! written by the shared [`ShardWriter`] under the write's lease with a fresh generation.
//!
//! Invariant: a shard stream is sent its commit only after the whole body was read, matched its
//! declared length, was sent, and passed the write's check; any earlier failure drops every
//! writer without a commit, so the data nodes keep nothing. The manifest records the digest of
//! every shard index: a committed shard's from its writer, a lost shard's from the chunk hashes
//! its writer had when it failed, continued here. Memory per write is bounded by one stripe
//! being cut, one being coded, its plaintext pieces, and the shard writers' small queues.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tessera_client::shard::{ShardWriteSpec, WrittenShard};
use tessera_client::{ShardId, ShardWriteError, ShardWriter};
use tessera_core::blob::{Blob, BlobStorage, ErasureBlob, Generation, ShardCopy};
use tessera_core::checksum::{ChecksumAlgorithm, ChecksumHasher};
use tessera_core::etag::Md5Hasher;
use tessera_core::layout::Layout;
use tessera_core::names::{DataId, NodeId, ZoneName};
use tessera_core::placement::{NodeInfo, Placement, PlacementError, meets_write_rule, place};
use tessera_core::shard_file::{ChunkHash, ShardDigester, chunk_hash};
use tessera_core::stripe::Codec;
use tracing::{debug, warn};

use super::sealing::Sealer;
use super::{
    BlobStore, BodyCheck, BodyDigests, BodyError, MAX_CHUNK_SIZE, MAX_CHUNKS_PER_SHARD,
    PipelineError, WriteOptions, WrittenBlob, choose_layout,
};
use crate::nodes::NodeDirectory;

/// Chunk sizes are multiples of this (small blobs get smaller chunks).
const CHUNK_ALIGN: u64 = 4096;

/// The chunk size of a blob of layout `layout`: the configured one, or for a blob whose stored
/// length is known and fits in one stripe, just enough (rounded up to 4 KiB) for its k data
/// chunks, so a small object does not occupy n full-size chunks on disk; and never so small
/// that the longest stored length the write may reach (`max_stored_len`) would need more than
/// [`MAX_CHUNKS_PER_SHARD`] chunks per shard. At most [`MAX_CHUNK_SIZE`].
pub(super) fn chunk_size_for(
    configured: u32,
    layout: Layout,
    expected_stored_len: Option<u64>,
    max_stored_len: u64,
) -> u32 {
    let k = u64::from(layout.data_shards().max(1));
    let align = |bytes: u64| bytes.div_ceil(CHUNK_ALIGN).max(1) * CHUNK_ALIGN;
    let wanted = match expected_stored_len {
        Some(len) => align(len.div_ceil(k)).min(u64::from(configured)),
        None => u64::from(configured),
    };
    let bound = expected_stored_len.unwrap_or(max_stored_len);
    let least = align(bound.div_ceil(k.saturating_mul(MAX_CHUNKS_PER_SHARD)));
    let size = wanted.max(least).min(u64::from(MAX_CHUNK_SIZE));
    u32::try_from(size).unwrap_or(MAX_CHUNK_SIZE)
}

/// Writes `body` as a blob; see [`BlobStore::write`].
pub(super) async fn write_blob<S>(
    store: &BlobStore,
    body: S,
    opts: WriteOptions,
) -> Result<WrittenBlob, PipelineError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Send + Unpin,
{
    let WriteOptions {
        expected_len,
        max_len,
        checksums,
        lease_id,
        check,
        target,
    } = opts;
    if let Some(expected) = expected_len
        && expected > max_len
    {
        return Err(PipelineError::EntityTooLarge { max: max_len });
    }
    let mut body = BodyReader {
        body,
        idle: store.config.body_idle_timeout,
        total: 0,
        expected: expected_len,
        max: max_len,
    };
    let mut digests = DigestState::new(&checksums);
    let mut sealer = store.seals.sealer(&target).await?;

    // Read just past the inline threshold before deciding where the bytes go.
    let threshold = store.config.inline_threshold;
    let mut head: Vec<Bytes> = Vec::new();
    let mut head_len: u64 = 0;
    let mut ended = false;
    while head_len <= threshold {
        match body.next().await? {
            Some(piece) => {
                head_len += piece.len() as u64;
                head.push(piece);
            }
            None => {
                ended = true;
                break;
            }
        }
    }

    if ended {
        for piece in &head {
            digests.update(piece);
        }
        let digests = digests.finish(head_len);
        run_check(check, &digests)?;
        let mut stored = Vec::with_capacity(usize::try_from(head_len).unwrap_or(0));
        for piece in head {
            stored.extend_from_slice(&sealer.seal(piece)?);
        }
        stored.extend_from_slice(&sealer.finish()?);
        let stored_size = stored.len() as u64;
        check_stored_len(sealer.as_ref(), head_len, stored_size)?;
        return Ok(WrittenBlob {
            blob: Blob {
                size: head_len,
                stored_size,
                sealing: sealer.sealing(),
                storage: BlobStorage::Inline(stored),
            },
            digests,
        });
    }

    let lease_id = lease_id.ok_or_else(|| {
        PipelineError::internal("write", "an erasure-coded write needs a write lease")
    })?;
    let bounds = StoredBounds {
        expected: expected_len.map(|len| sealer.stored_len(len)),
        max: sealer.stored_len(max_len),
    };
    let mut writer = ErasureWriter::start(store, digests, bounds, lease_id).await?;
    for piece in head {
        writer.push(piece, &mut *sealer).await?;
    }
    while let Some(piece) = body.next().await? {
        writer.push(piece, &mut *sealer).await?;
    }
    writer.finish(body.total, sealer, check).await
}

/// Runs the write's check, if any, on the body's digests.
fn run_check(check: Option<BodyCheck>, digests: &BodyDigests) -> Result<(), PipelineError> {
    match check {
        Some(check) => check(digests).map_err(PipelineError::BodyRejected),
        None => Ok(()),
    }
}

/// Checks the sealing invariant: a sealer stores exactly `stored_len(plaintext)` bytes.
fn check_stored_len(sealer: &dyn Sealer, plain: u64, stored: u64) -> Result<(), PipelineError> {
    let expected = sealer.stored_len(plain);
    if expected == stored {
        Ok(())
    } else {
        Err(PipelineError::internal(
            "sealing",
            format!("{plain} plaintext bytes sealed to {stored} bytes, {expected} announced"),
        ))
    }
}

/// The body with its idle timeout and length limits applied as it is read.
struct BodyReader<S> {
    body: S,
    idle: Duration,
    total: u64,
    expected: Option<u64>,
    max: u64,
}

impl<S> BodyReader<S>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Send + Unpin,
{
    /// The next piece of the body, or `None` at its end (which then has the declared length).
    async fn next(&mut self) -> Result<Option<Bytes>, PipelineError> {
        let piece = match tokio::time::timeout(self.idle, self.body.next()).await {
            Err(_) => return Err(PipelineError::BodyIdle { idle: self.idle }),
            Ok(Some(Err(source))) => return Err(PipelineError::BodyRead { source }),
            Ok(Some(Ok(piece))) => piece,
            Ok(None) => {
                return match self.expected {
                    Some(expected) if expected != self.total => {
                        Err(PipelineError::LengthMismatch {
                            expected,
                            got: self.total,
                        })
                    }
                    _ => Ok(None),
                };
            }
        };
        self.total = self.total.saturating_add(piece.len() as u64);
        if self.total > self.max {
            return Err(PipelineError::EntityTooLarge { max: self.max });
        }
        if let Some(expected) = self.expected
            && self.total > expected
        {
            return Err(PipelineError::LengthMismatch {
                expected,
                got: self.total,
            });
        }
        Ok(Some(piece))
    }
}

/// MD5 and the requested checksums of the body's plaintext, fed in body order.
struct DigestState {
    md5: Md5Hasher,
    checksums: Vec<ChecksumHasher>,
}

impl DigestState {
    fn new(algorithms: &[ChecksumAlgorithm]) -> Self {
        Self {
            md5: Md5Hasher::new(),
            checksums: algorithms.iter().map(|a| ChecksumHasher::new(*a)).collect(),
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        for hasher in &mut self.checksums {
            hasher.update(data);
        }
    }

    fn finish(self, size: u64) -> BodyDigests {
        BodyDigests {
            size,
            md5: self.md5.finalize(),
            checksums: self
                .checksums
                .into_iter()
                .map(|h| (h.algorithm(), h.finalize()))
                .collect(),
        }
    }
}

/// The stored lengths a write may reach: exactly `expected` when the body's length was
/// declared, at most `max` in any case.
#[derive(Clone, Copy, Debug)]
struct StoredBounds {
    expected: Option<u64>,
    max: u64,
}

/// One shard of the blob being written.
struct ShardSlot {
    index: u32,
    node: NodeId,
    zone: ZoneName,
    generation: Generation,
    /// The stream to its node; `None` once it failed (or could not be opened).
    writer: Option<ShardWriter>,
    /// The digest state of a shard whose writer failed, continued with the later chunks'
    /// hashes computed here, so the manifest still names the shard's digest.
    digester: Option<ShardDigester>,
}

/// The erasure-coded half of a write: cuts stripes, codes them and streams the chunks.
struct ErasureWriter {
    nodes: NodeDirectory,
    metrics: Arc<super::PipelineMetrics>,
    layout: Layout,
    data_id: DataId,
    chunk_size: u32,
    placement_degraded: bool,
    codec: Arc<Codec>,
    slots: Vec<ShardSlot>,
    /// The stripe being filled with stored bytes; always `k * chunk_size` capacity.
    stripe: Vec<u8>,
    stripe_len: usize,
    /// Plaintext pieces not yet digested (digested with the stripe they went into).
    pending_plain: Vec<Bytes>,
    /// Stored bytes so far.
    stored: u64,
    /// Stripes sent so far (the index of the next one).
    stripes: u64,
    /// `None` only while a stripe is being coded on the blocking pool.
    digests: Option<DigestState>,
}

/// The node view, layout and placement chosen for a new blob.
type Selection = (Vec<crate::nodes::DataNodeView>, Layout, Placement, DataId);

/// Picks a layout and places a fresh data id on the current node view.
fn select_nodes(store: &BlobStore) -> Result<Selection, PipelineError> {
    let snapshot = store.nodes.snapshot();
    let infos: Vec<NodeInfo> = snapshot.iter().map(|n| n.node_info()).collect();
    let available_nodes = count_u32(infos.iter().filter(|n| n.available).count());
    let usable_zones = count_u32(
        infos
            .iter()
            .filter(|n| n.available)
            .map(|n| &n.zone)
            .collect::<BTreeSet<_>>()
            .len(),
    );
    let layout =
        choose_layout(store.config.layout, &snapshot).ok_or(PipelineError::InsufficientNodes {
            shards: 0,
            available_nodes,
            usable_zones,
        })?;
    let data_id = DataId::from_bytes(rand::random());
    let placement = place(&layout, &infos, &data_id).map_err(|e| match e {
        PlacementError::InsufficientNodes { shards, .. } => PipelineError::InsufficientNodes {
            shards,
            available_nodes,
            usable_zones,
        },
        other @ PlacementError::DuplicateNode { .. } => PipelineError::internal("placement", other),
    })?;
    Ok((snapshot, layout, placement, data_id))
}

/// What coding one stripe produced: the n chunks, and the hashes of the chunks of shards whose
/// digest the pipeline keeps itself.
struct CodedStripe {
    chunks: Vec<Vec<u8>>,
    own_hashes: Vec<Option<ChunkHash>>,
}

impl ErasureWriter {
    /// Chooses the layout and the nodes and opens one writer per shard. When the node view
    /// cannot place the blob (a gateway that just started, or one that missed a node coming
    /// back), it asks meta once for a fresh view before giving up.
    async fn start(
        store: &BlobStore,
        digests: DigestState,
        bounds: StoredBounds,
        lease_id: u64,
    ) -> Result<Self, PipelineError> {
        let (snapshot, layout, placement, data_id) = match select_nodes(store) {
            Err(PipelineError::InsufficientNodes { .. }) => {
                if let Err(e) = store.nodes.refresh().await {
                    debug!(error = %e, "node view refresh failed");
                }
                select_nodes(store)?
            }
            other => other?,
        };
        let codec = Codec::new(layout).map_err(|e| PipelineError::internal("codec", e))?;
        if store.config.chunk_size == 0 {
            return Err(PipelineError::internal("config", "chunk size is 0"));
        }
        let chunk_size =
            chunk_size_for(store.config.chunk_size, layout, bounds.expected, bounds.max);

        let by_id: BTreeMap<NodeId, _> = snapshot.iter().map(|n| (n.id, n)).collect();
        let mut slots = Vec::with_capacity(placement.shards.len());
        for (index, node) in (0u32..).zip(&placement.shards) {
            let view = by_id
                .get(node)
                .ok_or_else(|| PipelineError::internal("placement", "placed on an unknown node"))?;
            let generation = Generation::from_random(rand::random());
            let id = ShardId::new(data_id, index, generation);
            let spec = ShardWriteSpec::new(id, layout, chunk_size, lease_id);
            let mut slot = ShardSlot {
                index,
                node: *node,
                zone: view.zone.clone(),
                generation,
                writer: None,
                digester: None,
            };
            match ShardWriter::open(&store.data, &view.addr, spec) {
                Ok(writer) => slot.writer = Some(writer),
                Err(e) => {
                    shard_lost(&store.nodes, &store.metrics, data_id, index, *node, &e);
                    slot.digester = Some(ShardDigester::new(&data_id, index));
                }
            }
            slots.push(slot);
        }
        debug!(
            data_id = %data_id,
            k = layout.data_shards(),
            m = layout.parity_shards(),
            chunk_size,
            lease_id,
            degraded = placement.degraded,
            "blob write started"
        );
        let stripe_size = layout.data_shards() as usize * chunk_size as usize;
        let writer = Self {
            nodes: store.nodes.clone(),
            metrics: Arc::clone(&store.metrics),
            layout,
            data_id,
            chunk_size,
            placement_degraded: placement.degraded,
            codec: Arc::new(codec),
            slots,
            stripe: vec![0; stripe_size],
            stripe_len: 0,
            pending_plain: Vec::new(),
            stored: 0,
            stripes: 0,
            digests: Some(digests),
        };
        if !writer.rule_still_reachable() {
            return Err(writer.quorum_lost(0));
        }
        Ok(writer)
    }

    /// Seals a plaintext piece and appends it, sending every stripe that fills up.
    async fn push(&mut self, plain: Bytes, sealer: &mut dyn Sealer) -> Result<(), PipelineError> {
        let stored = sealer.seal(plain.clone())?;
        self.pending_plain.push(plain);
        self.push_stored(&stored).await
    }

    /// Appends stored bytes, sending every stripe that fills up.
    async fn push_stored(&mut self, mut data: &[u8]) -> Result<(), PipelineError> {
        self.stored += data.len() as u64;
        while !data.is_empty() {
            let room = self.stripe.len() - self.stripe_len;
            let take = room.min(data.len());
            self.stripe[self.stripe_len..self.stripe_len + take].copy_from_slice(&data[..take]);
            self.stripe_len += take;
            data = &data[take..];
            if self.stripe_len == self.stripe.len() {
                self.flush_stripe().await?;
            }
        }
        Ok(())
    }

    /// Digests the pending plaintext, codes and sends the stripe buffered so far (zero-padded
    /// by the codec); with an empty stripe, only digests.
    async fn flush_stripe(&mut self) -> Result<(), PipelineError> {
        let coding = self.stripe_len > 0;
        if coding && self.stripes >= MAX_CHUNKS_PER_SHARD {
            return Err(PipelineError::internal(
                "stripe",
                format!("a shard would exceed {MAX_CHUNKS_PER_SHARD} chunks"),
            ));
        }
        let mut digests = self
            .digests
            .take()
            .ok_or_else(|| PipelineError::internal("stripe", "digests lost"))?;
        let stripe = std::mem::take(&mut self.stripe);
        let plain = std::mem::take(&mut self.pending_plain);
        let len = self.stripe_len;
        let codec = Arc::clone(&self.codec);
        let chunk_size = self.chunk_size as usize;
        let own: Vec<bool> = self.slots.iter().map(|s| s.writer.is_none()).collect();
        let (data_id, stripe_index) = (self.data_id, self.stripes);
        let coded = tokio::task::spawn_blocking(move || {
            for piece in &plain {
                digests.update(piece);
            }
            let coded = if coding {
                codec
                    .encode_stripe(&stripe[..len], chunk_size)
                    .map(|chunks| {
                        let own_hashes = (0u32..)
                            .zip(&chunks)
                            .zip(&own)
                            .map(|((index, chunk), own)| {
                                own.then(|| chunk_hash(&data_id, index, stripe_index, chunk))
                            })
                            .collect();
                        Some(CodedStripe { chunks, own_hashes })
                    })
            } else {
                Ok(None)
            };
            (stripe, digests, coded)
        })
        .await
        .map_err(|e| PipelineError::internal("stripe coding task", e))?;
        let (stripe, digests, coded) = coded;
        self.stripe = stripe;
        self.stripe_len = 0;
        self.digests = Some(digests);
        let Some(coded) = coded.map_err(|e| PipelineError::internal("stripe coding", e))? else {
            return Ok(());
        };
        self.send_stripe(coded).await
    }

    /// Sends one coded stripe's chunks to the live writers and keeps the digests of the others.
    async fn send_stripe(&mut self, coded: CodedStripe) -> Result<(), PipelineError> {
        let sends = self
            .slots
            .iter_mut()
            .zip(coded.chunks)
            .zip(coded.own_hashes)
            .map(|((slot, chunk), own_hash)| async move {
                match (&mut slot.writer, &mut slot.digester) {
                    (Some(writer), _) => match writer.send_chunk(Bytes::from(chunk)).await {
                        Ok(()) => None,
                        Err(e) => Some((slot.index, slot.node, e)),
                    },
                    (None, Some(digester)) => {
                        if let Some(hash) = own_hash {
                            digester.push(&hash);
                        }
                        None
                    }
                    (None, None) => None,
                }
            });
        let failures: Vec<_> = futures::future::join_all(sends)
            .await
            .into_iter()
            .flatten()
            .collect();
        self.stripes += 1;
        let lost = !failures.is_empty();
        for (index, node, error) in failures {
            self.take_over(index, node, &error)?;
        }
        if lost && !self.rule_still_reachable() {
            return Err(self.quorum_lost(0));
        }
        Ok(())
    }

    /// Drops the failed writer of shard `index` and continues its digest here.
    fn take_over(
        &mut self,
        index: u32,
        node: NodeId,
        error: &ShardWriteError,
    ) -> Result<(), PipelineError> {
        shard_lost(&self.nodes, &self.metrics, self.data_id, index, node, error);
        let stripes = self.stripes;
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.index == index)
            .ok_or_else(|| PipelineError::internal("stripe", "lost an unknown shard"))?;
        let Some(writer) = slot.writer.take() else {
            return Ok(());
        };
        let digester = writer.digester().clone();
        // The writer hashes every chunk it is handed, the failed one included.
        if digester.chunks() != stripes {
            return Err(PipelineError::internal(
                "stripe",
                format!(
                    "shard {index} hashed {} chunks of {stripes}",
                    digester.chunks()
                ),
            ));
        }
        slot.digester = Some(digester);
        Ok(())
    }

    /// Whether the shards still streaming could meet the write rule if they all commit.
    fn rule_still_reachable(&self) -> bool {
        let live: Vec<(u32, ZoneName)> = self
            .slots
            .iter()
            .filter(|s| s.writer.is_some())
            .map(|s| (s.index, s.zone.clone()))
            .collect();
        meets_write_rule(&self.layout, &live)
    }

    fn quorum_lost(&self, committed: u32) -> PipelineError {
        PipelineError::WriteQuorumLost {
            committed,
            needed: self.layout.data_shards(),
        }
    }

    /// Sends the last stripe, runs the write's check, commits every surviving shard and
    /// applies the write rule.
    async fn finish(
        mut self,
        size: u64,
        mut sealer: Box<dyn Sealer>,
        check: Option<BodyCheck>,
    ) -> Result<WrittenBlob, PipelineError> {
        let tail = sealer.finish()?;
        self.push_stored(&tail).await?;
        if self.stripe_len > 0 || !self.pending_plain.is_empty() {
            self.flush_stripe().await?;
        }
        check_stored_len(sealer.as_ref(), size, self.stored)?;
        let digests = self
            .digests
            .take()
            .ok_or_else(|| PipelineError::internal("finish", "digests lost"))?
            .finish(size);
        // The body is whole and sent: check it before any shard is committed. On a refusal
        // the writers drop uncommitted and the nodes keep nothing.
        run_check(check, &digests)?;

        let chunks = self.stripes;
        let commits = self.slots.iter_mut().map(|slot| async move {
            let writer = slot.writer.take()?;
            let digester = writer.digester().clone();
            Some((slot.index, slot.node, digester, writer.commit().await))
        });
        let results: Vec<_> = futures::future::join_all(commits)
            .await
            .into_iter()
            .flatten()
            .collect();
        let mut committed: BTreeMap<u32, WrittenShard> = BTreeMap::new();
        for (index, node, digester, result) in results {
            match result {
                Ok(written) => {
                    self.nodes.report_success(node);
                    committed.insert(index, written);
                }
                Err(e) => {
                    shard_lost(&self.nodes, &self.metrics, self.data_id, index, node, &e);
                    if let Some(slot) = self.slots.iter_mut().find(|s| s.index == index) {
                        slot.digester = Some(digester);
                    }
                }
            }
        }
        self.manifest(size, chunks, &committed, sealer.as_ref(), digests)
    }

    /// The blob record of the committed shards, if they meet the write rule.
    fn manifest(
        self,
        size: u64,
        chunks: u64,
        committed: &BTreeMap<u32, WrittenShard>,
        sealer: &dyn Sealer,
        digests: BodyDigests,
    ) -> Result<WrittenBlob, PipelineError> {
        let durable: Vec<(u32, ZoneName)> = self
            .slots
            .iter()
            .filter(|s| committed.contains_key(&s.index))
            .map(|s| (s.index, s.zone.clone()))
            .collect();
        let mut shards: Vec<ShardCopy> = self
            .slots
            .iter()
            .filter(|s| committed.contains_key(&s.index))
            .map(|s| ShardCopy {
                shard_index: s.index,
                node: s.node,
                generation: s.generation,
            })
            .collect();
        shards.sort();
        if !meets_write_rule(&self.layout, &durable) {
            let orphans: Vec<String> = shards.iter().map(ToString::to_string).collect();
            warn!(
                data_id = %self.data_id,
                orphans = ?orphans,
                "write quorum lost; committed shards left for garbage collection"
            );
            return Err(self.quorum_lost(count_u32(shards.len())));
        }
        let mut shard_digests = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let digest = match (committed.get(&slot.index), &slot.digester) {
                (Some(written), _) => written.digest,
                (None, Some(digester)) if digester.chunks() == chunks => digester.clone().finish(),
                (None, _) => {
                    return Err(PipelineError::internal(
                        "manifest",
                        format!("no digest for shard {}", slot.index),
                    ));
                }
            };
            shard_digests.push(digest);
        }
        let lost = shards.len() < self.layout.total_shards() as usize;
        let degraded = self.placement_degraded || lost;
        let erasure = ErasureBlob {
            data_id: self.data_id,
            layout: self.layout,
            chunk_size: self.chunk_size,
            chunks_per_shard: chunks,
            shards,
            shard_digests,
            degraded,
            placed_at_index: 0,
        };
        erasure
            .validate()
            .map_err(|e| PipelineError::internal("manifest", e))?;
        debug!(
            data_id = %self.data_id,
            size,
            stored = self.stored,
            stripes = chunks,
            shards = erasure.shards.len(),
            degraded,
            "blob written"
        );
        Ok(WrittenBlob {
            blob: Blob {
                size,
                stored_size: self.stored,
                sealing: sealer.sealing(),
                storage: BlobStorage::Erasure(erasure),
            },
            digests,
        })
    }
}

/// Logs and counts a shard stream the write continues without.
fn shard_lost(
    nodes: &NodeDirectory,
    metrics: &super::PipelineMetrics,
    data_id: DataId,
    shard: u32,
    node: NodeId,
    error: &ShardWriteError,
) {
    warn!(
        data_id = %data_id,
        shard_index = shard,
        node_id = node.0,
        fault = error.code(),
        error = %error,
        "shard stream failed; continuing without it"
    );
    metrics.shard_write_failures.with(&[error.code()]).inc();
    if error.blames_node() {
        nodes.report_failure(node);
    }
}

/// A count of nodes, zones or shards (all far below `u32::MAX`) as `u32`, saturating.
fn count_u32(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}
