//! Reading the state-machine column family as a `KvRead`: point reads and prefix cursors,
//! either on the latest data (the applier, which is the only writer) or on a RocksDB snapshot
//! (queries, so one answer never mixes two states).
//!
//! Invariant: a cursor yields the keys under its prefix in ascending order and never touches the
//! RocksDB iterator once it is exhausted.

use rocksdb::{ColumnFamily, DB, DBRawIterator, ReadOptions, SnapshotWithThreadMode};

use super::{CF_SM, CF_SM_META, KEY_LAST_APPLIED, MetaStore};
use crate::error::StoreError;
use crate::keys;
use crate::kv::{Entry, KvCursor, KvRead, KvSource};
use crate::meta_clock::{self, AppliedClock};

pub(crate) use crate::kv::decode;

/// A view of the `sm` column family.
pub(crate) struct View<'a> {
    db: &'a DB,
    cf: &'a ColumnFamily,
    snapshot: Option<SnapshotWithThreadMode<'a, DB>>,
}

impl<'a> View<'a> {
    pub(crate) fn latest(db: &'a DB, cf: &'a ColumnFamily) -> Result<Self, StoreError> {
        Ok(View {
            db,
            cf,
            snapshot: None,
        })
    }

    pub(crate) fn snapshot(db: &'a DB, cf: &'a ColumnFamily) -> Result<Self, StoreError> {
        Ok(View {
            db,
            cf,
            snapshot: Some(db.snapshot()),
        })
    }

    /// A cursor over the keys starting with `prefix`, positioned at the first of them. The
    /// positioning happens on first use, so a cursor that is `seek`ed first never walks from
    /// the prefix's start (where deleted keys may pile up as tombstones).
    pub(crate) fn prefix_cursor(&self, prefix: &[u8]) -> PrefixCursor<'_> {
        let mut opts = ReadOptions::default();
        if let Some(upper) = keys::prefix_successor(prefix) {
            opts.set_iterate_upper_bound(upper);
        }
        let iter = match &self.snapshot {
            Some(s) => s.raw_iterator_cf_opt(self.cf, opts),
            None => self.db.raw_iterator_cf_opt(self.cf, opts),
        };
        PrefixCursor {
            iter,
            prefix: prefix.to_vec(),
            positioned: false,
            started: false,
            done: false,
        }
    }
}

impl KvRead for View<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = match &self.snapshot {
            Some(s) => s.get_cf(self.cf, key)?,
            None => self.db.get_cf(self.cf, key)?,
        };
        Ok(value)
    }

    fn cursor<'c>(&'c self, prefix: &[u8]) -> Box<dyn KvCursor + 'c> {
        Box::new(self.prefix_cursor(prefix))
    }
}

/// Walks keys under one prefix; `seek` jumps forward (or back) within it.
pub(crate) struct PrefixCursor<'a> {
    iter: DBRawIterator<'a>,
    prefix: Vec<u8>,
    /// Whether the iterator was positioned (by `seek`, or at the prefix on first use).
    positioned: bool,
    /// Whether the iterator has already yielded its current entry.
    started: bool,
    /// Whether the iterator is exhausted (it must not be moved any more).
    done: bool,
}

impl KvCursor for PrefixCursor<'_> {
    fn seek(&mut self, target: &[u8]) {
        if target < self.prefix.as_slice() {
            self.iter.seek(&self.prefix);
        } else {
            self.iter.seek(target);
        }
        self.positioned = true;
        self.started = false;
        self.done = false;
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, StoreError> {
        if self.done {
            return Ok(None);
        }
        if !self.positioned {
            self.iter.seek(&self.prefix);
            self.positioned = true;
        }
        if self.started {
            self.iter.next();
        }
        self.started = true;
        if !self.iter.valid() {
            self.done = true;
            self.iter.status()?;
            return Ok(None);
        }
        match self.iter.item() {
            Some((k, v)) if k.starts_with(&self.prefix) => Ok(Some((k.to_vec(), v.to_vec()))),
            _ => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

impl KvSource for MetaStore {
    fn view(&self) -> Result<Box<dyn KvRead + '_>, StoreError> {
        Ok(Box::new(self.snapshot_view()?))
    }
}

impl MetaStore {
    /// The last applied log index and the meta clock, from one RocksDB snapshot (both are
    /// written by the same batch, so they always belong together).
    pub(crate) fn applied_clock(&self) -> Result<AppliedClock, StoreError> {
        let db = self.db();
        let snap = db.snapshot();
        let applied_index = match snap.get_cf(self.cf(CF_SM_META)?, KEY_LAST_APPLIED)? {
            None => 0,
            Some(bytes) => {
                let id: tessera_proto::raft::v1::LogId = decode(&bytes, "last applied")?;
                id.index
            }
        };
        let view = View {
            db,
            cf: self.cf(CF_SM)?,
            snapshot: Some(snap),
        };
        let clock_ms = meta_clock::read(&view)?;
        Ok(AppliedClock {
            applied_index,
            clock_ms,
        })
    }
}
