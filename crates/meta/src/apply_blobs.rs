//! The applier's blob bookkeeping and the commands of repair and garbage collection. A shard
//! copy is always the exact triple (shard index, node, generation). Invariants: every
//! erasure-coded blob held by a version or an uploaded part has one data-id index entry naming
//! that record (so no two records share a blob); a copy marked for deletion (`x/`) is in no
//! record's placement, and no command adds a marked copy to one; a copy leaves a placement only
//! by becoming garbage in the same write set; a copy is claimed only if no placement names it
//! and the meta clock says its writer's lease (orphans) or its garbage record (garbage) ended at
//! least the grace period ago.

use std::collections::{BTreeMap, BTreeSet};

use tessera_core::blob::{Blob, ShardCopy, ShardRef};
use tessera_core::lease::{garbage_collectable, orphan_collectable, validate_grace};
use tessera_core::meta_error::MetaRuleError;
use tessera_core::names::DataId;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command_result;

use super::{Applier, Fail, convert, invalid, ok};
use crate::error::StoreError;
use crate::keys;
use crate::records::{self, BlobRecord, OwnedBlob};

fn data_id(bytes: &[u8]) -> Result<DataId, Fail> {
    let arr: [u8; keys::DATA_ID_LEN] = bytes.try_into().map_err(|_| {
        invalid(format!(
            "a data id is {} bytes, not {}",
            keys::DATA_ID_LEN,
            bytes.len()
        ))
    })?;
    Ok(DataId::from_bytes(arr))
}

fn copies(placements: &[pb::ShardPlacement], what: &str) -> Result<BTreeSet<ShardCopy>, Fail> {
    let mut out = BTreeSet::new();
    for p in placements {
        let copy: ShardCopy = convert(p, what)?;
        if !out.insert(copy) {
            return Err(invalid(format!("{what}: {copy} is listed twice")));
        }
    }
    Ok(out)
}

fn mark_key(data_id: &DataId, copy: &ShardCopy) -> Vec<u8> {
    keys::deletion_mark(
        data_id.as_bytes(),
        copy.shard_index,
        copy.node.0,
        copy.generation.get(),
    )
}

fn conflict(message: String) -> Fail {
    Fail::Rule(MetaRuleError::Conflict { message })
}

impl Applier<'_> {
    /// The owner of `data_id` once this command's index changes apply (a dangling stored entry
    /// counts as none).
    fn owner_after(&self, data_id: &DataId) -> Result<Option<pb::BlobOwner>, StoreError> {
        if let Some(pending) = self.pending_index.get(data_id) {
            return Ok(pending.clone());
        }
        Ok(
            records::owned_blob(self.kv, data_id)?.map(|o| pb::BlobOwner {
                record_key: o.record_key,
                part_index: o.part_index,
            }),
        )
    }

    /// Drops the index entry of `data_id` if it names `record_key`.
    pub(super) fn unindex(&mut self, data_id: &DataId, record_key: &[u8]) -> Result<(), Fail> {
        let owner = self.owner_after(data_id)?;
        if owner.is_some_and(|o| o.record_key == record_key) {
            self.pending_index.insert(*data_id, None);
        }
        Ok(())
    }

    /// Indexes `blob` as held by part `part_index` of the record `record_key`. Refuses a blob
    /// another record holds, and any copy garbage collection claimed.
    pub(super) fn index_blob(
        &mut self,
        record_key: &[u8],
        part_index: u32,
        blob: &Blob,
    ) -> Result<(), Fail> {
        let Some(erasure) = blob.erasure() else {
            return Ok(());
        };
        for copy in &erasure.shards {
            self.check_unmarked(&erasure.data_id, copy)?;
        }
        let owner = pb::BlobOwner {
            record_key: record_key.to_vec(),
            part_index,
        };
        if let Some(existing) = self.owner_after(&erasure.data_id)?
            && existing != owner
        {
            return Err(conflict(format!(
                "blob {} is already referenced by another record",
                erasure.data_id
            )));
        }
        self.pending_index.insert(erasure.data_id, Some(owner));
        Ok(())
    }

    /// Fails with CONFLICT when that exact copy is marked for deletion.
    fn check_unmarked(&self, data_id: &DataId, copy: &ShardCopy) -> Result<(), Fail> {
        if records::deletion_mark(self.kv, data_id, copy)?.is_some() {
            return Err(conflict(format!(
                "{copy} of blob {data_id} is claimed for deletion"
            )));
        }
        Ok(())
    }

    /// Writes the index changes and the garbage of discarded blobs no record took over. Runs
    /// only for an accepted command.
    pub(super) fn finish(&mut self) -> Result<(), Fail> {
        for blob in std::mem::take(&mut self.discarded) {
            let Some(data_id) = blob.data_id() else {
                continue;
            };
            if self.owner_after(&data_id)?.is_none() {
                self.put_garbage(&blob);
            }
        }
        for (data_id, owner) in std::mem::take(&mut self.pending_index) {
            let key = keys::data_index(data_id.as_bytes());
            match owner {
                Some(owner) => self.writes.put_pb(key, &owner),
                None => self.writes.delete(key),
            }
        }
        Ok(())
    }

    // --- commands -----------------------------------------------------------------------

    /// Repair's compare-and-set on one blob's placement (exact copies, generations included).
    pub(super) fn update_placement(
        &mut self,
        c: &pb::UpdatePlacement,
    ) -> Result<command_result::Result, Fail> {
        let data_id = data_id(&c.data_id)?;
        let expected = copies(&c.expected, "expected")?;
        let wanted = copies(&c.shards, "shards")?;
        let mut owned = records::owned_blob(self.kv, &data_id)?
            .ok_or_else(|| conflict(format!("blob {data_id} is no longer referenced")))?;
        let Some(current) = owned.erasure() else {
            return Err(conflict(format!("blob {data_id} is no longer referenced")));
        };
        let current: BTreeSet<ShardCopy> = current.shards.iter().copied().collect();
        if current != expected {
            return Err(conflict(format!("the placement of blob {data_id} changed")));
        }
        let added: Vec<ShardCopy> = wanted.difference(&expected).copied().collect();
        let removed: Vec<ShardCopy> = expected.difference(&wanted).copied().collect();
        if !added.is_empty() {
            self.require_live_lease(c.lease_id)?;
        }
        for copy in &added {
            self.check_unmarked(&data_id, copy)?;
        }

        let index = self.index;
        let Some(blob) = owned.blob_mut() else {
            return Err(conflict(format!("blob {data_id} is no longer referenced")));
        };
        let mut garbage = blob.clone();
        let Some(erasure) = blob.erasure_mut() else {
            return Err(conflict(format!("blob {data_id} is no longer referenced")));
        };
        // BTreeSet order: by shard index, then node, then generation.
        erasure.shards = wanted.into_iter().collect();
        erasure.degraded = c.degraded;
        erasure.placed_at_index = index;
        erasure
            .validate()
            .map_err(|e| invalid(format!("shards: {e}")))?;
        self.put_owner_record(&owned);
        if !removed.is_empty() {
            if let Some(e) = garbage.erasure_mut() {
                e.shards = removed;
            }
            self.put_garbage(&garbage);
        }
        Ok(ok())
    }

    fn put_owner_record(&mut self, owned: &OwnedBlob) {
        match &owned.record {
            BlobRecord::Version(v) => self.writes.put_pb(
                owned.record_key.clone(),
                &pb::ObjectVersion::from(v.as_ref()),
            ),
            BlobRecord::Part(p) => self.writes.put_pb(
                owned.record_key.clone(),
                &pb::UploadedPart::from(p.as_ref()),
            ),
        }
    }

    /// Garbage collection's claim: marks the copies that may be deleted now for `claimer`.
    pub(super) fn claim_shards(
        &mut self,
        c: &pb::ClaimShards,
    ) -> Result<command_result::Result, Fail> {
        validate_grace(c.grace_ms).map_err(|e| invalid(e.to_string()))?;
        if c.claimer.is_empty() {
            return Err(invalid("a claim needs its claimer"));
        }
        let orphans: Vec<ShardRef> = c
            .orphans
            .iter()
            .map(|r| convert(r, "orphan"))
            .collect::<Result<_, _>>()?;
        let mut garbage = Vec::with_capacity(c.garbage.len());
        for g in &c.garbage {
            if !g.garbage_key.starts_with(keys::GARBAGE_PREFIX) {
                return Err(invalid("a garbage claim must name a garbage record key"));
            }
            let shards: Vec<ShardRef> = g
                .shards
                .iter()
                .map(|r| convert(r, "garbage shard"))
                .collect::<Result<_, _>>()?;
            garbage.push((g.garbage_key.as_slice(), shards));
        }

        let mut claim = Claim {
            claimer: &c.claimer,
            owners: BTreeMap::new(),
            seen: BTreeSet::new(),
            granted: Vec::new(),
        };
        for r in &orphans {
            if claim.granted(r) || !self.claimable(&mut claim, r)? {
                continue;
            }
            let lease = records::lease(self.kv, r.lease_id)?;
            if orphan_collectable(lease.as_ref(), self.clock_ms, c.grace_ms) {
                claim.grant(r);
            }
        }
        for (key, shards) in &garbage {
            let Some(record) = records::garbage(self.kv, key)? else {
                continue;
            };
            if !garbage_collectable(record.since_ms, self.clock_ms, c.grace_ms) {
                continue;
            }
            let Some(listed) = record.blob.erasure() else {
                continue;
            };
            for r in shards {
                let in_record = listed.data_id == r.data_id && listed.shards.contains(&r.copy);
                if in_record && !claim.granted(r) && self.claimable(&mut claim, r)? {
                    claim.grant(r);
                }
            }
        }
        let mark = pb::DeletionMark {
            claimer: c.claimer.clone(),
        };
        for r in &claim.granted {
            self.writes.put_pb(mark_key(&r.data_id, &r.copy), &mark);
        }
        Ok(command_result::Result::ClaimShards(pb::ClaimShardsResult {
            claimed: claim.granted.iter().map(pb::ShardRef::from).collect(),
        }))
    }

    /// Whether no placement names the copy and no other claimer holds it.
    fn claimable(&self, claim: &mut Claim<'_>, r: &ShardRef) -> Result<bool, Fail> {
        if let std::collections::btree_map::Entry::Vacant(slot) = claim.owners.entry(r.data_id) {
            slot.insert(records::owned_blob(self.kv, &r.data_id)?);
        }
        let referenced = claim
            .owners
            .get(&r.data_id)
            .and_then(Option::as_ref)
            .is_some_and(|o| o.references(&r.copy));
        if referenced {
            return Ok(false);
        }
        let holder = records::deletion_mark(self.kv, &r.data_id, &r.copy)?;
        Ok(holder.is_none_or(|h| h == claim.claimer))
    }

    /// Garbage collection's last step: drops the marks of deleted copies and the garbage
    /// records that are fully collected.
    pub(super) fn release_shards(
        &mut self,
        c: &pb::ReleaseShards,
    ) -> Result<command_result::Result, Fail> {
        let shards: Vec<ShardRef> = c
            .shards
            .iter()
            .map(|r| convert(r, "shard"))
            .collect::<Result<_, _>>()?;
        if c.garbage_keys
            .iter()
            .any(|k| !k.starts_with(keys::GARBAGE_PREFIX))
        {
            return Err(invalid("a released key must be a garbage record key"));
        }
        for r in &shards {
            self.writes.delete(mark_key(&r.data_id, &r.copy));
        }
        for key in &c.garbage_keys {
            self.writes.delete(key.clone());
        }
        Ok(ok())
    }
}

/// The state of one ClaimShards while it is judged.
struct Claim<'c> {
    claimer: &'c str,
    /// The owning record of each blob met (`None`: no owner).
    owners: BTreeMap<DataId, Option<OwnedBlob>>,
    /// Copies granted so far (a copy named twice is granted once).
    seen: BTreeSet<(DataId, ShardCopy)>,
    granted: Vec<ShardRef>,
}

impl Claim<'_> {
    fn granted(&self, r: &ShardRef) -> bool {
        self.seen.contains(&(r.data_id, r.copy))
    }

    fn grant(&mut self, r: &ShardRef) {
        self.seen.insert((r.data_id, r.copy));
        self.granted.push(*r);
    }
}
