//! Snapshots as files. Building streams the `sm` column family, read from one RocksDB snapshot
//! together with the last applied log id and membership, into a temporary file that is synced
//! and renamed over `snapshot/current`. Installing a received file replaces the state machine in
//! bounded batches under a synced marker, so memory stays bounded by the batch size whatever
//! the snapshot's size.
//!
//! Invariants:
//! - `snapshot/current` is only ever replaced by a complete, synced file of a newer (or the same)
//!   snapshot; other files in the folder are transfers or builds in progress.
//! - An install is all or nothing as seen after any crash: the marker `installing` (in
//!   `sm_meta`) is synced before the old state is touched and removed in the same synced batch
//!   that records the new last applied log id and membership; a store that opens with the
//!   marker present installs the marked file again, from the start, before anything reads it.
//! - A file is installed only after it verified in full (magic, formats, count, checksum) and
//!   its header names the snapshot openraft asked to install.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use rocksdb::{ReadOptions, WriteBatch, WriteOptions};
use tessera_proto::raft::v1 as pb;

use super::snapshot_file::{SnapshotFileError, SnapshotFileReader, SnapshotFileWriter};
use super::{
    CF_SM, CF_SM_META, FORMAT_VERSION, KEY_INSTALLING, KEY_LAST_APPLIED, KEY_LAST_MEMBERSHIP,
    MetaStore,
};
use crate::convert;
use crate::error::StoreError;
use crate::types::{LogId, SnapshotMeta, StoredMembership};

/// The node's snapshot file, inside the snapshot folder.
pub(crate) const CURRENT: &str = "current";
/// Files receiving a snapshot from the leader.
const RECEIVING_PREFIX: &str = "receiving-";
/// Files of a snapshot being built.
const BUILDING_PREFIX: &str = "building-";
/// Bytes of state-machine records written per RocksDB batch while installing.
pub(crate) const INSTALL_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// I/O buffer of snapshot files.
const FILE_BUFFER_BYTES: usize = 1024 * 1024;

/// Makes temporary file names unique within the process.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The node's snapshot file, open at its start.
pub(crate) struct CurrentSnapshot {
    /// Its meta, from its header.
    pub meta: SnapshotMeta,
    /// The open file.
    pub file: File,
    /// Where it is.
    pub path: PathBuf,
}

/// A snapshot just built.
pub(crate) struct BuiltSnapshot {
    /// Its meta.
    pub meta: SnapshotMeta,
    /// The file, open at its start (still readable if a newer snapshot replaced it meanwhile).
    pub file: File,
    /// Where it is (or was).
    pub path: PathBuf,
    /// Pairs it holds.
    pub pairs: u64,
    /// Its size.
    pub bytes: u64,
}

/// A summary of a node's state machine, equal on two nodes exactly when they hold the same
/// records at the same applied log id: for comparing replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFingerprint {
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// Records in the state machine.
    pub pairs: u64,
    /// BLAKE3 over every key and value, length-prefixed, in key order.
    pub digest: [u8; 32],
}

/// Removes a temporary file when dropped, unless disarmed.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::SnapshotFile {
        path: path.display().to_string(),
        source,
    }
}

fn format_error(path: &Path) -> impl Fn(SnapshotFileError) -> StoreError + '_ {
    move |source| StoreError::SnapshotFormat {
        path: path.display().to_string(),
        source,
    }
}

fn decode_log_id(bytes: &[u8], what: &'static str) -> Result<LogId, StoreError> {
    let id = pb::LogId::decode(bytes).map_err(|source| StoreError::Decode { what, source })?;
    convert::log_id_from_pb(id).map_err(|source| StoreError::Convert { what, source })
}

fn decode_membership(bytes: &[u8]) -> Result<StoredMembership, StoreError> {
    let m = pb::StoredMembership::decode(bytes).map_err(|source| StoreError::Decode {
        what: "membership",
        source,
    })?;
    convert::stored_membership_from_pb(m).map_err(|source| StoreError::Convert {
        what: "membership",
        source,
    })
}

fn snapshot_id(last_applied: Option<&LogId>) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    match last_applied {
        Some(id) => format!(
            "{}-{}-{}-{nanos}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => format!("0-0-0-{nanos}"),
    }
}

impl MetaStore {
    /// A fresh path in the snapshot folder for a temporary file.
    fn temporary_path(&self, prefix: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.snapshot_dir()
            .join(format!("{prefix}{}-{nanos}-{n}", std::process::id()))
    }

    /// A fresh file to receive a snapshot into.
    pub(crate) fn receiving_path(&self) -> PathBuf {
        self.temporary_path(RECEIVING_PREFIX)
    }

    /// Builds a snapshot of the current state into a new file and makes it the node's
    /// snapshot file (unless a newer one is already there).
    pub(crate) fn build_snapshot_file(&self) -> Result<BuiltSnapshot, StoreError> {
        let db = self.db();
        let snap = {
            // A poisoned lock only means a holder panicked; the guard protects no data.
            let _no_install = self
                .inner
                .install
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            db.snapshot()
        };
        let sm_meta = self.cf(CF_SM_META)?;
        if snap.get_cf(sm_meta, KEY_INSTALLING)?.is_some() {
            // Unreachable while installs hold the lock; refuse rather than write a mixed state.
            return Err(StoreError::SnapshotMismatch {
                path: self.snapshot_path().display().to_string(),
                expected: "a settled state machine".to_owned(),
                found: "an install in progress".to_owned(),
            });
        }
        let last_applied = snap
            .get_cf(sm_meta, KEY_LAST_APPLIED)?
            .map(|b| decode_log_id(&b, "last applied"))
            .transpose()?;
        let last_membership = match snap.get_cf(sm_meta, KEY_LAST_MEMBERSHIP)? {
            None => StoredMembership::default(),
            Some(b) => decode_membership(&b)?,
        };
        let meta = SnapshotMeta {
            snapshot_id: snapshot_id(last_applied.as_ref()),
            last_log_id: last_applied,
            last_membership,
        };

        let path = self.temporary_path(BUILDING_PREFIX);
        let mut temp = TempFile(Some(path.clone()));
        let io = io_error(&path);
        let file = File::create_new(&path).map_err(&io)?;
        let out = BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
        let mut writer = SnapshotFileWriter::new(out, &meta, FORMAT_VERSION).map_err(&io)?;
        let mut opts = ReadOptions::default();
        opts.fill_cache(false);
        let mut iter = snap.raw_iterator_cf_opt(self.cf(CF_SM)?, opts);
        iter.seek_to_first();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            writer.push(key, value).map_err(&io)?;
            iter.next();
        }
        iter.status()?;
        drop(iter);
        drop(snap);
        let (out, pairs, bytes) = writer.finish().map_err(&io)?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(&io)?;
        drop(file);
        // Opened before publishing: the handle stays valid if a newer snapshot replaces it.
        let file = File::open(&path).map_err(&io)?;
        drop(io);
        let published = self.publish_snapshot_file(&path, &meta)?;
        temp.disarm();
        Ok(BuiltSnapshot {
            meta,
            file,
            path: published.unwrap_or(path),
            pairs,
            bytes,
        })
    }

    /// Makes `file` (in the snapshot folder) the node's snapshot file, unless the one there is
    /// newer (then `file` is removed). Returns the path it now has, if it was kept.
    fn publish_snapshot_file(
        &self,
        file: &Path,
        meta: &SnapshotMeta,
    ) -> Result<Option<PathBuf>, StoreError> {
        let mut saved = self.lock_saved_snapshot();
        let io = io_error(file);
        if saved.is_some() && *saved > meta.last_log_id {
            std::fs::remove_file(file).map_err(&io)?;
            return Ok(None);
        }
        let current = self.snapshot_path();
        std::fs::rename(file, &current).map_err(&io)?;
        File::open(self.snapshot_dir())
            .and_then(|dir| dir.sync_all())
            .map_err(&io)?;
        *saved = meta.last_log_id;
        Ok(Some(current))
    }

    /// The node's snapshot file with its meta, if there is one.
    pub(crate) fn current_snapshot(&self) -> Result<Option<CurrentSnapshot>, StoreError> {
        let path = self.snapshot_path();
        let io = io_error(&path);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let meta = {
            let reader = SnapshotFileReader::open(BufReader::new(&file), FORMAT_VERSION)
                .map_err(format_error(&path))?;
            reader.meta().clone()
        };
        file.seek(SeekFrom::Start(0)).map_err(&io)?;
        drop(io);
        Ok(Some(CurrentSnapshot { meta, file, path }))
    }

    /// Reads `path` in full, checking that it is a sound snapshot file of this store's format
    /// whose header names `meta`; returns its pair count.
    fn verify_snapshot_file(&self, path: &Path, meta: &SnapshotMeta) -> Result<u64, StoreError> {
        let file = File::open(path).map_err(io_error(path))?;
        let reader = SnapshotFileReader::open(
            BufReader::with_capacity(FILE_BUFFER_BYTES, file),
            FORMAT_VERSION,
        )
        .map_err(format_error(path))?;
        if reader.meta() != meta {
            return Err(StoreError::SnapshotMismatch {
                path: path.display().to_string(),
                expected: meta.snapshot_id.clone(),
                found: reader.meta().snapshot_id.clone(),
            });
        }
        reader.verify_to_end().map_err(format_error(path))
    }

    /// Replaces the state machine by the snapshot in `path` (in the snapshot folder), which
    /// then becomes the node's snapshot file. Returns the number of records installed.
    pub(crate) fn install_snapshot_file(
        &self,
        meta: &SnapshotMeta,
        path: &Path,
    ) -> Result<u64, StoreError> {
        let _installing = self
            .inner
            .install
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.verify_snapshot_file(path, meta)?;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|_| path.parent() == Some(self.snapshot_dir()))
            .ok_or_else(|| StoreError::SnapshotFile {
                path: path.display().to_string(),
                source: std::io::Error::other(
                    "a snapshot to install must be in the snapshot folder",
                ),
            })?;
        let marker = pb::SnapshotInstall {
            file: file_name.to_owned(),
            meta: Some(convert::snapshot_meta_to_pb(meta)),
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_SM_META)?, KEY_INSTALLING, marker.encode_to_vec());
        self.write(batch, true)?;
        let pairs = self.replace_state(meta, path)?;
        self.publish_snapshot_file(path, meta)?;
        Ok(pairs)
    }

    /// Completes an install a crash interrupted (the marker is present), from its kept file.
    pub(crate) fn resume_interrupted_install(&self) -> Result<(), StoreError> {
        let Some(marker) =
            self.get_pb::<pb::SnapshotInstall>(CF_SM_META, KEY_INSTALLING, "install marker")?
        else {
            return Ok(());
        };
        let meta = marker.meta.ok_or(StoreError::Convert {
            what: "install marker",
            source: convert::ConvertError::MissingField("snapshot_install.meta"),
        })?;
        let meta = convert::snapshot_meta_from_pb(meta).map_err(|source| StoreError::Convert {
            what: "install marker",
            source,
        })?;
        if marker.file.is_empty() || marker.file.contains(['/', '\\']) || marker.file == ".." {
            return Err(StoreError::SnapshotMismatch {
                path: marker.file,
                expected: meta.snapshot_id,
                found: "a file name outside the snapshot folder".to_owned(),
            });
        }
        let path = self.snapshot_dir().join(&marker.file);
        tracing::warn!(
            snapshot_id = %meta.snapshot_id,
            file = %path.display(),
            "completing a snapshot install interrupted by a crash"
        );
        let _installing = self
            .inner
            .install
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.verify_snapshot_file(&path, &meta)?;
        let pairs = self.replace_state(&meta, &path)?;
        self.publish_snapshot_file(&path, &meta)?;
        tracing::info!(snapshot_id = %meta.snapshot_id, pairs, "interrupted snapshot install completed");
        Ok(())
    }

    /// Deletes every state-machine record, writes the file's pairs in bounded batches, then
    /// records the snapshot's last log id and membership and removes the marker in one synced
    /// batch. Callers hold the install lock and have written the marker.
    fn replace_state(&self, meta: &SnapshotMeta, path: &Path) -> Result<u64, StoreError> {
        let sm = self.cf(CF_SM)?;
        let sm_meta = self.cf(CF_SM_META)?;
        // The bulk is written without the WAL and flushed before the final, synced batch: a
        // crash loses it only while the marker is still durable, and the install runs again.
        let mut bulk = WriteOptions::default();
        bulk.disable_wal(true);

        let mut batch = WriteBatch::default();
        {
            let mut iter = self.db().raw_iterator_cf(sm);
            iter.seek_to_last();
            if let Some(last) = iter.key() {
                let last = last.to_vec();
                batch.delete_range_cf(sm, Vec::new(), last.clone());
                batch.delete_cf(sm, last);
            }
            iter.status()?;
        }
        self.db().write_opt(batch, &bulk)?;

        let file = File::open(path).map_err(io_error(path))?;
        let mut reader = SnapshotFileReader::open(
            BufReader::with_capacity(FILE_BUFFER_BYTES, file),
            FORMAT_VERSION,
        )
        .map_err(format_error(path))?;
        let mut batch = WriteBatch::default();
        while let Some(pair) = reader.next_pair().map_err(format_error(path))? {
            batch.put_cf(sm, &pair.key, &pair.value);
            if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
                self.db().write_opt(std::mem::take(&mut batch), &bulk)?;
            }
        }
        self.db().write_opt(batch, &bulk)?;
        self.db().flush_cf(sm)?;

        let mut last = WriteBatch::default();
        match &meta.last_log_id {
            Some(id) => last.put_cf(
                sm_meta,
                KEY_LAST_APPLIED,
                convert::log_id_to_pb(id).encode_to_vec(),
            ),
            None => last.delete_cf(sm_meta, KEY_LAST_APPLIED),
        }
        last.put_cf(
            sm_meta,
            KEY_LAST_MEMBERSHIP,
            convert::stored_membership_to_pb(&meta.last_membership).encode_to_vec(),
        );
        last.delete_cf(sm_meta, KEY_INSTALLING);
        self.write(last, true)?;
        Ok(reader.pairs())
    }

    /// Removes snapshot transfers and builds a crash left behind (run at open, after any
    /// interrupted install was completed, so no marker names them).
    pub(crate) fn remove_abandoned_snapshot_files(&self) -> Result<(), StoreError> {
        let dir = self.snapshot_dir();
        let entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
        for entry in entries {
            let entry = entry.map_err(io_error(dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(RECEIVING_PREFIX) || name.starts_with(BUILDING_PREFIX) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io_error(&path))?;
                tracing::info!(file = %path.display(), "abandoned snapshot file removed");
            }
        }
        Ok(())
    }

    /// A fingerprint of the state machine, read from one RocksDB snapshot.
    pub fn state_fingerprint(&self) -> Result<StateFingerprint, StoreError> {
        let snap = self.db().snapshot();
        let last_applied = snap
            .get_cf(self.cf(CF_SM_META)?, KEY_LAST_APPLIED)?
            .map(|b| decode_log_id(&b, "last applied"))
            .transpose()?;
        let mut hasher = blake3::Hasher::new();
        let mut pairs = 0u64;
        let mut iter = snap.raw_iterator_cf(self.cf(CF_SM)?);
        iter.seek_to_first();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            hasher.update(&(key.len() as u64).to_le_bytes());
            hasher.update(key);
            hasher.update(&(value.len() as u64).to_le_bytes());
            hasher.update(value);
            pairs += 1;
            iter.next();
        }
        iter.status()?;
        Ok(StateFingerprint {
            last_applied,
            pairs,
            digest: *hasher.finalize().as_bytes(),
        })
    }
}

#[cfg(test)]
#[path = "snapshot_test.rs"]
mod tests;
