//! The shard file format of data nodes, version 1.
//!
//! Invariant: a shard file is one `HEADER_LEN`-byte header followed by whole chunk records, each
//! `chunk_size` bytes of chunk data then the 32-byte blake3 hash of that data. The header names
//! its format (magic `TSHD`, version) and carries its own checksum, so any bit flip in it or in a
//! chunk is detected on read.
//!
//! Header layout (little-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `b"TSHD"` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | reserved, zero |
//! | 8 | 16 | data id |
//! | 24 | 4 | shard index |
//! | 28 | 4 | data shards (k) |
//! | 32 | 4 | parity shards (m) |
//! | 36 | 4 | chunk size |
//! | 40 | 16 | reserved, zero |
//! | 56 | 8 | first 8 bytes of blake3 of bytes 0..56 |

use crate::layout::Layout;
use crate::names::DataId;

/// Bytes of the header at the start of every shard file.
pub const HEADER_LEN: u64 = 64;
/// Bytes of the blake3 hash after each chunk.
pub const HASH_LEN: u64 = 32;
/// The magic bytes that open a shard file.
pub const MAGIC: [u8; 4] = *b"TSHD";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Where the header checksum starts; it covers every byte before it.
const CHECKSUM_OFFSET: usize = 56;

/// Why a shard file (or part of one) is unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardFormatError {
    /// The file does not start with `TSHD`: not a shard file.
    #[error("not a shard file (bad magic)")]
    BadMagic,
    /// A format version this build cannot read.
    #[error("unsupported shard format version {0}")]
    UnsupportedVersion(u16),
    /// The header's checksum does not match: it is corrupt.
    #[error("shard header checksum mismatch")]
    HeaderChecksum,
    /// Fewer bytes than a header, or a partial chunk record at the end of the file.
    #[error("shard file truncated")]
    Truncated,
    /// A well-formed header with impossible values (reserved bytes set, shard index >= n, ...).
    #[error("shard header field {field} is invalid")]
    InvalidField {
        /// The field.
        field: &'static str,
    },
}

impl ShardFormatError {
    /// A stable, short identifier of the error kind for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ShardFormatError::BadMagic => "bad_magic",
            ShardFormatError::UnsupportedVersion(_) => "unsupported_version",
            ShardFormatError::HeaderChecksum => "header_checksum",
            ShardFormatError::Truncated => "truncated",
            ShardFormatError::InvalidField { .. } => "invalid_field",
        }
    }
}

/// What the header of a shard file records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShardFileHeader {
    /// The blob this shard belongs to.
    pub data_id: DataId,
    /// Which of the n shards this is.
    pub shard_index: u32,
    /// k of the blob's layout.
    pub data_shards: u32,
    /// m of the blob's layout.
    pub parity_shards: u32,
    /// Bytes of chunk data per record.
    pub chunk_size: u32,
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn header_checksum(bytes: &[u8]) -> [u8; 8] {
    let hash = blake3::hash(&bytes[..CHECKSUM_OFFSET]);
    let mut checksum = [0u8; 8];
    checksum.copy_from_slice(&hash.as_bytes()[..8]);
    checksum
}

impl ShardFileHeader {
    /// The layout the header names, if valid.
    pub fn layout(&self) -> Result<Layout, ShardFormatError> {
        Layout::new(self.data_shards, self.parity_shards).map_err(|_| {
            ShardFormatError::InvalidField {
                field: "data_shards",
            }
        })
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut bytes = [0u8; HEADER_LEN as usize];
        bytes[0..4].copy_from_slice(&MAGIC);
        bytes[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[8..24].copy_from_slice(self.data_id.as_bytes());
        bytes[24..28].copy_from_slice(&self.shard_index.to_le_bytes());
        bytes[28..32].copy_from_slice(&self.data_shards.to_le_bytes());
        bytes[32..36].copy_from_slice(&self.parity_shards.to_le_bytes());
        bytes[36..40].copy_from_slice(&self.chunk_size.to_le_bytes());
        let checksum = header_checksum(&bytes);
        bytes[CHECKSUM_OFFSET..].copy_from_slice(&checksum);
        bytes
    }

    /// Reads a header from the first `HEADER_LEN` bytes of `bytes` (more may follow). Checks, in
    /// order: length, magic, version, checksum, field values.
    pub fn decode(bytes: &[u8]) -> Result<ShardFileHeader, ShardFormatError> {
        let bytes = bytes
            .get(..HEADER_LEN as usize)
            .ok_or(ShardFormatError::Truncated)?;
        if bytes[0..4] != MAGIC {
            return Err(ShardFormatError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(ShardFormatError::UnsupportedVersion(version));
        }
        if bytes[CHECKSUM_OFFSET..] != header_checksum(bytes) {
            return Err(ShardFormatError::HeaderChecksum);
        }
        if bytes[6..8].iter().chain(&bytes[40..56]).any(|&b| b != 0) {
            return Err(ShardFormatError::InvalidField { field: "reserved" });
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[8..24]);
        let header = ShardFileHeader {
            data_id: DataId::from_bytes(id),
            shard_index: read_u32(bytes, 24),
            data_shards: read_u32(bytes, 28),
            parity_shards: read_u32(bytes, 32),
            chunk_size: read_u32(bytes, 36),
        };
        let layout = header.layout()?;
        if header.shard_index >= layout.total_shards() {
            return Err(ShardFormatError::InvalidField {
                field: "shard_index",
            });
        }
        if header.chunk_size == 0 {
            return Err(ShardFormatError::InvalidField {
                field: "chunk_size",
            });
        }
        Ok(header)
    }
}

/// Bytes of one chunk record: the chunk then its hash.
pub fn chunk_record_len(chunk_size: u32) -> u64 {
    u64::from(chunk_size) + HASH_LEN
}

/// File offset of chunk record `index`.
pub fn chunk_offset(chunk_size: u32, index: u64) -> u64 {
    // Saturating: an absurd index yields an offset past any real file, not a panic.
    HEADER_LEN.saturating_add(index.saturating_mul(chunk_record_len(chunk_size)))
}

/// Length of a complete shard file of `chunk_count` chunks.
pub fn file_len(chunk_size: u32, chunk_count: u64) -> u64 {
    chunk_offset(chunk_size, chunk_count)
}

/// Chunk records in a file of `file_len` bytes; an error unless the file is exactly a header
/// plus whole records (a partial record means an interrupted write).
pub fn chunk_count_from_file_len(chunk_size: u32, file_len: u64) -> Result<u64, ShardFormatError> {
    if chunk_size == 0 {
        return Err(ShardFormatError::InvalidField {
            field: "chunk_size",
        });
    }
    let body = file_len
        .checked_sub(HEADER_LEN)
        .ok_or(ShardFormatError::Truncated)?;
    let record = chunk_record_len(chunk_size);
    if body % record != 0 {
        return Err(ShardFormatError::Truncated);
    }
    Ok(body / record)
}

/// The blake3 hash stored after a chunk.
pub fn chunk_hash(data: &[u8]) -> [u8; HASH_LEN as usize] {
    *blake3::hash(data).as_bytes()
}

/// One chunk record's bytes: `data` followed by its hash.
pub fn encode_chunk_record(data: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(data.len() + HASH_LEN as usize);
    record.extend_from_slice(data);
    record.extend_from_slice(&chunk_hash(data));
    record
}

/// Whether `hash` is the blake3 hash of `data` (compared in constant time).
pub fn verify_chunk(data: &[u8], hash: &[u8]) -> bool {
    match <[u8; HASH_LEN as usize]>::try_from(hash) {
        Ok(expected) => blake3::hash(data) == expected,
        Err(_) => false,
    }
}

/// Splits a chunk record into its data and checks the hash; `None` if the record is shorter
/// than a hash or the hash does not match.
pub fn verify_chunk_record(record: &[u8]) -> Option<&[u8]> {
    let split = record.len().checked_sub(HASH_LEN as usize)?;
    let (data, hash) = record.split_at(split);
    verify_chunk(data, hash).then_some(data)
}

#[cfg(test)]
#[path = "shard_format_test.rs"]
mod tests;
