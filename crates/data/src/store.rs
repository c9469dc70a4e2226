//! The shard store: one file per stored copy under
//! `ROOT/shards/<2 hex>/<data id hex>.<index>.<generation as 16 hex>` (shard file format 2, see
//! `tessera_core::shard_file`).
//!
//! Invariant: a file exists under a copy's name only once every chunk in it was verified
//! against its chunk hash, the writer's digest matched the hashes received, and the file was
//! fsync'd, linked into place from `ROOT/tmp/` (never over an existing file) and the directory
//! fsync'd. Several generations of one shard may sit side by side; each is its own file, and a
//! delete removes exactly the one named. Partial writes live only in `ROOT/tmp/`, which is
//! emptied at start. A chunk that does not match its table entry is reported corrupt, never
//! returned. A copy found damaged is moved whole to `ROOT/quarantine/<file name>.<unix ms>`:
//! from then on it is neither listed nor served, so it reads as missing and repair rebuilds it.
//!
//! One process per folder: the store holds `ROOT/LOCK` ([`DirLock`]) from open until its last
//! handle (a clone of the store, held by the service and scrubber, or a writer) is dropped. A folder of format 1 (an
//! earlier development build) is refused at open.
//!
//! All file I/O runs on tokio's blocking pool; each reader or writer holds at most one chunk
//! (plus the 32-byte-per-chunk hash table) in memory, never the shard.

use crate::shard_dir::{
    FileStamp, Quarantine, SHARDS_DIR, ShardDir, StoreUsage, TMP_DIR, blocking, sync_dir,
};
use crate::shard_key::ShardKey;
use crate::shard_reader::{ShardReader, ShardStat};
use crate::shard_walk::{prefix_dirs, sorted_shard_files};
use crate::shard_writer::ShardWriter;
use crate::store_error::ShardStoreError;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tessera_core::shard_file::{ShardDigest, ShardFileHeader};
use tessera_runtime::clock::now_ms;
use tessera_runtime::dirlock::DirLock;
use tracing::{info, warn};

/// First line of `ROOT/FORMAT`; a store with any other line is refused.
pub const FORMAT_LINE: &str = "tessera-data 2";

/// The format line of folders written by earlier development builds (shard format 1, no
/// generations): refused with an error that says to start empty.
pub const FORMAT1_LINE: &str = "tessera-data 1";

const FORMAT_FILE: &str = "FORMAT";

/// A stored copy found by a listing: its name parsed, its header and footer read (not its
/// hash table or chunks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedShard {
    /// The copy.
    pub key: ShardKey,
    /// Chunks in the file.
    pub chunks: u64,
    /// The file's length in bytes.
    pub file_len: u64,
    /// The write lease its writer held (from the header).
    pub lease_id: u64,
    /// The digest the footer records.
    pub digest: ShardDigest,
}

/// What a listing finds under one shard file name.
#[derive(Debug)]
pub enum ListedFile {
    /// A copy whose header, footer and length check out.
    Shard(ListedShard),
    /// A file under a copy's name that cannot be served as it is (damaged header or footer,
    /// another copy's header, wrong length, unreadable); the scrubber should look at it.
    Unreadable {
        /// The copy the file name names.
        key: ShardKey,
        /// Why it cannot be served.
        error: ShardStoreError,
    },
}

/// Every copy a listing found, and the names whose files cannot be served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardListing {
    /// Servable copies, in file-name order.
    pub shards: Vec<ListedShard>,
    /// Copies whose files are damaged.
    pub unreadable: Vec<ShardKey>,
}

/// A handle on one data folder; cheap to clone.
#[derive(Clone)]
pub struct ShardStore {
    dir: ShardDir,
}

impl fmt::Debug for ShardStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardStore")
            .field("root", &self.dir.root())
            .finish_non_exhaustive()
    }
}

impl ShardStore {
    /// Opens (creating on first start) the store under `root`: locks the folder, checks or
    /// writes the format file, refuses a folder of format 1, empties `tmp/`, and counts the
    /// stored copies.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, ShardStoreError> {
        let root = root.into();
        blocking(move || Self::open_blocking(&root)).await
    }

    fn open_blocking(root: &Path) -> Result<Self, ShardStoreError> {
        // Before anything else in the folder is touched: no other process uses it meanwhile.
        let lock = DirLock::acquire(root, "data")?;
        let shards_dir = root.join(SHARDS_DIR);
        let tmp_dir = root.join(TMP_DIR);
        check_or_write_format(root, &shards_dir)?;

        fs::create_dir_all(&tmp_dir).map_err(ShardStoreError::io("create dir", &tmp_dir))?;
        let temp_removed = empty_dir(&tmp_dir)?;

        // All 256 prefix directories exist from the start, so a commit only ever has to fsync
        // the one directory it links into.
        for (_, dir) in prefix_dirs(&shards_dir) {
            fs::create_dir_all(&dir).map_err(ShardStoreError::io("create dir", &dir))?;
        }
        sync_dir(&shards_dir)?;
        sync_dir(root)?;

        let (usage, strays) = scan_usage(&shards_dir)?;
        if strays > 0 {
            warn!(
                strays,
                "files under shards/ that name no shard copy; ignored"
            );
        }
        info!(
            root = %root.display(),
            shards = usage.shards,
            bytes = usage.bytes,
            temp_removed,
            "shard store opened"
        );
        Ok(Self {
            dir: ShardDir::new(lock, usage),
        })
    }

    /// The data folder.
    pub fn root(&self) -> &Path {
        self.dir.root()
    }

    /// Where quarantined shard files are kept (created by the first quarantine).
    pub fn quarantine_dir(&self) -> &Path {
        self.dir.quarantine_dir()
    }

    /// The directory holding the prefix directories of shard files.
    pub(crate) fn shards_dir(&self) -> &Path {
        self.dir.shards_dir()
    }

    /// Where the copy's file lives once committed.
    pub fn shard_path(&self, key: &ShardKey) -> PathBuf {
        self.dir.shard_path(key)
    }

    /// Copies stored and bytes used, kept current by every commit, delete and quarantine.
    pub fn usage(&self) -> StoreUsage {
        self.dir.usage()
    }

    /// Starts writing a copy; the returned writer takes its chunks and commits it.
    pub async fn begin_write(
        &self,
        header: ShardFileHeader,
    ) -> Result<ShardWriter, ShardStoreError> {
        ShardWriter::begin(self.dir.clone(), header).await
    }

    /// Opens a stored copy for reading its hash table and chunks.
    pub async fn open_read(&self, key: ShardKey) -> Result<ShardReader, ShardStoreError> {
        ShardReader::open(self.shard_path(&key), key).await
    }

    /// The header, size and digest of a stored copy, without reading its hash table or
    /// chunks.
    pub async fn stat(&self, key: ShardKey) -> Result<ShardStat, ShardStoreError> {
        Ok(self.open_read(key).await?.stat())
    }

    /// Removes exactly this copy; `Ok(false)` if it was not stored. Other generations of the
    /// shard are untouched.
    pub async fn delete(&self, key: ShardKey) -> Result<bool, ShardStoreError> {
        let dir = self.dir.clone();
        blocking(move || dir.remove_blocking(&key)).await
    }

    /// Moves a damaged copy's file to `ROOT/quarantine/<file name>.<unix ms>`; from then on it
    /// is neither listed nor served (reads answer not found), so repair rebuilds the shard.
    /// Returns where the file went, or `None` if the copy was not stored.
    pub async fn quarantine(
        &self,
        key: ShardKey,
        reason: &str,
    ) -> Result<Option<PathBuf>, ShardStoreError> {
        let reason = reason.to_owned();
        let store = self.clone();
        let outcome = blocking(move || store.quarantine_blocking(key, &reason, None)).await?;
        Ok(match outcome {
            Quarantine::Moved(path) => Some(path),
            Quarantine::Absent | Quarantine::Replaced => None,
        })
    }

    /// Quarantines the copy's file (blocking); with `expected`, only if it is still that file.
    pub(crate) fn quarantine_blocking(
        &self,
        key: ShardKey,
        reason: &str,
        expected: Option<FileStamp>,
    ) -> Result<Quarantine, ShardStoreError> {
        self.dir
            .quarantine_blocking(&key, reason, expected, now_ms())
    }

    /// Lists every stored copy (blocking; run it on the blocking pool): one [`ListedFile`] per
    /// shard file, in name order, each from its header, footer and length alone. `visit` may
    /// stop the walk early. Files deleted during the walk are skipped; only a directory that
    /// cannot be read fails it.
    pub fn list_blocking(
        &self,
        mut visit: impl FnMut(ListedFile) -> ControlFlow<()>,
    ) -> Result<(), ShardStoreError> {
        for (prefix, dir) in prefix_dirs(self.dir.shards_dir()) {
            for (name, key) in sorted_shard_files(&dir, &prefix, None)? {
                let listed = match ShardReader::open_blocking(dir.join(&name), key) {
                    Ok(reader) => {
                        let stat = reader.stat();
                        ListedFile::Shard(ListedShard {
                            key,
                            chunks: stat.chunks,
                            file_len: stat.file_len,
                            lease_id: stat.header.lease_id,
                            digest: stat.digest,
                        })
                    }
                    Err(ShardStoreError::NotFound { .. }) => continue,
                    Err(error) => ListedFile::Unreadable { key, error },
                };
                if visit(listed).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Every stored copy, collected; see [`list_blocking`](Self::list_blocking).
    pub async fn list(&self) -> Result<ShardListing, ShardStoreError> {
        let store = self.clone();
        blocking(move || {
            let mut listing = ShardListing::default();
            store.list_blocking(|file| {
                match file {
                    ListedFile::Shard(shard) => listing.shards.push(shard),
                    ListedFile::Unreadable { key, .. } => listing.unreadable.push(key),
                }
                ControlFlow::Continue(())
            })?;
            Ok(listing)
        })
        .await
    }
}

/// Checks `ROOT/FORMAT`, or writes it on first start.
fn check_or_write_format(root: &Path, shards_dir: &Path) -> Result<(), ShardStoreError> {
    let path = root.join(FORMAT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found = text.lines().next().unwrap_or("").trim();
            if found == FORMAT_LINE {
                Ok(())
            } else if found == FORMAT1_LINE {
                Err(ShardStoreError::EarlierFormat {
                    path,
                    found: format!("format line {found:?}"),
                })
            } else {
                Err(ShardStoreError::UnknownFormat {
                    path,
                    found: found.to_owned(),
                })
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if shards_dir.exists() {
                return Err(ShardStoreError::MissingFormat {
                    path: root.to_path_buf(),
                });
            }
            let temp = root.join(format!("{FORMAT_FILE}.partial"));
            fs::write(&temp, format!("{FORMAT_LINE}\n"))
                .and_then(|()| File::open(&temp)?.sync_all())
                .map_err(ShardStoreError::io("write", &temp))?;
            fs::rename(&temp, &path).map_err(ShardStoreError::io("rename", &path))?;
            sync_dir(root)?;
            info!(root = %root.display(), format = FORMAT_LINE, "data folder initialised");
            Ok(())
        }
        Err(e) => Err(ShardStoreError::io("read", &path)(e)),
    }
}

/// Removes everything inside `dir`; returns how many entries it removed.
fn empty_dir(dir: &Path) -> Result<u64, ShardStoreError> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(ShardStoreError::io("list", dir))? {
        let entry = entry.map_err(ShardStoreError::io("list", dir))?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(ShardStoreError::io("stat", &path))?
            .is_dir();
        if is_dir {
            fs::remove_dir_all(&path).map_err(ShardStoreError::io("remove", &path))?;
        } else {
            fs::remove_file(&path).map_err(ShardStoreError::io("remove", &path))?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// Counts shard files and their bytes, and the files that name no copy (strays). Refuses a
/// folder holding a shard file of format 1: judged by its name (`<hex>.<index>`), which costs
/// nothing per file; a format-1 file renamed to a format-2 name fails its header check when
/// read or scrubbed.
fn scan_usage(shards_dir: &Path) -> Result<(StoreUsage, u64), ShardStoreError> {
    let mut usage = StoreUsage::default();
    let mut strays = 0;
    for (_, dir) in prefix_dirs(shards_dir) {
        for entry in fs::read_dir(&dir).map_err(ShardStoreError::io("list", &dir))? {
            let entry = entry.map_err(ShardStoreError::io("list", &dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if ShardKey::is_format1_file_name(&name) {
                return Err(ShardStoreError::EarlierFormat {
                    path: entry.path(),
                    found: "shard file of format 1".to_owned(),
                });
            }
            if ShardKey::from_file_name(&name).is_none() {
                strays += 1;
                continue;
            }
            let meta = entry
                .metadata()
                .map_err(ShardStoreError::io("stat", entry.path()))?;
            if meta.is_file() {
                usage.shards += 1;
                usage.bytes += meta.len();
            } else {
                strays += 1;
            }
        }
    }
    Ok((usage, strays))
}

#[cfg(test)]
#[path = "store_test.rs"]
mod tests;
