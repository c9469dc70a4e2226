//! Reading the state-machine column family: point reads and prefix cursors, either on the
//! latest data (the applier, which is the only writer) or on a RocksDB snapshot (queries, so one
//! answer never mixes two states).

use prost::Message;
use rocksdb::{ColumnFamily, DB, DBRawIterator, ReadOptions, SnapshotWithThreadMode};

use crate::error::StoreError;
use crate::keys;

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

    /// The raw value at `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = match &self.snapshot {
            Some(s) => s.get_cf(self.cf, key)?,
            None => self.db.get_cf(self.cf, key)?,
        };
        Ok(value)
    }

    /// The record at `key`, decoded.
    pub(crate) fn get_pb<M: Message + Default>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<M>, StoreError> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes, what).map(Some),
        }
    }

    /// A cursor over the keys starting with `prefix`, positioned at the first of them.
    pub(crate) fn cursor(&self, prefix: Vec<u8>) -> PrefixCursor<'_> {
        let mut opts = ReadOptions::default();
        if let Some(upper) = keys::prefix_successor(&prefix) {
            opts.set_iterate_upper_bound(upper);
        }
        let mut iter = match &self.snapshot {
            Some(s) => s.raw_iterator_cf_opt(self.cf, opts),
            None => self.db.raw_iterator_cf_opt(self.cf, opts),
        };
        iter.seek(&prefix);
        PrefixCursor {
            iter,
            prefix,
            started: false,
        }
    }

    /// Every record under `prefix` with its key, in key order.
    pub(crate) fn scan<M: Message + Default>(
        &self,
        prefix: Vec<u8>,
        what: &'static str,
    ) -> Result<Vec<(Vec<u8>, M)>, StoreError> {
        let mut cursor = self.cursor(prefix);
        let mut out = Vec::new();
        while let Some((k, v)) = cursor.next_raw()? {
            out.push((k.to_vec(), decode(v, what)?));
        }
        Ok(out)
    }

    /// Whether any key starts with `prefix`.
    pub(crate) fn any(&self, prefix: Vec<u8>) -> Result<bool, StoreError> {
        let mut cursor = self.cursor(prefix);
        Ok(cursor.next_raw()?.is_some())
    }
}

/// Decodes one stored record.
pub(crate) fn decode<M: Message + Default>(
    bytes: &[u8],
    what: &'static str,
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|source| StoreError::Decode { what, source })
}

/// A key and its value, borrowed from the cursor.
pub(crate) type RawEntry<'c> = (&'c [u8], &'c [u8]);

/// Walks keys under one prefix; `seek` jumps forward (or back) within it.
pub(crate) struct PrefixCursor<'a> {
    iter: DBRawIterator<'a>,
    prefix: Vec<u8>,
    /// Whether the iterator has already yielded its current entry.
    started: bool,
}

impl PrefixCursor<'_> {
    /// Positions the cursor at the first key `>= target` (clamped to the prefix).
    pub(crate) fn seek(&mut self, target: &[u8]) {
        if target < self.prefix.as_slice() {
            self.iter.seek(&self.prefix);
        } else {
            self.iter.seek(target);
        }
        self.started = false;
    }

    /// The next key and value under the prefix, or `None` at its end.
    pub(crate) fn next_raw(&mut self) -> Result<Option<RawEntry<'_>>, StoreError> {
        if self.started {
            self.iter.next();
        }
        self.started = true;
        if !self.iter.valid() {
            self.iter.status()?;
            return Ok(None);
        }
        match self.iter.item() {
            Some((k, v)) if k.starts_with(&self.prefix) => Ok(Some((k, v))),
            _ => Ok(None),
        }
    }
}
