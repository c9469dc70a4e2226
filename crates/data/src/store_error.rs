//! Everything that can go wrong in the shard store. A variant names one cause, so the service
//! maps each to exactly one gRPC status and a caller never has to parse a message.

use crate::store::ShardKey;
use std::path::PathBuf;
use tessera_core::shard_format::ShardFormatError;

/// A shard-store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardStoreError {
    /// No file holds this shard.
    #[error("shard {shard} not found")]
    NotFound {
        /// The shard asked for.
        shard: ShardKey,
    },
    /// The stored header cannot be decoded (damaged, short, or of an unknown format).
    #[error("shard {shard} has a corrupt header: {source}")]
    CorruptHeader {
        /// The damaged shard.
        shard: ShardKey,
        /// What the decoder rejected.
        #[source]
        source: ShardFormatError,
    },
    /// The stored header decodes but describes geometry no writer could have produced.
    #[error("shard {shard} has an impossible stored header: {reason}")]
    ImpossibleHeader {
        /// The damaged shard.
        shard: ShardKey,
        /// The rule the header breaks.
        reason: &'static str,
    },
    /// The file under this shard's name holds another shard's header.
    #[error("file of shard {shard} holds shard {found}")]
    Misplaced {
        /// The shard asked for.
        shard: ShardKey,
        /// The shard the header names.
        found: ShardKey,
    },
    /// The file's length is not a header plus whole chunk records.
    #[error("shard {shard} is truncated or padded: {source}")]
    Truncated {
        /// The damaged shard.
        shard: ShardKey,
        /// What the length check rejected.
        #[source]
        source: ShardFormatError,
    },
    /// A writer sent a header no shard may have.
    #[error("invalid header for shard {shard}: {reason}")]
    InvalidHeader {
        /// The shard being written.
        shard: ShardKey,
        /// The rule the header breaks.
        reason: &'static str,
    },
    /// A chunk arrived out of order.
    #[error("shard {shard}: expected chunk {expected}, got {got}")]
    ChunkOutOfOrder {
        /// The shard being written.
        shard: ShardKey,
        /// The next index the store accepts.
        expected: u64,
        /// The index received.
        got: u64,
    },
    /// A chunk's data is not exactly `chunk_size` bytes.
    #[error("shard {shard}: chunk {index} has {got} bytes, expected {expected}")]
    ChunkSize {
        /// The shard being written.
        shard: ShardKey,
        /// The chunk's index.
        index: u64,
        /// The header's chunk size.
        expected: u64,
        /// The length received.
        got: u64,
    },
    /// A chunk's hash is not a 32-byte blake3 digest.
    #[error("shard {shard}: chunk {index} has a {got}-byte hash, expected 32")]
    HashLength {
        /// The shard being written.
        shard: ShardKey,
        /// The chunk's index.
        index: u64,
        /// The length received.
        got: usize,
    },
    /// A chunk's data does not match the hash its sender computed; nothing is kept.
    #[error("shard {shard}: chunk {index} does not match its blake3 hash")]
    HashMismatch {
        /// The shard being written.
        shard: ShardKey,
        /// The chunk's index.
        index: u64,
    },
    /// The commit names a different number of chunks than were received.
    #[error("shard {shard}: commit declares {declared} chunks, received {received}")]
    ChunkCount {
        /// The shard being written.
        shard: ShardKey,
        /// The count in the commit.
        declared: u64,
        /// The count received.
        received: u64,
    },
    /// A shard with this name but a different header is already stored.
    #[error("shard {shard} already exists with a different header")]
    Conflict {
        /// The shard being written.
        shard: ShardKey,
    },
    /// A read asked for chunks past the end of the shard.
    #[error(
        "shard {shard} has {chunks} chunks; range starting at {first} of {count} is out of bounds"
    )]
    RangeOutOfBounds {
        /// The shard read.
        shard: ShardKey,
        /// The first chunk asked for.
        first: u64,
        /// The number of chunks asked for (0 = to the end).
        count: u64,
        /// The shard's chunk count.
        chunks: u64,
    },
    /// The store's directory holds a format this build does not know.
    #[error("data dir {path} has unknown format {found:?}")]
    UnknownFormat {
        /// The format file.
        path: PathBuf,
        /// Its first line.
        found: String,
    },
    /// The store's directory holds shards but no format file, so it is not ours to use.
    #[error("data dir {path} holds shards but no FORMAT file")]
    MissingFormat {
        /// The data directory.
        path: PathBuf,
    },
    /// The file system refused an operation.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The path it was working on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking file-system task panicked or was cancelled by the runtime.
    #[error("store task failed: {source}")]
    TaskFailed {
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ShardStoreError {
    /// Whether repeating the same operation may succeed: only file-system and task failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Io { .. } | Self::TaskFailed { .. } => true,
            Self::NotFound { .. }
            | Self::CorruptHeader { .. }
            | Self::ImpossibleHeader { .. }
            | Self::Misplaced { .. }
            | Self::Truncated { .. }
            | Self::InvalidHeader { .. }
            | Self::ChunkOutOfOrder { .. }
            | Self::ChunkSize { .. }
            | Self::HashLength { .. }
            | Self::HashMismatch { .. }
            | Self::ChunkCount { .. }
            | Self::Conflict { .. }
            | Self::RangeOutOfBounds { .. }
            | Self::UnknownFormat { .. }
            | Self::MissingFormat { .. } => false,
        }
    }

    /// A stable name for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "shard_not_found",
            Self::CorruptHeader { .. } => "shard_corrupt_header",
            Self::ImpossibleHeader { .. } => "shard_impossible_header",
            Self::Misplaced { .. } => "shard_misplaced",
            Self::Truncated { .. } => "shard_truncated",
            Self::InvalidHeader { .. } => "shard_invalid_header",
            Self::ChunkOutOfOrder { .. } => "chunk_out_of_order",
            Self::ChunkSize { .. } => "chunk_size_mismatch",
            Self::HashLength { .. } => "chunk_hash_length",
            Self::HashMismatch { .. } => "chunk_hash_mismatch",
            Self::ChunkCount { .. } => "chunk_count_mismatch",
            Self::Conflict { .. } => "shard_conflict",
            Self::RangeOutOfBounds { .. } => "chunk_range_out_of_bounds",
            Self::UnknownFormat { .. } => "store_unknown_format",
            Self::MissingFormat { .. } => "store_missing_format",
            Self::Io { .. } => "store_io",
            Self::TaskFailed { .. } => "store_task_failed",
        }
    }

    /// Whether the stored shard is damaged (as opposed to absent, or the request being wrong).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::CorruptHeader { .. }
                | Self::ImpossibleHeader { .. }
                | Self::Misplaced { .. }
                | Self::Truncated { .. }
        )
    }

    /// Builds the mapper for an I/O error on `path` while doing `op`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}
