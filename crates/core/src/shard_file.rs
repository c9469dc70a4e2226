//! The shard file format of data nodes, version 2, and the hashes that bind a shard's bytes to
//! its place in a blob.
//!
//! Invariant: a chunk hash commits to the chunk's bytes *and* to the blob, shard index and
//! chunk index it belongs to, so a chunk moved to another position, shard or blob no longer
//! matches; a shard digest commits to the shard's whole, ordered list of chunk hashes (and its
//! length). The manifest records one digest per shard, so a reader that checks a node's hash
//! table against the manifest and each chunk against the table accepts only the exact bytes the
//! writer wrote for that place, whatever the node claims.
//!
//! File layout: a [`HEADER_LEN`]-byte header, the chunks' bytes back to back (each exactly
//! `chunk_size`), the hash table (one [`HASH_LEN`]-byte hash per chunk, in order), then a
//! [`FOOTER_LEN`]-byte footer. Header and footer name their format and carry their own
//! checksums. Header (little-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `b"TSHD"` |
//! | 4 | 2 | format version (2) |
//! | 6 | 2 | reserved, zero |
//! | 8 | 16 | data id |
//! | 24 | 4 | shard index |
//! | 28 | 4 | data shards (k) |
//! | 32 | 4 | parity shards (m) |
//! | 36 | 4 | chunk size |
//! | 40 | 8 | generation |
//! | 48 | 8 | lease id of the writer |
//! | 56 | 64 | reserved, zero |
//! | 120 | 8 | first 8 bytes of blake3 of bytes 0..120 |
//!
//! Footer: magic `b"TSHF"` (4), reserved (4), chunk count (8), shard digest (32), reserved (8),
//! first 8 bytes of blake3 of bytes 0..56 (8).

use crate::layout::Layout;
use crate::names::DataId;

/// Bytes of the header at the start of every shard file.
pub const HEADER_LEN: u64 = 128;
/// Bytes of the footer at the end of every shard file.
pub const FOOTER_LEN: u64 = 64;
/// Bytes of one chunk hash.
pub const HASH_LEN: u64 = 32;
/// Bytes of a shard digest.
pub const DIGEST_LEN: usize = 32;
/// The magic bytes that open a shard file.
pub const MAGIC: [u8; 4] = *b"TSHD";
/// The magic bytes that open a shard file's footer.
pub const FOOTER_MAGIC: [u8; 4] = *b"TSHF";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 2;

/// blake3 key-derivation context of chunk hashes.
const CHUNK_CONTEXT: &str = "tessera 2026-11 shard chunk hash v2";
/// blake3 key-derivation context of shard digests.
const DIGEST_CONTEXT: &str = "tessera 2026-11 shard digest v2";

const HEADER_CHECKSUM_AT: usize = 120;
const FOOTER_CHECKSUM_AT: usize = 56;

/// One chunk hash.
pub type ChunkHash = [u8; HASH_LEN as usize];
/// One shard digest.
pub type ShardDigest = [u8; DIGEST_LEN];

/// Why a shard file (or part of one) is unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardFileError {
    /// The file does not start with `TSHD` (or its footer with `TSHF`): not a shard file.
    #[error("not a shard file (bad magic)")]
    BadMagic,
    /// A format version this build cannot read.
    #[error("unsupported shard format version {0}")]
    UnsupportedVersion(u16),
    /// The header's checksum does not match: it is corrupt.
    #[error("shard header checksum mismatch")]
    HeaderChecksum,
    /// The footer's checksum does not match: it is corrupt.
    #[error("shard footer checksum mismatch")]
    FooterChecksum,
    /// The file is shorter than its header, footer and records need.
    #[error("shard file truncated")]
    Truncated,
    /// A well-formed header or footer with impossible values.
    #[error("shard file field {field} is invalid")]
    InvalidField {
        /// The field.
        field: &'static str,
    },
}

impl ShardFileError {
    /// A stable, short identifier of the error kind for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ShardFileError::BadMagic => "bad_magic",
            ShardFileError::UnsupportedVersion(_) => "unsupported_version",
            ShardFileError::HeaderChecksum => "header_checksum",
            ShardFileError::FooterChecksum => "footer_checksum",
            ShardFileError::Truncated => "truncated",
            ShardFileError::InvalidField { .. } => "invalid_field",
        }
    }
}

/// The hash of chunk `chunk_index` of shard `shard_index` of blob `data_id`.
pub fn chunk_hash(data_id: &DataId, shard_index: u32, chunk_index: u64, data: &[u8]) -> ChunkHash {
    let mut hasher = blake3::Hasher::new_derive_key(CHUNK_CONTEXT);
    hasher.update(data_id.as_bytes());
    hasher.update(&shard_index.to_le_bytes());
    hasher.update(&chunk_index.to_le_bytes());
    hasher.update(data);
    *hasher.finalize().as_bytes()
}

/// Whether `hash` is the chunk hash of `data` at that place (compared in constant time).
pub fn verify_chunk(
    data_id: &DataId,
    shard_index: u32,
    chunk_index: u64,
    data: &[u8],
    hash: &[u8],
) -> bool {
    match <ChunkHash>::try_from(hash) {
        Ok(expected) => {
            let mut hasher = blake3::Hasher::new_derive_key(CHUNK_CONTEXT);
            hasher.update(data_id.as_bytes());
            hasher.update(&shard_index.to_le_bytes());
            hasher.update(&chunk_index.to_le_bytes());
            hasher.update(data);
            // blake3::Hash compares in constant time.
            hasher.finalize() == blake3::Hash::from(expected)
        }
        Err(_) => false,
    }
}

/// Builds a shard digest from chunk hashes as they come (writers and verifiers stream).
#[derive(Clone, Debug)]
pub struct ShardDigester {
    hasher: blake3::Hasher,
    chunks: u64,
}

impl ShardDigester {
    /// A digester for shard `shard_index` of blob `data_id`.
    pub fn new(data_id: &DataId, shard_index: u32) -> ShardDigester {
        let mut hasher = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
        hasher.update(data_id.as_bytes());
        hasher.update(&shard_index.to_le_bytes());
        ShardDigester { hasher, chunks: 0 }
    }

    /// Adds the next chunk's hash.
    pub fn push(&mut self, hash: &ChunkHash) {
        self.hasher.update(hash);
        self.chunks += 1;
    }

    /// Chunk hashes added so far.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// The digest of every hash added, committing to their count too.
    pub fn finish(mut self) -> ShardDigest {
        self.hasher.update(&self.chunks.to_le_bytes());
        *self.hasher.finalize().as_bytes()
    }
}

/// The digest of a whole hash table (`hashes` is `HASH_LEN` bytes per chunk); `None` when its
/// length is not a whole number of hashes.
pub fn shard_digest(data_id: &DataId, shard_index: u32, hashes: &[u8]) -> Option<ShardDigest> {
    if !(hashes.len() as u64).is_multiple_of(HASH_LEN) {
        return None;
    }
    let mut digester = ShardDigester::new(data_id, shard_index);
    for hash in hashes.chunks_exact(HASH_LEN as usize) {
        let mut h = [0u8; HASH_LEN as usize];
        h.copy_from_slice(hash);
        digester.push(&h);
    }
    Some(digester.finish())
}

/// Whether `digest` equals `expected` (constant time).
pub fn digests_equal(digest: &[u8], expected: &ShardDigest) -> bool {
    match <[u8; DIGEST_LEN]>::try_from(digest) {
        Ok(d) => blake3::Hash::from(d) == blake3::Hash::from(*expected),
        Err(_) => false,
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
    /// Bytes of every chunk.
    pub chunk_size: u32,
    /// The write that made this file (nonzero).
    pub generation: u64,
    /// The write lease its writer held (0: none).
    pub lease_id: u64,
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

fn checksum8(bytes: &[u8]) -> [u8; 8] {
    let hash = blake3::hash(bytes);
    let mut checksum = [0u8; 8];
    checksum.copy_from_slice(&hash.as_bytes()[..8]);
    checksum
}

/// The format version a file's first bytes announce, if they are a shard file's (any version).
pub fn announced_version(bytes: &[u8]) -> Option<u16> {
    if bytes.len() < 6 || bytes[0..4] != MAGIC {
        return None;
    }
    Some(u16::from_le_bytes([bytes[4], bytes[5]]))
}

impl ShardFileHeader {
    /// The layout the header names, if valid.
    pub fn layout(&self) -> Result<Layout, ShardFileError> {
        Layout::new(self.data_shards, self.parity_shards).map_err(|_| {
            ShardFileError::InvalidField {
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
        bytes[40..48].copy_from_slice(&self.generation.to_le_bytes());
        bytes[48..56].copy_from_slice(&self.lease_id.to_le_bytes());
        let checksum = checksum8(&bytes[..HEADER_CHECKSUM_AT]);
        bytes[HEADER_CHECKSUM_AT..].copy_from_slice(&checksum);
        bytes
    }

    /// Reads a header from the first `HEADER_LEN` bytes of `bytes` (more may follow). Checks, in
    /// order: length, magic, version, checksum, field values.
    pub fn decode(bytes: &[u8]) -> Result<ShardFileHeader, ShardFileError> {
        let bytes = bytes
            .get(..HEADER_LEN as usize)
            .ok_or(ShardFileError::Truncated)?;
        if bytes[0..4] != MAGIC {
            return Err(ShardFileError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(ShardFileError::UnsupportedVersion(version));
        }
        if bytes[HEADER_CHECKSUM_AT..] != checksum8(&bytes[..HEADER_CHECKSUM_AT]) {
            return Err(ShardFileError::HeaderChecksum);
        }
        if bytes[6..8]
            .iter()
            .chain(&bytes[56..HEADER_CHECKSUM_AT])
            .any(|&b| b != 0)
        {
            return Err(ShardFileError::InvalidField { field: "reserved" });
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[8..24]);
        let header = ShardFileHeader {
            data_id: DataId::from_bytes(id),
            shard_index: read_u32(bytes, 24),
            data_shards: read_u32(bytes, 28),
            parity_shards: read_u32(bytes, 32),
            chunk_size: read_u32(bytes, 36),
            generation: read_u64(bytes, 40),
            lease_id: read_u64(bytes, 48),
        };
        let layout = header.layout()?;
        if header.shard_index >= layout.total_shards() {
            return Err(ShardFileError::InvalidField {
                field: "shard_index",
            });
        }
        if header.chunk_size == 0 {
            return Err(ShardFileError::InvalidField {
                field: "chunk_size",
            });
        }
        if header.generation == 0 {
            return Err(ShardFileError::InvalidField {
                field: "generation",
            });
        }
        Ok(header)
    }
}

/// What the footer of a shard file records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShardFileFooter {
    /// Chunks in the file.
    pub chunks: u64,
    /// The digest of the file's hash table.
    pub digest: ShardDigest,
}

impl ShardFileFooter {
    /// The footer's bytes.
    pub fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut bytes = [0u8; FOOTER_LEN as usize];
        bytes[0..4].copy_from_slice(&FOOTER_MAGIC);
        bytes[8..16].copy_from_slice(&self.chunks.to_le_bytes());
        bytes[16..48].copy_from_slice(&self.digest);
        let checksum = checksum8(&bytes[..FOOTER_CHECKSUM_AT]);
        bytes[FOOTER_CHECKSUM_AT..].copy_from_slice(&checksum);
        bytes
    }

    /// Reads a footer from exactly its bytes.
    pub fn decode(bytes: &[u8]) -> Result<ShardFileFooter, ShardFileError> {
        if bytes.len() != FOOTER_LEN as usize {
            return Err(ShardFileError::Truncated);
        }
        if bytes[0..4] != FOOTER_MAGIC {
            return Err(ShardFileError::BadMagic);
        }
        if bytes[FOOTER_CHECKSUM_AT..] != checksum8(&bytes[..FOOTER_CHECKSUM_AT]) {
            return Err(ShardFileError::FooterChecksum);
        }
        if bytes[4..8].iter().chain(&bytes[48..56]).any(|&b| b != 0) {
            return Err(ShardFileError::InvalidField { field: "reserved" });
        }
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(&bytes[16..48]);
        Ok(ShardFileFooter {
            chunks: read_u64(bytes, 8),
            digest,
        })
    }
}

/// File offset of chunk `index`'s bytes.
pub fn chunk_offset(chunk_size: u32, index: u64) -> u64 {
    // Saturating: an absurd index yields an offset past any real file, not a panic.
    HEADER_LEN.saturating_add(index.saturating_mul(u64::from(chunk_size)))
}

/// File offset of the hash table of a file of `chunks` chunks.
pub fn hash_table_offset(chunk_size: u32, chunks: u64) -> u64 {
    chunk_offset(chunk_size, chunks)
}

/// Length of a complete shard file of `chunks` chunks.
pub fn file_len(chunk_size: u32, chunks: u64) -> u64 {
    hash_table_offset(chunk_size, chunks)
        .saturating_add(chunks.saturating_mul(HASH_LEN))
        .saturating_add(FOOTER_LEN)
}

/// Chunks in a file of `file_len` bytes; an error unless the length is exactly a header, whole
/// chunks with their hashes, and a footer.
pub fn chunk_count_from_file_len(chunk_size: u32, file_len: u64) -> Result<u64, ShardFileError> {
    if chunk_size == 0 {
        return Err(ShardFileError::InvalidField {
            field: "chunk_size",
        });
    }
    let body = file_len
        .checked_sub(HEADER_LEN + FOOTER_LEN)
        .ok_or(ShardFileError::Truncated)?;
    let record = u64::from(chunk_size) + HASH_LEN;
    if !body.is_multiple_of(record) {
        return Err(ShardFileError::Truncated);
    }
    Ok(body / record)
}

#[cfg(test)]
#[path = "shard_file_test.rs"]
mod tests;
