//! Writing one copy of a shard: header, then chunks in order, each checked against its chunk
//! hash (bound to blob, shard and position) before it touches the disk, then a commit that
//! checks the writer's digest, appends the hash table and footer, and publishes the file.
//!
//! Invariant: until `commit` returns `Ok`, the copy's bytes exist only in a temp file under
//! `ROOT/tmp/`, and that file is removed when the writer fails, is aborted or is dropped. A
//! committed file holds exactly the chunks received, the hashes they were verified against,
//! and a footer whose digest is the one the writer sent. The writer is consumed by every step,
//! so a failed writer cannot be used again. It publishes through `ShardDir` and never calls
//! the store.

use crate::shard_dir::{ShardDir, blocking};
use crate::shard_key::ShardKey;
use crate::shard_limits::{MAX_SHARD_CHUNKS, check_geometry};
use crate::store_error::ShardStoreError;
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tessera_core::shard_file::{
    ChunkHash, DIGEST_LEN, HASH_LEN, ShardDigest, ShardDigester, ShardFileFooter, ShardFileHeader,
    digests_equal, verify_chunk,
};
use tracing::{debug, warn};

/// What a committed write stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenShard {
    /// Chunks stored.
    pub chunks: u64,
    /// Chunk data bytes stored (`chunks * chunk_size`; the file also holds header, hash table
    /// and footer).
    pub data_bytes: u64,
    /// The committed file's length.
    pub file_len: u64,
    /// The stored digest (the writer's, checked against the chunks received).
    pub digest: ShardDigest,
}

/// An open write of one copy; see the module doc for its life cycle.
#[derive(Debug)]
pub struct ShardWriter {
    dir: ShardDir,
    key: ShardKey,
    header: ShardFileHeader,
    temp_path: PathBuf,
    /// `None` once the temp file was published or removed.
    file: Option<File>,
    next_index: u64,
    /// The hashes received, in order: the hash table written at commit.
    table: Vec<u8>,
    digester: ShardDigester,
}

impl ShardWriter {
    /// Validates the header, refuses a copy that is already stored, and starts the temp file.
    pub(crate) async fn begin(
        dir: ShardDir,
        header: ShardFileHeader,
    ) -> Result<Self, ShardStoreError> {
        let key = ShardKey::of_header(&header).ok_or(ShardStoreError::ZeroGeneration {
            data_id: header.data_id,
            shard_index: header.shard_index,
        })?;
        check_geometry(&header)
            .map_err(|reason| ShardStoreError::InvalidHeader { shard: key, reason })?;
        let temp_path = dir.temp_path(&key);
        blocking(move || {
            // An early answer only: the publish refuses an existing copy atomically.
            if dir.shard_path(&key).exists() {
                return Err(ShardStoreError::AlreadyExists { shard: key });
            }
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp_path)
                .map_err(ShardStoreError::io("create", &temp_path))?;
            // From here on the writer owns the temp file and removes it if anything fails.
            let written = file.write_all(&header.encode());
            let mut writer = Self {
                dir,
                key,
                header,
                temp_path,
                file: Some(file),
                next_index: 0,
                table: Vec::new(),
                digester: ShardDigester::new(&key.data_id, key.shard_index),
            };
            if let Err(e) = written {
                let err = ShardStoreError::io("write", &writer.temp_path)(e);
                writer.discard_blocking();
                return Err(err);
            }
            debug!(shard = %key, "shard write started");
            Ok(writer)
        })
        .await
    }

    /// The copy being written.
    pub fn key(&self) -> ShardKey {
        self.key
    }

    /// The header being written.
    pub fn header(&self) -> &ShardFileHeader {
        &self.header
    }

    /// Chunks accepted so far.
    pub fn chunks_written(&self) -> u64 {
        self.next_index
    }

    /// Verifies and appends chunk `index`, which must be the next one, of exactly `chunk_size`
    /// bytes, matching its chunk hash `hash`. On error the writer is gone and its temp file
    /// removed.
    pub async fn write_chunk(
        mut self,
        index: u64,
        data: Bytes,
        hash: Bytes,
    ) -> Result<Self, ShardStoreError> {
        // Hashing a chunk is CPU work of the same order as writing it: both run off the runtime.
        blocking(move || match self.append_blocking(index, &data, &hash) {
            Ok(()) => Ok(self),
            Err(e) => {
                self.discard_blocking();
                Err(e)
            }
        })
        .await
    }

    /// Makes the copy durable and visible: checks that exactly `declared_chunks` chunks were
    /// received and that their hashes make `digest`, appends the hash table and footer, fsyncs
    /// the file, links it into place (never over an existing file) and fsyncs its directory.
    pub async fn commit(
        mut self,
        declared_chunks: u64,
        digest: Bytes,
    ) -> Result<WrittenShard, ShardStoreError> {
        blocking(move || match self.publish_blocking(declared_chunks, &digest) {
            Ok(written) => {
                debug!(shard = %self.key, chunks = written.chunks, file_len = written.file_len, "shard committed");
                Ok(written)
            }
            Err(e) => {
                self.discard_blocking();
                Err(e)
            }
        })
        .await
    }

    /// Drops the write and waits until its temp file is gone.
    pub async fn abort(mut self) -> Result<(), ShardStoreError> {
        blocking(move || {
            self.discard_blocking();
            Ok(())
        })
        .await
    }

    /// Verifies one chunk against its hash and appends its bytes (blocking).
    fn append_blocking(
        &mut self,
        index: u64,
        data: &[u8],
        hash: &[u8],
    ) -> Result<(), ShardStoreError> {
        let shard = self.key;
        if index != self.next_index {
            return Err(ShardStoreError::ChunkOutOfOrder {
                shard,
                expected: self.next_index,
                got: index,
            });
        }
        if index >= MAX_SHARD_CHUNKS {
            return Err(ShardStoreError::TooManyChunks {
                shard,
                max: MAX_SHARD_CHUNKS,
            });
        }
        let expected = u64::from(self.header.chunk_size);
        if data.len() as u64 != expected {
            return Err(ShardStoreError::ChunkSize {
                shard,
                index,
                expected,
                got: data.len() as u64,
            });
        }
        let Ok(hash) = ChunkHash::try_from(hash) else {
            return Err(ShardStoreError::HashLength {
                shard,
                index,
                got: hash.len(),
            });
        };
        if !verify_chunk(&shard.data_id, shard.shard_index, index, data, &hash) {
            warn!(shard = %shard, index, "chunk hash mismatch on write");
            return Err(ShardStoreError::HashMismatch { shard, index });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(self.closed());
        };
        file.write_all(data)
            .map_err(ShardStoreError::io("write", &self.temp_path))?;
        self.table.extend_from_slice(&hash);
        self.digester.push(&hash);
        self.next_index += 1;
        Ok(())
    }

    /// Checks count and digest, completes and fsyncs the temp file and publishes it
    /// (blocking).
    fn publish_blocking(
        &mut self,
        declared_chunks: u64,
        digest: &[u8],
    ) -> Result<WrittenShard, ShardStoreError> {
        let shard = self.key;
        let chunks = self.next_index;
        if declared_chunks != chunks {
            return Err(ShardStoreError::ChunkCount {
                shard,
                declared: declared_chunks,
                received: chunks,
            });
        }
        if digest.len() != DIGEST_LEN {
            return Err(ShardStoreError::DigestLength {
                shard,
                got: digest.len(),
            });
        }
        let own = self.digester.clone().finish();
        if !digests_equal(digest, &own) {
            warn!(shard = %shard, chunks, "commit digest does not match the chunks received");
            return Err(ShardStoreError::DigestMismatch { shard });
        }
        debug_assert_eq!(self.table.len() as u64, chunks * HASH_LEN);
        let footer = ShardFileFooter {
            chunks,
            digest: own,
        };
        let Some(file) = self.file.as_mut() else {
            return Err(self.closed());
        };
        let mut out = BufWriter::new(&mut *file);
        out.write_all(&self.table)
            .and_then(|()| out.write_all(&footer.encode()))
            .and_then(|()| out.flush())
            .map_err(ShardStoreError::io("write", &self.temp_path))?;
        drop(out);
        file.sync_all()
            .map_err(ShardStoreError::io("fsync", &self.temp_path))?;
        let file_len = self.dir.publish_blocking(&self.temp_path, &shard)?;
        // Published: the temp name is gone (or left for the next start to remove).
        self.file = None;
        Ok(WrittenShard {
            chunks,
            data_bytes: chunks * u64::from(self.header.chunk_size),
            file_len,
            digest: own,
        })
    }

    fn closed(&self) -> ShardStoreError {
        // Unreachable through the public API (every step consumes the writer); reported as an
        // I/O failure rather than a panic should that ever change.
        ShardStoreError::Io {
            op: "write to closed shard writer",
            path: self.temp_path.clone(),
            source: std::io::Error::other("writer already closed"),
        }
    }

    /// Closes and removes the temp file (blocking); a no-op once published or discarded.
    fn discard_blocking(&mut self) {
        if let Some(file) = self.file.take() {
            discard_temp(self.key, &self.temp_path, file);
        }
    }
}

/// Closes and removes an uncommitted temp file.
fn discard_temp(key: ShardKey, path: &Path, file: File) {
    drop(file);
    match fs::remove_file(path) {
        Ok(()) => debug!(shard = %key, "uncommitted shard write discarded"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(
            shard = %key,
            path = %path.display(),
            error = %e,
            "cannot remove temp shard file; it is removed at next start"
        ),
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        // Dropped without commit or abort (e.g. the request was cancelled): remove the temp
        // file off the runtime when there is one, since unlinking is a blocking syscall.
        let (key, path) = (self.key, std::mem::take(&mut self.temp_path));
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(move || discard_temp(key, &path, file));
            }
            Err(_) => discard_temp(key, &path, file),
        }
    }
}
