//! The Raft log in the `logs` and `raft` column families. One `append` call is one synced
//! WriteBatch however many entries openraft hands over, so a burst of client writes costs one
//! fsync. The log never has a hole: truncation removes a suffix, purging a prefix, and the
//! purged position is recorded in the same batch as the deletion.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, StorageIOError};
use prost::Message;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use tessera_proto::raft::v1 as pb;

use super::{CF_LOGS, CF_RAFT, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, MetaStore, blocking};
use crate::convert;
use crate::error::StoreError;
use crate::types::{LogEntry, LogId, StorageError, TypeConfig, Vote};

/// The log half of the store, handed to openraft (and cloned for its log readers).
#[derive(Clone)]
pub struct LogStore {
    store: MetaStore,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub(crate) fn new(store: MetaStore) -> Self {
        LogStore { store }
    }

    fn read_log_id(&self, key: &[u8], what: &'static str) -> Result<Option<LogId>, StoreError> {
        let Some(id) = self.store.get_pb::<pb::LogId>(CF_RAFT, key, what)? else {
            return Ok(None);
        };
        convert::log_id_from_pb(id)
            .map(Some)
            .map_err(|source| StoreError::Convert { what, source })
    }

    /// Entries with index in `[start, end)`.
    fn read_entries(&self, start: u64, end: Option<u64>) -> Result<Vec<LogEntry>, StoreError> {
        let cf = self.store.cf(CF_LOGS)?;
        let from = index_key(start);
        let iter = self
            .store
            .db()
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward));
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item?;
            let index = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::MalformedKey { cf: CF_LOGS })?,
            );
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let entry = pb::Entry::decode(value.as_ref()).map_err(|source| StoreError::Decode {
                what: "log entry",
                source,
            })?;
            out.push(
                convert::entry_from_pb(entry).map_err(|source| StoreError::Convert {
                    what: "log entry",
                    source,
                })?,
            );
        }
        Ok(out)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StoreError> {
        let cf = self.store.cf(CF_LOGS)?;
        let mut iter = self.store.db().iterator_cf(cf, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item?;
                let entry =
                    pb::Entry::decode(value.as_ref()).map_err(|source| StoreError::Decode {
                        what: "log entry",
                        source,
                    })?;
                let id = entry.log_id.ok_or(StoreError::Convert {
                    what: "log entry",
                    source: convert::ConvertError::MissingField("entry.log_id"),
                })?;
                convert::log_id_from_pb(id)
                    .map(Some)
                    .map_err(|source| StoreError::Convert {
                        what: "log entry",
                        source,
                    })
            }
        }
    }
}

fn range_start(range: &impl RangeBounds<u64>) -> u64 {
    match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    }
}

fn range_end(range: &impl RangeBounds<u64>) -> Option<u64> {
    match range.end_bound() {
        Bound::Included(e) => Some(e.saturating_add(1)),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError> {
        self.read_entries(range_start(&range), range_end(&range))
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged = self
            .read_log_id(KEY_LAST_PURGED, "last purged log id")
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let last = self
            .last_entry_log_id()
            .map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let store = self.store.clone();
        let value = convert::vote_to_pb(vote).encode_to_vec();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(CF_RAFT)?, KEY_VOTE, value);
            store.write(batch, true)
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let read = || -> Result<Option<Vote>, StoreError> {
            let Some(v) = self.store.get_pb::<pb::Vote>(CF_RAFT, KEY_VOTE, "vote")? else {
                return Ok(None);
            };
            convert::vote_from_pb(v)
                .map(Some)
                .map_err(|source| StoreError::Convert {
                    what: "vote",
                    source,
                })
        };
        read().map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: the state machine is durable on its own, and a lost `committed` only
        // means fewer entries are re-applied at start-up.
        let write = || -> Result<(), StoreError> {
            let mut batch = WriteBatch::default();
            let cf = self.store.cf(CF_RAFT)?;
            match committed {
                Some(id) => batch.put_cf(
                    cf,
                    KEY_COMMITTED,
                    convert::log_id_to_pb(&id).encode_to_vec(),
                ),
                None => batch.delete_cf(cf, KEY_COMMITTED),
            }
            self.store.write(batch, false)
        };
        write().map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_log_id(KEY_COMMITTED, "committed log id")
            .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<([u8; 8], Vec<u8>)> = entries
            .into_iter()
            .map(|e| {
                (
                    index_key(e.log_id.index),
                    convert::entry_to_pb(&e).encode_to_vec(),
                )
            })
            .collect();
        let store = self.store.clone();
        let result = blocking(move || {
            let mut batch = WriteBatch::default();
            let cf = store.cf(CF_LOGS)?;
            for (key, value) in encoded {
                batch.put_cf(cf, key, value);
            }
            store.write(batch, true)
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let store = self.store.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                store.cf(CF_LOGS)?,
                index_key(log_id.index),
                index_key(u64::MAX),
            );
            store.write(batch, true)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let store = self.store.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(
                store.cf(CF_RAFT)?,
                KEY_LAST_PURGED,
                convert::log_id_to_pb(&log_id).encode_to_vec(),
            );
            batch.delete_range_cf(
                store.cf(CF_LOGS)?,
                index_key(0),
                index_key(log_id.index.saturating_add(1)),
            );
            store.write(batch, true)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::entry::EntryPayload;
    use openraft::{CommittedLeaderId, RaftLogReader};

    fn entry(index: u64) -> LogEntry {
        LogEntry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn write_entries(store: &MetaStore, range: std::ops::Range<u64>) {
        let mut batch = WriteBatch::default();
        let cf = store.cf(CF_LOGS).expect("cf");
        for i in range {
            batch.put_cf(
                cf,
                index_key(i),
                convert::entry_to_pb(&entry(i)).encode_to_vec(),
            );
        }
        store.write(batch, true).expect("write");
    }

    #[tokio::test]
    async fn entries_survive_reopen_and_truncate_purge_keep_the_log_contiguous() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = MetaStore::open(dir.path()).expect("open");
            let mut log = store.log_store();
            write_entries(&store, 1..11);
            log.save_vote(&Vote::new_committed(3, 2))
                .await
                .expect("vote");
            let got = log.try_get_log_entries(3..6).await.expect("read");
            assert_eq!(
                got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
                [3, 4, 5]
            );

            log.truncate(entry(8).log_id).await.expect("truncate");
            log.purge(entry(2).log_id).await.expect("purge");
        }
        let store = MetaStore::open(dir.path()).expect("reopen");
        let mut log = store.log_store();
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(entry(2).log_id));
        assert_eq!(state.last_log_id, Some(entry(7).log_id));
        let all = log.try_get_log_entries(..).await.expect("all");
        assert_eq!(
            all.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            [3, 4, 5, 6, 7]
        );
        assert_eq!(
            log.read_vote().await.expect("vote"),
            Some(Vote::new_committed(3, 2))
        );

        log.purge(entry(7).log_id).await.expect("purge all");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id, Some(entry(7).log_id));
        assert!(
            log.try_get_log_entries(0..100)
                .await
                .expect("none")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn committed_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MetaStore::open(dir.path()).expect("open");
        let mut log = store.log_store();
        assert_eq!(log.read_committed().await.expect("none"), None);
        log.save_committed(Some(entry(4).log_id))
            .await
            .expect("save");
        assert_eq!(
            log.read_committed().await.expect("read"),
            Some(entry(4).log_id)
        );
    }
}
