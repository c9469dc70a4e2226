//! Reading one stored copy: its header, footer, hash table and chunks.
//!
//! Invariant: a reader exists only for a file whose header decodes and names the very copy
//! its file name names, whose footer decodes, and whose length is exactly what header and
//! footer make it. A [`HashTable`] is handed out only after it matched the footer's digest,
//! and a chunk only after it matched its table entry, which binds the chunk to its blob, shard
//! and position; any other chunk is reported corrupt, with no data.
//!
//! A reader needs only the file's path: it never calls back into the store.

use crate::shard_dir::blocking;
use crate::shard_key::ShardKey;
use crate::shard_limits::{MAX_SHARD_CHUNKS, check_geometry};
use crate::store_error::ShardStoreError;
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessera_core::shard_file::{
    FOOTER_LEN, HASH_LEN, HEADER_LEN, ShardDigest, ShardFileError, ShardFileFooter,
    ShardFileHeader, chunk_count_from_file_len, chunk_offset, digests_equal,
    file_len as expected_file_len, hash_table_offset, shard_digest, verify_chunk,
};
use tracing::warn;

/// One chunk as read from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkRead {
    /// The data matched its table entry.
    Intact {
        /// The chunk's index.
        index: u64,
        /// Exactly `chunk_size` bytes.
        data: Bytes,
    },
    /// The data did not match its table entry, or could not be read whole; never served.
    Corrupt {
        /// The chunk's index.
        index: u64,
    },
}

/// A stored hash table that matched its footer's digest: one [`HASH_LEN`]-byte chunk hash per
/// chunk, in order. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTable {
    bytes: Bytes,
}

impl HashTable {
    /// Chunks the table covers.
    pub fn chunks(&self) -> u64 {
        self.bytes.len() as u64 / HASH_LEN
    }

    /// The table's bytes, as ReadShard sends them.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Chunk `index`'s hash; `None` past the end.
    pub fn hash(&self, index: u64) -> Option<&[u8]> {
        let start = usize::try_from(index.checked_mul(HASH_LEN)?).ok()?;
        self.bytes.get(start..start + HASH_LEN as usize)
    }
}

/// What a stored copy is, read from its header, footer and file length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStat {
    /// The stored header.
    pub header: ShardFileHeader,
    /// Chunks in the file.
    pub chunks: u64,
    /// The file's length in bytes.
    pub file_len: u64,
    /// The digest the footer records (of the hash table, as written).
    pub digest: ShardDigest,
}

/// An open, header- and footer-checked shard file. Reads use positioned I/O, so one reader
/// needs no locking and its chunks may be read in any order.
#[derive(Debug)]
pub struct ShardReader {
    key: ShardKey,
    header: ShardFileHeader,
    footer: ShardFileFooter,
    file_len: u64,
    path: PathBuf,
    file: Arc<File>,
}

impl ShardReader {
    /// Opens the file at `path` for copy `key` and checks header, name, footer and length.
    pub(crate) async fn open(path: PathBuf, key: ShardKey) -> Result<Self, ShardStoreError> {
        blocking(move || Self::open_blocking(path, key)).await
    }

    /// As [`open`](Self::open), on the calling thread.
    pub(crate) fn open_blocking(path: PathBuf, key: ShardKey) -> Result<Self, ShardStoreError> {
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ShardStoreError::NotFound { shard: key });
            }
            Err(e) => return Err(ShardStoreError::io("open", &path)(e)),
        };
        let file_len = file
            .metadata()
            .map_err(ShardStoreError::io("stat", &path))?
            .len();
        let header = read_header(&file, &path, key, file_len)?;
        let footer = read_footer(&file, &path, key, &header, file_len)?;
        Ok(Self {
            key,
            header,
            footer,
            file_len,
            path,
            file: Arc::new(file),
        })
    }

    /// The copy read.
    pub fn key(&self) -> ShardKey {
        self.key
    }

    /// The stored header.
    pub fn header(&self) -> &ShardFileHeader {
        &self.header
    }

    /// Chunks in the file.
    pub fn chunk_count(&self) -> u64 {
        self.footer.chunks
    }

    /// The digest the footer records.
    pub fn digest(&self) -> ShardDigest {
        self.footer.digest
    }

    /// Header, chunk count, file length and digest.
    pub fn stat(&self) -> ShardStat {
        ShardStat {
            header: self.header,
            chunks: self.footer.chunks,
            file_len: self.file_len,
            digest: self.footer.digest,
        }
    }

    /// The file's length when it was opened.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The open file's length now (it shrinks if the file is cut after it was opened).
    pub(crate) fn file_len_now(&self) -> io::Result<u64> {
        self.file.metadata().map(|meta| meta.len())
    }

    /// The chunk indexes `[first, first + count)`, where `count = 0` means "to the end";
    /// refused if any lies past the shard's end.
    pub fn range(&self, first: u64, count: u64) -> Result<Range<u64>, ShardStoreError> {
        let chunks = self.footer.chunks;
        let out_of_bounds = || ShardStoreError::RangeOutOfBounds {
            shard: self.key,
            first,
            count,
            chunks,
        };
        if first > chunks {
            return Err(out_of_bounds());
        }
        let end = if count == 0 {
            chunks
        } else {
            first.checked_add(count).ok_or_else(out_of_bounds)?
        };
        if end > chunks {
            return Err(out_of_bounds());
        }
        Ok(first..end)
    }

    /// Reads the hash table and checks it against the footer's digest.
    pub async fn hash_table(&self) -> Result<HashTable, ShardStoreError> {
        let file = Arc::clone(&self.file);
        let (key, path) = (self.key, self.path.clone());
        let (chunk_size, footer, file_len) = (self.header.chunk_size, self.footer, self.file_len);
        blocking(move || {
            let mut table = vec![0u8; (footer.chunks * HASH_LEN) as usize];
            let at = hash_table_offset(chunk_size, footer.chunks);
            match file.read_exact_at(&mut table, at) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(ShardStoreError::Truncated {
                        shard: key,
                        file_len: file.metadata().map_or(0, |m| m.len()),
                        expected: file_len,
                    });
                }
                Err(e) => return Err(ShardStoreError::io("read", &path)(e)),
            }
            let digest = shard_digest(&key.data_id, key.shard_index, &table);
            if !digest.is_some_and(|d| digests_equal(&d, &footer.digest)) {
                warn!(shard = %key, "hash table does not match the footer's digest");
                return Err(ShardStoreError::HashTableMismatch { shard: key });
            }
            Ok(HashTable {
                bytes: Bytes::from(table),
            })
        })
        .await
    }

    /// Reads chunk `index` and checks it against its entry in `table` (this copy's table).
    pub async fn read_chunk(
        &self,
        table: &HashTable,
        index: u64,
    ) -> Result<ChunkRead, ShardStoreError> {
        let Some(hash) = table.hash(index).filter(|_| index < self.footer.chunks) else {
            return Err(ShardStoreError::RangeOutOfBounds {
                shard: self.key,
                first: index,
                count: 1,
                chunks: self.footer.chunks,
            });
        };
        let hash = Bytes::copy_from_slice(hash);
        let file = Arc::clone(&self.file);
        let (key, path) = (self.key, self.path.clone());
        let chunk_size = self.header.chunk_size;
        blocking(move || read_chunk_blocking(&file, key, &path, chunk_size, index, &hash)).await
    }

    /// Reads every chunk against `table` and counts those that fail (or cannot be read
    /// whole); holds one chunk in memory at a time.
    pub async fn count_corrupt_chunks(&self, table: &HashTable) -> Result<u64, ShardStoreError> {
        let mut corrupt = 0;
        for index in 0..self.footer.chunks {
            if let ChunkRead::Corrupt { .. } = self.read_chunk(table, index).await? {
                corrupt += 1;
            }
        }
        Ok(corrupt)
    }
}

/// Reads and checks the header: it decodes, names `key`, and keeps to the store's limits.
fn read_header(
    file: &File,
    path: &Path,
    key: ShardKey,
    file_len: u64,
) -> Result<ShardFileHeader, ShardStoreError> {
    let mut bytes = vec![0u8; HEADER_LEN.min(file_len) as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(ShardStoreError::io("read", path))?;
    let header = ShardFileHeader::decode(&bytes)
        .map_err(|source| ShardStoreError::CorruptHeader { shard: key, source })?;
    let found = ShardKey::of_header(&header).ok_or(ShardStoreError::CorruptHeader {
        shard: key,
        source: ShardFileError::InvalidField {
            field: "generation",
        },
    })?;
    if found != key {
        return Err(ShardStoreError::Misplaced { shard: key, found });
    }
    check_geometry(&header)
        .map_err(|reason| ShardStoreError::ImpossibleHeader { shard: key, reason })?;
    Ok(header)
}

/// Reads and checks the footer: it decodes, and the file is exactly as long as header and
/// footer make it.
fn read_footer(
    file: &File,
    path: &Path,
    key: ShardKey,
    header: &ShardFileHeader,
    file_len: u64,
) -> Result<ShardFileFooter, ShardStoreError> {
    let truncated = |expected| ShardStoreError::Truncated {
        shard: key,
        file_len,
        expected,
    };
    if file_len < HEADER_LEN + FOOTER_LEN {
        return Err(truncated(0));
    }
    let mut bytes = [0u8; FOOTER_LEN as usize];
    file.read_exact_at(&mut bytes, file_len - FOOTER_LEN)
        .map_err(ShardStoreError::io("read", path))?;
    let footer = match ShardFileFooter::decode(&bytes) {
        Ok(footer) => footer,
        // A length that is no whole number of records was cut (or padded): what sits where
        // the footer should is not the footer.
        Err(_) if chunk_count_from_file_len(header.chunk_size, file_len).is_err() => {
            return Err(truncated(0));
        }
        Err(source) => return Err(ShardStoreError::CorruptFooter { shard: key, source }),
    };
    if footer.chunks > MAX_SHARD_CHUNKS {
        return Err(ShardStoreError::CorruptFooter {
            shard: key,
            source: ShardFileError::InvalidField { field: "chunks" },
        });
    }
    let expected = expected_file_len(header.chunk_size, footer.chunks);
    if expected != file_len {
        return Err(truncated(expected));
    }
    Ok(footer)
}

/// Reads one chunk at its offset and checks it against `hash`.
fn read_chunk_blocking(
    file: &File,
    key: ShardKey,
    path: &Path,
    chunk_size: u32,
    index: u64,
    hash: &[u8],
) -> Result<ChunkRead, ShardStoreError> {
    let mut data = vec![0u8; chunk_size as usize];
    match file.read_exact_at(&mut data, chunk_offset(chunk_size, index)) {
        Ok(()) => {}
        // The file shrank after it was opened: this chunk cannot be read whole.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            warn!(shard = %key, index, "chunk cut short on read");
            return Ok(ChunkRead::Corrupt { index });
        }
        Err(e) => return Err(ShardStoreError::io("read", path)(e)),
    }
    if verify_chunk(&key.data_id, key.shard_index, index, &data, hash) {
        Ok(ChunkRead::Intact {
            index,
            data: Bytes::from(data),
        })
    } else {
        warn!(shard = %key, index, "chunk hash mismatch on read");
        Ok(ChunkRead::Corrupt { index })
    }
}
