//! The write half of the pipeline: a body becomes an inline blob or k + m shard streams.
//!
//! Invariant: a shard stream is sent its `ShardCommit` only after the whole body was read,
//! matched its declared length and was sent; any earlier failure drops every stream without a
//! commit, so the data nodes keep nothing. Memory per write is bounded by one stripe being cut,
//! one being coded and [`SHARD_QUEUE_CHUNKS`] chunks queued per shard.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tessera_client::{DataClient, DataClientError};
use tessera_core::checksum::{ChecksumAlgorithm, ChecksumHasher};
use tessera_core::etag::Md5Hasher;
use tessera_core::layout::Layout;
use tessera_core::names::{DataId, NodeId, ZoneName};
use tessera_core::placement::{NodeInfo, Placement, PlacementError, meets_write_rule, place};
use tessera_core::stripe::Codec;
use tessera_proto::data::v1 as data_pb;
use tessera_proto::data::v1::write_shard_request::Msg;
use tessera_proto::meta::v1 as pb;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::{BlobStore, BodyError, PipelineError, WriteOptions, WrittenBlob, choose_layout};
use crate::nodes::NodeDirectory;

/// Chunks queued per shard stream: enough to keep every node busy while the next stripe is
/// coded, few enough that many concurrent uploads stay small.
pub const SHARD_QUEUE_CHUNKS: usize = 2;

/// How long one shard may refuse a chunk (or its commit) before it is dropped as stalled; a
/// node that hangs must not hang the whole upload.
pub const SHARD_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Chunk sizes are multiples of this (small blobs get smaller chunks).
const CHUNK_ALIGN: u64 = 4096;

/// The chunk size of a blob: the configured one, or for a blob whose length is known and fits
/// in one stripe, just enough (rounded up to 4 KiB) for its k data chunks, so a small object
/// does not occupy n full-size chunks on disk.
pub(super) fn chunk_size_for(configured: u32, layout: Layout, expected_len: Option<u64>) -> u32 {
    let Some(len) = expected_len else {
        return configured;
    };
    let k = u64::from(layout.data_shards().max(1));
    let needed = len.div_ceil(k).div_ceil(CHUNK_ALIGN).max(1) * CHUNK_ALIGN;
    u32::try_from(needed).map_or(configured, |n| n.min(configured))
}

/// How long to wait for a failed shard stream to say why it failed.
const FAILURE_REASON_WAIT: Duration = Duration::from_secs(2);

/// Writes `body` as a blob; see [`BlobStore::write`].
pub(super) async fn write_blob<S>(
    store: &BlobStore,
    body: S,
    opts: WriteOptions,
) -> Result<WrittenBlob, PipelineError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Send + Unpin,
{
    if let Some(expected) = opts.expected_len
        && expected > opts.max_len
    {
        return Err(PipelineError::EntityTooLarge { max: opts.max_len });
    }
    let mut body = BodyReader {
        body,
        idle: store.config.body_idle_timeout,
        total: 0,
        expected: opts.expected_len,
        max: opts.max_len,
    };
    let mut digests = BodyDigests::new(&opts.checksums);

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
        let data: Vec<u8> = head.concat();
        digests.update(&data);
        let (md5, checksums) = digests.finish();
        let size = data.len() as u64;
        return Ok(WrittenBlob {
            blob: pb::Blob {
                size,
                storage: Some(pb::blob::Storage::InlineData(data)),
                ..pb::Blob::default()
            },
            size,
            md5,
            checksums,
        });
    }

    let mut writer = ErasureWriter::start(store, digests, opts.expected_len).await?;
    for piece in head {
        writer.push(&piece).await?;
    }
    while let Some(piece) = body.next().await? {
        writer.push(&piece).await?;
    }
    writer.finish(body.total).await
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

/// MD5 and the requested checksums of the body, fed in body order.
struct BodyDigests {
    md5: Md5Hasher,
    checksums: Vec<ChecksumHasher>,
}

impl BodyDigests {
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

    fn finish(self) -> ([u8; 16], Vec<(ChecksumAlgorithm, Vec<u8>)>) {
        let checksums = self
            .checksums
            .into_iter()
            .map(|h| (h.algorithm(), h.finalize()))
            .collect();
        (self.md5.finalize(), checksums)
    }
}

/// One coded chunk with the blake3 hash the node will verify.
struct HashedChunk {
    data: Bytes,
    blake3: Bytes,
}

/// One shard stream in flight to its node.
struct ShardUpload {
    index: u32,
    node: NodeId,
    zone: ZoneName,
    /// `None` once the stream was ended (commit sent, or dropped after a failure).
    tx: Option<mpsc::Sender<data_pb::WriteShardRequest>>,
    task: JoinHandle<Result<data_pb::WriteShardResponse, DataClientError>>,
    /// Whether the task's result was taken (a finished `JoinHandle` must not be polled again).
    done: bool,
    failed: bool,
}

impl ShardUpload {
    fn open(data: &DataClient, addr: String, index: u32, node: NodeId, zone: ZoneName) -> Self {
        let (tx, rx) = mpsc::channel(SHARD_QUEUE_CHUNKS);
        let data = data.clone();
        let task =
            tokio::spawn(async move { data.write_shard(&addr, ReceiverStream::new(rx)).await });
        Self {
            index,
            node,
            zone,
            tx: Some(tx),
            task,
            done: false,
            failed: false,
        }
    }

    /// Queues `message`; on failure the shard is marked failed and the reason returned.
    async fn send(&mut self, message: data_pb::WriteShardRequest) -> Result<(), ShardFault> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(ShardFault::Ended);
        };
        let step = tokio::select! {
            sent = tokio::time::timeout(SHARD_STALL_TIMEOUT, tx.send(message)) => match sent {
                Ok(Ok(())) => SendStep::Queued,
                Ok(Err(_closed)) => SendStep::Closed,
                Err(_) => SendStep::Stalled,
            },
            finished = &mut self.task, if !self.done => SendStep::Finished(finished),
        };
        let fault = match step {
            SendStep::Queued => return Ok(()),
            SendStep::Closed => self.reason_of_close().await,
            SendStep::Stalled => ShardFault::Stalled,
            SendStep::Finished(finished) => {
                self.done = true;
                ShardFault::from_task(finished)
            }
        };
        self.fail();
        Err(fault)
    }

    /// Why the stream closed early: the task's error, if it tells within a moment.
    async fn reason_of_close(&mut self) -> ShardFault {
        if self.done {
            return ShardFault::Ended;
        }
        match tokio::time::timeout(FAILURE_REASON_WAIT, &mut self.task).await {
            Ok(finished) => {
                self.done = true;
                ShardFault::from_task(finished)
            }
            Err(_) => ShardFault::Ended,
        }
    }

    /// Stops sending to this shard; the stream ends without a commit.
    fn fail(&mut self) {
        self.failed = true;
        self.tx = None;
        if !self.done {
            self.task.abort();
        }
    }

    /// Sends the commit and waits for the node to make the shard durable.
    async fn commit(&mut self, chunks: u64) -> Result<(), ShardFault> {
        let commit = data_pb::WriteShardRequest {
            msg: Some(Msg::Commit(data_pb::ShardCommit {
                chunks,
                ..data_pb::ShardCommit::default()
            })),
        };
        self.send(commit).await?;
        self.tx = None;
        let finished = tokio::time::timeout(SHARD_STALL_TIMEOUT, &mut self.task).await;
        let outcome = match finished {
            Err(_) => Err(ShardFault::Stalled),
            Ok(finished) => {
                self.done = true;
                match finished {
                    Ok(Ok(response)) if response.chunks == chunks => Ok(()),
                    Ok(Ok(response)) => Err(ShardFault::WrongCount {
                        expected: chunks,
                        got: response.chunks,
                    }),
                    other => Err(ShardFault::from_task(other)),
                }
            }
        };
        if outcome.is_err() {
            self.fail();
        }
        outcome
    }
}

impl Drop for ShardUpload {
    fn drop(&mut self) {
        // A write abandoned for any reason (error, or the request future dropped) must not
        // leave streams behind; without a commit the node discards what it received.
        if !self.done {
            self.task.abort();
        }
    }
}

/// How one attempt to queue a message on a shard stream ended.
enum SendStep {
    Queued,
    Closed,
    Stalled,
    Finished(ShardTaskResult),
}

/// What a shard stream's task ends with.
type ShardTaskResult =
    Result<Result<data_pb::WriteShardResponse, DataClientError>, tokio::task::JoinError>;

/// Why one shard stream of a write was dropped.
#[derive(Debug, thiserror::Error)]
enum ShardFault {
    #[error("{0}")]
    Node(#[from] DataClientError),
    #[error("the shard stream ended early")]
    Ended,
    #[error("no progress for {} s", SHARD_STALL_TIMEOUT.as_secs())]
    Stalled,
    #[error("the node committed {got} chunks, {expected} sent")]
    WrongCount { expected: u64, got: u64 },
    #[error("the shard task failed: {0}")]
    Task(String),
}

impl ShardFault {
    fn from_task(finished: ShardTaskResult) -> Self {
        match finished {
            Ok(Ok(_)) => ShardFault::Ended,
            Ok(Err(e)) => ShardFault::Node(e),
            Err(e) => ShardFault::Task(e.to_string()),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ShardFault::Node(e) => e.code(),
            ShardFault::Ended => "stream_ended",
            ShardFault::Stalled => "stalled",
            ShardFault::WrongCount { .. } => "wrong_chunk_count",
            ShardFault::Task(_) => "task_failed",
        }
    }

    /// Whether the fault says the node (rather than this one shard) is in trouble.
    fn blames_node(&self) -> bool {
        match self {
            ShardFault::Node(e) => e.is_retryable(),
            ShardFault::Stalled | ShardFault::Ended => true,
            ShardFault::WrongCount { .. } | ShardFault::Task(_) => false,
        }
    }
}

/// The erasure-coded half of a write: cuts stripes, codes them and streams the chunks.
struct ErasureWriter {
    nodes: NodeDirectory,
    layout: Layout,
    data_id: DataId,
    chunk_size: u32,
    placement_degraded: bool,
    codec: Arc<Codec>,
    uploads: Vec<ShardUpload>,
    /// The stripe being filled; always `k * chunk_size` capacity.
    stripe: Vec<u8>,
    stripe_len: usize,
    /// Stripes sent so far (the index of the next one).
    stripes: u64,
    /// `None` only while a stripe is being coded on the blocking pool.
    digests: Option<BodyDigests>,
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
            .collect::<std::collections::BTreeSet<_>>()
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

impl ErasureWriter {
    /// Chooses the layout and the nodes and opens one stream per shard. When the node view
    /// cannot place the blob (a gateway that just started, or one that missed a node coming
    /// back), it asks meta once for a fresh view before giving up.
    async fn start(
        store: &BlobStore,
        digests: BodyDigests,
        expected_len: Option<u64>,
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
        let chunk_size = chunk_size_for(store.config.chunk_size, layout, expected_len);

        let by_id: BTreeMap<NodeId, _> = snapshot.iter().map(|n| (n.id, n)).collect();
        let mut uploads = Vec::with_capacity(placement.shards.len());
        for (index, node) in (0u32..).zip(&placement.shards) {
            let view = by_id
                .get(node)
                .ok_or_else(|| PipelineError::internal("placement", "placed on an unknown node"))?;
            uploads.push(ShardUpload::open(
                &store.data,
                view.addr.clone(),
                index,
                *node,
                view.zone.clone(),
            ));
        }
        debug!(
            data_id = %data_id,
            k = layout.data_shards(),
            m = layout.parity_shards(),
            degraded = placement.degraded,
            "blob write started"
        );
        let stripe_size = layout.data_shards() as usize * chunk_size as usize;
        let mut writer = Self {
            nodes: store.nodes.clone(),
            layout,
            data_id,
            chunk_size,
            placement_degraded: placement.degraded,
            codec: Arc::new(codec),
            uploads,
            stripe: vec![0; stripe_size],
            stripe_len: 0,
            stripes: 0,
            digests: Some(digests),
        };
        writer.send_headers().await?;
        Ok(writer)
    }

    /// Opens every shard stream with its header; a node that refuses at once loses its shard.
    async fn send_headers(&mut self) -> Result<(), PipelineError> {
        let (data_id, layout, chunk_size) = (self.data_id, self.layout, self.chunk_size);
        let sends = self.uploads.iter_mut().map(|upload| async move {
            let header = data_pb::WriteShardRequest {
                msg: Some(Msg::Header(data_pb::ShardHeader {
                    id: Some(data_pb::ShardId {
                        data_id: data_id.as_bytes().to_vec().into(),
                        shard_index: upload.index,
                        generation: 0,
                    }),
                    data_shards: layout.data_shards(),
                    parity_shards: layout.parity_shards(),
                    chunk_size,
                    lease_id: 0,
                })),
            };
            let sent = upload.send(header).await;
            (upload.index, upload.node, sent)
        });
        let results = futures::future::join_all(sends).await;
        self.after_sends(results)
    }

    /// Logs the shards a round of sends lost; fails once the write rule is out of reach.
    fn after_sends(
        &self,
        results: Vec<(u32, NodeId, Result<(), ShardFault>)>,
    ) -> Result<(), PipelineError> {
        let mut lost = false;
        for (shard, node, sent) in results {
            if let Err(fault) = sent {
                lost = true;
                self.shard_lost(shard, node, &fault);
            }
        }
        if lost && !self.rule_still_reachable() {
            return Err(self.quorum_lost(0));
        }
        Ok(())
    }

    /// Appends body bytes, sending every stripe that fills up.
    async fn push(&mut self, mut data: &[u8]) -> Result<(), PipelineError> {
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

    /// Digests, codes and sends the stripe buffered so far (zero-padded by the codec).
    async fn flush_stripe(&mut self) -> Result<(), PipelineError> {
        let mut digests = self
            .digests
            .take()
            .ok_or_else(|| PipelineError::internal("stripe", "digests lost"))?;
        let stripe = std::mem::take(&mut self.stripe);
        let len = self.stripe_len;
        let codec = Arc::clone(&self.codec);
        let chunk_size = self.chunk_size as usize;
        let coded = tokio::task::spawn_blocking(move || {
            let data = &stripe[..len];
            digests.update(data);
            let chunks = codec.encode_stripe(data, chunk_size).map(|chunks| {
                chunks
                    .into_iter()
                    .map(|chunk| {
                        let hash = blake3::hash(&chunk);
                        HashedChunk {
                            data: Bytes::from(chunk),
                            blake3: Bytes::copy_from_slice(hash.as_bytes()),
                        }
                    })
                    .collect::<Vec<_>>()
            });
            (stripe, digests, chunks)
        })
        .await
        .map_err(|e| PipelineError::internal("stripe coding task", e))?;
        let (stripe, digests, chunks) = coded;
        self.stripe = stripe;
        self.stripe_len = 0;
        self.digests = Some(digests);
        let chunks = chunks.map_err(|e| PipelineError::internal("stripe coding", e))?;

        let index = self.stripes;
        let sends = self
            .uploads
            .iter_mut()
            .zip(chunks)
            .filter(|(upload, _)| !upload.failed)
            .map(|(upload, chunk)| async move {
                let message = data_pb::WriteShardRequest {
                    msg: Some(Msg::Chunk(data_pb::ShardChunk {
                        index,
                        data: chunk.data,
                        blake3: chunk.blake3,
                    })),
                };
                let sent = upload.send(message).await;
                (upload.index, upload.node, sent)
            });
        let results = futures::future::join_all(sends).await;
        self.stripes += 1;
        self.after_sends(results)
    }

    fn shard_lost(&self, shard: u32, node: NodeId, fault: &ShardFault) {
        warn!(
            data_id = %self.data_id,
            shard_index = shard,
            node_id = node.0,
            fault = fault.code(),
            error = %fault,
            "shard stream failed; continuing without it"
        );
        if fault.blames_node() {
            self.nodes.report_failure(node);
        }
    }

    /// Whether the shards still streaming could meet the write rule if they all commit.
    fn rule_still_reachable(&self) -> bool {
        let live: Vec<(u32, ZoneName)> = self
            .uploads
            .iter()
            .filter(|u| !u.failed)
            .map(|u| (u.index, u.zone.clone()))
            .collect();
        meets_write_rule(&self.layout, &live)
    }

    fn quorum_lost(&self, committed: u32) -> PipelineError {
        PipelineError::WriteQuorumLost {
            committed,
            needed: self.layout.data_shards(),
        }
    }

    /// Sends the last stripe, commits every surviving shard and applies the write rule.
    async fn finish(mut self, size: u64) -> Result<WrittenBlob, PipelineError> {
        if self.stripe_len > 0 {
            self.flush_stripe().await?;
        }
        let chunks = self.stripes;
        let commits = self
            .uploads
            .iter_mut()
            .filter(|u| !u.failed)
            .map(|upload| async move {
                let committed = upload.commit(chunks).await;
                (upload.index, upload.node, committed)
            });
        let results = futures::future::join_all(commits).await;
        for (shard, node, committed) in &results {
            match committed {
                Ok(()) => self.nodes.report_success(*node),
                Err(fault) => self.shard_lost(*shard, *node, fault),
            }
        }

        let committed: Vec<&ShardUpload> = self.uploads.iter().filter(|u| !u.failed).collect();
        let durable: Vec<(u32, ZoneName)> = committed
            .iter()
            .map(|u| (u.index, u.zone.clone()))
            .collect();
        let shards: Vec<pb::ShardPlacement> = committed
            .iter()
            .map(|u| pb::ShardPlacement {
                shard_index: u.index,
                node_id: u.node.0,
                generation: 0,
            })
            .collect();
        if !meets_write_rule(&self.layout, &durable) {
            let orphans: Vec<String> = committed
                .iter()
                .map(|u| format!("{}@{}", u.index, u.node))
                .collect();
            warn!(
                data_id = %self.data_id,
                orphans = ?orphans,
                "write quorum lost; committed shards left as orphans"
            );
            return Err(self.quorum_lost(count_u32(committed.len())));
        }

        let lost = committed.len() < self.layout.total_shards() as usize;
        let degraded = self.placement_degraded || lost;
        let (md5, checksums) = self
            .digests
            .take()
            .ok_or_else(|| PipelineError::internal("finish", "digests lost"))?
            .finish();
        debug!(
            data_id = %self.data_id,
            size,
            stripes = chunks,
            shards = shards.len(),
            degraded,
            "blob written"
        );
        Ok(WrittenBlob {
            blob: pb::Blob {
                size,
                storage: Some(pb::blob::Storage::Erasure(pb::ErasureBlob {
                    data_id: self.data_id.as_bytes().to_vec(),
                    data_shards: self.layout.data_shards(),
                    parity_shards: self.layout.parity_shards(),
                    chunk_size: self.chunk_size,
                    shards,
                    degraded,
                    ..pb::ErasureBlob::default()
                })),
                ..pb::Blob::default()
            },
            size,
            md5,
            checksums,
        })
    }
}

/// A count of nodes, zones or shards (all far below `u32::MAX`) as `u32`, saturating.
fn count_u32(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}
