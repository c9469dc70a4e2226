//! The state-machine half of the store. Each entry's writes and its log id go to RocksDB in one
//! WriteBatch, so the applied index never runs ahead of or behind the data; the last batch of
//! every `apply` call is synced, which makes all before it durable too. Snapshots are files
//! (see `snapshot`): built from one RocksDB snapshot, sent and received in chunks, installed in
//! bounded batches.

use openraft::entry::EntryPayload;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{OptionalSend, StorageIOError};
use prost::Message;
use rocksdb::WriteBatch;
use tessera_proto::meta::v1::{CommandResult, Empty, command_result};
use tessera_proto::raft::v1 as pb;

use super::snapshot_data::SnapshotFile;
use super::{CF_SM, CF_SM_META, KEY_LAST_APPLIED, KEY_LAST_MEMBERSHIP, MetaStore, blocking};
use crate::apply;
use crate::convert;
use crate::error::StoreError;
use crate::types::{LogEntry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// The state-machine half of the store, handed to openraft; also its snapshot builder.
#[derive(Clone)]
pub struct StateMachineStore {
    store: MetaStore,
}

impl StateMachineStore {
    pub(crate) fn new(store: MetaStore) -> Self {
        StateMachineStore { store }
    }
}

impl MetaStore {
    /// The last applied log id and membership, as recorded with the data.
    pub(crate) fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let applied =
            match self.get_pb::<pb::LogId>(CF_SM_META, KEY_LAST_APPLIED, "last applied")? {
                None => None,
                Some(id) => {
                    Some(
                        convert::log_id_from_pb(id).map_err(|source| StoreError::Convert {
                            what: "last applied",
                            source,
                        })?,
                    )
                }
            };
        let membership = match self.get_pb::<pb::StoredMembership>(
            CF_SM_META,
            KEY_LAST_MEMBERSHIP,
            "membership",
        )? {
            None => StoredMembership::default(),
            Some(m) => {
                convert::stored_membership_from_pb(m).map_err(|source| StoreError::Convert {
                    what: "membership",
                    source,
                })?
            }
        };
        Ok((applied, membership))
    }

    /// Applies entries in order; returns one result per entry. Each entry's writes (from the
    /// rules, over the latest records) and its log id go to RocksDB in one batch.
    pub(crate) fn apply_entries(
        &self,
        entries: Vec<LogEntry>,
    ) -> Result<Vec<CommandResult>, StoreError> {
        let count = entries.len();
        let mut results = Vec::with_capacity(count);
        let sm = self.cf(CF_SM)?;
        let sm_meta = self.cf(CF_SM_META)?;
        for (i, entry) in entries.into_iter().enumerate() {
            let index = entry.log_id.index;
            let view = self.latest()?;
            let mut batch = WriteBatch::default();
            let (writes, result) = match &entry.payload {
                EntryPayload::Normal(cmd) => {
                    let applied = apply::apply_command(&view, index, cmd)?;
                    (applied.writes, applied.result)
                }
                EntryPayload::Blank => (apply::apply_without_command(&view, index)?, done()),
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                    batch.put_cf(
                        sm_meta,
                        KEY_LAST_MEMBERSHIP,
                        convert::stored_membership_to_pb(&stored).encode_to_vec(),
                    );
                    (apply::apply_without_command(&view, index)?, done())
                }
            };
            drop(view);
            for (key, value) in writes {
                match value {
                    Some(v) => batch.put_cf(sm, key, v),
                    None => batch.delete_cf(sm, key),
                }
            }
            batch.put_cf(
                sm_meta,
                KEY_LAST_APPLIED,
                convert::log_id_to_pb(&entry.log_id).encode_to_vec(),
            );
            self.write(batch, i + 1 == count)?;
            results.push(result);
        }
        Ok(results)
    }
}

fn done() -> CommandResult {
    CommandResult {
        result: Some(command_result::Result::Ok(Empty {})),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let built = blocking(move || store.build_snapshot_file())
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        tracing::info!(
            snapshot_id = %built.meta.snapshot_id,
            pairs = built.pairs,
            bytes = built.bytes,
            millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "snapshot built"
        );
        Ok(Snapshot {
            meta: built.meta,
            snapshot: Box::new(SnapshotFile::existing(built.file, built.path)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.store
            .applied_state()
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<LogEntry> = entries.into_iter().collect();
        let store = self.store.clone();
        blocking(move || store.apply_entries(entries))
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let path = self.store.receiving_path();
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| {
                StorageIOError::write_snapshot(
                    None,
                    &StoreError::SnapshotFile {
                        path: path.display().to_string(),
                        source: e,
                    },
                )
            })?;
        Ok(Box::new(SnapshotFile::receiving(file, path)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let signature = meta.signature();
        let shown = snapshot.path().display().to_string();
        let path = snapshot.keep().await.map_err(|e| {
            StorageIOError::write_snapshot(
                Some(signature.clone()),
                &StoreError::SnapshotFile {
                    path: shown,
                    source: e,
                },
            )
        })?;
        let store = self.store.clone();
        let owned_meta = meta.clone();
        let started = std::time::Instant::now();
        let install_path = path.clone();
        let installed =
            blocking(move || store.install_snapshot_file(&owned_meta, &install_path)).await;
        let pairs = match installed {
            Ok(pairs) => pairs,
            Err(e) => {
                tracing::error!(
                    snapshot_id = %meta.snapshot_id,
                    error = %e,
                    code = e.code(),
                    "snapshot install failed"
                );
                return Err(StorageIOError::write_snapshot(Some(signature), &e).into());
            }
        };
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            pairs,
            millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let store = self.store.clone();
        let found = blocking(move || store.current_snapshot())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(found.map(|current| Snapshot {
            meta: current.meta,
            snapshot: Box::new(SnapshotFile::existing(current.file, current.path)),
        }))
    }
}

#[cfg(test)]
#[path = "state_machine_test.rs"]
mod tests;
