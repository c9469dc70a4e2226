//! Everything that can go wrong in the shard store. A variant names one cause, so the service
//! maps each to exactly one gRPC status (and sends its `code()` along), and a caller never has
//! to parse a message.

use crate::shard_key::ShardKey;
use std::path::PathBuf;
use tessera_core::names::DataId;
use tessera_core::shard_file::ShardFileError;
use tessera_runtime::dirlock::DirLockError;

/// A shard-store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardStoreError {
    /// No file holds this copy.
    #[error("shard {shard} not found")]
    NotFound {
        /// The copy asked for.
        shard: ShardKey,
    },
    /// The stored header cannot be decoded (damaged, short, or of another format version).
    #[error("shard {shard} has a corrupt header: {source}")]
    CorruptHeader {
        /// The damaged copy.
        shard: ShardKey,
        /// What the decoder rejected.
        #[source]
        source: ShardFileError,
    },
    /// The stored header decodes but describes geometry this store never writes.
    #[error("shard {shard} has an impossible stored header: {reason}")]
    ImpossibleHeader {
        /// The damaged copy.
        shard: ShardKey,
        /// The rule the header breaks.
        reason: &'static str,
    },
    /// The file under this copy's name holds another copy (another blob, index or
    /// generation): it was renamed or copied.
    #[error("file of shard {shard} holds shard {found}")]
    Misplaced {
        /// The copy the file name names.
        shard: ShardKey,
        /// The copy the header names.
        found: ShardKey,
    },
    /// The stored footer cannot be decoded.
    #[error("shard {shard} has a corrupt footer: {source}")]
    CorruptFooter {
        /// The damaged copy.
        shard: ShardKey,
        /// What the decoder rejected.
        #[source]
        source: ShardFileError,
    },
    /// The file's length is not what its header and footer make it.
    #[error("shard {shard} is {file_len} bytes; its header and footer make {expected}")]
    Truncated {
        /// The damaged copy.
        shard: ShardKey,
        /// The file's length.
        file_len: u64,
        /// The length its header and footer describe (0 when unknown).
        expected: u64,
    },
    /// The stored hash table does not make the digest the footer records.
    #[error("shard {shard}: the hash table does not match the footer's digest")]
    HashTableMismatch {
        /// The damaged copy.
        shard: ShardKey,
    },
    /// A writer sent a header with generation 0; every stored copy has a nonzero one.
    #[error("shard {data_id}.{shard_index}: generation must be nonzero")]
    ZeroGeneration {
        /// The blob.
        data_id: DataId,
        /// The shard index.
        shard_index: u32,
    },
    /// A writer sent a header no shard may have.
    #[error("invalid header for shard {shard}: {reason}")]
    InvalidHeader {
        /// The copy being written.
        shard: ShardKey,
        /// The rule the header breaks.
        reason: &'static str,
    },
    /// A chunk arrived out of order.
    #[error("shard {shard}: expected chunk {expected}, got {got}")]
    ChunkOutOfOrder {
        /// The copy being written.
        shard: ShardKey,
        /// The next index the store accepts.
        expected: u64,
        /// The index received.
        got: u64,
    },
    /// A chunk's data is not exactly `chunk_size` bytes.
    #[error("shard {shard}: chunk {index} has {got} bytes, expected {expected}")]
    ChunkSize {
        /// The copy being written.
        shard: ShardKey,
        /// The chunk's index.
        index: u64,
        /// The header's chunk size.
        expected: u64,
        /// The length received.
        got: u64,
    },
    /// A chunk's hash is not 32 bytes.
    #[error("shard {shard}: chunk {index} has a {got}-byte hash, expected 32")]
    HashLength {
        /// The copy being written.
        shard: ShardKey,
        /// The chunk's index.
        index: u64,
        /// The length received.
        got: usize,
    },
    /// A chunk's data does not match the chunk hash its sender computed for that blob, shard
    /// and position; nothing is kept.
    #[error("shard {shard}: chunk {index} does not match its chunk hash")]
    HashMismatch {
        /// The copy being written.
        shard: ShardKey,
        /// The chunk's index.
        index: u64,
    },
    /// A write sent more chunks than a shard may have.
    #[error("shard {shard}: more than {max} chunks")]
    TooManyChunks {
        /// The copy being written.
        shard: ShardKey,
        /// The most a shard may have.
        max: u64,
    },
    /// The commit names a different number of chunks than were received.
    #[error("shard {shard}: commit declares {declared} chunks, received {received}")]
    ChunkCount {
        /// The copy being written.
        shard: ShardKey,
        /// The count in the commit.
        declared: u64,
        /// The count received.
        received: u64,
    },
    /// The commit's digest is not 32 bytes.
    #[error("shard {shard}: commit digest has {got} bytes, expected 32")]
    DigestLength {
        /// The copy being written.
        shard: ShardKey,
        /// The length received.
        got: usize,
    },
    /// The commit's digest is not the digest of the chunk hashes received.
    #[error("shard {shard}: commit digest does not match the chunks received")]
    DigestMismatch {
        /// The copy being written.
        shard: ShardKey,
    },
    /// This exact copy (generation included) is already stored; a stored file is never
    /// replaced.
    #[error("shard {shard} already exists")]
    AlreadyExists {
        /// The copy being written.
        shard: ShardKey,
    },
    /// A read asked for chunks past the end of the shard.
    #[error(
        "shard {shard} has {chunks} chunks; range starting at {first} of {count} is out of bounds"
    )]
    RangeOutOfBounds {
        /// The copy read.
        shard: ShardKey,
        /// The first chunk asked for.
        first: u64,
        /// The number of chunks asked for (0 = to the end).
        count: u64,
        /// The shard's chunk count.
        chunks: u64,
    },
    /// The data folder was written by an earlier development build (format 1): this build
    /// cannot read it, and the node must be started with an empty folder.
    #[error(
        "data folder {} was written by an earlier development build ({found}); this build \
         cannot read it: start the node with an empty data folder",
        path.display()
    )]
    EarlierFormat {
        /// The file that shows it (the FORMAT file, or a shard file of format 1).
        path: PathBuf,
        /// What it shows ("format line \"tessera-data 1\"", "shard file of format 1").
        found: String,
    },
    /// The data folder holds a format this build does not know.
    #[error("data folder {} has unknown format {found:?}", path.display())]
    UnknownFormat {
        /// The format file.
        path: PathBuf,
        /// Its first line.
        found: String,
    },
    /// The data folder holds shards but no format file, so it is not ours to use.
    #[error("data folder {} holds shards but no FORMAT file", path.display())]
    MissingFormat {
        /// The data folder.
        path: PathBuf,
    },
    /// Another process (or another store in this one) holds the data folder.
    #[error(transparent)]
    Locked {
        /// The lock's own error, naming the folder and its holder.
        #[from]
        source: DirLockError,
    },
    /// The file system refused an operation.
    #[error("{op} {}: {source}", path.display())]
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
            | Self::CorruptFooter { .. }
            | Self::Truncated { .. }
            | Self::HashTableMismatch { .. }
            | Self::ZeroGeneration { .. }
            | Self::InvalidHeader { .. }
            | Self::ChunkOutOfOrder { .. }
            | Self::ChunkSize { .. }
            | Self::HashLength { .. }
            | Self::HashMismatch { .. }
            | Self::TooManyChunks { .. }
            | Self::ChunkCount { .. }
            | Self::DigestLength { .. }
            | Self::DigestMismatch { .. }
            | Self::AlreadyExists { .. }
            | Self::RangeOutOfBounds { .. }
            | Self::EarlierFormat { .. }
            | Self::UnknownFormat { .. }
            | Self::MissingFormat { .. }
            | Self::Locked { .. } => false,
        }
    }

    /// A stable name for metrics, logs and the `x-tessera-error-code` of the service's
    /// statuses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "shard_not_found",
            Self::CorruptHeader { .. } => "shard_corrupt_header",
            Self::ImpossibleHeader { .. } => "shard_impossible_header",
            Self::Misplaced { .. } => "shard_misplaced",
            Self::CorruptFooter { .. } => "shard_corrupt_footer",
            Self::Truncated { .. } => "shard_truncated",
            Self::HashTableMismatch { .. } => "shard_hash_table_mismatch",
            Self::ZeroGeneration { .. } => "shard_zero_generation",
            Self::InvalidHeader { .. } => "shard_invalid_header",
            Self::ChunkOutOfOrder { .. } => "chunk_out_of_order",
            Self::ChunkSize { .. } => "chunk_size_mismatch",
            Self::HashLength { .. } => "chunk_hash_length",
            Self::HashMismatch { .. } => "chunk_hash_mismatch",
            Self::TooManyChunks { .. } => "shard_too_many_chunks",
            Self::ChunkCount { .. } => "chunk_count_mismatch",
            Self::DigestLength { .. } => "shard_digest_length",
            Self::DigestMismatch { .. } => "shard_digest_mismatch",
            Self::AlreadyExists { .. } => "shard_already_exists",
            Self::RangeOutOfBounds { .. } => "chunk_range_out_of_bounds",
            Self::EarlierFormat { .. } => "store_earlier_format",
            Self::UnknownFormat { .. } => "store_unknown_format",
            Self::MissingFormat { .. } => "store_missing_format",
            Self::Locked { .. } => "store_locked",
            Self::Io { .. } => "store_io",
            Self::TaskFailed { .. } => "store_task_failed",
        }
    }

    /// Whether the stored copy is damaged (as opposed to absent, or the request being wrong).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::CorruptHeader { .. }
                | Self::ImpossibleHeader { .. }
                | Self::Misplaced { .. }
                | Self::CorruptFooter { .. }
                | Self::Truncated { .. }
                | Self::HashTableMismatch { .. }
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
