//! The meta node's RocksDB store: one database per node with four column families — `logs`
//! (Raft entries by index), `raft` (vote, committed and purged log ids), `sm` (state-machine
//! records, see `keys`) and `sm_meta` (last applied log id, last membership, format version) —
//! plus the current snapshot as a file beside it. Every value is a protobuf message. The store
//! refuses to open a database written in a format version it does not know.

mod log;
mod state_machine;
mod view;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prost::Message;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};
use tessera_proto::raft::v1 as pb;

use crate::error::StoreError;
use crate::types::LogId;

pub use log::LogStore;
pub use state_machine::StateMachineStore;
pub(crate) use view::View;

/// Raft log entries, keyed by index (u64 big-endian).
pub const CF_LOGS: &str = "logs";
/// Vote, committed and last purged log ids.
pub const CF_RAFT: &str = "raft";
/// State-machine records.
pub const CF_SM: &str = "sm";
/// State-machine bookkeeping: last applied, last membership, format version.
pub const CF_SM_META: &str = "sm_meta";

/// The layout version this build reads and writes. Version 2 added the data-id index (`d/`);
/// version 3 added shard generations, deletion marks per generation, sessions, leases, the
/// meta clock and completion records.
pub const FORMAT_VERSION: u32 = 3;

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
    db: DB,
    snapshot_dir: PathBuf,
    /// The last log id of the snapshot file on disk; writers keep only the newest snapshot.
    saved_snapshot: Mutex<Option<LogId>>,
}

impl MetaStore {
    /// Opens (creating if needed) the store under `dir` (normally DATA_DIR/meta): the database
    /// in `dir/db`, the snapshot in `dir/snapshot`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let snapshot_dir = dir.join("snapshot");
        std::fs::create_dir_all(&snapshot_dir).map_err(|source| StoreError::SnapshotFile {
            path: snapshot_dir.display().to_string(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = [CF_LOGS, CF_RAFT, CF_SM, CF_SM_META]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir.join("db"), cfs)?;
        let store = MetaStore {
            inner: Arc::new(Inner {
                db,
                snapshot_dir,
                saved_snapshot: Mutex::new(None),
            }),
        };
        store.check_format()?;
        let saved = store
            .read_snapshot_file()?
            .and_then(|(meta, _)| meta.last_log_id);
        *store.lock_saved_snapshot() = saved;
        Ok(store)
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let found: Option<pb::StoreFormat> = self.get_pb(CF_SM_META, KEY_FORMAT, "format")?;
        match found {
            Some(f) if f.version == FORMAT_VERSION => Ok(()),
            Some(f) if f.version == 1 => self.migrate_from_1(),
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

    /// Version 1 had no data-id index: builds it from every stored version and uploaded part
    /// (deterministically, from state-machine records alone, so every node gets the same
    /// index), and drops the saved snapshot, which lacks it (openraft builds a new one).
    fn migrate_from_1(&self) -> Result<(), StoreError> {
        use tessera_proto::meta::v1 as meta_pb;
        let sm = self.cf(CF_SM)?;
        let view = View::latest(self.db(), sm)?;
        let mut batch = WriteBatch::default();
        let mut indexed = 0u64;
        let mut index = |batch: &mut WriteBatch,
                         blob: Option<&meta_pb::Blob>,
                         record_key: &[u8],
                         part_index: u32| {
            if let Some(meta_pb::Blob {
                storage: Some(meta_pb::blob::Storage::Erasure(e)),
                ..
            }) = blob
            {
                let owner = meta_pb::BlobOwner {
                    record_key: record_key.to_vec(),
                    part_index,
                };
                batch.put_cf(
                    sm,
                    crate::keys::data_index(&e.data_id),
                    owner.encode_to_vec(),
                );
                indexed += 1;
            }
        };
        for (key, version) in
            view.scan::<meta_pb::ObjectVersion>(crate::keys::OBJECT_PREFIX.to_vec(), "version")?
        {
            for (i, part) in version.parts.iter().enumerate() {
                index(
                    &mut batch,
                    part.blob.as_ref(),
                    &key,
                    u32::try_from(i).unwrap_or(u32::MAX),
                );
            }
        }
        for (key, part) in
            view.scan::<meta_pb::UploadedPart>(crate::keys::PART_PREFIX.to_vec(), "part")?
        {
            index(&mut batch, part.blob.as_ref(), &key, 0);
        }
        let format = pb::StoreFormat {
            version: FORMAT_VERSION,
        };
        batch.put_cf(self.cf(CF_SM_META)?, KEY_FORMAT, format.encode_to_vec());
        self.write(batch, true)?;
        let snapshot = self.snapshot_path();
        match std::fs::remove_file(&snapshot) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::SnapshotFile {
                    path: snapshot.display().to_string(),
                    source,
                });
            }
        }
        tracing::info!(
            indexed,
            "meta store migrated from format 1 to 2 (data-id index built)"
        );
        Ok(())
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

    fn snapshot_path(&self) -> PathBuf {
        self.inner.snapshot_dir.join("current")
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
