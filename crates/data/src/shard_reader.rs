//! Reading chunks of one stored shard.
//!
//! Invariant: a chunk is handed out only after its bytes were hashed and matched the hash
//! stored beside them; any other chunk is reported as corrupt, with no data. A shard whose
//! header cannot be trusted, or whose length is not whole chunk records, is refused entirely.

use crate::store::{ShardKey, ShardStat, blocking, check_geometry, read_header_bytes, unix_ms};
use crate::store_error::ShardStoreError;
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use tessera_core::shard_format::{
    HASH_LEN, ShardFileHeader, chunk_count_from_file_len, chunk_offset, chunk_record_len,
    verify_chunk,
};
use tracing::warn;

/// One chunk as read from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkRead {
    /// The data matched its stored hash.
    Intact {
        /// The chunk's index.
        index: u64,
        /// Exactly `chunk_size` bytes.
        data: Bytes,
        /// The stored (and verified) blake3 hash of `data`.
        hash: Bytes,
    },
    /// The data did not match its stored hash, or could not be read whole; never served.
    Corrupt {
        /// The chunk's index.
        index: u64,
    },
}

/// An open, header-checked shard file. Reads use positioned I/O, so one reader needs no
/// locking and its chunks may be read in any order.
#[derive(Debug)]
pub struct ShardReader {
    key: ShardKey,
    header: ShardFileHeader,
    chunks: u64,
    file_len: u64,
    modified_ms: i64,
    path: PathBuf,
    file: Arc<File>,
}

impl ShardReader {
    /// Opens the file at `path` for shard `key` and checks its header and length.
    pub(crate) async fn open(path: PathBuf, key: ShardKey) -> Result<Self, ShardStoreError> {
        blocking(move || Self::open_blocking(path, key)).await
    }

    /// As [`open`](Self::open), on the calling thread.
    pub(crate) fn open_blocking(path: PathBuf, key: ShardKey) -> Result<Self, ShardStoreError> {
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ShardStoreError::NotFound { shard: key });
            }
            Err(e) => return Err(ShardStoreError::io("open", &path)(e)),
        };
        let meta = file
            .metadata()
            .map_err(ShardStoreError::io("stat", &path))?;
        let file_len = meta.len();
        let modified_ms = meta.modified().map(unix_ms).unwrap_or(0);
        let bytes = read_header_bytes(&mut file).map_err(ShardStoreError::io("read", &path))?;
        let header = ShardFileHeader::decode(&bytes)
            .map_err(|source| ShardStoreError::CorruptHeader { shard: key, source })?;
        let found = ShardKey::of_header(&header);
        if found != key {
            return Err(ShardStoreError::Misplaced { shard: key, found });
        }
        check_geometry(&header)
            .map_err(|reason| ShardStoreError::ImpossibleHeader { shard: key, reason })?;
        let chunks = chunk_count_from_file_len(header.chunk_size, file_len)
            .map_err(|source| ShardStoreError::Truncated { shard: key, source })?;
        Ok(Self {
            key,
            header,
            chunks,
            file_len,
            modified_ms,
            path,
            file: Arc::new(file),
        })
    }

    /// The shard read.
    pub fn key(&self) -> ShardKey {
        self.key
    }

    /// The stored header.
    pub fn header(&self) -> &ShardFileHeader {
        &self.header
    }

    /// Chunk records in the file.
    pub fn chunk_count(&self) -> u64 {
        self.chunks
    }

    /// Header, chunk count and file length.
    pub fn stat(&self) -> ShardStat {
        ShardStat {
            header: self.header,
            chunks: self.chunks,
            file_len: self.file_len,
            modified_ms: self.modified_ms,
        }
    }

    /// The open file's length now (it shrinks if the file is cut after it was opened).
    pub(crate) fn file_len_now(&self) -> io::Result<u64> {
        self.file.metadata().map(|meta| meta.len())
    }

    /// The chunk indexes `[first, first + count)`, where `count = 0` means "to the end";
    /// refused if any lies past the shard's end.
    pub fn range(&self, first: u64, count: u64) -> Result<Range<u64>, ShardStoreError> {
        let out_of_bounds = || ShardStoreError::RangeOutOfBounds {
            shard: self.key,
            first,
            count,
            chunks: self.chunks,
        };
        if first > self.chunks {
            return Err(out_of_bounds());
        }
        let end = if count == 0 {
            self.chunks
        } else {
            first.checked_add(count).ok_or_else(out_of_bounds)?
        };
        if end > self.chunks {
            return Err(out_of_bounds());
        }
        Ok(first..end)
    }

    /// Reads and verifies chunk `index`.
    pub async fn read_chunk(&self, index: u64) -> Result<ChunkRead, ShardStoreError> {
        if index >= self.chunks {
            return Err(ShardStoreError::RangeOutOfBounds {
                shard: self.key,
                first: index,
                count: 1,
                chunks: self.chunks,
            });
        }
        let file = Arc::clone(&self.file);
        let (key, path) = (self.key, self.path.clone());
        let chunk_size = self.header.chunk_size;
        blocking(move || read_chunk_blocking(&file, key, &path, chunk_size, index)).await
    }

    /// Reads every chunk and counts those that fail their hash (or cannot be read whole);
    /// holds one chunk in memory at a time.
    pub async fn count_corrupt_chunks(&self) -> Result<u64, ShardStoreError> {
        let mut corrupt = 0;
        for index in 0..self.chunks {
            if let ChunkRead::Corrupt { .. } = self.read_chunk(index).await? {
                corrupt += 1;
            }
        }
        Ok(corrupt)
    }
}

/// Reads one chunk record at its offset and checks the data against the stored hash.
fn read_chunk_blocking(
    file: &File,
    key: ShardKey,
    path: &std::path::Path,
    chunk_size: u32,
    index: u64,
) -> Result<ChunkRead, ShardStoreError> {
    let record_len = chunk_record_len(chunk_size);
    let data_len = record_len - HASH_LEN;
    let mut record = vec![0u8; record_len as usize];
    match file.read_exact_at(&mut record, chunk_offset(chunk_size, index)) {
        Ok(()) => {}
        // The file shrank after it was opened: this chunk cannot be read whole.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            warn!(shard = %key, index, "chunk cut short on read");
            return Ok(ChunkRead::Corrupt { index });
        }
        Err(e) => return Err(ShardStoreError::io("read", path)(e)),
    }
    let record = Bytes::from(record);
    let data = record.slice(..data_len as usize);
    let hash = record.slice(data_len as usize..);
    if verify_chunk(&data, &hash) {
        Ok(ChunkRead::Intact { index, data, hash })
    } else {
        warn!(shard = %key, index, "chunk hash mismatch on read");
        Ok(ChunkRead::Corrupt { index })
    }
}
