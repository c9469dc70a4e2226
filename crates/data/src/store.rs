//! The shard store: one file per shard under `ROOT/shards/<2 hex>/<data id hex>.<index>`.
//!
//! Invariant: a file exists under a shard's name only once every chunk in it was verified
//! against its sender's blake3 hash, the file was fsync'd, renamed into place from `ROOT/tmp/`
//! and the directory fsync'd. Partial writes live only in `ROOT/tmp/`, which is emptied at
//! start. A chunk whose stored hash does not match is reported corrupt, never returned.
//! A shard found damaged is moved whole to `ROOT/quarantine/<file name>.<unix ms>`: from then
//! on it is neither listed nor served, so it reads as missing and repair rebuilds it here.
//!
//! All file I/O runs on tokio's blocking pool; each reader or writer holds at most one chunk
//! in memory, so memory per stream is bounded by the chunk size, never the shard size.

use crate::shard_reader::ShardReader;
use crate::shard_walk::{prefix_dirs, sorted_shard_files};
use crate::shard_writer::ShardWriter;
use crate::store_error::ShardStoreError;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tessera_core::names::DataId;
use tessera_core::shard_format::{HEADER_LEN, ShardFileHeader};
use tracing::{debug, info, warn};

/// First line of `ROOT/FORMAT`; a store with any other line is refused.
pub const FORMAT_LINE: &str = "tessera-data 1";

/// Largest chunk the store accepts. Writers use chunks of at most 1 MiB; we accept up to 4 MiB
/// so a chunk message stays well inside the 16 MiB gRPC message limit of client and server.
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;

const FORMAT_FILE: &str = "FORMAT";
const SHARDS_DIR: &str = "shards";
const TMP_DIR: &str = "tmp";
const QUARANTINE_DIR: &str = "quarantine";

/// Names one shard: the blob it belongs to and its index in the stripe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShardKey {
    /// The blob.
    pub data_id: DataId,
    /// The shard's index (data shards first, then parity).
    pub shard_index: u32,
}

impl ShardKey {
    /// The key of shard `shard_index` of blob `data_id`.
    pub fn new(data_id: DataId, shard_index: u32) -> Self {
        Self {
            data_id,
            shard_index,
        }
    }

    /// The key a shard header describes.
    pub fn of_header(header: &ShardFileHeader) -> Self {
        Self::new(header.data_id, header.shard_index)
    }
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.data_id, self.shard_index)
    }
}

/// How many shards the store holds and how many bytes their files take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// Shard files.
    pub shards: u64,
    /// Bytes of shard files (headers, chunks and hashes).
    pub bytes: u64,
}

/// What a stored shard is, read from its header and file length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStat {
    /// The stored header.
    pub header: ShardFileHeader,
    /// Number of chunk records in the file.
    pub chunks: u64,
    /// The file's length in bytes.
    pub file_len: u64,
    /// The file's modification time (when the shard was made durable), ms since the epoch.
    pub modified_ms: i64,
}

/// A shard file found by a listing: its name parsed, its header read (not its chunks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedShard {
    /// The shard.
    pub key: ShardKey,
    /// Chunk records in the file.
    pub chunks: u64,
    /// The file's length in bytes.
    pub file_len: u64,
    /// The file's modification time, ms since the epoch.
    pub modified_ms: i64,
}

/// What a listing finds under one shard file name.
#[derive(Debug)]
pub enum ListedFile {
    /// A shard whose header and length check out.
    Shard(ListedShard),
    /// A file under a shard's name that cannot be served as it is (damaged header, wrong
    /// shard, partial record, unreadable); the scrubber should look at it.
    Unreadable {
        /// The shard the file name names.
        key: ShardKey,
        /// Why it cannot be served.
        error: ShardStoreError,
    },
}

/// Every shard a listing found, and the names whose files cannot be served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardListing {
    /// Servable shards, in file-name order.
    pub shards: Vec<ListedShard>,
    /// Shards whose files are damaged.
    pub unreadable: Vec<ShardKey>,
}

/// Identifies one file on disk (not just one name), so that a damaged file is quarantined
/// only if it is still the file found damaged, not a replacement written since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    /// The stamp of the file `meta` describes.
    pub(crate) fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// What a quarantine did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Quarantine {
    /// The file was moved to this path.
    Moved(PathBuf),
    /// No file holds the shard (deleted, or quarantined already).
    Absent,
    /// Another file holds the shard now (rewritten since it was checked); it was kept.
    Replaced,
}

/// A handle on one data directory; cheap to clone.
#[derive(Clone)]
pub struct ShardStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    root: PathBuf,
    shards_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
    /// Guards the running usage counter and every rename into or removal from `shards/`, so
    /// the counter always equals what a scan would find.
    usage: Mutex<StoreUsage>,
    next_temp: AtomicU64,
}

impl fmt::Debug for ShardStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// Runs blocking file-system work on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, ShardStoreError>
where
    F: FnOnce() -> Result<T, ShardStoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| ShardStoreError::TaskFailed { source })?
}

/// Fsyncs a directory so that the entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ShardStoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ShardStoreError::io("fsync dir", dir))
}

impl ShardStore {
    /// Opens (creating on first start) the store under `root`: checks or writes the format
    /// file, empties `tmp/`, and counts the stored shards.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, ShardStoreError> {
        let root = root.into();
        blocking(move || Self::open_blocking(root)).await
    }

    fn open_blocking(root: PathBuf) -> Result<Self, ShardStoreError> {
        fs::create_dir_all(&root).map_err(ShardStoreError::io("create dir", &root))?;
        let shards_dir = root.join(SHARDS_DIR);
        let tmp_dir = root.join(TMP_DIR);
        check_or_write_format(&root, &shards_dir)?;

        fs::create_dir_all(&tmp_dir).map_err(ShardStoreError::io("create dir", &tmp_dir))?;
        let temp_removed = empty_dir(&tmp_dir)?;

        // All 256 prefix directories exist from the start, so a commit only ever has to fsync
        // the one directory it renames into.
        for prefix in 0..=u8::MAX {
            let dir = shards_dir.join(hex::encode([prefix]));
            fs::create_dir_all(&dir).map_err(ShardStoreError::io("create dir", &dir))?;
        }
        sync_dir(&shards_dir)?;
        sync_dir(&root)?;

        let usage = scan_usage(&shards_dir)?;
        info!(
            root = %root.display(),
            shards = usage.shards,
            bytes = usage.bytes,
            temp_removed,
            "shard store opened"
        );
        Ok(Self {
            inner: Arc::new(StoreInner {
                quarantine_dir: root.join(QUARANTINE_DIR),
                root,
                shards_dir,
                tmp_dir,
                usage: Mutex::new(usage),
                next_temp: AtomicU64::new(0),
            }),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where quarantined shard files are kept (created by the first quarantine).
    pub fn quarantine_dir(&self) -> &Path {
        &self.inner.quarantine_dir
    }

    /// The directory holding the prefix directories of shard files.
    pub(crate) fn shards_dir(&self) -> &Path {
        &self.inner.shards_dir
    }

    /// Where the shard's file lives once committed.
    pub fn shard_path(&self, key: &ShardKey) -> PathBuf {
        let hex = key.data_id.to_string();
        let prefix = hex.get(..2).unwrap_or("00");
        self.inner
            .shards_dir
            .join(prefix)
            .join(format!("{hex}.{}", key.shard_index))
    }

    /// A fresh, unique temp path for a write of `key`.
    pub(crate) fn temp_path(&self, key: &ShardKey) -> PathBuf {
        let seq = self.inner.next_temp.fetch_add(1, Ordering::Relaxed);
        self.inner.tmp_dir.join(format!("{key}.{seq}.partial"))
    }

    /// Shards stored and bytes used, kept current by every commit and delete.
    pub fn usage(&self) -> StoreUsage {
        *self.lock_usage()
    }

    /// Starts writing a shard; the returned writer takes its chunks and commits it.
    pub async fn begin_write(
        &self,
        header: ShardFileHeader,
    ) -> Result<ShardWriter, ShardStoreError> {
        ShardWriter::begin(self.clone(), header).await
    }

    /// Opens a stored shard for reading chunks.
    pub async fn open_read(&self, key: ShardKey) -> Result<ShardReader, ShardStoreError> {
        ShardReader::open(self.shard_path(&key), key).await
    }

    /// The header and size of a stored shard, without reading its chunks.
    pub async fn stat(&self, key: ShardKey) -> Result<ShardStat, ShardStoreError> {
        let reader = self.open_read(key).await?;
        Ok(reader.stat())
    }

    /// Removes a shard; `Ok(false)` if it was not stored. A delete is not fsync'd: should it be
    /// lost in a crash, the shard is garbage that collection deletes again.
    pub async fn delete(&self, key: ShardKey) -> Result<bool, ShardStoreError> {
        let store = self.clone();
        blocking(move || {
            let path = store.shard_path(&key);
            let mut usage = store.lock_usage();
            let len = match fs::metadata(&path) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(ShardStoreError::io("stat", &path)(e)),
            };
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(ShardStoreError::io("remove", &path)(e)),
            }
            usage.shards = usage.shards.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(len);
            Ok(true)
        })
        .await
    }

    /// Moves a damaged shard's file to `ROOT/quarantine/<file name>.<unix ms>` and fsyncs both
    /// directories; from then on the shard is neither listed nor served (reads answer not
    /// found), so repair rebuilds it, and a later write of the shard stores it afresh. Returns
    /// where the file went, or `None` if the shard was not stored.
    pub async fn quarantine(
        &self,
        key: ShardKey,
        reason: &str,
    ) -> Result<Option<PathBuf>, ShardStoreError> {
        let store = self.clone();
        let reason = reason.to_owned();
        let outcome = blocking(move || store.quarantine_blocking(key, &reason, None)).await?;
        Ok(match outcome {
            Quarantine::Moved(path) => Some(path),
            Quarantine::Absent | Quarantine::Replaced => None,
        })
    }

    /// Quarantines the file holding `key` (blocking); with `expected`, only if it is still
    /// that file. The check and the rename happen under the lock every publish renames under,
    /// so a shard rewritten meanwhile is never moved.
    pub(crate) fn quarantine_blocking(
        &self,
        key: ShardKey,
        reason: &str,
        expected: Option<FileStamp>,
    ) -> Result<Quarantine, ShardStoreError> {
        let path = self.shard_path(&key);
        let qdir = &self.inner.quarantine_dir;
        if !qdir.is_dir() {
            fs::create_dir_all(qdir).map_err(ShardStoreError::io("create dir", qdir))?;
            sync_dir(&self.inner.root)?;
        }
        let dest = {
            let mut usage = self.lock_usage();
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Quarantine::Absent),
                Err(e) => return Err(ShardStoreError::io("stat", &path)(e)),
            };
            if expected.is_some_and(|stamp| stamp != FileStamp::of(&meta)) {
                debug!(shard = %key, reason, "shard rewritten since checked; not quarantined");
                return Ok(Quarantine::Replaced);
            }
            let dest = free_quarantine_name(qdir, &key.file_name(), now_ms());
            fs::rename(&path, &dest).map_err(ShardStoreError::io("rename", &path))?;
            usage.shards = usage.shards.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(meta.len());
            dest
        };
        sync_dir(qdir)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        warn!(shard = %key, reason, to = %dest.display(), "shard quarantined");
        Ok(Quarantine::Moved(dest))
    }

    /// Lists every stored shard (blocking; run it on the blocking pool): one [`ListedFile`]
    /// per shard file, in name order, each from its header and length alone. `visit` may stop
    /// the walk early. Files deleted during the walk are skipped; only a directory that cannot
    /// be read fails it.
    pub fn list_blocking(
        &self,
        mut visit: impl FnMut(ListedFile) -> ControlFlow<()>,
    ) -> Result<(), ShardStoreError> {
        for (prefix, dir) in prefix_dirs(&self.inner.shards_dir) {
            for (name, key) in sorted_shard_files(&dir, &prefix, None)? {
                let listed = match ShardReader::open_blocking(dir.join(&name), key) {
                    Ok(reader) => {
                        let stat = reader.stat();
                        ListedFile::Shard(ListedShard {
                            key,
                            chunks: stat.chunks,
                            file_len: stat.file_len,
                            modified_ms: stat.modified_ms,
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

    /// Every stored shard, collected; see [`list_blocking`](Self::list_blocking).
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

    fn lock_usage(&self) -> std::sync::MutexGuard<'_, StoreUsage> {
        // The guarded value is plain counters, always consistent between statements, so a
        // panic elsewhere while holding the lock cannot leave it half-updated.
        self.inner
            .usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves a fully written, fsync'd temp file into place (blocking). A stored shard with the
    /// same header, or a damaged one, is replaced; one with a different header is kept and the
    /// write refused.
    pub(crate) fn publish_blocking(
        &self,
        temp: &Path,
        header: &ShardFileHeader,
    ) -> Result<u64, ShardStoreError> {
        let key = ShardKey::of_header(header);
        let path = self.shard_path(&key);
        let new_len = fs::metadata(temp)
            .map_err(ShardStoreError::io("stat", temp))?
            .len();
        {
            let mut usage = self.lock_usage();
            let old_len = match existing_header(&path, header)? {
                Existing::Absent => None,
                Existing::Same(len) | Existing::Damaged(len) => Some(len),
                Existing::Different(stored) => {
                    warn!(shard = %key, stored = ?stored, "shard write conflicts with stored shard");
                    return Err(ShardStoreError::Conflict { shard: key });
                }
            };
            fs::rename(temp, &path).map_err(ShardStoreError::io("rename", &path))?;
            match old_len {
                Some(old) => usage.bytes = usage.bytes.saturating_sub(old) + new_len,
                None => {
                    usage.shards += 1;
                    usage.bytes += new_len;
                }
            }
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(new_len)
    }

    /// Refuses early a write whose shard is already stored with a different header (blocking).
    pub(crate) fn check_no_conflict_blocking(
        &self,
        header: &ShardFileHeader,
    ) -> Result<(), ShardStoreError> {
        let key = ShardKey::of_header(header);
        match existing_header(&self.shard_path(&key), header)? {
            Existing::Different(_) => Err(ShardStoreError::Conflict { shard: key }),
            Existing::Absent | Existing::Same(_) | Existing::Damaged(_) => Ok(()),
        }
    }
}

/// What is stored under a shard's name before a write replaces it.
enum Existing {
    Absent,
    /// The same header; the file's length.
    Same(u64),
    /// A header that cannot be read or names another shard; the file's length. Replacing it
    /// is how repair heals a damaged shard.
    Damaged(u64),
    /// A valid header of this shard with a different geometry.
    Different(ShardFileHeader),
}

/// Classifies what is stored at `path` against the header about to be written there.
fn existing_header(path: &Path, header: &ShardFileHeader) -> Result<Existing, ShardStoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Absent),
        Err(e) => return Err(ShardStoreError::io("open", path)(e)),
    };
    let len = file
        .metadata()
        .map_err(ShardStoreError::io("stat", path))?
        .len();
    let bytes = read_header_bytes(&mut file).map_err(ShardStoreError::io("read", path))?;
    let Ok(stored) = ShardFileHeader::decode(&bytes) else {
        return Ok(Existing::Damaged(len));
    };
    Ok(if stored == *header {
        Existing::Same(len)
    } else if ShardKey::of_header(&stored) != ShardKey::of_header(header)
        || check_geometry(&stored).is_err()
    {
        Existing::Damaged(len)
    } else {
        Existing::Different(stored)
    })
}

/// A quarantine path for `file_name` at `now_ms` that is not taken yet (two quarantines of
/// one shard in one millisecond get distinct names).
fn free_quarantine_name(qdir: &Path, file_name: &str, now_ms: i64) -> PathBuf {
    let mut stamp = now_ms;
    loop {
        let dest = qdir.join(format!("{file_name}.{stamp}"));
        if !dest.exists() {
            return dest;
        }
        stamp += 1;
    }
}

pub(crate) use tessera_runtime::clock::{now_ms, unix_ms};

/// Reads the header bytes at the start of `file`; fewer than `HEADER_LEN` if the file is short.
pub(crate) fn read_header_bytes(file: &mut File) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(HEADER_LEN as usize);
    file.by_ref().take(HEADER_LEN).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Checks `ROOT/FORMAT`, or writes it on first start.
fn check_or_write_format(root: &Path, shards_dir: &Path) -> Result<(), ShardStoreError> {
    let path = root.join(FORMAT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found = text.lines().next().unwrap_or("").trim();
            if found == FORMAT_LINE {
                Ok(())
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
            info!(root = %root.display(), format = FORMAT_LINE, "data dir initialised");
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

/// Counts shard files and their bytes.
fn scan_usage(shards_dir: &Path) -> Result<StoreUsage, ShardStoreError> {
    let mut usage = StoreUsage::default();
    for prefix in fs::read_dir(shards_dir).map_err(ShardStoreError::io("list", shards_dir))? {
        let prefix = prefix
            .map_err(ShardStoreError::io("list", shards_dir))?
            .path();
        if !prefix.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&prefix).map_err(ShardStoreError::io("list", &prefix))? {
            let entry = entry.map_err(ShardStoreError::io("list", &prefix))?;
            let meta = entry
                .metadata()
                .map_err(ShardStoreError::io("stat", entry.path()))?;
            if meta.is_file() {
                usage.shards += 1;
                usage.bytes += meta.len();
            }
        }
    }
    Ok(usage)
}

/// Checks a header's geometry (the rules `ShardFileHeader::decode` applies, plus the store's
/// chunk-size limit); `Err(reason)` names the first rule it breaks. A header that passes is one
/// the store can read back.
pub(crate) fn check_geometry(header: &ShardFileHeader) -> Result<(), &'static str> {
    let layout = header
        .layout()
        .map_err(|_| "data_shards and parity_shards do not make a valid layout")?;
    if header.shard_index >= layout.total_shards() {
        return Err("shard_index must be below data_shards + parity_shards");
    }
    if header.chunk_size == 0 {
        return Err("chunk_size must be at least 1");
    }
    if header.chunk_size > MAX_CHUNK_SIZE {
        return Err("chunk_size exceeds the store's maximum");
    }
    Ok(())
}

#[cfg(test)]
#[path = "store_test.rs"]
mod tests;
