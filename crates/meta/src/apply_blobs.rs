//! The applier's blob bookkeeping and the commands of repair and garbage collection. Invariants:
//! every erasure-coded blob held by a version or an uploaded part has one data-id index entry
//! naming that record (so no two records share a blob); a shard copy marked for deletion (`x/`)
//! is in no record's placement, and no command adds a marked copy to one; a copy leaves a
//! placement only by becoming garbage in the same batch.

use std::collections::{BTreeMap, BTreeSet};

use tessera_proto::meta::v1::{
    Blob, BlobOwner, ClaimShards, ClaimShardsResult, MetaErrorCode, ReleaseShards, ShardPlacement,
    UpdatePlacement, blob, command_result,
};

use super::{Applier, Fail, invalid, ok, rule};
use crate::error::StoreError;
use crate::keys;
use crate::records::{self, BlobRecord};

/// One shard copy: (shard index, node id).
type Copy = (u32, u64);

fn copies(shards: &[ShardPlacement]) -> BTreeSet<Copy> {
    shards.iter().map(|s| (s.shard_index, s.node_id)).collect()
}

fn placements(copies: impl IntoIterator<Item = Copy>) -> Vec<ShardPlacement> {
    copies
        .into_iter()
        .map(|(shard_index, node_id)| ShardPlacement {
            shard_index,
            node_id,
            generation: 0,
        })
        .collect()
}

fn check_data_id(data_id: &[u8]) -> Result<(), Fail> {
    if data_id.len() == keys::DATA_ID_LEN {
        Ok(())
    } else {
        Err(invalid(format!(
            "a data id is {} bytes, not {}",
            keys::DATA_ID_LEN,
            data_id.len()
        )))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Applier<'_> {
    /// The record key owning `data_id` once this command's index changes apply (a dangling
    /// stored entry counts as none).
    fn owner_after(&self, data_id: &[u8]) -> Result<Option<BlobOwner>, StoreError> {
        if let Some(pending) = self.index.get(data_id) {
            return Ok(pending.clone());
        }
        Ok(
            records::owned_blob(&self.view, data_id)?.map(|o| BlobOwner {
                record_key: o.record_key,
                part_index: o.part_index,
            }),
        )
    }

    /// Drops the index entry of `data_id` if it names `record_key`.
    pub(super) fn unindex(&mut self, data_id: &[u8], record_key: &[u8]) -> Result<(), Fail> {
        let owner = self.owner_after(data_id)?;
        if owner.is_some_and(|o| o.record_key == record_key) {
            self.index.insert(data_id.to_vec(), None);
        }
        Ok(())
    }

    /// Indexes `blob` as held by part `part_index` of the record `record_key`. Refuses a blob
    /// another record holds, and any copy garbage collection claimed.
    pub(super) fn index_blob(
        &mut self,
        record_key: &[u8],
        part_index: u32,
        blob: Option<&Blob>,
    ) -> Result<(), Fail> {
        let Some(erasure) = records::erasure_of(blob) else {
            return Ok(());
        };
        check_data_id(&erasure.data_id)?;
        for shard in &erasure.shards {
            self.check_unmarked(&erasure.data_id, shard.shard_index, shard.node_id)?;
        }
        let owner = BlobOwner {
            record_key: record_key.to_vec(),
            part_index,
        };
        if let Some(existing) = self.owner_after(&erasure.data_id)?
            && existing != owner
        {
            return Err(rule(
                MetaErrorCode::MetaErrorConflict,
                format!(
                    "blob {} is already referenced by another record",
                    hex(&erasure.data_id)
                ),
            ));
        }
        self.index.insert(erasure.data_id.clone(), Some(owner));
        Ok(())
    }

    /// Fails with CONFLICT when the copy is marked for deletion.
    fn check_unmarked(&self, data_id: &[u8], shard_index: u32, node_id: u64) -> Result<(), Fail> {
        if self
            .view
            .get(&keys::deletion_mark(data_id, shard_index, node_id))?
            .is_some()
        {
            return Err(rule(
                MetaErrorCode::MetaErrorConflict,
                format!(
                    "shard {shard_index} of blob {} on node {node_id} is claimed for deletion",
                    hex(data_id)
                ),
            ));
        }
        Ok(())
    }

    /// Writes the index changes and the garbage of discarded blobs no record took over. Runs
    /// only for an accepted command.
    pub(super) fn finish(&mut self) -> Result<(), Fail> {
        for (blob, since_ms) in std::mem::take(&mut self.discarded) {
            let Some(erasure) = records::erasure_of(Some(&blob)) else {
                continue;
            };
            if self.owner_after(&erasure.data_id)?.is_none() {
                self.put_garbage(blob, since_ms);
            }
        }
        for (data_id, owner) in std::mem::take(&mut self.index) {
            let key = keys::data_index(&data_id);
            match owner {
                Some(owner) => self.put(&key, &owner),
                None => self.delete(&key),
            }
        }
        Ok(())
    }

    // --- commands -----------------------------------------------------------------------

    pub(super) fn update_placement(
        &mut self,
        c: &UpdatePlacement,
    ) -> Result<command_result::Result, Fail> {
        check_data_id(&c.data_id)?;
        let mut owned = records::owned_blob(&self.view, &c.data_id)?.ok_or_else(|| {
            rule(
                MetaErrorCode::MetaErrorNoSuchKey,
                "blob is no longer referenced",
            )
        })?;
        let (current, width) = match owned.erasure() {
            Some(e) => (
                copies(&e.shards),
                u64::from(e.data_shards) + u64::from(e.parity_shards),
            ),
            None => {
                return Err(rule(
                    MetaErrorCode::MetaErrorNoSuchKey,
                    "blob is no longer referenced",
                ));
            }
        };
        let expected = copies(&c.expected);
        if current != expected {
            return Err(rule(
                MetaErrorCode::MetaErrorConflict,
                "the blob's placement changed",
            ));
        }
        let mut wanted = BTreeSet::new();
        for s in &c.shards {
            if u64::from(s.shard_index) >= width {
                return Err(invalid(format!(
                    "shard index {} is outside the blob's {width} shards",
                    s.shard_index
                )));
            }
            if !wanted.insert((s.shard_index, s.node_id)) {
                return Err(invalid(format!(
                    "shard {} on node {} is listed twice",
                    s.shard_index, s.node_id
                )));
            }
        }
        for (index, node) in wanted.difference(&expected) {
            self.check_unmarked(&c.data_id, *index, *node)?;
        }
        let removed: Vec<Copy> = expected.difference(&wanted).copied().collect();

        let Some(blob) = owned.blob_mut() else {
            return Err(rule(
                MetaErrorCode::MetaErrorNoSuchKey,
                "blob is no longer referenced",
            ));
        };
        let mut garbage = blob.clone();
        if let Some(blob::Storage::Erasure(e)) = &mut blob.storage {
            // BTreeSet order: by shard index, then node.
            e.shards = placements(wanted);
            e.degraded = c.degraded;
        }
        match &owned.record {
            BlobRecord::Version(v) => self.put(&owned.record_key, v.as_ref()),
            BlobRecord::Part(p) => self.put(&owned.record_key, p),
        }
        if !removed.is_empty() {
            if let Some(blob::Storage::Erasure(e)) = &mut garbage.storage {
                e.shards = placements(removed);
            }
            self.put_garbage(garbage, 0);
        }
        Ok(ok())
    }

    pub(super) fn claim_shards(&mut self, c: &ClaimShards) -> Result<command_result::Result, Fail> {
        for r in &c.orphans {
            check_data_id(&r.data_id)?;
        }
        // Placement of each blob met, by data id (None: no owner).
        let mut known: BTreeMap<Vec<u8>, Option<BTreeSet<Copy>>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut claimed = Vec::new();
        for r in &c.orphans {
            if !seen.insert((r.data_id.as_slice(), r.shard_index, r.node_id)) {
                continue;
            }
            if !known.contains_key(&r.data_id) {
                let placement = records::owned_blob(&self.view, &r.data_id)?
                    .and_then(|o| o.erasure().map(|e| copies(&e.shards)));
                known.insert(r.data_id.clone(), placement);
            }
            let referenced = known
                .get(&r.data_id)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.contains(&(r.shard_index, r.node_id)));
            if referenced {
                continue;
            }
            let mark = keys::deletion_mark(&r.data_id, r.shard_index, r.node_id);
            self.batch.put_cf(self.sm, mark, []);
            claimed.push(r.clone());
        }
        Ok(command_result::Result::ClaimShards(ClaimShardsResult {
            claimed,
        }))
    }

    pub(super) fn release_shards(
        &mut self,
        c: &ReleaseShards,
    ) -> Result<command_result::Result, Fail> {
        for r in &c.shards {
            check_data_id(&r.data_id)?;
        }
        if let Some(bad) = c
            .garbage_keys
            .iter()
            .find(|k| !k.starts_with(keys::GARBAGE_PREFIX))
        {
            return Err(invalid(format!(
                "{} is not a garbage record key",
                String::from_utf8_lossy(bad)
            )));
        }
        for r in &c.shards {
            self.delete(&keys::deletion_mark(&r.data_id, r.shard_index, r.node_id));
        }
        for key in &c.garbage_keys {
            self.delete(key);
        }
        Ok(ok())
    }
}
