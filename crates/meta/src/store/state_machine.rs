//! The state-machine half of the store. Each entry's writes and its log id go to RocksDB in one
//! WriteBatch, so the applied index never runs ahead of or behind the data; the last batch of
//! every `apply` call is synced, which makes all before it durable too. A snapshot is the whole
//! `sm` column family read from one RocksDB snapshot, kept on disk (newest only) so a
//! restarted node can still serve it; installing one replaces `sm` in a single batch.

use std::io::{Cursor, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::entry::EntryPayload;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{OptionalSend, StorageIOError};
use prost::Message;
use rocksdb::{IteratorMode, WriteBatch};
use tessera_proto::meta::v1::{CommandResult, Empty, command_result};
use tessera_proto::raft::v1 as pb;

use super::{
    CF_SM, CF_SM_META, FORMAT_VERSION, KEY_LAST_APPLIED, KEY_LAST_MEMBERSHIP, MetaStore, blocking,
};
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

    /// Builds a snapshot of the current state and saves it as the node's snapshot file.
    pub(crate) fn build_snapshot(&self) -> Result<(SnapshotMeta, Vec<u8>), StoreError> {
        let db = self.db();
        let snap = db.snapshot();
        let sm_meta = self.cf(CF_SM_META)?;
        let last_applied = snap
            .get_cf(sm_meta, KEY_LAST_APPLIED)?
            .map(|b| decode_log_id(&b, "last applied"))
            .transpose()?;
        let membership = match snap.get_cf(sm_meta, KEY_LAST_MEMBERSHIP)? {
            None => StoredMembership::default(),
            Some(b) => {
                let m =
                    pb::StoredMembership::decode(&b[..]).map_err(|source| StoreError::Decode {
                        what: "membership",
                        source,
                    })?;
                convert::stored_membership_from_pb(m).map_err(|source| StoreError::Convert {
                    what: "membership",
                    source,
                })?
            }
        };
        let mut data = pb::SnapshotData::default();
        for item in snap.iterator_cf(self.cf(CF_SM)?, IteratorMode::Start) {
            let (key, value) = item?;
            data.pairs.push(pb::SnapshotPair {
                key: key.to_vec(),
                value: value.to_vec(),
            });
        }
        drop(snap);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let snapshot_id = match &last_applied {
            Some(id) => format!(
                "{}-{}-{}-{nanos}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => format!("0-0-0-{nanos}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let bytes = data.encode_to_vec();
        self.save_snapshot_file(&meta, &bytes)?;
        Ok((meta, bytes))
    }

    /// Replaces the state machine by a snapshot's contents in one batch, then keeps the
    /// snapshot as the node's snapshot file.
    pub(crate) fn install_snapshot(
        &self,
        meta: &SnapshotMeta,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let data = pb::SnapshotData::decode(bytes).map_err(|source| StoreError::Decode {
            what: "snapshot data",
            source,
        })?;
        let sm = self.cf(CF_SM)?;
        let sm_meta = self.cf(CF_SM_META)?;
        let mut batch = WriteBatch::default();
        for item in self.db().iterator_cf(sm, IteratorMode::Start) {
            let (key, _) = item?;
            batch.delete_cf(sm, key);
        }
        for pair in data.pairs {
            batch.put_cf(sm, pair.key, pair.value);
        }
        match &meta.last_log_id {
            Some(id) => batch.put_cf(
                sm_meta,
                KEY_LAST_APPLIED,
                convert::log_id_to_pb(id).encode_to_vec(),
            ),
            None => batch.delete_cf(sm_meta, KEY_LAST_APPLIED),
        }
        batch.put_cf(
            sm_meta,
            KEY_LAST_MEMBERSHIP,
            convert::stored_membership_to_pb(&meta.last_membership).encode_to_vec(),
        );
        self.write(batch, true)?;
        self.save_snapshot_file(meta, bytes)
    }

    /// Writes the snapshot file atomically (temp file, fsync, rename), unless the file on disk
    /// already holds a newer snapshot.
    fn save_snapshot_file(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StoreError> {
        let mut saved = self.lock_saved_snapshot();
        if saved.is_some() && *saved > meta.last_log_id {
            return Ok(());
        }
        let record = pb::StoredSnapshot {
            format_version: FORMAT_VERSION,
            meta: Some(convert::snapshot_meta_to_pb(meta)),
            data: data.to_vec(),
        };
        let path = self.snapshot_path();
        let tmp = path.with_extension("tmp");
        let io = |source: std::io::Error| StoreError::SnapshotFile {
            path: path.display().to_string(),
            source,
        };
        {
            let mut file = std::fs::File::create(&tmp).map_err(io)?;
            file.write_all(&record.encode_to_vec()).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        *saved = meta.last_log_id;
        Ok(())
    }

    /// The snapshot file, if there is one.
    pub(crate) fn read_snapshot_file(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StoreError> {
        let path = self.snapshot_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::SnapshotFile {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let record =
            pb::StoredSnapshot::decode(&bytes[..]).map_err(|source| StoreError::Decode {
                what: "snapshot file",
                source,
            })?;
        if record.format_version != FORMAT_VERSION {
            return Err(StoreError::UnknownFormat {
                found: record.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let meta = record.meta.ok_or(StoreError::Convert {
            what: "snapshot file",
            source: convert::ConvertError::MissingField("stored_snapshot.meta"),
        })?;
        let meta = convert::snapshot_meta_from_pb(meta).map_err(|source| StoreError::Convert {
            what: "snapshot file",
            source,
        })?;
        Ok(Some((meta, record.data)))
    }
}

fn decode_log_id(bytes: &[u8], what: &'static str) -> Result<LogId, StoreError> {
    let id = pb::LogId::decode(bytes).map_err(|source| StoreError::Decode { what, source })?;
    convert::log_id_from_pb(id).map_err(|source| StoreError::Convert { what, source })
}

fn done() -> CommandResult {
    CommandResult {
        result: Some(command_result::Result::Ok(Empty {})),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let store = self.store.clone();
        let (meta, data) = blocking(move || store.build_snapshot())
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            bytes = data.len(),
            "snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let store = self.store.clone();
        let owned_meta = meta.clone();
        let bytes = snapshot.into_inner();
        blocking(move || store.install_snapshot(&owned_meta, &bytes))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(snapshot_id = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let store = self.store.clone();
        let found = blocking(move || store.read_snapshot_file())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(found.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::{BTreeMap, BTreeSet};
    use tessera_proto::meta::v1::{Bucket, Command, CreateBucket, command};

    use crate::types::MetaNode;

    fn lid(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn create(name: &str, index: u64) -> LogEntry {
        LogEntry {
            log_id: lid(index),
            payload: EntryPayload::Normal(Command {
                cmd: Some(command::Cmd::CreateBucket(CreateBucket {
                    bucket: Some(Bucket {
                        name: name.into(),
                        owner: "o".into(),
                        ..Bucket::default()
                    }),
                })),
                ..Command::default()
            }),
        }
    }

    fn membership_entry(index: u64) -> LogEntry {
        let nodes = BTreeMap::from([(
            1,
            MetaNode {
                addr: "a:1".into(),
                zone: "z".into(),
            },
        )]);
        LogEntry {
            log_id: lid(index),
            payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], nodes)),
        }
    }

    #[tokio::test]
    async fn applied_state_and_snapshots_survive_restart_and_install_replaces_everything() {
        let source_dir = tempfile::tempdir().expect("tempdir");
        let (meta, data) = {
            let store = MetaStore::open(source_dir.path()).expect("open");
            let mut sm = store.state_machine();
            let results = sm
                .apply(vec![
                    membership_entry(1),
                    create("alpha", 2),
                    create("bravo", 3),
                ])
                .await
                .expect("apply");
            assert_eq!(results.len(), 3);
            let (applied, membership) = sm.applied_state().await.expect("state");
            assert_eq!(applied, Some(lid(3)));
            assert_eq!(membership.log_id(), &Some(lid(1)));
            let mut builder = sm.get_snapshot_builder().await;
            let snap = builder.build_snapshot().await.expect("build");
            (snap.meta.clone(), snap.snapshot.into_inner())
        };
        // Restarted, the node still has its state and its snapshot.
        let store = MetaStore::open(source_dir.path()).expect("reopen");
        let mut sm = store.state_machine();
        assert_eq!(sm.applied_state().await.expect("state").0, Some(lid(3)));
        let current = sm
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("present");
        assert_eq!(current.meta, meta);

        // Another node with different data installs the snapshot and ends up identical.
        let target_dir = tempfile::tempdir().expect("tempdir");
        let target = MetaStore::open(target_dir.path()).expect("open");
        let mut target_sm = target.state_machine();
        target_sm
            .apply(vec![create("zulu", 1)])
            .await
            .expect("apply");
        target_sm
            .install_snapshot(&meta, Box::new(Cursor::new(data)))
            .await
            .expect("install");
        let view = target.latest().expect("view");
        assert!(
            crate::records::bucket(&view, "alpha")
                .expect("read")
                .is_some()
        );
        assert!(
            crate::records::bucket(&view, "bravo")
                .expect("read")
                .is_some()
        );
        assert!(
            crate::records::bucket(&view, "zulu")
                .expect("read")
                .is_none()
        );
        let (applied, membership) = target_sm.applied_state().await.expect("state");
        assert_eq!(applied, Some(lid(3)));
        assert_eq!(membership, meta.last_membership);
        let kept = target_sm
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(kept.meta, meta);
    }

    #[tokio::test]
    async fn an_older_snapshot_never_replaces_a_newer_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MetaStore::open(dir.path()).expect("open");
        let newer = SnapshotMeta {
            last_log_id: Some(lid(9)),
            last_membership: StoredMembership::default(),
            snapshot_id: "new".into(),
        };
        let older = SnapshotMeta {
            last_log_id: Some(lid(4)),
            last_membership: StoredMembership::default(),
            snapshot_id: "old".into(),
        };
        store.save_snapshot_file(&newer, b"").expect("save");
        store.save_snapshot_file(&older, b"").expect("save");
        let (meta, _) = store.read_snapshot_file().expect("read").expect("present");
        assert_eq!(meta.snapshot_id, "new");
    }

    #[test]
    fn an_unknown_format_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = MetaStore::open(dir.path()).expect("open");
            let mut batch = WriteBatch::default();
            batch.put_cf(
                store.cf(CF_SM_META).expect("cf"),
                super::super::KEY_FORMAT,
                pb::StoreFormat { version: 99 }.encode_to_vec(),
            );
            store.write(batch, true).expect("write");
        }
        match MetaStore::open(dir.path()) {
            Err(StoreError::UnknownFormat { found: 99, .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a store of format 99 was opened"),
        }
    }
}
