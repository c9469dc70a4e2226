//! Checking one stored copy the way the scrubber does: everything a node can verify alone.
//!
//! Invariant: a copy is judged intact only if its header decodes and names the copy its file
//! name names (data id, index, generation), its footer decodes, its length is exactly what
//! header and footer make it, its hash table makes the footer's digest, and every chunk
//! matches its table entry, which binds the chunk to its blob, shard and position (so swapped
//! chunks, a chunk copied from another shard or blob, and a renamed file all fail). What the
//! node cannot see alone is whether that digest is the one the manifest records: a copy
//! rewritten whole, consistently, with other content passes here, and is caught by readers and
//! repair, which compare the digest with the manifest.

use crate::scrub_throttle::{Pace, Pacer};
use crate::shard_key::ShardKey;
use crate::shard_reader::ChunkRead;
use crate::store::ShardStore;
use crate::store_error::ShardStoreError;
use std::io;
use tessera_core::shard_file::{FOOTER_LEN, HASH_LEN, HEADER_LEN, ShardFileError};

/// EIO: the device could not read the data; the same number on Linux, the BSDs and macOS.
const EIO: i32 = 5;

/// Why the scrubber quarantined a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CorruptReason {
    /// A chunk does not match its entry in the hash table.
    ChunkHash,
    /// The file is not as long as its header and footer make it.
    Truncated,
    /// The header does not decode or breaks a rule.
    Header,
    /// The header names another copy (data id, index or generation) than the file name.
    Misplaced,
    /// The footer does not decode.
    Footer,
    /// The hash table does not make the footer's digest.
    HashTable,
    /// The device failed to read the file.
    Io,
}

impl CorruptReason {
    /// The reason's wire name: "chunk_hash", "truncated", "header", "misplaced", "footer",
    /// "hash_table" or "io".
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ChunkHash => "chunk_hash",
            Self::Truncated => "truncated",
            Self::Header => "header",
            Self::Misplaced => "misplaced",
            Self::Footer => "footer",
            Self::HashTable => "hash_table",
            Self::Io => "io",
        }
    }
}

/// What checking one copy found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Everything checks out; `bytes` were read.
    Intact { bytes: u64 },
    /// The file is damaged.
    Damaged {
        reason: CorruptReason,
        /// The first damaged chunk for `ChunkHash` (and `Truncated` or `Io` met while reading
        /// chunks); 0 otherwise.
        chunk: u64,
        bytes: u64,
    },
    /// No file holds the copy any more (deleted since it was listed), or it could not be
    /// checked this time (logged).
    Gone,
    /// A requested pass is waiting; the check was abandoned.
    Aborted,
}

/// Checks the copy `key` (see the module invariant), reading chunks at `pace`. An error is a
/// failure that shows no damage (a transient I/O error): the copy could not be judged.
pub(crate) async fn check_copy(
    store: &ShardStore,
    key: ShardKey,
    pace: Pace,
    pacer: &mut Pacer,
    give_way: impl Fn() -> bool,
) -> Result<Verdict, ShardStoreError> {
    let damaged = |reason, chunk, bytes| Verdict::Damaged {
        reason,
        chunk,
        bytes,
    };
    let reader = match store.open_read(key).await {
        Ok(reader) => reader,
        Err(ShardStoreError::NotFound { .. }) => return Ok(Verdict::Gone),
        Err(e) => return damage_of(&e).map(|reason| damaged(reason, 0, 0)).ok_or(e),
    };
    let mut bytes = HEADER_LEN + FOOTER_LEN;
    let table = match reader.hash_table().await {
        Ok(table) => table,
        Err(e) => {
            return damage_of(&e)
                .map(|reason| damaged(reason, 0, bytes))
                .ok_or(e);
        }
    };
    let table_bytes = table.chunks() * HASH_LEN;
    bytes += table_bytes;
    if pace == Pace::Throttled {
        pacer.consumed(table_bytes);
    }
    let chunk_size = u64::from(reader.header().chunk_size);
    for index in 0..reader.chunk_count() {
        if !pacer.before_chunk(pace, &give_way).await {
            return Ok(Verdict::Aborted);
        }
        let read = reader.read_chunk(&table, index).await;
        if pace == Pace::Throttled {
            pacer.consumed(chunk_size);
        }
        bytes += chunk_size;
        let reason = match read {
            Ok(ChunkRead::Intact { .. }) => continue,
            Ok(ChunkRead::Corrupt { .. }) => {
                if reader
                    .file_len_now()
                    .is_ok_and(|len| len < reader.file_len())
                {
                    CorruptReason::Truncated
                } else {
                    CorruptReason::ChunkHash
                }
            }
            Err(e) => damage_of(&e).ok_or(e)?,
        };
        return Ok(damaged(reason, index, bytes));
    }
    Ok(Verdict::Intact { bytes })
}

/// The kind of damage a store error shows, or `None` if it shows none (the copy is fine as far
/// as we know; the operation failed for another reason).
pub(crate) fn damage_of(err: &ShardStoreError) -> Option<CorruptReason> {
    match err {
        ShardStoreError::CorruptHeader {
            source: ShardFileError::Truncated,
            ..
        }
        | ShardStoreError::Truncated { .. } => Some(CorruptReason::Truncated),
        ShardStoreError::CorruptHeader { .. } | ShardStoreError::ImpossibleHeader { .. } => {
            Some(CorruptReason::Header)
        }
        ShardStoreError::Misplaced { .. } => Some(CorruptReason::Misplaced),
        ShardStoreError::CorruptFooter { .. } => Some(CorruptReason::Footer),
        ShardStoreError::HashTableMismatch { .. } => Some(CorruptReason::HashTable),
        ShardStoreError::Io { source, .. }
            if source.raw_os_error() == Some(EIO)
                || source.kind() == io::ErrorKind::InvalidData =>
        {
            Some(CorruptReason::Io)
        }
        _ => None,
    }
}
