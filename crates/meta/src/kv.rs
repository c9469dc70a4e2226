//! The small key-value view the state machine's rules and queries are written against, so they
//! never see RocksDB: point reads and prefix cursors (`KvRead`), a set of writes of our own
//! (`WriteSet`), an overlay that reads through pending writes (`Overlay`) and an in-memory map
//! (`MemKv`) that rule tests apply commands to. The store implements `KvRead` over RocksDB and
//! turns a `WriteSet` into its `WriteBatch`.
//!
//! Invariant: every implementation yields the keys under a prefix in ascending byte order, each
//! once, and a cursor never leaves its prefix; an `Overlay` reads exactly what its base would
//! read after its writes were applied.

use std::collections::BTreeMap;
use std::ops::Bound;

use prost::Message;

use crate::error::StoreError;

/// One key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Walks the keys under one prefix in ascending order.
pub trait KvCursor {
    /// Positions the cursor at the first key `>= target` (a target before the prefix means the
    /// prefix's first key).
    fn seek(&mut self, target: &[u8]);

    /// The next key under the prefix with its value, or `None` at the prefix's end.
    fn next_entry(&mut self) -> Result<Option<Entry>, StoreError>;
}

/// Reads state-machine records.
pub trait KvRead {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// A cursor over the keys starting with `prefix`, positioned at the first of them.
    fn cursor<'a>(&'a self, prefix: &[u8]) -> Box<dyn KvCursor + 'a>;
}

/// Hands out consistent read views: every query reads one view, so an answer never mixes two
/// states.
pub trait KvSource {
    /// A view of one state of the records.
    fn view(&self) -> Result<Box<dyn KvRead + '_>, StoreError>;
}

impl<T: KvRead + ?Sized> KvRead for &T {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key)
    }

    fn cursor<'a>(&'a self, prefix: &[u8]) -> Box<dyn KvCursor + 'a> {
        (**self).cursor(prefix)
    }
}

/// Decodes one stored protobuf record.
pub(crate) fn decode<M: Message + Default>(
    bytes: &[u8],
    what: &'static str,
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|source| StoreError::Decode { what, source })
}

/// Typed helpers every view gets.
pub(crate) trait KvReadExt: KvRead {
    /// The protobuf record at `key`, decoded.
    fn get_pb<M: Message + Default>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<M>, StoreError> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes, what).map(Some),
        }
    }

    /// Every protobuf record under `prefix` with its key, in key order.
    fn scan_pb<M: Message + Default>(
        &self,
        prefix: &[u8],
        what: &'static str,
    ) -> Result<Vec<(Vec<u8>, M)>, StoreError> {
        let mut cursor = self.cursor(prefix);
        let mut out = Vec::new();
        while let Some((k, v)) = cursor.next_entry()? {
            out.push((k, decode(&v, what)?));
        }
        Ok(out)
    }

    /// Whether any key starts with `prefix`.
    fn any(&self, prefix: &[u8]) -> Result<bool, StoreError> {
        Ok(self.cursor(prefix).next_entry()?.is_some())
    }
}

impl<T: KvRead + ?Sized> KvReadExt for T {}

/// Writes to apply together: the last write of each key wins; applied in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSet {
    /// `None`: the key is deleted.
    ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl WriteSet {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.insert(key, Some(value));
    }

    /// Sets `key` to the encoded `record`.
    pub fn put_pb<M: Message>(&mut self, key: Vec<u8>, record: &M) {
        self.put(key, record.encode_to_vec());
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.insert(key, None);
    }

    /// Adds `other`'s writes after these (its writes win).
    pub fn extend(&mut self, other: WriteSet) {
        self.ops.extend(other.ops);
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The number of keys written.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The writes in key order (`None`: delete).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.ops.iter().map(|(k, v)| (k.as_slice(), v.as_deref()))
    }

    fn lookup(&self, key: &[u8]) -> Option<Option<&Vec<u8>>> {
        self.ops.get(key).map(Option::as_ref)
    }
}

impl IntoIterator for WriteSet {
    type Item = (Vec<u8>, Option<Vec<u8>>);
    type IntoIter = std::collections::btree_map::IntoIter<Vec<u8>, Option<Vec<u8>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.ops.into_iter()
    }
}

/// A view that reads `base` as if `writes` were applied to it.
pub struct Overlay<'a> {
    base: &'a dyn KvRead,
    writes: WriteSet,
}

impl<'a> Overlay<'a> {
    /// No pending writes yet.
    pub fn new(base: &'a dyn KvRead) -> Self {
        Overlay {
            base,
            writes: WriteSet::default(),
        }
    }

    /// The pending writes, mutably.
    pub fn writes_mut(&mut self) -> &mut WriteSet {
        &mut self.writes
    }

    /// The pending writes.
    pub fn into_writes(self) -> WriteSet {
        self.writes
    }
}

impl KvRead for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.lookup(key) {
            Some(pending) => Ok(pending.cloned()),
            None => self.base.get(key),
        }
    }

    fn cursor<'c>(&'c self, prefix: &[u8]) -> Box<dyn KvCursor + 'c> {
        Box::new(OverlayCursor {
            base: self.base.cursor(prefix),
            peeked: None,
            writes: &self.writes.ops,
            prefix: prefix.to_vec(),
            from: Bound::Included(prefix.to_vec()),
        })
    }
}

/// Merges the base's cursor with the pending writes under the same prefix.
struct OverlayCursor<'c> {
    base: Box<dyn KvCursor + 'c>,
    /// The base's next entry, read ahead (`Some(None)`: the base is done).
    peeked: Option<Option<Entry>>,
    writes: &'c BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    prefix: Vec<u8>,
    /// Where the next pending write is looked for.
    from: Bound<Vec<u8>>,
}

impl OverlayCursor<'_> {
    fn peek_base(&mut self) -> Result<Option<&Entry>, StoreError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.base.next_entry()?);
        }
        Ok(self.peeked.as_ref().and_then(Option::as_ref))
    }
}

impl KvCursor for OverlayCursor<'_> {
    fn seek(&mut self, target: &[u8]) {
        self.base.seek(target);
        self.peeked = None;
        let start = if target < self.prefix.as_slice() {
            self.prefix.as_slice()
        } else {
            target
        };
        self.from = Bound::Included(start.to_vec());
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, StoreError> {
        loop {
            let pending = self
                .writes
                .range((self.from.clone(), Bound::Unbounded))
                .next()
                .filter(|(k, _)| k.starts_with(&self.prefix))
                .map(|(k, v)| (k.clone(), v.clone()));
            let base_key = self.peek_base()?.map(|(k, _)| k.clone());
            let take_pending = match (&pending, &base_key) {
                (None, None) => return Ok(None),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((pk, _)), Some(bk)) => pk <= bk,
            };
            if !take_pending {
                return Ok(self.peeked.take().flatten());
            }
            let Some((key, value)) = pending else {
                return Ok(None);
            };
            if base_key.as_ref() == Some(&key) {
                // The pending write replaces the base's entry.
                self.peeked = None;
            }
            self.from = Bound::Excluded(key.clone());
            if let Some(value) = value {
                return Ok(Some((key, value)));
            }
        }
    }
}

/// State-machine records in memory: what rule tests apply commands to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemKv {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemKv {
    /// An empty state.
    pub fn new() -> Self {
        MemKv::default()
    }

    /// Applies `writes`.
    pub fn apply(&mut self, writes: WriteSet) {
        for (key, value) in writes {
            match value {
                Some(v) => {
                    self.map.insert(key, v);
                }
                None => {
                    self.map.remove(&key);
                }
            }
        }
    }

    /// Every record, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.map.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl KvRead for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.get(key).cloned())
    }

    fn cursor<'a>(&'a self, prefix: &[u8]) -> Box<dyn KvCursor + 'a> {
        Box::new(MemCursor {
            map: &self.map,
            prefix: prefix.to_vec(),
            from: Bound::Included(prefix.to_vec()),
        })
    }
}

impl KvSource for MemKv {
    fn view(&self) -> Result<Box<dyn KvRead + '_>, StoreError> {
        Ok(Box::new(self))
    }
}

struct MemCursor<'a> {
    map: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    prefix: Vec<u8>,
    from: Bound<Vec<u8>>,
}

impl KvCursor for MemCursor<'_> {
    fn seek(&mut self, target: &[u8]) {
        let start = if target < self.prefix.as_slice() {
            self.prefix.as_slice()
        } else {
            target
        };
        self.from = Bound::Included(start.to_vec());
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, StoreError> {
        let found = self
            .map
            .range((self.from.clone(), Bound::Unbounded))
            .next()
            .filter(|(k, _)| k.starts_with(&self.prefix))
            .map(|(k, v)| (k.clone(), v.clone()));
        if let Some((k, _)) = &found {
            self.from = Bound::Excluded(k.clone());
        }
        Ok(found)
    }
}

#[cfg(test)]
#[path = "kv_test.rs"]
mod tests;
