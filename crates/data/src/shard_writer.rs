//! Writing one shard: header, then chunks in order, each checked against its sender's blake3
//! hash before it touches the disk, then a commit.
//!
//! Invariant: until `commit` returns `Ok`, the shard's bytes exist only in a temp file under
//! `ROOT/tmp/`, and that file is removed when the writer fails, is aborted or is dropped. The
//! writer is consumed by every step, so a failed writer cannot be used again.

use crate::store::{ShardKey, ShardStore, blocking, check_geometry};
use crate::store_error::ShardStoreError;
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use tessera_core::shard_format::{HASH_LEN, ShardFileHeader, verify_chunk};
use tracing::{debug, warn};

/// What a committed write stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenShard {
    /// Chunks stored.
    pub chunks: u64,
    /// Chunk data bytes stored (`chunks * chunk_size`; the file also holds header and hashes).
    pub data_bytes: u64,
    /// The committed file's length.
    pub file_len: u64,
}

/// An open write of one shard; see the module doc for its life cycle.
#[derive(Debug)]
pub struct ShardWriter {
    store: ShardStore,
    key: ShardKey,
    header: ShardFileHeader,
    temp_path: PathBuf,
    /// `None` once the temp file was published or removed.
    file: Option<File>,
    next_index: u64,
}

impl ShardWriter {
    /// Validates the header, refuses a conflicting stored shard, and starts the temp file.
    pub(crate) async fn begin(
        store: ShardStore,
        header: ShardFileHeader,
    ) -> Result<Self, ShardStoreError> {
        let key = ShardKey::of_header(&header);
        check_geometry(&header)
            .map_err(|reason| ShardStoreError::InvalidHeader { shard: key, reason })?;
        let temp_path = store.temp_path(&key);
        blocking(move || {
            store.check_no_conflict_blocking(&header)?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp_path)
                .map_err(ShardStoreError::io("create", &temp_path))?;
            // From here on the writer owns the temp file and removes it if anything fails.
            let written = file.write_all(&header.encode());
            let mut writer = Self {
                store,
                key,
                header,
                temp_path,
                file: Some(file),
                next_index: 0,
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

    /// The shard being written.
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
    /// bytes, matching `hash`. On error the writer is gone and its temp file removed.
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

    /// Makes the shard durable and visible: checks that exactly `declared_chunks` chunks were
    /// received, fsyncs the file, renames it into place and fsyncs its directory.
    pub async fn commit(mut self, declared_chunks: u64) -> Result<WrittenShard, ShardStoreError> {
        blocking(move || {
            let file_len = match self.publish_blocking(declared_chunks) {
                Ok(len) => len,
                Err(e) => {
                    self.discard_blocking();
                    return Err(e);
                }
            };
            let chunks = self.next_index;
            debug!(shard = %self.key, chunks, file_len, "shard committed");
            Ok(WrittenShard {
                chunks,
                data_bytes: chunks * u64::from(self.header.chunk_size),
                file_len,
            })
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

    /// Verifies one chunk against its hash and appends its record (blocking).
    fn append_blocking(
        &mut self,
        index: u64,
        data: &[u8],
        hash: &[u8],
    ) -> Result<(), ShardStoreError> {
        if index != self.next_index {
            return Err(ShardStoreError::ChunkOutOfOrder {
                shard: self.key,
                expected: self.next_index,
                got: index,
            });
        }
        let expected = u64::from(self.header.chunk_size);
        if data.len() as u64 != expected {
            return Err(ShardStoreError::ChunkSize {
                shard: self.key,
                index,
                expected,
                got: data.len() as u64,
            });
        }
        if hash.len() as u64 != HASH_LEN {
            return Err(ShardStoreError::HashLength {
                shard: self.key,
                index,
                got: hash.len(),
            });
        }
        if !verify_chunk(data, hash) {
            warn!(shard = %self.key, index, "chunk hash mismatch on write");
            return Err(ShardStoreError::HashMismatch {
                shard: self.key,
                index,
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(self.closed());
        };
        file.write_all(data)
            .and_then(|()| file.write_all(hash))
            .map_err(ShardStoreError::io("write", &self.temp_path))?;
        self.next_index += 1;
        Ok(())
    }

    /// Checks the chunk count, fsyncs the temp file and moves it into place (blocking); returns the file's length.
    fn publish_blocking(&mut self, declared_chunks: u64) -> Result<u64, ShardStoreError> {
        if declared_chunks != self.next_index {
            return Err(ShardStoreError::ChunkCount {
                shard: self.key,
                declared: declared_chunks,
                received: self.next_index,
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(self.closed());
        };
        file.sync_all()
            .map_err(ShardStoreError::io("fsync", &self.temp_path))?;
        let file_len = self.store.publish_blocking(&self.temp_path, &self.header)?;
        // Published: the temp name no longer exists, so nothing is left to discard.
        self.file = None;
        Ok(file_len)
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
fn discard_temp(key: ShardKey, path: &std::path::Path, file: File) {
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
