//! Reading chunks of one shard copy, verified against the blob's manifest: the node's hash table
//! first (its digest must be the manifest's), then each chunk against its table entry.
//!
//! Invariant: every chunk [`VerifiedShardReader::next_chunk`] yields is the chunk the writer
//! wrote at that index of that shard of that blob: its bound hash (blob, shard index, chunk
//! index, bytes) equals the table entry, and the table's digest equals the manifest's. Chunks
//! come in index order, each exactly `chunk_size` bytes; no wait on the node is longer than
//! the message timeout.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use tessera_core::blob::{ErasureBlob, ShardCopy};
use tessera_core::shard_file::{HASH_LEN, ShardDigest, digests_equal, shard_digest, verify_chunk};
use tessera_proto::data::v1 as pb;
use tonic::Streaming;

use crate::data::{DataClient, DataClientError, ShardId};

/// The longest a reader waits for the stream to open or for its next message.
pub const READ_MESSAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// What to read, and what the manifest says it must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardReadSpec {
    /// The copy.
    pub id: ShardId,
    /// The manifest's digest of this shard index.
    pub expected_digest: ShardDigest,
    /// The manifest's chunk count of every shard.
    pub chunks_per_shard: u64,
    /// Bytes of every chunk.
    pub chunk_size: u32,
    /// The first chunk to read.
    pub first_chunk: u64,
    /// How many chunks (0: to the end).
    pub chunk_count: u64,
    /// The longest wait for one message (default [`READ_MESSAGE_TIMEOUT`]).
    pub message_timeout: Duration,
}

impl ShardReadSpec {
    /// Chunks `chunks` of the placed copy `copy` of `blob`, checked against the manifest;
    /// `None` when the manifest has no digest for the copy's index.
    pub fn from_manifest(
        blob: &ErasureBlob,
        copy: &ShardCopy,
        chunks: Range<u64>,
    ) -> Option<ShardReadSpec> {
        Some(ShardReadSpec {
            id: ShardId::of_copy(blob.data_id, copy),
            expected_digest: *blob.digest_of(copy.shard_index)?,
            chunks_per_shard: blob.chunks_per_shard,
            chunk_size: blob.chunk_size,
            first_chunk: chunks.start,
            chunk_count: chunks.end.saturating_sub(chunks.start),
            message_timeout: READ_MESSAGE_TIMEOUT,
        })
    }
}

/// One verified chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedChunk {
    /// Its index in the shard.
    pub index: u64,
    /// Its bytes (`chunk_size` of them).
    pub data: Bytes,
}

/// Why one copy could not serve a read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShardReadFault {
    /// The node does not hold the copy.
    #[error("shard {shard} not found on {addr}")]
    NotFound {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
    },
    /// The node could not be reached or cut the stream off.
    #[error("shard {shard}: node {addr} unavailable: {message}")]
    Unavailable {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
        /// What happened.
        message: String,
    },
    /// The node sent nothing for the message timeout.
    #[error("shard {shard}: node {addr} sent nothing for {} ms", waited.as_millis())]
    Stalled {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
        /// How long the reader waited.
        waited: Duration,
    },
    /// The node found the copy damaged (its file, or one chunk).
    #[error("shard {shard} on {addr} is corrupt (chunk {chunk:?})")]
    CorruptOnNode {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
        /// The damaged chunk, if one chunk.
        chunk: Option<u64>,
    },
    /// The node refused the read otherwise (`source` says how).
    #[error("shard {shard}: {source}")]
    Refused {
        /// The copy.
        shard: ShardId,
        /// The node's error.
        source: DataClientError,
    },
    /// The first message was not the hash table.
    #[error("shard {shard}: node {addr} sent no hash table")]
    MissingTable {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
    },
    /// The hash table does not hold one hash per chunk of the manifest.
    #[error("shard {shard} on {addr}: a table of {got} hashes, the manifest has {expected} chunks")]
    TableSize {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
        /// Chunks per shard by the manifest.
        expected: u64,
        /// Hashes in the table.
        got: u64,
    },
    /// The hash table's digest is not the manifest's: another blob's, reordered, or altered.
    #[error("shard {shard} on {addr}: the hash table does not match the manifest's digest")]
    DigestMismatch {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
    },
    /// A chunk does not match its table entry.
    #[error("shard {shard} on {addr}: chunk {chunk} does not match its hash")]
    ChunkMismatch {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
        /// The chunk.
        chunk: u64,
    },
    /// The node sent another chunk than the next one.
    #[error("shard {shard} on {addr}: chunk {got} arrived, {expected} expected")]
    WrongChunk {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
        /// The chunk due.
        expected: u64,
        /// The chunk sent.
        got: u64,
    },
    /// A chunk of the wrong length.
    #[error("shard {shard} on {addr}: chunk {chunk} has {got} bytes, not {expected}")]
    WrongSize {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
        /// The chunk.
        chunk: u64,
        /// The chunk size.
        expected: u32,
        /// Bytes received.
        got: usize,
    },
    /// The stream ended before the last chunk asked for.
    #[error("shard {shard}: node {addr} ended the stream before chunk {next}")]
    Ended {
        /// The node.
        addr: String,
        /// The copy.
        shard: ShardId,
        /// The chunk due.
        next: u64,
    },
    /// The caller asked for chunks outside the shard.
    #[error("shard {shard}: chunks {first}+{count} are outside its {chunks} chunks")]
    InvalidRange {
        /// The copy.
        shard: ShardId,
        /// First chunk asked for.
        first: u64,
        /// Chunks asked for.
        count: u64,
        /// Chunks per shard.
        chunks: u64,
    },
}

impl ShardReadFault {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ShardReadFault::NotFound { .. } => "shard_not_found",
            ShardReadFault::Unavailable { .. } => "shard_node_unavailable",
            ShardReadFault::Stalled { .. } => "shard_read_stalled",
            ShardReadFault::CorruptOnNode { .. } => "shard_corrupt_on_node",
            ShardReadFault::Refused { source, .. } => source.code(),
            ShardReadFault::MissingTable { .. } => "shard_missing_table",
            ShardReadFault::TableSize { .. } => "shard_table_size",
            ShardReadFault::DigestMismatch { .. } => "shard_digest_mismatch",
            ShardReadFault::ChunkMismatch { .. } => "shard_chunk_mismatch",
            ShardReadFault::WrongChunk { .. } => "shard_wrong_chunk",
            ShardReadFault::WrongSize { .. } => "shard_wrong_chunk_size",
            ShardReadFault::Ended { .. } => "shard_stream_ended",
            ShardReadFault::InvalidRange { .. } => "shard_invalid_range",
        }
    }

    /// Whether the node, rather than this copy, is in trouble (unreachable, stalled, failing,
    /// breaking the protocol): other reads from it are likely to fail too.
    pub fn blames_node(&self) -> bool {
        match self {
            ShardReadFault::Unavailable { .. }
            | ShardReadFault::Stalled { .. }
            | ShardReadFault::MissingTable { .. }
            | ShardReadFault::WrongChunk { .. }
            | ShardReadFault::Ended { .. } => true,
            ShardReadFault::Refused { source, .. } => source.blames_node(),
            ShardReadFault::NotFound { .. }
            | ShardReadFault::CorruptOnNode { .. }
            | ShardReadFault::TableSize { .. }
            | ShardReadFault::DigestMismatch { .. }
            | ShardReadFault::ChunkMismatch { .. }
            | ShardReadFault::WrongSize { .. }
            | ShardReadFault::InvalidRange { .. } => false,
        }
    }

    /// Whether this copy is missing or its bytes are not the manifest's (repair should hear of
    /// it and rebuild the copy).
    pub fn is_copy_fault(&self) -> bool {
        match self {
            ShardReadFault::NotFound { .. }
            | ShardReadFault::CorruptOnNode { .. }
            | ShardReadFault::TableSize { .. }
            | ShardReadFault::DigestMismatch { .. }
            | ShardReadFault::ChunkMismatch { .. }
            | ShardReadFault::WrongSize { .. } => true,
            ShardReadFault::Unavailable { .. }
            | ShardReadFault::Stalled { .. }
            | ShardReadFault::Refused { .. }
            | ShardReadFault::MissingTable { .. }
            | ShardReadFault::WrongChunk { .. }
            | ShardReadFault::Ended { .. }
            | ShardReadFault::InvalidRange { .. } => false,
        }
    }

    /// Whether reading the same copy again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ShardReadFault::Unavailable { .. }
            | ShardReadFault::Stalled { .. }
            | ShardReadFault::Ended { .. } => true,
            ShardReadFault::Refused { source, .. } => source.is_retryable(),
            ShardReadFault::NotFound { .. }
            | ShardReadFault::CorruptOnNode { .. }
            | ShardReadFault::MissingTable { .. }
            | ShardReadFault::TableSize { .. }
            | ShardReadFault::DigestMismatch { .. }
            | ShardReadFault::ChunkMismatch { .. }
            | ShardReadFault::WrongChunk { .. }
            | ShardReadFault::WrongSize { .. }
            | ShardReadFault::InvalidRange { .. } => false,
        }
    }

    fn from_node(shard: ShardId, error: DataClientError) -> ShardReadFault {
        match error {
            DataClientError::NotFound { addr, .. } => ShardReadFault::NotFound { addr, shard },
            DataClientError::Unavailable { addr, message } => ShardReadFault::Unavailable {
                addr,
                shard,
                message,
            },
            DataClientError::Corrupt { addr, .. } => ShardReadFault::CorruptOnNode {
                addr,
                shard,
                chunk: None,
            },
            source => ShardReadFault::Refused { shard, source },
        }
    }
}

/// A read stream of one copy whose table matched the manifest; see the module invariant.
#[derive(Debug)]
pub struct VerifiedShardReader {
    addr: String,
    id: ShardId,
    chunk_size: u32,
    /// The verified hash table (`HASH_LEN` bytes per chunk of the shard).
    table: Bytes,
    stream: Streaming<pb::ReadShardResponse>,
    next: u64,
    end: u64,
    timeout: Duration,
    /// The first fault; every later call returns it again.
    failure: Option<ShardReadFault>,
}

impl VerifiedShardReader {
    /// Opens a read of `spec` from the node at `addr` and checks the node's hash table against
    /// the manifest's digest and chunk count.
    pub async fn open(
        data: &DataClient,
        addr: &str,
        spec: ShardReadSpec,
    ) -> Result<VerifiedShardReader, ShardReadFault> {
        let id = spec.id;
        let end = if spec.chunk_count == 0 {
            Some(spec.chunks_per_shard)
        } else {
            spec.first_chunk.checked_add(spec.chunk_count)
        };
        let end = match end {
            Some(end) if spec.first_chunk < end && end <= spec.chunks_per_shard => end,
            _ => {
                return Err(ShardReadFault::InvalidRange {
                    shard: id,
                    first: spec.first_chunk,
                    count: spec.chunk_count,
                    chunks: spec.chunks_per_shard,
                });
            }
        };
        let node = |e| ShardReadFault::from_node(id, e);
        let stalled = || ShardReadFault::Stalled {
            addr: addr.to_owned(),
            shard: id,
            waited: spec.message_timeout,
        };
        let mut client = data.client(addr).map_err(node)?;
        let request = pb::ReadShardRequest {
            id: Some(id.to_pb()),
            first_chunk: spec.first_chunk,
            chunk_count: end - spec.first_chunk,
        };
        let mut stream =
            match tokio::time::timeout(spec.message_timeout, client.read_shard(request)).await {
                Err(_) => return Err(stalled()),
                Ok(Err(status)) => return Err(node(DataClientError::from_status(addr, &status))),
                Ok(Ok(response)) => response.into_inner(),
            };
        let first = match tokio::time::timeout(spec.message_timeout, stream.message()).await {
            Err(_) => return Err(stalled()),
            Ok(Err(status)) => return Err(node(DataClientError::from_status(addr, &status))),
            Ok(Ok(None)) => {
                return Err(ShardReadFault::Ended {
                    addr: addr.to_owned(),
                    shard: id,
                    next: spec.first_chunk,
                });
            }
            Ok(Ok(Some(message))) => message,
        };
        let Some(table) = first.hashes else {
            return Err(ShardReadFault::MissingTable {
                addr: addr.to_owned(),
                shard: id,
            });
        };
        let table_hashes = table.hashes.len() as u64 / HASH_LEN;
        let whole = (table.hashes.len() as u64).is_multiple_of(HASH_LEN);
        if table.chunks != spec.chunks_per_shard || table_hashes != spec.chunks_per_shard || !whole
        {
            return Err(ShardReadFault::TableSize {
                addr: addr.to_owned(),
                shard: id,
                expected: spec.chunks_per_shard,
                got: if table.chunks != spec.chunks_per_shard {
                    table.chunks
                } else {
                    table_hashes
                },
            });
        }
        let matches = shard_digest(&id.data_id, id.shard_index, &table.hashes)
            .is_some_and(|digest| digests_equal(&digest, &spec.expected_digest));
        if !matches {
            return Err(ShardReadFault::DigestMismatch {
                addr: addr.to_owned(),
                shard: id,
            });
        }
        Ok(VerifiedShardReader {
            addr: addr.to_owned(),
            id,
            chunk_size: spec.chunk_size,
            table: table.hashes,
            stream,
            next: spec.first_chunk,
            end,
            timeout: spec.message_timeout,
            failure: None,
        })
    }

    /// The copy being read.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The index of the next chunk to come.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// One past the last chunk asked for.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The next chunk, verified; `None` after the last chunk asked for.
    pub async fn next_chunk(&mut self) -> Result<Option<VerifiedChunk>, ShardReadFault> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        if self.next >= self.end {
            return Ok(None);
        }
        match self.receive().await {
            Ok(chunk) => {
                self.next += 1;
                Ok(Some(chunk))
            }
            Err(fault) => {
                self.failure = Some(fault.clone());
                Err(fault)
            }
        }
    }

    async fn receive(&mut self) -> Result<VerifiedChunk, ShardReadFault> {
        let (addr, shard, index) = (self.addr.clone(), self.id, self.next);
        let message = match tokio::time::timeout(self.timeout, self.stream.message()).await {
            Err(_) => {
                return Err(ShardReadFault::Stalled {
                    addr,
                    shard,
                    waited: self.timeout,
                });
            }
            Ok(Err(status)) => {
                let error = DataClientError::from_status(&addr, &status);
                return Err(ShardReadFault::from_node(shard, error));
            }
            Ok(Ok(None)) => {
                return Err(ShardReadFault::Ended {
                    addr,
                    shard,
                    next: index,
                });
            }
            Ok(Ok(Some(message))) => message,
        };
        if message.index != index {
            return Err(ShardReadFault::WrongChunk {
                addr,
                shard,
                expected: index,
                got: message.index,
            });
        }
        if message.corrupt {
            return Err(ShardReadFault::CorruptOnNode {
                addr,
                shard,
                chunk: Some(index),
            });
        }
        if message.data.len() != self.chunk_size as usize {
            return Err(ShardReadFault::WrongSize {
                addr,
                shard,
                chunk: index,
                expected: self.chunk_size,
                got: message.data.len(),
            });
        }
        // `index < end <= chunks_per_shard`, and the table holds exactly that many hashes.
        let at = usize::try_from(index * HASH_LEN).unwrap_or(usize::MAX);
        let entry = self.table.get(at..at.saturating_add(HASH_LEN as usize));
        let intact = entry.is_some_and(|hash| {
            verify_chunk(
                &shard.data_id,
                shard.shard_index,
                index,
                &message.data,
                hash,
            )
        });
        if !intact {
            return Err(ShardReadFault::ChunkMismatch {
                addr,
                shard,
                chunk: index,
            });
        }
        Ok(VerifiedChunk {
            index,
            data: message.data,
        })
    }
}
