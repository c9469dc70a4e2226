//! Writing one copy of one shard: a WriteShard stream (header, chunks in order, commit with
//! the digest) fed through a small bounded queue.
//!
//! Invariant: a shard counts as written only when the node answered the commit with exactly the
//! chunk count and digest the writer computed from the bytes it sent. A writer dropped before
//! its commit aborts the stream, and a stream that ends without a commit stores nothing. No
//! call waits more than the stall timeout for the node; at most [`SHARD_QUEUE_CHUNKS`] chunks
//! wait between the caller and the stream.

use std::time::Duration;

use bytes::Bytes;
use tessera_core::layout::Layout;
use tessera_core::shard_file::{ShardDigest, ShardDigester, chunk_hash, digests_equal};
use tessera_proto::data::v1 as pb;
use tessera_proto::data::v1::write_shard_request::Msg;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use crate::data::{DataClient, DataClientError, ShardId};

/// Chunks queued between the caller and the gRPC stream.
pub const SHARD_QUEUE_CHUNKS: usize = 2;

/// The longest a writer waits for the node to take a chunk or answer the commit.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a writer waits for the node's reason when the stream closed under it.
const FAILURE_REASON_WAIT: Duration = Duration::from_secs(1);

/// What to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardWriteSpec {
    /// The copy (generation included: a fresh random one per write).
    pub id: ShardId,
    /// The blob's layout.
    pub layout: Layout,
    /// Bytes of every chunk.
    pub chunk_size: u32,
    /// The write lease the writer holds (recorded in the file's header).
    pub lease_id: u64,
    /// The longest wait on the node (default [`WRITE_STALL_TIMEOUT`]).
    pub stall_timeout: Duration,
}

impl ShardWriteSpec {
    /// A write of `id` with the default stall timeout.
    pub fn new(id: ShardId, layout: Layout, chunk_size: u32, lease_id: u64) -> ShardWriteSpec {
        ShardWriteSpec {
            id,
            layout,
            chunk_size,
            lease_id,
            stall_timeout: WRITE_STALL_TIMEOUT,
        }
    }
}

/// A shard the node made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenShard {
    /// The copy.
    pub id: ShardId,
    /// Chunks written.
    pub chunks: u64,
    /// Its digest, for the manifest.
    pub digest: ShardDigest,
}

/// Why a shard write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShardWriteError {
    /// The node refused the write or could not be reached (`source` says which).
    #[error("writing shard {shard}: {source}")]
    Node {
        /// The copy.
        shard: ShardId,
        /// The node's error.
        source: DataClientError,
    },
    /// The node took no chunk (or gave no answer) for the stall timeout.
    #[error("writing shard {shard} to {addr}: no progress for {} ms", waited.as_millis())]
    Stalled {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
        /// How long the writer waited.
        waited: Duration,
    },
    /// The stream ended before the node gave any answer or reason.
    #[error("writing shard {shard} to {addr}: the stream ended without an answer")]
    Ended {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
    },
    /// The caller passed a chunk of the wrong size (nothing was sent for it).
    #[error("shard {shard}: a chunk of {got} bytes, every chunk has {expected}")]
    ChunkSize {
        /// The copy.
        shard: ShardId,
        /// The chunk size.
        expected: u32,
        /// The bytes passed.
        got: usize,
    },
    /// The node answered the commit with another chunk count.
    #[error("shard {shard} on {addr}: {sent} chunks sent, the node stored {stored}")]
    CountMismatch {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
        /// Chunks sent.
        sent: u64,
        /// Chunks the node says it stored.
        stored: u64,
    },
    /// The node answered the commit with another digest.
    #[error("shard {shard} on {addr}: the node's digest differs from the digest of the bytes sent")]
    DigestMismatch {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
    },
}

impl ShardWriteError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ShardWriteError::Node { source, .. } => source.code(),
            ShardWriteError::Stalled { .. } => "shard_write_stalled",
            ShardWriteError::Ended { .. } => "shard_write_ended",
            ShardWriteError::ChunkSize { .. } => "shard_write_chunk_size",
            ShardWriteError::CountMismatch { .. } => "shard_write_count_mismatch",
            ShardWriteError::DigestMismatch { .. } => "shard_write_digest_mismatch",
        }
    }

    /// Whether the node, rather than this shard, is in trouble (pick another node for the
    /// next write): it is unreachable, stalled, failing, or answers what it was not sent.
    pub fn blames_node(&self) -> bool {
        match self {
            ShardWriteError::Node { source, .. } => source.blames_node(),
            ShardWriteError::Stalled { .. }
            | ShardWriteError::Ended { .. }
            | ShardWriteError::CountMismatch { .. }
            | ShardWriteError::DigestMismatch { .. } => true,
            ShardWriteError::ChunkSize { .. } => false,
        }
    }

    /// Whether writing the shard again (a new generation) to the same node may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ShardWriteError::Node { source, .. } => source.is_retryable(),
            ShardWriteError::Stalled { .. } | ShardWriteError::Ended { .. } => true,
            ShardWriteError::ChunkSize { .. }
            | ShardWriteError::CountMismatch { .. }
            | ShardWriteError::DigestMismatch { .. } => false,
        }
    }
}

type StreamTask = JoinHandle<Result<pb::WriteShardResponse, DataClientError>>;

/// How one attempt to queue a message ended.
enum Queued {
    Yes,
    Closed,
    Stalled,
    Finished(Result<Result<pb::WriteShardResponse, DataClientError>, JoinError>),
}

/// One shard stream in flight to its node; see the module invariant.
#[derive(Debug)]
pub struct ShardWriter {
    addr: String,
    id: ShardId,
    chunk_size: u32,
    stall: Duration,
    digester: ShardDigester,
    /// `None` once the stream was ended (commit sent, or closed after a failure).
    tx: Option<mpsc::Sender<pb::WriteShardRequest>>,
    task: StreamTask,
    /// Whether the task's result was taken (a finished `JoinHandle` must not be polled again).
    task_done: bool,
    /// The first failure; every later call returns it again.
    failure: Option<ShardWriteError>,
}

impl ShardWriter {
    /// Opens a write stream for `spec` to the node at `addr` (within a tokio runtime). The
    /// header is queued at once; the node's refusals surface on a later call.
    pub fn open(
        data: &DataClient,
        addr: &str,
        spec: ShardWriteSpec,
    ) -> Result<ShardWriter, ShardWriteError> {
        let id = spec.id;
        let mut client = data
            .client(addr)
            .map_err(|source| ShardWriteError::Node { shard: id, source })?;
        let (tx, rx) = mpsc::channel(SHARD_QUEUE_CHUNKS);
        let header = pb::WriteShardRequest {
            msg: Some(Msg::Header(pb::ShardHeader {
                id: Some(id.to_pb()),
                data_shards: spec.layout.data_shards(),
                parity_shards: spec.layout.parity_shards(),
                chunk_size: spec.chunk_size,
                lease_id: spec.lease_id,
            })),
        };
        if tx.try_send(header).is_err() {
            // A fresh channel always has room for its first message.
            return Err(ShardWriteError::Ended {
                addr: addr.to_owned(),
                shard: id,
            });
        }
        let node = addr.to_owned();
        let task = tokio::spawn(async move {
            client
                .write_shard(ReceiverStream::new(rx))
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| DataClientError::from_status(&node, &status))
        });
        Ok(ShardWriter {
            addr: addr.to_owned(),
            id,
            chunk_size: spec.chunk_size,
            stall: spec.stall_timeout,
            digester: ShardDigester::new(&id.data_id, id.shard_index),
            tx: Some(tx),
            task,
            task_done: false,
            failure: None,
        })
    }

    /// The copy being written.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Chunks sent so far.
    pub fn chunks_sent(&self) -> u64 {
        self.digester.chunks()
    }

    /// The digest state over every chunk handed to [`send_chunk`](Self::send_chunk) so far,
    /// the one whose send failed included: a caller whose write failed continues it with the
    /// later chunks' hashes, so the manifest still records the digest of the shard as it should
    /// be (repair rebuilds it from that).
    pub fn digester(&self) -> &ShardDigester {
        &self.digester
    }

    /// Sends the next chunk (exactly `chunk_size` bytes) with its bound hash; waits while the
    /// queue is full, at most the stall timeout.
    pub async fn send_chunk(&mut self, data: Bytes) -> Result<(), ShardWriteError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        if data.len() != self.chunk_size as usize {
            return Err(self.fail(ShardWriteError::ChunkSize {
                shard: self.id,
                expected: self.chunk_size,
                got: data.len(),
            }));
        }
        let index = self.digester.chunks();
        let hash = chunk_hash(&self.id.data_id, self.id.shard_index, index, &data);
        self.digester.push(&hash);
        let message = pb::WriteShardRequest {
            msg: Some(Msg::Chunk(pb::ShardChunk {
                index,
                data,
                blake3: Bytes::copy_from_slice(&hash),
            })),
        };
        self.send(message).await
    }

    /// Sends the commit with the digest of every chunk sent and waits for the node to make the
    /// shard durable; the shard is written only if the node's answer matches.
    pub async fn commit(mut self) -> Result<WrittenShard, ShardWriteError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let chunks = self.digester.chunks();
        let digest = self.digester.clone().finish();
        let commit = pb::WriteShardRequest {
            msg: Some(Msg::Commit(pb::ShardCommit {
                chunks,
                digest: Bytes::copy_from_slice(&digest),
            })),
        };
        self.send(commit).await?;
        self.tx = None;
        let answer = match tokio::time::timeout(self.stall, &mut self.task).await {
            Err(_) => return Err(self.stalled()),
            Ok(joined) => {
                self.task_done = true;
                joined
            }
        };
        let response = match answer {
            Ok(Ok(response)) => response,
            other => return Err(self.fail_with(other)),
        };
        if response.chunks != chunks {
            return Err(self.fail(ShardWriteError::CountMismatch {
                addr: self.addr.clone(),
                shard: self.id,
                sent: chunks,
                stored: response.chunks,
            }));
        }
        if !digests_equal(&response.digest, &digest) {
            return Err(self.fail(ShardWriteError::DigestMismatch {
                addr: self.addr.clone(),
                shard: self.id,
            }));
        }
        debug!(shard = %self.id, addr = %self.addr, chunks, "shard written");
        Ok(WrittenShard {
            id: self.id,
            chunks,
            digest,
        })
    }

    /// Queues `message`, or fails with the reason the stream cannot take it.
    async fn send(&mut self, message: pb::WriteShardRequest) -> Result<(), ShardWriteError> {
        let Some(tx) = self.tx.clone() else {
            return Err(self.fail(ShardWriteError::Ended {
                addr: self.addr.clone(),
                shard: self.id,
            }));
        };
        let queued = tokio::select! {
            biased;
            finished = &mut self.task, if !self.task_done => Queued::Finished(finished),
            sent = tokio::time::timeout(self.stall, tx.send(message)) => match sent {
                Ok(Ok(())) => Queued::Yes,
                Ok(Err(_closed)) => Queued::Closed,
                Err(_) => Queued::Stalled,
            },
        };
        match queued {
            Queued::Yes => Ok(()),
            Queued::Stalled => Err(self.stalled()),
            Queued::Finished(finished) => {
                self.task_done = true;
                Err(self.fail_with(finished))
            }
            Queued::Closed => {
                if self.task_done {
                    return Err(self.ended());
                }
                match tokio::time::timeout(FAILURE_REASON_WAIT, &mut self.task).await {
                    Ok(finished) => {
                        self.task_done = true;
                        Err(self.fail_with(finished))
                    }
                    Err(_) => Err(self.ended()),
                }
            }
        }
    }

    /// The failure a finished stream task stands for (an answer before the commit is one too:
    /// the node ended the stream early).
    fn fail_with(
        &mut self,
        finished: Result<Result<pb::WriteShardResponse, DataClientError>, JoinError>,
    ) -> ShardWriteError {
        let error = match finished {
            Ok(Err(source)) => ShardWriteError::Node {
                shard: self.id,
                source,
            },
            Ok(Ok(_)) | Err(_) => ShardWriteError::Ended {
                addr: self.addr.clone(),
                shard: self.id,
            },
        };
        self.fail(error)
    }

    fn stalled(&mut self) -> ShardWriteError {
        self.fail(ShardWriteError::Stalled {
            addr: self.addr.clone(),
            shard: self.id,
            waited: self.stall,
        })
    }

    fn ended(&mut self) -> ShardWriteError {
        self.fail(ShardWriteError::Ended {
            addr: self.addr.clone(),
            shard: self.id,
        })
    }

    /// Ends the stream without a commit and remembers `error` for later calls.
    fn fail(&mut self, error: ShardWriteError) -> ShardWriteError {
        debug!(shard = %self.id, addr = %self.addr, code = error.code(), error = %error, "shard write failed");
        self.tx = None;
        if !self.task_done {
            self.task.abort();
        }
        self.failure = Some(error.clone());
        error
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        // A write abandoned for any reason (an error, the request dropped) must not leave a
        // stream behind; without a commit the node keeps nothing.
        if !self.task_done {
            self.task.abort();
        }
    }
}
