//! The meta node's RocksDB store: one database per node with four column families — `logs`
//! (Raft entries by index), `raft` (vote, committed and purged log ids), `sm` (state-machine
//! records, see `keys`) and `sm_meta` (last applied log id, last membership, format version, an
//! interrupted snapshot install) — plus the newest snapshot as a file beside it
//! (`snapshot/current`, see `snapshot_file`). Every value is a protobuf message.
//!
//! Invariants: one store per folder (an exclusive `DirLock` on the meta folder, held until the
//! last handle is dropped and the database closed); the store opens only a database of its own
//! format version; and when `open` returns, no snapshot install is half done (one interrupted by
//! a crash is completed first, from its kept file).

mod log;
mod snapshot;
mod snapshot_data;
pub mod snapshot_file;
mod state_machine;
mod view;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use prost::Message;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};
use tessera_proto::raft::v1 as pb;
use tessera_runtime::dirlock::DirLock;

use crate::error::StoreError;
use crate::types::LogId;

pub use log::LogStore;
pub use snapshot::StateFingerprint;
pub use snapshot_data::SnapshotFile;
pub use snapshot_file::SnapshotFileError;
pub use state_machine::StateMachineStore;
pub(crate) use view::View;

/// Raft log entries, keyed by index (u64 big-endian).
pub const CF_LOGS: &str = "logs";
/// Vote, committed and last purged log ids.
pub const CF_RAFT: &str = "raft";
/// State-machine records.
pub const CF_SM: &str = "sm";
/// State-machine bookkeeping: last applied, last membership, format version, install marker.
pub const CF_SM_META: &str = "sm_meta";

/// The layout version this build reads and writes. Version 3 (issue 7: command sessions, meta
/// clock, write leases, shard generations, streamed snapshots) is not readable from earlier
/// versions' data and they are refused: before 1.0 a store is started empty instead.
pub const FORMAT_VERSION: u32 = 3;

/// The most memory RocksDB's memtables take, all column families together.
const MEMTABLE_BYTES: usize = 128 * 1024 * 1024;
/// The most write-ahead log kept on disk before the column families it holds are flushed.
const MAX_WAL_BYTES: u64 = 256 * 1024 * 1024;

/// The key in `sm_meta` of the install marker (`raft.v1.SnapshotInstall`): present while a
/// received snapshot replaces the state machine.
pub const KEY_INSTALLING: &[u8] = b"installing";

pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";
pub(crate) const KEY_LAST_APPLIED: &[u8] = b"last_applied";
pub(crate) const KEY_LAST_MEMBERSHIP: &[u8] = b"last_membership";
pub(crate) const KEY_FORMAT: &[u8] = b"format";

/// A handle on one node's store; cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    inner: Arc<Inner>,
}

struct Inner {
    // Fields drop in order: the database closes before the folder lock is released.
    db: DB,
    dir: PathBuf,
    snapshot_dir: PathBuf,
    /// The last log id of the snapshot file on disk; writers keep only the newest snapshot.
    saved_snapshot: Mutex<Option<LogId>>,
    /// Held (write) for the whole of a snapshot install, and (read) while a snapshot build
    /// takes its RocksDB snapshot, so a build never sees a half-installed state.
    install: RwLock<()>,
    _dir_lock: DirLock,
}

impl MetaStore {
    /// Opens (creating if needed) the store under `dir` (normally DATA_DIR/meta): locks the
    /// folder, opens the database in `dir/db`, checks its format, completes an interrupted
    /// snapshot install and removes abandoned snapshot transfers from `dir/snapshot`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let dir_lock = DirLock::acquire(dir, "meta")?;
        let snapshot_dir = dir.join("snapshot");
        std::fs::create_dir_all(&snapshot_dir).map_err(|source| StoreError::SnapshotFile {
            path: snapshot_dir.display().to_string(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Memory and disk stay bounded whatever the state's size: all memtables together hold
        // at most MEMTABLE_BYTES (the largest is flushed first), and write-ahead logs kept
        // alive by a rarely written column family (vote, sm_meta) are capped by flushing it.
        opts.set_db_write_buffer_size(MEMTABLE_BYTES);
        opts.set_max_total_wal_size(MAX_WAL_BYTES);
        let cfs = [CF_LOGS, CF_RAFT, CF_SM, CF_SM_META]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir.join("db"), cfs)?;
        let store = MetaStore {
            inner: Arc::new(Inner {
                db,
                dir: dir.to_path_buf(),
                snapshot_dir,
                saved_snapshot: Mutex::new(None),
                install: RwLock::new(()),
                _dir_lock: dir_lock,
            }),
        };
        store.check_format()?;
        store.resume_interrupted_install()?;
        store.remove_abandoned_snapshot_files()?;
        let saved = store
            .current_snapshot()?
            .and_then(|current| current.meta.last_log_id);
        *store.lock_saved_snapshot() = saved;
        Ok(store)
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let found: Option<pb::StoreFormat> = self.get_pb(CF_SM_META, KEY_FORMAT, "format")?;
        match found {
            Some(f) if f.version == FORMAT_VERSION => Ok(()),
            Some(f) if f.version < FORMAT_VERSION => Err(StoreError::EarlierFormat {
                dir: self.inner.dir.display().to_string(),
                found: f.version,
                supported: FORMAT_VERSION,
            }),
            Some(f) => Err(StoreError::UnknownFormat {
                found: f.version,
                supported: FORMAT_VERSION,
            }),
            None => {
                let mut batch = WriteBatch::default();
                let format = pb::StoreFormat {
                    version: FORMAT_VERSION,
                };
                batch.put_cf(self.cf(CF_SM_META)?, KEY_FORMAT, format.encode_to_vec());
                self.write(batch, true)
            }
        }
    }

    /// The database.
    pub(crate) fn db(&self) -> &DB {
        &self.inner.db
    }

    /// A column family by name.
    pub(crate) fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.inner
            .db
            .cf_handle(name)
            .ok_or(StoreError::MissingColumnFamily(name))
    }

    /// Writes one batch; `sync` makes it durable (and everything written before it) before
    /// returning.
    pub(crate) fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.inner.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Reads and decodes one record.
    pub(crate) fn get_pb<M: Message + Default>(
        &self,
        cf: &'static str,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<M>, StoreError> {
        match self.inner.db.get_pinned_cf(self.cf(cf)?, key)? {
            None => Ok(None),
            Some(bytes) => M::decode(&bytes[..])
                .map(Some)
                .map_err(|source| StoreError::Decode { what, source }),
        }
    }

    /// A view of the current state-machine records (sees every write as it lands).
    pub(crate) fn latest(&self) -> Result<View<'_>, StoreError> {
        View::latest(self.db(), self.cf(CF_SM)?)
    }

    /// A consistent point-in-time view of the state-machine records.
    pub(crate) fn snapshot_view(&self) -> Result<View<'_>, StoreError> {
        View::snapshot(self.db(), self.cf(CF_SM)?)
    }

    /// How many handles on the store are alive (the database closes with the last).
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// The log-storage half, for openraft.
    pub fn log_store(&self) -> LogStore {
        LogStore::new(self.clone())
    }

    /// The state-machine half, for openraft.
    pub fn state_machine(&self) -> StateMachineStore {
        StateMachineStore::new(self.clone())
    }

    fn lock_saved_snapshot(&self) -> std::sync::MutexGuard<'_, Option<LogId>> {
        // A poisoned lock only means another writer panicked; the value is still a log id.
        self.inner
            .saved_snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The node's snapshot file.
    fn snapshot_path(&self) -> PathBuf {
        self.inner.snapshot_dir.join(snapshot::CURRENT)
    }

    /// The folder of snapshot files.
    fn snapshot_dir(&self) -> &Path {
        &self.inner.snapshot_dir
    }

    /// The meta folder the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

/// Runs store work on the blocking pool so fsyncs never stall the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}
