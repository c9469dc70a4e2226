//! The data folder's layout and the only code that adds files to `shards/` or takes them out.
//!
//! Invariant: a file appears under a copy's name only through [`ShardDir::publish_blocking`],
//! which links a complete, fsync'd temp file into place without ever replacing an existing
//! file, and fsyncs the directory before it returns; files leave `shards/` only through
//! [`ShardDir::remove_blocking`] and [`ShardDir::quarantine_blocking`]. All three run under
//! one lock that also guards the usage counter, so the counter always equals what a scan of
//! `shards/` would count. The folder's lock ([`DirLock`]) lives as long as the last handle.
//!
//! The store, its writers and the scrubber share this; it calls none of them.

use crate::shard_key::ShardKey;
use crate::store_error::ShardStoreError;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tessera_runtime::dirlock::DirLock;
use tracing::{debug, warn};

/// Where committed shard files live, under 256 prefix directories.
pub(crate) const SHARDS_DIR: &str = "shards";
/// Where writes in progress live; emptied at start.
pub(crate) const TMP_DIR: &str = "tmp";
/// Where damaged shard files are moved.
pub(crate) const QUARANTINE_DIR: &str = "quarantine";

/// How many copies the store holds and how many bytes their files take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// Shard files.
    pub shards: u64,
    /// Bytes of shard files (headers, chunks, hash tables and footers).
    pub bytes: u64,
}

/// Identifies one file on disk (not just one name), so that a damaged file is quarantined
/// only if it is still the file found damaged, not one written since under the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    /// Only tells two files apart (with the inode); never read as an age. Not the change
    /// time: publishing (link, then unlink of the temp name) changes that of the file itself.
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
    /// No file holds the copy (deleted, or quarantined already).
    Absent,
    /// Another file holds the copy now (written since it was checked); it was kept.
    Replaced,
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

/// A handle on one locked data folder; cheap to clone.
#[derive(Clone)]
pub(crate) struct ShardDir {
    inner: Arc<DirInner>,
}

struct DirInner {
    root: PathBuf,
    shards_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
    /// Guards the usage counter and every link into or removal from `shards/`.
    usage: Mutex<StoreUsage>,
    next_temp: AtomicU64,
    /// Held while any handle lives: no other process uses the folder meanwhile.
    _lock: DirLock,
}

impl fmt::Debug for ShardDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardDir")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl ShardDir {
    /// The folder `lock` guards, holding `usage` (counted by the caller at open).
    pub(crate) fn new(lock: DirLock, usage: StoreUsage) -> Self {
        let root = lock.dir().to_owned();
        Self {
            inner: Arc::new(DirInner {
                shards_dir: root.join(SHARDS_DIR),
                tmp_dir: root.join(TMP_DIR),
                quarantine_dir: root.join(QUARANTINE_DIR),
                root,
                usage: Mutex::new(usage),
                next_temp: AtomicU64::new(0),
                _lock: lock,
            }),
        }
    }

    /// The data folder.
    pub(crate) fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The directory holding the prefix directories of shard files.
    pub(crate) fn shards_dir(&self) -> &Path {
        &self.inner.shards_dir
    }

    /// Where quarantined shard files are kept.
    pub(crate) fn quarantine_dir(&self) -> &Path {
        &self.inner.quarantine_dir
    }

    /// Where the copy's file lives once committed.
    pub(crate) fn shard_path(&self, key: &ShardKey) -> PathBuf {
        let name = key.file_name();
        self.inner.shards_dir.join(&name[..2]).join(name)
    }

    /// A fresh, unique temp path for a write of `key`.
    pub(crate) fn temp_path(&self, key: &ShardKey) -> PathBuf {
        let seq = self.inner.next_temp.fetch_add(1, Ordering::Relaxed);
        self.inner.tmp_dir.join(format!("{key}.{seq}.partial"))
    }

    /// Copies stored and bytes used.
    pub(crate) fn usage(&self) -> StoreUsage {
        *self.lock_usage()
    }

    fn lock_usage(&self) -> MutexGuard<'_, StoreUsage> {
        // The guarded value is plain counters, consistent between statements, so a panic
        // elsewhere while holding the lock cannot leave it half-updated.
        self.inner
            .usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a complete, fsync'd temp file in place as `key` (blocking): links it under the
    /// copy's name, refusing with `AlreadyExists` if any file holds that name (a stored file
    /// is never replaced), fsyncs the directory, then removes the temp name. Returns the
    /// file's length.
    pub(crate) fn publish_blocking(
        &self,
        temp: &Path,
        key: &ShardKey,
    ) -> Result<u64, ShardStoreError> {
        let path = self.shard_path(key);
        let len = fs::metadata(temp)
            .map_err(ShardStoreError::io("stat", temp))?
            .len();
        {
            let mut usage = self.lock_usage();
            // A hard link never replaces its target: the check and the publish are one step.
            match fs::hard_link(temp, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(ShardStoreError::AlreadyExists { shard: *key });
                }
                Err(e) => return Err(ShardStoreError::io("link", &path)(e)),
            }
            usage.shards += 1;
            usage.bytes += len;
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        if let Err(e) = fs::remove_file(temp) {
            // Harmless: the temp folder is emptied at the next start.
            warn!(path = %temp.display(), error = %e, "cannot remove published temp file");
        }
        Ok(len)
    }

    /// Removes the copy's file (blocking); `Ok(false)` if there was none. Not fsync'd: a
    /// delete lost in a crash leaves garbage that collection deletes again.
    pub(crate) fn remove_blocking(&self, key: &ShardKey) -> Result<bool, ShardStoreError> {
        let path = self.shard_path(key);
        let mut usage = self.lock_usage();
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
    }

    /// Moves the copy's file to `quarantine/<file name>.<unix ms>` (blocking) and fsyncs both
    /// directories; with `expected`, only if it is still that very file.
    pub(crate) fn quarantine_blocking(
        &self,
        key: &ShardKey,
        reason: &str,
        expected: Option<FileStamp>,
        now_ms: i64,
    ) -> Result<Quarantine, ShardStoreError> {
        let path = self.shard_path(key);
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
                debug!(shard = %key, reason, "shard file replaced since checked; not quarantined");
                return Ok(Quarantine::Replaced);
            }
            let dest = free_quarantine_name(qdir, &key.file_name(), now_ms);
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
}

/// A quarantine path for `file_name` at `now_ms` that is not taken yet (two quarantines of
/// one name in one millisecond get distinct names).
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
